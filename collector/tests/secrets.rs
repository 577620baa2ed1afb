//! Tokens and passwords never leave the process: not in logs, not in `/api/v1/config` or the
//! rest of the admin API, not in the watcher's audit log or anything else under the storage
//! path, not in error answers. Every secret of the config — and a wrong one a client
//! presented — is looked for after exercising every door that takes one.

mod support;

use std::path::Path;
use std::time::Duration;
use support::{Sluice, free_port, write_config};

const SECRETS: &[&str] = &[
    "SECRET-receiver-token-1",
    "SECRET-tenant-password-2",
    "SECRET-push-token-3",
    "SECRET-webhook-token-4",
    "SECRET-approver-token-5",
    "SECRET-loki-token-6",
    "SECRET-wrong-presented-7",
    "SECRET-admin-token-8",
    "SECRET-loki-header-9",
];

fn config(http: u16, push: u16, dead: u16) -> String {
    format!(
        r#"
[receivers.otlp]
type = "otlp"
tenant_header = "X-Scope-OrgID"
[receivers.otlp.http]
endpoint = "127.0.0.1:{http}"
[receivers.otlp.auth]
bearer_token = "SECRET-receiver-token-1"
[receivers.otlp.auth.tenants.team-a]
basic_auth = {{ username = "team-a", password = "SECRET-tenant-password-2" }}

[receivers.awf]
type = "awf"
push = {{ endpoint = "127.0.0.1:{push}", bearer_token = "SECRET-push-token-3" }}

[processors.watcher]
type = "watcher"
bearer_token = "SECRET-webhook-token-4"
approvers = [{{ name = "alice", token = "SECRET-approver-token-5" }}]
prometheus_url = "http://127.0.0.1:{dead}"
dry_run = true

[exporters.loki]
type = "loki"
url = "http://127.0.0.1:{dead}/loki/api/v1/push"
bearer_token = "SECRET-loki-token-6"
headers = {{ "X-Api-Key" = "SECRET-loki-header-9" }}

[exporters.debug]
type = "debug"

[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["otlp", "awf"]
processors = ["watcher"]
exporters = ["loki"]

[[pipelines]]
name = "rest"
signals = ["traces", "metrics"]
receivers = ["otlp", "awf"]
exporters = ["debug"]
"#
    )
}

const ALERT: &str = r#"{"receiver": "sluice", "status": "firing", "orgId": 1, "version": "1",
  "groupKey": "k", "groupLabels": {"alertname": "AwfAgentFailing"},
  "commonLabels": {"alertname": "AwfAgentFailing"}, "commonAnnotations": {}, "externalURL": "",
  "truncatedAlerts": 0, "state": "alerting", "title": "t", "message": "m",
  "alerts": [{"status": "firing", "labels": {"alertname": "AwfAgentFailing"}, "annotations": {},
    "startsAt": "2026-11-22T05:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
    "fingerprint": "00aa00aa00aa00aa", "silenceURL": "", "dashboardURL": "", "panelURL": "",
    "values": {}, "valueString": ""}]}"#;

/// Every regular file under `dir`, as text (lossy), with its path.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_api_audit_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (http, push, dead) = (free_port(), free_port(), free_port());
    let path = write_config(dir.path(), "s.toml", &config(http, push, dead));
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "SECRET-admin-token-8").unwrap();
    let storage = dir.path().join("data");
    let token_arg = format!("--server.http.admin-token-file={}", token_file.display());
    let sluice = Sluice::start_with(&path, &storage, &[&token_arg]).await;
    let client = reqwest::Client::new();
    let mut seen = Vec::new(); // (what, text) pairs to search

    // OTLP/HTTP: refused with a wrong token, accepted with each right credential.
    let logs_url = format!("http://127.0.0.1:{http}/v1/logs");
    let body =
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hello"}}]}]}]}"#;
    let post = || {
        client
            .post(&logs_url)
            .header("content-type", "application/json")
            .body(body)
    };
    let refused = post()
        .bearer_auth("SECRET-wrong-presented-7")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    seen.push(("401 answer".to_owned(), refused.text().await.unwrap()));
    let ok = post()
        .bearer_auth("SECRET-receiver-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok = post()
        .basic_auth("team-a", Some("SECRET-tenant-password-2"))
        .header("X-Scope-OrgID", "team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // AWF push: wrong, then right token.
    let push_url = format!("http://127.0.0.1:{push}/v1/awf/events");
    let refused = client
        .post(&push_url)
        .bearer_auth("SECRET-wrong-presented-7")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    seen.push(("push 401".to_owned(), refused.text().await.unwrap()));
    let malformed = client
        .post(&push_url)
        .bearer_auth("SECRET-push-token-3")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    seen.push(("push 400".to_owned(), malformed.text().await.unwrap()));

    // Webhook: wrong, then right token (an incident and its audit entries).
    let hook = format!("{}/webhooks/grafana-alerts", sluice.admin);
    let refused = client
        .post(&hook)
        .bearer_auth("SECRET-wrong-presented-7")
        .header("content-type", "application/json")
        .body(ALERT)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    seen.push(("webhook 401".to_owned(), refused.text().await.unwrap()));
    let accepted = client
        .post(&hook)
        .bearer_auth("SECRET-webhook-token-4")
        .header("content-type", "application/json")
        .body(ALERT)
        .send()
        .await
        .unwrap();
    assert!(accepted.status().is_success(), "{}", accepted.status());

    // Admin: a refused and an accepted reload; the API's views.
    let reload = format!("{}/-/reload", sluice.admin);
    let refused = client
        .post(&reload)
        .bearer_auth("SECRET-wrong-presented-7")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    seen.push(("reload 401".to_owned(), refused.text().await.unwrap()));
    let reloaded = client
        .post(&reload)
        .bearer_auth("SECRET-admin-token-8")
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
    sluice.wait_ready(Duration::from_secs(30)).await;
    for api in [
        "/api/v1/config",
        "/api/v1/components",
        "/api/v1/status",
        "/metrics",
    ] {
        let response = client
            .get(format!("{}{api}", sluice.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{api}");
        seen.push((api.to_owned(), response.text().await.unwrap()));
    }
    for api in ["/api/v1/incidents", "/api/v1/approvals/pending"] {
        let response = client
            .get(format!("{}{api}", sluice.admin))
            .bearer_auth("SECRET-approver-token-5")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{api}");
        seen.push((api.to_owned(), response.text().await.unwrap()));
    }
    let config_view = &seen
        .iter()
        .find(|(what, _)| what == "/api/v1/config")
        .unwrap()
        .1;
    assert!(config_view.contains("<secret>"), "{config_view}");

    // Let the Loki exporter fail against the dead backend a few times (its errors are logged)
    // and the watcher investigate (its degraded sources are logged and audited).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !sluice.log_text().contains("exporters.loki") {
        assert!(
            std::time::Instant::now() < deadline,
            "the Loki exporter never logged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    seen.push(("log".to_owned(), sluice.log_text()));
    let stored = files_under(&storage);
    assert!(
        stored.iter().any(|(path, _)| path.ends_with("audit.jsonl")),
        "no audit log under {}",
        storage.display()
    );
    seen.extend(stored);
    for (what, text) in &seen {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} appears in {what}");
        }
    }
}
