//! The OTLP exporter against the protocol-faithful test backend, over gRPC and HTTP.

use sluice_testkit::payloads as common;

use common::*;
use sluice_core::{Exporter, Item, SendOutcome, Signal};
use sluice_exporter_otlp::otlp::{self, Compression, Config, OtlpExporter, Protocol};
use sluice_testkit::otlp::{Behavior, OtlpTestServer, Outcome, RetryAfter, Transport};
use std::time::{Duration, SystemTime};
use tonic::Code;

const BOTH: [Protocol; 2] = [Protocol::Grpc, Protocol::Http];

fn exporter(
    server: &OtlpTestServer,
    protocol: Protocol,
    adjust: impl FnOnce(&mut Config),
) -> OtlpExporter {
    let endpoint = match protocol {
        Protocol::Grpc => server.grpc_endpoint(),
        Protocol::Http => server.http_endpoint(),
    };
    let mut config = Config::new(endpoint);
    config.protocol = protocol;
    config.timeout = sluice_core::DurationStr::from_secs(5);
    adjust(&mut config);
    otlp::build(&config, "exporters.test").expect("build")
}

async fn send_all(exporter: &OtlpExporter, batch: &sluice_core::Batch) -> Vec<SendOutcome> {
    let mut outcomes = Vec::new();
    for request in exporter.build_requests(batch) {
        outcomes.push(exporter.send(&request).await);
    }
    outcomes
}

/// Sends one small trace batch and returns the single outcome.
async fn send_one(exporter: &OtlpExporter) -> SendOutcome {
    let b = batch(Signal::Traces, None, vec![trace_item(&traces("svc", 1, 2))]);
    let mut outcomes = send_all(exporter, &b).await;
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

fn transport_of(protocol: Protocol) -> Transport {
    match protocol {
        Protocol::Grpc => Transport::Grpc,
        Protocol::Http => Transport::Http,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_signals_arrive_intact_with_and_without_gzip() {
    for protocol in BOTH {
        for compression in [Compression::Gzip, Compression::None] {
            let server = OtlpTestServer::start().await;
            let exp = exporter(&server, protocol, |c| c.compression = compression);
            let case = format!("{protocol:?}/{compression:?}");

            let t1 = traces("checkout", 1, 3);
            let t2 = traces("payments", 2, 2);
            let outcomes = send_all(
                &exp,
                &batch(Signal::Traces, None, vec![trace_item(&t1), trace_item(&t2)]),
            )
            .await;
            assert_eq!(outcomes, vec![SendOutcome::Sent], "{case}");

            let m = metrics("checkout", 4);
            let outcomes = send_all(
                &exp,
                &batch(Signal::Metrics, None, vec![metric_item(&m, 5)]),
            )
            .await;
            assert_eq!(outcomes, vec![SendOutcome::Sent], "{case}");

            let l = logs("checkout", 3);
            let outcomes = send_all(&exp, &batch(Signal::Logs, None, vec![log_item(&l)])).await;
            assert_eq!(outcomes, vec![SendOutcome::Sent], "{case}");

            // Byte concatenation gave one request holding both resources, unchanged.
            let mut expected_spans = t1.resource_spans.clone();
            expected_spans.extend(t2.resource_spans.clone());
            assert_eq!(server.resource_spans(), expected_spans, "{case}");
            assert_eq!(server.span_count(), 5);
            assert_eq!(server.spans()[0].trace_id, vec![1; 16]);
            assert_eq!(
                server.spans()[3].span_id,
                vec![2, 0, 0xab, 0xcd, 1, 2, 3, 4]
            );
            assert_eq!(server.resource_metrics(), m.resource_metrics, "{case}");
            assert_eq!(server.metric_points(), 5);
            assert_eq!(server.resource_logs(), l.resource_logs, "{case}");
            assert_eq!(server.log_records()[2].trace_id, vec![7; 16]);

            let requests = server.requests();
            assert_eq!(requests.len(), 3, "{case}");
            for r in &requests {
                assert_eq!(r.transport, transport_of(protocol));
                let want = (compression == Compression::Gzip).then(|| "gzip".to_owned());
                assert_eq!(r.encoding, want, "{case}");
                if protocol == Protocol::Http {
                    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
                }
            }
            assert!(server.invalid_requests().is_empty());
        }
    }
}

#[tokio::test]
async fn static_headers_and_tenant_header() {
    for protocol in BOTH {
        let server = OtlpTestServer::start().await;
        let exp = exporter(&server, protocol, |c| {
            c.headers
                .insert("Authorization".into(), "Bearer s3cret".into());
            c.headers
                .insert("X-Scope-OrgID".into(), "static-tenant".into());
        });
        let t = traces("svc", 1, 1);
        send_all(
            &exp,
            &batch(Signal::Traces, Some("tenant-a"), vec![trace_item(&t)]),
        )
        .await;
        send_all(&exp, &batch(Signal::Traces, None, vec![trace_item(&t)])).await;
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{protocol:?}");
        assert_eq!(requests[0].tenant(), Some("tenant-a"), "{protocol:?}");
        assert_eq!(
            requests[0].headers.get_all("x-scope-orgid").iter().count(),
            1
        );
        assert_eq!(requests[1].tenant(), Some("static-tenant"), "{protocol:?}");
        for r in &requests {
            assert_eq!(
                r.header("authorization"),
                Some("Bearer s3cret"),
                "{protocol:?}"
            );
        }
    }
}

#[tokio::test]
async fn requests_are_split_to_respect_max_request_size() {
    for protocol in BOTH {
        let server = OtlpTestServer::start().await;
        let exp = exporter(&server, protocol, |c| {
            c.max_request_size = sluice_core::ByteSize::kib(2);
        });
        // Ten payloads of a few hundred bytes, then one larger than the cap on its own.
        let mut items: Vec<Item> = (0..10).map(|i| trace_item(&traces("svc", i, 3))).collect();
        let item_len = items[0].payload.len();
        assert!((300..1000).contains(&item_len), "{item_len}");
        items.push(trace_item(&traces("big", 99, 40)));
        let big_len = items[10].payload.len();
        assert!(big_len > 2048, "{big_len}");

        let b = batch(Signal::Traces, None, items);
        let requests = exp.build_requests(&b);
        let per_request = 2048 / item_len;
        assert_eq!(
            requests.len(),
            10usize.div_ceil(per_request) + 1,
            "{protocol:?}"
        );
        assert!(
            requests[..requests.len() - 1]
                .iter()
                .all(|r| r.len() <= 2048)
        );
        assert_eq!(requests.last().unwrap().len(), big_len);
        assert_eq!(requests.iter().map(|r| r.items).sum::<u64>(), 70);
        for r in &requests {
            assert_eq!(exp.send(r).await, SendOutcome::Sent);
        }
        let received = server.requests();
        assert_eq!(received.len(), requests.len());
        assert!(
            received
                .iter()
                .all(|r| r.body_len <= 2048 || r.body_len == big_len)
        );
        // Every span arrived, in order.
        let trace_ids: Vec<u8> = server.spans().iter().map(|s| s.trace_id[0]).collect();
        let mut want: Vec<u8> = (0..10).flat_map(|i| [i; 3]).collect();
        want.extend([99; 40]);
        assert_eq!(trace_ids, want);
    }
}

#[tokio::test]
async fn grpc_status_classification() {
    let server = OtlpTestServer::start().await;
    let exp = exporter(&server, Protocol::Grpc, |_| {});
    let retryable = [
        (Code::Cancelled, "client_error"),
        (Code::DeadlineExceeded, "timeout"),
        (Code::Aborted, "server_error"),
        (Code::OutOfRange, "client_error"),
        (Code::Unavailable, "server_error"),
        (Code::DataLoss, "server_error"),
    ];
    for (code, reason) in retryable {
        server.respond_with(Behavior::once(Outcome::grpc(code, "try later")));
        assert_eq!(
            send_one(&exp).await,
            SendOutcome::Retryable {
                reason,
                retry_after: None,
                message: "try later".into()
            }
        );
    }
    // RetryInfo sets the minimum delay of a retryable code.
    server.respond_with(Behavior::once(
        Outcome::grpc(Code::Unavailable, "busy")
            .retry_after(RetryAfter::Delay(Duration::from_millis(1500))),
    ));
    assert_eq!(
        send_one(&exp).await,
        SendOutcome::Retryable {
            reason: "server_error",
            retry_after: Some(Duration::from_millis(1500)),
            message: "busy".into()
        }
    );
    // RESOURCE_EXHAUSTED: retried only with RetryInfo (Tempo's rate limit sends 5 s).
    server.respond_with(Behavior::once(
        Outcome::grpc(Code::ResourceExhausted, "RATE_LIMITED").retry_after(RetryAfter::Seconds(5)),
    ));
    assert_eq!(
        send_one(&exp).await,
        SendOutcome::Retryable {
            reason: "rate_limited",
            retry_after: Some(Duration::from_secs(5)),
            message: "RATE_LIMITED".into()
        }
    );
    server.respond_with(Behavior::once(Outcome::grpc(
        Code::ResourceExhausted,
        "batch size exceeds ingestion limit",
    )));
    assert_eq!(
        send_one(&exp).await,
        SendOutcome::Rejected {
            reason: "rate_limited",
            message: "batch size exceeds ingestion limit".into()
        }
    );
    for (code, reason) in [
        (Code::InvalidArgument, "bad_request"),
        (Code::Unauthenticated, "unauthorized"),
        (Code::PermissionDenied, "forbidden"),
        (Code::Internal, "server_error"),
        (Code::Unknown, "server_error"),
        (Code::Unimplemented, "not_found"),
    ] {
        server.respond_with(Behavior::once(Outcome::grpc(code, "no")));
        assert_eq!(
            send_one(&exp).await,
            SendOutcome::Rejected {
                reason,
                message: "no".into()
            }
        );
    }
    server.respond_with(Behavior::once(Outcome::partial(1, "span too old")));
    assert_eq!(
        send_one(&exp).await,
        SendOutcome::PartiallyRejected {
            rejected: 1,
            message: "span too old".into()
        }
    );
    // Nothing failed was stored; the partial success was.
    assert_eq!(server.span_count(), 2);
    assert_eq!(send_one(&exp).await, SendOutcome::Sent);
}

#[tokio::test]
async fn http_status_classification() {
    let server = OtlpTestServer::start().await;
    let exp = exporter(&server, Protocol::Http, |_| {});

    server.respond_with(Behavior::once(
        Outcome::http(429, "slow down").retry_after(RetryAfter::Seconds(7)),
    ));
    assert_eq!(
        send_one(&exp).await,
        SendOutcome::Retryable {
            reason: "rate_limited",
            retry_after: Some(Duration::from_secs(7)),
            message: "slow down".into()
        }
    );
    // Retry-After as an HTTP-date.
    let at = SystemTime::now() + Duration::from_secs(30);
    server.respond_with(Behavior::once(
        Outcome::http(429, "later").retry_after(RetryAfter::HttpDate(at)),
    ));
    match send_one(&exp).await {
        SendOutcome::Retryable {
            reason: "rate_limited",
            retry_after: Some(d),
            ..
        } => assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
    for (status, reason) in [
        (502, "server_error"),
        (503, "server_error"),
        (504, "server_error"),
    ] {
        server.respond_with(Behavior::once(Outcome::http(status, "gateway trouble")));
        assert_eq!(
            send_one(&exp).await,
            SendOutcome::Retryable {
                reason,
                retry_after: None,
                message: "gateway trouble".into()
            }
        );
    }
    // 500 is permanent in OTLP/HTTP.
    server.respond_with(Behavior::once(Outcome::http(500, "internal error")));
    assert_eq!(
        send_one(&exp).await,
        SendOutcome::Rejected {
            reason: "server_error",
            message: "internal error".into()
        }
    );
    server.respond_with(Behavior::once(Outcome::http(400, "span missing trace id")));
    assert_eq!(
        send_one(&exp).await,
        SendOutcome::Rejected {
            reason: "bad_request",
            message: "span missing trace id".into()
        }
    );
    server.respond_with(Behavior::once(Outcome::http(401, "who are you")));
    assert!(matches!(
        send_one(&exp).await,
        SendOutcome::Rejected {
            reason: "unauthorized",
            ..
        }
    ));
    server.respond_with(Behavior::once(Outcome::partial(2, "too old")));
    assert_eq!(
        send_one(&exp).await,
        SendOutcome::PartiallyRejected {
            rejected: 2,
            message: "too old".into()
        }
    );
    assert_eq!(send_one(&exp).await, SendOutcome::Sent);
    assert_eq!(server.span_count(), 4);
}

#[tokio::test]
async fn undecodable_payload_is_rejected_with_the_backend_message() {
    for (protocol, reason) in [
        (Protocol::Grpc, "server_error"),
        (Protocol::Http, "bad_request"),
    ] {
        let server = OtlpTestServer::start().await;
        let exp = exporter(&server, protocol, |_| {});
        let garbage = Item::new(
            Signal::Traces,
            bytes::Bytes::from_static(b"\x0a\x05\x01"),
            1,
        );
        let outcomes = send_all(&exp, &batch(Signal::Traces, None, vec![garbage])).await;
        match &outcomes[..] {
            [SendOutcome::Rejected { reason: r, message }] => {
                assert_eq!(*r, reason);
                assert!(message.contains("unmarshalling"), "{message}");
            }
            other => panic!("{protocol:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn grpc_message_over_the_server_limit_is_refused() {
    // Why max_request_size defaults to 3 MiB: a gRPC server refuses more than 4 MiB.
    let server = OtlpTestServer::start().await;
    let exp = exporter(&server, Protocol::Grpc, |c| {
        c.max_request_size = sluice_core::ByteSize::mib(16);
    });
    let items: Vec<Item> = (0..12)
        .map(|i| {
            let mut t = traces("svc", i, 1);
            t.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(400 * 1024);
            trace_item(&t)
        })
        .collect();
    let outcomes = send_all(&exp, &batch(Signal::Traces, None, items.clone())).await;
    assert!(
        matches!(
            &outcomes[..],
            [SendOutcome::Rejected {
                reason: "rate_limited",
                ..
            }]
        ),
        "{outcomes:?}"
    );
    // With the default cap the same batch goes through in pieces.
    let exp = exporter(&server, Protocol::Grpc, |_| {});
    let outcomes = send_all(&exp, &batch(Signal::Traces, None, items)).await;
    assert_eq!(outcomes, vec![SendOutcome::Sent; 2]);
    assert_eq!(server.span_count(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_is_retryable_and_recovers_after_restart() {
    for protocol in BOTH {
        let server = OtlpTestServer::start().await;
        let exp = exporter(&server, protocol, |_| {});
        assert_eq!(send_one(&exp).await, SendOutcome::Sent, "{protocol:?}");
        server.stop().await;
        match send_one(&exp).await {
            SendOutcome::Retryable {
                reason,
                retry_after: None,
                ..
            } => assert!(
                // A pooled connection may die mid-request before the reconnect is refused.
                reason == "connect" || reason == "transport",
                "{protocol:?}: {reason}"
            ),
            other => panic!("{protocol:?}: {other:?}"),
        }
        // Once the old connection is torn down (how many attempts that takes depends on the
        // client's reconnect timing under load), attempts are refused connects.
        let mut reasons = Vec::new();
        for _ in 0..20 {
            match send_one(&exp).await {
                SendOutcome::Retryable { reason, .. } => reasons.push(reason),
                other => panic!("{protocol:?}: {other:?}"),
            }
            if reasons.last() == Some(&"connect") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            reasons.last(),
            Some(&"connect"),
            "{protocol:?}: {reasons:?}"
        );
        server.restart().await;
        let mut recovered = false;
        for _ in 0..50 {
            if send_one(&exp).await == SendOutcome::Sent {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "{protocol:?} did not recover after restart");
        assert_eq!(server.span_count(), 4);
    }
}

#[tokio::test]
async fn unreachable_backend_does_not_fail_build() {
    // Take a free port and release it so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for protocol in BOTH {
        let mut config = Config::new(format!("http://127.0.0.1:{port}"));
        config.protocol = protocol;
        let exp = otlp::build(&config, "exporters.down").expect("lazy build");
        match send_one(&exp).await {
            SendOutcome::Retryable { reason, .. } => assert_eq!(reason, "connect", "{protocol:?}"),
            other => panic!("{protocol:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn slow_backend_times_out_as_retryable() {
    for protocol in BOTH {
        let server = OtlpTestServer::start().await;
        let exp = exporter(&server, protocol, |c| {
            c.timeout = sluice_core::DurationStr::from_millis(300);
        });
        server.respond_with(Behavior::once(Outcome::Success).with_delay(Duration::from_secs(3)));
        let started = std::time::Instant::now();
        match send_one(&exp).await {
            SendOutcome::Retryable { reason, .. } => assert_eq!(reason, "timeout", "{protocol:?}"),
            other => panic!("{protocol:?}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        // The abandoned request was not stored; the next one is.
        assert_eq!(send_one(&exp).await, SendOutcome::Sent, "{protocol:?}");
        assert_eq!(server.span_count(), 2, "{protocol:?}");
    }
}

#[tokio::test]
async fn empty_batches_make_no_requests() {
    let server = OtlpTestServer::start().await;
    let exp = exporter(&server, Protocol::Grpc, |_| {});
    assert!(
        exp.build_requests(&batch(Signal::Traces, None, vec![]))
            .is_empty()
    );
    let foreign = batch(Signal::Traces, None, vec![log_item(&logs("svc", 1))]);
    assert!(exp.build_requests(&foreign).is_empty());
}

#[test]
fn grpc_build_outside_a_runtime_is_an_error_not_a_panic() {
    let config = Config::new("http://127.0.0.1:4317");
    let err = otlp::build(&config, "exporters.x").err().expect("error");
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
    let mut http = Config::new("http://127.0.0.1:4318");
    http.protocol = Protocol::Http;
    assert!(otlp::build(&http, "exporters.x").is_ok());
}
