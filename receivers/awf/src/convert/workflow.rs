//! Workflow events: the `awf.workflow` root span and `awf_workflow_total`.

use super::span_key;
use super::spans::{SpanParts, make_span, push_common, push_free};
use super::step::StepEnd;
use super::{
    At, Converter, KeyKind, Pending, Restore, duration_start, error_message, exemplar, label,
};
use crate::aggregate::{AwfMetric, MetricUpdate};
use crate::attrs::kv_str;
use crate::event::{EventKind, WorkflowEvent};
use crate::ids::{self, SpanId};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, span};

impl Converter {
    pub(super) fn on_workflow_started(&mut self, exec: &str, e: &WorkflowEvent, ts: u64) -> SpanId {
        if let Some(state) = self.executions.get_mut(exec) {
            let start = e.started_at.unwrap_or(ts);
            state.workflow_start = Some(state.workflow_start.map_or(start, |s| s.min(start)));
            if let Some(w) = &e.workflow_id {
                state.workflow_id = Some(w.clone());
            }
        }
        ids::workflow_span_id(exec)
    }

    pub(super) fn on_workflow_end(&mut self, p: &mut Pending, at: At) -> SpanId {
        let At { exec, e, ts, .. } = at;
        let span_id = ids::workflow_span_id(exec);
        if !self.claim(p, KeyKind::Identity, span_key(&span_id)) {
            p.stats.replayed += 1;
            return span_id;
        }
        let mut state = self.executions.remove(exec).unwrap_or_default();
        p.restore
            .push(Restore::Exec(exec.to_owned(), Box::new(state.clone())));
        let workflow_id = e.workflow_id.clone().or_else(|| state.workflow_id.clone());
        // Steps still open when the workflow ended will never get their end event.
        for (step, open) in std::mem::take(&mut state.steps) {
            self.close_step(
                p,
                exec,
                &step,
                open,
                workflow_id.clone(),
                ts,
                StepEnd::Aborted,
            );
        }
        let start = e
            .started_at
            .or(state.workflow_start)
            .or_else(|| duration_start(e, ts))
            .unwrap_or(ts);
        let status = match e.kind {
            EventKind::WorkflowCompleted => "completed",
            EventKind::WorkflowCancelled => "cancelled",
            _ => "failed",
        };
        let mut attributes = Vec::new();
        push_common(&mut attributes, e, workflow_id.as_deref(), None);
        if e.status.is_none() {
            attributes.push(kv_str("status", status));
        }
        p.stats.dropped_attributes += u64::from(push_free(&mut attributes, e));
        let error = match e.kind {
            EventKind::WorkflowFailed => Some(error_message(e, "workflow failed")),
            _ => e.error.as_ref().map(|err| err.message.clone()),
        };
        p.spans
            .push(workflow_span(exec, start, ts, attributes, error));
        p.updates
            .push(workflow_count(exec, &workflow_id, status, ts));
        span_id
    }
}

/// The `awf.workflow` span of `exec`, from `start` to `end`.
pub(super) fn workflow_span(
    exec: &str,
    start: u64,
    end: u64,
    attributes: Vec<KeyValue>,
    error: Option<String>,
) -> Span {
    make_span(SpanParts {
        trace_id: ids::trace_id(exec),
        span_id: ids::workflow_span_id(exec),
        parent: None,
        name: "awf.workflow",
        kind: span::SpanKind::Internal,
        start,
        end: end.max(start),
        attributes,
        error,
        events: Vec::new(),
    })
}

/// One `awf_workflow_total{workflow_id, status}` observation, ended at `end`.
pub(super) fn workflow_count(
    exec: &str,
    workflow_id: &Option<String>,
    status: &str,
    end: u64,
) -> MetricUpdate {
    MetricUpdate {
        metric: AwfMetric::Workflows,
        label_values: vec![label(workflow_id), status.to_owned()],
        value: 1.0,
        exemplar: Some(exemplar(exec, ids::workflow_span_id(exec), end)),
    }
}
