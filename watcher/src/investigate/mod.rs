//! Investigation: deterministic checks over the live window, Prometheus, Loki, Tempo (and
//! optionally mcp-grafana), all under one budget, each source with its own deadline.
//!
//! A check needs certain alert labels (`agent_id`, `step_id`, `provider`, `execution_id`,
//! `trace_id`, `workflow_id`, a service label) and is skipped without them. An alert about a
//! workflow (no `execution_id`) is resolved to its failed executions: the live window first,
//! then Loki's `workflow.failed` records, then Tempo. A source that errors or times
//! out is recorded as degraded; the investigation always returns a finding.

mod loki;
mod prometheus;
mod tempo;
mod window;

use crate::alert::Alert;
use crate::backends::Backends;
use crate::finding::{CheckStatus, Evidence, Fact, Finding, Hypothesis, SourceCheck};
use crate::live_window::Window;
use crate::mcp::McpClient;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use window::{WindowAnalysis, analyze_window, workflow_failure};

/// What the alert is about, from its labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subject {
    pub agent_id: Option<String>,
    pub step_id: Option<String>,
    pub provider: Option<String>,
    pub execution_id: Option<String>,
    pub trace_id: Option<String>,
    pub workflow_id: Option<String>,
    /// `service_name`, `service` or `job`.
    pub service: Option<String>,
}

impl Subject {
    pub fn of(alert: &Alert) -> Subject {
        let get = |k: &str| {
            alert
                .labels
                .get(k)
                .filter(|v| !v.is_empty() && v.len() <= 256)
                .cloned()
        };
        Subject {
            agent_id: get("agent_id"),
            step_id: get("step_id"),
            provider: get("provider"),
            execution_id: get("execution_id"),
            trace_id: get("trace_id").filter(|t| is_trace_id(t)),
            workflow_id: get("workflow_id"),
            service: get("service_name")
                .or_else(|| get("service"))
                .or_else(|| get("job")),
        }
    }
}

impl Subject {
    /// The labels the alert named, as the finding's first signals.
    fn signals(&self) -> BTreeMap<String, String> {
        [
            ("agent_id", &self.agent_id),
            ("step_id", &self.step_id),
            ("provider", &self.provider),
            ("execution_id", &self.execution_id),
            ("trace_id", &self.trace_id),
            ("workflow_id", &self.workflow_id),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
        .collect()
    }
}

/// A workflow-level alert whose failed executions are not in the window: the newest one
/// Loki (else Tempo) knows of.
fn resolve_failed_execution(wa: &mut WindowAnalysis, subject: &Subject, loki: &Part, tempo: &Part) {
    if subject.execution_id.is_some()
        || subject.workflow_id.is_none()
        || wa.signals.contains_key("execution_id")
    {
        return;
    }
    let Some((source, exec)) = [loki, tempo]
        .iter()
        .find_map(|p| Some((p.source, p.failed_executions.first()?.clone())))
    else {
        return;
    };
    let n = loki
        .failed_executions
        .len()
        .max(tempo.failed_executions.len());
    wa.signals.insert("execution_id".into(), exec.clone());
    wa.candidates.push(workflow_failure(
        &format!(
            "execution {exec} of workflow {} failed (from {source}; {n} failed in the lookback)",
            subject.workflow_id.as_deref().unwrap_or("?")
        ),
        0.8,
    ));
}

/// The most confident candidate, less confident when sources were unavailable.
fn best_hypothesis(candidates: Vec<Hypothesis>, degraded: bool) -> Hypothesis {
    let mut best = candidates
        .into_iter()
        .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
        .unwrap_or_else(|| Hypothesis {
            cause: "unknown".into(),
            summary: "no failure pattern found in the window; see the evidence".into(),
            confidence: 0.2,
        });
    if degraded {
        best.confidence = (best.confidence - 0.15).max(0.05);
        best.summary.push_str(" (some sources were unavailable)");
    }
    best.confidence = (best.confidence * 100.0).round() / 100.0;
    best
}

fn is_trace_id(s: &str) -> bool {
    matches!(s.len(), 16 | 32) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub struct Investigator {
    pub backends: Backends,
    pub mcp: Option<Arc<McpClient>>,
    pub window: Arc<Window>,
    pub budget: Duration,
    pub source_timeout: Duration,
    pub lookback: Duration,
}

/// Annotation holding PromQL that returns series while the alert fires.
pub const QUERY_ANNOTATION: &str = "watcher_query";

impl Investigator {
    /// Runs every applicable check; `alert_query` is the PromQL of the alert's signal if known.
    pub async fn investigate(&self, alert: &Alert, alert_query: Option<&str>) -> Finding {
        let started = Instant::now();
        let deadline = started + self.budget;
        let subject = Subject::of(alert);
        let now = crate::alert::now_ms();
        let starts = alert.starts_at_ms().unwrap_or(now).min(now);
        let lookback_ms = i64::try_from(self.lookback.as_millis()).unwrap_or(i64::MAX);
        let since = starts.saturating_sub(lookback_ms);
        let mut f = Finding {
            started_at_ms: now,
            signals: subject.signals(),
            ..Default::default()
        };

        // 1. The live window (in memory, fast).
        let mut wa = self.window_check(&mut f, &subject, since);
        // The alert's own trace, else the window's failing traces, newest first.
        let traces_for_tempo: Vec<String> = subject
            .trace_id
            .iter()
            .chain(&wa.failing_traces)
            .cloned()
            .collect();

        // 2. Remote sources, concurrently, each with its own deadline.
        let per_source = self
            .source_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let (prom, loki, tempo, mcp) = futures::join!(
            self.prometheus_checks(&subject, alert_query, since, per_source),
            self.loki_check(&subject, since, per_source),
            self.tempo_check(&subject, &traces_for_tempo, since, per_source),
            self.mcp_check(alert_query, per_source),
        );
        resolve_failed_execution(&mut wa, &subject, &loki, &tempo);
        for part in [prom, loki, tempo, mcp] {
            merge(&mut f, part);
        }
        f.facts.extend(wa.facts);
        f.evidence.extend(wa.evidence);
        for (k, v) in wa.signals {
            f.signals.entry(k).or_insert(v);
        }
        f.degraded = f.checked.iter().any(|c| c.status == CheckStatus::Degraded);

        // 3. The most confident explanation.
        let best = best_hypothesis(wa.candidates, f.degraded);
        f.signals.insert("cause".into(), best.cause.clone());
        f.signals.insert(
            "hypothesis".into(),
            best.summary.chars().take(240).collect(),
        );
        f.hypothesis = best;
        f.took_ms = elapsed_ms(started);
        f
    }

    /// Analyzes the live window and records that check in `f`.
    fn window_check(&self, f: &mut Finding, subject: &Subject, since: i64) -> WindowAnalysis {
        let t = Instant::now();
        let wa = analyze_window(&self.window, subject, since);
        f.checked.push(SourceCheck {
            source: "window".into(),
            status: if wa.facts.is_empty() {
                CheckStatus::Skipped
            } else {
                CheckStatus::Ok
            },
            took_ms: elapsed_ms(t),
            detail: format!("{} observations in the live window", self.window.len()),
        });
        wa
    }

    async fn mcp_check(&self, alert_query: Option<&str>, timeout: Duration) -> Part {
        let mut part = Part::new("mcp-grafana");
        let Some(mcp) = &self.mcp else {
            part.skip("mcp_url not set");
            return part;
        };
        let Some(q) = alert_query else {
            part.skip("no alert query");
            return part;
        };
        match tokio::time::timeout(timeout, mcp.query_prometheus(q)).await {
            Ok(Ok(text)) => {
                part.ok += 1;
                part.evidence.push(Evidence {
                    source: "mcp-grafana".into(),
                    query: format!("query_prometheus {q}"),
                    result: vec![text.chars().take(1000).collect()],
                    ..Default::default()
                });
            }
            Ok(Err(e)) => part.fail(e),
            Err(_) => part.fail(format!("timeout after {timeout:?}")),
        }
        part
    }
}

fn elapsed_ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One source's contribution.
struct Part {
    source: &'static str,
    started: Instant,
    ok: usize,
    errors: Vec<String>,
    skipped: Option<String>,
    facts: Vec<Fact>,
    evidence: Vec<Evidence>,
    /// Failed executions of the alert's workflow, newest first (Loki, Tempo).
    failed_executions: Vec<String>,
}

impl Part {
    fn new(source: &'static str) -> Part {
        Part {
            source,
            started: Instant::now(),
            ok: 0,
            errors: Vec::new(),
            skipped: None,
            facts: Vec::new(),
            evidence: Vec::new(),
            failed_executions: Vec::new(),
        }
    }
    fn skip(&mut self, why: &str) {
        self.skipped = Some(why.to_owned());
    }
    fn fail(&mut self, e: impl std::fmt::Display) {
        self.errors.push(e.to_string());
    }
}

fn merge(f: &mut Finding, p: Part) {
    let (status, detail) = if let Some(why) = p.skipped {
        (CheckStatus::Skipped, why)
    } else if !p.errors.is_empty() {
        (
            CheckStatus::Degraded,
            format!("{} ok, failed: {}", p.ok, p.errors.join("; ")),
        )
    } else {
        (CheckStatus::Ok, format!("{} queries", p.ok))
    };
    f.checked.push(SourceCheck {
        source: p.source.into(),
        status,
        took_ms: elapsed_ms(p.started),
        detail,
    });
    f.facts.extend(p.facts);
    f.evidence.extend(p.evidence);
}

#[cfg(test)]
mod tests {
    use super::loki::loki_field;
    use super::*;
    use crate::live_window::Obs;

    fn step(agent: &str, err: Option<&str>, t: i64) -> Obs {
        Obs {
            name: "awf.step".into(),
            agent_id: Some(agent.into()),
            step_id: Some("research".into()),
            provider: Some("openai".into()),
            error: err.is_some(),
            error_type: err.map(str::to_owned),
            time_ms: t,
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            ..Default::default()
        }
    }

    fn most_confident(wa: &WindowAnalysis) -> &Hypothesis {
        wa.candidates
            .iter()
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
            .expect("a hypothesis")
    }

    #[test]
    fn window_patterns() {
        let w = Window::new(1000, Duration::from_secs(600));
        let now = crate::alert::now_ms();
        let mut batch: Vec<Obs> = (0..10)
            .map(|i| step("researcher", None, now - 100 + i))
            .collect();
        batch.extend((0..12).map(|i| step("researcher", Some("AgentError"), now - 50 + i)));
        w.insert(batch, now);
        let s = Subject {
            agent_id: Some("researcher".into()),
            ..Default::default()
        };
        let wa = analyze_window(&w, &s, now - 60_000);
        let best = most_confident(&wa);
        assert_eq!(best.cause, "agent_errors");
        assert!(best.confidence > 0.8);
        assert_eq!(wa.signals["error_type"], "AgentError");
        assert_eq!(wa.failing_traces.len(), 1);
    }

    #[test]
    fn an_unrelated_failure_before_the_fault_does_not_hide_it() {
        // The scenario suite's "provider openai timing out" case as one CI run saw it: one
        // schema-validation failure early in the window, many healthy attempts, then the
        // timeouts: 5 of 26 attempts failed over the whole window.
        let w = Window::new(1000, Duration::from_secs(600));
        let now = crate::alert::now_ms();
        let mut batch = vec![step("reviewer", Some("ValidationError"), now - 200)];
        batch.extend((0..21).map(|i| step("reviewer", None, now - 190 + i)));
        batch.extend((0..4).map(|i| step("reviewer", Some("ProviderTimeout"), now - 50 + i)));
        w.insert(batch, now);
        let s = Subject {
            agent_id: Some("reviewer".into()),
            ..Default::default()
        };
        let wa = analyze_window(&w, &s, now - 60_000);
        let best = most_confident(&wa);
        assert_eq!(best.cause, "provider_timeout", "{}", best.summary);

        // Scattered failures of mixed kinds among healthy attempts (4 of 30) stay below the bar.
        let w = Window::new(1000, Duration::from_secs(600));
        let batch = (0..30)
            .map(|i| {
                let err = match i % 15 {
                    0 => Some("ProviderTimeout"),
                    7 => Some("ValidationError"),
                    _ => None,
                };
                step("reviewer", err, now - 100 + i)
            })
            .collect();
        w.insert(batch, now);
        let wa = analyze_window(&w, &s, now - 60_000);
        assert!(wa.candidates.is_empty(), "{:?}", wa.candidates);
    }

    #[test]
    fn a_workflow_alert_finds_the_latest_failed_execution() {
        let w = Window::new(1000, Duration::from_secs(600));
        let now = crate::alert::now_ms();
        let run = |exec: &str, wf: &str, failed: bool, t: i64| {
            let mut step = step("classifier", failed.then_some("AgentError"), t);
            step.execution_id = Some(exec.into());
            step.workflow_id = Some(wf.into());
            let end = Obs {
                name: "awf.workflow".into(),
                execution_id: Some(exec.into()),
                workflow_id: Some(wf.into()),
                status: Some(if failed { "failed" } else { "completed" }.into()),
                error: failed,
                time_ms: t + 1,
                ..Default::default()
            };
            // The converter's log record of the terminal event says the same.
            let record = Obs {
                name: if failed {
                    "workflow.failed"
                } else {
                    "workflow.completed"
                }
                .into(),
                execution_id: Some(exec.into()),
                workflow_id: Some(wf.into()),
                time_ms: t + 1,
                ..Default::default()
            };
            vec![step, end, record]
        };
        let mut batch = run("ex-1", "code-review", true, now - 90);
        batch.extend(run("ex-2", "code-review", false, now - 80));
        batch.extend(run("ex-3", "code-review", true, now - 70));
        batch.extend(run("ex-4", "code-review", false, now - 60));
        // A later failure of another workflow is not this alert's.
        batch.extend(run("ex-5", "support-triage", true, now - 50));
        w.insert(batch, now);
        let s = Subject {
            workflow_id: Some("code-review".into()),
            service: Some("awf".into()),
            ..Default::default()
        };
        let wa = analyze_window(&w, &s, now - 60_000);
        assert_eq!(wa.signals["execution_id"], "ex-3");
        let best = most_confident(&wa);
        assert_eq!(best.cause, "workflow_failure");
        assert!(best.summary.contains("ex-3"), "{}", best.summary);
        let listed = wa
            .evidence
            .iter()
            .find(|e| e.query.starts_with("failed executions"))
            .unwrap();
        assert_eq!(listed.result, ["ex-3", "ex-1"]);

        // Once ex-3 was restarted, the next alert takes ex-1.
        w.insert(
            vec![Obs {
                name: "workflow.started".into(),
                execution_id: Some("ex-6".into()),
                workflow_id: Some("code-review".into()),
                extra: vec![("restarted_from".into(), "ex-3".into())],
                time_ms: now - 40,
                ..Default::default()
            }],
            now,
        );
        let wa = analyze_window(&w, &s, now - 60_000);
        assert_eq!(wa.signals["execution_id"], "ex-1");
    }

    #[test]
    fn loki_fields_from_labels_json_and_logfmt() {
        let line = |labels: &[(&str, &str)], line: &str| crate::backends::LokiLine {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ts_ns: "1".into(),
            line: line.into(),
        };
        let l = line(&[("execution_id", "ex-1")], "x");
        assert_eq!(loki_field(&l, "execution_id").as_deref(), Some("ex-1"));
        let l = line(
            &[],
            r#"{"event_type":"workflow.failed","execution_id":"ex-2"}"#,
        );
        assert_eq!(loki_field(&l, "execution_id").as_deref(), Some("ex-2"));
        // The push API's JSON line, and the label `| json` made of it.
        let l = line(
            &[],
            r#"{"body":"workflow.failed","attributes":{"execution_id":"ex-4"},"resources":{"service.name":"awf"}}"#,
        );
        assert_eq!(loki_field(&l, "execution_id").as_deref(), Some("ex-4"));
        assert_eq!(loki_field(&l, "service.name").as_deref(), Some("awf"));
        let l = line(&[("attributes_execution_id", "ex-5")], "{}");
        assert_eq!(loki_field(&l, "execution_id").as_deref(), Some("ex-5"));
        let l = line(&[], r#"event_type=workflow.failed execution_id="ex-3""#);
        assert_eq!(loki_field(&l, "execution_id").as_deref(), Some("ex-3"));
        assert_eq!(loki_field(&l, "step_id"), None);
    }

    /// A Tempo that holds only `held`: 404 for any other trace, as Tempo answers.
    async fn tempo_holding(held: &'static str) -> String {
        use axum::extract::Path;
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let app = axum::Router::new().route(
            "/api/traces/{id}",
            axum::routing::get(move |Path(id): Path<String>| async move {
                if id == held {
                    let span = serde_json::json!({"name": "awf.step", "status": {"code": 2, "message": "boom"}});
                    axum::Json(serde_json::json!({"batches": [{"scopeSpans": [{"spans": [span]}]}]}))
                        .into_response()
                } else {
                    (StatusCode::NOT_FOUND, "trace not found").into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_failing_trace_not_in_tempo_yet_is_no_failed_source() {
        const NEWEST: &str = "11111111111111111111111111111111";
        const OLDER: &str = "22222222222222222222222222222222";
        let now = crate::alert::now_ms();
        let failing = |trace: &str, t: i64| Obs {
            trace_id: Some(trace.into()),
            ..step("planner", Some("ProviderTimeout"), t)
        };
        let investigate = |tempo: String| {
            let window = Arc::new(Window::new(100, Duration::from_secs(600)));
            window.insert(
                vec![failing(OLDER, now - 50), failing(NEWEST, now - 10)],
                now,
            );
            async move {
                investigator(None, Some(tempo), window)
                    .investigate(&agent_alert("planner"), None)
                    .await
            }
        };

        // The newest failing trace is not in Tempo yet: the next one is looked up instead.
        let f = investigate(tempo_holding(OLDER).await).await;
        let tempo = f.checked.iter().find(|c| c.source == "tempo").unwrap();
        assert_eq!(tempo.status, CheckStatus::Ok, "{f:?}");
        assert!(!f.degraded, "{f:?}");
        let found = f
            .evidence
            .iter()
            .find(|e| e.source == "tempo")
            .expect("tempo evidence");
        assert_eq!(found.trace_ids, [OLDER]);
        assert_eq!(found.result[0], "1 spans, 1 with errors");

        // None of them is there yet: said so, and the source is still not degraded.
        let f = investigate(tempo_holding("33333333333333333333333333333333").await).await;
        let tempo = f.checked.iter().find(|c| c.source == "tempo").unwrap();
        assert_eq!(tempo.status, CheckStatus::Ok, "{f:?}");
        assert!(!f.degraded, "{f:?}");
        let missing = f.evidence.iter().find(|e| e.source == "tempo").unwrap();
        assert_eq!(missing.trace_ids, [NEWEST, OLDER]);
        assert_eq!(missing.result, ["none of the 2 traces is in Tempo yet"]);
    }

    /// An investigator of `window` with only the given backends.
    fn investigator(
        prometheus: Option<&str>,
        tempo: Option<String>,
        window: Arc<Window>,
    ) -> Investigator {
        Investigator {
            backends: Backends {
                http: reqwest::Client::new(),
                prometheus: prometheus.map(str::to_owned),
                loki: None,
                tempo,
                tenant: None,
            },
            mcp: None,
            window,
            budget: Duration::from_secs(2),
            source_timeout: Duration::from_millis(500),
            lookback: Duration::from_secs(600),
        }
    }

    fn agent_alert(agent: &str) -> Alert {
        Alert {
            labels: BTreeMap::from([("agent_id".to_owned(), agent.to_owned())]),
            ..serde_json::from_str("{}").unwrap()
        }
    }

    #[tokio::test]
    async fn no_backends_and_empty_window_still_give_a_finding() {
        let window = Arc::new(Window::new(10, Duration::from_secs(60)));
        let f = investigator(Some("http://127.0.0.1:9"), None, window)
            .investigate(&agent_alert("a"), Some("up == 0"))
            .await;
        assert!(f.degraded, "{f:?}");
        assert_eq!(f.hypothesis.cause, "unknown");
        let prom = f.checked.iter().find(|c| c.source == "prometheus").unwrap();
        assert_eq!(prom.status, CheckStatus::Degraded);
        assert!(f.took_ms < 2000);
    }
}
