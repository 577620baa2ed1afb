//! Building OTLP spans and the attributes every span and log record carries.

use crate::attrs::{self, kv_f64, kv_i64, kv_str};
use crate::event::WorkflowEvent;
use crate::ids::{SpanId, TraceId};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};

/// What differs between the converter's spans; [`make_span`] adds the status and the
/// `exception` event of a failed one.
pub(super) struct SpanParts {
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    pub(super) parent: Option<SpanId>,
    pub(super) name: &'static str,
    pub(super) kind: span::SpanKind,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) attributes: Vec<KeyValue>,
    pub(super) error: Option<String>,
    pub(super) events: Vec<span::Event>,
}

pub(super) fn make_span(s: SpanParts) -> Span {
    let mut events = s.events;
    let status = match &s.error {
        Some(msg) => {
            // OpenTelemetry's exception event, so backends show the error on the span.
            events.push(span::Event {
                time_unix_nano: s.end,
                name: "exception".to_owned(),
                attributes: vec![kv_str("exception.message", msg.as_str())],
                dropped_attributes_count: 0,
            });
            Status {
                message: msg.clone(),
                code: status::StatusCode::Error as i32,
            }
        }
        None => Status {
            message: String::new(),
            code: status::StatusCode::Ok as i32,
        },
    };
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name.to_owned(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start,
        end_time_unix_nano: s.end.max(s.start),
        attributes: s.attributes,
        events,
        status: Some(status),
        flags: 0x100, // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK set, parent is local
        ..Default::default()
    }
}

/// The known fields of an event as attributes (names as in `docs/awf-events.md` §1: `workflow_id`, `execution_id`,
/// `step_id`, `agent_id`, `framework`, `input_tokens`, `output_tokens`, …).
pub(super) fn push_common(
    out: &mut Vec<KeyValue>,
    e: &WorkflowEvent,
    workflow_id: Option<&str>,
    attempt: Option<u32>,
) {
    if let Some(x) = &e.execution_id {
        out.push(kv_str("execution_id", x.as_str()));
    }
    if let Some(w) = workflow_id {
        out.push(kv_str("workflow_id", w));
    }
    for (k, v) in [
        ("step_id", &e.step_id),
        ("agent_id", &e.agent_id),
        ("framework", &e.framework),
        ("provider", &e.provider),
        ("status", &e.status),
        ("fallback_agent_id", &e.fallback_agent_id),
    ] {
        if let Some(v) = v {
            out.push(kv_str(k, v.as_str()));
        }
    }
    if let Some(a) = attempt.or(e.attempt) {
        out.push(kv_i64("attempt", i64::from(a)));
    }
    if let Some(err) = &e.error {
        out.push(kv_str("error.message", err.message.as_str()));
        if let Some(t) = &err.kind {
            out.push(kv_str("error.type", t.as_str()));
        }
    }
    if let Some(m) = &e.metrics {
        if let Some(ms) = m.execution_time_ms {
            out.push(kv_f64("execution_time_ms", ms));
        }
        if let Some(t) = m.token_usage {
            out.push(kv_i64("input_tokens", clamp_i64(t.input_tokens)));
            out.push(kv_i64("output_tokens", clamp_i64(t.output_tokens)));
        }
        if let Some(c) = m.cost_usd {
            out.push(kv_f64("cost_usd", c));
        }
        if let Some(r) = m.retry_count {
            out.push(kv_i64("retry_count", i64::from(r)));
        }
    }
}

/// Free-form fields, never overriding a known attribute.
pub(super) fn push_free(out: &mut Vec<KeyValue>, e: &WorkflowEvent) -> u32 {
    if e.attributes.is_empty() {
        return 0;
    }
    // Known attributes are few (~15): a scan beats building a set per record.
    let known = out.len();
    let taken: Vec<String> = out[..known].iter().map(|k| k.key.clone()).collect();
    attrs::append_json(out, &e.attributes, &|k| taken.iter().any(|t| t == k))
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
