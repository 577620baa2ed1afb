//! Log files through an Alloy configuration, end to end: `local.file_match` →
//! `loki.source.file` → `loki.write`, and a second source through `loki.process` (multi-line
//! joining, JSON, `stage.labels`, `stage.static_labels`), run by the real `sluice` binary from
//! the `.alloy` file. Lines written before the start and appended while it runs must arrive at
//! the Loki test backend as Alloy sends them: the raw line, the target labels plus `filename`,
//! and no OTLP default labels — while OpenTelemetry logs sent to the same `loki.write` keep
//! theirs.

mod support;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_testkit::loki::{LokiEntry, LokiTestServer};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use support::{Sluice, free_port, write_config};

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    f.write_all(text.as_bytes()).expect("append");
}

async fn wait_for(
    loki: &LokiTestServer,
    labels: &[(&str, &str)],
    n: usize,
    sluice: &Sluice,
) -> Vec<LokiEntry> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let entries = loki.entries_for(labels);
        if entries.len() >= n {
            return entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} entries with {labels:?}; streams: {:#?}\nlog:\n{}",
            entries.len(),
            loki.streams("e2e"),
            sluice.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn otlp_log(body: &str) -> Vec<u8> {
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text("otlp-app"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: text(body),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alloy_file_sources_arrive_at_loki_with_their_labels() {
    let loki = LokiTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app_dir = dir.path().join("app");
    let json_dir = dir.path().join("json");
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::create_dir_all(&json_dir).unwrap();
    let app_log = app_dir.join("app.log");
    let json_log = json_dir.join("events.log");
    // Written before Sluice starts: read from the beginning (Alloy's default, tail_from_end = false).
    append(&app_log, "first line\nsecond line\n");
    append(&app_dir.join("debug-skip.log"), "never read\n");
    let http = free_port();
    let text = format!(
        r#"
local.file_match "app" {{
  path_targets = [{{"__path__" = "{app}/*.log", "__path_exclude__" = "{app}/debug-*.log", "job" = "app", "env" = "e2e"}}]
  sync_period  = "100ms"
}}

loki.source.file "app" {{
  targets    = local.file_match.app.targets
  forward_to = [loki.write.default.receiver]
}}

loki.source.file "events" {{
  targets    = [{{"__path__" = "{json}/*.log", "job" = "events"}}]
  forward_to = [loki.process.events.receiver]
}}

loki.process "events" {{
  stage.multiline {{
    firstline     = "^\\{{"
    max_wait_time = "200ms"
  }}
  stage.json {{
    expressions = {{ level = "" }}
  }}
  stage.labels {{
    values = {{ level = "" }}
  }}
  stage.static_labels {{
    values = {{ team = "core" }}
  }}
  forward_to = [loki.write.default.receiver]
}}

otelcol.receiver.otlp "in" {{
  http {{ endpoint = "127.0.0.1:{http}" }}
  output {{ logs = [otelcol.exporter.loki.otlp.input] }}
}}

otelcol.exporter.loki "otlp" {{
  forward_to = [loki.write.default.receiver]
}}

loki.write "default" {{
  endpoint {{
    url       = "{url}"
    tenant_id = "e2e"
  }}
}}
"#,
        app = app_dir.display(),
        json = json_dir.display(),
        url = loki.push_url(),
    );
    let config = write_config(dir.path(), "config.alloy", &text);
    let storage = dir.path().join("data");
    let sluice = Sluice::start(&config, &storage).await;

    // Appended while it runs.
    append(&app_log, "third line\n");
    append(
        &json_log,
        "{\"level\":\"error\",\"msg\":\"boom\",\n \"stack\":\"at main\"}\n{\"level\":\"info\",\"msg\":\"ok\"}\n",
    );
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(otlp_log("from otlp"))
        .send()
        .await
        .expect("otlp post")
        .error_for_status()
        .expect("otlp accepted");

    let app = wait_for(&loki, &[("job", "app")], 3, &sluice).await;
    let lines: Vec<&str> = app.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, ["first line", "second line", "third line"]);
    let streams = loki.streams("e2e");
    let app_stream = streams
        .iter()
        .find(|s| s.label("job") == Some("app"))
        .expect("app stream");
    let expected: std::collections::BTreeMap<String, String> = [
        ("env", "e2e".to_string()),
        ("filename", app_log.display().to_string()),
        ("job", "app".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(app_stream.labels, expected, "{streams:#?}");

    let events = wait_for(&loki, &[("job", "events")], 2, &sluice).await;
    let error = loki.entries_for(&[("job", "events"), ("level", "error"), ("team", "core")]);
    assert_eq!(error.len(), 1, "{:#?}", loki.streams("e2e"));
    assert_eq!(
        error[0].line,
        "{\"level\":\"error\",\"msg\":\"boom\",\n \"stack\":\"at main\"}"
    );
    let info = loki.entries_for(&[("job", "events"), ("level", "info"), ("team", "core")]);
    assert_eq!(info.len(), 1, "{events:#?}");
    assert_eq!(info[0].line, "{\"level\":\"info\",\"msg\":\"ok\"}");
    let events_stream = streams
        .iter()
        .chain(loki.streams("e2e").iter())
        .find(|s| s.label("job") == Some("events"))
        .cloned()
        .expect("events stream");
    assert_eq!(
        events_stream.label("filename"),
        Some(json_log.display().to_string().as_str())
    );
    assert_eq!(events_stream.label("exporter"), None);

    // OpenTelemetry logs to the same loki.write keep the OTLP labels.
    let otlp = wait_for(&loki, &[("service_name", "otlp-app")], 1, &sluice).await;
    assert!(otlp[0].line.contains("from otlp"), "{otlp:?}");
    assert_eq!(
        loki.entries_for(&[("service_name", "otlp-app"), ("exporter", "OTLP")])
            .len(),
        1
    );
    // Nothing from the excluded file.
    assert!(
        loki.streams("e2e")
            .iter()
            .all(|s| !s.lines().contains(&"never read")),
        "{:#?}",
        loki.streams("e2e")
    );
}
