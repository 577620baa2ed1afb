//! Zero loss, tested against the real binary: SIGKILL at random (seeded) moments during a
//! backend outage, a flapping backend, a full spool, and damaged spool files. Every span a
//! client got an OK for must reach the backend.
//!
//! `SLUICE_CHAOS_SEED` replays a run; the seed is printed either way.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_testkit::otlp::OtlpTestServer;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Sluice, TraceClient, free_port, span_ids, write_config};

fn config(grpc: u16, backend: &str, spool: &str) -> String {
    config_with_raw(grpc, free_port(), backend, spool)
}

/// Also a receiver on `raw_http` with intake validation off, through which a poison span
/// reaches the exporter (docs/validation.md).
fn config_with_raw(grpc: u16, raw_http: u16, backend: &str, spool: &str) -> String {
    format!(
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"

[receivers.raw]
type = "otlp"
[receivers.raw.http]
endpoint = "127.0.0.1:{raw_http}"
[receivers.raw.validation]
enabled = false

[processors.batch]
type = "batch"
timeout = "20ms"

[exporters.tempo]
type = "otlp"
endpoint = "{backend}"
timeout = "2s"
[exporters.tempo.retry]
initial_interval = "20ms"
max_interval = "200ms"

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp", "raw"]
processors = ["batch"]
exporters = ["tempo"]
[pipelines.spool]
{spool}
"#
    )
}

/// Sends `requests` requests of `spans` spans from `clients` concurrent clients, retrying each
/// until acknowledged (as a real OTLP client would), and records acknowledged span ids.
fn spawn_senders(
    endpoint: String,
    requests: u64,
    spans: usize,
    clients: u64,
    acked: Arc<Mutex<Vec<u64>>>,
    refusals: Arc<Mutex<Vec<tonic::Code>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let endpoint = endpoint.clone();
            let acked = acked.clone();
            let refusals = refusals.clone();
            tokio::spawn(async move {
                let mut client = TraceClient::new(&endpoint);
                let mut seed = c;
                while seed < requests {
                    let req = sluice_loadgen::loadgen::build_request(spans, 1, 10_000 + seed);
                    let body = bytes::Bytes::from(prost::Message::encode_to_vec(&req));
                    loop {
                        match client.send(body.clone()).await {
                            Ok(()) => {
                                acked.lock().unwrap().extend(span_ids(&req));
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                break;
                            }
                            Err(status) => {
                                refusals.lock().unwrap().push(status.code());
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                client = TraceClient::new(&endpoint);
                            }
                        }
                    }
                    seed += clients;
                }
            })
        })
        .collect()
}

/// Sends 5 requests of 20 spans, each with one all-zero span id, through the receiver with
/// validation off, retrying until acknowledged. Returns the ids of their valid spans and the
/// trace ids (hex) of the poison spans.
fn spawn_poison_sender(raw_http: u16) -> tokio::task::JoinHandle<(HashSet<u64>, HashSet<String>)> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let (mut valid, mut poison) = (HashSet::new(), HashSet::new());
        for k in 0..5 {
            let mut req = sluice_loadgen::loadgen::build_request(20, 1, 900_000 + k);
            let span = &mut req.resource_spans[0].scope_spans[0].spans[3];
            span.span_id = vec![0; 8];
            poison.insert(hex::encode(&span.trace_id));
            let body = prost::Message::encode_to_vec(&req);
            loop {
                let sent = client
                    .post(format!("http://127.0.0.1:{raw_http}/v1/traces"))
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status() == 200) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            valid.extend(span_ids(&req).into_iter().filter(|id| *id != 0));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        (valid, poison)
    })
}

/// Trace ids (hex) of the spans in the dead-letter store; every entry must hold one span.
async fn dead_lettered_traces(sluice: &Sluice) -> HashSet<String> {
    let (code, text) = sluice.get("/api/v1/dead-letter").await;
    assert_eq!(code, 200, "{text}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut traces = HashSet::new();
    for entry in entries {
        assert_eq!(entry["items"], 1, "{entry}");
        let id = entry["id"].as_str().unwrap();
        let (_, shown) = sluice.get(&format!("/api/v1/dead-letter/{id}")).await;
        let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
        let span = &shown["payload"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["spanId"], "0000000000000000");
        traces.insert(span["traceId"].as_str().unwrap().to_lowercase());
    }
    traces
}

fn received_ids(server: &OtlpTestServer) -> Vec<u64> {
    server
        .spans()
        .iter()
        .map(|s| u64::from_be_bytes(s.span_id.as_slice().try_into().unwrap_or([0; 8])))
        .collect()
}

/// Waits until every acknowledged id arrived; returns (missing, received total).
async fn wait_all_arrived(
    server: &OtlpTestServer,
    acked: &HashSet<u64>,
    timeout: Duration,
) -> (Vec<u64>, usize) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = received_ids(server);
        let have: HashSet<u64> = got.iter().copied().collect();
        let missing: Vec<u64> = acked
            .iter()
            .filter(|id| !have.contains(id))
            .copied()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            return (missing, got.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_backend_outage_loses_no_acknowledged_span() {
    let seed: u64 = std::env::var("SLUICE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122);
    println!("chaos seed {seed} (set SLUICE_CHAOS_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let backend = OtlpTestServer::start().await;
    // Tempo's refusal of a whole request holding a zero span id.
    backend.refuse_zero_ids(true);
    backend.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, raw_http) = (free_port(), free_port());
    let cfg = write_config(
        dir.path(),
        "sluice.toml",
        &config_with_raw(
            grpc,
            raw_http,
            &backend.grpc_endpoint(),
            "fsync = \"always\"",
        ),
    );
    let storage = dir.path().join("data");
    let mut sluice = Sluice::start(&cfg, &storage).await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let refusals = Arc::new(Mutex::new(Vec::new()));
    // 5000 requests x 20 spans = 100,000 spans; clients pace themselves so intake lasts long
    // enough for the kills to land in the middle of it.
    let senders = spawn_senders(
        format!("http://127.0.0.1:{grpc}"),
        5000,
        20,
        4,
        acked.clone(),
        refusals.clone(),
    );
    let poison = spawn_poison_sender(raw_http);
    let (mut kills, mut kills_during_intake) = (0, 0);
    while kills < 6 || (senders.iter().any(|s| !s.is_finished()) && kills < 12) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        if senders.iter().any(|s| !s.is_finished()) {
            kills_during_intake += 1;
        }
        sluice.kill9();
        kills += 1;
        sluice = Sluice::start(&cfg, &storage).await;
    }
    assert!(
        kills_during_intake >= 5,
        "only {kills_during_intake} kills hit while clients were sending"
    );
    for s in senders {
        s.await.unwrap();
    }
    let (poison_valid, poison_traces) = poison.await.unwrap();
    // One more kill after everything was acknowledged, then the backend comes back.
    sluice.kill9();
    sluice = Sluice::start(&cfg, &storage).await;
    backend.restart().await;

    let acked: HashSet<u64> = acked.lock().unwrap().iter().copied().collect();
    assert_eq!(
        acked.len(),
        100_000,
        "every request was eventually acknowledged"
    );
    let (missing, received) = wait_all_arrived(&backend, &acked, Duration::from_secs(90)).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost, e.g. {:?}; log:\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        sluice.log_text()
    );
    // The valid spans of the poison requests arrived; each poison span is in the dead-letter
    // store (maybe twice: a kill during isolation redoes the uncommitted range).
    let (missing, _) = wait_all_arrived(&backend, &poison_valid, Duration::from_secs(30)).await;
    assert!(
        missing.is_empty(),
        "{} valid poison-request spans lost",
        missing.len()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dead = dead_lettered_traces(&sluice).await;
        if dead == poison_traces {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters {dead:?}, want {poison_traces:?}; log:\n{}",
            sluice.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dupes = received - acked.len();
    println!(
        "chaos: {kills} SIGKILLs ({kills_during_intake} during intake), {} acknowledged spans all delivered, {} duplicates (ratio {:.4}), {} client retries",
        acked.len(),
        dupes,
        dupes as f64 / acked.len() as f64,
        refusals.lock().unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_backend_under_load_loses_nothing() {
    let backend = Arc::new(OtlpTestServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let cfg = write_config(
        dir.path(),
        "sluice.toml",
        &config(grpc, &backend.grpc_endpoint(), "fsync = \"interval\""),
    );
    let _sluice = Sluice::start(&cfg, &dir.path().join("data")).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let senders = spawn_senders(
        format!("http://127.0.0.1:{grpc}"),
        400,
        50,
        4,
        acked.clone(),
        refusals,
    );
    let flapper = {
        let backend = backend.clone();
        tokio::spawn(async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                backend.stop().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                backend.restart().await;
            }
        })
    };
    for s in senders {
        s.await.unwrap();
    }
    flapper.await.unwrap();
    let acked: HashSet<u64> = acked.lock().unwrap().iter().copied().collect();
    assert_eq!(acked.len(), 20_000);
    let (missing, received) = wait_all_arrived(&backend, &acked, Duration::from_secs(60)).await;
    assert!(missing.is_empty(), "{} lost", missing.len());
    println!(
        "flapping: {} spans delivered, {} duplicates",
        acked.len(),
        received - acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_refuses_retryably_then_resumes() {
    let backend = OtlpTestServer::start().await;
    backend.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let spool = "fsync = \"interval\"\nmax_bytes = \"256KiB\"\nsegment_bytes = \"64KiB\"";
    let cfg = write_config(
        dir.path(),
        "sluice.toml",
        &config(grpc, &backend.grpc_endpoint(), spool),
    );
    let sluice = Sluice::start(&cfg, &dir.path().join("data")).await;
    let mut client = TraceClient::new(&format!("http://127.0.0.1:{grpc}"));
    let mut acked = HashSet::new();
    let mut refused = None;
    // The spool compresses what it stores, so this takes a few hundred requests.
    for seed in 0..20_000u64 {
        let req = sluice_loadgen::loadgen::build_request(20, 1, 50_000 + seed);
        match client
            .send(prost::Message::encode_to_vec(&req).into())
            .await
        {
            Ok(()) => acked.extend(span_ids(&req)),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("a 256KiB spool must fill up");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let details = tonic_types::StatusExt::get_details_retry_info(&status);
    assert!(
        details.is_some(),
        "RESOURCE_EXHAUSTED carries RetryInfo so clients retry"
    );
    let refused_count = sluice
        .metric("sluice_receiver_refused_items_total{component_id=\"receivers.otlp\"")
        .await;
    assert!(refused_count > 0.0);

    backend.restart().await;
    // Intake resumes once the exporter drains the spool.
    let req = sluice_loadgen::loadgen::build_request(20, 1, 99_999);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client
            .send(prost::Message::encode_to_vec(&req).into())
            .await
            .is_ok()
        {
            acked.extend(span_ids(&req));
            break;
        }
        assert!(Instant::now() < deadline, "intake did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (missing, _) = wait_all_arrived(&backend, &acked, Duration::from_secs(30)).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost",
        missing.len()
    );
}

/// Offsets of each record in a segment file (`len u32 | crc u32 | body`).
fn record_offsets(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, 8 + len));
        at += 8 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_spool_files_are_recovered_at_start() {
    let backend = OtlpTestServer::start().await;
    backend.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let cfg = write_config(
        dir.path(),
        "sluice.toml",
        &config(grpc, &backend.grpc_endpoint(), "fsync = \"always\""),
    );
    let storage = dir.path().join("data");
    let mut sluice = Sluice::start(&cfg, &storage).await;
    let mut client = TraceClient::new(&format!("http://127.0.0.1:{grpc}"));
    let mut requests = Vec::new();
    for seed in 0..10u64 {
        let req = sluice_loadgen::loadgen::build_request(10, 1, 70_000 + seed);
        client
            .send(prost::Message::encode_to_vec(&req).into())
            .await
            .unwrap();
        requests.push(req);
    }
    sluice.kill9();

    // Flip a byte inside record 4, append half a record (torn write), damage the cursor.
    let spool_dir = storage.join("pipelines/traces");
    let seg = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let mut data = std::fs::read(&seg).unwrap();
    let records = record_offsets(&data);
    assert_eq!(records.len(), 10);
    let (at, len) = records[4];
    data[at + len - 3] ^= 0xff;
    let torn = data[records[0].0..records[0].0 + records[0].1 / 2].to_vec();
    data.extend_from_slice(&torn);
    std::fs::write(&seg, &data).unwrap();
    std::fs::write(spool_dir.join("cursors/tempo.cursor"), b"not a cursor").unwrap();

    backend.restart().await;
    let sluice = Sluice::start(&cfg, &storage).await;
    let expected: HashSet<u64> = requests
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .flat_map(|(_, r)| span_ids(r))
        .collect();
    let (missing, _) = wait_all_arrived(&backend, &expected, Duration::from_secs(30)).await;
    assert!(
        missing.is_empty(),
        "undamaged records must all be delivered"
    );
    let damaged: HashSet<u64> = span_ids(&requests[4]).into_iter().collect();
    assert!(
        received_ids(&backend)
            .iter()
            .all(|id| !damaged.contains(id)),
        "the damaged record is skipped, not sent"
    );
    assert_eq!(
        sluice.metric("sluice_spool_corrupt_records_total").await,
        1.0
    );
    assert!(Path::new(&seg).exists());
}

/// One gauge point per series for `series` series at timestamp `ts_ms`, value = `round`.
fn metrics_request(
    round: u64,
    series: u64,
    ts_ms: u64,
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    let points = (0..series)
        .map(|s| NumberDataPoint {
            attributes: vec![KeyValue {
                key: "series".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s.to_string())),
                }),
                ..Default::default()
            }],
            time_unix_nano: ts_ms * 1_000_000,
            value: Some(number_data_point::Value::AsDouble(round as f64)),
            ..Default::default()
        })
        .collect();
    opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "chaos.points".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_real_prometheus_down_loses_no_acknowledged_sample() {
    let seed: u64 = std::env::var("SLUICE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let prom_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let cfg = write_config(
        dir.path(),
        "sluice.toml",
        &format!(
            r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.http]
endpoint = "127.0.0.1:{http}"
[processors.batch]
type = "batch"
timeout = "20ms"
[exporters.mimir]
type = "prometheus_remote_write"
url = "http://127.0.0.1:{prom_port}/api/v1/write"
shards = 8
[exporters.mimir.retry]
initial_interval = "20ms"
max_interval = "200ms"
[[pipelines]]
name = "metrics"
signals = ["metrics"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["mimir"]
[pipelines.spool]
fsync = "always"
"#
        ),
    );
    let storage = dir.path().join("data");
    let mut sluice = Sluice::start(&cfg, &storage).await;

    // 200 rounds x 500 series = 100,000 samples, each series in time order. The client resends
    // a round until it is acknowledged, as OTLP clients do.
    let base_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 300_000;
    let acked = Arc::new(Mutex::new(0u64));
    let sender = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for round in 0..200u64 {
                let body = prost::Message::encode_to_vec(&metrics_request(
                    round,
                    500,
                    base_ms + round * 1000,
                ));
                loop {
                    let sent = client
                        .post(format!("http://127.0.0.1:{http}/v1/metrics"))
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone())
                        .send()
                        .await;
                    if matches!(&sent, Ok(r) if r.status().is_success()) {
                        *acked.lock().unwrap() += 500;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut kills_during_intake = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..300))).await;
        if !sender.is_finished() {
            kills_during_intake += 1;
        }
        sluice.kill9();
        sluice = Sluice::start(&cfg, &storage).await;
    }
    sender.await.unwrap();
    assert!(
        kills_during_intake >= 5,
        "only {kills_during_intake} kills during intake"
    );
    assert_eq!(*acked.lock().unwrap(), 100_000);

    // The backend comes up where Sluice has been retrying all along.
    let prom = sluice_testkit::prometheus::PrometheusServer::start_on(prom_port).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let query = "sum(count_over_time(chaos_points[10m]))";
    let stored = loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let v = prom
            .query(query, now)
            .await
            .first()
            .and_then(|s| s.value.clone())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if v >= 100_000.0 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        stored,
        100_000.0,
        "every acknowledged sample is in Prometheus; log:\n{}",
        sluice.log_text()
    );
    let rejected = sluice.metric("sluice_exporter_dropped_items_total").await;
    assert_eq!(
        rejected, 0.0,
        "no sample was refused (out-of-order or otherwise)"
    );
    println!(
        "chaos/prometheus: {kills_during_intake} SIGKILLs during intake, 100000 samples acknowledged and stored"
    );
}
