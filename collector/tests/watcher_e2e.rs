//! The watcher wired into the running binary: a processor in a pipeline, its webhooks and
//! approval API on the admin server, surviving a reload.

mod support;

use std::time::Duration;
use support::{Sluice, free_port, watcher_config, write_config};

const ALERT: &str = r#"{
  "receiver": "sluice", "status": "firing", "orgId": 1, "version": "1",
  "groupKey": "{}:{alertname=\"AwfAgentFailing\"}", "groupLabels": {"alertname": "AwfAgentFailing"},
  "commonLabels": {"alertname": "AwfAgentFailing", "agent_id": "planner"}, "commonAnnotations": {},
  "externalURL": "http://grafana:3000/", "truncatedAlerts": 0, "state": "alerting", "title": "t", "message": "m",
  "alerts": [{"status": "firing", "labels": {"alertname": "AwfAgentFailing", "agent_id": "planner"},
              "annotations": {}, "startsAt": "2026-11-22T05:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
              "generatorURL": "", "fingerprint": "0123456789abcdef", "silenceURL": "", "dashboardURL": "",
              "panelURL": "", "values": {"B": 0.4}, "valueString": ""}]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_serves_webhooks_and_approvals_on_the_admin_server_across_reloads() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port: the investigation is degraded, never blocked.
    let path = write_config(
        dir.path(),
        "w.toml",
        &watcher_config(free_port(), free_port()),
    );
    let sluice = Sluice::start(&path, &dir.path().join("data")).await;
    let http = reqwest::Client::new();
    let hook = format!("{}/webhooks/grafana-alerts", sluice.admin);

    let unauthenticated = http
        .post(&hook)
        .header("content-type", "application/json")
        .body(ALERT)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let accepted = http
        .post(&hook)
        .bearer_auth("hook-secret")
        .header("content-type", "application/json")
        .body(ALERT)
        .send()
        .await
        .unwrap();
    assert!(accepted.status().is_success(), "{}", accepted.status());

    let approvals = format!("{}/approvals/pending", sluice.admin);
    assert_eq!(
        http.get(&approvals).send().await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(
        http.get(&approvals)
            .bearer_auth("alice-token")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // The incident is recorded and investigated.
    let incidents = format!("{}/watcher/incidents", sluice.admin);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = http
            .get(&incidents)
            .bearer_auth("alice-token")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains("0123456789abcdef") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "incident never listed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // After a reload the routes are served by the new watcher (which resumes from its journal).
    std::fs::write(&path, watcher_config(free_port(), free_port())).unwrap();
    assert_eq!(sluice.post("/-/reload").await.0, 200);
    let body = http
        .get(&incidents)
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("0123456789abcdef"), "{body}");
    assert_eq!(
        http.get(format!("{}/no/such/path", sluice.admin))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[test]
fn a_second_watcher_is_refused_at_validation() {
    let text = watcher_config(1, 2).replace(
        "[exporters.debug]",
        "[processors.again]\ntype = \"watcher\"\nbearer_token = \"x\"\n\n[exporters.debug]",
    );
    let e = sluice::config::parse(std::path::Path::new("w.toml"), &text, &|_| None).unwrap_err();
    assert!(e.reason.contains("only one watcher"), "{e}");
    assert_eq!(e.key, "processors.again");
}
