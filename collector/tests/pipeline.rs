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

async fn rig(server: &OtlpTestServer, extra: &str, batch: sluice_core::batch::BatchConfig) -> Rig {
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
        dead_letter: None,
    };
    let driver = exporter
        .start(spool.reader("tempo").unwrap(), settings)
        .unwrap();
    let ingest = Arc::new(PipelineIngest {
        name: Arc::from("t"),
        processors: None,
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
    let req = sluice_loadgen::loadgen::build_request(spans, 2, seed);
    Item::new(
        Signal::Traces,
        Bytes::from(req.encode_to_vec()),
        spans as u32,
    )
}

fn fast_batch() -> sluice_core::batch::BatchConfig {
    sluice_core::batch::BatchConfig {
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
    let expected =
        sluice_loadgen::loadgen::build_request(50, 2, 7).resource_spans[0].scope_spans[0].spans[3]
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
async fn permanent_rejection_is_split_not_retried_and_next_batches_flow() {
    let server = OtlpTestServer::start().await;
    server.respond_with(Behavior::once(Outcome::grpc(
        tonic::Code::InvalidArgument,
        "bad span",
    )));
    let rig = rig(
        &server,
        "",
        sluice_core::batch::BatchConfig {
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
    // The first batch was refused for good: never resent whole, but split, and its halves
    // (which this backend takes) delivered; the second batch arrived too.
    assert!(server.wait_for_spans(20, Duration::from_secs(10)).await);
    let requests = server.requests();
    let refused: Vec<usize> = requests
        .iter()
        .filter(|r| !r.accepted())
        .map(|r| r.payload.item_count())
        .collect();
    assert_eq!(refused, [10]);
    let accepted: Vec<usize> = requests
        .iter()
        .filter(|r| r.accepted())
        .map(|r| r.payload.item_count())
        .collect();
    assert_eq!(accepted.iter().sum::<usize>(), 20);
    assert_eq!(
        accepted.iter().filter(|&&n| n == 5).count(),
        2,
        "{accepted:?}"
    );
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

#[tokio::test]
async fn a_failing_exporter_never_blocks_another() {
    use sluice_testkit::loki::LokiTestServer;
    let loki = LokiTestServer::start().await;
    loki.stop().await;
    let otlp = OtlpTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["loki".to_string(), "tempo".to_string()];
    let (spool, _) = Spool::open("logs", dir.path(), SpoolConfig::default(), &names).unwrap();
    let loki_cfg = ExporterConfig::parse(
        "loki",
        toml::from_str(&format!(
            "url = \"{}\"\ntenant_id = \"t\"\n[retry]\ninitial_interval = \"20ms\"",
            loki.push_url()
        ))
        .unwrap(),
    )
    .unwrap();
    let otlp_cfg = ExporterConfig::parse(
        "otlp",
        toml::from_str(&format!("endpoint = \"{}\"", otlp.grpc_endpoint())).unwrap(),
    )
    .unwrap();
    for (name, cfg) in [("loki", &loki_cfg), ("tempo", &otlp_cfg)] {
        let settings = DriverSettings {
            component_id: Arc::from(format!("exporters.{name}")),
            pipeline: Arc::from("logs"),
            batch: fast_batch(),
            retry: cfg.retry(),
            dead_letter: None,
        };
        cfg.start(spool.reader(name).unwrap(), settings).unwrap();
    }
    let ingest = Arc::new(PipelineIngest {
        name: Arc::from("logs"),
        processors: None,
        spool: spool.clone(),
    });
    let router = Router::new(vec![(Signal::Logs, ingest)]);
    for batch in 0..20 {
        router
            .consume(Item::new(Signal::Logs, logs_request(50, batch), 50))
            .await
            .unwrap();
    }
    // Loki is down and retrying; the OTLP backend still gets everything, promptly.
    assert!(
        otlp.wait_for_log_records(1000, Duration::from_secs(10))
            .await,
        "got {}",
        otlp.log_record_count()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while spool.cursor("tempo").unwrap().committed < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "tempo's cursor never passed its delivered data"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        spool.cursor("loki").unwrap().committed,
        0,
        "loki's data waits in the spool"
    );
    loki.restart().await;
    assert!(
        loki.wait_for_entries(1000, Duration::from_secs(20)).await,
        "loki catches up after its outage"
    );
    spool.close();
}

/// An OTLP logs request with `n` records.
fn logs_request(n: usize, batch: usize) -> Bytes {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    // Recent timestamps: Loki refuses samples older than a week.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: now_ns + i as u64,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "batch {batch} line {i}"
                ))),
            }),
            ..Default::default()
        })
        .collect();
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(req.encode_to_vec())
}
