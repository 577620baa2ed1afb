//! The `prometheus_scrape` receiver against real counterparts: Sluice and a real Prometheus
//! (the reference) scrape the same Debian `prometheus-node-exporter` and the reference
//! Prometheus' own `/metrics`; Sluice remote-writes what it scraped to a second real
//! Prometheus (the sink). The sink must then hold the series the reference scraped — same
//! label sets, same values for stable series, monotone counters, one timestamp per scrape —
//! and a target that goes away from the file-SD file must go stale in the sink at once.

mod support;

use sluice_testkit::prometheus::{PrometheusServer, VectorSample};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Sluice, free_port, write_config};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Debian's `prometheus-node-exporter` on a loopback port (`NODE_EXPORTER_BIN` overrides).
struct NodeExporter {
    child: Child,
    addr: SocketAddr,
}

impl NodeExporter {
    async fn start() -> NodeExporter {
        let bin = std::env::var("NODE_EXPORTER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("prometheus-node-exporter"));
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(&bin)
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e}. Install it with `apt-get install -y prometheus-node-exporter` \
                     (test.sh does), or point NODE_EXPORTER_BIN at a node_exporter binary.",
                    bin.display()
                )
            });
        let exporter = NodeExporter { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://{addr}/metrics");
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return exporter;
            }
            assert!(Instant::now() < deadline, "node exporter not up on {addr}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Series = BTreeMap<BTreeMap<String, String>, String>;

fn series(samples: Vec<VectorSample>) -> Series {
    samples
        .into_iter()
        .map(|s| (s.labels, s.value.unwrap_or_default()))
        .collect()
}

async fn at(prom: &PrometheusServer, promql: &str, time: f64) -> Series {
    series(prom.query(promql, time).await)
}

/// Retries `check` (a comparison of two moments that can legitimately differ for a scrape,
/// e.g. a series that appeared between the two scrapers' scrapes) until it holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check().await {
            Ok(()) => return,
            Err(diff) if Instant::now() > deadline => panic!("{what}: {diff}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(700)).await,
        }
    }
}

fn diff<K: Ord + std::fmt::Debug + Clone>(a: &BTreeSet<K>, b: &BTreeSet<K>) -> String {
    let only_a: Vec<&K> = a.difference(b).take(10).collect();
    let only_b: Vec<&K> = b.difference(a).take(10).collect();
    format!("only in Sluice's sink: {only_a:?}\nonly in the reference: {only_b:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_series_equal_what_a_real_prometheus_scrapes() {
    let node = NodeExporter::start().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let ref_port = free_port();
    let reference = PrometheusServer::start_text_scraper(
        ref_port,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             - job_name: node\n  static_configs:\n  - targets: ['{}']\n\
             - job_name: prometheus\n  static_configs:\n  - targets: ['127.0.0.1:{ref_port}', '{dead}']\n",
            node.addr
        ),
    )
    .await;
    let sink = PrometheusServer::start().await;

    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets");
    std::fs::create_dir(&targets).unwrap();
    let node_file = targets.join("node.json");
    std::fs::write(&node_file, format!(r#"[{{"targets": ["{}"]}}]"#, node.addr)).unwrap();
    let config = format!(
        r#"
[receivers.node]
type = "prometheus_scrape"
scrape_interval = "1s"
scrape_timeout = "1s"
file_sd_configs = [{{ files = ["{}/*.json"] }}]

[receivers.prometheus]
type = "prometheus_scrape"
scrape_interval = "1s"
scrape_timeout = "1s"
static_configs = [{{ targets = ["127.0.0.1:{ref_port}", "{dead}"] }}]

[processors.batch]
type = "batch"
timeout = "50ms"

[exporters.sink]
type = "prometheus_remote_write"
url = "{}"

[[pipelines]]
name = "scraped"
signals = ["metrics"]
receivers = ["node", "prometheus"]
processors = ["batch"]
exporters = ["sink"]
"#,
        targets.display(),
        sink.write_url()
    );
    let path = write_config(dir.path(), "scrape.toml", &config);
    let sluice = Sluice::start(&path, &dir.path().join("data")).await;

    // `up` of all three targets, in both, with the same labels and values.
    eventually("up", || async {
        let t = now() - 1.0;
        let (ours, theirs) = (at(&sink, "up", t).await, at(&reference, "up", t).await);
        if ours.len() == 3 && ours == theirs {
            Ok(())
        } else {
            Err(format!("sink: {ours:?}\nreference: {theirs:?}").into())
        }
    })
    .await;
    let up = at(&sink, "up", now() - 1.0).await;
    let down: Vec<_> = up.iter().filter(|(_, v)| *v == "0").collect();
    assert_eq!(down.len(), 1, "{up:?}");
    assert_eq!(down[0].0["instance"], dead);

    // The node exporter: the same series (label sets), report series included.
    eventually("node exporter series sets", || async {
        let t = now() - 2.0;
        let ours: BTreeSet<_> = at(&sink, r#"{job="node"}"#, t).await.into_keys().collect();
        let theirs: BTreeSet<_> = at(&reference, r#"{job="node"}"#, t)
            .await
            .into_keys()
            .collect();
        if ours.len() > 100 && ours == theirs {
            Ok(())
        } else {
            Err(format!(
                "{} vs {} series\n{}",
                ours.len(),
                theirs.len(),
                diff(&ours, &theirs)
            )
            .into())
        }
    })
    .await;

    // Stable series have the same values: info series, sizes, the build.
    let stable = r#"{job=~"node|prometheus", __name__=~".+_info|node_memory_MemTotal_bytes|node_filesystem_size_bytes|prometheus_config_last_reload_successful"}"#;
    eventually("stable values", || async {
        let t = now() - 2.0;
        let (ours, theirs) = (at(&sink, stable, t).await, at(&reference, stable, t).await);
        let has = |name: &str| ours.keys().any(|l| l["__name__"] == name);
        if ours == theirs
            && has("node_uname_info")
            && has("node_memory_MemTotal_bytes")
            && has("prometheus_build_info")
        {
            Ok(())
        } else {
            Err(format!("sink: {ours:?}\nreference: {theirs:?}").into())
        }
    })
    .await;

    // Prometheus' own /metrics: the same metric names.
    eventually("prometheus metric names", || async {
        let t = now() - 2.0;
        let names = |s: Series| -> BTreeSet<String> {
            s.into_keys().map(|l| l["__name__"].clone()).collect()
        };
        let q = format!(r#"{{job="prometheus", instance="127.0.0.1:{ref_port}"}}"#);
        let ours = names(at(&sink, &q, t).await);
        let theirs = names(at(&reference, &q, t).await);
        if ours.len() > 100 && ours == theirs {
            Ok(())
        } else {
            Err(diff(&ours, &theirs).into())
        }
    })
    .await;

    // Counters only grow, and every sample of one scrape carries that scrape's timestamp.
    let t = now() - 2.0;
    for counter in [
        "node_cpu_seconds_total",
        "node_network_receive_bytes_total",
        "process_cpu_seconds_total",
        "prometheus_http_requests_total",
    ] {
        let q = format!(r#"sum(resets({counter}{{job=~"node|prometheus"}}[30s]))"#);
        let resets = at(&sink, &q, t).await;
        assert_eq!(resets.values().next().map(String::as_str), Some("0"), "{q}");
    }
    for job in ["node", "prometheus"] {
        let q = format!(
            r#"count(count_values("t", timestamp(label_replace({{job="{job}", instance!="{dead}"}}, "n", "$1", "__name__", "(.+)"))))"#
        );
        let distinct = at(&sink, &q, t).await;
        assert_eq!(
            distinct.values().next().map(String::as_str),
            Some("1"),
            "{job}: distinct timestamps among the latest samples"
        );
    }

    // Sluice's own counters.
    assert!(
        sluice
            .metric(r#"sluice_prometheus_scrape_scrapes_total{component_id="receivers.node""#)
            .await
            > 0.0
    );
    assert!(
        sluice
            .metric(&format!(
                r#"sluice_prometheus_scrape_failed_scrapes_total{{component_id="receivers.prometheus",target="{dead}",reason="connect"}}"#
            ))
            .await
            > 0.0,
        "{}",
        sluice.get("/metrics").await.1
    );

    // The node exporter leaves the file: its series, `up` included, are stale at once
    // (without markers they would stay queryable for Prometheus' 5-minute lookback).
    assert!(
        !at(&sink, r#"node_memory_MemTotal_bytes{job="node"}"#, now())
            .await
            .is_empty()
    );
    std::fs::write(&node_file, "[]").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = now();
        let left = at(&sink, r#"{job="node"}"#, t).await;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node series still queryable after the target was removed: {} series, e.g. {:?}",
            left.len(),
            left.keys().next()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The reference still scrapes it: the series went away because of the markers alone.
    assert!(!at(&reference, r#"up{job="node"}"#, now()).await.is_empty());
    assert!(
        sluice
            .metric(r#"sluice_prometheus_scrape_targets{component_id="receivers.node""#)
            .await
            == 0.0
    );
}

/// The official Prometheus Python client (`collector/tests/python/om_target.py`) answers
/// OpenMetrics to both scrapers: counters as `_total` + `_created`, a histogram, a summary, an
/// info and a stateset, label values with quotes, commas and backslashes. The sink holds exactly
/// the series and values the reference holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_target_equals_what_a_real_prometheus_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("requests.log");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/om_target.py");
    let _target = KillOnDrop(
        Command::new(support::python())
            .arg(&script)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start om_target.py"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "om_target.py did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let reference = PrometheusServer::start_text_scraper(
        free_port(),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             - job_name: om\n  static_configs:\n  - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .await;
    let sink = PrometheusServer::start().await;
    let config = format!(
        r#"
[receivers.om]
type = "prometheus_scrape"
scrape_interval = "1s"
scrape_timeout = "1s"
static_configs = [{{ targets = ["127.0.0.1:{port}"] }}]

[processors.batch]
type = "batch"
timeout = "50ms"

[exporters.sink]
type = "prometheus_remote_write"
url = "{}"

[[pipelines]]
name = "scraped"
signals = ["metrics"]
receivers = ["om"]
processors = ["batch"]
exporters = ["sink"]
"#,
        sink.write_url()
    );
    let path = write_config(dir.path(), "om.toml", &config);
    let _sluice = Sluice::start(&path, &dir.path().join("data")).await;

    eventually("OpenMetrics series and values", || async {
        let t = now() - 2.0;
        // Durations differ between two scrapers; everything else is fixed.
        let q = r#"{job="om", __name__!="scrape_duration_seconds"}"#;
        let (ours, theirs) = (at(&sink, q, t).await, at(&reference, q, t).await);
        let has = |name: &str| ours.keys().any(|l| l["__name__"] == name);
        if ours == theirs
            && has("om_requests_total")
            && has("om_requests_created")
            && has("om_build_info")
            && has("om_state")
            && has("om_latency_seconds_bucket")
        {
            Ok(())
        } else {
            let a: BTreeSet<_> = ours.iter().collect();
            let b: BTreeSet<_> = theirs.iter().collect();
            Err(diff(&a, &b).into())
        }
    })
    .await;
    let escaped = at(&sink, r#"om_requests_total{method="get"}"#, now()).await;
    let labels = escaped
        .keys()
        .next()
        .expect("om_requests_total{method=\"get\"}");
    assert_eq!(labels["path"], "/a,b=\"c\"\\d");

    // Both asked for OpenMetrics and got it.
    let requests = std::fs::read_to_string(&log).unwrap();
    for agent in ["Sluice/", "Prometheus/"] {
        let answers: Vec<&str> = requests.lines().filter(|l| l.starts_with(agent)).collect();
        assert!(!answers.is_empty(), "no request from {agent}:\n{requests}");
        assert!(
            answers
                .iter()
                .all(|l| l.contains("\tapplication/openmetrics-text; version=1.0.0")),
            "{agent}: {answers:?}"
        );
    }
}

/// A child process that is killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
