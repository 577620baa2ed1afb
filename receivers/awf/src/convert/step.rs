//! Step events: the `awf.step` span of each attempt, `awf_step_duration_*`, retries and
//! fallbacks.

use super::spans::{SpanParts, make_span, push_common, push_free};
use super::{
    At, Converter, KeyKind, OpenStep, Pending, Restore, duration_start, error_message, exemplar,
    label, span_key,
};
use crate::aggregate::{AwfMetric, MetricUpdate};
use crate::attrs::{kv_i64, kv_str};
use crate::event::{EventKind, WorkflowEvent};
use crate::ids::{self, SpanId};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span;

impl Converter {
    pub(super) fn on_step_started(&mut self, p: &mut Pending, at: At) -> SpanId {
        let At { exec, e, ts, now } = at;
        let Some(step) = e.step_id.as_deref() else {
            return ids::workflow_span_id(exec);
        };
        let attempt = e
            .attempt
            .unwrap_or_else(|| self.unfinished_attempt(exec, step));
        let span_id = ids::step_span_id(exec, step, attempt);
        let Some(state) = self.executions.get_mut(exec) else {
            return span_id;
        };
        let latest = state.attempts.entry(step.to_owned()).or_insert(attempt);
        *latest = (*latest).max(attempt);
        let workflow_id = state.workflow_id.clone();
        let superseded = match state.steps.get(step) {
            Some(open) if open.attempt == attempt => {
                // A repeated start of the same attempt keeps the earliest start.
                if let Some(open) = state.steps.get_mut(step) {
                    open.start = open.start.min(ts);
                }
                return span_id;
            }
            Some(open) if open.attempt > attempt => return span_id, // a late, stale start
            Some(_) => state.steps.remove(step),
            None => None,
        };
        state.steps.insert(
            step.to_owned(),
            OpenStep {
                attempt,
                start: e.started_at.unwrap_or(ts),
                opened_at: now,
                agent_id: e.agent_id.clone(),
                framework: e.framework.clone(),
                provider: e.provider.clone(),
                events: Vec::new(),
            },
        );
        if let Some(old) = superseded {
            p.restore
                .push(Restore::Step(exec.to_owned(), step.to_owned(), old.clone()));
            self.close_step(
                p,
                exec,
                step,
                old,
                workflow_id,
                ts,
                StepEnd::Failed("superseded by a newer attempt".into()),
            );
        }
        span_id
    }

    /// The attempt a start without an explicit attempt begins: a start after that attempt's
    /// span was emitted (and that is not a replay: replays were dropped by event key) is a
    /// new one.
    fn unfinished_attempt(&self, exec: &str, step: &str) -> u32 {
        let mut a = self
            .executions
            .get(exec)
            .and_then(|s| s.attempts.get(step).copied())
            .unwrap_or(1);
        for _ in 0..1000 {
            let k = span_key(&ids::step_span_id(exec, step, a));
            if !self.done.contains(k) && !self.in_flight.contains(&k) {
                break;
            }
            a = a.saturating_add(1);
        }
        a
    }

    pub(super) fn on_step_end(&mut self, p: &mut Pending, at: At) -> SpanId {
        let At { exec, e, ts, .. } = at;
        let Some((step, attempt)) = self.step_attempt(exec, e) else {
            return ids::workflow_span_id(exec);
        };
        let span_id = ids::step_span_id(exec, step, attempt);
        let state = self.executions.get_mut(exec);
        let workflow_id = state
            .as_ref()
            .and_then(|s| s.workflow_id.clone())
            .or_else(|| e.workflow_id.clone());
        let open = state.and_then(|s| match s.steps.get(step) {
            Some(o) if o.attempt == attempt => s.steps.remove(step),
            _ => None,
        });
        if let Some(o) = &open {
            p.restore
                .push(Restore::Step(exec.to_owned(), step.to_owned(), o.clone()));
        }
        let open = open.unwrap_or_else(|| OpenStep {
            attempt,
            start: e.started_at.or_else(|| duration_start(e, ts)).unwrap_or(ts),
            opened_at: 0,
            agent_id: None,
            framework: None,
            provider: None,
            events: Vec::new(),
        });
        let end = if e.kind == EventKind::StepFailed {
            StepEnd::Failed(error_message(e, "step failed"))
        } else {
            StepEnd::Completed
        };
        if !self.close_step_with(p, exec, step, open, workflow_id, ts, end, Some(e)) {
            p.stats.replayed += 1;
        }
        span_id
    }

    pub(super) fn on_step_retried(&mut self, p: &mut Pending, at: At) -> SpanId {
        let At { exec, e, ts, .. } = at;
        let Some(step) = e.step_id.as_deref() else {
            return ids::workflow_span_id(exec);
        };
        let previous = self
            .executions
            .get(exec)
            .and_then(|s| s.attempts.get(step).copied())
            .unwrap_or(1);
        let new_attempt = e
            .attempt
            .or_else(|| {
                e.metrics
                    .as_ref()
                    .and_then(|m| m.retry_count)
                    .map(|r| r.saturating_add(1))
            })
            .unwrap_or(previous.saturating_add(1));
        let span_id = ids::step_span_id(exec, step, new_attempt);
        let marker = ids::key("awf.retry", &[exec, step, &new_attempt.to_string()]);
        if !self.claim(p, KeyKind::Identity, marker) {
            p.stats.replayed += 1;
            return span_id;
        }
        let mut agent_id = e.agent_id.clone();
        let mut superseded = None;
        let mut workflow_id = None;
        if let Some(state) = self.executions.get_mut(exec) {
            let latest = state.attempts.entry(step.to_owned()).or_insert(new_attempt);
            *latest = (*latest).max(new_attempt);
            workflow_id.clone_from(&state.workflow_id);
            if let Some(open) = state.steps.get(step) {
                if agent_id.is_none() {
                    agent_id.clone_from(&open.agent_id);
                }
                if open.attempt < new_attempt {
                    superseded = state.steps.remove(step);
                }
            }
        }
        if let Some(old) = superseded {
            p.restore
                .push(Restore::Step(exec.to_owned(), step.to_owned(), old.clone()));
            let msg = error_message(e, "step attempt retried");
            self.close_step(p, exec, step, old, workflow_id, ts, StepEnd::Failed(msg));
        }
        p.updates.push(MetricUpdate {
            metric: AwfMetric::Retries,
            label_values: vec![step.to_owned(), label(&agent_id)],
            value: 1.0,
            exemplar: Some(exemplar(exec, span_id, ts)),
        });
        span_id
    }

    pub(super) fn on_step_fallback(&mut self, p: &mut Pending, at: At) -> SpanId {
        let At { exec, e, ts, .. } = at;
        let Some((step, attempt)) = self.step_attempt(exec, e) else {
            return ids::workflow_span_id(exec);
        };
        let span_id = ids::step_span_id(exec, step, attempt);
        let from = e.agent_id.as_deref().unwrap_or("");
        let to = e.fallback_agent_id.as_deref().unwrap_or("");
        let marker = ids::key(
            "awf.fallback",
            &[exec, step, &attempt.to_string(), from, to],
        );
        if !self.claim(p, KeyKind::Identity, marker) {
            p.stats.replayed += 1;
            return span_id;
        }
        if let Some(open) = self
            .executions
            .get_mut(exec)
            .and_then(|s| s.steps.get_mut(step))
            .filter(|o| o.attempt == attempt)
        {
            let mut attributes = vec![kv_str("agent_id", from)];
            if !to.is_empty() {
                attributes.push(kv_str("fallback_agent_id", to));
            }
            open.events.push(span::Event {
                time_unix_nano: ts,
                name: "awf.fallback".to_owned(),
                attributes,
                dropped_attributes_count: 0,
            });
        }
        p.updates.push(MetricUpdate {
            metric: AwfMetric::Fallbacks,
            label_values: vec![step.to_owned()],
            value: 1.0,
            exemplar: Some(exemplar(exec, span_id, ts)),
        });
        span_id
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn close_step(
        &mut self,
        p: &mut Pending,
        exec: &str,
        step: &str,
        open: OpenStep,
        workflow_id: Option<String>,
        end: u64,
        how: StepEnd,
    ) -> bool {
        self.close_step_with(p, exec, step, open, workflow_id, end, how, None)
    }

    /// Emits the `awf.step` span of `open` and its duration observation, unless that span
    /// was already emitted. `e` is the end event, when there is one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn close_step_with(
        &mut self,
        p: &mut Pending,
        exec: &str,
        step: &str,
        open: OpenStep,
        workflow_id: Option<String>,
        end: u64,
        how: StepEnd,
        e: Option<&WorkflowEvent>,
    ) -> bool {
        let span_id = ids::step_span_id(exec, step, open.attempt);
        if !self.claim(p, KeyKind::Identity, span_key(&span_id)) {
            return false;
        }
        let end = end.max(open.start);
        let agent_id = reported(e, |e| &e.agent_id, &open.agent_id);
        let provider = reported(e, |e| &e.provider, &open.provider);
        let mut attributes = step_attributes(exec, step, &open, workflow_id.as_deref(), &how, e);
        if let Some(e) = e {
            p.stats.dropped_attributes += u64::from(push_free(&mut attributes, e));
        }
        let duration_ms = e
            .and_then(WorkflowEvent::execution_time_ms)
            .unwrap_or_else(|| (end - open.start) as f64 / 1e6);
        p.spans.push(make_span(SpanParts {
            trace_id: ids::trace_id(exec),
            span_id,
            parent: Some(ids::workflow_span_id(exec)),
            name: "awf.step",
            kind: span::SpanKind::Internal,
            start: open.start,
            end,
            attributes,
            error: how.error(),
            events: open.events,
        }));
        let agent_label = label(&agent_id);
        p.updates.push(MetricUpdate {
            metric: AwfMetric::StepDuration,
            label_values: vec![
                step.to_owned(),
                agent_label.clone(),
                how.status().to_owned(),
            ],
            value: duration_ms,
            exemplar: Some(exemplar(exec, span_id, end)),
        });
        // Tokens and cost come from `agent.invoked` when the step had one; a step end event is
        // their source only for emitters that do not send invocations.
        if let Some(e) = e {
            let invoked = self
                .executions
                .get(exec)
                .is_some_and(|s| s.invoked.contains(&(step.to_owned(), open.attempt)));
            if !invoked {
                self.push_usage(p, exec, span_id, end, &agent_label, provider.as_deref(), e);
            }
        }
        true
    }
}

/// What the end event says of a field, else what the step's start said.
fn reported(
    end_event: Option<&WorkflowEvent>,
    field: impl Fn(&WorkflowEvent) -> &Option<String>,
    at_start: &Option<String>,
) -> Option<String> {
    end_event
        .and_then(|e| field(e).clone())
        .or_else(|| at_start.clone())
}

/// The known attributes of a step span: the end event's fields when there is one, else the
/// step's identity; agent, framework and provider fall back to what the start said.
fn step_attributes(
    exec: &str,
    step: &str,
    open: &OpenStep,
    workflow_id: Option<&str>,
    how: &StepEnd,
    e: Option<&WorkflowEvent>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::new();
    match e {
        Some(e) => push_common(&mut attributes, e, workflow_id, Some(open.attempt)),
        None => {
            attributes.push(kv_str("execution_id", exec));
            if let Some(w) = workflow_id {
                attributes.push(kv_str("workflow_id", w));
            }
            attributes.push(kv_str("step_id", step));
            attributes.push(kv_i64("attempt", i64::from(open.attempt)));
        }
    }
    let has = |attrs: &Vec<KeyValue>, k: &str| attrs.iter().any(|a| a.key == k);
    for (k, v) in [
        ("agent_id", reported(e, |e| &e.agent_id, &open.agent_id)),
        ("framework", reported(e, |e| &e.framework, &open.framework)),
        ("provider", reported(e, |e| &e.provider, &open.provider)),
    ] {
        if let Some(v) = v
            && !has(&attributes, k)
        {
            attributes.push(kv_str(k, v.as_str()));
        }
    }
    if !has(&attributes, "status") {
        attributes.push(kv_str("status", how.status()));
    }
    attributes
}

/// How a step attempt ended.
#[derive(Debug, Clone)]
pub(super) enum StepEnd {
    Completed,
    Failed(String),
    Timeout(String),
    /// The workflow ended while the step was open.
    Aborted,
}

impl StepEnd {
    fn status(&self) -> &'static str {
        match self {
            StepEnd::Completed => "completed",
            StepEnd::Failed(_) => "failed",
            StepEnd::Timeout(_) => "timeout",
            StepEnd::Aborted => "aborted",
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            StepEnd::Completed => None,
            StepEnd::Failed(m) | StepEnd::Timeout(m) => Some(m.clone()),
            StepEnd::Aborted => Some("the workflow ended before the step did".to_owned()),
        }
    }
}
