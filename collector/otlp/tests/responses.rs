//! Success and error bodies, decoded as a client would decode them.

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
    trace::v1::ExportTraceServiceResponse,
};
use prost::Message;
use sluice_otlp::{Signal, export_response, rpc, status_body};
use std::time::Duration;

#[test]
fn full_success_is_an_empty_message() {
    for signal in Signal::ALL {
        assert!(export_response(signal, 0, "", false).is_empty());
        assert_eq!(&export_response(signal, 0, "", true)[..], b"{}");
    }
}

#[test]
fn partial_success_protobuf() {
    let body = export_response(Signal::Traces, 3, "3 spans too old", false);
    let resp = ExportTraceServiceResponse::decode(body.as_ref()).unwrap();
    let partial = resp.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 3);
    assert_eq!(partial.error_message, "3 spans too old");

    let body = export_response(Signal::Metrics, 7, "", false);
    let resp = ExportMetricsServiceResponse::decode(body.as_ref()).unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_data_points, 7);

    // A warning: nothing rejected, but a message.
    let body = export_response(Signal::Logs, 0, "deprecated field", false);
    let resp = ExportLogsServiceResponse::decode(body.as_ref()).unwrap();
    let partial = resp.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 0);
    assert_eq!(partial.error_message, "deprecated field");
}

#[test]
fn partial_success_json() {
    let body = export_response(Signal::Metrics, 2, "bad \"points\"", true);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"partialSuccess": {"rejectedDataPoints": 2, "errorMessage": "bad \"points\""}})
    );
    // And opentelemetry-proto's own JSON decoding reads it.
    let resp: ExportMetricsServiceResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_data_points, 2);

    let body = export_response(Signal::Logs, 0, "warn", true);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"partialSuccess": {"errorMessage": "warn"}})
    );
}

#[test]
fn status_with_retry_info_protobuf() {
    let body = status_body(8, "queue full", Some(Duration::from_millis(2500)), false);
    let status = rpc::Status::decode(body.as_ref()).unwrap();
    assert_eq!(status.code, 8);
    assert_eq!(status.message, "queue full");
    assert_eq!(status.details.len(), 1);
    assert_eq!(
        status.details[0].type_url,
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    let info = rpc::RetryInfo::decode(status.details[0].value.as_slice()).unwrap();
    let delay = info.retry_delay.unwrap();
    assert_eq!((delay.seconds, delay.nanos), (2, 500_000_000));
    assert_eq!(rpc::retry_delay(&status), Some(Duration::from_millis(2500)));
}

#[test]
fn status_without_retry_info() {
    let body = status_body(3, "bad span", None, false);
    let status = rpc::Status::decode(body.as_ref()).unwrap();
    assert_eq!((status.code, status.message.as_str()), (3, "bad span"));
    assert!(status.details.is_empty());
    assert_eq!(rpc::retry_delay(&status), None);
}

#[test]
fn status_json() {
    let body = status_body(8, "full", Some(Duration::from_secs(5)), true);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "code": 8,
            "message": "full",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}]
        })
    );
    let body = status_body(3, "bad", None, true);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value, serde_json::json!({"code": 3, "message": "bad"}));
}
