//! The scenario suite: faults injected into the AWF simulator are noticed the way Grafana would
//! (an alert rule evaluated against the real Prometheus, fed by the AWF receiver and the
//! remote-write exporter), sent to the watcher as a signed Grafana webhook, investigated
//! (live window, Prometheus, Loki, Tempo), remediated through the simulator's control API
//! (with a human approving where the catalogue says so), and verified: the fault's signal
//! clears. Prints the autonomous-remediation rate (target ≥ 80 %) and investigation
//! p50/p99.
//!
//! Needs the `prometheus` binary (Debian package).

mod support;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_awf_sim::SimConfig;
use sluice_testkit::loki::{LokiServerOptions, LokiTestServer};
use sluice_watcher::{Config, Watcher};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::pipeline::{Backends, Deployment, LokiPath, Pipe};
use support::prometheus::Prometheus;
use support::tempo::TempoTestServer;
use support::*;

/// How the alert of a scenario is evaluated (what a Grafana alert rule would do).
#[derive(Clone, Copy)]
enum Rule {
    /// Failed step attempts per `by` label over 5 s, restricted to `filter`.
    Failures {
        alertname: &'static str,
        by: &'static str,
        filter: &'static str,
    },
    /// Cost per input token of `agent` above twice its baseline.
    Cost { agent: &'static str },
    /// One alert for a failed execution of `workflow` (after the transient fault healed).
    WorkflowFailed { workflow: &'static str },
    /// Failed executions of `workflow` over 10 s, as a Prometheus alerting rule on
    /// `awf_workflow_total` gives it to Alertmanager: `workflow_id` is the only series label
    /// (a rule never has `execution_id`). Sent after the transient fault healed.
    WorkflowFailureRate { workflow: &'static str },
    /// Active executions at the workers' capacity.
    Saturated { capacity: u32 },
}

#[derive(Clone, Copy, PartialEq)]
enum Human {
    None,
    Approves,
    Rejects,
}

#[derive(Clone)]
struct Scenario {
    name: &'static str,
    faults: Vec<Value>,
    rule: Rule,
    /// Expected incidents (alerts), their first script, and their outcome.
    incidents: usize,
    script: &'static str,
    outcome: &'static str,
    human: Human,
    /// Backends broken for this scenario's watcher.
    broken_loki: bool,
    workers: Option<(u32, u32)>,
}

fn sc(name: &'static str, faults: Vec<Value>, rule: Rule, script: &'static str) -> Scenario {
    Scenario {
        name,
        faults,
        rule,
        incidents: 1,
        script,
        outcome: "recovered",
        human: Human::None,
        broken_loki: false,
        workers: None,
    }
}

fn agent_alert(agent: &'static str) -> Rule {
    Rule::Failures {
        alertname: "AwfStepFailures",
        by: "agent_id",
        filter: Box::leak(format!("agent_id=\"{agent}\"").into_boxed_str()),
    }
}

fn step_alert(step: &'static str) -> Rule {
    Rule::Failures {
        alertname: "AwfStepFailures",
        by: "step_id",
        filter: Box::leak(format!("step_id=\"{step}\"").into_boxed_str()),
    }
}

fn failing(agent: &str, p: f64) -> Value {
    json!({"kind": "agent_failing", "agent_id": agent, "probability": p})
}

fn scenarios() -> Vec<Scenario> {
    let mut v = Vec::new();
    for agent in ["researcher", "planner", "writer", "coder"] {
        v.push(sc(
            Box::leak(format!("agent {agent} failing → fallback").into_boxed_str()),
            vec![failing(agent, 0.9)],
            agent_alert(agent),
            "switch_fallback",
        ));
    }
    let mut s = sc(
        "agent reviewer failing, Loki down → degraded finding, fallback",
        vec![failing("reviewer", 0.9)],
        agent_alert("reviewer"),
        "switch_fallback",
    );
    s.broken_loki = true;
    v.push(s);
    for step in [
        "plan", "research", "draft", "analyze", "classify", "retrieve",
    ] {
        v.push(sc(
            Box::leak(format!("latency spike on step {step} → timeout +50%").into_boxed_str()),
            vec![json!({"kind": "latency_spike", "step_id": step})],
            step_alert(step),
            "increase_timeout",
        ));
    }
    for agent in ["writer", "coder", "researcher", "reviewer"] {
        v.push(sc(
            Box::leak(format!("cost surge on {agent} → cheaper fallback").into_boxed_str()),
            vec![json!({"kind": "cost_surge", "agent_id": agent, "factor": 6})],
            Rule::Cost { agent },
            "switch_fallback",
        ));
    }
    let mut s = sc(
        "provider anthropic timing out → fallback for planner, writer, coder",
        vec![json!({"kind": "provider_timeout", "provider": "anthropic"})],
        Rule::Failures {
            alertname: "AwfStepFailures",
            by: "agent_id",
            filter: "agent_id=~\"planner|writer|coder\"",
        },
        "switch_fallback",
    );
    s.incidents = 3;
    v.push(s);
    let mut s = sc(
        "provider openai timing out → fallback for researcher, reviewer",
        vec![json!({"kind": "provider_timeout", "provider": "openai"})],
        Rule::Failures {
            alertname: "AwfStepFailures",
            by: "agent_id",
            filter: "agent_id=~\"researcher|reviewer\"",
        },
        "switch_fallback",
    );
    s.incidents = 2;
    v.push(s);
    v.push(sc(
        "transient classifier outage failed a triage → resume from the failed step",
        vec![failing("classifier", 1.0)],
        Rule::WorkflowFailed {
            workflow: "support-triage",
        },
        "retry_step",
    ));
    v.push(sc(
        "transient classifier outage failed a code review → restart it",
        vec![failing("classifier", 1.0)],
        Rule::WorkflowFailed {
            workflow: "code-review",
        },
        "restart_workflow",
    ));
    v.push(sc(
        "code-review failure rate (workflow labels only, Alertmanager) → restart its latest failed execution",
        vec![failing("classifier", 1.0)],
        Rule::WorkflowFailureRate {
            workflow: "code-review",
        },
        "restart_workflow",
    ));
    let mut s = sc(
        "runaway reviewer → disable (a human approves)",
        vec![failing("reviewer", 0.9)],
        Rule::Failures {
            alertname: "AwfAgentRunaway",
            by: "agent_id",
            filter: "agent_id=\"reviewer\"",
        },
        "disable_agent",
    );
    s.human = Human::Approves;
    v.push(s);
    let mut s = sc(
        "runaway coder → disable rejected by a human",
        vec![failing("coder", 0.9)],
        Rule::Failures {
            alertname: "AwfAgentRunaway",
            by: "agent_id",
            filter: "agent_id=\"coder\"",
        },
        "disable_agent",
    );
    s.human = Human::Rejects;
    s.outcome = "rejected";
    v.push(s);
    let mut s = sc(
        "classifier failing with no fallback → action fails, on-call paged",
        vec![failing("classifier", 0.9)],
        agent_alert("classifier"),
        "switch_fallback",
    );
    s.outcome = "action_failed";
    v.push(s);
    let mut s = sc(
        "workers saturated → scale (a human approves)",
        vec![],
        Rule::Saturated { capacity: 3 },
        "scale_workers",
    );
    s.human = Human::Approves;
    s.outcome = "done";
    s.workers = Some((1, 3));
    v.push(s);
    v
}

const RULES: &str = r#"
[[rules]]
name = "step timeouts: raise the timeout"
labels = { alertname = "AwfStepFailures" }
findings = { cause = "step_timeout" }
actions = ["increase_timeout"]
escalate = "notify_oncall"

[[rules]]
name = "agent or provider failures: fall back"
labels = { alertname = "AwfStepFailures" }
findings = { cause = "agent_errors|provider_timeout" }
actions = ["switch_fallback"]
escalate = "notify_oncall"

[[rules]]
name = "runaway agent: disable it"
labels = { alertname = "AwfAgentRunaway" }
actions = ["disable_agent"]

[[rules]]
name = "cost surge: cheaper fallback"
labels = { alertname = "AwfCostSurge" }
actions = ["switch_fallback"]
escalate = "notify_oncall"

[[rules]]
name = "failed code review: restart it"
labels = { alertname = "AwfWorkflowFailed", workflow_id = "code-review" }
actions = ["restart_workflow"]

[[rules]]
name = "failed workflow: resume from the failed step"
labels = { alertname = "AwfWorkflowFailed" }
findings = { cause = "workflow_failure" }
actions = ["retry_step", "restart_workflow"]

[[rules]]
name = "workflow failure rate: restart the failed execution"
labels = { alertname = "AwfWorkflowFailureRate" }
findings = { cause = "workflow_failure" }
actions = ["restart_workflow"]

[[rules]]
name = "saturation: more workers"
labels = { alertname = "AwfWorkersSaturated" }
actions = ["scale_workers"]

[[rules]]
name = "anything else: page"
labels = { alertname = ".+" }
actions = ["notify_oncall"]
"#;

struct Env {
    prom: Prometheus,
    loki_query: String,
    tempo_url: String,
    tempo: TempoTestServer,
    backends: Backends,
    oncall: String,
    oncall_rec: Recorder,
    _loki: Arc<LokiTestServer>,
}

fn watcher_config(env: &Env, s: &Scenario, sim: &str) -> Config {
    let loki = if s.broken_loki {
        "http://127.0.0.1:9".to_owned()
    } else {
        env.loki_query.clone()
    };
    let text = format!(
        r#"
bearer_token = "{HOOK_TOKEN}"
hmac_secret = "{HMAC_SECRET}"
hmac_timestamp_header = "X-Grafana-Alerting-Timestamp"
approvers = [{{ name = "alice", token = "{ALICE}" }}]
prometheus_url = "{prom}"
loki_url = "{loki}"
tempo_url = "{tempo}"
vars = {{ awf_url = "{sim}", oncall_url = "{oncall}/oncall" }}
investigation_budget = "5s"
source_timeout = "2s"
lookback = "2m"
verification = {{ delay = "2s", interval = "500ms", timeout = "30s" }}
{RULES}"#,
        prom = env.prom.url(),
        tempo = env.tempo_url,
        oncall = env.oncall,
    );
    let c: Config = toml::from_str(&text).expect("scenario config");
    c.validate().expect("valid");
    c
}

fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(format!("{k}\u{1}{v}\u{2}"));
    }
    hex::encode(&h.finalize()[..8])
}

/// The PromQL of a rule for `job`, with `sel` as extra matchers.
fn rule_query(rule: Rule, job: &str, sel: &str, threshold: f64) -> String {
    match rule {
        Rule::Failures { by, .. } => format!(
            "sum by (job, {by}) (increase(awf_step_duration_ms_count{{job=\"{job}\",status=\"failed\",{sel}}}[5s])) > 3"
        ),
        Rule::Cost { .. } => format!(
            "sum by (job, agent_id) (increase(awf_cost_usd_total{{job=\"{job}\",{sel}}}[5s])) / \
             sum by (job, agent_id) (increase(awf_tokens_total{{job=\"{job}\",direction=\"input\",{sel}}}[5s])) > {threshold}"
        ),
        Rule::Saturated { capacity } => {
            format!("sum by (job) (awf_active_executions{{job=\"{job}\"}}) >= {capacity}")
        }
        Rule::WorkflowFailureRate { workflow } => format!(
            "sum by (workflow_id) (increase(awf_workflow_total{{job=\"{job}\",status=\"failed\",workflow_id=\"{workflow}\"}}[10s])) > 0"
        ),
        Rule::WorkflowFailed { .. } => String::new(),
    }
}

/// Polls the rule until it returns series (the alert fires). Like Grafana's `group_wait`,
/// it keeps evaluating a while after the first series fires so that the series of one
/// incident wave (several agents) go out in one notification.
async fn wait_firing(
    prom: &Prometheus,
    q: &str,
    timeout: Duration,
) -> Vec<BTreeMap<String, String>> {
    wait_group(prom, q, 1, timeout).await
}

async fn wait_group(
    prom: &Prometheus,
    q: &str,
    want: usize,
    timeout: Duration,
) -> Vec<BTreeMap<String, String>> {
    let deadline = Instant::now() + timeout;
    let mut first: Option<Instant> = None;
    loop {
        let r = prom.query(q).await;
        if r.is_empty() {
            // Back to normal during the pending period: the alert does not fire.
            first = None;
        } else if first.is_none() {
            first = Some(Instant::now());
        }
        // Grafana's pending period (`for: 1s`), then group_wait for the rest of the wave.
        let pending_over = first.is_some_and(|f| f.elapsed() >= Duration::from_secs(1));
        let group_wait_over = first.is_some_and(|f| f.elapsed() > Duration::from_secs(10));
        if pending_over && (r.len() >= want || group_wait_over) {
            return r
                .into_iter()
                .map(|(m, _)| {
                    m.as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "alert never fired: {q}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn sim_get(sim: &str, path: &str) -> Value {
    reqwest::get(format!("{sim}{path}"))
        .await
        .expect("sim")
        .json()
        .await
        .expect("json")
}

async fn sim_post(sim: &str, path: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{sim}{path}"))
        .json(body)
        .send()
        .await
        .expect("sim")
        .status()
        .as_u16()
}

/// What one scenario produced.
struct Report {
    name: &'static str,
    incidents: Vec<Value>,
    took: Duration,
}

async fn post_signed(base: &str, payload: &Value) -> Value {
    let body = serde_json::to_vec(payload).expect("json");
    let ts = (sluice_watcher::alert::now_ms() / 1000).to_string();
    let sig = sluice_watcher::auth::sign(HMAC_SECRET.as_bytes(), Some(&ts), &body);
    let r = reqwest::Client::new()
        .post(format!("{base}/webhooks/grafana-alerts"))
        .header("content-type", "application/json")
        .header("user-agent", "Grafana")
        .header("X-Grafana-Alerting-Signature", sig)
        .header("X-Grafana-Alerting-Timestamp", ts)
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 200, "webhook refused");
    r.json().await.expect("json")
}

/// Alertmanager's webhook: bearer token, no signature.
async fn post_alertmanager(base: &str, payload: &Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}/webhooks/alertmanager"))
        .bearer_auth(HOOK_TOKEN)
        .header("user-agent", "Alertmanager/0.28.1")
        .json(payload)
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 200, "webhook refused");
    r.json().await.expect("json")
}

/// Ends the scenario's `agent_failing` faults (the outage was transient).
async fn heal(sim: &str, faults: &[Value]) {
    for f in faults {
        let name = format!("agent_failing:{}", f["agent_id"].as_str().unwrap_or(""));
        let _ = reqwest::Client::new()
            .delete(format!("{sim}/sim/faults/{name}"))
            .send()
            .await;
    }
}

async fn run(env: Arc<Env>, n: usize, s: Scenario) -> Report {
    let t0 = Instant::now();
    let job = format!("awf-s{n:02}");
    // Half the scenarios write logs the way the shipped configs do (the Loki exporter's push
    // API mapping), half through Loki's native OTLP endpoint: the watcher's queries must find
    // the lines under both.
    let loki_path = if n.is_multiple_of(2) {
        LokiPath::Push
    } else {
        LokiPath::NativeOtlp
    };
    let pipe = Pipe::new(&env.backends, loki_path);
    let (workers, capacity) = s.workers.unwrap_or((8, 50));
    let sim_cfg = SimConfig {
        seed: 1000 + n as u64,
        events_per_second: if s.workers.is_some() { 150.0 } else { 100.0 },
        speed: 20.0,
        workers,
        worker_capacity: capacity,
        // These scenarios verify one execution (the resumed or restarted one) and pick the
        // failed one to alert on: only the injected fault may fail an execution for good,
        // or a 1-in-100 rejected input decides the outcome instead of the watcher.
        input_error_rate: match s.rule {
            Rule::WorkflowFailed { .. } | Rule::WorkflowFailureRate { .. } => 0.0,
            _ => SimConfig::default().input_error_rate,
        },
        ..SimConfig::default()
    };
    let dep = Deployment::start(&job, sim_cfg, pipe.clone()).await;
    let sim = dep.base.clone();
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = watcher_config(&env, &s, &sim);
    let watcher = Watcher::start(&cfg, "processors.watcher", dir.path(), Some(pipe.clone()))
        .await
        .expect("watcher");
    pipe.processor.set(watcher.processor());
    let (addr, server) = serve(watcher.router()).await;
    let base = format!("http://{addr}");
    let h = Api::attach(base.clone());

    // Baseline traffic first.
    let probe = format!("sum(awf_step_duration_ms_count{{job=\"{job}\"}})");
    wait_firing(&env.prom, &probe, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut threshold = 0.0;
    if let Rule::Cost { agent } = s.rule {
        let sel = format!("agent_id=\"{agent}\"");
        let q = rule_query(s.rule, &job, &sel, 0.0).replace(" > 0", "");
        let base = wait_firing(&env.prom, &q, Duration::from_secs(10)).await;
        assert!(!base.is_empty());
        let v = env.prom.query(&q).await;
        threshold = v.first().map(|x| x.1).unwrap_or(0.0) * 2.0;
        assert!(threshold > 0.0, "no cost baseline for {agent}");
    }
    for f in &s.faults {
        assert_eq!(sim_post(&sim, "/sim/faults", f).await, 201, "fault {f}");
    }

    // Grafana notices and notifies.
    let starts = rfc3339_now();
    let mut alerts = Vec::new();
    match s.rule {
        Rule::WorkflowFailed { workflow } => {
            let deadline = Instant::now() + Duration::from_secs(30);
            let failed = loop {
                let l = sim_get(&sim, "/executions?status=failed&limit=100").await;
                let hit = l["executions"].as_array().and_then(|a| {
                    a.iter()
                        .find(|e| e["workflow_id"] == workflow)
                        .and_then(|e| e["id"].as_str().map(str::to_owned))
                });
                if let Some(id) = hit {
                    break id;
                }
                assert!(Instant::now() < deadline, "no failed {workflow} execution");
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            // Grafana's Loki alert rule fires once the failure is in Loki.
            let logql = format!(
                "{{service_name=\"{job}\"}} | json \
                 | (event_type=\"workflow.failed\" or attributes_event_type=\"workflow.failed\") \
                 | (execution_id=\"{failed}\" or attributes_execution_id=\"{failed}\")"
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let v: Value = reqwest::Client::new()
                    .get(format!("{}/loki/api/v1/query_range", env.loki_query))
                    .query(&[("query", logql.as_str()), ("limit", "10")])
                    .send()
                    .await
                    .expect("loki")
                    .json()
                    .await
                    .expect("json");
                if v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "workflow.failed of {failed} never reached Loki"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            heal(&sim, &s.faults).await;
            let labels: BTreeMap<String, String> = [
                ("alertname", "AwfWorkflowFailed"),
                ("execution_id", failed.as_str()),
                ("workflow_id", workflow),
                ("job", job.as_str()),
                ("severity", "warning"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let fp = fingerprint(&labels);
            let l: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            alerts.push(grafana_alert(
                "firing",
                &l,
                &[("summary", "an AWF execution failed")],
                &starts,
                &fp,
            ));
        }
        Rule::WorkflowFailureRate { .. } => {
            let q = rule_query(s.rule, &job, "", 0.0);
            let series = wait_firing(&env.prom, &q, Duration::from_secs(40)).await;
            heal(&sim, &s.faults).await;
            for mut labels in series {
                assert_eq!(
                    labels.keys().collect::<Vec<_>>(),
                    ["workflow_id"],
                    "only the workflow"
                );
                labels.insert("alertname".into(), "AwfWorkflowFailureRate".into());
                labels.insert("severity".into(), "warning".into());
                let fp = fingerprint(&labels);
                let l: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                alerts.push(grafana_alert(
                    "firing",
                    &l,
                    &[("summary", "executions of a workflow fail")],
                    &starts,
                    &fp,
                ));
            }
        }
        rule => {
            let (alertname, filter) = match rule {
                Rule::Failures {
                    alertname, filter, ..
                } => (alertname, filter.to_owned()),
                Rule::Cost { agent } => ("AwfCostSurge", format!("agent_id=\"{agent}\"")),
                _ => ("AwfWorkersSaturated", String::new()),
            };
            let q = rule_query(rule, &job, &filter, threshold);
            let series = wait_group(&env.prom, &q, s.incidents, Duration::from_secs(40)).await;
            for mut labels in series {
                // Grafana's templated annotation: the rule narrowed to this series.
                let sel: Vec<String> = labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "job")
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                let narrowed = rule_query(rule, &job, &sel.join(","), threshold);
                labels.insert("alertname".into(), alertname.into());
                labels.insert("severity".into(), "critical".into());
                let fp = fingerprint(&labels);
                let l: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                alerts.push(grafana_alert(
                    "firing",
                    &l,
                    &[("summary", alertname), ("watcher_query", narrowed.as_str())],
                    &starts,
                    &fp,
                ));
            }
        }
    }
    assert_eq!(
        alerts.len(),
        s.incidents,
        "{}: firing alerts {alerts:#?}",
        s.name
    );
    let answer = if matches!(s.rule, Rule::WorkflowFailureRate { .. }) {
        post_alertmanager(&base, &alertmanager_payload(alerts)).await
    } else {
        post_signed(&base, &grafana_payload(alerts)).await
    };
    let ids: Vec<String> = answer["summary"]["incidents"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), s.incidents);

    // A human answers approvals.
    if s.human != Human::None {
        let pending = h.wait_pending(ids.len(), Duration::from_secs(15)).await;
        for p in pending {
            let id = p["id"].as_str().expect("id");
            let verb = if s.human == Human::Approves {
                "approve"
            } else {
                "reject"
            };
            let (st, v) = h
                .post(
                    &format!("/approvals/{id}/{verb}"),
                    ALICE,
                    json!({"reason": "scenario"}),
                )
                .await;
            assert_eq!(st, 200, "{v}");
        }
    }
    let mut incidents = Vec::new();
    for id in &ids {
        incidents.push(h.wait_stage(id, "closed", Duration::from_secs(60)).await);
    }

    // What the scenario expects.
    for inc in &incidents {
        // The outcome and what verification saw first: CI keeps only the start of a message.
        let ctx = format!(
            "{} (logs by {loki_path:?}): outcome {}, verification {}: {inc:#}",
            s.name, inc["outcome"], inc["verification"]["detail"]
        );
        assert_eq!(inc["decision"]["chosen"], s.script, "{ctx}");
        assert_eq!(inc["outcome"], s.outcome, "{ctx}");
        let took = inc["finding"]["took_ms"].as_u64().expect("took");
        assert!(took < 5000, "{ctx}");
        assert_eq!(inc["finding"]["degraded"], s.broken_loki, "{ctx}");
        // Failures leave error records: Loki's evidence must have found them.
        let failures = matches!(
            s.rule,
            Rule::Failures { .. } | Rule::WorkflowFailed { .. } | Rule::WorkflowFailureRate { .. }
        );
        if failures && !s.broken_loki {
            let loki = inc["finding"]["evidence"]
                .as_array()
                .and_then(|e| e.iter().find(|e| e["source"] == "loki"))
                .unwrap_or_else(|| panic!("no Loki evidence: {ctx}"));
            assert!(
                loki["log_lines"].as_array().is_some_and(|l| !l.is_empty()),
                "no error lines from Loki: {ctx}"
            );
        }
    }
    let state = sim_get(&sim, "/sim/state").await;
    match s.script {
        "switch_fallback" if s.outcome == "recovered" => {
            for inc in &incidents {
                let agent = inc["actions"][0]["action"]["params"]["agent_id"]
                    .as_str()
                    .expect("agent");
                assert!(
                    state["fallback_routes"][agent].is_string(),
                    "{}: {state}",
                    s.name
                );
            }
        }
        "increase_timeout" => {
            assert!(
                state["step_timeouts_ms"]
                    .as_object()
                    .is_some_and(|o| !o.is_empty()),
                "{state}"
            );
        }
        "disable_agent" if s.outcome == "recovered" => {
            assert!(
                state["disabled_agents"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
                "{state}"
            );
        }
        "disable_agent" => {
            assert!(
                state["disabled_agents"]
                    .as_array()
                    .is_none_or(|a| a.is_empty()),
                "{state}"
            );
        }
        "scale_workers" => {
            assert_eq!(state["workers"], 3, "{state}");
            // The queue drains with the new workers.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let st = sim_get(&sim, "/sim/state").await;
                if st["queued"] == 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "queue never drained: {st}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        "switch_fallback" => {
            // No fallback: the escalation paged on-call.
            let paged = env.oncall_rec.calls().into_iter().any(|c| {
                c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("AwfStepFailures"))
                    && c.body["alertname"] == "AwfStepFailures"
            });
            assert!(paged, "{}: on-call not paged", s.name);
            assert_eq!(incidents[0]["actions"][1]["script"], "notify_oncall");
        }
        _ => {}
    }
    // A workflow-level alert: the investigation found the failed execution and restarted it.
    if let Rule::WorkflowFailureRate { workflow } = s.rule {
        let actions = sim_get(&sim, "/sim/actions").await;
        for inc in &incidents {
            assert_eq!(
                inc["finding"]["hypothesis"]["cause"], "workflow_failure",
                "{inc:#}"
            );
            let exec = inc["actions"][0]["action"]["params"]["execution_id"]
                .as_str()
                .expect("execution_id filled by the investigation");
            let e = sim_get(&sim, &format!("/executions/{exec}")).await;
            assert_eq!(e["workflow_id"], workflow, "{e}");
            assert_eq!(e["status"], "failed", "{e}");
            let restarted = actions["actions"].as_array().is_some_and(|a| {
                a.iter().any(|x| {
                    x["action"] == "restart_workflow" && x["detail"]["execution_id"] == exec
                })
            });
            assert!(restarted, "{exec} not restarted: {actions}");
        }
    }
    // Execution-level remediations are verified through the live window.
    if matches!(
        s.rule,
        Rule::WorkflowFailed { .. } | Rule::WorkflowFailureRate { .. }
    ) {
        assert_eq!(incidents[0]["verification"]["method"], "execution");
    } else if s.outcome == "recovered" {
        assert_eq!(incidents[0]["verification"]["method"], "promql");
    }
    assert_eq!(
        dep.failures.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "pipeline delivery failures"
    );
    server.abort();
    watcher.stop().await;
    dep.stop().await;
    Report {
        name: s.name,
        incidents,
        took: t0.elapsed(),
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_scenarios_are_investigated_remediated_and_verified() {
    let t0 = Instant::now();
    let prom = Prometheus::start().await;
    let loki = Arc::new(
        LokiTestServer::start_with(LokiServerOptions {
            auth_enabled: false,
            ..Default::default()
        })
        .await,
    );
    let loki_query = support::loki_query::serve_queries(loki.clone()).await;
    let (tempo_url, tempo) = TempoTestServer::start().await;
    let (oncall, oncall_rec) = recorder().await;
    let env = Arc::new(Env {
        backends: Backends {
            prometheus_write: prom.write_url(),
            loki_push: loki.push_url(),
            loki_otlp: loki.otlp_url(),
            tempo_otlp: format!("{tempo_url}/v1/traces"),
        },
        prom,
        loki_query,
        tempo_url,
        tempo,
        oncall,
        oncall_rec,
        _loki: loki.clone(),
    });
    let all = scenarios();
    assert!(all.len() >= 20);
    let slots = Arc::new(tokio::sync::Semaphore::new(6));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, s) in all.into_iter().enumerate() {
        let env = env.clone();
        let slots = slots.clone();
        tasks.spawn(async move {
            let _p = slots.acquire_owned().await.expect("slot");
            let name = s.name;
            let r = tokio::spawn(run(env, n + 1, s)).await;
            (name, r)
        });
    }
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (name, r) = done.expect("scenario task");
        match r {
            Ok(rep) => reports.push(rep),
            Err(e) => {
                let msg = e
                    .try_into_panic()
                    .ok()
                    .and_then(|p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    })
                    .unwrap_or_default();
                failures.push(format!("{name}: {msg}"));
            }
        }
    }

    // The report.
    let mut took: Vec<u64> = Vec::new();
    let (mut decided, mut autonomous) = (0usize, 0usize);
    println!(
        "\n{:<70} {:>9} {:<18} {:>6}",
        "scenario", "incidents", "outcome", "secs"
    );
    reports.sort_by_key(|r| r.name);
    for r in &reports {
        for inc in &r.incidents {
            took.push(inc["finding"]["took_ms"].as_u64().unwrap_or(0));
            if inc["decision"]["chosen"].is_string() {
                decided += 1;
                if inc["outcome"] == "recovered" && inc["autonomous"] == true {
                    autonomous += 1;
                }
            }
        }
        println!(
            "{:<70} {:>9} {:<18} {:>6.1}",
            r.name,
            r.incidents.len(),
            r.incidents[0]["outcome"].as_str().unwrap_or("?"),
            r.took.as_secs_f64()
        );
    }
    took.sort_unstable();
    let rate = autonomous as f64 / decided.max(1) as f64;
    println!(
        "\nscenarios: {} passed, {} failed; incidents: {decided}; autonomously remediated and verified: {autonomous} ({:.0}%, target ≥ 80%)",
        reports.len(),
        failures.len(),
        rate * 100.0
    );
    println!(
        "investigation time: p50 {} ms, p99 {} ms (budget 5000 ms); suite {:.1}s",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "failed scenarios:\n{}",
        failures.join("\n\n")
    );
    assert!(
        rate >= 0.8,
        "autonomous-remediation rate {rate:.2} below 0.8"
    );
    assert!(percentile(&took, 0.99) < 5000);

    // Each investigation is a trace in Tempo (the watcher's own spans went through the
    // pipeline).
    let inc = &reports[0].incidents[0];
    let key = inc["key"].as_str().expect("key");
    let trace = sluice_watcher::selftel::TraceCtx::for_incident(key).trace_hex();
    let mut names: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !names.iter().any(|n| n == "watcher.incident") {
        let t: Value = reqwest::get(format!("{}/api/traces/{trace}", env.tempo_url))
            .await
            .expect("tempo")
            .json()
            .await
            .unwrap_or(Value::Null);
        names = t["batches"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|b| {
                b["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for want in [
        "watcher.incident",
        "watcher.investigate",
        "watcher.source.prometheus",
        "watcher.action",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(
        *env.tempo.lookups.lock() > 0,
        "the investigations looked traces up in Tempo"
    );
}
