//! AWF's reference `configs/alloy-config.river`, run by Sluice with Alloy's command line from
//! `deploy/alloy-prd/docker-compose.yml`, end to
//! end: OTLP in over gRPC and HTTP → traces to an OTLP backend (Tempo's role), metrics to the
//! real Prometheus over remote write (Mimir's role), logs to the Loki test backend. Only the
//! addresses in the file are changed, to free local ports and the test backends.

mod support;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_testkit::loki::{LokiServerOptions, LokiTestServer};
use sluice_testkit::otlp::OtlpTestServer;
use sluice_testkit::prometheus::PrometheusServer;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Sluice, TraceClient, free_port};

const REFERENCE_CONFIG: &str = include_str!("../../configs/alloy-config.river");
/// The Alloy service's command in `deploy/alloy-prd/docker-compose.yml`.
const REFERENCE_COMMAND: &str =
    "run --server.http.listen-addr=0.0.0.0:12345 /etc/alloy/config.river";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn attr(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![attr("service.name", "alloy-e2e")],
        ..Default::default()
    })
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} in the reference file"
    );
    text.replacen(from, to, 1)
}

async fn post(url: String, body: Vec<u8>) {
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200, "{url}");
}

/// Starts `sluice` with `args` (Alloy's command line) and extra environment variables.
async fn spawn(args: &[String], storage: &Path, env: &[(&str, &str)], admin: u16) -> Sluice {
    let log = storage.with_extension("log");
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        // The image sets this, so Alloy's command line keeps spools on the volume.
        .env("SLUICE_STORAGE_PATH", storage)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn sluice");
    let sluice = Sluice {
        child,
        admin: format!("http://127.0.0.1:{admin}"),
        config: args.last().map(Into::into).unwrap_or_default(),
        storage: storage.to_owned(),
        log,
    };
    sluice.wait_ready(Duration::from_secs(30)).await;
    sluice
}

fn metrics_request(name: &str, value: f64, t: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: t,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            attributes: vec![attr("room", "lab")],
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request(body: &str, t: u64) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: t,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn wait_spans(server: &OtlpTestServer, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.span_count() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got: Vec<u64> = server
        .spans()
        .iter()
        .map(|s| u64::from_be_bytes(s.span_id.as_slice().try_into().unwrap_or([0; 8])))
        .collect();
    got.sort_unstable();
    got
}

async fn prom_value(prom: &PrometheusServer, promql: &str, t: u64, log: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = prom
            .query(promql, t as f64 / 1e9)
            .await
            .first()
            .and_then(|s| s.value.clone());
        if let Some(v) = v {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no sample for {promql}\n{}\n{log}",
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prd_alloy_file_runs_end_to_end_with_alloys_command_line() {
    let tempo = OtlpTestServer::start().await;
    let prom = PrometheusServer::start().await;
    // The reference file sets no tenant: Loki as the image ships it (auth_enabled: false).
    let loki = LokiTestServer::start_with(LokiServerOptions {
        auth_enabled: false,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, admin) = (free_port(), free_port(), free_port());

    let mut text = replace_once(
        REFERENCE_CONFIG,
        "\"0.0.0.0:4317\"",
        &format!("\"127.0.0.1:{grpc}\""),
    );
    text = replace_once(&text, "\"0.0.0.0:4318\"", &format!("\"127.0.0.1:{http}\""));
    text = replace_once(
        &text,
        "\"http://mimir:9009/api/v1/push\"",
        &format!("\"{}\"", prom.write_url()),
    );
    text = replace_once(
        &text,
        "\"tempo:4317\"",
        &format!("\"{}\"", tempo.grpc_addr()),
    );
    text = replace_once(
        &text,
        "\"http://loki:3100/loki/api/v1/push\"",
        &format!("\"{}\"", loki.push_url()),
    );
    // No extension, as in the reference file's /etc/alloy/config.river mount: detected by content.
    let config = dir.path().join("config");
    std::fs::write(&config, &text).unwrap();

    // The reference command, with the admin address and the file path swapped for the test's.
    let args: Vec<String> = REFERENCE_COMMAND
        .split_whitespace()
        .map(|a| match a {
            "--server.http.listen-addr=0.0.0.0:12345" => {
                format!("--server.http.listen-addr=127.0.0.1:{admin}")
            }
            "/etc/alloy/config.river" => config.display().to_string(),
            other => other.to_string(),
        })
        .collect();
    let storage = dir.path().join("data");
    let sluice = spawn(&args, &storage, &[], admin).await;
    assert!(
        std::fs::read_dir(&storage).is_ok_and(|mut d| d.next().is_some()),
        "spools under SLUICE_STORAGE_PATH"
    );

    // Traces over gRPC.
    let req = sluice_loadgen::loadgen::build_request(20, 2, 7);
    let sent_ids = support::span_ids(&req);
    TraceClient::new(&format!("http://127.0.0.1:{grpc}"))
        .send(req.encode_to_vec().into())
        .await
        .expect("traces accepted");

    // Metrics and logs over HTTP.
    let t = now_ns();
    post(
        format!("http://127.0.0.1:{http}/v1/metrics"),
        metrics_request("alloy_e2e_temperature", 21.5, t).encode_to_vec(),
    )
    .await;
    post(
        format!("http://127.0.0.1:{http}/v1/logs"),
        logs_request("hello from the reference file", t).encode_to_vec(),
    )
    .await;

    // Tempo's role: every span, intact.
    let mut want = sent_ids.clone();
    want.sort_unstable();
    assert_eq!(
        wait_spans(&tempo, want.len()).await,
        want,
        "log:\n{}",
        sluice.log_text()
    );

    // Mimir's role: the gauge, with job from service.name, queried with PromQL.
    let promql = r#"alloy_e2e_temperature{job="alloy-e2e", room="lab"}"#;
    assert_eq!(
        prom_value(&prom, promql, t, &sluice.log_text()).await,
        "21.5"
    );

    // Loki's role: Alloy's labels and line.
    assert!(
        loki.wait_for_entries(1, Duration::from_secs(20)).await,
        "{}",
        sluice.log_text()
    );
    let entries = loki.entries_for(&[
        ("service_name", "alloy-e2e"),
        ("level", "INFO"),
        ("exporter", "OTLP"),
    ]);
    assert_eq!(entries.len(), 1, "{:#?}", loki.streams("fake"));
    let line: serde_json::Value = serde_json::from_str(&entries[0].line).unwrap();
    assert_eq!(line["body"], "hello from the reference file");
}

fn sluice_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env(
            "SLUICE_STORAGE_PATH",
            std::env::temp_dir().join(format!("sluice-cli-{}", std::process::id())),
        )
        .output()
        .expect("run sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn alloys_flags_are_accepted_and_unknown_flags_refused() {
    // Accepted flags get as far as reading the (missing) config file.
    let (ok, err) = sluice_cli(&[
        "run",
        "--server.http.listen-addr=127.0.0.1:0",
        "--stability.level=experimental",
        "--disable-reporting",
        "/nonexistent/config.alloy",
    ]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/config.alloy:0:0: cannot read config file"),
        "{err}"
    );
    let (ok, err) = sluice_cli(&["run", "--storage.path.wrong=x", "/nonexistent/config.alloy"]);
    assert!(!ok);
    assert!(
        err.contains("unexpected argument '--storage.path.wrong'"),
        "{err}"
    );
    let (ok, err) = sluice_cli(&["run", "--stability.level=beta", "x.alloy"]);
    assert!(!ok);
    assert!(
        err.contains("invalid value 'beta' for '--stability.level"),
        "{err}"
    );
}

#[test]
fn convert_prints_toml_that_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/alloy-config.river");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("convert")
        .arg(&path)
        .output()
        .expect("convert");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    assert!(
        toml.contains("# otelcol.exporter.otlp \"tempo\" (line 34, column 1)\n[exporters.tempo]"),
        "{toml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("converted.toml");
    std::fs::write(&file, &toml).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).trim(),
        format!(
            "{}: ok (1 receivers, 1 processors, 3 exporters, 3 pipelines)",
            file.display()
        )
    );

    // A broken file: nothing on stdout, the error on stderr.
    let bad = dir.path().join("bad.alloy");
    std::fs::write(&bad, "otelcol.receiver.otlp \"x\" {\n  grpc {\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("convert")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "{}:3:1: expected '}}' to close the block, found end of file",
            bad.display()
        )
    );
}

/// `deploy/alloy-prd/docker-compose.yml`: the REFERENCE_CONFIG's Alloy service with only its image changed.
#[test]
fn prd_compose_service_keeps_command_and_volume() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/alloy-prd");
    let compose = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    assert!(
        compose.contains(&format!("    command: {REFERENCE_COMMAND}\n")),
        "{compose}"
    );
    assert!(compose.contains("      - ./alloy-config.river:etc/alloy/config.river\n"));
    assert!(
        compose
            .contains("      - \"4317:4317\"   # OTLP gRPC\n      - \"4318:4318\"   # OTLP HTTP\n")
    );
    assert!(!compose.contains("image: grafana/alloy"));
    assert!(compose.contains("  alloy:\n    image: sluice:latest\n"));
    // The mounted file is the reference file, which Sluice loads.
    let mounted = std::fs::read_to_string(dir.join("alloy-config.river")).unwrap();
    assert_eq!(mounted, REFERENCE_CONFIG);
    sluice::config::load_file(&dir.join("alloy-config.river")).unwrap_or_else(|e| panic!("{e}"));
}

/// The components the reference file does not use, run against the test backends: memory_limiter,
/// batch settings, otlphttp with otelcol.auth.basic, otlp with otelcol.auth.bearer (token from
/// env()), debug, remote_write and loki.write external_labels, a Loki tenant, `logging`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_component_runs() {
    let tempo_grpc = OtlpTestServer::start().await;
    let tempo_http = OtlpTestServer::start().await;
    let prom = PrometheusServer::start().await;
    let loki = LokiTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, admin) = (free_port(), free_port(), free_port());
    let text = format!(
        r#"
logging {{
  level  = "debug"
  format = "json"
}}

otelcol.receiver.otlp "in" {{
  grpc {{ endpoint = "127.0.0.1:{grpc}" }}
  http {{ endpoint = "127.0.0.1:{http}" }}
  output {{
    traces  = [otelcol.processor.memory_limiter.ml.input]
    metrics = [otelcol.processor.memory_limiter.ml.input]
    logs    = [otelcol.processor.memory_limiter.ml.input]
  }}
}}

otelcol.processor.memory_limiter "ml" {{
  check_interval = "1s"
  limit          = "512MiB"
  output {{
    traces  = [otelcol.processor.batch.b.input]
    metrics = [otelcol.processor.batch.b.input]
    logs    = [otelcol.processor.batch.b.input]
  }}
}}

otelcol.processor.batch "b" {{
  timeout         = "100ms"
  send_batch_size = 500
  output {{
    traces  = [otelcol.exporter.otlp.grpc.input, otelcol.exporter.otlphttp.http.input, otelcol.exporter.debug.d.input]
    metrics = [otelcol.exporter.prometheus.p.input]
    logs    = [otelcol.exporter.loki.l.input]
  }}
}}

otelcol.auth.bearer "tok" {{
  token = sys.env("ALLOY_E2E_TOKEN")
}}

otelcol.auth.basic "creds" {{
  username = "user"
  password = coalesce(env("ALLOY_E2E_UNSET"), "pass")
}}

otelcol.exporter.otlp "grpc" {{
  client {{
    endpoint = "{grpc_backend}"
    auth     = otelcol.auth.bearer.tok.handler
    tls {{ insecure = true }}
  }}
}}

otelcol.exporter.otlphttp "http" {{
  client {{
    endpoint = "{http_backend}"
    auth     = otelcol.auth.basic.creds.handler
  }}
}}

otelcol.exporter.debug "d" {{}}

otelcol.exporter.prometheus "p" {{
  forward_to = [prometheus.remote_write.m.receiver]
}}

prometheus.remote_write "m" {{
  external_labels = {{ cluster = "e2e" }}
  endpoint {{ url = "{rw}" }}
}}

otelcol.exporter.loki "l" {{
  forward_to = [loki.write.l.receiver]
}}

loki.write "l" {{
  external_labels = {{ cluster = "e2e" }}
  endpoint {{
    url       = "{loki_url}"
    tenant_id = "team-a"
  }}
}}
"#,
        grpc_backend = tempo_grpc.grpc_addr(),
        http_backend = tempo_http.http_endpoint(),
        rw = prom.write_url(),
        loki_url = loki.push_url(),
    );
    let config = dir.path().join("config.alloy");
    std::fs::write(&config, &text).unwrap();
    let args = vec![
        "run".to_string(),
        format!("--server.http.listen-addr=127.0.0.1:{admin}"),
        "--stability.level=public-preview".to_string(),
        "--disable-reporting=true".to_string(),
        config.display().to_string(),
    ];
    let storage = dir.path().join("data");
    let sluice = spawn(&args, &storage, &[("ALLOY_E2E_TOKEN", "s3cret")], admin).await;
    // `logging {{ format = "json", level = "debug" }}` took effect.
    assert!(
        sluice
            .log_text()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"DEBUG\"")),
        "{}",
        sluice.log_text()
    );

    let req = sluice_loadgen::loadgen::build_request(10, 1, 11);
    let mut want = support::span_ids(&req);
    want.sort_unstable();
    TraceClient::new(&format!("http://127.0.0.1:{grpc}"))
        .send(req.encode_to_vec().into())
        .await
        .expect("traces accepted");
    let t = now_ns();
    post(
        format!("http://127.0.0.1:{http}/v1/metrics"),
        metrics_request("alloy_e2e_humidity", 40.0, t).encode_to_vec(),
    )
    .await;
    post(
        format!("http://127.0.0.1:{http}/v1/logs"),
        logs_request("every component", t).encode_to_vec(),
    )
    .await;

    let log = || sluice.log_text();
    assert_eq!(wait_spans(&tempo_grpc, want.len()).await, want, "{}", log());
    assert_eq!(wait_spans(&tempo_http, want.len()).await, want, "{}", log());
    assert!(
        tempo_grpc
            .header_values("authorization")
            .iter()
            .all(|v| v.as_deref() == Some("Bearer s3cret"))
    );
    // base64("user:pass")
    assert!(
        tempo_http
            .header_values("authorization")
            .iter()
            .all(|v| v.as_deref() == Some("Basic dXNlcjpwYXNz"))
    );

    let promql = r#"alloy_e2e_humidity{job="alloy-e2e", cluster="e2e"}"#;
    assert_eq!(prom_value(&prom, promql, t, &log()).await, "40");

    assert!(
        loki.wait_for_entries(1, Duration::from_secs(20)).await,
        "{}",
        log()
    );
    let streams = loki.streams("team-a");
    assert_eq!(streams.len(), 1, "{streams:#?}");
    assert_eq!(streams[0].label("cluster"), Some("e2e"));
    assert_eq!(streams[0].label("service_name"), Some("alloy-e2e"));

    // Reload: a broken edit is refused at its Alloy line and the running config stays; a good
    // one is taken.
    let broken = text.replace("send_batch_size = 500", "send_batch_size = \"500\"");
    std::fs::write(&config, &broken).unwrap();
    let (code, msg) = sluice.post("/-/reload").await;
    assert_eq!(code, 400, "{msg}");
    let line = broken
        .lines()
        .position(|l| l.contains("send_batch_size"))
        .unwrap()
        + 1;
    assert!(
        msg.contains(&format!(
            "config.alloy:{line}:21: otelcol.processor.batch.b.send_batch_size: `send_batch_size` must be an integer, got a string"
        )),
        "{msg}"
    );
    std::fs::write(
        &config,
        text.replace("send_batch_size = 500", "send_batch_size = 50"),
    )
    .unwrap();
    assert_eq!(
        sluice.post("/-/reload").await,
        (200, "config reloaded\n".to_string())
    );
}
