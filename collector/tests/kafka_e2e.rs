//! Sidecar → Kafka → gateway → backend, with real `sluice` binaries and a real Kafka-protocol
//! broker on loopback (see `kafka_support`): every span a sidecar acknowledged reaches the
//! backend through a gateway killed with `-9`, through a broker restart, through a rebalance
//! between two gateways, and past a record that is not OTLP; and over TLS and SASL (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512), where a refused login is counted, named and loses nothing.

mod kafka_support;
mod support;

use kafka_support::{Broker, BrokerSecurity, ClientSecurity, Login};
use sluice_testkit::otlp::OtlpTestServer;
use sluice_testkit::tls::Pki;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Sluice, TraceClient, free_port, span_ids, write_config};

/// The tests share two cores with everything else; one broker at a time keeps them steady.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOPIC_PARTITIONS: i32 = 4;

fn sidecar_config(grpc: u16, brokers: &str, security: &ClientSecurity) -> String {
    let security = security.toml();
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
{security}
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

fn gateway_config(brokers: &str, backend: &str, security: &ClientSecurity) -> String {
    let security = security.toml();
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
{security}

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

/// Spans being sent to the sidecar; `acked` grows as the sidecar acknowledges them.
struct Sending {
    task: tokio::task::JoinHandle<()>,
    acked: Arc<Mutex<Vec<u64>>>,
}

impl Sending {
    async fn wait_acked(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every request was acknowledged; the acknowledged span ids.
    async fn finish(self) -> HashSet<u64> {
        self.task.await.unwrap();
        self.acked.lock().unwrap().iter().copied().collect()
    }
}

impl Fleet {
    async fn start() -> Option<Fleet> {
        Self::start_secured(BrokerSecurity::default(), &ClientSecurity::default()).await
    }

    /// A fleet whose sidecar and gateways connect with `client` to a broker secured with
    /// `security`.
    async fn start_secured(security: BrokerSecurity, client: &ClientSecurity) -> Option<Fleet> {
        let broker = Broker::start_secured(security).await?;
        broker.create_topic("otlp_spans", TOPIC_PARTITIONS).await;
        let backend = OtlpTestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let sidecar_grpc = free_port();
        let sidecar_cfg = write_config(
            dir.path(),
            "sidecar.toml",
            &sidecar_config(sidecar_grpc, &broker.bootstrap(), client),
        );
        let sidecar = Sluice::start(&sidecar_cfg, &dir.path().join("sidecar")).await;
        let gateway_config = write_config(
            dir.path(),
            "gateway.toml",
            &gateway_config(&broker.bootstrap(), &backend.grpc_endpoint(), client),
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
        Sluice::start(&self.gateway_config, &self.storage(name)).await
    }

    fn storage(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Rewrites the sidecar's and the gateways' configs to connect with `client`, and restarts
    /// the sidecar with it on the same spool (killed: what it acknowledged is in the spool, and
    /// a graceful stop would spend `shutdown.timeout` trying to deliver).
    async fn reconnect_with(&mut self, client: &ClientSecurity) {
        let brokers = self.broker.bootstrap();
        let sidecar_cfg = write_config(
            self.dir.path(),
            "sidecar.toml",
            &sidecar_config(self.sidecar_grpc, &brokers, client),
        );
        write_config(
            self.dir.path(),
            "gateway.toml",
            &gateway_config(&brokers, &self.backend.grpc_endpoint(), client),
        );
        self.sidecar.kill9();
        self.sidecar = Sluice::start(&sidecar_cfg, &self.storage("sidecar")).await;
    }

    /// Sends `requests` requests of `spans` spans (one trace per span) to the sidecar, each
    /// retried until acknowledged, pacing itself.
    fn send(&self, requests: u64, spans: usize) -> Sending {
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
        Sending { task, acked }
    }

    /// Waits until all `expected` spans were acknowledged by the sidecar and have reached the
    /// backend; fails naming `what` with the logs of `parts` if one is missing. Returns the
    /// number of duplicates the backend received.
    async fn expect_delivered(
        &self,
        sending: Sending,
        expected: usize,
        parts: &[(&str, &Sluice)],
        what: &str,
    ) -> usize {
        let acked = sending.finish().await;
        assert_eq!(acked.len(), expected);
        let (missing, duplicates) = wait_delivered(
            &self.backend,
            &self.broker,
            &acked,
            Duration::from_secs(120),
        )
        .await;
        assert!(
            missing.is_empty(),
            "{} spans lost {what}; {}",
            missing.len(),
            self.logs(parts)
        );
        duplicates
    }

    /// The tails of the logs of `parts` and of the broker.
    fn logs(&self, parts: &[(&str, &Sluice)]) -> String {
        let mut text = String::new();
        for (name, s) in parts {
            text.push_str(&format!("--- {name}:\n{}\n", tail(&s.log_text())));
        }
        text.push_str(&format!("--- broker:\n{}\n", tail(&self.broker.log_text())));
        text
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

/// Waits until every acknowledged span arrived; returns (missing, duplicates). A test broker
/// whose storage service stopped is restarted, as an operator would restart a wedged broker
/// (`Broker::storage_stopped`): Sluice keeps the spans in its spool and retries meanwhile.
async fn wait_delivered(
    backend: &OtlpTestServer,
    broker: &Broker,
    acked: &HashSet<u64>,
    timeout: Duration,
) -> (Vec<u64>, usize) {
    let deadline = Instant::now() + timeout;
    loop {
        if broker.storage_stopped() {
            eprintln!("the test broker's storage service stopped (tansu); restarting the broker");
            broker.restart().await;
        }
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

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Sum of the series of `name` carrying every label in `labels`.
async fn metric_with(sluice: &Sluice, name: &str, labels: &[&str]) -> f64 {
    let (_, text) = sluice.get("/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Items the gateway's Kafka receiver accepted.
async fn accepted(gateway: &Sluice) -> f64 {
    metric_with(
        gateway,
        "sluice_receiver_accepted_items_total{",
        &["component_id=\"receivers.kafka\""],
    )
    .await
}

/// Waits until `component`'s Kafka client counted an error with `reason`; returns the count.
async fn wait_client_errors(sluice: &Sluice, component: &str, reason: &str) -> f64 {
    let labels = [
        format!("component_id=\"{component}\""),
        format!("reason=\"{reason}\""),
    ];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let errors = metric_with(sluice, "sluice_kafka_client_errors_total{", &labels).await;
        if errors > 0.0 || Instant::now() > deadline {
            return errors;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_to_kafka_to_gateway_delivers_every_span_once() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    let gateway = fleet.gateway("gateway").await;
    let parts = [("sidecar", &fleet.sidecar), ("gateway", &gateway)];
    let duplicates = fleet
        .expect_delivered(fleet.send(150, 8), 1200, &parts, "")
        .await;
    assert_eq!(
        duplicates,
        0,
        "a clean run redelivers nothing; {}",
        fleet.logs(&parts)
    );
    // Each span is a trace of its own, so each went as one record keyed by its trace id.
    let sent = metric_with(
        &fleet.sidecar,
        "sluice_exporter_sent_items_total{",
        &["component_id=\"exporters.kafka\""],
    )
    .await;
    assert_eq!(sent, 1200.0, "{}", fleet.logs(&parts));
    assert_eq!(accepted(&gateway).await, 1200.0, "{}", fleet.logs(&parts));
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
    assert_eq!(
        lag_series,
        TOPIC_PARTITIONS as usize,
        "{}",
        fleet.logs(&parts)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_with_sigkill_mid_stream_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    let mut gateway = fleet.gateway("gateway").await;
    let sending = fleet.send(400, 5);
    for round in 1..=3 {
        sending.wait_acked(round * 400).await;
        gateway.kill9();
        gateway = fleet.gateway("gateway").await;
    }
    let parts = [("sidecar", &fleet.sidecar), ("gateway", &gateway)];
    let duplicates = fleet
        .expect_delivered(sending, 2000, &parts, "across 3 kill -9")
        .await;
    // Records spooled after the last commit are read again after a crash: bounded, reported.
    println!("kill -9 x3: 2000 spans delivered, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    let gateway = fleet.gateway("gateway").await;
    let sending = fleet.send(300, 5);
    sending.wait_acked(500).await;
    fleet.broker.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.broker.restart().await;
    let parts = [("sidecar", &fleet.sidecar), ("gateway", &gateway)];
    let duplicates = fleet
        .expect_delivered(sending, 1500, &parts, "across a broker restart")
        .await;
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
    let sending = fleet.send(400, 5);
    // Both members consume until each has taken a share, then one leaves mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (accepted(&first).await == 0.0 || accepted(&second).await == 0.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (first_share, second_share) = (accepted(&first).await, accepted(&second).await);
    let logs_now = fleet.logs(&[("a", &first), ("b", &second)]);
    assert!(
        first_share > 0.0 && second_share > 0.0,
        "both gateways consume: {first_share} / {second_share}; {logs_now}"
    );
    assert!(first.terminate(Duration::from_secs(20)), "{logs_now}");
    let parts = [("b", &second), ("sidecar", &fleet.sidecar)];
    let duplicates = fleet
        .expect_delivered(sending, 2000, &parts, "in the rebalance")
        .await;
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
    let sending = fleet.send(100, 4);
    sending.wait_acked(200).await;
    // A length prefix that runs past the end.
    fleet
        .broker
        .produce("otlp_spans", None, b"\x0a\xff\xff\xff\x0f\x01")
        .await;
    let parts = [("gateway", &gateway)];
    fleet
        .expect_delivered(sending, 400, &parts, "behind poison")
        .await;
    let refused = metric_with(
        &gateway,
        "sluice_receiver_refused_items_total{",
        &["component_id=\"receivers.kafka\"", "reason=\"not_otlp\""],
    )
    .await;
    assert_eq!(refused, 9.0, "{}", fleet.logs(&parts));
}

/// The sidecar and a gateway connect with `client` to a broker secured with `security`;
/// every span arrives exactly once. Returns the fleet for more checks.
async fn secured_fleet_delivers_every_span(
    security: BrokerSecurity,
    client: ClientSecurity,
) -> Option<Fleet> {
    let fleet = Fleet::start_secured(security, &client).await?;
    let gateway = fleet.gateway("gateway").await;
    let parts = [("sidecar", &fleet.sidecar), ("gateway", &gateway)];
    let duplicates = fleet
        .expect_delivered(fleet.send(40, 5), 200, &parts, "")
        .await;
    assert_eq!(duplicates, 0, "{}", fleet.logs(&parts));
    assert_eq!(accepted(&gateway).await, 200.0, "{}", fleet.logs(&parts));
    drop(gateway);
    Some(fleet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_delivers_every_span() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new(&["127.0.0.1"]);
    let client = ClientSecurity {
        tls: Some(pki.path("")),
        client_cert: true,
        sasl: None,
    };
    let security = BrokerSecurity {
        tls: Some((pki, true)),
        ..Default::default()
    };
    let Some(fleet) = secured_fleet_delivers_every_span(security, client).await else {
        return;
    };
    // A gateway that trusts another CA refuses the broker's certificate: counted, explained.
    let stranger = Pki::new(&["127.0.0.1"]);
    let untrusting = ClientSecurity {
        tls: Some(stranger.path("")),
        client_cert: true,
        sasl: None,
    };
    let config = write_config(
        fleet.dir.path(),
        "untrusting.toml",
        &gateway_config(
            &fleet.broker.bootstrap(),
            &fleet.backend.grpc_endpoint(),
            &untrusting,
        ),
    );
    let refused = Sluice::start(&config, &fleet.storage("untrusting")).await;
    let errors = wait_client_errors(&refused, "receivers.kafka", "connect").await;
    let parts = [("untrusting gateway", &refused)];
    assert!(errors > 0.0, "{}", fleet.logs(&parts));
    assert!(
        refused.log_text().contains("certificate verify failed"),
        "{}",
        fleet.logs(&parts)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_sha_256_delivers_every_span() {
    let _serial = SERIAL.lock().await;
    let login = Login::new("SCRAM-SHA-256", "sidecar", "scram-256-secret");
    let security = BrokerSecurity {
        authentication: true,
        users: vec![login.clone()],
        ..Default::default()
    };
    let client = ClientSecurity {
        sasl: Some(login),
        ..Default::default()
    };
    secured_fleet_delivers_every_span(security, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_sha_512_over_tls_delivers_every_span() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new(&["127.0.0.1"]);
    let login = Login::new("SCRAM-SHA-512", "sidecar", "scram-512-secret");
    let client = ClientSecurity {
        tls: Some(pki.path("")),
        client_cert: false,
        sasl: Some(login.clone()),
    };
    let security = BrokerSecurity {
        tls: Some((pki, false)),
        authentication: true,
        users: vec![login],
    };
    secured_fleet_delivers_every_span(security, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_counted_named_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let login = Login::new("SCRAM-SHA-256", "sidecar", "the-right-password");
    let security = BrokerSecurity {
        authentication: true,
        users: vec![login.clone()],
        ..Default::default()
    };
    let wrong = ClientSecurity {
        sasl: Some(Login::new("SCRAM-SHA-256", "sidecar", "a-wrong-password")),
        ..Default::default()
    };
    let Some(mut fleet) = Fleet::start_secured(security, &wrong).await else {
        return;
    };
    let gateway = fleet.gateway("refused-gateway").await;
    // The sidecar takes the spans into its spool, but Kafka refuses its login.
    let sending = fleet.send(20, 5);
    sending.wait_acked(100).await;
    let parts = [("sidecar", &fleet.sidecar), ("gateway", &gateway)];
    for (sluice, component) in [
        (&fleet.sidecar, "exporters.kafka"),
        (&gateway, "receivers.kafka"),
    ] {
        let errors = wait_client_errors(sluice, component, "unauthorized").await;
        assert!(errors > 0.0, "{component}: {}", fleet.logs(&parts));
        // librdkafka's own explanation reaches the log, with the component's id.
        let log = sluice.log_text();
        assert!(
            log.lines().any(|l| l.contains("kafka client error")
                && l.contains(component)
                && l.contains("uthentication")),
            "{component}: {}",
            fleet.logs(&parts)
        );
    }
    // The records wait in the sidecar's spool: a record that timed out is retried and says
    // why, nothing is sent, nothing is dropped.
    let deadline = Instant::now() + Duration::from_secs(60);
    let retried = || {
        metric_with(
            &fleet.sidecar,
            "sluice_exporter_retries_total{",
            &[
                "component_id=\"exporters.kafka\"",
                "reason=\"unauthorized\"",
            ],
        )
    };
    while retried().await == 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(retried().await > 0.0, "{}", fleet.logs(&parts));
    assert!(fleet.backend.spans().is_empty());
    assert_eq!(accepted(&gateway).await, 0.0);
    // With the right password everything that was acknowledged arrives.
    let mut gateway = gateway;
    assert!(gateway.terminate(Duration::from_secs(30)));
    let right = ClientSecurity {
        sasl: Some(login),
        ..Default::default()
    };
    fleet.reconnect_with(&right).await;
    let gateway = fleet.gateway("gateway").await;
    let parts = [("sidecar", &fleet.sidecar), ("gateway", &gateway)];
    fleet
        .expect_delivered(sending, 100, &parts, "after a refused login")
        .await;
}
