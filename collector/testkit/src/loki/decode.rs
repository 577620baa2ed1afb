//! Decoding push bodies: content encodings, protobuf (snappy) and JSON pushes.

use super::LokiEntry;
use super::wire;
use prost::Message;
use std::io::Read;
use thiserror::Error;

/// Why a body could not be decoded; the text is what the 400 answer says.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("Content-Encoding {0:?} not supported")]
    UnsupportedEncoding(String),
    #[error("decompressing the body: {0}")]
    Decompress(std::io::Error),
    #[error("decompressed body too large")]
    DecompressedTooLarge,
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("message size too large: {len} > {max}")]
    TooLarge { len: usize, max: usize },
    #[error("proto: {0}")]
    Proto(prost::DecodeError),
    #[error("JSON: {0}")]
    Json(serde_json::Error),
    /// A JSON push whose shape is not Loki's; says which part and what it must be.
    #[error("JSON: {0}")]
    JsonShape(String),
    #[error("JSON: invalid timestamp: {0}")]
    JsonTimestamp(std::num::ParseIntError),
    #[error("unsupported content type: {0:?}")]
    UnsupportedContentType(String),
    #[error("{0}")]
    OtlpProtobuf(prost::DecodeError),
    #[error("{0}")]
    OtlpJson(serde_json::Error),
}

fn shape(what: impl Into<String>) -> DecodeError {
    DecodeError::JsonShape(what.into())
}

/// The body after its `Content-Encoding`, at most `max` bytes. Push bodies are snappy
/// whatever the header says (their decoding happens later); OTLP bodies are not.
pub(super) fn decompress(
    encoding: Option<&str>,
    body: &[u8],
    max: usize,
    otlp: bool,
) -> Result<Vec<u8>, DecodeError> {
    let read_capped = |mut r: Box<dyn Read + '_>| -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        r.by_ref()
            .take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(DecodeError::Decompress)?;
        if out.len() > max {
            return Err(DecodeError::DecompressedTooLarge);
        }
        Ok(out)
    };
    match encoding.map(str::trim).unwrap_or("") {
        "" => Ok(body.to_vec()),
        // Push bodies are snappy regardless; the header is informational.
        "snappy" if !otlp => Ok(body.to_vec()),
        "gzip" => read_capped(Box::new(flate2::read::GzDecoder::new(body))),
        "deflate" if !otlp => read_capped(Box::new(flate2::read::DeflateDecoder::new(body))),
        other => Err(DecodeError::UnsupportedEncoding(other.to_owned())),
    }
}

/// A stream as received, before validation.
pub(super) struct IncomingStream {
    /// Either a label string to parse, or labels already split (JSON form, OTLP).
    pub(super) labels: IncomingLabels,
    pub(super) entries: Vec<LokiEntry>,
}

pub(super) enum IncomingLabels {
    Text(String),
    Parsed(Vec<(String, String)>),
}

/// A `logproto.PushRequest`, snappy-block compressed.
pub(super) fn decode_protobuf_push(
    body: &[u8],
    max: usize,
) -> Result<Vec<IncomingStream>, DecodeError> {
    let len = snap::raw::decompress_len(body)?;
    if len > max {
        return Err(DecodeError::TooLarge { len, max });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    let req = wire::PushRequest::decode(raw.as_slice()).map_err(DecodeError::Proto)?;
    Ok(req
        .streams
        .into_iter()
        .map(|s| IncomingStream {
            labels: IncomingLabels::Text(s.labels),
            entries: s
                .entries
                .into_iter()
                .map(|e| LokiEntry {
                    timestamp_ns: e.timestamp.map(timestamp_ns).unwrap_or(i64::MIN),
                    line: e.line,
                    structured_metadata: e
                        .structured_metadata
                        .into_iter()
                        .map(|p| (p.name, p.value))
                        .collect(),
                })
                .collect(),
        })
        .collect())
}

fn timestamp_ns(ts: prost_types::Timestamp) -> i64 {
    let ns = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

/// The JSON form of a push (timestamps are strings of nanoseconds).
pub(super) fn decode_json_push(body: &[u8]) -> Result<Vec<IncomingStream>, DecodeError> {
    use serde_json::Value as J;
    let root: J = serde_json::from_slice(body).map_err(DecodeError::Json)?;
    let streams = root
        .get("streams")
        .and_then(J::as_array)
        .ok_or_else(|| shape("`streams` must be an array"))?;
    let string_map = |v: &J, what: &str| -> Result<Vec<(String, String)>, DecodeError> {
        let obj = v
            .as_object()
            .ok_or_else(|| shape(format!("{what} must be an object")))?;
        obj.iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_owned()))
                    .ok_or_else(|| shape(format!("{what}.{k} must be a string")))
            })
            .collect()
    };
    let mut out = Vec::new();
    for s in streams {
        let labels = string_map(s.get("stream").unwrap_or(&J::Null), "stream")?;
        let values = s
            .get("values")
            .and_then(J::as_array)
            .ok_or_else(|| shape("`values` must be an array"))?;
        let mut entries = Vec::new();
        for v in values {
            let parts = v
                .as_array()
                .filter(|a| a.len() == 2 || a.len() == 3)
                .ok_or_else(|| {
                    shape("each value must be [\"<ns>\", \"<line>\"] or with a metadata object")
                })?;
            let ts = parts[0]
                .as_str()
                .ok_or_else(|| shape("the timestamp must be a string of nanoseconds"))?
                .parse::<i64>()
                .map_err(DecodeError::JsonTimestamp)?;
            let line = parts[1]
                .as_str()
                .ok_or_else(|| shape("the line must be a string"))?;
            let structured_metadata = match parts.get(2) {
                Some(md) => string_map(md, "structured metadata")?,
                None => Vec::new(),
            };
            entries.push(LokiEntry {
                timestamp_ns: ts,
                line: line.to_owned(),
                structured_metadata,
            });
        }
        out.push(IncomingStream {
            labels: IncomingLabels::Parsed(labels),
            entries,
        });
    }
    Ok(out)
}

/// Decodes a `/loki/api/v1/push` body as the server does (snappy protobuf, or JSON with
/// `Content-Type: application/json`, after gzip/deflate) and parses each stream's label
/// string; the entries of the streams whose labels parse. Public for the fuzz targets in
/// `fuzz/`.
pub fn decode_push(
    content_encoding: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    max: usize,
) -> Result<usize, DecodeError> {
    let body = decompress(content_encoding, body, max, false)?;
    let json = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    let streams = if json {
        decode_json_push(&body)?
    } else {
        decode_protobuf_push(&body, max)?
    };
    Ok(streams
        .iter()
        .filter(|s| match &s.labels {
            IncomingLabels::Text(text) => super::parse_labels(text).is_ok(),
            IncomingLabels::Parsed(_) => true,
        })
        .map(|s| s.entries.len())
        .sum())
}
