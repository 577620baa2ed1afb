//! Metrics to Mimir's role, end to end: the official OpenTelemetry Python SDK → Sluice (OTLP
//! receiver → spool → remote-write exporter) → the real Prometheus (remote-write receiver), then
//! PromQL over Prometheus' HTTP API sees exactly the names, labels and values the OTLP →
//! Prometheus rules give.

mod support;

use sluice_testkit::prometheus::PrometheusServer;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Sluice, free_port, write_config};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn value(prom: &PrometheusServer, promql: &str) -> Option<f64> {
    prom.query(promql, now())
        .await
        .first()
        .and_then(|s| s.value.as_deref())
        .and_then(|v| v.parse().ok())
}

async fn eventually_value(prom: &PrometheusServer, promql: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = value(prom, promql).await
            && v.is_finite()
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no value for {promql}\n{}",
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until `promql` has the value `expected`: the SDK exports twice (cumulative 5, then
/// 10), and the first round can be queryable before the second has been delivered.
async fn eventually_equals(prom: &PrometheusServer, promql: &str, expected: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = eventually_value(prom, promql).await;
        if v == expected || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_metrics_reach_real_prometheus_with_exact_names_and_labels() {
    let prom = PrometheusServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let config = format!(
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"

[processors.batch]
type = "batch"
timeout = "50ms"

[exporters.mimir]
type = "prometheus_remote_write"
url = "{}"
send_native_histograms = true

[[pipelines]]
name = "metrics"
signals = ["metrics"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["mimir"]
"#,
        prom.write_url()
    );
    let path = write_config(dir.path(), "rw.toml", &config);
    let _sluice = Sluice::start(&path, &dir.path().join("data")).await;

    support::run_python_sdk("grpc", &format!("127.0.0.1:{grpc}"), "rw-run");

    let sel = r#"{run_id="rw-run", job="awf/py-interop", instance="rw-run", otel_scope_name="interop.meter"}"#;
    // Monotonic sum: `{request}` unit dropped, `_total` added.
    assert_eq!(
        eventually_equals(&prom, &format!("interop_requests_total{sel}"), 10.0).await,
        10.0
    );
    assert_eq!(
        eventually_equals(&prom, r#"interop_requests_total{route="/a"}"#, 10.0).await,
        10.0
    );
    // Non-monotonic sum: a gauge, no `_total`; dimensionless unit `1` adds nothing.
    assert_eq!(
        eventually_equals(&prom, &format!("interop_queue{sel}"), 10.0).await,
        10.0
    );
    // Gauge with unit Cel.
    assert_eq!(
        eventually_equals(&prom, &format!("interop_temperature_celsius{sel}"), 21.5).await,
        21.5
    );
    // Explicit histogram in ms: _count, _sum, cumulative buckets with +Inf = count.
    assert_eq!(
        eventually_equals(
            &prom,
            &format!("interop_latency_milliseconds_count{sel}"),
            8.0
        )
        .await,
        8.0
    );
    assert_eq!(
        eventually_equals(
            &prom,
            &format!("interop_latency_milliseconds_sum{sel}"),
            626.0
        )
        .await,
        626.0
    );
    assert_eq!(
        eventually_equals(
            &prom,
            r#"interop_latency_milliseconds_bucket{run_id="rw-run", le="+Inf"}"#,
            8.0
        )
        .await,
        8.0
    );
    assert_eq!(
        eventually_equals(
            &prom,
            r#"interop_latency_milliseconds_bucket{run_id="rw-run", le="5"}"#,
            2.0
        )
        .await,
        2.0
    );
    let p99 = eventually_value(
        &prom,
        "histogram_quantile(0.99, sum by (le) (rate(interop_latency_milliseconds_bucket[1m])))",
    )
    .await;
    assert!(p99 > 0.0, "p99 {p99}");
    // Exponential histogram → native histogram.
    assert_eq!(
        eventually_equals(
            &prom,
            r#"histogram_count(interop_payload_bytes{run_id="rw-run"})"#,
            6.0
        )
        .await,
        6.0
    );
    assert_eq!(
        eventually_equals(
            &prom,
            r#"histogram_sum(interop_payload_bytes{run_id="rw-run"})"#,
            1200.0
        )
        .await,
        1200.0
    );
    // target_info carries the other resource attributes, keyed by job/instance.
    let info = prom
        .query(
            r#"target_info{job="awf/py-interop", instance="rw-run"}"#,
            now(),
        )
        .await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].value.as_deref(), Some("1"));
    assert_eq!(
        info[0]
            .labels
            .get("telemetry_sdk_language")
            .map(String::as_str),
        Some("python")
    );
    assert!(
        !info[0].labels.contains_key("service_name"),
        "service.* become job/instance, not labels"
    );
}
