//! Start-up replay of a large spool: `sluice run` on a spool an earlier run filled reports the
//! backlog, its progress (log, `/metrics`, `/api/v1/components`) while the backend is down,
//! and the end of the replay once the backend is back, with every span delivered.

mod support;

use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_spool::{Spool, SpoolConfig};
use sluice_testkit::otlp::{Behavior, OtlpTestServer, Outcome};
use sluice_testkit::payloads;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{Sluice, free_port, write_config};

const REQUESTS: usize = 1500;
const SPANS: usize = 10;

fn spool_config() -> SpoolConfig {
    SpoolConfig {
        segment_bytes: sluice_core::ByteSize::mib(2),
        ..Default::default()
    }
}

/// What an earlier run left: `REQUESTS` requests of `SPANS` spans, each span with unique ids and
/// a random 400-byte attribute (so the spool is megabytes on disk, in several segments).
async fn fill_spool(dir: &Path) -> usize {
    let (spool, _) = Spool::open("traces", dir, spool_config(), &["tempo".to_owned()]).unwrap();
    let mut rng = StdRng::seed_from_u64(14);
    for n in 0..REQUESTS {
        let mut req = payloads::traces("replayed", 1, SPANS);
        for (i, span) in req.resource_spans[0].scope_spans[0]
            .spans
            .iter_mut()
            .enumerate()
        {
            span.trace_id = (n as u128 + 1).to_be_bytes().to_vec();
            span.span_id = ((n * SPANS + i) as u64 + 1).to_be_bytes().to_vec();
            span.parent_span_id.clear();
            let noise: String = (0..400).map(|_| rng.random_range('a'..='z')).collect();
            span.attributes.push(payloads::kv("noise", &noise));
        }
        let item = payloads::trace_item(&req);
        assert_eq!(item.payload.len(), req.encoded_len());
        spool.append(item).unwrap().await.unwrap();
    }
    spool.close();
    assert!(spool.segment_count() > 2, "a spool of several segments");
    REQUESTS * SPANS
}

async fn wait_for_log(sluice: &Sluice, what: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = sluice.log_text();
        if let Some(line) = log.lines().find(|l| l.contains(what)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {what:?} in {within:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_spool_left_by_an_earlier_run_reports_replay_progress_and_is_delivered() {
    let tempo = OtlpTestServer::start().await;
    tempo.respond_with(Behavior::always(Outcome::grpc(
        tonic::Code::Unavailable,
        "backend down for the test",
    )));
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let spans = fill_spool(&storage.join("pipelines").join("traces")).await;

    let config = write_config(
        dir.path(),
        "replay.toml",
        &format!(
            r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"

[exporters.tempo]
type = "otlp"
endpoint = "{backend}"
[exporters.tempo.retry]
initial_interval = "20ms"
max_interval = "200ms"

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp"]
exporters = ["tempo"]
[pipelines.spool]
segment_bytes = "2MiB"
"#,
            grpc = free_port(),
            backend = tempo.grpc_endpoint(),
        ),
    );
    let sluice = Sluice::start(&config, &storage).await;

    // The backlog is announced at start, with its size.
    let start = wait_for_log(
        &sluice,
        "from an earlier run for exporter tempo",
        Duration::from_secs(10),
    )
    .await;
    assert!(start.contains(&format!("({REQUESTS} requests)")), "{start}");
    assert!(start.contains(" MiB "), "megabytes: {start}");

    // While the backend refuses, progress is reported as stalled, and the API and /metrics
    // show the whole backlog remaining.
    let stalled = wait_for_log(
        &sluice,
        "replaying spool: 0% (0 B of",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        stalled.contains(&format!("0 of {REQUESTS} requests")),
        "{stalled}"
    );
    assert!(stalled.contains("stalled"), "{stalled}");
    assert_eq!(
        sluice
            .metric("sluice_spool_replay_remaining_records{component_id=\"exporters.tempo\",pipeline=\"traces\"}")
            .await,
        REQUESTS as f64
    );
    let (status, body) = sluice.get("/api/v1/components").await;
    assert_eq!(status, 200, "{body}");
    let components: serde_json::Value = serde_json::from_str(&body).unwrap();
    let replay = &components["exporters"][0]["queues"][0]["replay"];
    assert_eq!(replay["total_records"], REQUESTS as u64, "{components}");
    assert_eq!(replay["remaining_records"], REQUESTS as u64, "{components}");
    let total_bytes = replay["total_bytes"].as_u64().unwrap();
    assert!(total_bytes > 4 * 1024 * 1024, "{replay}");
    assert_eq!(replay["remaining_bytes"].as_u64(), Some(total_bytes));

    // The backend comes back: the replay completes and says so; every span arrived.
    tempo.clear_behaviors();
    let done = wait_for_log(&sluice, "spool replay done", Duration::from_secs(120)).await;
    assert!(
        done.contains(&format!("({REQUESTS} requests) delivered in")),
        "{done}"
    );
    let ids: HashSet<Vec<u8>> = tempo.spans().into_iter().map(|s| s.span_id).collect();
    assert_eq!(ids.len(), spans, "every span of the spool was delivered");
    assert_eq!(
        sluice
            .metric("sluice_spool_replay_remaining_records{component_id=\"exporters.tempo\",pipeline=\"traces\"}")
            .await,
        0.0
    );
    // What the earlier run left is read back from disk, and /metrics says so.
    let (_, text) = sluice.get("/metrics").await;
    let read_from = |source: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("sluice_spool_read_items_total{"))
            .filter(|l| l.contains(&format!("source=\"{source}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(read_from("disk") >= spans as f64, "{text}");
    let log = sluice.log_text();
    assert_eq!(log.matches("spool replay done").count(), 1, "{log}");
}
