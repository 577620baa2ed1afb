//! OTLP wire helpers shared by the receiver, the processors and the exporters.
//!
//! * [`validate`]: a schema-driven walker over the protobuf encoding of an OTLP
//!   `Export*ServiceRequest`. It checks what a decoder would refuse (and the id lengths a Go
//!   collector refuses) and counts the items, without decoding or allocating. This is the hot
//!   path of the traces passthrough.
//! * [`json_to_protobuf`] / [`protobuf_to_json`]: OTLP/JSON conversion.
//! * [`export_response`] / [`status_body`]: the bodies an OTLP server answers with.

mod error;
pub mod grpc;
mod json;
mod response;
mod rules;
mod schema;
mod split;
mod walk;

pub use error::{PathSegment, WireError, WireErrorKind};
pub use json::{json_to_protobuf, protobuf_to_json};
pub use response::{export_response, rpc, status_body};
pub use rules::{Checked, Problem, Reason, Rules, check, filter};
pub use sluice_core::Signal;
pub use split::split;
pub use walk::ShortStringAttribute;

use schema::{LOGS_REQUEST, METRICS_REQUEST, Schema, TRACE_REQUEST};

/// Deepest nesting of messages accepted by [`validate`].
pub const MAX_DEPTH: u32 = walk::MAX_DEPTH;

fn root(signal: Signal) -> (&'static Schema, &'static str) {
    match signal {
        Signal::Traces => (&TRACE_REQUEST, "ExportTraceServiceRequest"),
        Signal::Metrics => (&METRICS_REQUEST, "ExportMetricsServiceRequest"),
        Signal::Logs => (&LOGS_REQUEST, "ExportLogsServiceRequest"),
    }
}

/// Checks that `buf` is a well-formed protobuf `Export*ServiceRequest` of `signal` and returns
/// the number of items in it: spans, data points (of every point kind) or log records.
///
/// Refuses everything prost's decode refuses (bad varints, lengths past the end, wrong wire
/// types for known fields, non-UTF-8 strings, over-deep nesting) plus trace ids that are not
/// 16 bytes and span ids that are not 8 (empty ids are allowed). Unknown fields are skipped.
pub fn validate(signal: Signal, buf: &[u8]) -> Result<u32, WireError> {
    let (schema, name) = root(signal);
    walk::walk(schema, buf).map_err(|e| e.with_root(name))
}

/// Items in a request; 0 when it is not valid. Use [`validate`] where the difference matters.
pub fn count_items(signal: Signal, buf: &[u8]) -> u32 {
    validate(signal, buf).unwrap_or(0)
}
