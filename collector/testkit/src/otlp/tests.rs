//! The server against raw HTTP and gRPC clients: decoding, refusals, scripts, outages.

use super::*;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ScopeSpans;
use prost::Message;
use sluice_otlp::grpc::RawCodec;
use sluice_otlp::rpc::{RETRY_INFO_TYPE_URL as RETRY_INFO_TYPE, Status as RpcStatus};
use tokio::net::TcpStream;

fn traces(n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![1; 16],
                        span_id: vec![i as u8 + 1; 8],
                        name: format!("span-{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Raw HTTP/1.1 request over a TCP stream, to test the server without any client library.
async fn raw_http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

#[tokio::test]
async fn http_protobuf_gzip_and_json_are_decoded() {
    let server = OtlpTestServer::start().await;
    let body = traces(3).encode_to_vec();
    let (status, head, resp) = raw_http(
        server.http_addr(),
        "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nX-Scope-OrgID: t1",
        &body,
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/x-protobuf")
    );
    assert_eq!(
        ExportTraceServiceResponse::decode(&resp[..]).unwrap(),
        ExportTraceServiceResponse::default()
    );
    let (status, ..) = raw_http(
        server.http_addr(),
        "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf; charset=x\r\nContent-Encoding: gzip",
        &gzip(&body),
    )
    .await;
    assert_eq!(status, 200);
    let json = serde_json::to_vec(&traces(2)).unwrap();
    let (status, head, resp) = raw_http(
        server.http_addr(),
        "POST /v1/traces HTTP/1.1\r\nContent-Type: application/json",
        &json,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase()
            .contains("content-type: application/json")
    );
    assert_eq!(resp, b"{}");
    assert_eq!(server.span_count(), 8);
    let requests = server.requests();
    assert_eq!(requests[0].tenant(), Some("t1"));
    assert_eq!(requests[0].encoding, None);
    assert_eq!(requests[1].encoding.as_deref(), Some("gzip"));
    assert_eq!(requests[2].payload, Payload::Traces(traces(2)));
    assert_eq!(server.spans()[0].span_id, vec![1; 8]);
}

#[tokio::test]
async fn http_refuses_like_a_collector() {
    let server = OtlpTestServer::start().await;
    let addr = server.http_addr();
    let pb = "Content-Type: application/x-protobuf";
    let cases: [(String, Vec<u8>, u16); 6] = [
        (format!("GET /v1/traces HTTP/1.1\r\n{pb}"), vec![], 405),
        (format!("POST /v1/nothing HTTP/1.1\r\n{pb}"), vec![], 404),
        (
            "POST /v1/traces HTTP/1.1\r\nContent-Type: text/plain".into(),
            vec![],
            415,
        ),
        (
            format!("POST /v1/traces HTTP/1.1\r\n{pb}"),
            vec![0xff, 0xff, 0xff],
            400,
        ),
        (
            format!("POST /v1/traces HTTP/1.1\r\n{pb}\r\nContent-Encoding: gzip"),
            b"not gzip".to_vec(),
            400,
        ),
        (
            format!("POST /v1/traces HTTP/1.1\r\n{pb}\r\nContent-Encoding: br"),
            vec![],
            400,
        ),
    ];
    for (head, body, want) in cases {
        let (status, ..) = raw_http(addr, &head, &body).await;
        assert_eq!(status, want, "{head}");
    }
    // A 400 carries a google.rpc.Status in the request's encoding.
    let (_, _, body) = raw_http(
        addr,
        &format!("POST /v1/logs HTTP/1.1\r\n{pb}"),
        &[0x0a, 0x05, 0x01],
    )
    .await;
    let status = RpcStatus::decode(&body[..]).unwrap();
    assert_eq!(status.code, Code::InvalidArgument as i32);
    assert!(
        status.message.contains("unmarshalling"),
        "{}",
        status.message
    );
    assert_eq!(server.request_count(), 0);
    // Every refusal but the 404 (no signal) is recorded.
    assert_eq!(server.invalid_requests().len(), 6);
}

#[tokio::test]
async fn http_scripted_errors_and_partial_success() {
    let server = OtlpTestServer::start().await;
    let date = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
    server.respond_with(Behavior::once(
        Outcome::http(429, "slow down").retry_after(RetryAfter::Seconds(5)),
    ));
    server.respond_with(Behavior::once(
        Outcome::http(503, "later").retry_after(RetryAfter::HttpDate(date)),
    ));
    server.respond_with(Behavior::once(Outcome::partial(2, "too old")));
    let body = traces(3).encode_to_vec();
    let head = "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf";
    let (status, h, resp) = raw_http(server.http_addr(), head, &body).await;
    assert_eq!(status, 429);
    assert!(h.to_lowercase().contains("retry-after: 5"), "{h}");
    let st = RpcStatus::decode(&resp[..]).unwrap();
    assert_eq!(st.message, "slow down");
    assert_eq!(st.details[0].type_url, RETRY_INFO_TYPE);
    let (status, h, _) = raw_http(server.http_addr(), head, &body).await;
    assert_eq!(status, 503);
    assert!(h.contains("Sun, 06 Nov 1994 08:49:37 GMT"), "{h}");
    let (status, _, resp) = raw_http(server.http_addr(), head, &body).await;
    assert_eq!(status, 200);
    let partial = ExportTraceServiceResponse::decode(&resp[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 2);
    // Failed requests are recorded but not stored.
    assert_eq!(server.request_count(), 3);
    assert_eq!(server.span_count(), 3);
    let (status, ..) = raw_http(server.http_addr(), head, &body).await;
    assert_eq!(status, 200);
}

#[test]
fn behaviours_run_in_order() {
    let shared = Shared {
        state: Mutex::new(State::default()),
        changes: watch::channel(0).0,
        options: ServerOptions::default(),
    };
    shared
        .state
        .lock()
        .script
        .push_back(Behavior::next(2, Outcome::http(503, "a")));
    shared
        .state
        .lock()
        .script
        .push_back(Behavior::once(Outcome::partial(1, "b")));
    assert_eq!(shared.next_behavior().0, Outcome::http(503, "a"));
    assert_eq!(shared.next_behavior().0, Outcome::http(503, "a"));
    assert_eq!(shared.next_behavior().0, Outcome::partial(1, "b"));
    assert_eq!(shared.next_behavior().0, Outcome::Success);
}

#[tokio::test]
async fn grpc_unknown_method_and_bad_body() {
    let server = OtlpTestServer::start().await;
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let call = |path: &'static str, body: &'static [u8]| {
        let mut grpc = grpc.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.unary::<Bytes, Bytes, _>(
                tonic::Request::new(Bytes::from_static(body)),
                ::http::uri::PathAndQuery::from_static(path),
                RawCodec,
            )
            .await
        }
    };
    let err = call(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
        b"",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let err = call(TRACES_METHOD, b"\x0a\x05\x01").await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    let ok = call(LOGS_METHOD, b"").await.unwrap().into_inner();
    assert_eq!(
        ExportLogsServiceResponse::decode(ok).unwrap(),
        ExportLogsServiceResponse::default()
    );
    assert_eq!(server.invalid_requests().len(), 2);
    assert_eq!(server.request_count(), 1);
    assert_eq!(server.requests()[0].transport, Transport::Grpc);
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_reuses_ports() {
    let server = OtlpTestServer::start().await;
    let (grpc, http) = (server.grpc_addr(), server.http_addr());
    // An idle open connection must be cut by stop().
    let mut idle = TcpStream::connect(http).await.unwrap();
    server.stop().await;
    assert!(TcpStream::connect(grpc).await.is_err());
    assert!(TcpStream::connect(http).await.is_err());
    // The ports are held meanwhile: nothing else can bind them.
    for addr in [grpc, http] {
        assert!(
            std::net::TcpListener::bind(addr).is_err(),
            "{addr} was free"
        );
    }
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf))
        .await
        .expect("idle connection closed");
    assert!(matches!(read, Ok(0) | Err(_)));
    server.restart().await;
    assert_eq!(server.grpc_addr(), grpc);
    let (status, ..) = raw_http(
        http,
        "POST /v1/metrics HTTP/1.1\r\nContent-Type: application/x-protobuf",
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(server.wait_for_requests(1, Duration::from_secs(1)).await);
    assert!(!server.wait_for_spans(1, Duration::from_millis(50)).await);
}
