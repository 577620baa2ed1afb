//! Remote-write wire format: hand-written prost messages for RW 1.0 (`prometheus.WriteRequest`)
//! and RW 2.0 (`io.prometheus.write.v2.Request`), and the snappy block encoding of both.
//!
//! Field numbers and scalar kinds follow `prompb/{remote,types}.proto` and
//! `prompb/io/prometheus/write/v2/types.proto`: `sint32`/`sint64` fields are zigzag encoded,
//! repeated scalars are packed, enums travel as `int32`.

use crate::translate::{Family, Series};
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;

/// The Prometheus staleness marker. Its exact bits matter: only this NaN means "series ended".
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// `MetricMetadata.MetricType` (RW1) and `Metadata.MetricType` (RW2) share their numbers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    StateSet = 7,
}

/// `Histogram.ResetHint`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ResetHint {
    Unknown = 0,
    Yes = 1,
    No = 2,
    Gauge = 3,
}

/// RW 1.0 messages (`package prometheus`).
pub mod v1 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        /// [`super::MetricType`] as `int32`.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    /// A native histogram sample. The same message (plus field 17) is RW2's `Histogram`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(oneof = "histogram::Count", tags = "1, 2")]
        pub count: Option<histogram::Count>,
        #[prost(double, tag = "3")]
        pub sum: f64,
        /// -4..=8 for exponential buckets; -53 for custom buckets.
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
        pub zero_count: Option<histogram::ZeroCount>,
        #[prost(message, repeated, tag = "8")]
        pub negative_spans: Vec<BucketSpan>,
        /// Delta-encoded counts: each value is the difference to the previous bucket's count.
        #[prost(sint64, repeated, tag = "9")]
        pub negative_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "10")]
        pub negative_counts: Vec<f64>,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "13")]
        pub positive_counts: Vec<f64>,
        /// [`super::ResetHint`] as `int32`.
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
        #[prost(double, repeated, tag = "16")]
        pub custom_values: Vec<f64>,
    }

    pub mod histogram {
        #[derive(Clone, Copy, PartialEq, prost::Oneof)]
        pub enum Count {
            #[prost(uint64, tag = "1")]
            CountInt(u64),
            #[prost(double, tag = "2")]
            CountFloat(f64),
        }

        #[derive(Clone, Copy, PartialEq, prost::Oneof)]
        pub enum ZeroCount {
            #[prost(uint64, tag = "6")]
            ZeroCountInt(u64),
            #[prost(double, tag = "7")]
            ZeroCountFloat(f64),
        }
    }

    /// A run of `length` consecutive buckets; `offset` is the gap to the previous span (the
    /// first span's offset is the absolute index of its first bucket).
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }
}

/// RW 2.0 messages (`package io.prometheus.write.v2`). Strings live once in `symbols`; series
/// refer to them by index. Fields 1–3 of `Request` are reserved so that a 1.x receiver decodes
/// a 2.0 body as an empty `WriteRequest` (which is how a silent downgrade is detected).
pub mod v2 {
    pub use super::v1::BucketSpan;
    pub use super::v1::histogram::{Count, ZeroCount};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// `name, value` index pairs into `symbols`, sorted by name.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        /// 0 means unset.
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Metadata {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        /// Index into `symbols`; 0 (the empty string) means unset.
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(oneof = "Count", tags = "1, 2")]
        pub count: Option<Count>,
        #[prost(double, tag = "3")]
        pub sum: f64,
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(oneof = "ZeroCount", tags = "6, 7")]
        pub zero_count: Option<ZeroCount>,
        #[prost(message, repeated, tag = "8")]
        pub negative_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "9")]
        pub negative_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "10")]
        pub negative_counts: Vec<f64>,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "13")]
        pub positive_counts: Vec<f64>,
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
        #[prost(double, repeated, tag = "16")]
        pub custom_values: Vec<f64>,
        #[prost(int64, tag = "17")]
        pub start_timestamp: i64,
    }

    impl Histogram {
        pub fn from_v1(h: &super::v1::Histogram, start_timestamp: i64) -> Histogram {
            Histogram {
                count: h.count,
                sum: h.sum,
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: h.zero_count,
                negative_spans: h.negative_spans.clone(),
                negative_deltas: h.negative_deltas.clone(),
                negative_counts: h.negative_counts.clone(),
                positive_spans: h.positive_spans.clone(),
                positive_deltas: h.positive_deltas.clone(),
                positive_counts: h.positive_counts.clone(),
                reset_hint: h.reset_hint,
                timestamp: h.timestamp,
                custom_values: h.custom_values.clone(),
                start_timestamp,
            }
        }
    }
}

/// Which remote-write message a body carries, with the headers that announce it (Prometheus
/// Remote-Write 2.0 specification, "Protocol": `Content-Type` and `X-Prometheus-Remote-Write-Version`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

impl Protocol {
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::V1 => "application/x-protobuf",
            Protocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    pub fn version_header(self) -> &'static str {
        match self {
            Protocol::V1 => "0.1.0",
            Protocol::V2 => "2.0.0",
        }
    }
}

/// Protobuf-encodes `message` and compresses it with snappy's block format (never framed).
pub fn encode_snappy<M: Message>(message: &M) -> Bytes {
    compress(&message.encode_to_vec())
}

/// Why a remote-write body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Inverse of [`encode_snappy`], for tests and test servers.
pub fn decode_snappy<M: Message + Default>(body: &[u8]) -> Result<M, DecodeError> {
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(M::decode(raw.as_slice())?)
}

/// Appends `message` as field `field` (1..=15) of the message being written to `out`.
pub(crate) fn put_message(field: u8, message: &impl Message, out: &mut Vec<u8>) {
    out.push(field << 3 | 2);
    // Writing into a `Vec` cannot run out of space, the only way this can fail.
    let _ = message.encode_length_delimited(out);
}

/// Encoded length of an RW1 `Sample` with these values (prost leaves out zero fields).
fn v1_sample_len(sample: &v2::Sample) -> usize {
    let value = if sample.value != 0.0 { 9 } else { 0 };
    let timestamp = if sample.timestamp != 0 {
        1 + prost::length_delimiter_len(sample.timestamp as u64 as usize)
    } else {
        0
    };
    value + timestamp
}

fn put_len(len: usize, out: &mut Vec<u8>) {
    // Varint of a length; cannot fail into a `Vec` (see `put_message`).
    let _ = prost::encode_length_delimiter(len, out);
}

fn put_varint(value: u64, out: &mut Vec<u8>) {
    let mut v = value;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

/// The RW1 `WriteRequest` for `series`, protobuf-encoded straight from each series' shared
/// label encoding (see `SeriesLabels`), byte for byte what prost encodes for the same
/// message; with the metadata of the families they belong to when `with_metadata`.
pub fn encode_v1(series: &[Series], families: &[Family], with_metadata: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        series
            .iter()
            .map(|s| s.labels.v1_encoded().len() + 16 * s.samples.len() + 8)
            .sum(),
    );
    for s in series {
        let labels = s.labels.v1_encoded();
        let len = labels.len()
            + s.samples
                .iter()
                .map(|x| field_len(v1_sample_len(x)))
                .sum::<usize>()
            + s.exemplars
                .iter()
                .map(|e| field_len(e.encoded_len()))
                .sum::<usize>()
            + s.histograms
                .iter()
                .map(|h| field_len(h.histogram.encoded_len()))
                .sum::<usize>();
        out.push(1 << 3 | 2);
        put_len(len, &mut out);
        out.extend_from_slice(labels);
        for x in &s.samples {
            out.push(2 << 3 | 2);
            put_len(v1_sample_len(x), &mut out);
            if x.value != 0.0 {
                out.push(1 << 3 | 1);
                out.extend_from_slice(&x.value.to_le_bytes());
            }
            if x.timestamp != 0 {
                out.push(2 << 3);
                put_varint(x.timestamp as u64, &mut out);
            }
        }
        for e in &s.exemplars {
            put_message(3, e, &mut out);
        }
        for h in &s.histograms {
            put_message(4, &h.histogram, &mut out);
        }
    }
    if with_metadata {
        let mut used: Vec<usize> = series.iter().map(|s| s.family).collect();
        used.sort_unstable();
        used.dedup();
        for f in used.into_iter().filter_map(|i| families.get(i)) {
            let metadata = v1::MetricMetadata {
                r#type: f.metric_type as i32,
                metric_family_name: f.name.clone(),
                help: f.help.clone(),
                unit: f.unit.clone(),
            };
            put_message(3, &metadata, &mut out);
        }
    }
    out
}

/// Compresses an encoded request with snappy's block format (never framed).
pub fn compress(raw: &[u8]) -> Bytes {
    match sluice_core::snappy::compress(raw) {
        Ok(compressed) => Bytes::from(compressed),
        // Only fails for inputs above snappy's ~4 GiB limit, which a batch never reaches;
        // an empty body would be refused by the backend, never silently accepted.
        Err(_) => Bytes::new(),
    }
}

/// Interns strings into an RW2 symbols table; `""` is always ref 0.
struct Symbols<'a> {
    table: Vec<&'a str>,
    refs: HashMap<&'a str, u32>,
}

impl<'a> Symbols<'a> {
    fn new() -> Self {
        let mut s = Symbols {
            table: Vec::new(),
            refs: HashMap::new(),
        };
        s.intern("");
        s
    }

    fn intern(&mut self, value: &'a str) -> u32 {
        if let Some(&r) = self.refs.get(value) {
            return r;
        }
        let r = self.table.len() as u32;
        self.table.push(value);
        self.refs.insert(value, r);
        r
    }

    fn labels(&mut self, labels: &'a [v1::Label]) -> Vec<u32> {
        let mut refs = Vec::with_capacity(labels.len() * 2);
        for l in labels {
            refs.push(self.intern(&l.name));
            refs.push(self.intern(&l.value));
        }
        refs
    }
}

/// Builds the RW2 message for `series`: one symbols table, per-series metadata and start
/// timestamps.
pub fn request_v2(series: &[Series], families: &[Family]) -> v2::Request {
    let mut symbols = Symbols::new();
    let mut timeseries = Vec::with_capacity(series.len());
    for s in series {
        let metadata = families.get(s.family).map(|f| v2::Metadata {
            r#type: f.metric_type as i32,
            help_ref: symbols.intern(&f.help),
            unit_ref: symbols.intern(&f.unit),
        });
        timeseries.push(v2::TimeSeries {
            labels_refs: symbols.labels(&s.labels),
            samples: s.samples.clone(),
            histograms: s
                .histograms
                .iter()
                .map(|h| v2::Histogram::from_v1(&h.histogram, h.start_timestamp))
                .collect(),
            exemplars: s
                .exemplars
                .iter()
                .map(|e| v2::Exemplar {
                    labels_refs: symbols.labels(&e.labels),
                    value: e.value,
                    timestamp: e.timestamp,
                })
                .collect(),
            metadata,
        });
    }
    v2::Request {
        symbols: symbols.table.into_iter().map(str::to_owned).collect(),
        timeseries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_and_oneof_fields_use_the_right_wire_types() {
        let h = v1::Histogram {
            count: Some(v1::histogram::Count::CountInt(3)),
            schema: -1,
            zero_count: Some(v1::histogram::ZeroCount::ZeroCountFloat(0.5)),
            positive_spans: vec![v1::BucketSpan {
                offset: -2,
                length: 1,
            }],
            positive_deltas: vec![-1],
            ..Default::default()
        };
        let bytes = h.encode_to_vec();
        // count_int: field 1 varint 3.
        assert_eq!(&bytes[..2], &[0x08, 3]);
        // schema: field 4 (tag 0x20), sint32 -1 zigzags to 1.
        let schema_at = bytes.windows(2).position(|w| w == [0x20, 0x01]);
        assert!(schema_at.is_some(), "{bytes:02x?}");
        // zero_count_float: field 7 fixed64 → tag 0x39.
        assert!(bytes.contains(&0x39));
        // positive_deltas: field 12 packed (tag 0x62), length 1, zigzag(-1) = 1.
        assert!(
            bytes.windows(3).any(|w| w == [0x62, 0x01, 0x01]),
            "{bytes:02x?}"
        );
        // span offset -2 zigzags to 3.
        assert!(bytes.windows(2).any(|w| w == [0x08, 0x03]));
        let back = v1::Histogram::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn snappy_block_round_trip() {
        let req = v1::WriteRequest {
            timeseries: vec![v1::TimeSeries {
                labels: vec![v1::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![v1::Sample {
                    value: stale_nan(),
                    timestamp: 1_700_000_000_000,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        };
        let body = encode_snappy(&req);
        // Block format has no stream identifier chunk (framed starts with 0xff "sNaPpY").
        assert_ne!(body[0], 0xff);
        let back: v1::WriteRequest = decode_snappy(&body).unwrap();
        assert_eq!(
            back.timeseries[0].samples[0].value.to_bits(),
            STALE_NAN_BITS
        );
        assert!(decode_snappy::<v1::WriteRequest>(b"not snappy").is_err());
    }

    #[test]
    fn v2_request_reads_as_empty_v1_request() {
        let req = v2::Request {
            symbols: vec!["".into(), "__name__".into(), "up".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: 5,
                    start_timestamp: 0,
                }],
                ..Default::default()
            }],
        };
        let as_v1 = v1::WriteRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert!(as_v1.timeseries.is_empty() && as_v1.metadata.is_empty());
    }
}
