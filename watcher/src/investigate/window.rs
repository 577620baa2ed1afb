//! The live-window check: failure, execution and cost patterns of the alert's subject in the
//! observations the watcher holds in memory.

use super::Subject;
use crate::finding::{Evidence, Fact, Hypothesis};
use crate::live_window::{Dim, Obs, Window};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the window says, before it is merged into the finding.
#[derive(Default)]
pub(super) struct WindowAnalysis {
    pub(super) facts: Vec<Fact>,
    pub(super) evidence: Vec<Evidence>,
    pub(super) signals: BTreeMap<String, String>,
    pub(super) candidates: Vec<Hypothesis>,
    pub(super) failing_traces: Vec<String>,
}

/// Failure and cost patterns of the subject in the live window.
pub(super) fn analyze_window(w: &Window, s: &Subject, since_ms: i64) -> WindowAnalysis {
    let mut wa = WindowAnalysis::default();
    let Some((dim, value)) = most_specific(s) else {
        return wa;
    };
    let obs = subject_observations(w, s, dim, value, since_ms);
    if obs.is_empty() {
        return wa;
    }
    let what = format!("{dim:?}={value}");
    let steps = StepFailures::of(&obs);
    steps.report(&mut wa, &what, obs.len());
    failed_executions(&mut wa, &obs, dim, &what, &steps);
    error_pattern(&mut wa, &steps);
    cost_pattern(&mut wa, &obs);
    wa
}

/// The most specific subject the alert names.
fn most_specific(s: &Subject) -> Option<(Dim, &String)> {
    [
        (Dim::ExecutionId, &s.execution_id),
        (Dim::AgentId, &s.agent_id),
        (Dim::StepId, &s.step_id),
        (Dim::Provider, &s.provider),
        (Dim::WorkflowId, &s.workflow_id),
        (Dim::Service, &s.service),
    ]
    .into_iter()
    .find_map(|(d, v)| Some((d, v.as_ref()?)))
}

/// The window's observations of `dim = value` since `since_ms`.
fn subject_observations(
    w: &Window,
    s: &Subject,
    dim: Dim,
    value: &str,
    since_ms: i64,
) -> Vec<Arc<Obs>> {
    w.by(dim, value, since_ms, 20_000)
        .into_iter()
        .filter(|o| {
            // With several services in one window, keep the alert's (job = service name).
            s.service.is_none()
                || dim == Dim::Service
                || o.service.is_none()
                || o.service == s.service
        })
        .collect()
}

/// The subject's step attempts and how the failed ones break down.
struct StepFailures<'a> {
    steps: Vec<&'a Arc<Obs>>,
    failed: Vec<&'a Arc<Obs>>,
    /// Error types, agents, steps and providers of the failed attempts, most frequent first.
    types: Vec<(String, usize)>,
    agents: Vec<(String, usize)>,
    failing_steps: Vec<(String, usize)>,
    providers: Vec<(String, usize)>,
}

impl<'a> StepFailures<'a> {
    fn of(obs: &'a [Arc<Obs>]) -> StepFailures<'a> {
        let steps: Vec<&Arc<Obs>> = obs.iter().filter(|o| o.name == "awf.step").collect();
        let failed: Vec<&Arc<Obs>> = steps.iter().copied().filter(|o| o.error).collect();
        StepFailures {
            types: count(failed.iter().map(|o| error_type(o))),
            agents: count(failed.iter().filter_map(|o| o.agent_id.as_deref())),
            failing_steps: count(failed.iter().filter_map(|o| o.step_id.as_deref())),
            providers: count(failed.iter().filter_map(|o| o.provider.as_deref())),
            steps,
            failed,
        }
    }

    /// The failure count as a fact, the breakdown as evidence, the most frequent of each as
    /// signals, and up to five failing traces, newest first.
    fn report(&self, wa: &mut WindowAnalysis, what: &str, observations: usize) {
        let (total, nfail) = (self.steps.len(), self.failed.len());
        wa.facts.push(Fact {
            source: "window".into(),
            interesting: nfail > 0,
            message: format!(
                "{what}: {observations} observations, {nfail} of {total} step attempts failed"
            ),
        });
        for t in self.failed.iter().rev().filter_map(|o| o.trace_id.as_ref()) {
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
                    format!("error types: {:?}", self.types),
                    format!("agents: {:?}", self.agents),
                    format!("steps: {:?}", self.failing_steps),
                    format!("providers: {:?}", self.providers),
                ],
                trace_ids: wa.failing_traces.clone(),
                log_lines: self
                    .failed
                    .iter()
                    .rev()
                    .take(5)
                    .filter_map(|o| o.error_message.clone())
                    .collect(),
            });
        }
        for (signal, top) in [
            ("error_type", &self.types),
            ("agent_id", &self.agents),
            ("step_id", &self.failing_steps),
            ("provider", &self.providers),
        ] {
            if let Some((v, _)) = top.first() {
                wa.signals.insert(signal.into(), v.clone());
            }
        }
        if let Some(t) = wa.failing_traces.first() {
            wa.signals.insert("trace_id".into(), t.clone());
        }
    }
}

/// Execution-level outcome (per-execution and per-workflow alerts): the `workflow.failed`
/// record or the failed (or timed-out) `awf.workflow` span, one entry per execution, oldest
/// first; the latest is the candidate.
fn failed_executions(
    wa: &mut WindowAnalysis,
    obs: &[Arc<Obs>],
    dim: Dim,
    what: &str,
    steps: &StepFailures,
) {
    let failed_runs = failed_runs(obs, dim);
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
    let Some(last) = failed_runs.last() else {
        return;
    };
    let execution = last.execution_id.as_deref().unwrap_or("?");
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
            "{} failed execution(s); latest {execution}: {why}",
            failed_runs.len()
        ),
    });
    let step = steps.failed.last().and_then(|o| o.step_id.clone());
    let why = steps
        .types
        .first()
        .map(|(t, n)| format!(" ({t} ×{n})"))
        .unwrap_or_default();
    wa.candidates.push(workflow_failure(
        &format!(
            "execution {execution} failed{}{why}",
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

/// Failed runs, one per execution, oldest first. About a workflow, an execution already
/// restarted or resumed (AWF names the origin in the new execution's `workflow.started`) is
/// not a candidate again.
fn failed_runs(obs: &[Arc<Obs>], dim: Dim) -> Vec<&Arc<Obs>> {
    let mut failed_runs: Vec<&Arc<Obs>> = Vec::new();
    for o in obs {
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
    failed_runs
}

/// A dominant error type among at least three failures, judged over all attempts and over
/// those since that type's first failure.
fn error_pattern(wa: &mut WindowAnalysis, steps: &StepFailures) {
    let (total, nfail) = (steps.steps.len(), steps.failed.len());
    let Some((ty, n)) = steps.types.first() else {
        return;
    };
    let ratio = if total > 0 {
        nfail as f64 / total as f64
    } else {
        0.0
    };
    // A fault that just started is diluted by the healthy attempts before it: also judge the
    // attempts since its first failure (background noise stays rare there too). The onset is
    // the dominant type's first failure, so that one unrelated failure earlier in the window
    // does not pull the healthy attempts before the fault back in.
    let since_onset = steps
        .steps
        .iter()
        .position(|o| o.error && error_type(o) == ty)
        .map(|i| &steps.steps[i..])
        .unwrap_or(&[]);
    let recent_ratio = if since_onset.is_empty() {
        0.0
    } else {
        since_onset.iter().filter(|o| o.error).count() as f64 / since_onset.len() as f64
    };
    if nfail < 3 || (ratio < 0.2 && recent_ratio < 0.3) {
        return;
    }
    let share = *n as f64 / nfail as f64;
    let base = if nfail >= 10 { 0.9 } else { 0.7 };
    let top = |v: &[(String, usize)]| v.first().map(|a| a.0.clone()).unwrap_or_default();
    let agent = top(&steps.agents);
    let step = top(&steps.failing_steps);
    let provider = top(&steps.providers);
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
        confidence: base * share.max(0.5),
    });
}

/// Cost pattern: recent cost per invocation against the earlier part of the window.
fn cost_pattern(wa: &mut WindowAnalysis, obs: &[Arc<Obs>]) {
    let mut invokes: Vec<(i64, f64)> = obs
        .iter()
        .filter(|o| o.name == "awf.agent.invoke")
        .filter_map(|o| Some((o.time_ms, o.cost_usd?)))
        .collect();
    if invokes.len() < 8 {
        return;
    }
    invokes.sort_by_key(|(t, _)| *t);
    let half = invokes.len() / 2;
    let quarter = (invokes.len() / 4).max(2);
    let mean = |s: &[(i64, f64)]| s.iter().map(|x| x.1).sum::<f64>() / s.len().max(1) as f64;
    let before = mean(&invokes[..half]);
    let recent = mean(&invokes[invokes.len() - quarter..]);
    let earlier_cost = before > 0.0;
    if !earlier_cost {
        return;
    }
    let r = recent / before;
    let surged = r >= 2.0;
    wa.facts.push(Fact {
        source: "window".into(),
        interesting: surged,
        message: format!(
            "cost per invocation: recent ${recent:.5} vs earlier ${before:.5} (×{r:.1})"
        ),
    });
    if !surged {
        return;
    }
    let agent = obs
        .iter()
        .rev()
        .find(|o| o.name == "awf.agent.invoke")
        .and_then(|o| o.agent_id.clone())
        .unwrap_or_default();
    wa.signals.entry("agent_id".into()).or_insert(agent.clone());
    wa.candidates.push(Hypothesis {
        cause: "cost_surge".into(),
        summary: format!("agent {agent} costs ×{r:.1} per invocation (output tokens surged)"),
        confidence: (0.5 + 0.08 * r).min(0.9),
    });
}

/// A failed attempt's error type as the pattern rules count it.
fn error_type(o: &Obs) -> &str {
    o.error_type.as_deref().unwrap_or("unknown")
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

pub(super) fn workflow_failure(summary: &str, confidence: f64) -> Hypothesis {
    Hypothesis {
        cause: "workflow_failure".into(),
        summary: summary.to_owned(),
        confidence,
    }
}
