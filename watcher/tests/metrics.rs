//! Self-metrics as a Prometheus scrape would show them: alerts received, refusals by reason,
//! investigations and their latency, actions by script and outcome, approvals by state and
//! pending, the autonomous-remediation ratio, and the processor's `watcher_busy` count.

mod support;

use bytes::Bytes;
use serde_json::json;
use sluice_core::{Item, Signal};
use std::time::Duration;
use support::*;

fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[tokio::test]
async fn self_metrics_tell_what_happened() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let (awf, _rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&config(&awf, "window = { queue = 1 }"), dir.path()).await;

    // One refused request, one autonomous action, one approval.
    let (s, _) = h
        .post("/webhooks/grafana-alerts", "wrong", json!({"alerts": []}))
        .await;
    assert_eq!(s, 401);
    let a = grafana_alert(
        "firing",
        &[("alertname", "AwfAgentFailing"), ("agent_id", "planner")],
        &[],
        &rfc3339_now(),
        "fp-m1",
    );
    let (_, v) = h
        .post_alerts("/webhooks/grafana-alerts", &grafana_payload(vec![a]))
        .await;
    let id = v["summary"]["incidents"][0].as_str().unwrap().to_owned();
    h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    let b = grafana_alert(
        "firing",
        &[("alertname", "AwfAgentRunaway"), ("agent_id", "coder")],
        &[],
        &rfc3339_now(),
        "fp-m2",
    );
    h.post_alerts("/webhooks/grafana-alerts", &grafana_payload(vec![b]))
        .await;
    h.wait_pending(1, Duration::from_secs(5)).await;

    // The processor never blocks: with a one-slot queue most observations are skipped, every
    // item still passes unchanged.
    let p = h.watcher.processor();
    let item = Item::new(Signal::Logs, Bytes::from_static(b"\x0a\x00"), 3);
    for _ in 0..50 {
        assert_eq!(p.process(item.clone()).unwrap(), Some(item.clone()));
    }

    let text = handle.render();
    let c = "component_id=\"processors.watcher\"";
    assert_eq!(
        value(
            &text,
            "sluice_watcher_webhook_refused_total",
            &[c, "reason=\"auth_bad_bearer\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "sluice_watcher_alerts_received_total",
            &[c, "source=\"grafana\"", "outcome=\"new\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "sluice_watcher_investigations_total", &[c]),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "sluice_watcher_investigation_duration_seconds_count",
            &[c]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "sluice_watcher_actions_total",
            &[c, "script=\"switch_fallback\"", "outcome=\"ok\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "sluice_watcher_approvals_total",
            &[c, "state=\"requested\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "sluice_watcher_approvals_pending", &[c]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "sluice_watcher_incidents_total",
            &[c, "outcome=\"done\""]
        ),
        Some(1.0)
    );
    // The one decided incident ran without approval; the verification had no query, so it
    // is `done`, not `recovered`: the ratio counts only verified recoveries.
    assert_eq!(
        value(&text, "sluice_watcher_autonomous_remediation_ratio", &[c]),
        Some(0.0)
    );
    let busy = value(
        &text,
        "sluice_processor_dropped_items_total",
        &[c, "reason=\"watcher_busy\""],
    )
    .expect("watcher_busy counted");
    assert!(busy >= 3.0, "{busy}");
    h.stop().await;
}
