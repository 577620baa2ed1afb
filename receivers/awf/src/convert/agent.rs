//! `agent.invoked`: the `awf.agent.invoke` span and the token and cost counters.

use super::spans::{SpanParts, make_span, push_common, push_free};
use super::{
    At, Converter, KeyKind, Pending, duration_start, error_message, exemplar, label, span_key,
};
use crate::aggregate::{AwfMetric, MetricUpdate};
use crate::attrs::{kv_i64, kv_str};
use crate::event::WorkflowEvent;
use crate::ids::{self, SpanId};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span;

/// An invocation's span id, from its step attempt, agent and `invocation_id` attribute.
fn invocation_span_id(exec: &str, step: &str, attempt: u32, e: &WorkflowEvent) -> SpanId {
    let agent = e.agent_id.as_deref().unwrap_or("");
    let invocation = match e.attributes.get("invocation_id") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    ids::agent_span_id(exec, step, attempt, agent, &invocation)
}

impl Converter {
    pub(super) fn on_agent_invoked(&mut self, p: &mut Pending, at: At) -> SpanId {
        let At { exec, e, ts, .. } = at;
        let step = e.step_id.as_deref().unwrap_or("");
        let attempt = if step.is_empty() {
            e.attempt.unwrap_or(1)
        } else {
            e.attempt
                .unwrap_or_else(|| self.current_attempt(exec, step))
        };
        let span_id = invocation_span_id(exec, step, attempt, e);
        if !self.claim(p, KeyKind::Identity, span_key(&span_id)) {
            p.stats.replayed += 1;
            return span_id;
        }
        let parent = if step.is_empty() {
            ids::workflow_span_id(exec)
        } else {
            ids::step_span_id(exec, step, attempt)
        };
        let (mut attributes, provider) = self.invocation_attributes(exec, step, attempt, e);
        p.stats.dropped_attributes += u64::from(push_free(&mut attributes, e));
        if !step.is_empty()
            && let Some(state) = self.executions.get_mut(exec)
        {
            state.invoked.insert((step.to_owned(), attempt));
        }
        let start = e.started_at.or_else(|| duration_start(e, ts)).unwrap_or(ts);
        let error = e
            .is_failure()
            .then(|| error_message(e, "agent invocation failed"));
        p.spans.push(make_span(SpanParts {
            trace_id: ids::trace_id(exec),
            span_id,
            parent: Some(parent),
            name: "awf.agent.invoke",
            kind: span::SpanKind::Client,
            start,
            end: ts.max(start),
            attributes,
            error,
            events: Vec::new(),
        }));
        let agent_label = label(&e.agent_id);
        self.push_usage(p, exec, span_id, ts, &agent_label, provider.as_deref(), e);
        span_id
    }

    /// The known attributes of an invoke span, and its provider. Provider and framework
    /// default to what the step's start said.
    fn invocation_attributes(
        &self,
        exec: &str,
        step: &str,
        attempt: u32,
        e: &WorkflowEvent,
    ) -> (Vec<KeyValue>, Option<String>) {
        let state = self.executions.get(exec);
        let open = state
            .and_then(|s| s.steps.get(step))
            .filter(|o| o.attempt == attempt);
        let provider = e
            .provider
            .clone()
            .or_else(|| open.and_then(|o| o.provider.clone()));
        let framework = e
            .framework
            .clone()
            .or_else(|| open.and_then(|o| o.framework.clone()));
        let workflow_id = e
            .workflow_id
            .clone()
            .or_else(|| state.and_then(|s| s.workflow_id.clone()));
        let mut attributes = Vec::new();
        push_common(&mut attributes, e, workflow_id.as_deref(), Some(attempt));
        if e.provider.is_none()
            && let Some(pv) = &provider
        {
            attributes.push(kv_str("provider", pv.as_str()));
        }
        if e.framework.is_none()
            && let Some(fw) = &framework
        {
            attributes.push(kv_str("framework", fw.as_str()));
        }
        if e.tokens().is_none() {
            // Every invoke span carries token counts (`docs/awf-events.md` §3, Spans); absent means none reported.
            attributes.push(kv_i64("input_tokens", 0));
            attributes.push(kv_i64("output_tokens", 0));
        }
        (attributes, provider)
    }

    /// Token and cost counters of one event.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push_usage(
        &self,
        p: &mut Pending,
        exec: &str,
        span_id: SpanId,
        ts: u64,
        agent: &str,
        provider: Option<&str>,
        e: &WorkflowEvent,
    ) {
        if let Some(t) = e.tokens() {
            for (direction, n) in [("input", t.input_tokens), ("output", t.output_tokens)] {
                if n > 0 {
                    p.updates.push(MetricUpdate {
                        metric: AwfMetric::Tokens,
                        label_values: vec![agent.to_owned(), direction.to_owned()],
                        value: n as f64,
                        exemplar: Some(exemplar(exec, span_id, ts)),
                    });
                }
            }
        }
        if let Some(c) = e.cost_usd().filter(|c| *c > 0.0) {
            p.updates.push(MetricUpdate {
                metric: AwfMetric::Cost,
                label_values: vec![agent.to_owned(), provider.unwrap_or("unknown").to_owned()],
                value: c,
                exemplar: Some(exemplar(exec, span_id, ts)),
            });
        }
    }
}
