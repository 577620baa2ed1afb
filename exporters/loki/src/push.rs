//! Loki push wire formats: `logproto.PushRequest` (protobuf, snappy block) and the JSON form.
//!
//! The messages are written by hand with Loki's field numbers (`pkg/push/push.proto`) so no
//! protoc or Loki crate is needed. `hash` (stream) and `parsed` (entry) are Loki-internal and
//! never sent.

use crate::mapping::Stream;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// Prometheus label-set string, e.g. `{job="api", level="ERROR"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<prost_types::Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Nanoseconds since the epoch as a protobuf `Timestamp`.
pub fn timestamp(ns: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        // u64::MAX / 1e9 < i64::MAX and the remainder < 1e9 < i32::MAX.
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

/// Moves streams into a `PushRequest`.
pub fn into_push_request(streams: Vec<Stream>) -> PushRequest {
    PushRequest {
        streams: streams
            .into_iter()
            .map(|s| StreamAdapter {
                labels: s.label_string,
                entries: s
                    .entries
                    .into_iter()
                    .map(|e| EntryAdapter {
                        timestamp: Some(timestamp(e.timestamp_ns)),
                        line: e.line,
                        structured_metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|(name, value)| LabelPairAdapter { name, value })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Protobuf-encodes and snappy-compresses (block format, as Loki requires) a push request.
/// Why a push body could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn encode_protobuf(req: &PushRequest) -> Result<Vec<u8>, EncodeError> {
    let raw = prost::Message::encode_to_vec(req);
    Ok(sluice_core::snappy::compress(&raw)?)
}

/// The snappy-compressed protobuf `PushRequest` of `streams`: the same bytes as
/// `encode_protobuf(&into_push_request(streams))`, written straight from the streams instead of
/// moving every entry into prost messages first and measuring them again.
pub fn encode_streams_protobuf(streams: &[Stream]) -> Result<Vec<u8>, EncodeError> {
    Ok(sluice_core::snappy::compress_built(|out| {
        push_request_bytes(streams, out)
    })?)
}

/// Field keys of `pkg/push/push.proto` (all tags below 16: one byte).
const KEY_STREAM: u8 = 1 << 3 | 2;
const KEY_LABELS: u8 = 1 << 3 | 2;
const KEY_ENTRY: u8 = 2 << 3 | 2;
const KEY_TIMESTAMP: u8 = 1 << 3 | 2;
const KEY_LINE: u8 = 2 << 3 | 2;
const KEY_METADATA: u8 = 3 << 3 | 2;
const KEY_PAIR_NAME: u8 = 1 << 3 | 2;
const KEY_PAIR_VALUE: u8 = 2 << 3 | 2;
const KEY_SECONDS: u8 = 1 << 3;
const KEY_NANOS: u8 = 2 << 3;

/// The unframed `PushRequest` protobuf, in prost's field order and omissions.
fn push_request_bytes(streams: &[Stream], out: &mut Vec<u8>) {
    let total: usize = streams.iter().map(|s| framed_len(stream_len(s))).sum();
    out.reserve(total);
    for stream in streams {
        write_len_field(out, KEY_STREAM, stream_len(stream));
        write_str_field(out, KEY_LABELS, &stream.label_string);
        for entry in &stream.entries {
            write_len_field(out, KEY_ENTRY, entry_len(entry));
            let (seconds, nanos) = timestamp_parts(entry.timestamp_ns);
            write_len_field(out, KEY_TIMESTAMP, timestamp_len(seconds, nanos));
            if seconds != 0 {
                out.push(KEY_SECONDS);
                prost::encoding::encode_varint(seconds, out);
            }
            if nanos != 0 {
                out.push(KEY_NANOS);
                prost::encoding::encode_varint(nanos, out);
            }
            write_str_field(out, KEY_LINE, &entry.line);
            for (name, value) in &entry.structured_metadata {
                write_len_field(out, KEY_METADATA, pair_len(name, value));
                write_str_field(out, KEY_PAIR_NAME, name);
                write_str_field(out, KEY_PAIR_VALUE, value);
            }
        }
    }
}

/// `Timestamp { seconds, nanos }` of [`timestamp`] as the varints prost writes (both are
/// non-negative here).
fn timestamp_parts(ns: u64) -> (u64, u64) {
    (ns / 1_000_000_000, ns % 1_000_000_000)
}

/// A length-delimited field with a one-byte key: key, length, body.
fn framed_len(body: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(body as u64) + body
}

/// A string field as prost writes it: nothing when empty.
fn str_field_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { framed_len(s.len()) }
}

fn timestamp_len(seconds: u64, nanos: u64) -> usize {
    let varint = |v: u64| {
        if v == 0 {
            0
        } else {
            1 + prost::encoding::encoded_len_varint(v)
        }
    };
    varint(seconds) + varint(nanos)
}

fn pair_len(name: &str, value: &str) -> usize {
    str_field_len(name) + str_field_len(value)
}

fn entry_len(entry: &crate::mapping::Entry) -> usize {
    let (seconds, nanos) = timestamp_parts(entry.timestamp_ns);
    framed_len(timestamp_len(seconds, nanos))
        + str_field_len(&entry.line)
        + entry
            .structured_metadata
            .iter()
            .map(|(n, v)| framed_len(pair_len(n, v)))
            .sum::<usize>()
}

fn stream_len(stream: &Stream) -> usize {
    str_field_len(&stream.label_string)
        + stream
            .entries
            .iter()
            .map(|e| framed_len(entry_len(e)))
            .sum::<usize>()
}

fn write_len_field(out: &mut Vec<u8>, key: u8, len: usize) {
    out.push(key);
    prost::encoding::encode_varint(len as u64, out);
}

fn write_str_field(out: &mut Vec<u8>, key: u8, s: &str) {
    if !s.is_empty() {
        write_len_field(out, key, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

/// The JSON push body: `{"streams":[{"stream":{…},"values":[["<ns>","line",{…}]]}]}`, with
/// the timestamp as a string (Loki refuses a number) and metadata only when present.
pub fn encode_json(streams: &[Stream]) -> Result<Vec<u8>, EncodeError> {
    Ok(serde_json::to_vec(&JsonPush { streams })?)
}

struct JsonPush<'a> {
    streams: &'a [Stream],
}

impl Serialize for JsonPush<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(
            "streams",
            &JsonList(self.streams.iter().map(JsonStream).collect()),
        )?;
        map.end()
    }
}

struct JsonList<T>(Vec<T>);

impl<T: Serialize> Serialize for JsonList<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in &self.0 {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

struct JsonStream<'a>(&'a Stream);

impl Serialize for JsonStream<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("stream", &Pairs(&self.0.labels))?;
        map.serialize_entry(
            "values",
            &JsonList(self.0.entries.iter().map(JsonEntry).collect()),
        )?;
        map.end()
    }
}

struct Pairs<'a>(&'a [(String, String)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct JsonEntry<'a>(&'a crate::mapping::Entry);

impl Serialize for JsonEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let with_md = !e.structured_metadata.is_empty();
        let mut seq = s.serialize_seq(Some(if with_md { 3 } else { 2 }))?;
        seq.serialize_element(&e.timestamp_ns.to_string())?;
        seq.serialize_element(&e.line)?;
        if with_md {
            seq.serialize_element(&Pairs(&e.structured_metadata))?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Entry;
    use prost::Message;

    fn stream() -> Stream {
        Stream {
            labels: vec![("job".into(), "api".into())],
            label_string: r#"{job="api"}"#.into(),
            entries: vec![
                Entry {
                    timestamp_ns: 1_700_000_000_123_456_789,
                    line: "hello".into(),
                    structured_metadata: vec![("trace_id".into(), "abc".into())],
                },
                Entry {
                    timestamp_ns: 5,
                    line: "x".into(),
                    structured_metadata: vec![],
                },
            ],
        }
    }

    #[test]
    fn protobuf_is_snappy_block_with_loki_field_numbers() {
        let body = encode_protobuf(&into_push_request(vec![stream()])).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        // streams = field 1, length-delimited.
        assert_eq!(raw[0], 0x0a);
        let req = PushRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(req.streams[0].labels, r#"{job="api"}"#);
        let e = &req.streams[0].entries[0];
        assert_eq!(
            e.timestamp,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789
            })
        );
        assert_eq!(e.structured_metadata[0].name, "trace_id");
    }

    #[test]
    fn streams_are_written_as_prost_encodes_them() {
        let entry = |ts: u64, line: String, md: Vec<(&str, &str)>| Entry {
            timestamp_ns: ts,
            line,
            structured_metadata: md
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        };
        let cases = vec![
            vec![],
            vec![stream()],
            vec![
                Stream {
                    labels: vec![],
                    label_string: String::new(),
                    entries: vec![],
                },
                Stream {
                    labels: vec![],
                    label_string: "{a=\"ü\"}".repeat(40),
                    entries: vec![
                        entry(0, String::new(), vec![]),
                        entry(1_000_000_000, "x".repeat(127), vec![("", ""), ("n", "")]),
                        entry(999_999_999, "y".repeat(128), vec![("", "v")]),
                        entry(u64::MAX, "z".repeat(20_000), vec![("k", &"v".repeat(300))]),
                        entry(1_700_000_000_123_456_789, "é\u{2028}".into(), vec![]),
                    ],
                },
            ],
        ];
        for streams in cases {
            let ours = snap::raw::Decoder::new()
                .decompress_vec(&encode_streams_protobuf(&streams).unwrap())
                .unwrap();
            let prost = snap::raw::Decoder::new()
                .decompress_vec(&encode_protobuf(&into_push_request(streams.clone())).unwrap())
                .unwrap();
            assert_eq!(ours, prost);
        }
    }

    #[test]
    fn json_timestamps_are_strings() {
        let body = encode_json(&[stream()]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"streams":[{"stream":{"job":"api"},"values":[
                ["1700000000123456789","hello",{"trace_id":"abc"}],
                ["5","x"]
            ]}]})
        );
    }
}
