//! Logs to Loki's role, end to end: the OpenTelemetry Python SDK's log exporter → Sluice (OTLP
//! receiver → spool → Loki exporter) → the Loki test backend, which decodes snappy + protobuf
//! by Loki's field numbers. Streams and lines follow Alloy's `otelcol.exporter.loki`.

mod support;

use sluice_testkit::loki::LokiTestServer;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Sluice, free_port, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_logs_become_alloy_compatible_loki_streams() {
    let loki = LokiTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let config = format!(
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.http]
endpoint = "127.0.0.1:{http}"

[processors.batch]
type = "batch"
timeout = "50ms"

[exporters.loki]
type = "loki"
url = "{}"
tenant_id = "team-awf"

[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["loki"]
"#,
        loki.push_url()
    );
    let path = write_config(dir.path(), "loki.toml", &config);
    let _sluice = Sluice::start(&path, &dir.path().join("data")).await;

    let sent = support::run_python_sdk("http", &format!("http://127.0.0.1:{http}"), "run-loki");
    assert!(loki.wait_for_entries(2, Duration::from_secs(20)).await);

    let streams = loki.streams("team-awf");
    let labels_of = |level: &str| -> BTreeMap<String, String> {
        [
            ("exporter", "OTLP"),
            ("job", "awf/py-interop"),
            ("instance", "run-loki"),
            ("level", level),
            ("service_name", "py-interop"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let error = streams
        .iter()
        .find(|s| s.labels == labels_of("ERROR"))
        .unwrap_or_else(|| panic!("ERROR stream: {streams:#?}"));
    let info = streams
        .iter()
        .find(|s| s.labels == labels_of("INFO"))
        .expect("INFO stream");
    assert_eq!(error.entries.len(), 1);
    assert_eq!(info.entries.len(), 1);

    // The line is Alloy's JSON: body, trace context, severity, attributes, resources, scope.
    let line: serde_json::Value = serde_json::from_str(&error.entries[0].line).expect("json line");
    assert_eq!(line["body"], "step failed for run-loki");
    assert_eq!(line["traceid"], sent["trace_id"]);
    assert_eq!(line["spanid"], sent["child_span_id"]);
    assert_eq!(line["severity"], "ERROR");
    assert_eq!(line["attributes"]["run.id"], "run-loki");
    assert_eq!(line["attributes"]["step"], "plan");
    assert_eq!(line["resources"]["service.namespace"], "awf");
    assert_eq!(line["resources"]["telemetry.sdk.language"], "python");
    // As in Alloy: job/instance are derived from service.* but the attributes stay in the line.
    assert_eq!(line["resources"]["service.name"], "py-interop");
    assert_eq!(line["instrumentation_scope"]["name"], "interop.run-loki");
    let info_line: serde_json::Value = serde_json::from_str(&info.entries[0].line).unwrap();
    assert_eq!(info_line["body"], "workflow continues");
    assert!(error.entries[0].timestamp_ns > 0);
}
