//! The real `sluice` binary end to end: the official OpenTelemetry Python SDK sends all three
//! signals over gRPC and HTTP, Sluice forwards with its OTLP exporter to the OTLP test backend,
//! and everything must arrive intact. Plus the admin surface, reload and SIGTERM draining.

mod support;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use sluice_testkit::otlp::OtlpTestServer;
use std::time::Duration;
use support::{Sluice, free_port, write_config};

fn pipeline_config(grpc: u16, http: u16, backend: &str) -> String {
    format!(
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"
[receivers.otlp.http]
endpoint = "127.0.0.1:{http}"

[processors.batch]
type = "batch"
timeout = "50ms"

[exporters.tempo]
type = "otlp"
endpoint = "{backend}"
protocol = "grpc"

[[pipelines]]
name = "all"
signals = ["traces", "metrics", "logs"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["tempo"]
"#
    )
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

#[derive(serde::Deserialize)]
struct Sent {
    trace_id: String,
    parent_span_id: String,
    child_span_id: String,
}

fn run_python(protocol: &str, endpoint: &str, run_id: &str) -> Sent {
    serde_json::from_value(support::run_python_sdk(protocol, endpoint, run_id))
        .expect("ids from the SDK run")
}

/// The SDK exports metrics in two rounds (cumulative 5, then 10): waits until the last round
/// of `run_id` has arrived, since the first can arrive on its own before it.
async fn wait_for_final_metrics(server: &OtlpTestServer, run_id: &str) {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value as V};
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let last_requests = server
            .resource_metrics()
            .into_iter()
            .filter(|r| {
                r.resource.as_ref().is_some_and(|res| {
                    string_attr(&res.attributes, "service.instance.id").as_deref() == Some(run_id)
                })
            })
            .flat_map(|r| r.scope_metrics.into_iter().flat_map(|s| s.metrics))
            .filter(|m| m.name == "interop.requests")
            .filter_map(|m| match m.data {
                Some(Data::Sum(s)) => s.data_points.first().and_then(|p| p.value),
                _ => None,
            })
            .next_back();
        if matches!(last_requests, Some(V::AsInt(10))) || std::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check_run(server: &OtlpTestServer, run_id: &str, sent: &Sent) {
    // Traces: both spans, ids, parent link, attributes of every type, event, status, resource.
    let rs = server.resource_spans();
    let (resource, spans): (Vec<_>, Vec<_>) = rs
        .iter()
        .filter(|r| {
            r.resource.as_ref().is_some_and(|res| {
                string_attr(&res.attributes, "service.instance.id").as_deref() == Some(run_id)
            })
        })
        .flat_map(|r| {
            r.scope_spans.iter().flat_map(move |s| {
                s.spans
                    .iter()
                    .map(move |sp| (r.resource.clone(), (s.scope.clone(), sp.clone())))
            })
        })
        .unzip();
    assert_eq!(spans.len(), 2, "{run_id}: parent and child");
    let res = resource[0].as_ref().unwrap();
    assert_eq!(
        string_attr(&res.attributes, "service.name").as_deref(),
        Some("py-interop")
    );
    let (scope, child) = spans
        .iter()
        .find(|(_, s)| s.name == "child")
        .expect("child span");
    let (_, parent) = spans
        .iter()
        .find(|(_, s)| s.name == "parent")
        .expect("parent span");
    assert_eq!(scope.as_ref().unwrap().name, "interop.tracer");
    assert_eq!(hex::encode(&child.trace_id), sent.trace_id);
    assert_eq!(hex::encode(&parent.span_id), sent.parent_span_id);
    assert_eq!(hex::encode(&child.span_id), sent.child_span_id);
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(
        attr(&child.attributes, "tokens"),
        Some(&Value::IntValue(1234))
    );
    assert_eq!(
        attr(&child.attributes, "cost"),
        Some(&Value::DoubleValue(0.25))
    );
    assert_eq!(
        attr(&child.attributes, "cached"),
        Some(&Value::BoolValue(true))
    );
    assert!(
        matches!(attr(&child.attributes, "agents"), Some(Value::ArrayValue(a)) if a.values.len() == 2)
    );
    assert_eq!(child.events.len(), 1);
    assert_eq!(child.events[0].name, "retry");
    assert_eq!(
        child.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((2, "agent failed"))
    );
    assert_eq!(
        string_attr(&parent.attributes, "run.id").as_deref(),
        Some(run_id)
    );

    // Logs: both records with severity, body, attributes and the trace context.
    let logs: Vec<_> = server
        .log_records()
        .into_iter()
        .filter(|l| string_attr(&l.attributes, "run.id").as_deref() == Some(run_id))
        .collect();
    assert_eq!(logs.len(), 2, "{run_id}: two log records");
    let err = logs
        .iter()
        .find(|l| l.severity_number == 17)
        .expect("ERROR record");
    assert_eq!(
        err.body.as_ref().and_then(|b| b.value.clone()),
        Some(Value::StringValue(format!("step failed for {run_id}")))
    );
    assert_eq!(hex::encode(&err.trace_id), sent.trace_id);
    assert_eq!(hex::encode(&err.span_id), sent.child_span_id);
    assert_eq!(
        string_attr(&err.attributes, "step").as_deref(),
        Some("plan")
    );

    // Metrics: each instrument with its value.
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    let metrics: Vec<_> = server
        .resource_metrics()
        .into_iter()
        .filter(|r| {
            r.resource.as_ref().is_some_and(|res| {
                string_attr(&res.attributes, "service.instance.id").as_deref() == Some(run_id)
            })
        })
        .flat_map(|r| r.scope_metrics.into_iter().flat_map(|s| s.metrics))
        .collect();
    // The last export round holds the final cumulative values.
    let find = |name: &str| {
        metrics
            .iter()
            .rev()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{run_id}: metric {name} missing"))
    };
    let sum_value = |name: &str| match &find(name).data {
        Some(Data::Sum(s)) => match s.data_points[0].value {
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            Some(number_data_point::Value::AsDouble(v)) => v,
            None => f64::NAN,
        },
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(sum_value("interop.requests"), 10.0);
    assert_eq!(sum_value("interop.queue"), 10.0);
    match &find("interop.latency").data {
        Some(Data::Histogram(h)) => {
            assert_eq!(h.data_points[0].count, 8);
            assert_eq!(h.data_points[0].sum, Some(626.0));
        }
        other => panic!("histogram: {other:?}"),
    }
    match &find("interop.temperature").data {
        Some(Data::Gauge(g)) => assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(21.5))
        ),
        other => panic!("gauge: {other:?}"),
    }
    assert_eq!(find("interop.latency").unit, "ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc_and_http_arrives_intact() {
    let backend = OtlpTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        "sluice.toml",
        &pipeline_config(grpc, http, &backend.grpc_endpoint()),
    );
    let sluice = Sluice::start(&config, &dir.path().join("data")).await;

    let over_grpc = run_python("grpc", &format!("127.0.0.1:{grpc}"), "run-grpc");
    let over_http = run_python("http", &format!("http://127.0.0.1:{http}"), "run-http");
    assert!(
        backend.wait_for_spans(4, Duration::from_secs(20)).await,
        "spans: {}",
        backend.span_count()
    );
    assert!(
        backend
            .wait_for_log_records(4, Duration::from_secs(20))
            .await
    );
    assert!(
        backend
            .wait_for_metric_points(8, Duration::from_secs(20))
            .await
    );
    wait_for_final_metrics(&backend, "run-grpc").await;
    wait_for_final_metrics(&backend, "run-http").await;
    check_run(&backend, "run-grpc", &over_grpc);
    check_run(&backend, "run-http", &over_http);

    // Self-metrics count what came in and what went out, per component.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = sluice
        .metric("sluice_receiver_accepted_items_total{component_id=\"receivers.otlp\"")
        .await;
    assert!(
        accepted >= 16.0,
        "accepted {accepted}\n{}",
        sluice.get("/metrics").await.1
    );
    let sent = sluice
        .metric("sluice_exporter_sent_items_total{component_id=\"exporters.tempo\"")
        .await;
    assert!(sent >= 16.0, "sent {sent}");
    // An exporter that keeps up reads what it sends from the spool's memory tail.
    let from_memory = sluice
        .metric(
            "sluice_spool_read_items_total{pipeline=\"all\",exporter=\"tempo\",source=\"memory\"}",
        )
        .await;
    assert!(from_memory >= 16.0, "{}", sluice.get("/metrics").await.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_reload_and_bad_reload() {
    let backend = OtlpTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let text = pipeline_config(grpc, http, &backend.grpc_endpoint());
    let config = write_config(dir.path(), "sluice.toml", &text);
    let sluice = Sluice::start(&config, &dir.path().join("data")).await;
    assert_eq!(sluice.get("/-/ready").await.0, 200);
    assert_eq!(sluice.get("/-/healthy").await.0, 200);
    let (code, metrics) = sluice.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("sluice_config_last_load_successful 1"),
        "{metrics}"
    );

    // A changed config: the HTTP listener moves to another port.
    let http2 = free_port();
    std::fs::write(
        &config,
        text.replace(&format!("127.0.0.1:{http}"), &format!("127.0.0.1:{http2}")),
    )
    .unwrap();
    assert_eq!(
        sluice.post("/-/reload").await,
        (200, "config reloaded\n".to_string())
    );
    let body = sluice_loadgen::loadgen::build_request(3, 1, 42);
    let client = reqwest::Client::new();
    let post = |port: u16| {
        let client = client.clone();
        let body = prost::Message::encode_to_vec(&body);
        async move {
            client
                .post(format!("http://127.0.0.1:{port}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(post(http2).await.unwrap(), 200);
    assert!(post(http).await.is_err(), "old port is closed after reload");

    // A broken config is refused with its location; the running one keeps serving.
    std::fs::write(
        &config,
        text.replace("type = \"batch\"", "type = \"batch\"\nbogus = 1"),
    )
    .unwrap();
    let (code, msg) = sluice.get("/-/reload").await;
    assert_eq!(code, 400);
    assert!(
        msg.contains("sluice.toml:") && msg.contains("processors.batch.bogus"),
        "{msg}"
    );
    assert_eq!(post(http2).await.unwrap(), 200);
    assert!(
        sluice
            .get("/metrics")
            .await
            .1
            .contains("sluice_config_last_load_successful 0")
    );
    assert!(backend.wait_for_spans(6, Duration::from_secs(10)).await);

    // SIGHUP reloads too (back to a valid file).
    std::fs::write(&config, &text).unwrap();
    sluice.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while post(http).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP reload did not happen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_accepted_data_and_keeps_the_rest_for_next_start() {
    let backend = OtlpTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        "sluice.toml",
        &pipeline_config(grpc, http, &backend.grpc_endpoint()),
    );
    let storage = dir.path().join("data");

    // Backend up: everything acknowledged before SIGTERM is delivered before exit.
    let mut sluice = Sluice::start(&config, &storage).await;
    let mut client = support::TraceClient::new(&format!("http://127.0.0.1:{grpc}"));
    for seed in 0..50 {
        let body =
            prost::Message::encode_to_vec(&sluice_loadgen::loadgen::build_request(20, 1, seed));
        client.send(body.into()).await.expect("accepted");
    }
    assert!(
        sluice.terminate(Duration::from_secs(30)),
        "clean exit; log:\n{}",
        sluice.log_text()
    );
    assert_eq!(backend.span_count(), 1000, "drained before exit");

    // Backend down: SIGTERM leaves the data in the spool; the next start delivers it.
    backend.stop().await;
    let mut sluice = Sluice::start_with(&config, &storage, &["--shutdown.timeout=2s"]).await;
    let mut client = support::TraceClient::new(&format!("http://127.0.0.1:{grpc}"));
    for seed in 100..110 {
        let body =
            prost::Message::encode_to_vec(&sluice_loadgen::loadgen::build_request(10, 1, seed));
        client
            .send(body.into())
            .await
            .expect("accepted while backend is down");
    }
    assert!(
        sluice.terminate(Duration::from_secs(20)),
        "exits at the drain deadline; log:\n{}",
        sluice.log_text()
    );
    backend.restart().await;
    let _sluice = Sluice::start(&config, &storage).await;
    assert!(
        backend.wait_for_spans(1100, Duration::from_secs(20)).await,
        "got {}",
        backend.span_count()
    );
}
