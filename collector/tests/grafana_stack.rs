//! The Grafana kit in `deploy/` against real peers: the Prometheus rules through `promtool`
//! (syntax and unit tests), and every dashboard panel's query against a real Prometheus that
//! Sluice filled from the AWF simulator (remote write for AWF metrics, a scrape of Sluice's own
//! `/metrics`), evaluating the shipped rules; the Loki panel against the Loki test backend.

mod support;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::status;
use serde_json::Value;
use sluice_testkit::loki::LokiTestServer;
use sluice_testkit::otlp::OtlpTestServer;
use sluice_testkit::prometheus::PrometheusServer;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Sluice, free_port, write_config};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no *{ext} in {dir}");
    out
}

fn promtool(args: &[&str], paths: &[PathBuf]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .args(paths)
        .output()
        .expect("promtool (Debian package prometheus) on PATH");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let rules = files("deploy/prometheus/rules", ".yml");
    let text = promtool(&["check", "rules"], &rules);
    assert_eq!(text.matches("SUCCESS").count(), rules.len(), "{text}");
    let tests = files("deploy/prometheus/tests", ".test.yml");
    let text = promtool(&["test", "rules"], &tests);
    assert_eq!(text.matches("SUCCESS").count(), tests.len(), "{text}");
    // Every alert rule has a unit test that expects it to fire.
    let all_tests: String = tests
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for path in &rules {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            if let Some(name) = line.trim().strip_prefix("- alert: ") {
                let firing = format!("alertname: {name}\n        exp_alerts:\n          - ");
                assert!(
                    all_tests.contains(&firing),
                    "{name} has no firing unit test"
                );
            }
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A dashboard query as Grafana sends it with every variable at "All".
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "2m")
        .replace("$__interval", "15s")
        .replace("$workflow", ".*")
        .replace("$agent", ".*")
}

/// `{{name}}` placeholders of a legend: the labels the panel shows.
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split("}}").next())
        .map(|s| s.trim().to_owned())
        .collect()
}

/// Series that only exist after a fault (drops, refusals, retries, actions): for those the
/// query must be accepted by Prometheus, not return data.
const FAULT_ONLY: [&str; 4] = [
    "dropped_items_total",
    "sluice_receiver_refused_items_total",
    "sluice_exporter_retries_total",
    "sluice_watcher_actions_total",
];

async fn api(http: &reqwest::Client, prom: &PrometheusServer, path: &str) -> Value {
    let body: Value = http
        .get(format!("http://{}{path}", prom.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{path}: {body}");
    body["data"].clone()
}

const ALERT: &str = r#"{"receiver":"sluice-watcher","status":"firing","version":"4","groupKey":"{}:{alertname=\"AwfAgentErrorRate\"}",
 "groupLabels":{"alertname":"AwfAgentErrorRate"},"commonLabels":{"alertname":"AwfAgentErrorRate","agent_id":"planner"},
 "commonAnnotations":{},"externalURL":"http://alertmanager:9093","truncatedAlerts":0,
 "alerts":[{"status":"firing","labels":{"alertname":"AwfAgentErrorRate","agent_id":"planner","service_name":"awf"},
   "annotations":{"watcher_query":"sum by (agent_id) (rate(awf_step_duration_ms_count{agent_id=\"planner\"}[5m])) > 0"},
   "startsAt":"2026-11-22T05:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"feedc0ffee123456"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_returns_data_from_simulated_awf_with_the_shipped_rules() {
    let tempo = OtlpTestServer::start().await;
    let loki = LokiTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (sim, prom_port) = (free_port(), free_port());
    let config = format!(
        r#"
[awf_simulator]
listen = "127.0.0.1:{sim}"
events_per_second = 200
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
dry_run = true

[exporters.mimir]
type = "prometheus_remote_write"
url = "http://127.0.0.1:{prom_port}/api/v1/write"
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
processors = ["watcher", "batch"]
exporters = ["tempo"]

[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["awf"]
processors = ["watcher", "batch"]
exporters = ["loki"]
"#,
        tempo = tempo.grpc_endpoint(),
        loki = loki.push_url(),
    );
    let path = write_config(dir.path(), "awf.toml", &config);
    let sluice = Sluice::start(&path, &dir.path().join("data")).await;
    let admin = sluice.admin.trim_start_matches("http://");
    let rules: Vec<String> = files("deploy/prometheus/rules", ".yml")
        .iter()
        .map(|p| format!("  - {}", p.display()))
        .collect();
    let prom = PrometheusServer::start_configured(
        prom_port,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [\"{admin}\"]\n",
            rules.join("\n")
        ),
    )
    .await;

    // One alert through the watcher's Alertmanager webhook, so its series exist.
    let http = reqwest::Client::new();
    // Failing invocations, so failed step attempts (the traces panel) exist.
    let added = http
        .post(format!("http://127.0.0.1:{sim}/sim/faults"))
        .json(&serde_json::json!({"kind": "agent_failing", "agent_id": "researcher", "probability": 0.5}))
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success(), "{}", added.status());
    let answer = http
        .post(format!("{}/webhooks/alertmanager", sluice.admin))
        .bearer_auth("webhook-token-for-tests")
        .header("content-type", "application/json")
        .body(ALERT)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());

    // The shipped rules loaded; alerts carry watcher_query and never execution_id.
    let groups = api(&http, &prom, "/api/v1/rules").await;
    let groups = groups["groups"].as_array().expect("rule groups");
    let mut names = Vec::new();
    for rule in groups.iter().flat_map(|g| g["rules"].as_array().unwrap()) {
        let name = rule["name"].as_str().unwrap().to_owned();
        let query = rule["query"].as_str().unwrap();
        assert!(!query.contains("execution_id"), "{name}: {query}");
        if rule["type"] == "alerting" {
            assert!(rule["labels"].get("execution_id").is_none(), "{name}");
            let wq = rule["annotations"]["watcher_query"].as_str().unwrap_or("");
            assert!(!wq.is_empty(), "{name} has no watcher_query");
            assert!(!wq.contains("execution_id"), "{name}: {wq}");
        }
        names.push(name);
    }
    for prd in [
        "awf:workflow_success_rate:ratio_rate5m",
        "awf:step_latency_p99:5m",
        "awf:error_budget_remaining:ratio",
    ] {
        assert!(names.iter().any(|n| n == prd), "{prd} missing: {names:?}");
    }

    // Every Prometheus panel query returns series with the labels its legend shows.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut checked = 0;
    for path in files("deploy/grafana/dashboards", ".json") {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut ids = std::collections::HashSet::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(
                ids.insert(panel["id"].as_u64().expect("panel id")),
                "{title}"
            );
            for target in panel["targets"].as_array().expect("targets") {
                let uid = target["datasource"]["uid"].as_str().expect("datasource");
                if uid == "tempo" {
                    let query = target["query"].as_str().expect("TraceQL query");
                    check_tempo_panel(&tempo, query, &sluice).await;
                    checked += 1;
                    continue;
                }
                let expr = target["expr"].as_str().expect("expr");
                if uid == "loki" {
                    check_loki_panel(&loki, expr, &sluice).await;
                    checked += 1;
                    continue;
                }
                assert_eq!(uid, "mimir", "{title}");
                let promql = expand(expr);
                let wanted = legend_labels(target["legendFormat"].as_str().unwrap_or(""));
                if FAULT_ONLY.iter().any(|m| expr.contains(m)) {
                    prom.query(&promql, now()).await; // asserts Prometheus accepted it
                    checked += 1;
                    continue;
                }
                loop {
                    let result = prom.query(&promql, now()).await;
                    let complete = !result.is_empty()
                        && result.iter().all(|s| {
                            wanted.iter().all(|l| {
                                l == "le" || s.labels.get(l).is_some_and(|v| !v.is_empty())
                            })
                        });
                    if complete {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{}: panel {title:?}: {promql} gave {result:?} (wanted labels {wanted:?})",
                        path.display()
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} queries checked");
    drop(sluice);
}

/// The framework panel reads the AWF event logs: JSON lines in streams labelled
/// `service_name="awf"` with `attributes.framework` and `attributes.event_type`.
async fn check_loki_panel(loki: &LokiTestServer, expr: &str, sluice: &Sluice) {
    for part in [
        "{service_name=\"awf\"}",
        "framework=\"attributes.framework\"",
        "event_type=\"attributes.event_type\"",
    ] {
        assert!(expr.contains(part), "{expr} lacks {part}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = loki
            .entries_for(&[("service_name", "awf")])
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.line).ok())
            .any(|line| {
                line["attributes"]["event_type"] == "agent.invoked"
                    && line["attributes"]["framework"].as_str().is_some()
            });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no agent.invoked line with attributes.framework in Loki: {:?}\n{}",
            loki.tenants()
                .iter()
                .flat_map(|t| loki.streams(t))
                .take(2)
                .map(|s| format!("{:?} {:?}", s.labels, s.lines().first()))
                .collect::<Vec<_>>(),
            sluice.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The traces panel: failed `awf.step` spans of the AWF resource, with their `agent_id`. The
/// query names exactly these fields; the spans Sluice sent to the OTLP test backend have them.
async fn check_tempo_panel(tempo: &OtlpTestServer, query: &str, sluice: &Sluice) {
    for part in [
        "resource.service.name = \"awf\"",
        "name = \"awf.step\"",
        "status = error",
        "span.agent_id =~ \"$agent\"",
    ] {
        assert!(query.contains(part), "{query} lacks {part}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = tempo.resource_spans().iter().any(|rs| {
            let awf = rs.resource.as_ref().is_some_and(|r| {
                r.attributes.iter().any(|kv| {
                    kv.key == "service.name"
                        && matches!(
                            kv.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(any_value::Value::StringValue(s)) if s == "awf"
                        )
                })
            });
            awf && rs.scope_spans.iter().flat_map(|ss| &ss.spans).any(|span| {
                span.name == "awf.step"
                    && span
                        .status
                        .as_ref()
                        .is_some_and(|st| st.code == status::StatusCode::Error as i32)
                    && span.attributes.iter().any(|kv| kv.key == "agent_id")
            })
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no failed awf.step span with agent_id in the OTLP test backend ({} spans)\n{}",
            tempo.span_count(),
            sluice.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A tool of the test venv (`./test.sh` installs `collector/tests/python/requirements.txt`).
fn venv_tool(name: &str) -> PathBuf {
    let tool = support::python().with_file_name(name);
    assert!(
        tool.exists(),
        "{} missing: run ./test.sh (it installs the schema validators into .venv)",
        tool.display()
    );
    tool
}

fn run_ok(program: &Path, args: &[&str], paths: &[PathBuf]) -> String {
    let out = Command::new(program)
        .args(args)
        .args(paths)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {args:?}:\n{text}",
        program.display()
    );
    text
}

#[test]
fn compose_and_kubernetes_manifests_match_their_schemas() {
    let compose = vec![
        repo().join("deploy/docker-compose.yml"),
        repo().join("deploy/alloy-prd/docker-compose.yml"),
        repo().join("deploy/kafka/docker-compose.yml"),
    ];
    run_ok(
        &venv_tool("check-jsonschema"),
        &["--builtin-schema", "vendor.compose-spec"],
        &compose,
    );
    let manifests = files("deploy/kubernetes", ".yaml");
    let text = run_ok(&venv_tool("kubernetes-validate"), &["--strict"], &manifests);
    for kind in [
        "daemonset/sluice-node",
        "deployment/sluice-gateway",
        "daemonset/sluice-node-kafka",
        "statefulset/sluice-kafka-gateway",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{text}"
        );
    }
}

#[test]
fn alertmanager_and_prometheus_configs_pass_their_checkers() {
    let text = run_ok(
        Path::new("amtool"),
        &["check-config"],
        &[repo().join("deploy/alertmanager/alertmanager.yml")],
    );
    assert!(text.contains("SUCCESS"), "{text}");
    assert!(
        text.contains("/webhooks/alertmanager") || text.contains("1 receivers"),
        "{text}"
    );
    promtool(
        &["check", "config"],
        &[repo().join("deploy/prometheus/prometheus.yml")],
    );
}

#[test]
fn grafana_managed_alerts_mirror_the_prometheus_alerts_and_sign_their_webhook() {
    let grafana =
        std::fs::read_to_string(repo().join("deploy/grafana/provisioning/alerting/rules.yaml"))
            .unwrap();
    let mut alerts = 0;
    for path in files("deploy/prometheus/rules", "alerts.yml") {
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if let Some(name) = line.trim().strip_prefix("- alert: ") {
                assert!(
                    grafana.contains(&format!("title: {name}\n")),
                    "{name} missing in Grafana rules"
                );
                alerts += 1;
            }
        }
    }
    assert_eq!(grafana.matches("\n    title: ").count(), alerts);
    assert_eq!(grafana.matches("watcher_query: ").count(), alerts);
    assert!(!grafana.contains("execution_id"));
    let contact = std::fs::read_to_string(
        repo().join("deploy/grafana/provisioning/alerting/contact-points.yaml"),
    )
    .unwrap();
    for part in [
        "/webhooks/grafana-alerts",
        "secret: $WATCHER_HMAC_SECRET",
        "timestampHeader: X-Grafana-Alerting-Timestamp",
        "authorization_credentials: $WATCHER_WEBHOOK_TOKEN",
    ] {
        assert!(contact.contains(part), "{part}");
    }
}

#[test]
fn deployment_configs_need_their_secrets_from_the_environment() {
    let sluice = env!("CARGO_BIN_EXE_sluice");
    for config in ["configs/awf-compose.toml", "configs/k8s-node.toml"] {
        let path = repo().join(config);
        let bare = Command::new(sluice)
            .arg("validate")
            .arg(&path)
            .env_remove("AWF_PUSH_TOKEN")
            .env_remove("WATCHER_WEBHOOK_TOKEN")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&bare.stderr).into_owned()
            + &String::from_utf8_lossy(&bare.stdout);
        assert!(!bare.status.success(), "{config} validated without secrets");
        assert!(text.contains("is not set"), "{config}: {text}");
        let out = Command::new(sluice)
            .arg("validate")
            .arg(&path)
            .env("AWF_PUSH_TOKEN", "push-token-test")
            .env("WATCHER_WEBHOOK_TOKEN", "webhook-token-test")
            .env("WATCHER_HMAC_SECRET", "hmac-secret-test")
            .env("WATCHER_APPROVER_TOKEN", "approver-token-test")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `deploy/tests/`, with the npm packages of its `package.json` (`./test.sh` runs `npm ci`).
fn deploy_checks() -> PathBuf {
    let dir = repo().join("deploy/tests");
    assert!(
        dir.join("node_modules/@grafana/lezer-traceql").exists(),
        "{}/node_modules missing: run ./test.sh (it runs npm ci there)",
        dir.display()
    );
    dir
}

/// Runs `node SCRIPT ARGS` in `deploy/tests/`: success and stdout + stderr.
fn node(script: &str, args: &[&Path]) -> (bool, String) {
    let out = Command::new("node")
        .current_dir(deploy_checks())
        .arg(script)
        .args(args)
        .output()
        .expect("node on PATH");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `(PromQL, LogQL, TraceQL)` counts of check-queries.mjs's summary line.
fn parsed_counts(text: &str) -> (usize, usize, usize) {
    let line = text
        .lines()
        .find(|l| l.starts_with("parsed "))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"));
    let count = |lang: &str| -> usize {
        line.split([':', ',', ';'])
            .find_map(|part| part.trim().strip_suffix(lang)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {lang} count in {line}"))
    };
    (count("PromQL"), count("LogQL"), count("TraceQL"))
}

#[test]
fn every_query_parses_with_the_grammar_of_its_datasource() {
    let (ok, text) = node("check-queries.mjs", &[]);
    assert!(ok, "{text}");
    assert!(text.contains("; 0 errors"), "{text}");
    // Every dashboard target was seen, in its datasource's language.
    let mut targets = std::collections::HashMap::new();
    for path in files("deploy/grafana/dashboards", ".json") {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let uid = target["datasource"]["uid"].as_str().unwrap().to_owned();
                *targets.entry(uid).or_insert(0usize) += 1;
            }
        }
    }
    let rules: usize = files("deploy/prometheus/rules", ".yml")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().matches("expr:").count())
        .sum();
    let (promql, logql, traceql) = parsed_counts(&text);
    assert!(promql >= targets["mimir"] + rules, "{text}");
    assert!(logql >= targets["loki"] && logql > 0, "{text}");
    assert!(traceql >= targets["tempo"] && traceql > 0, "{text}");

    // A broken query of each language is found, with where it is.
    let dir = tempfile::tempdir().unwrap();
    let fleet =
        std::fs::read_to_string(repo().join("deploy/grafana/dashboards/agent-fleet-health.json"))
            .unwrap()
            .replace(
                r#"count_over_time({service_name=\"awf\"}"#,
                r#"count_over_time({service_name=\"awf\""#,
            )
            .replace(
                r#"status = error && span.agent_id"#,
                r#"status = error && && span.agent_id"#,
            );
    let dashboard = dir.path().join("fleet.json");
    std::fs::write(&dashboard, fleet).unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - record: broken:sum\n        expr: sum(rate(x[5m]) by (job)\n",
    )
    .unwrap();
    let doc = dir.path().join("doc.md");
    std::fs::write(
        &doc,
        "Fine:\n\n```promql\nup == 1\n```\n\nBroken:\n\n```traceql\n{ span.x = }\n```\n",
    )
    .unwrap();
    let (ok, text) = node("check-queries.mjs", &[&dashboard, &rules, &doc]);
    assert!(!ok, "broken queries passed:\n{text}");
    for error in [
        "fleet.json: panel \"Framework distribution\" A: LogQL syntax error",
        "fleet.json: panel \"Failed step attempts (traces)\" A: TraceQL syntax error",
        "rules.yml: broken:sum: PromQL syntax error",
        "doc.md:9: TraceQL syntax error",
        "; 4 errors",
    ] {
        assert!(text.contains(error), "{error} missing:\n{text}");
    }
}

#[test]
fn dashboards_match_the_grafana_dashboard_schema() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("dashboard.schema.json");
    let (ok, text) = node("dashboard-schema.mjs", &[&schema]);
    assert!(ok, "{text}");
    assert!(text.contains("timeseries"), "{text}");
    let check = |paths: &[PathBuf]| {
        let out = Command::new(venv_tool("check-jsonschema"))
            .arg("--schemafile")
            .arg(&schema)
            .args(paths)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check(&files("deploy/grafana/dashboards", ".json"));
    assert!(ok, "{text}");

    // A misspelt key, a value outside its enum, a panel option of the wrong type: each fails.
    let sluice_json =
        std::fs::read_to_string(repo().join("deploy/grafana/dashboards/sluice.json")).unwrap();
    let mut broken = Vec::new();
    for (name, edit) in [
        (
            "misspelt",
            &(|d: &mut Value| {
                let panel = &mut d["panels"][0];
                let fc = panel
                    .as_object_mut()
                    .unwrap()
                    .remove("fieldConfig")
                    .unwrap();
                panel["fieldconfig"] = fc;
            }) as &dyn Fn(&mut Value),
        ),
        ("enum", &|d: &mut Value| {
            d["panels"][0]["options"]["legend"] = serde_json::json!({"displayMode": "lists"})
        }),
        ("option", &|d: &mut Value| {
            d["panels"][0]["options"]["tooltip"] = serde_json::json!("single")
        }),
    ] {
        let mut d: Value = serde_json::from_str(&sluice_json).unwrap();
        assert_eq!(d["panels"][0]["type"], "timeseries");
        edit(&mut d);
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string(&d).unwrap()).unwrap();
        broken.push(path);
    }
    for (path, why) in broken.iter().zip([
        "'fieldconfig' was unexpected",
        "'lists' is not one of",
        "'single' is not of type 'object'",
    ]) {
        let (ok, text) = check(std::slice::from_ref(path));
        assert!(!ok, "{} passed:\n{text}", path.display());
        assert!(text.contains(why), "{why} missing:\n{text}");
    }
}
