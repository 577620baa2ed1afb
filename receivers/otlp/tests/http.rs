//! OTLP/HTTP end to end with reqwest: encodings, compression, limits, status codes and bodies.

mod common;

use bytes::Bytes;
use common::*;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse,
    metrics::v1::ExportMetricsServiceResponse,
    trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use prost::Message;
use reqwest::StatusCode;
use sluice_core::Signal;
use sluice_otlp::rpc;
use std::time::{Duration, Instant};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Decodes a protobuf `google.rpc.Status` error body.
async fn status_of(response: reqwest::Response) -> rpc::Status {
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    rpc::Status::decode(response.bytes().await.unwrap()).unwrap()
}

async fn json_of(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(response.headers()["content-type"], JSON);
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// A good request still goes through (the server survived whatever came before).
async fn assert_still_serving(rx: &Running) {
    let response = post(&rx.http_url("/v1/logs"), PROTOBUF, logs(1).encode_to_vec()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let items = rx.consumer.take();
    assert_eq!(items.len(), 1, "exactly the good request arrived");
    assert_eq!(items[0].count, 1);
}

#[tokio::test]
async fn all_signals_arrive_byte_identical_with_counts_and_tenant() {
    let rx = start(TestConsumer::new()).await;
    let client = reqwest::Client::new();

    let trace_req = traces(4).encode_to_vec();
    let response = client
        .post(rx.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("X-Scope-OrgID", "team-a")
        .body(trace_req.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    let body = response.bytes().await.unwrap();
    assert_eq!(
        ExportTraceServiceResponse::decode(body).unwrap(),
        ExportTraceServiceResponse::default()
    );

    let metrics_req = metrics().encode_to_vec();
    let response = post(&rx.http_url("/v1/metrics"), PROTOBUF, metrics_req.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    assert_eq!(
        ExportMetricsServiceResponse::decode(body).unwrap(),
        ExportMetricsServiceResponse::default()
    );

    let logs_req = logs(7).encode_to_vec();
    let response = client
        .post(rx.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf; charset=binary")
        .header("x-scope-orgid", "team-b")
        .body(logs_req.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        ExportLogsServiceResponse::decode(response.bytes().await.unwrap()).unwrap(),
        ExportLogsServiceResponse::default()
    );

    let items = rx.consumer.take();
    assert_eq!(items.len(), 3);
    assert_eq!(
        (items[0].signal, items[0].count, items[0].tenant.as_deref()),
        (Signal::Traces, 4, Some("team-a"))
    );
    assert_eq!(items[0].payload, Bytes::from(trace_req));
    assert_eq!(
        (items[1].signal, items[1].count, items[1].tenant.as_deref()),
        (Signal::Metrics, 6, None)
    );
    assert_eq!(items[1].payload, Bytes::from(metrics_req));
    assert_eq!(
        (items[2].signal, items[2].count, items[2].tenant.as_deref()),
        (Signal::Logs, 7, Some("team-b"))
    );
    assert_eq!(items[2].payload, Bytes::from(logs_req));
    rx.stop().await;
}

#[tokio::test]
async fn json_requests_are_converted_to_protobuf() {
    let rx = start(TestConsumer::new()).await;
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
        "scopeSpans":[{"spans":[
            {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","name":"a",
             "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
             "attributes":[{"key":"n","value":{"intValue":"42"}}],"unknownField":true},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"0000000000000002","name":"b"}
        ]}]}]}"#;
    let response = post(
        &rx.http_url("/v1/traces"),
        "application/json; charset=utf-8",
        json,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await, serde_json::json!({}));

    let items = rx.consumer.take();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].count, 2);
    let decoded = ExportTraceServiceRequest::decode(items[0].payload.clone()).unwrap();
    let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        span.trace_id,
        [
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    rx.stop().await;
}

#[tokio::test]
async fn gzip_and_deflate_bodies_are_decompressed() {
    let rx = start(TestConsumer::new()).await;
    let client = reqwest::Client::new();
    let req = traces(30).encode_to_vec();
    let response = client
        .post(rx.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(gzip(&req))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let json =
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
    let response = client
        .post(rx.http_url("/v1/logs"))
        .header("content-type", JSON)
        .header("content-encoding", "gzip")
        .body(gzip(json))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut zlib, &req).unwrap();
    let response = client
        .post(rx.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "deflate")
        .body(zlib.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let items = rx.consumer.take();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].payload, Bytes::from(req.clone()));
    assert_eq!(items[0].count, 30);
    assert_eq!((items[1].signal, items[1].count), (Signal::Logs, 1));
    assert_eq!(items[2].payload, Bytes::from(req));
    rx.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_status_in_the_request_encoding() {
    let rx = start(TestConsumer::new()).await;
    let good = traces(3).encode_to_vec();

    let response = post(
        &rx.http_url("/v1/traces"),
        PROTOBUF,
        good[..good.len() - 5].to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let status = status_of(response).await;
    assert_eq!(status.code, 3);
    assert!(
        status.message.starts_with("ExportTraceServiceRequest"),
        "{}",
        status.message
    );
    assert_still_serving(&rx).await;

    let response = post(&rx.http_url("/v1/traces"), JSON, "{\"resourceSpans\": [").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert_eq!(body["code"], 3);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("invalid OTLP/JSON"),
        "{body}"
    );
    assert_still_serving(&rx).await;

    // JSON with a trace id of the wrong length.
    let response = post(
        &rx.http_url("/v1/traces"),
        JSON,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102"}]}]}]}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert!(
        body["message"].as_str().unwrap().contains("trace_id"),
        "{body}"
    );
    assert_still_serving(&rx).await;

    // Corrupt gzip.
    let mut gz = gzip(&good);
    let mid = gz.len() / 2;
    gz[mid] ^= 0x55;
    let response = reqwest::Client::new()
        .post(rx.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(status_of(response).await.code, 3);
    assert_still_serving(&rx).await;

    // An encoding we do not speak.
    let response = reqwest::Client::new()
        .post(rx.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "br")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        status_of(response)
            .await
            .message
            .contains("Content-Encoding")
    );
    assert_still_serving(&rx).await;
    rx.stop().await;
}

#[tokio::test]
async fn wrong_method_type_or_path_are_refused() {
    let rx = start(TestConsumer::new()).await;
    let client = reqwest::Client::new();

    let response = client.get(rx.http_url("/v1/traces")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    assert_still_serving(&rx).await;

    let response = post(&rx.http_url("/v1/metrics"), "text/plain", "hello").await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = client
        .post(rx.http_url("/v1/metrics"))
        .body(metrics().encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no Content-Type"
    );
    assert_still_serving(&rx).await;

    for path in ["/v1/profiles", "/v1/traces/", "/", "/v2/logs"] {
        let response = post(&rx.http_url(path), PROTOBUF, logs(1).encode_to_vec()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_still_serving(&rx).await;
    rx.stop().await;
}

#[tokio::test]
async fn empty_body_succeeds_without_an_item() {
    let rx = start(TestConsumer::new()).await;
    let response = post(&rx.http_url("/v1/traces"), PROTOBUF, Vec::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
    let response = post(&rx.http_url("/v1/logs"), JSON, "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await, serde_json::json!({}));
    assert!(rx.consumer.take().is_empty());
    rx.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let rx = start_with(
        TestConsumer::new(),
        "",
        "max_request_body_size = \"64KiB\"\nmax_decompressed_size = \"256KiB\"",
    )
    .await;
    let big = traces(2000).encode_to_vec();
    assert!(big.len() > 64 * 1024);

    // Declared by Content-Length.
    let response = post(&rx.http_url("/v1/traces"), PROTOBUF, big.clone()).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let status = status_of(response).await;
    assert_eq!(status.code, 8);
    assert!(status.details.is_empty(), "no RetryInfo: not retryable");
    assert_still_serving(&rx).await;

    // Chunked, no Content-Length: the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let response = post(
        &rx.http_url("/v1/traces"),
        PROTOBUF,
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_still_serving(&rx).await;

    // Small compressed, over the decompressed cap; answered in JSON for a JSON request.
    let response = reqwest::Client::new()
        .post(rx.http_url("/v1/traces"))
        .header("content-type", JSON)
        .header("content-encoding", "gzip")
        .body(gzip_zeros(1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = json_of(response).await;
    assert_eq!(body["code"], 8);
    assert!(body.get("details").is_none());
    assert_still_serving(&rx).await;
    rx.stop().await;
}

#[tokio::test]
async fn gzip_bomb_gets_413_quickly() {
    // Defaults: 20 MiB compressed, 64 MiB decompressed.
    let rx = start(TestConsumer::new()).await;
    let bomb = gzip_zeros(100 * 1024 * 1024);
    assert!(bomb.len() < 1024 * 1024);
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(rx.http_url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        status_of(response)
            .await
            .message
            .contains("max_decompressed_size")
    );
    assert_still_serving(&rx).await;
    rx.stop().await;
}

#[tokio::test]
async fn refusals_map_to_http_statuses() {
    let consumer = TestConsumer::accepting(&[Signal::Traces, Signal::Logs]);
    let rx = start(consumer.clone()).await;
    let body = traces(2).encode_to_vec();

    consumer.refuse_with(Some(backpressure(7)));
    let response = post(&rx.http_url("/v1/traces"), PROTOBUF, body.clone()).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    let status = status_of(response).await;
    assert_eq!(status.code, 8);
    assert_eq!(rpc::retry_delay(&status), Some(Duration::from_secs(7)));

    // JSON clients get JSON.
    let response = post(&rx.http_url("/v1/traces"), JSON, "{}").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an empty request needs no pipeline"
    );
    let response = post(
        &rx.http_url("/v1/logs"),
        JSON,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let value = json_of(response).await;
    assert_eq!(value["details"][0]["retryDelay"], "7s");

    consumer.refuse_with(Some(unavailable()));
    let response = post(&rx.http_url("/v1/traces"), PROTOBUF, body.clone()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(status_of(response).await.code, 14);

    consumer.refuse_with(None);
    // Metrics are not wired to this receiver.
    let response = post(
        &rx.http_url("/v1/metrics"),
        PROTOBUF,
        metrics().encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(status_of(response).await.code, 12);

    let response = post(&rx.http_url("/v1/traces"), PROTOBUF, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(rx.consumer.take().len(), 1);
    rx.stop().await;
}
