//! Runs the real Prometheus server (Debian's `prometheus` package) as a remote-write receiver
//! for a test, and queries it over its HTTP API.
//!
//! Start the real backend as a child process on a free loopback port with a
//! throw-away data directory, wait for its readiness endpoint, and kill it on drop. A missing
//! binary is a test failure with instructions, never a silent skip.
//!
//! `PROMETHEUS_BIN` overrides the binary (default: `prometheus` on `PATH`).

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrometheusServer {
    child: Child,
    pub addr: SocketAddr,
    pub version: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// One element of an instant-vector query result.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: BTreeMap<String, String>,
    /// The float value as Prometheus printed it, or `None` for a native histogram sample.
    pub value: Option<String>,
}

const INSTALL_HINT: &str = "Install it with `apt-get update && apt-get install -y prometheus` \
     (Debian/Ubuntu), or point PROMETHEUS_BIN at a prometheus binary.";

fn find_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("PROMETHEUS_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "PROMETHEUS_BIN={} does not exist. {INSTALL_HINT}",
            bin.display()
        );
        return bin;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("prometheus");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "this test needs the real Prometheus server binary, which was not found on PATH. \
         {INSTALL_HINT}"
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local addr").port()
}

fn version_of(bin: &Path) -> String {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("running {} --version: {e}", bin.display()));
    // "prometheus, version 2.42.0+ds (branch: ...)"
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("unknown")
        .to_owned()
}

impl PrometheusServer {
    /// Starts Prometheus with the remote-write receiver, native histograms and exemplar
    /// storage on, and no scrape jobs, then waits until `/-/ready` answers 200.
    pub async fn start() -> PrometheusServer {
        Self::start_on(free_port()).await
    }

    /// Like `start`, on a given loopback port (to bring a backend up where a collector was
    /// already pointed while it was down).
    pub async fn start_on(port: u16) -> PrometheusServer {
        Self::start_configured(port, "global:\n  scrape_interval: 1m\n").await
    }

    /// Like `start_on`, with a whole `prometheus.yml` (rule files, scrape jobs, alerting).
    pub async fn start_configured(port: u16, config_yaml: &str) -> PrometheusServer {
        // Needed on 2.x for native histograms and exemplars; 3.x only warns about flags it
        // no longer needs.
        Self::start_with_features(port, config_yaml, "native-histograms,exemplar-storage").await
    }

    /// Like `start_configured`, without native histograms: a 2.x Prometheus with them asks
    /// scrape targets for the protobuf format first; without them it scrapes the text formats
    /// as the `prometheus_scrape` receiver does (the reference in its comparison tests).
    pub async fn start_text_scraper(port: u16, config_yaml: &str) -> PrometheusServer {
        Self::start_with_features(port, config_yaml, "exemplar-storage").await
    }

    async fn start_with_features(port: u16, config_yaml: &str, features: &str) -> PrometheusServer {
        let bin = find_binary();
        let version = version_of(&bin);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("write config");
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg(format!("--enable-feature={features}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut server = PrometheusServer {
            child,
            addr,
            version,
            log,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        server.wait_ready().await;
        server
    }

    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// The end of Prometheus' own log, for assertion messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://{}/-/ready", self.addr);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited with {status} before becoming ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("prometheus not ready after 60s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get_json(&self, path: &str, params: &[(&str, String)]) -> Value {
        let url = format!("http://{}{path}", self.addr);
        let response = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.expect("JSON answer");
        assert!(
            status.is_success() && body["status"] == "success",
            "GET {path} {params:?} → {status}: {body}"
        );
        body["data"].clone()
    }

    /// Evaluates an instant query at `time` (Unix seconds).
    pub async fn query(&self, promql: &str, time: f64) -> Vec<VectorSample> {
        let data = self
            .get_json(
                "/api/v1/query",
                &[("query", promql.to_owned()), ("time", format!("{time:.3}"))],
            )
            .await;
        let result = data["result"].as_array().cloned().unwrap_or_default();
        match data["resultType"].as_str() {
            Some("scalar") => vec![VectorSample {
                labels: BTreeMap::new(),
                value: result.get(1).and_then(|v| v.as_str()).map(str::to_owned),
            }],
            _ => result
                .iter()
                .map(|r| VectorSample {
                    labels: r["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    value: r["value"][1].as_str().map(str::to_owned),
                })
                .collect(),
        }
    }

    /// Exemplars of `promql` between `start` and `end` (Unix seconds), as returned by
    /// `/api/v1/query_exemplars`.
    pub async fn exemplars(&self, promql: &str, start: f64, end: f64) -> Value {
        self.get_json(
            "/api/v1/query_exemplars",
            &[
                ("query", promql.to_owned()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
            ],
        )
        .await
    }

    /// Sum of one of Prometheus' own `/metrics` over all its label sets; `None` if absent.
    pub async fn self_metric(&self, name: &str) -> Option<f64> {
        let url = format!("http://{}/metrics", self.addr);
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        let values: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
