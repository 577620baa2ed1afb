//! OTLP/JSON ↔ protobuf, through opentelemetry-proto's serde support (hex ids, 64-bit integers
//! as strings or numbers, unknown fields ignored).

use crate::error::{WireError, WireErrorKind};
use crate::{Signal, validate};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;

/// Converts an OTLP/JSON request body into its protobuf encoding and counts its items.
///
/// The result passes [`validate`], so ids of the wrong length are refused here too.
pub fn json_to_protobuf(signal: Signal, json: &[u8]) -> Result<(Bytes, u32), WireError> {
    let encoded = match signal {
        Signal::Traces => parse::<ExportTraceServiceRequest>(json)?.encode_to_vec(),
        Signal::Metrics => parse::<ExportMetricsServiceRequest>(json)?.encode_to_vec(),
        Signal::Logs => parse::<ExportLogsServiceRequest>(json)?.encode_to_vec(),
    };
    // Offsets into our re-encoding would mean nothing to the sender of the JSON.
    let count = validate(signal, &encoded).map_err(WireError::clear_offset)?;
    Ok((Bytes::from(encoded), count))
}

fn parse<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, WireError> {
    let first_error = match serde_json::from_slice(json) {
        Ok(parsed) => return Ok(parsed),
        Err(e) => e,
    };
    // proto3 JSON reads `null` as "field absent", which opentelemetry-proto does not do for
    // every field (hex ids, for one). Only on this error path: drop null members and retry.
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(json)
        && strip_nulls(&mut value)
        && let Ok(parsed) = serde_json::from_value(value)
    {
        return Ok(parsed);
    }
    Err(WireError::without_position(WireErrorKind::Json(
        first_error.to_string(),
    )))
}

/// Removes object members whose value is `null`, recursively; true if it removed any.
fn strip_nulls(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let before = map.len();
            map.retain(|_, v| !v.is_null());
            let mut removed = map.len() != before;
            for v in map.values_mut() {
                removed |= strip_nulls(v);
            }
            removed
        }
        serde_json::Value::Array(items) => {
            let mut removed = false;
            for v in items {
                removed |= strip_nulls(v);
            }
            removed
        }
        _ => false,
    }
}

/// Renders a protobuf request as OTLP/JSON (for debugging output).
pub fn protobuf_to_json(signal: Signal, buf: &[u8]) -> Result<String, WireError> {
    let rendered = match signal {
        Signal::Traces => serde_json::to_string(&decode::<ExportTraceServiceRequest>(buf)?),
        Signal::Metrics => serde_json::to_string(&decode::<ExportMetricsServiceRequest>(buf)?),
        Signal::Logs => serde_json::to_string(&decode::<ExportLogsServiceRequest>(buf)?),
    };
    rendered.map_err(|e| WireError::without_position(WireErrorKind::Json(e.to_string())))
}

fn decode<T: Message + Default>(buf: &[u8]) -> Result<T, WireError> {
    T::decode(buf).map_err(|e| WireError::without_position(WireErrorKind::Decode(e.to_string())))
}
