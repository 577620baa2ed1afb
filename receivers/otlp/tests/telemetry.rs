//! Self-metrics: accepted and refused items by signal and reason, requests by protocol and
//! status. One test, because the recorder is process-global.

mod common;

use common::*;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use sluice_core::telemetry::{RECEIVER_ACCEPTED, RECEIVER_REFUSED, RECEIVER_REQUESTS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Counters by `name{label=value,...}` (labels sorted).
#[derive(Default)]
struct Counters(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let id = format!("{name}{{{}}}", labels.join(","));
        self.0
            .lock()
            .unwrap()
            .get(&id)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

struct TestRecorder(&'static Counters);

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        let cell = self.0.0.lock().unwrap().entry(id).or_default().clone();
        Counter::from_arc(cell)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<&'static Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let counters: &'static Counters = Box::leak(Box::default());
        metrics::set_global_recorder(TestRecorder(counters)).unwrap();
        counters
    })
}

#[tokio::test]
async fn accepted_refused_and_requests_are_counted() {
    let c = counters();
    let consumer = TestConsumer::new();
    let rx = start_with(consumer.clone(), "max_recv_msg_size = \"16KiB\"", "").await;
    let id = ("component_id", "receivers.otlp");
    let client = reqwest::Client::new();
    let post = |path: &str, content_type: &'static str, body: Vec<u8>| {
        client
            .post(rx.http_url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    // Accepted over HTTP and gRPC.
    post(
        "/v1/traces",
        "application/x-protobuf",
        traces(4).encode_to_vec(),
    )
    .await
    .unwrap();
    let mut grpc = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    grpc.export(traces(3)).await.unwrap();
    assert_eq!(c.get(RECEIVER_ACCEPTED, &[id, ("signal", "traces")]), 7);

    // Malformed, wrong type, backpressure (counted in items), too large over gRPC.
    post("/v1/logs", "application/x-protobuf", vec![0xff, 0xff])
        .await
        .unwrap();
    post("/v1/logs", "text/plain", b"x".to_vec()).await.unwrap();
    consumer.refuse_with(Some(backpressure(1)));
    post(
        "/v1/traces",
        "application/x-protobuf",
        traces(5).encode_to_vec(),
    )
    .await
    .unwrap();
    consumer.refuse_with(None);
    assert!(grpc.export(traces(1000)).await.is_err());

    let refused = |signal, reason| {
        c.get(
            RECEIVER_REFUSED,
            &[id, ("signal", signal), ("reason", reason)],
        )
    };
    assert_eq!(refused("logs", "malformed"), 1);
    assert_eq!(refused("logs", "unsupported_media_type"), 1);
    assert_eq!(refused("traces", "spool_full"), 5);
    assert_eq!(refused("traces", "too_large"), 1);

    let requests = |protocol, status| {
        c.get(
            RECEIVER_REQUESTS,
            &[id, ("protocol", protocol), ("status", status)],
        )
    };
    assert_eq!(requests("http", "200"), 1);
    assert_eq!(requests("http", "400"), 1);
    assert_eq!(requests("http", "415"), 1);
    assert_eq!(requests("http", "429"), 1);
    assert_eq!(requests("grpc", "OK"), 1);
    assert_eq!(requests("grpc", "RESOURCE_EXHAUSTED"), 1);

    // Intake validation counts each refused item with its reason; the rest is accepted.
    let mut poisoned = traces(3);
    let spans = &mut poisoned.resource_spans[0].scope_spans[0].spans;
    spans[0].span_id = vec![0; 8];
    spans[1].trace_id = vec![0; 16];
    grpc.export(poisoned).await.unwrap();
    assert_eq!(refused("traces", "invalid_span_id"), 1);
    assert_eq!(refused("traces", "invalid_trace_id"), 1);
    assert_eq!(c.get(RECEIVER_ACCEPTED, &[id, ("signal", "traces")]), 8);
    rx.stop().await;
}
