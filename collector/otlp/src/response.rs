//! Bodies an OTLP server answers with: `Export*ServiceResponse` on success (with
//! `partial_success` when something was rejected) and `google.rpc.Status` on errors.

use crate::Signal;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse},
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse},
};
use prost::Message;
use std::time::Duration;

/// `google.rpc.Status` and the detail types OTLP uses, for building and parsing error bodies
/// (the messages of `tonic-types` and `prost-types`).
pub mod rpc {
    pub use prost_types::{Any, Duration};
    pub use tonic_types::pb::{RetryInfo, Status};

    pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

    /// The `RetryInfo.retry_delay` detail of `status`, if it carries a valid one.
    pub fn retry_delay(status: &Status) -> Option<std::time::Duration> {
        use prost::Message;
        let detail = status
            .details
            .iter()
            .find(|d| d.type_url == RETRY_INFO_TYPE_URL)?;
        let delay = RetryInfo::decode(detail.value.as_slice())
            .ok()?
            .retry_delay?;
        let secs = u64::try_from(delay.seconds).ok()?;
        let nanos = u32::try_from(delay.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)?;
        Some(std::time::Duration::new(secs, nanos))
    }
}

/// The success body for `signal`: an `Export*ServiceResponse` whose `partial_success` is set
/// only when `rejected > 0` or `message` is non-empty. JSON form is `{}` when empty.
pub fn export_response(signal: Signal, rejected: u64, message: &str, json: bool) -> Bytes {
    let partial = rejected > 0 || !message.is_empty();
    if json {
        if !partial {
            return Bytes::from_static(b"{}");
        }
        let mut inner = serde_json::Map::new();
        if rejected > 0 {
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            // Canonical proto3 JSON writes int64 as a string, but some decoders (e.g.
            // opentelemetry-proto's serde) accept only a number, and every decoder accepts one.
            inner.insert(field.into(), rejected.into());
        }
        if !message.is_empty() {
            inner.insert("errorMessage".into(), message.into());
        }
        let body = serde_json::json!({ "partialSuccess": inner });
        return Bytes::from(body.to_string());
    }
    if !partial {
        return Bytes::new();
    }
    let rejected = i64::try_from(rejected).unwrap_or(i64::MAX);
    let error_message = message.to_owned();
    let encoded = match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message,
            }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message,
            }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message,
            }),
        }
        .encode_to_vec(),
    };
    Bytes::from(encoded)
}

/// An error body: `google.rpc.Status{code, message}` with a `RetryInfo` detail when
/// `retry_after` is set. `code` is a gRPC status code (3 INVALID_ARGUMENT, 8
/// RESOURCE_EXHAUSTED, 14 UNAVAILABLE, ...).
pub fn status_body(code: i32, message: &str, retry_after: Option<Duration>, json: bool) -> Bytes {
    if json {
        let mut body = serde_json::Map::new();
        // proto3 JSON leaves out default values.
        if code != 0 {
            body.insert("code".into(), code.into());
        }
        if !message.is_empty() {
            body.insert("message".into(), message.into());
        }
        if let Some(delay) = retry_after {
            body.insert(
                "details".into(),
                serde_json::json!([{
                    "@type": rpc::RETRY_INFO_TYPE_URL,
                    "retryDelay": json_duration(delay),
                }]),
            );
        }
        return Bytes::from(serde_json::Value::Object(body).to_string());
    }
    let details = retry_after
        .map(|delay| rpc::Any {
            type_url: rpc::RETRY_INFO_TYPE_URL.to_owned(),
            value: rpc::RetryInfo {
                retry_delay: Some(rpc::Duration {
                    seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                    nanos: delay.subsec_nanos() as i32,
                }),
            }
            .encode_to_vec(),
        })
        .into_iter()
        .collect();
    Bytes::from(
        rpc::Status {
            code,
            message: message.to_owned(),
            details,
        }
        .encode_to_vec(),
    )
}

/// proto3 JSON form of a Duration: seconds with 0, 3, 6 or 9 fractional digits and an `s`.
fn json_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{}s", d.as_secs())
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}.{:03}s", d.as_secs(), nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{}.{:06}s", d.as_secs(), nanos / 1_000)
    } else {
        format!("{}.{:09}s", d.as_secs(), nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_durations() {
        assert_eq!(json_duration(Duration::from_secs(5)), "5s");
        assert_eq!(json_duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(json_duration(Duration::from_micros(2)), "0.000002s");
        assert_eq!(json_duration(Duration::from_nanos(7)), "0.000000007s");
    }
}
