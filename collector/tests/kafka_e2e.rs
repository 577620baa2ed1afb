//! Sidecar → Kafka → gateway → backend, with real `sluice` binaries and a real Kafka-protocol
//! broker on loopback (see `kafka_support`): every span a sidecar acknowledged reaches the
//! backend through a gateway killed with `-9`, through a broker restart, through a rebalance
//! between two gateways, and past a record that is not OTLP.

mod kafka_support;
mod support;

use kafka_support::Broker;
use sluice_testkit::otlp::OtlpTestServer;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Sluice, TraceClient, free_port, span_ids, write_config};

/// The tests share two cores with everything else; one broker at a time keeps them steady.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOPIC_PARTITIONS: i32 = 4;

fn sidecar_config(grpc: u16, brokers: &str) -> String {
    format!(
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"

[processors.batch]
type = "batch"
timeout = "20ms"

[exporters.kafka]
type = "kafka"
brokers = ["{brokers}"]
timeout = "10s"
[exporters.kafka.retry]
initial_interval = "50ms"
max_interval = "500ms"

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["kafka"]
"#
    )
}

fn gateway_config(brokers: &str, backend: &str) -> String {
    format!(
        r#"
[receivers.kafka]
type = "kafka"
brokers = ["{brokers}"]
group_id = "gateways"
initial_offset = "earliest"
commit_interval = "200ms"
session_timeout = "6s"
lag_interval = "1s"

[processors.batch]
type = "batch"
timeout = "20ms"

[exporters.tempo]
type = "otlp"
endpoint = "{backend}"
timeout = "5s"
[exporters.tempo.retry]
initial_interval = "20ms"
max_interval = "200ms"

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["kafka"]
processors = ["batch"]
exporters = ["tempo"]
"#
    )
}

/// One broker, one backend, one sidecar; gateways are started by each test.
struct Fleet {
    broker: Broker,
    backend: OtlpTestServer,
    sidecar: Sluice,
    sidecar_grpc: u16,
    dir: tempfile::TempDir,
    gateway_config: PathBuf,
}

impl Fleet {
    async fn start() -> Option<Fleet> {
        let broker = Broker::start().await?;
        broker.create_topic("otlp_spans", TOPIC_PARTITIONS).await;
        let backend = OtlpTestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let sidecar_grpc = free_port();
        let sidecar_cfg = write_config(
            dir.path(),
            "sidecar.toml",
            &sidecar_config(sidecar_grpc, &broker.bootstrap()),
        );
        let sidecar = Sluice::start(&sidecar_cfg, &dir.path().join("sidecar")).await;
        let gateway_config = write_config(
            dir.path(),
            "gateway.toml",
            &gateway_config(&broker.bootstrap(), &backend.grpc_endpoint()),
        );
        Some(Fleet {
            broker,
            backend,
            sidecar,
            sidecar_grpc,
            dir,
            gateway_config,
        })
    }

    async fn gateway(&self, name: &str) -> Sluice {
        Sluice::start(&self.gateway_config, &self.dir.path().join(name)).await
    }

    fn storage(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sends `requests` requests of `spans` spans (one trace per span) to the sidecar, each
    /// retried until acknowledged, pacing itself; returns the acknowledged span ids as they come.
    fn send(
        &self,
        requests: u64,
        spans: usize,
    ) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<u64>>>) {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let endpoint = format!("http://127.0.0.1:{}", self.sidecar_grpc);
        let out = acked.clone();
        let task = tokio::spawn(async move {
            let mut client = TraceClient::new(&endpoint);
            for seed in 0..requests {
                let req = sluice_loadgen::loadgen::build_request(spans, 1, 50_000 + seed);
                let body = bytes::Bytes::from(prost::Message::encode_to_vec(&req));
                loop {
                    match client.send(body.clone()).await {
                        Ok(()) => break,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            client = TraceClient::new(&endpoint);
                        }
                    }
                }
                out.lock().unwrap().extend(span_ids(&req));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        (task, acked)
    }
}

/// Span id → times received.
fn received(backend: &OtlpTestServer) -> HashMap<u64, usize> {
    let mut seen = HashMap::new();
    for span in backend.spans() {
        let id = u64::from_be_bytes(span.span_id.as_slice().try_into().unwrap_or([0; 8]));
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

/// Waits until every acknowledged span arrived; returns (missing, duplicates).
async fn wait_delivered(
    backend: &OtlpTestServer,
    acked: &HashSet<u64>,
    timeout: Duration,
) -> (Vec<u64>, usize) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = received(backend);
        let missing: Vec<u64> = acked
            .iter()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            let duplicates = seen.values().map(|n| n - 1).sum();
            return (missing, duplicates);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn logs(parts: &[(&str, &Sluice)], broker: &Broker) -> String {
    let mut text = String::new();
    for (name, s) in parts {
        text.push_str(&format!("--- {name}:\n{}\n", tail(&s.log_text())));
    }
    text.push_str(&format!("--- broker:\n{}\n", tail(&broker.log_text())));
    text
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn acked_set(acked: &Mutex<Vec<u64>>) -> HashSet<u64> {
    acked.lock().unwrap().iter().copied().collect()
}

async fn wait_acked(acked: &Mutex<Vec<u64>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_to_kafka_to_gateway_delivers_every_span_once() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    let gateway = fleet.gateway("gateway").await;
    let (sender, acked) = fleet.send(150, 8);
    sender.await.unwrap();
    let acked = acked_set(&acked);
    assert_eq!(acked.len(), 1200);
    let (missing, duplicates) =
        wait_delivered(&fleet.backend, &acked, Duration::from_secs(90)).await;
    let logs = || {
        logs(
            &[("sidecar", &fleet.sidecar), ("gateway", &gateway)],
            &fleet.broker,
        )
    };
    assert!(
        missing.is_empty(),
        "{} spans lost; {}",
        missing.len(),
        logs()
    );
    assert_eq!(duplicates, 0, "a clean run redelivers nothing; {}", logs());
    // Each span is a trace of its own, so each went as one record keyed by its trace id.
    let sent = metric_with(
        &fleet.sidecar,
        "sluice_exporter_sent_items_total{",
        &["component_id=\"exporters.kafka\""],
    )
    .await;
    assert_eq!(sent, 1200.0, "{}", logs());
    let accepted = metric_with(
        &gateway,
        "sluice_receiver_accepted_items_total{",
        &["component_id=\"receivers.kafka\""],
    )
    .await;
    assert_eq!(accepted, 1200.0, "{}", logs());
    // Lag is exported per partition once the statistics interval passed; all consumed → 0.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lag_series = 0;
    while Instant::now() < deadline {
        let (_, text) = gateway.get("/metrics").await;
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sluice_kafka_receiver_lag_records{"))
            .collect();
        lag_series = series.len();
        if lag_series == TOPIC_PARTITIONS as usize && series.iter().all(|l| l.ends_with(" 0")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(lag_series, TOPIC_PARTITIONS as usize, "{}", logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_with_sigkill_mid_stream_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    let mut gateway = fleet.gateway("gateway").await;
    let (sender, acked) = fleet.send(400, 5);
    for round in 1..=3 {
        wait_acked(&acked, round * 400).await;
        gateway.kill9();
        gateway = Sluice::start(&fleet.gateway_config, &fleet.storage("gateway")).await;
    }
    sender.await.unwrap();
    let acked = acked_set(&acked);
    assert_eq!(acked.len(), 2000);
    let (missing, duplicates) =
        wait_delivered(&fleet.backend, &acked, Duration::from_secs(120)).await;
    assert!(
        missing.is_empty(),
        "{} spans lost across 3 kill -9; {}",
        missing.len(),
        logs(
            &[("sidecar", &fleet.sidecar), ("gateway", &gateway)],
            &fleet.broker
        )
    );
    // Records spooled after the last commit are read again after a crash: bounded, reported.
    println!("kill -9 x3: 2000 spans delivered, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(mut fleet) = Fleet::start().await else {
        return;
    };
    let gateway = fleet.gateway("gateway").await;
    let (sender, acked) = fleet.send(300, 5);
    wait_acked(&acked, 500).await;
    fleet.broker.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.broker.restart().await;
    sender.await.unwrap();
    let acked = acked_set(&acked);
    assert_eq!(acked.len(), 1500);
    let (missing, duplicates) =
        wait_delivered(&fleet.backend, &acked, Duration::from_secs(120)).await;
    assert!(
        missing.is_empty(),
        "{} spans lost across a broker restart; {}",
        missing.len(),
        logs(
            &[("sidecar", &fleet.sidecar), ("gateway", &gateway)],
            &fleet.broker
        )
    );
    println!("broker restart: 1500 spans delivered, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_partitions_and_one_leaving_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    let mut first = fleet.gateway("gateway-a").await;
    let second = fleet.gateway("gateway-b").await;
    let (sender, acked) = fleet.send(400, 5);
    // Both members consume until each has taken a share, then one leaves mid-stream.
    let accepted = |s| {
        metric_with(
            s,
            "sluice_receiver_accepted_items_total{",
            &["component_id=\"receivers.kafka\""],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (accepted(&first).await == 0.0 || accepted(&second).await == 0.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (first_share, second_share) = (accepted(&first).await, accepted(&second).await);
    let logs_now = logs(&[("a", &first), ("b", &second)], &fleet.broker);
    assert!(
        first_share > 0.0 && second_share > 0.0,
        "both gateways consume: {first_share} / {second_share}; {logs_now}"
    );
    assert!(first.terminate(Duration::from_secs(20)), "{logs_now}");
    sender.await.unwrap();
    let acked = acked_set(&acked);
    assert_eq!(acked.len(), 2000);
    let (missing, duplicates) =
        wait_delivered(&fleet.backend, &acked, Duration::from_secs(120)).await;
    assert!(
        missing.is_empty(),
        "{} spans lost in the rebalance; {}",
        missing.len(),
        logs(
            &[("b", &second), ("sidecar", &fleet.sidecar)],
            &fleet.broker
        )
    );
    // The leaver's partitions may all be consumed before the group notices it left, so the
    // second assignment can come after the last span: wait for it.
    let assigned = || {
        metric_with(
            &second,
            "sluice_kafka_receiver_rebalances_total{",
            &["kind=\"assign\""],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rebalances = assigned().await;
    while rebalances < 2.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rebalances = assigned().await;
    }
    assert!(
        rebalances >= 2.0,
        "the remaining gateway was assigned partitions again: {rebalances}"
    );
    println!("rebalance: 2000 spans delivered, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_is_not_otlp_is_counted_and_skipped() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    // Poison on every partition, before and between valid records.
    for p in 0..8u8 {
        fleet
            .broker
            .produce("otlp_spans", Some(&[p]), b"\xff\xff not protobuf")
            .await;
    }
    let gateway = fleet.gateway("gateway").await;
    let (sender, acked) = fleet.send(100, 4);
    wait_acked(&acked, 200).await;
    // A length prefix that runs past the end.
    fleet
        .broker
        .produce("otlp_spans", None, b"\x0a\xff\xff\xff\x0f\x01")
        .await;
    sender.await.unwrap();
    let acked = acked_set(&acked);
    let (missing, _) = wait_delivered(&fleet.backend, &acked, Duration::from_secs(90)).await;
    let logs = || logs(&[("gateway", &gateway)], &fleet.broker);
    assert!(
        missing.is_empty(),
        "{} spans stuck behind poison; {}",
        missing.len(),
        logs()
    );
    let refused = metric_with(
        &gateway,
        "sluice_receiver_refused_items_total{",
        &["component_id=\"receivers.kafka\"", "reason=\"not_otlp\""],
    )
    .await;
    assert_eq!(refused, 9.0, "{}", logs());
}

/// Sum of the series of `name` carrying every label in `labels`.
async fn metric_with(sluice: &Sluice, name: &str, labels: &[&str]) -> f64 {
    let (_, text) = sluice.get("/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
