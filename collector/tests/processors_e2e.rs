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
            && err.contains("processors.f")
            && err.contains("processors.f.traces.span[0]: \"severity_number > 3\": ")
            && err.contains("unknown path \"severity_number\" in the span context"),
        "{err}"
    );
}

/// `n` spans of distinct traces, each with a `pad_bytes` attribute, timed now.
fn big_trace_request(n: usize, pad_bytes: usize, seed: u64) -> bytes::Bytes {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let pad = "x".repeat(pad_bytes);
    let spans = (0..n as u64)
        .map(|i| {
            let id = seed * 1_000_000 + i + 1;
            Span {
                trace_id: [id.to_be_bytes(), id.to_le_bytes()].concat(),
                span_id: id.to_be_bytes().to_vec(),
                name: "work".into(),
                start_time_unix_nano: now - 1_000_000,
                end_time_unix_nano: now,
                attributes: vec![KeyValue {
                    key: "pad".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(pad.clone())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    bytes::Bytes::from(req.encode_to_vec())
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A load that would hold far more than the limit in memory (tail sampling keeps every trace
/// for an hour) is refused with RESOURCE_EXHAUSTED / 429 once memory passes the soft limit,
/// and the process's peak resident memory stays under the hard limit while the load goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limiter_refuses_a_load_that_would_exceed_the_limit() {
    const LIMIT_MIB: u64 = 256;
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let http = free_port();
    let cfg = write_config(
        dir.path(),
        "sluice.toml",
        &format!(
            r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"
[receivers.otlp.http]
endpoint = "127.0.0.1:{http}"

[processors.limit]
type = "memory_limiter"
check_interval = "1ms"
limit_mib = {LIMIT_MIB}
spike_limit_mib = 64

[processors.hold]
type = "tail_sampling"
decision_wait = "1h"
num_traces = 10000000
[[processors.hold.policies]]
name = "all"
type = "always_sample"

[exporters.out]
type = "debug"

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp"]
processors = ["limit", "hold"]
exporters = ["out"]
"#
        ),
    );
    let sluice = Sluice::start(&cfg, &dir.path().join("data")).await;
    let pid = sluice.child.id();
    let mut client = support::TraceClient::new(&format!("http://127.0.0.1:{grpc}"));

    // ~1.1 MB per request; 700 requests would hold well over twice the limit.
    let mut offered = 0u64;
    let mut accepted = 0u32;
    let mut refused = 0u32;
    for seed in 0..700u64 {
        let body = big_trace_request(500, 2000, seed);
        offered += body.len() as u64;
        match client.send(body).await {
            Ok(()) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                refused += 1;
            }
        }
    }
    // Held in memory, what was offered is several times the limit (its decoded form is
    // larger still than these wire bytes).
    assert!(
        offered > 2 * LIMIT_MIB * 1024 * 1024,
        "offered {offered} bytes"
    );
    assert!(accepted > 0, "data under the limit is accepted");
    assert!(refused > 100, "refused {refused} of the requests");
    let peak = peak_rss(pid);
    eprintln!(
        "offered {} MiB in {} requests, accepted {accepted}, refused {refused}, peak RSS {} MiB",
        offered >> 20,
        accepted + refused,
        peak >> 20
    );
    assert!(
        peak < LIMIT_MIB * 1024 * 1024,
        "peak RSS {} MiB must stay under the {LIMIT_MIB} MiB limit",
        peak >> 20
    );

    // OTLP/HTTP gets 429 with a retry delay.
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(big_trace_request(10, 100, 9999))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));

    let counted = sluice
        .metric("sluice_processor_refused_items_total{component_id=\"processors.limit\",pipeline=\"traces\",signal=\"traces\",reason=\"memory_limit\"}")
        .await;
    assert!(
        counted >= f64::from(refused) * 500.0,
        "refusals counted: {counted}"
    );
}

/// Tail sampling through the binary: the Python SDK sends each span on its own; whole traces
/// with an error or lasting over a second arrive at the backend, every other trace is dropped
/// once its decision is made. A transform stage after the sampler tags what it keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sampling_keeps_whole_error_and_slow_traces() {
    let backend = OtlpTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let cfg = write_config(
        dir.path(),
        "sluice.toml",
        &format!(
            r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"

[processors.sample]
type = "tail_sampling"
decision_wait = "1s"
[[processors.sample.policies]]
name = "errors"
type = "status_code"
status_code = {{ status_codes = ["ERROR"] }}
[[processors.sample.policies]]
name = "slow"
type = "latency"
latency = {{ threshold_ms = 1000 }}
[[processors.sample.policies]]
name = "none_of_the_rest"
type = "probabilistic"
probabilistic = {{ sampling_percentage = 0 }}

[processors.tag]
type = "transform"
[[processors.tag.trace_statements]]
context = "span"
statements = ['set(attributes["sampled"], true)']

[exporters.backend]
type = "otlp"
endpoint = "{}"
protocol = "grpc"

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp"]
processors = ["sample", "tag"]
exporters = ["backend"]
"#,
            backend.grpc_endpoint()
        ),
    );
    let sluice = Sluice::start(&cfg, &dir.path().join("data")).await;
    let sent = support::run_python_script(
        "tail_sampling_send.py",
        &[&format!("http://127.0.0.1:{grpc}"), "ts-1"],
    );

    // Every trace is decided: 2 kept, 20 dropped.
    let decided = |d: &'static str| {
        format!(
            "sluice_processor_tail_sampling_traces_total{{component_id=\"processors.sample\",pipeline=\"traces\",decision=\"{d}\""
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (sluice.metric(&decided("sampled")).await < 2.0
        || sluice.metric(&decided("not_sampled")).await < 20.0)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sluice.metric(&decided("sampled")).await, 2.0);
    assert_eq!(sluice.metric(&decided("not_sampled")).await, 20.0);

    // The kept traces arrive whole, tagged by the stage after the sampler.
    let wanted = [
        sent["error"].as_str().unwrap(),
        sent["slow"].as_str().unwrap(),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<_> = backend
            .resource_spans()
            .into_iter()
            .flat_map(|r| r.scope_spans.into_iter().flat_map(|s| s.spans))
            .collect();
        if spans.len() >= 4 || std::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut got: Vec<(String, String)> = spans
        .iter()
        .map(|s| (hex::encode(&s.trace_id), s.name.clone()))
        .collect();
    got.sort();
    let mut expected = vec![
        (wanted[0].to_string(), "checkout".to_string()),
        (wanted[0].to_string(), "charge card".to_string()),
        (wanted[1].to_string(), "report".to_string()),
        (wanted[1].to_string(), "query".to_string()),
    ];
    expected.sort();
    assert_eq!(
        got, expected,
        "only the error and the slow trace, each whole"
    );
    assert!(
        spans
            .iter()
            .all(|s| s.attributes.iter().any(|kv| kv.key == "sampled"))
    );
    let dropped = sluice
        .metric("sluice_processor_dropped_items_total{component_id=\"processors.sample\",pipeline=\"traces\",signal=\"traces\",reason=\"not_sampled\"}")
        .await;
    assert_eq!(dropped, 20.0);
}
