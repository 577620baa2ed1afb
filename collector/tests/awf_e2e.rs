//! AWF end to end: the AWF simulator → Sluice (AWF receiver by discovery) → the real Prometheus
//! (remote-write), the OTLP test backend (Tempo's role) and the Loki test backend. The AWF SLO
//! recording-rule expressions (deploy/prometheus/rules/awf-slo.yml) must evaluate to numbers in PromQL.

mod support;

use sluice_testkit::loki::LokiTestServer;
use sluice_testkit::otlp::OtlpTestServer;
use sluice_testkit::prometheus::PrometheusServer;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Sluice, free_port, write_config};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Polls an instant query until it returns a finite number.
async fn number(prom: &PrometheusServer, promql: &str, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let result = prom.query(promql, now()).await;
        if let Some(v) = result
            .first()
            .and_then(|s| s.value.as_deref())
            .and_then(|v| v.parse::<f64>().ok())
            && v.is_finite()
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{promql} gave no number: {result:?}\n{}",
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_to_prometheus_loki_and_tempo_with_prd_slo_rules() {
    let prom = PrometheusServer::start().await;
    let tempo = OtlpTestServer::start().await;
    let loki = LokiTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = free_port();
    let config = format!(
        r#"
[awf_simulator]
listen = "127.0.0.1:{sim}"
events_per_second = 300
speed = 20

[receivers.awf]
type = "awf"
metrics_interval = "1s"
[receivers.awf.discovery]
url = "http://127.0.0.1:{sim}/executions"
interval = "500ms"

[processors.batch]
type = "batch"
timeout = "100ms"

[exporters.mimir]
type = "prometheus_remote_write"
url = "{write}"
[exporters.tempo]
type = "otlp"
endpoint = "{tempo}"
[exporters.loki]
type = "loki"
url = "{loki}"
tenant_id = "awf"

[[pipelines]]
name = "metrics"
signals = ["metrics"]
receivers = ["awf"]
processors = ["batch"]
exporters = ["mimir"]

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["awf"]
processors = ["batch"]
exporters = ["tempo"]

[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["awf"]
processors = ["batch"]
exporters = ["loki"]
"#,
        write = prom.write_url(),
        tempo = tempo.grpc_endpoint(),
        loki = loki.push_url(),
    );
    let path = write_config(dir.path(), "awf.toml", &config);
    let sluice = Sluice::start(&path, &dir.path().join("data")).await;

    // The AWF SLO recording rules, evaluated as expressions.
    let success_rate = "sum(rate(awf_workflow_total{status=\"completed\"}[5m])) / sum(rate(awf_workflow_total[5m]))";
    let p99 = "histogram_quantile(0.99, sum(rate(awf_step_duration_ms_bucket[5m])) by (le))";
    let budget = format!("1 - ((1 - ({success_rate})) / (1 - 0.999))");
    let rate = number(&prom, success_rate, Duration::from_secs(60)).await;
    assert!((0.0..=1.0).contains(&rate), "success rate {rate}");
    let latency = number(&prom, p99, Duration::from_secs(30)).await;
    assert!(latency > 0.0, "p99 step latency {latency} ms");
    let remaining = number(&prom, &budget, Duration::from_secs(10)).await;
    assert!(remaining <= 1.0, "error budget remaining {remaining}");
    println!(
        "AWF SLOs from simulated AWF: success rate {rate:.3}, step p99 {latency:.0} ms, error budget remaining {remaining:.1}"
    );

    // The metric families the recording rules use exist; execution_id never became a label.
    for family in [
        "awf_tokens_total",
        "awf_cost_usd_total",
        "awf_workflow_total",
        "awf_step_duration_ms_count",
    ] {
        assert!(
            number(&prom, &format!("count({family})"), Duration::from_secs(10)).await > 0.0,
            "{family}"
        );
    }
    assert!(
        prom.query("count({execution_id!=\"\"})", now())
            .await
            .is_empty(),
        "execution_id must not be a metric label"
    );

    // Traces: the span tree reached the Tempo-role backend.
    assert!(
        tempo
            .wait_until(Duration::from_secs(20), |t| t
                .spans()
                .iter()
                .any(|s| s.name == "awf.agent.invoke"))
            .await
    );
    let spans = tempo.spans();
    let step = spans
        .iter()
        .find(|s| s.name == "awf.step")
        .expect("a step span");
    let parent = spans
        .iter()
        .find(|s| s.span_id == step.parent_span_id)
        .expect("the step's parent is present");
    assert_eq!(parent.name, "awf.workflow");
    assert_eq!(parent.trace_id, step.trace_id);

    // Logs: one per event in Loki, linked to traces by trace id.
    assert!(loki.wait_for_entries(10, Duration::from_secs(20)).await);
    let streams = loki.streams("awf");
    assert!(!streams.is_empty());
    let line = streams
        .iter()
        .flat_map(|s| s.lines())
        .find(|l| l.contains("traceid"))
        .expect("a line with a trace id");
    assert!(line.contains("execution_id"), "{line}");
    drop(sluice);
}
