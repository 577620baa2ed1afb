//! The pipeline machinery in process: router → spool → shared driver → the real OTLP exporter
//! → the OTLP test backend. Outages, refusals and expiry behave as documented.

use bytes::Bytes;
use prost::Message;
use sluice::pipeline::{DriverSettings, PipelineIngest, Router};
use sluice::registry::ExporterConfig;
use sluice_core::{Consumer, Item, Refusal, Signal};
use sluice_spool::{Fsync, Spool, SpoolConfig};
use sluice_testkit::otlp::{Behavior, OtlpTestServer, Outcome};
use std::sync::Arc;
use std::time::Duration;

struct Rig {
    router: Arc<dyn Consumer>,
    spool: Spool,
    driver: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn rig(server: &OtlpTestServer, extra: &str, batch: sluice_processors::batch::Config) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(
        "t",
        dir.path(),
        SpoolConfig {
            fsync: Fsync::Always,
            ..Default::default()
        },
        &["tempo".to_string()],
    )
    .unwrap();
    let body: toml::Value = toml::from_str(&format!(
        "endpoint = \"{}\"\nprotocol = \"grpc\"\n[retry]\ninitial_interval = \"20ms\"\nmax_interval = \"100ms\"\n{extra}",
        server.grpc_endpoint()
    ))
    .unwrap();
    let exporter = ExporterConfig::parse("otlp", body).unwrap();
    let settings = DriverSettings {
        component_id: Arc::from("exporters.tempo"),
        pipeline: Arc::from("t"),
        batch,
        retry: exporter.retry(),
    };
    let driver = exporter
        .start(spool.reader("tempo").unwrap(), settings)
        .unwrap();
    let ingest = Arc::new(PipelineIngest {
        name: Arc::from("t"),
        processors: vec![],
        spool: spool.clone(),
    });
    Rig {
        router: Arc::new(Router::new(vec![(Signal::Traces, ingest)])),
        spool,
        driver,
        _dir: dir,
    }
}

fn traces(seed: u64, spans: usize) -> Item {
    let req = sluice::loadgen::build_request(spans, 2, seed);
    Item::new(
        Signal::Traces,
        Bytes::from(req.encode_to_vec()),
        spans as u32,
    )
}

fn fast_batch() -> sluice_processors::batch::Config {
    sluice_processors::batch::Config {
        timeout: sluice_core::DurationStr::from_millis(10),
        ..Default::default()
    }
}

#[tokio::test]
async fn items_flow_to_the_backend_and_spool_is_trimmed() {
    let server = OtlpTestServer::start().await;
    let rig = rig(&server, "", fast_batch()).await;
    for seed in 0..20 {
        rig.router
            .consume(traces(seed, 50))
            .await
            .expect("accepted");
    }
    assert!(
        server.wait_for_spans(1000, Duration::from_secs(10)).await,
        "got {}",
        server.span_count()
    );
    // Ids survive the passthrough untouched.
    let expected = sluice::loadgen::build_request(50, 2, 7).resource_spans[0].scope_spans[0].spans
        [3]
    .span_id
    .clone();
    assert!(server.spans().iter().any(|s| s.span_id == expected));
    assert!(!rig.router.accepts(Signal::Metrics));
    assert!(matches!(
        rig.router
            .consume(Item::new(Signal::Metrics, Bytes::new(), 0))
            .await,
        Err(Refusal::NoPipeline(Signal::Metrics))
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rig.spool.cursor("tempo").unwrap().committed,
        20,
        "cursor passed everything delivered"
    );
    rig.spool.close();
    tokio::time::timeout(Duration::from_secs(5), rig.driver)
        .await
        .expect("driver ends after close")
        .unwrap();
}

#[tokio::test]
async fn backend_outage_loses_nothing() {
    let server = OtlpTestServer::start().await;
    server.stop().await;
    let rig = rig(&server, "", fast_batch()).await;
    for seed in 0..30 {
        rig.router
            .consume(traces(seed, 10))
            .await
            .expect("acknowledged while the backend is down");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.span_count(), 0);
    server.restart().await;
    assert!(
        server.wait_for_spans(300, Duration::from_secs(15)).await,
        "got {}",
        server.span_count()
    );
    rig.spool.close();
}

#[tokio::test]
async fn permanent_rejection_is_dropped_and_next_batches_flow() {
    let server = OtlpTestServer::start().await;
    server.respond_with(Behavior::once(Outcome::grpc(
        tonic::Code::InvalidArgument,
        "bad span",
    )));
    let rig = rig(
        &server,
        "",
        sluice_processors::batch::Config {
            send_batch_size: 10,
            ..fast_batch()
        },
    )
    .await;
    rig.router.consume(traces(1, 10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    rig.router.consume(traces(2, 10)).await.unwrap();
    assert!(server.wait_for_spans(10, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The first batch was refused for good (not retried); the second arrived.
    let accepted: usize = server
        .requests()
        .iter()
        .filter(|r| r.accepted())
        .map(|r| r.payload.item_count())
        .sum();
    assert_eq!(accepted, 10);
    rig.spool.close();
}

#[tokio::test]
async fn retryable_errors_are_retried_until_delivered() {
    let server = OtlpTestServer::start().await;
    server.respond_with(Behavior::next(
        3,
        Outcome::grpc(tonic::Code::Unavailable, "try later"),
    ));
    let rig = rig(&server, "", fast_batch()).await;
    rig.router.consume(traces(3, 25)).await.unwrap();
    assert!(server.wait_for_spans(25, Duration::from_secs(10)).await);
    assert!(
        server.request_count() >= 4,
        "3 refusals then success, got {}",
        server.request_count()
    );
    rig.spool.close();
}

#[tokio::test]
async fn max_age_drops_expired_items() {
    let server = OtlpTestServer::start().await;
    server.stop().await;
    let rig = rig(&server, "max_age = \"150ms\"", fast_batch()).await;
    rig.router.consume(traces(4, 5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.restart().await;
    rig.router.consume(traces(5, 7)).await.unwrap();
    assert!(server.wait_for_spans(7, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.span_count(),
        7,
        "the expired item was dropped, the fresh one delivered"
    );
    rig.spool.close();
}
