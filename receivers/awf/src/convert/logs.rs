//! The log record every event becomes.

use super::spans::{push_common, push_free};
use super::{Converter, Pending};
use crate::attrs::{self, kv_str};
use crate::event::{EventKind, WorkflowEvent};
use crate::ids::{SpanId, TraceId};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

impl Converter {
    pub(super) fn log_record(
        &self,
        p: &mut Pending,
        e: &WorkflowEvent,
        ts: u64,
        now: u64,
        ctx: Option<(TraceId, SpanId)>,
    ) -> LogRecord {
        let (severity, text) = if e.is_failure() {
            (SeverityNumber::Error, "ERROR")
        } else if matches!(
            e.kind,
            EventKind::StepRetried | EventKind::StepFallback | EventKind::WorkflowCancelled
        ) {
            (SeverityNumber::Warn, "WARN")
        } else {
            (SeverityNumber::Info, "INFO")
        };
        let mut attributes = vec![kv_str("event_type", e.kind.as_str())];
        if let Some(id) = &e.id {
            attributes.push(kv_str("event_id", id.as_str()));
        }
        let workflow_id = e.workflow_id.clone().or_else(|| {
            e.execution_id
                .as_ref()
                .and_then(|x| self.executions.get(x))
                .and_then(|s| s.workflow_id.clone())
        });
        push_common(&mut attributes, e, workflow_id.as_deref(), e.attempt);
        p.stats.dropped_attributes += u64::from(push_free(&mut attributes, e));
        let (trace_id, span_id) = ctx
            .map(|(t, s)| (t.to_vec(), s.to_vec()))
            .unwrap_or_default();
        LogRecord {
            time_unix_nano: ts,
            observed_time_unix_nano: now,
            severity_number: severity as i32,
            severity_text: text.to_owned(),
            body: Some(attrs::any_str(summary(e))),
            attributes,
            flags: if trace_id.is_empty() { 0 } else { 1 },
            trace_id,
            span_id,
            event_name: e.kind.as_str().to_owned(),
            ..Default::default()
        }
    }
}

/// A one-line, human-readable log body.
fn summary(e: &WorkflowEvent) -> String {
    use std::fmt::Write;
    let mut s = e.kind.as_str().to_owned();
    for (k, v) in [
        ("workflow", &e.workflow_id),
        ("execution", &e.execution_id),
        ("step", &e.step_id),
        ("agent", &e.agent_id),
        ("to", &e.fallback_agent_id),
        ("status", &e.status),
    ] {
        if let Some(v) = v {
            let _ = write!(s, " {k}={v}");
        }
    }
    if let Some(a) = e.attempt {
        let _ = write!(s, " attempt={a}");
    }
    if let Some(ms) = e.execution_time_ms() {
        let _ = write!(s, " duration_ms={ms}");
    }
    if let Some(err) = &e.error {
        let _ = write!(s, ": {}", err.message);
    }
    s
}
