//! The alert path end to end with real peers: the AWF simulator with a failing agent → Sluice
//! (AWF receiver, remote write) → real Prometheus evaluating the shipped alert rules → real
//! Alertmanager (Debian's `prometheus-alertmanager`) → Sluice's `/webhooks/alertmanager` →
//! the watcher, with the shipped rules of `configs/awf-compose.toml`, switches the agent to
//! its fallback through the simulator's control API.

mod support;

use serde_json::Value;
use sluice_testkit::prometheus::PrometheusServer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Sluice, free_port, write_config};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

/// The shipped AWF alert rules with their windows scaled from minutes to seconds, so a test
/// sees them fire: `[5m]` → `[15s]`, `for: Nm` → `for: 5s`. Queries, thresholds and labels
/// are unchanged.
fn scaled_rules() -> String {
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/rules/awf-alerts.yml"))
        .expect("awf-alerts.yml");
    let mut out = String::new();
    for line in text.lines() {
        let line = line.replace("[5m]", "[15s]");
        let line = match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 5s", &line[..line.len() - line.trim_start().len()]),
            None => line,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The watcher rules shipped in `configs/awf-compose.toml`.
fn shipped_watcher_rules() -> String {
    let text = std::fs::read_to_string(repo().join("configs/awf-compose.toml")).unwrap();
    let start = text
        .find("[[processors.watcher.rules]]")
        .expect("watcher rules");
    let end = text.find("[exporters.").expect("exporters");
    text[start..end].to_owned()
}

struct Alertmanager(Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_alertmanager(dir: &Path, port: u16, webhook: &str) -> Alertmanager {
    let config = dir.join("alertmanager.yml");
    std::fs::write(dir.join("token"), "webhook-token-for-tests").unwrap();
    // As deploy/alertmanager/alertmanager.yml, with test-speed grouping.
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: sluice-watcher\n  group_by: [alertname, agent_id, step_id, workflow_id, provider]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 4h\nreceivers:\n  - name: sluice-watcher\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            credentials_file: {}\n",
            dir.join("token").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus-alertmanager (Debian package) on PATH; ./test.sh installs it");
    Alertmanager(child)
}

async fn get_json(http: &reqwest::Client, url: &str, token: Option<&str>) -> Value {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_agent_alert_reaches_the_watcher_through_alertmanager_and_is_remediated() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, prom_port, am_port) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
[awf_simulator]
listen = "127.0.0.1:{sim}"
events_per_second = 150
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

[processors.watcher]
type = "watcher"
bearer_token = "webhook-token-for-tests"
approvers = [{{ name = "alice", token = "alice-token" }}]
prometheus_url = "http://127.0.0.1:{prom_port}"
vars = {{ awf_url = "http://127.0.0.1:{sim}", oncall_url = "http://127.0.0.1:9/oncall" }}
verification = {{ delay = "1s", interval = "1s", timeout = "20s" }}

{rules}

[exporters.mimir]
type = "prometheus_remote_write"
url = "http://127.0.0.1:{prom_port}/api/v1/write"
[exporters.debug]
type = "debug"

[[pipelines]]
name = "metrics"
signals = ["metrics"]
receivers = ["awf"]
processors = ["batch"]
exporters = ["mimir"]

[[pipelines]]
name = "traces_logs"
signals = ["traces", "logs"]
receivers = ["awf"]
processors = ["watcher", "batch"]
exporters = ["debug"]
"#,
        rules = shipped_watcher_rules(),
    );
    let path = write_config(dir.path(), "awf.toml", &config);
    let sluice = Sluice::start(&path, &dir.path().join("data")).await;
    let _am = start_alertmanager(
        dir.path(),
        am_port,
        &format!("{}/webhooks/alertmanager", sluice.admin),
    );
    let rules = dir.path().join("awf-alerts.yml");
    std::fs::write(&rules, scaled_rules()).unwrap();
    let prom = PrometheusServer::start_configured(
        prom_port,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n",
            rules.display()
        ),
    )
    .await;

    // The fault: "researcher" fails 90 % of its invocations.
    let http = reqwest::Client::new();
    let sim_url = format!("http://127.0.0.1:{sim}");
    let added = http
        .post(format!("{sim_url}/sim/faults"))
        .json(&serde_json::json!({"kind": "agent_failing", "agent_id": "researcher", "probability": 0.9}))
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success(), "{}", added.status());

    // Prometheus fires, Alertmanager delivers, the watcher switches the agent to its fallback.
    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        let actions = get_json(&http, &format!("{sim_url}/sim/actions"), None).await;
        let switched = actions["actions"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["action"] == "switch_fallback" && x["detail"]["agent_id"] == "researcher"
            })
        });
        let incidents = get_json(
            &http,
            &format!("{}/watcher/incidents", sluice.admin),
            Some("alice-token"),
        )
        .await;
        // The incident of the shipped alert, as Alertmanager relayed it from Prometheus (the
        // generator URL is Prometheus' own), decided by the shipped watcher rule.
        let decided = incidents["incidents"].as_array().is_some_and(|list| {
            list.iter().any(|i| {
                i["alert"]["labels"]["alertname"] == "AwfAgentErrorRate"
                    && i["alert"]["labels"]["agent_id"] == "researcher"
                    && i["alert"]["annotations"]["watcher_query"]
                        .as_str()
                        .is_some_and(|q| q.contains("agent_id=\"researcher\""))
                    && i["alert"]["generatorURL"]
                        .as_str()
                        .is_some_and(|u| u.contains("/graph?g0.expr="))
                    && i["decision"]["chosen"] == "switch_fallback"
            })
        });
        if switched && decided {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no remediation: actions {actions}\nincidents {incidents}\nalerts {:?}\n{}",
            prom.query("ALERTS", now()).await,
            sluice.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
