//! OTLP/gRPC end to end with the generated opentelemetry-proto clients (and a raw client for
//! bytes a generated client would never send).

mod common;

use bytes::Bytes;
use common::*;
use opentelemetry_proto::tonic::collector::{
    logs::v1::logs_service_client::LogsServiceClient,
    metrics::v1::metrics_service_client::MetricsServiceClient,
    trace::v1::trace_service_client::TraceServiceClient,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use sluice_core::{Refusal, Signal};
use std::time::Duration;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_types::StatusExt;

fn with_tenant<T>(message: T, tenant: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-scope-orgid", tenant.parse().unwrap());
    request
}

#[tokio::test]
async fn all_signals_arrive_byte_identical_with_counts_and_tenant() {
    let rx = start(TestConsumer::new()).await;
    let url = rx.grpc_url();

    let trace_req = traces(5);
    let response = TraceServiceClient::connect(url.clone())
        .await
        .unwrap()
        .export(with_tenant(trace_req.clone(), "tenant-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.partial_success, None);

    let metrics_req = metrics();
    MetricsServiceClient::connect(url.clone())
        .await
        .unwrap()
        .export(metrics_req.clone())
        .await
        .unwrap();

    let logs_req = logs(3);
    LogsServiceClient::connect(url.clone())
        .await
        .unwrap()
        .export(with_tenant(logs_req.clone(), "tenant-b"))
        .await
        .unwrap();

    let items = rx.consumer.take();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].signal, Signal::Traces);
    assert_eq!(items[0].count, 5);
    assert_eq!(items[0].payload, Bytes::from(trace_req.encode_to_vec()));
    assert_eq!(items[0].tenant.as_deref(), Some("tenant-a"));
    assert_eq!(items[1].signal, Signal::Metrics);
    assert_eq!(items[1].count, 6);
    assert_eq!(items[1].payload, Bytes::from(metrics_req.encode_to_vec()));
    assert_eq!(items[1].tenant, None);
    assert_eq!(items[2].signal, Signal::Logs);
    assert_eq!(items[2].count, 3);
    assert_eq!(items[2].payload, Bytes::from(logs_req.encode_to_vec()));
    assert_eq!(items[2].tenant.as_deref(), Some("tenant-b"));
    rx.stop().await;
}

#[tokio::test]
async fn gzip_requests_are_accepted() {
    let rx = start(TestConsumer::new()).await;
    let mut client = TraceServiceClient::connect(rx.grpc_url())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let req = traces(50);
    client.export(req.clone()).await.unwrap();
    let items = rx.consumer.take();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].count, 50);
    assert_eq!(items[0].payload, Bytes::from(req.encode_to_vec()));
    rx.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_invalid_argument_and_the_server_keeps_serving() {
    let rx = start(TestConsumer::new()).await;
    let url = rx.grpc_url();
    let good = Bytes::from(traces(2).encode_to_vec());

    // Truncated protobuf.
    let truncated = good.slice(..good.len() - 3);
    let status = raw_grpc_call(&url, TRACE_EXPORT, truncated, false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("ExportTraceServiceRequest"),
        "{}",
        status.message()
    );

    // Valid protobuf, but a 3-byte trace id: a generated client sends it happily.
    let mut bad = traces(1);
    bad.resource_spans[0].scope_spans[0].spans[0] = Span {
        trace_id: vec![1, 2, 3],
        ..Default::default()
    };
    let mut client = TraceServiceClient::connect(url.clone()).await.unwrap();
    let status = client.export(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("resource_spans.scope_spans.spans.trace_id"),
        "{}",
        status.message()
    );

    // Garbage bytes for logs, then an unknown method.
    let status = raw_grpc_call(&url, LOGS_EXPORT, Bytes::from_static(&[0xff; 9]), false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw_grpc_call(
        &url,
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
        good.clone(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    assert!(rx.consumer.take().is_empty());
    // Still serving.
    raw_grpc_call(&url, TRACE_EXPORT, good.clone(), false)
        .await
        .unwrap();
    client.export(traces(1)).await.unwrap();
    assert_eq!(rx.consumer.take().len(), 2);
    rx.stop().await;
}

/// Sends one hand-made gRPC frame over HTTP/2 and returns the answer's `grpc-status`.
async fn grpc_frame_over_h2(url: &str, path: &str, encoding: Option<&str>, message: &[u8]) -> Code {
    let mut frame = vec![u8::from(encoding.is_some())];
    frame.extend((message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut request = client
        .post(format!("{url}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame);
    if let Some(encoding) = encoding {
        request = request.header("grpc-encoding", encoding);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    match response.headers().get("grpc-status") {
        // Errors come trailers-only, with the status in the headers.
        Some(code) => Code::from(code.to_str().unwrap().parse::<i32>().unwrap()),
        None => {
            // Success: one empty, uncompressed response message; the status is in trailers.
            let body = response.bytes().await.unwrap();
            assert_eq!(&body[..], &[0, 0, 0, 0, 0]);
            Code::Ok
        }
    }
}

#[tokio::test]
async fn unsupported_grpc_encoding_is_refused() {
    let rx = start(TestConsumer::new()).await;
    let code = grpc_frame_over_h2(&rx.grpc_url(), TRACE_EXPORT, Some("snappy"), b"xx").await;
    assert_eq!(code, Code::Unimplemented);
    let good = traces(1).encode_to_vec();
    assert_eq!(
        grpc_frame_over_h2(&rx.grpc_url(), TRACE_EXPORT, None, &good).await,
        Code::Ok
    );
    rx.stop().await;
}

#[tokio::test]
async fn empty_request_succeeds_without_an_item() {
    let rx = start(TestConsumer::new()).await;
    let body = raw_grpc_call(&rx.grpc_url(), METRICS_EXPORT, Bytes::new(), false)
        .await
        .unwrap();
    assert!(body.is_empty(), "success is an empty response message");
    assert!(rx.consumer.take().is_empty());
    rx.stop().await;
}

#[tokio::test]
async fn oversized_messages_get_resource_exhausted_without_retry_info() {
    let rx = start_with(TestConsumer::new(), "max_recv_msg_size = \"64KiB\"", "").await;
    let url = rx.grpc_url();
    let big = traces(2000);
    assert!(big.encoded_len() > 64 * 1024);

    // Plain: tonic refuses from the frame header (it says OUT_OF_RANGE, which clients retry;
    // the receiver makes it RESOURCE_EXHAUSTED).
    let mut client = TraceServiceClient::connect(url.clone()).await.unwrap();
    let status = client.export(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.get_details_retry_info().is_none());

    // Compressed small, decompressed over the limit.
    let mut gz_client = TraceServiceClient::connect(url.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let status = gz_client.export(big).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.get_details_retry_info().is_none());

    // A gzip bomb: 100 MiB of zeros in ~100 KiB, framed by hand as a compressed message.
    let bomb = gzip_zeros(100 * 1024 * 1024);
    let started = std::time::Instant::now();
    let code = grpc_frame_over_h2(&url, TRACE_EXPORT, Some("gzip"), &bomb).await;
    assert_eq!(code, Code::ResourceExhausted);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The same bytes flagged uncompressed are over the frame limit as sent.
    let status = raw_grpc_call(&url, TRACE_EXPORT, Bytes::from(bomb), false).await;
    assert_eq!(status.unwrap_err().code(), Code::ResourceExhausted);

    assert!(rx.consumer.take().is_empty());
    client.export(traces(3)).await.unwrap();
    assert_eq!(rx.consumer.take()[0].count, 3);
    rx.stop().await;
}

#[tokio::test]
async fn refusals_map_to_grpc_codes() {
    let consumer = TestConsumer::accepting(&[Signal::Traces, Signal::Metrics]);
    let rx = start(consumer.clone()).await;
    let url = rx.grpc_url();
    let mut traces_client = TraceServiceClient::connect(url.clone()).await.unwrap();

    consumer.refuse_with(Some(backpressure(3)));
    let status = traces_client.export(traces(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status
        .get_details_retry_info()
        .expect("backpressure carries RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));

    consumer.refuse_with(Some(unavailable()));
    let status = traces_client.export(traces(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    consumer.refuse_with(Some(Refusal::Invalid("processor says no".into())));
    let status = traces_client.export(traces(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("processor says no"));

    consumer.refuse_with(None);
    // No pipeline takes logs from this receiver.
    let status = LogsServiceClient::connect(url.clone())
        .await
        .unwrap()
        .export(logs(1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    traces_client.export(traces(2)).await.unwrap();
    let items = consumer.take();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].count, 2);
    rx.stop().await;
}
