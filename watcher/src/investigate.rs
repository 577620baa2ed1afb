//! Investigation: deterministic checks over the live window, Prometheus, Loki, Tempo (and
//! optionally mcp-grafana), all under one budget, each source with its own deadline.
//!
//! A check needs certain alert labels (`agent_id`, `step_id`, `provider`, `execution_id`,
//! `trace_id`, `workflow_id`, a service label) and is skipped without them. An alert about a
//! workflow (no `execution_id`) is resolved to its failed executions: the live window first,
//! then Loki's `workflow.failed` records, then Tempo. A source that errors or times
//! out is recorded as degraded; the investigation always returns a finding.

use crate::alert::Alert;
use crate::backends::{Backends, PromSample};
use crate::finding::{CheckStatus, Evidence, Fact, Finding, Hypothesis, SourceCheck};
use crate::live_window::{Dim, Obs, Window};
use crate::mcp::McpClient;
use crate::template::escape_query_string;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// What the window says, before it is merged into the finding.
#[derive(Default)]
struct WindowAnalysis {
    facts: Vec<Fact>,
    evidence: Vec<Evidence>,
    signals: BTreeMap<String, String>,
    candidates: Vec<Hypothesis>,
    failing_traces: Vec<String>,
}

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
            ..Default::default()
        };
        for (k, v) in [
            ("agent_id", &subject.agent_id),
            ("step_id", &subject.step_id),
            ("provider", &subject.provider),
            ("execution_id", &subject.execution_id),
            ("trace_id", &subject.trace_id),
            ("workflow_id", &subject.workflow_id),
        ] {
            if let Some(v) = v {
                f.signals.insert(k.into(), v.clone());
            }
        }

        // 1. The live window (in memory, fast).
        let t = Instant::now();
        let wa = analyze_window(&self.window, &subject, since);
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
        let trace_for_tempo = subject
            .trace_id
            .clone()
            .or_else(|| wa.failing_traces.first().cloned());

        // 2. Remote sources, concurrently, each with its own deadline.
        let left = || deadline.saturating_duration_since(Instant::now());
        let per_source = self.source_timeout.min(left());
        let (prom, loki, tempo, mcp) = futures::join!(
            self.prometheus_checks(&subject, alert_query, since, per_source),
            self.loki_check(&subject, since, per_source),
            self.tempo_check(&subject, trace_for_tempo.as_deref(), since, per_source),
            self.mcp_check(alert_query, per_source),
        );
        // A workflow-level alert whose failed executions are not in the window: the newest one
        // Loki (else Tempo) knows of.
        let mut wa = wa;
        if subject.execution_id.is_none()
            && subject.workflow_id.is_some()
            && !wa.signals.contains_key("execution_id")
            && let Some((source, exec)) = [&loki, &tempo]
                .iter()
                .find_map(|p| Some((p.source, p.failed_executions.first()?.clone())))
        {
            let n = loki
                .failed_executions
                .len()
                .max(tempo.failed_executions.len());
            wa.signals.insert("execution_id".into(), exec.clone());
            wa.candidates.push(workflow_failure(
                &format!("execution {exec} of workflow {} failed (from {source}; {n} failed in the lookback)",
                    subject.workflow_id.as_deref().unwrap_or("?")),
                0.8,
            ));
        }
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
        let mut best = wa
            .candidates
            .into_iter()
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
            .unwrap_or_else(|| Hypothesis {
                cause: "unknown".into(),
                summary: "no failure pattern found in the window; see the evidence".into(),
                confidence: 0.2,
            });
        if f.degraded {
            best.confidence = (best.confidence - 0.15).max(0.05);
            best.summary.push_str(" (some sources were unavailable)");
        }
        best.confidence = (best.confidence * 100.0).round() / 100.0;
        f.signals.insert("cause".into(), best.cause.clone());
        f.signals.insert(
            "hypothesis".into(),
            best.summary.chars().take(240).collect(),
        );
        f.hypothesis = best;
        f.took_ms = elapsed_ms(started);
        f
    }

    async fn prometheus_checks(
        &self,
        s: &Subject,
        alert_query: Option<&str>,
        since_ms: i64,
        timeout: Duration,
    ) -> Part {
        let mut part = Part::new("prometheus");
        if self.backends.prometheus.is_none() {
            part.skip("prometheus_url not set");
            return part;
        }
        let sel = |extra: &[(&str, &Option<String>)]| {
            let mut m: Vec<String> = Vec::new();
            if let Some(j) = &s.service {
                m.push(format!("job=\"{}\"", escape_query_string(j)));
            }
            for (k, v) in extra {
                if let Some(v) = v {
                    m.push(format!("{k}=\"{}\"", escape_query_string(v)));
                }
            }
            m.join(",")
        };
        let mut queries: Vec<(String, &'static str)> = Vec::new();
        if let Some(q) = alert_query {
            queries.push((q.to_owned(), "alert"));
        }
        if s.agent_id.is_some() || s.step_id.is_some() {
            let m = sel(&[("agent_id", &s.agent_id), ("step_id", &s.step_id)]);
            queries.push((
                format!("sum by (status) (increase(awf_step_duration_ms_count{{{m}}}[5m]))"),
                "step_outcomes",
            ));
        }
        if s.step_id.is_some() {
            let m = sel(&[("step_id", &s.step_id)]);
            queries.push((
                format!(
                    "histogram_quantile(0.99, sum by (le) (rate(awf_step_duration_ms_bucket{{{m}}}[5m])))"
                ),
                "step_p99",
            ));
        }
        if s.agent_id.is_some() || s.provider.is_some() {
            let m = sel(&[("agent_id", &s.agent_id), ("provider", &s.provider)]);
            queries.push((
                format!("sum by (agent_id, provider) (rate(awf_cost_usd_total{{{m}}}[5m]))"),
                "cost_rate",
            ));
        }
        if queries.is_empty() {
            part.skip("no alert query and no agent/step/provider label");
            return part;
        }
        let now_s = crate::alert::now_ms() as f64 / 1000.0;
        let start = (since_ms as f64 / 1000.0).max(now_s - 3600.0);
        let step = ((now_s - start) / 120.0).max(1.0);
        let range = async {
            match alert_query {
                Some(q) => Some(
                    self.backends
                        .prom_query_range(q, start, now_s, step, timeout)
                        .await,
                ),
                None => None,
            }
        };
        let (results, range) = futures::join!(
            futures::future::join_all(
                queries
                    .iter()
                    .map(|(q, _)| self.backends.prom_query(q, now_s, timeout)),
            ),
            range
        );
        // The alert's signal over the lookback: since when has it fired?
        if let (Some(q), Some(r)) = (alert_query, range) {
            match r {
                Ok(series) => {
                    part.ok += 1;
                    let onset = series.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
                    if onset.is_finite() {
                        part.facts.push(Fact {
                            source: "prometheus".into(),
                            interesting: true,
                            message: format!(
                                "the alert's signal has been present for {:.0}s ({} series)",
                                now_s - onset,
                                series.len()
                            ),
                        });
                    }
                    part.evidence.push(Evidence {
                        source: "prometheus".into(),
                        query: format!("{q} [range {start:.0}..{now_s:.0} step {step:.0}s]"),
                        result: series
                            .iter()
                            .take(10)
                            .map(|(s, t0, t1)| format!("{} from {t0:.0} to {t1:.0}", s.describe()))
                            .collect(),
                        ..Default::default()
                    });
                }
                Err(e) => part.fail(format!("alert range: {e}")),
            }
        }
        for ((q, what), r) in queries.iter().zip(results) {
            match r {
                Ok(samples) => {
                    part.ok += 1;
                    part.facts.push(prom_fact(what, &samples));
                    part.evidence.push(Evidence {
                        source: "prometheus".into(),
                        query: q.clone(),
                        result: samples.iter().take(20).map(PromSample::describe).collect(),
                        ..Default::default()
                    });
                }
                Err(e) => part.fail(format!("{what}: {e}")),
            }
        }
        part
    }

    async fn loki_check(&self, s: &Subject, since_ms: i64, timeout: Duration) -> Part {
        let mut part = Part::new("loki");
        if self.backends.loki.is_none() {
            part.skip("loki_url not set");
            return part;
        }
        let filters: Vec<String> = [
            ("execution_id", &s.execution_id),
            ("agent_id", &s.agent_id),
            ("step_id", &s.step_id),
            ("provider", &s.provider),
            ("workflow_id", &s.workflow_id),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| format!(" | {k}=\"{}\"", escape_query_string(v)))
        })
        .collect();
        if filters.is_empty() && s.service.is_none() {
            part.skip("no execution/agent/step/provider/workflow/service label");
            return part;
        }
        let selector = match &s.service {
            Some(svc) => format!("{{service_name=\"{}\"}}", escape_query_string(svc)),
            None => "{service_name=~\".+\"}".to_owned(),
        };
        let logql = format!("{selector}{} | severity_text=\"ERROR\"", filters.concat());
        let end_ns = crate::alert::now_ms().saturating_mul(1_000_000);
        match self
            .backends
            .loki_query(
                &logql,
                since_ms.saturating_mul(1_000_000),
                end_ns,
                50,
                timeout,
            )
            .await
        {
            Ok(lines) => {
                part.ok += 1;
                if s.execution_id.is_none() && s.workflow_id.is_some() {
                    // Newest first, as Loki answered.
                    for l in &lines {
                        if loki_field(l, "event_type").as_deref() == Some("workflow.failed")
                            && let Some(x) = loki_field(l, "execution_id")
                            && !part.failed_executions.contains(&x)
                        {
                            part.failed_executions.push(x);
                        }
                    }
                }
                part.facts.push(Fact {
                    source: "loki".into(),
                    interesting: !lines.is_empty(),
                    message: format!(
                        "{}{} error log lines since the lookback start",
                        lines.len(),
                        if lines.len() >= 50 { "+" } else { "" }
                    ),
                });
                part.evidence.push(Evidence {
                    source: "loki".into(),
                    query: logql,
                    result: vec![format!("{} lines", lines.len())],
                    log_lines: lines
                        .iter()
                        .take(10)
                        .map(|l| l.line.chars().take(300).collect())
                        .collect(),
                    ..Default::default()
                });
            }
            Err(e) => part.fail(e),
        }
        part
    }

    async fn tempo_check(
        &self,
        s: &Subject,
        trace_id: Option<&str>,
        since_ms: i64,
        timeout: Duration,
    ) -> Part {
        let mut part = Part::new("tempo");
        if self.backends.tempo.is_none() {
            part.skip("tempo_url not set");
            return part;
        }
        let start_s = since_ms / 1000;
        let end_s = crate::alert::now_ms() / 1000 + 1;
        let trace_id = match trace_id {
            Some(t) => Some(t.to_owned()),
            None => {
                let pairs = [
                    ("agent_id", &s.agent_id),
                    ("step_id", &s.step_id),
                    ("workflow_id", &s.workflow_id),
                ];
                let tag = pairs
                    .iter()
                    .find_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
                    .filter(|(_, v)| {
                        v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    });
                let Some((k, v)) = tag else {
                    part.skip("no trace id, agent, step or workflow to look up");
                    return part;
                };
                // About a workflow: its failed executions (the `awf.workflow` span's status).
                let tags = if k == "workflow_id" {
                    format!("{k}={v} status=failed")
                } else {
                    format!("{k}={v}")
                };
                match self
                    .backends
                    .tempo_search(&tags, start_s, end_s, 5, timeout)
                    .await
                {
                    Ok(ids) => {
                        part.ok += 1;
                        part.evidence.push(Evidence {
                            source: "tempo".into(),
                            query: format!("search tags={tags}"),
                            result: vec![format!("{} traces", ids.len())],
                            trace_ids: ids.clone(),
                            ..Default::default()
                        });
                        ids.into_iter().next()
                    }
                    Err(e) => {
                        part.fail(e);
                        return part;
                    }
                }
            }
        };
        let Some(id) = trace_id.filter(|t| is_trace_id(t)) else {
            return part;
        };
        match self
            .backends
            .tempo_trace(&id, start_s, end_s, timeout)
            .await
        {
            Ok(t) => {
                part.ok += 1;
                if s.execution_id.is_none()
                    && s.workflow_id.is_some()
                    && let Some(x) = &t.failed_execution
                {
                    part.failed_executions.push(x.clone());
                }
                let mut result = vec![format!("{} spans, {} with errors", t.spans, t.error_spans)];
                if let Some((name, ms)) = &t.slowest {
                    result.push(format!("slowest span {name} ({ms:.0} ms)"));
                }
                result.extend(t.error_messages.iter().map(|m| format!("error: {m}")));
                part.facts.push(Fact {
                    source: "tempo".into(),
                    interesting: t.error_spans > 0,
                    message: format!("trace {id}: {}", result.join("; ")),
                });
                part.evidence.push(Evidence {
                    source: "tempo".into(),
                    query: format!("GET /api/traces/{id}"),
                    result,
                    trace_ids: vec![id],
                    ..Default::default()
                });
            }
            Err(e) => part.fail(e),
        }
        part
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
    fn fail(&mut self, e: String) {
        self.errors.push(e);
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

fn prom_fact(what: &str, samples: &[PromSample]) -> Fact {
    let source = "prometheus".to_owned();
    match what {
        "alert" => Fact {
            source,
            interesting: !samples.is_empty(),
            message: if samples.is_empty() {
                "the alert's query returns nothing now (the signal may have cleared)".into()
            } else {
                format!("the alert's query still returns {} series", samples.len())
            },
        },
        "step_outcomes" => {
            let total: f64 = samples
                .iter()
                .map(|s| s.value)
                .filter(|v| v.is_finite())
                .sum();
            let failed: f64 = samples
                .iter()
                .filter(|s| s.labels.get("status").is_some_and(|st| st != "completed"))
                .map(|s| s.value)
                .filter(|v| v.is_finite())
                .sum();
            let ratio = if total > 0.0 { failed / total } else { 0.0 };
            Fact {
                source,
                interesting: ratio >= 0.2,
                message: format!(
                    "{failed:.0} of {total:.0} step attempts did not complete in the last 5m ({:.0}%)",
                    ratio * 100.0
                ),
            }
        }
        "step_p99" => Fact {
            source,
            interesting: false,
            message: match samples.first() {
                Some(s) if s.value.is_finite() => format!("step p99 latency {:.0} ms", s.value),
                _ => "no step latency data".into(),
            },
        },
        _ => Fact {
            source,
            interesting: false,
            message: format!(
                "cost rate: {}",
                samples
                    .iter()
                    .take(5)
                    .map(|s| format!(
                        "{} ${:.4}/s",
                        s.labels.get("agent_id").map(String::as_str).unwrap_or("?"),
                        s.value
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

fn count<'a>(it: impl Iterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for k in it {
        *m.entry(k).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = m.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn workflow_failure(summary: &str, confidence: f64) -> Hypothesis {
    Hypothesis {
        cause: "workflow_failure".into(),
        summary: summary.to_owned(),
        confidence,
    }
}

/// A field of a Loki line: a stream label or structured metadata (Loki returns both as the
/// stream's labels), else a key of the line as JSON or logfmt.
fn loki_field(l: &crate::backends::LokiLine, key: &str) -> Option<String> {
    if let Some(v) = l.labels.get(key) {
        return Some(v.clone());
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(&l.line) {
        return match o.get(key)? {
            serde_json::Value::String(v) => Some(v.clone()),
            other => Some(other.to_string()),
        };
    }
    l.line.split_whitespace().find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.trim_matches('"').to_owned())
    })
}

/// Failure and cost patterns of the subject in the live window.
fn analyze_window(w: &Window, s: &Subject, since_ms: i64) -> WindowAnalysis {
    let mut wa = WindowAnalysis::default();
    // The most specific subject the alert names.
    let Some((dim, value)) = [
        (Dim::ExecutionId, &s.execution_id),
        (Dim::AgentId, &s.agent_id),
        (Dim::StepId, &s.step_id),
        (Dim::Provider, &s.provider),
        (Dim::WorkflowId, &s.workflow_id),
        (Dim::Service, &s.service),
    ]
    .into_iter()
    .find_map(|(d, v)| Some((d, v.as_ref()?))) else {
        return wa;
    };
    let obs: Vec<Arc<Obs>> = w
        .by(dim, value, since_ms, 20_000)
        .into_iter()
        .filter(|o| {
            // With several services in one window, keep the alert's (job = service name).
            s.service.is_none()
                || dim == Dim::Service
                || o.service.is_none()
                || o.service == s.service
        })
        .collect();
    if obs.is_empty() {
        return wa;
    }
    let what = format!("{dim:?}={value}");
    let steps: Vec<&Arc<Obs>> = obs.iter().filter(|o| o.name == "awf.step").collect();
    let failed: Vec<&&Arc<Obs>> = steps.iter().filter(|o| o.error).collect();
    let total = steps.len();
    let nfail = failed.len();
    wa.facts.push(Fact {
        source: "window".into(),
        interesting: nfail > 0,
        message: format!(
            "{what}: {} observations, {nfail} of {total} step attempts failed",
            obs.len()
        ),
    });
    let types = count(
        failed
            .iter()
            .map(|o| o.error_type.as_deref().unwrap_or("unknown")),
    );
    let agents = count(failed.iter().filter_map(|o| o.agent_id.as_deref()));
    let failing_steps = count(failed.iter().filter_map(|o| o.step_id.as_deref()));
    let providers = count(failed.iter().filter_map(|o| o.provider.as_deref()));
    for t in failed.iter().rev().filter_map(|o| o.trace_id.as_ref()) {
        if wa.failing_traces.len() >= 5 {
            break;
        }
        if !wa.failing_traces.contains(t) {
            wa.failing_traces.push(t.clone());
        }
    }
    if nfail > 0 {
        wa.evidence.push(Evidence {
            source: "window".into(),
            query: format!("failed awf.step spans where {what}"),
            result: vec![
                format!("error types: {types:?}"),
                format!("agents: {agents:?}"),
                format!("steps: {failing_steps:?}"),
                format!("providers: {providers:?}"),
            ],
            trace_ids: wa.failing_traces.clone(),
            log_lines: failed
                .iter()
                .rev()
                .take(5)
                .filter_map(|o| o.error_message.clone())
                .collect(),
        });
    }
    if let Some((t, _)) = types.first() {
        wa.signals.insert("error_type".into(), t.clone());
    }
    if let Some((a, _)) = agents.first() {
        wa.signals.insert("agent_id".into(), a.clone());
    }
    if let Some((st, _)) = failing_steps.first() {
        wa.signals.insert("step_id".into(), st.clone());
    }
    if let Some((p, _)) = providers.first() {
        wa.signals.insert("provider".into(), p.clone());
    }
    if let Some(t) = wa.failing_traces.first() {
        wa.signals.insert("trace_id".into(), t.clone());
    }

    // Execution-level outcome (per-execution and per-workflow alerts): the `workflow.failed`
    // record or the failed (or timed-out) `awf.workflow` span, one entry per execution,
    // oldest first.
    let mut failed_runs: Vec<&Arc<Obs>> = Vec::new();
    for o in &obs {
        // A timed-out execution (closed by the receiver, no terminal event) counts too; a
        // cancelled one was stopped on purpose.
        let failed_run = o.name == "workflow.failed"
            || (o.name == "awf.workflow"
                && matches!(o.status.as_deref(), Some("failed" | "timeout")));
        if failed_run {
            failed_runs.retain(|r| r.execution_id.is_none() || r.execution_id != o.execution_id);
            failed_runs.push(o);
        }
    }
    if dim == Dim::WorkflowId {
        // About a workflow: an execution already restarted or resumed (AWF names the origin in
        // the new execution's `workflow.started`) is not a candidate again.
        let redone: Vec<&str> = obs
            .iter()
            .filter_map(|o| {
                o.extra("restarted_from")
                    .or_else(|| o.extra("resumed_from"))
            })
            .collect();
        failed_runs.retain(|r| {
            r.execution_id
                .as_deref()
                .is_none_or(|e| !redone.contains(&e))
        });
    }
    if dim == Dim::WorkflowId && !failed_runs.is_empty() {
        wa.evidence.push(Evidence {
            source: "window".into(),
            query: format!("failed executions where {what}"),
            result: failed_runs
                .iter()
                .rev()
                .take(10)
                .filter_map(|o| o.execution_id.clone())
                .collect(),
            ..Default::default()
        });
    }
    if let Some(last) = failed_runs.last() {
        if let Some(e) = &last.execution_id {
            wa.signals.insert("execution_id".into(), e.clone());
        }
        let why = last
            .error_message
            .clone()
            .or_else(|| last.body.clone())
            .unwrap_or_default();
        wa.facts.push(Fact {
            source: "window".into(),
            interesting: true,
            message: format!(
                "{} failed execution(s); latest {}: {why}",
                failed_runs.len(),
                last.execution_id.as_deref().unwrap_or("?")
            ),
        });
        let step = failed.last().and_then(|o| o.step_id.clone());
        let why = types
            .first()
            .map(|(t, n)| format!(" ({t} ×{n})"))
            .unwrap_or_default();
        wa.candidates.push(workflow_failure(
            &format!(
                "execution {} failed{}{why}",
                last.execution_id.as_deref().unwrap_or("?"),
                step.map(|s| format!(" at step {s}")).unwrap_or_default()
            ),
            // About one execution or one workflow, the failed executions are the finding;
            // their error pattern is detail.
            if matches!(dim, Dim::ExecutionId | Dim::WorkflowId) {
                0.95
            } else {
                0.5
            },
        ));
    }

    // Error pattern.
    let ratio = if total > 0 {
        nfail as f64 / total as f64
    } else {
        0.0
    };
    // A fault that just started is diluted by the healthy attempts before it: also judge the
    // attempts since the first failure (background noise stays rare there too).
    let since_first = steps
        .iter()
        .position(|o| o.error)
        .map(|i| &steps[i..])
        .unwrap_or(&[]);
    let recent_ratio = if since_first.is_empty() {
        0.0
    } else {
        since_first.iter().filter(|o| o.error).count() as f64 / since_first.len() as f64
    };
    if nfail >= 3
        && (ratio >= 0.2 || recent_ratio >= 0.3)
        && let Some((ty, n)) = types.first()
    {
        let share = *n as f64 / nfail as f64;
        let base = if nfail >= 10 { 0.9 } else { 0.7 };
        let confidence = base * share.max(0.5);
        let agent = agents.first().map(|a| a.0.clone()).unwrap_or_default();
        let step = failing_steps
            .first()
            .map(|a| a.0.clone())
            .unwrap_or_default();
        let provider = providers.first().map(|a| a.0.clone()).unwrap_or_default();
        let (cause, summary) = match ty.as_str() {
            "ProviderTimeout" => (
                "provider_timeout",
                format!("provider {provider} is not answering ({nfail} timeouts, agent {agent})"),
            ),
            "StepTimeout" => (
                "step_timeout",
                format!("step {step} exceeds its timeout on every agent ({nfail} timeouts)"),
            ),
            "InputError" => ("bad_input", format!("agent {agent} rejects its input")),
            _ => (
                "agent_errors",
                format!("agent {agent} fails ({nfail} of {total} attempts, mostly {ty})"),
            ),
        };
        wa.candidates.push(Hypothesis {
            cause: cause.into(),
            summary,
            confidence,
        });
    }

    // Cost pattern: recent cost per invocation against the earlier part of the window.
    let invokes: Vec<(i64, f64)> = obs
        .iter()
        .filter(|o| o.name == "awf.agent.invoke")
        .filter_map(|o| Some((o.time_ms, o.cost_usd?)))
        .collect();
    if invokes.len() >= 8 {
        let mut sorted = invokes.clone();
        sorted.sort_by_key(|(t, _)| *t);
        let half = sorted.len() / 2;
        let quarter = (sorted.len() / 4).max(2);
        let mean = |s: &[(i64, f64)]| s.iter().map(|x| x.1).sum::<f64>() / s.len().max(1) as f64;
        let before = mean(&sorted[..half]);
        let recent = mean(&sorted[sorted.len() - quarter..]);
        if before > 0.0 {
            let r = recent / before;
            wa.facts.push(Fact {
                source: "window".into(),
                interesting: r >= 2.0,
                message: format!(
                    "cost per invocation: recent ${recent:.5} vs earlier ${before:.5} (×{r:.1})"
                ),
            });
            if r >= 2.0 {
                let agent = obs
                    .iter()
                    .rev()
                    .find(|o| o.name == "awf.agent.invoke")
                    .and_then(|o| o.agent_id.clone())
                    .unwrap_or_default();
                wa.signals.entry("agent_id".into()).or_insert(agent.clone());
                wa.candidates.push(Hypothesis {
                    cause: "cost_surge".into(),
                    summary: format!(
                        "agent {agent} costs ×{r:.1} per invocation (output tokens surged)"
                    ),
                    confidence: (0.5 + 0.08 * r).min(0.9),
                });
            }
        }
    }
    wa
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let best = wa
            .candidates
            .iter()
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
            .unwrap();
        assert_eq!(best.cause, "agent_errors");
        assert!(best.confidence > 0.8);
        assert_eq!(wa.signals["error_type"], "AgentError");
        assert_eq!(wa.failing_traces.len(), 1);
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
        let best = wa
            .candidates
            .iter()
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
            .unwrap();
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
        let l = line(&[], r#"event_type=workflow.failed execution_id="ex-3""#);
        assert_eq!(loki_field(&l, "execution_id").as_deref(), Some("ex-3"));
        assert_eq!(loki_field(&l, "step_id"), None);
    }

    #[tokio::test]
    async fn no_backends_and_empty_window_still_give_a_finding() {
        let inv = Investigator {
            backends: Backends {
                http: reqwest::Client::new(),
                prometheus: Some("http://127.0.0.1:9".into()),
                loki: None,
                tempo: None,
                tenant: None,
            },
            mcp: None,
            window: Arc::new(Window::new(10, Duration::from_secs(60))),
            budget: Duration::from_secs(2),
            source_timeout: Duration::from_millis(500),
            lookback: Duration::from_secs(600),
        };
        let alert = Alert {
            labels: BTreeMap::from([("agent_id".to_owned(), "a".to_owned())]),
            ..serde_json::from_str("{}").unwrap()
        };
        let f = inv.investigate(&alert, Some("up == 0")).await;
        assert!(f.degraded, "{f:?}");
        assert_eq!(f.hypothesis.cause, "unknown");
        let prom = f.checked.iter().find(|c| c.source == "prometheus").unwrap();
        assert_eq!(prom.status, CheckStatus::Degraded);
        assert!(f.took_ms < 2000);
    }
}
