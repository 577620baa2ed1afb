//! Processors end to end: the OpenTelemetry Python SDK sends spans, logs and metrics carrying
//! personal data and noise to the real `sluice` binary, whose pipeline runs filter, attributes,
//! resource and redaction processors in line; the OTLP test backend must receive exactly the
//! filtered, rewritten and redacted data, and `/metrics` must count what each processor did.

mod support;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use sluice_testkit::otlp::OtlpTestServer;
use std::time::Duration;
use support::{Sluice, free_port, write_config};

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
    {
        Some(Value::StringValue(s)) => Some(s.clone()),
        Some(Value::IntValue(i)) => Some(i.to_string()),
        _ => None,
    }
}

const EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}";
const CARD: &str = r"\b(?:\d[ -]?){12,18}\d\b";
const API_KEY: &str = r"\b(?:sk|pk|ghp|xox[bap])[-_][A-Za-z0-9_-]{16,}\b";

fn config(grpc: u16, backend: &str) -> String {
    format!(
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"

[processors.drop_noise]
type = "filter"
traces.span = ['name == "GET /health"']
logs.log_record = ['severity_number < SEVERITY_NUMBER_INFO']
metrics.metric = ['name == "shop.noise"']

[processors.tidy]
type = "attributes"
[[processors.tidy.actions]]
key = "user.id"
action = "hash"
[[processors.tidy.actions]]
key = "http.url"
pattern = '^(?P<url_scheme>\w+)://(?P<url_host>[^/]+)/'
action = "extract"
[[processors.tidy.actions]]
key = "internal.debug"
action = "delete"
[[processors.tidy.actions]]
key = "pipeline.stage"
value = "processed"
action = "upsert"

[processors.env]
type = "resource"
[[processors.env.attributes]]
key = "deployment.environment"
value = "test"
action = "insert"
[[processors.env.attributes]]
key = "host.name"
action = "delete"

[processors.pii]
type = "redaction"
allow_all_keys = true
ignored_keys = ["service.instance.id"]
blocked_values = ['{EMAIL}', '{CARD}', '{API_KEY}']
summary = "debug"

[processors.batch]
type = "batch"
timeout = "50ms"

[exporters.backend]
type = "otlp"
endpoint = "{backend}"
protocol = "grpc"

[[pipelines]]
name = "all"
signals = ["traces", "metrics", "logs"]
receivers = ["otlp"]
processors = ["drop_noise", "tidy", "env", "pii", "batch"]
exporters = ["backend"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_data_is_filtered_rewritten_and_redacted() {
    let backend = OtlpTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let cfg = write_config(
        dir.path(),
        "sluice.toml",
        &config(grpc, &backend.grpc_endpoint()),
    );
    let sluice = Sluice::start(&cfg, &dir.path().join("data")).await;

    let run_id = "proc-e2e-1";
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let sent = support::run_python_script("processors_send.py", &[&endpoint, run_id]);
    let trace_id = sent["trace_id"].as_str().expect("trace id").to_string();

    // Spans: only "checkout" arrives, rewritten and redacted.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ours = |r: &opentelemetry_proto::tonic::resource::v1::Resource| {
        text(&r.attributes, "service.instance.id").as_deref() == Some(run_id)
    };
    let (spans, logs, metrics) = loop {
        let spans: Vec<_> = backend
            .resource_spans()
            .into_iter()
            .filter(|r| r.resource.as_ref().is_some_and(ours))
            .collect();
        let logs: Vec<_> = backend
            .resource_logs()
            .into_iter()
            .filter(|r| r.resource.as_ref().is_some_and(ours))
            .collect();
        let metrics: Vec<_> = backend
            .resource_metrics()
            .into_iter()
            .filter(|r| r.resource.as_ref().is_some_and(ours))
            .collect();
        if (!spans.is_empty() && !logs.is_empty() && !metrics.is_empty())
            || std::time::Instant::now() > deadline
        {
            break (spans, logs, metrics);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let all_spans: Vec<_> = spans
        .iter()
        .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
        .collect();
    let names: Vec<&str> = all_spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["checkout"],
        "the health check span is filtered out"
    );
    let span = all_spans[0];
    assert_eq!(hex::encode(&span.trace_id), trace_id);
    let a = &span.attributes;
    assert_eq!(text(a, "user.email").as_deref(), Some("****"));
    assert_eq!(
        text(a, "payment.note").as_deref(),
        Some("card **** charged")
    );
    assert_eq!(
        text(a, "user.id"),
        Some(sluice_processors::data::sha256_hex(b"u-42"))
    );
    assert_eq!(text(a, "url_scheme").as_deref(), Some("https"));
    assert_eq!(text(a, "url_host").as_deref(), Some("shop.example"));
    assert_eq!(text(a, "internal.debug"), None);
    assert_eq!(text(a, "pipeline.stage").as_deref(), Some("processed"));
    assert_eq!(
        text(a, "redaction.masked.keys").as_deref(),
        Some("user.email,payment.note")
    );
    let res = spans[0].resource.as_ref().unwrap();
    assert_eq!(
        text(&res.attributes, "deployment.environment").as_deref(),
        Some("test")
    );
    assert_eq!(text(&res.attributes, "host.name"), None);
    assert_eq!(
        text(&res.attributes, "service.name").as_deref(),
        Some("shop")
    );

    // Logs: the debug record is filtered; the error's body is redacted.
    let records: Vec<_> = logs
        .iter()
        .flat_map(|r| r.scope_logs.iter().flat_map(|s| s.log_records.iter()))
        .collect();
    assert_eq!(records.len(), 1, "the debug record is filtered out");
    let body = match records[0].body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("unexpected body {other:?}"),
    };
    assert_eq!(body, "payment failed for **** with key ****");
    assert_eq!(
        text(&records[0].attributes, "pipeline.stage").as_deref(),
        Some("processed")
    );

    // Metrics: shop.noise is filtered, shop.orders keeps its point with the added attribute.
    let names: Vec<String> = metrics
        .iter()
        .flat_map(|r| r.scope_metrics.iter().flat_map(|s| s.metrics.iter()))
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(names, vec!["shop.orders".to_string()]);

    // Counters: per processor, items in and out, drops with their reason.
    let dropped = sluice
        .metric("sluice_processor_dropped_items_total{component_id=\"processors.drop_noise\",pipeline=\"all\",signal=\"traces\",reason=\"filtered\"}")
        .await;
    assert_eq!(dropped, 1.0);
    let dropped_logs = sluice
        .metric("sluice_processor_dropped_items_total{component_id=\"processors.drop_noise\",pipeline=\"all\",signal=\"logs\",reason=\"filtered\"}")
        .await;
    assert_eq!(dropped_logs, 1.0);
    let tidy_in = sluice
        .metric("sluice_processor_incoming_items_total{component_id=\"processors.tidy\",pipeline=\"all\",signal=\"traces\"}")
        .await;
    let tidy_out = sluice
        .metric("sluice_processor_outgoing_items_total{component_id=\"processors.tidy\",pipeline=\"all\",signal=\"traces\"}")
        .await;
    assert_eq!((tidy_in, tidy_out), (1.0, 1.0));
    let filter_in = sluice
        .metric("sluice_processor_incoming_items_total{component_id=\"processors.drop_noise\",pipeline=\"all\",signal=\"traces\"}")
        .await;
    assert_eq!(filter_in, 2.0);
    assert!(
        sluice
            .metric("sluice_processor_duration_seconds_count{component_id=\"processors.pii\"")
            .await
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_condition_fails_at_start_with_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "bad.toml",
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:0"

[processors.f]
type = "filter"
traces.span = ['severity_number > 3']

[exporters.d]
type = "debug"

[[pipelines]]
name = "p"
signals = ["traces"]
receivers = ["otlp"]
processors = ["f"]
exporters = ["d"]
"#,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:")
            && err.contains("processors.f.traces.span")
            && err.contains("unknown path \"severity_number\" in the span context"),
        "{err}"
    );
}
