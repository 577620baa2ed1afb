//! Intake validation end to end: one bad item is refused alone with OTLP `partial_success`
//! (gRPC, HTTP protobuf, HTTP JSON), the rest is delivered, an all-bad request is refused, and
//! the switch turns it off.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, trace_service_client::TraceServiceClient,
};
use prost::Message;
use reqwest::StatusCode;
use sluice_otlp::rpc;
use tonic::Code;

/// `traces(n)` with span `bad` given an all-zero span id (Tempo refuses the whole request).
fn poisoned(n: usize, bad: usize) -> ExportTraceServiceRequest {
    let mut request = traces(n);
    request.resource_spans[0].scope_spans[0].spans[bad].span_id = vec![0; 8];
    request
}

fn delivered_names(rx: &Running) -> Vec<String> {
    rx.consumer
        .take()
        .iter()
        .flat_map(|item| {
            assert_eq!(
                item.count,
                sluice_otlp::validate(item.signal, &item.payload).unwrap()
            );
            let request = ExportTraceServiceRequest::decode(item.payload.clone()).unwrap();
            request
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .map(|s| s.name)
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn post(rx: &Running, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(rx.http_url("/v1/traces"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn grpc_answers_partial_success_and_delivers_the_rest() {
    let rx = start(TestConsumer::new()).await;
    let mut client = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    let response = client.export(poisoned(3, 1)).await.unwrap().into_inner();
    let partial = response.partial_success.expect("partial_success set");
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(
        partial.error_message,
        "span 1 refused: span_id is all zeros"
    );
    assert_eq!(delivered_names(&rx), ["op-0", "op-2"]);

    // All bad: INVALID_ARGUMENT naming the problem, nothing delivered.
    let mut all_bad = poisoned(2, 0);
    all_bad.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![0; 16];
    let status = client.export(all_bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("2 spans refused; first: span 0"),
        "{}",
        status.message()
    );
    assert!(delivered_names(&rx).is_empty());

    // Valid requests are untouched: no partial_success, the bytes as sent.
    let response = client.export(traces(2)).await.unwrap().into_inner();
    assert_eq!(response.partial_success, None);
    let items = rx.consumer.take();
    assert_eq!(items[0].payload, traces(2).encode_to_vec());
}

#[tokio::test]
async fn http_protobuf_and_json_answer_partial_success() {
    let rx = start(TestConsumer::new()).await;

    let response = post(
        &rx,
        "application/x-protobuf",
        poisoned(4, 3).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = body.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("span_id is all zeros"));
    assert_eq!(delivered_names(&rx), ["op-0", "op-1", "op-2"]);

    let json = serde_json::to_vec(&poisoned(3, 0)).unwrap();
    let response = post(&rx, "application/json", json).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], 1);
    assert_eq!(
        body["partialSuccess"]["errorMessage"],
        "span 0 refused: span_id is all zeros"
    );
    assert_eq!(delivered_names(&rx), ["op-1", "op-2"]);

    // Every span bad: 400 with a google.rpc.Status in the request's encoding.
    let response = post(
        &rx,
        "application/x-protobuf",
        poisoned(1, 0).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let status = rpc::Status::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, Code::InvalidArgument as i32);
    assert_eq!(status.message, "span 0 refused: span_id is all zeros");
    assert!(delivered_names(&rx).is_empty());
}

#[tokio::test]
async fn validation_off_passes_everything_through() {
    let rx = start_with(TestConsumer::new(), "", "[validation]\nenabled = false").await;
    let request = poisoned(2, 0).encode_to_vec();
    let response = post(&rx, "application/x-protobuf", request.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
    let items = rx.consumer.take();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].payload, request);
    assert_eq!(items[0].count, 2);
}
