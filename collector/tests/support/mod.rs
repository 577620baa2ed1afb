//! Runs the real `sluice` binary for end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub struct Sluice {
    pub child: Child,
    pub admin: String,
    pub config: PathBuf,
    pub storage: PathBuf,
    pub log: PathBuf,
}

impl Sluice {
    /// Starts `sluice run CONFIG` and waits until `/-/ready` answers 200.
    pub async fn start(config: &Path, storage: &Path) -> Sluice {
        Self::start_with(config, storage, &[]).await
    }

    pub async fn start_with(config: &Path, storage: &Path, extra: &[&str]) -> Sluice {
        let s = Self::spawn(config, storage, extra);
        s.wait_ready(Duration::from_secs(30)).await;
        s
    }

    pub fn spawn(config: &Path, storage: &Path, extra: &[&str]) -> Sluice {
        let port = free_port();
        let log = storage.with_extension(format!("{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg(config)
            .arg(format!("--server.http.listen-addr=127.0.0.1:{port}"))
            .arg(format!("--storage.path={}", storage.display()))
            .arg("--log.level=info")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn sluice");
        Sluice {
            child,
            admin: format!("http://127.0.0.1:{port}"),
            config: config.to_owned(),
            storage: storage.to_owned(),
            log,
        }
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/-/ready", self.admin)).send().await
                && r.status().as_u16() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sluice not ready in {timeout:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .expect("admin request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub async fn post(&self, path: &str) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.admin))
            .send()
            .await
            .expect("admin request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// The value of a counter/gauge series in `/metrics` whose line starts with `prefix`
    /// (summed over matching lines).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for exit; returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                self.kill9();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Python with the OpenTelemetry SDK: `SLUICE_TEST_PYTHON`, else the repo's `.venv`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "the OpenTelemetry Python SDK is needed: run the README's test command (it creates .venv) or set SLUICE_TEST_PYTHON"
    );
    venv
}

/// A gRPC OTLP client that sends pre-encoded trace requests and reports the status code.
pub struct TraceClient {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl TraceClient {
    pub fn new(endpoint: &str) -> TraceClient {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .expect("endpoint")
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        TraceClient {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    pub async fn send(&mut self, body: bytes::Bytes) -> Result<(), tonic::Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = sluice_otlp::grpc::export_path(sluice_core::Signal::Traces);
        self.grpc
            .unary(tonic::Request::new(body), path, sluice_otlp::grpc::RawCodec)
            .await
            .map(|_| ())
    }
}

/// Span ids of a request built by `sluice_loadgen::loadgen::build_request`, as u64.
pub fn span_ids(
    req: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> Vec<u64> {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| u64::from_be_bytes(s.span_id.as_slice().try_into().unwrap_or([0; 8])))
        .collect()
}

pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

/// Runs `tests/python/otel_send.py` (the official OpenTelemetry Python SDK sending traces,
/// metrics and logs) against `endpoint`, and returns the ids it reports on its last line.
pub fn run_python_sdk(protocol: &str, endpoint: &str, run_id: &str) -> serde_json::Value {
    run_python_script("otel_send.py", &[protocol, endpoint, run_id])
}

/// Runs `tests/python/<script>` with `args` and parses the JSON on its last line.
pub fn run_python_script(script: &str, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python SDK failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A pipeline with the watcher as its processor: OTLP/gRPC in on `grpc`, the debug exporter
/// out, webhooks with `hook-secret`, approver `alice` (`alice-token`), dry run, Prometheus
/// queried on `prometheus`.
pub fn watcher_config(grpc: u16, prometheus: u16) -> String {
    format!(
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"

[processors.watcher]
type = "watcher"
bearer_token = "hook-secret"
approvers = [{{ name = "alice", token = "alice-token" }}]
prometheus_url = "http://127.0.0.1:{prometheus}"
dry_run = true

[exporters.debug]
type = "debug"

[[pipelines]]
name = "all"
signals = ["traces", "metrics", "logs"]
receivers = ["otlp"]
processors = ["watcher"]
exporters = ["debug"]
"#
    )
}
