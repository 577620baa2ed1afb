//! Restarts: queued and mid-investigation incidents resume, approvals (pending, or expired
//! while down) survive, de-duplication survives, and an action cut off mid-flight is recorded
//! as interrupted and never repeated.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

fn alert(name: &str, agent: &str, fp: &str) -> Value {
    grafana_alert(
        "firing",
        &[("alertname", name), ("agent_id", agent)],
        &[("watcher_query", "sum(awf_step_failures) > 0")],
        "2025-06-01T00:00:00Z",
        fp,
    )
}

async fn fire(h: &Harness, a: Value) -> String {
    let (s, v) = h
        .post_alerts("/webhooks/grafana-alerts", &grafana_payload(vec![a]))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["summary"]["incidents"][0].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_investigation_cut_by_a_restart_resumes_and_acts_once() {
    let (awf, rec) = recorder().await;
    let (prom, prom_rec) = recorder().await;
    prom_rec.set_reply(
        200,
        json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
    );
    *prom_rec.delay.lock() = Duration::from_millis(1500);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&awf, &format!("prometheus_url = \"{prom}\""));
    cfg.investigation_budget = sluice_core::DurationStr::from_secs(4);
    cfg.source_timeout = sluice_core::DurationStr::from_secs(3);

    let h = Harness::start(&cfg, dir.path()).await;
    let id = fire(&h, alert("AwfAgentFailing", "writer", "fp-restart")).await;
    h.wait_stage(&id, "investigating", Duration::from_secs(3))
        .await;
    // Crash-stop while Prometheus is still thinking.
    h.stop().await;
    assert!(rec.calls().is_empty());
    let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"stage\":\"investigating\""), "{journal}");

    let h = Harness::start(&cfg, dir.path()).await;
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(10)).await;
    assert_eq!(inc["outcome"], "recovered", "{inc:#}");
    assert_eq!(rec.calls().len(), 1, "acted exactly once");
    assert!(
        h.audit()
            .iter()
            .any(|e| e["kind"] == "resumed" && e["incident_id"] == id.as_str())
    );
    // The key is still remembered: a repeat is a duplicate.
    let (_, v) = h
        .post_alerts(
            "/webhooks/grafana-alerts",
            &grafana_payload(vec![alert("AwfAgentFailing", "writer", "fp-restart")]),
        )
        .await;
    assert_eq!(v["summary"]["duplicates"], 1);
    // The watcher's verification re-queried the alert's signal.
    assert!(
        prom_rec
            .calls()
            .iter()
            .any(|c| c.query.contains("awf_step_failures"))
    );
    h.stop().await;
}

#[tokio::test]
async fn pending_approvals_survive_a_restart_and_expire_while_down() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&awf, "");
    let h = Harness::start(&cfg, dir.path()).await;
    let id = fire(&h, alert("AwfAgentRunaway", "coder", "fp-keep")).await;
    let ap = h.wait_pending(1, Duration::from_secs(5)).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.stop().await;

    let h = Harness::start(&cfg, dir.path()).await;
    let pending = h.pending().await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], ap.as_str());
    assert_eq!(h.incident(&id).await["stage"], "awaiting_approval");
    let (s, _) = h
        .post(&format!("/approvals/{ap}/approve"), ALICE, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    assert_eq!(inc["actions"][0]["approved_by"], "alice");
    assert_eq!(rec.calls().len(), 1);
    h.stop().await;

    // An approval whose deadline passes while the watcher is down is expired at start.
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&awf, "approval_expiry = \"600ms\"");
    let h = Harness::start(&cfg, dir.path()).await;
    let id = fire(&h, alert("AwfAgentRunaway", "coder", "fp-expire-down")).await;
    let ap = h.wait_pending(1, Duration::from_secs(5)).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.stop().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let h = Harness::start(&cfg, dir.path()).await;
    assert!(h.pending().await.is_empty());
    assert_eq!(h.incident(&id).await["outcome"], "expired");
    let (s, _) = h
        .post(&format!("/approvals/{ap}/approve"), ALICE, json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(rec.calls().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn an_action_cut_off_by_a_restart_is_not_repeated() {
    let (awf, rec) = recorder().await;
    *rec.delay.lock() = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&awf, "");
    let h = Harness::start(&cfg, dir.path()).await;
    let id = fire(&h, alert("AwfAgentFailing", "writer", "fp-cut")).await;
    h.wait_stage(&id, "acting", Duration::from_secs(5)).await;
    eventually(Duration::from_secs(3), "the call to arrive", async || {
        rec.calls().len() == 1
    })
    .await;
    h.stop().await;

    let h = Harness::start(&cfg, dir.path()).await;
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    assert_eq!(inc["outcome"], "interrupted");
    assert_eq!(inc["actions"][0]["outcome"], "interrupted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.calls().len(), 1, "not repeated after the restart");
    assert!(h.audit().iter().any(|e| e["kind"] == "action_interrupted"));
    h.stop().await;
}
