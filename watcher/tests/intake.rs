//! Webhook intake: every auth scheme, bad and stale signatures, replays, duplicates (repeats
//! and HA pairs), resolved notifications, malformed and oversized bodies.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use sluice_watcher::auth::sign;
use std::time::Duration;
use support::*;

fn failing_alert(fp: &str, starts: &str) -> Value {
    grafana_alert(
        "firing",
        &[
            ("alertname", "AwfAgentFailing"),
            ("agent_id", "researcher"),
            ("severity", "critical"),
        ],
        &[("summary", "researcher fails")],
        starts,
        fp,
    )
}

async fn raw_post(h: &Harness, path: &str, body: &[u8], headers: &[(&str, String)]) -> StatusCode {
    let mut r = h
        .http
        .post(format!("{}{path}", h.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.send().await.expect("post").status()
}

async fn incident_count(h: &Harness) -> usize {
    let (s, v) = h.get("/watcher/incidents", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    v["incidents"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn every_scheme_authenticates_and_bad_credentials_process_nothing() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&config(&awf, ""), dir.path()).await;
    let path = "/webhooks/grafana-alerts";
    let body = serde_json::to_vec(&grafana_payload(vec![failing_alert(
        "fp-auth",
        "2025-01-01T00:00:00Z",
    )]))
    .unwrap();
    let now = (sluice_watcher::alert::now_ms() / 1000).to_string();
    let good_sig = sign(HMAC_SECRET.as_bytes(), Some(&now), &body);

    // Refused: nothing, wrong bearer, wrong basic, wrong HMAC, HMAC over other bytes, stale
    // timestamp, HMAC without its timestamp, a valid bearer with a wrong signature.
    let stale = (sluice_watcher::alert::now_ms() / 1000 - 3600).to_string();
    let refused: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("authorization", "Bearer wrong".into())],
        vec![("authorization", "Basic Z3JhZmFuYTp3cm9uZw==".into())],
        vec![
            ("x-grafana-alerting-signature", "ab".repeat(32)),
            ("x-grafana-alerting-timestamp", now.clone()),
        ],
        vec![
            (
                "x-grafana-alerting-signature",
                sign(HMAC_SECRET.as_bytes(), Some(&now), b"{}"),
            ),
            ("x-grafana-alerting-timestamp", now.clone()),
        ],
        vec![
            (
                "x-grafana-alerting-signature",
                sign(HMAC_SECRET.as_bytes(), Some(&stale), &body),
            ),
            ("x-grafana-alerting-timestamp", stale.clone()),
        ],
        vec![("x-grafana-alerting-signature", good_sig.clone())],
        vec![
            ("authorization", format!("Bearer {HOOK_TOKEN}")),
            ("x-grafana-alerting-signature", "00".into()),
            ("x-grafana-alerting-timestamp", now.clone()),
        ],
        // An approver token is not a webhook credential.
        vec![("authorization", format!("Bearer {ALICE}"))],
    ];
    for headers in &refused {
        assert_eq!(
            raw_post(&h, path, &body, headers).await,
            StatusCode::UNAUTHORIZED,
            "{headers:?}"
        );
    }
    assert_eq!(
        incident_count(&h).await,
        0,
        "a refused request processed nothing"
    );

    // Accepted: HMAC with timestamp (then its replay is refused).
    let hmac = vec![
        ("x-grafana-alerting-signature", good_sig.clone()),
        ("x-grafana-alerting-timestamp", now.clone()),
    ];
    assert_eq!(raw_post(&h, path, &body, &hmac).await, StatusCode::OK);
    assert_eq!(
        raw_post(&h, path, &body, &hmac).await,
        StatusCode::UNAUTHORIZED,
        "replay"
    );
    // Basic and bearer.
    let b2 = serde_json::to_vec(&grafana_payload(vec![failing_alert(
        "fp-basic",
        "2025-01-01T00:00:00Z",
    )]))
    .unwrap();
    assert_eq!(
        raw_post(
            &h,
            path,
            &b2,
            &[("authorization", "Basic Z3JhZmFuYTpiYXNpYy1wYXNz".into())]
        )
        .await,
        StatusCode::OK
    );
    let b3 = serde_json::to_vec(&alertmanager_payload(vec![failing_alert(
        "fp-bearer",
        "2025-01-01T00:00:00Z",
    )]))
    .unwrap();
    assert_eq!(
        raw_post(
            &h,
            "/webhooks/alertmanager",
            &b3,
            &[("authorization", format!("Bearer {HOOK_TOKEN}"))]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(incident_count(&h).await, 3);
    // The refusals were counted in the audit log with their reason.
    let refusals: Vec<String> = h
        .audit()
        .iter()
        .filter(|e| e["kind"] == "webhook_refused")
        .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    for want in [
        "auth_missing",
        "auth_bad_bearer",
        "auth_bad_basic",
        "auth_bad_signature",
        "auth_stale_timestamp",
        "auth_bad_timestamp",
        "auth_replayed",
    ] {
        assert!(
            refusals.iter().any(|r| r == want),
            "{want} not in {refusals:?}"
        );
    }
    // Each accepted alert led to exactly one remediation call.
    eventually(Duration::from_secs(5), "3 fallback calls", async || {
        rec.calls().len() == 3
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused() {
    let (awf, _rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&config(&awf, "max_body_size = \"2KiB\""), dir.path()).await;
    let auth = [("authorization", format!("Bearer {HOOK_TOKEN}"))];
    for bad in [&b"not json"[..], b"[1,2]", b"{\"alerts\": {\"x\": 1}}"] {
        assert_eq!(
            raw_post(&h, "/webhooks/grafana-alerts", bad, &auth).await,
            StatusCode::BAD_REQUEST
        );
    }
    let big = serde_json::to_vec(&json!({"alerts": [], "pad": "x".repeat(4096)})).unwrap();
    assert_eq!(
        raw_post(&h, "/webhooks/grafana-alerts", &big, &auth).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(incident_count(&h).await, 0);
    h.stop().await;
}

#[tokio::test]
async fn repeats_and_ha_duplicates_start_one_investigation() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&config(&awf, ""), dir.path()).await;
    let a = failing_alert("fp-dup", "2025-03-01T10:00:00Z");
    // Grafana's repeat + two HA Alertmanagers delivering the same alert, concurrently.
    let p1 = grafana_payload(vec![a.clone()]);
    let p2 = alertmanager_payload(vec![a.clone()]);
    let (r1, r2, r3) = tokio::join!(
        h.post_alerts("/webhooks/grafana-alerts", &p1),
        h.post_alerts("/webhooks/alertmanager", &p2),
        h.post_alerts("/webhooks/alertmanager", &p2),
    );
    for r in [&r1, &r2, &r3] {
        assert_eq!(r.0, StatusCode::OK, "{r:?}");
    }
    let ids: Vec<&Value> = [&r1, &r2, &r3]
        .iter()
        .map(|r| &r.1["summary"]["incidents"][0])
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let id = ids[0].as_str().unwrap().to_owned();
    h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    // Later repeats (repeat_interval) are still the same incident.
    let (s, v) = h.post_alerts("/webhooks/grafana-alerts", &p1).await;
    assert_eq!(
        (s, v["summary"]["duplicates"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(incident_count(&h).await, 1);
    assert_eq!(rec.calls().len(), 1, "one action for one incident key");
    assert!(h.incident(&id).await["repeats"].as_u64().unwrap() >= 2);
    // The same fingerprint with a new startsAt is a new episode.
    let again = failing_alert("fp-dup", "2025-03-01T11:00:00Z");
    let (_, v) = h
        .post_alerts("/webhooks/grafana-alerts", &grafana_payload(vec![again]))
        .await;
    assert_eq!(v["summary"]["new"], 1);
    assert_eq!(incident_count(&h).await, 2);
    h.stop().await;
}

#[tokio::test]
async fn test_notifications_and_unknown_resolutions_are_ignored() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&config(&awf, ""), dir.path()).await;
    let test = grafana_alert(
        "firing",
        &[("alertname", "TestAlert"), ("instance", "Grafana")],
        &[("summary", "Notification test")],
        &rfc3339_now(),
        "",
    );
    let unknown_resolved = grafana_alert(
        "resolved",
        &[("alertname", "AwfAgentFailing"), ("agent_id", "planner")],
        &[],
        "2025-01-01T00:00:00Z",
        "fp-never-seen",
    );
    let (s, v) = h
        .post_alerts(
            "/webhooks/grafana-alerts",
            &grafana_payload(vec![test, unknown_resolved]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["summary"]["ignored"], 2, "{v}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(incident_count(&h).await, 0);
    assert!(rec.calls().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_resolved_alert_cancels_its_pending_approval() {
    let (awf, rec) = recorder().await;
    let (slack, slack_rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("approval_webhook = \"{slack}/hooks/approvals\"");
    let h = Harness::start(&config(&awf, &extra), dir.path()).await;
    let starts = "2025-04-01T08:00:00Z";
    let firing = grafana_alert(
        "firing",
        &[("alertname", "AwfAgentRunaway"), ("agent_id", "coder")],
        &[],
        starts,
        "fp-runaway",
    );
    let (_, v) = h
        .post_alerts(
            "/webhooks/grafana-alerts",
            &grafana_payload(vec![firing.clone()]),
        )
        .await;
    let id = v["summary"]["incidents"][0].as_str().unwrap().to_owned();
    let pending = h.wait_pending(1, Duration::from_secs(5)).await;
    let approval_id = pending[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(pending[0]["script"], "disable_agent");
    // The approvers were notified, Slack-style.
    eventually(Duration::from_secs(3), "slack notification", async || {
        !slack_rec.calls().is_empty()
    })
    .await;
    let note = &slack_rec.calls()[0];
    assert_eq!(note.path, "/hooks/approvals");
    assert!(note.body["text"].as_str().unwrap().contains(&approval_id));

    let mut resolved = firing.clone();
    resolved["status"] = json!("resolved");
    resolved["endsAt"] = json!(rfc3339_now());
    let (s, v) = h
        .post_alerts("/webhooks/grafana-alerts", &grafana_payload(vec![resolved]))
        .await;
    assert_eq!(
        (s, v["summary"]["resolved"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(3)).await;
    assert_eq!(inc["outcome"], "cancelled");
    assert!(h.pending().await.is_empty());
    let (s, a) = h.get(&format!("/approvals/{approval_id}"), BOB).await;
    assert_eq!(
        (s, a["state"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    // Approving it now is refused and runs nothing.
    let (s, _) = h
        .post(
            &format!("/approvals/{approval_id}/approve"),
            ALICE,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rec.calls().is_empty(), "{:?}", rec.calls());
    h.stop().await;
}

#[tokio::test]
async fn actions_are_annotated_in_grafana_once() {
    let (awf, rec) = recorder().await;
    let (grafana, g) = fake_grafana("glsa_test").await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("grafana_url = \"{grafana}\"\ngrafana_token = \"glsa_test\"");
    let h = Harness::start(&config(&awf, &extra), dir.path()).await;
    let (_, v) = h
        .post_alerts(
            "/webhooks/grafana-alerts",
            &grafana_payload(vec![failing_alert("fp-annot", "2025-05-01T00:00:00Z")]),
        )
        .await;
    let id = v["summary"]["incidents"][0].as_str().unwrap().to_owned();
    h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    eventually(Duration::from_secs(3), "annotation", async || {
        !g.annotations.lock().is_empty()
    })
    .await;
    let a = g.annotations.lock()[0].clone();
    let tags: Vec<&str> = a["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tags.contains(&"sluice-watcher"));
    assert!(
        tags.iter()
            .any(|t| t.starts_with("watcher-incident:fp-annot-")),
        "{tags:?}"
    );
    assert!(tags.contains(&"watcher-action:switch_fallback"));
    assert!(a["time"].as_i64().unwrap() > 0);
    assert!(
        *g.gets.lock() >= 1,
        "checked for an existing annotation first"
    );
    assert_eq!(rec.calls().len(), 1);
    h.stop().await;
}
