//! The watcher's own spans and logs, as OTLP items handed to the pipeline consumer it was
//! given: each incident is one trace (`watcher.incident` with children for the
//! investigation, its sources, the action and the verification), and every audit event is a
//! log record in that trace.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use sha2::{Digest, Sha256};
use sluice_core::{Consumer, Item, Signal};
use std::sync::Arc;

pub struct SelfTelemetry {
    emit: Option<Arc<dyn Consumer>>,
    service_name: String,
    component_id: Arc<str>,
}

/// Trace context of one incident.
#[derive(Debug, Clone, Copy)]
pub struct TraceCtx {
    pub trace_id: [u8; 16],
    pub root_span: [u8; 8],
}

impl TraceCtx {
    pub fn for_incident(key: &str) -> TraceCtx {
        let h = Sha256::digest(format!("sluice-watcher\0{key}").as_bytes());
        let mut trace_id = [0u8; 16];
        let mut root_span = [0u8; 8];
        trace_id.copy_from_slice(&h[..16]);
        root_span.copy_from_slice(&h[16..24]);
        TraceCtx {
            trace_id,
            root_span,
        }
    }

    pub fn trace_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// A child span id derived from the trace and a name (stable across restarts).
    pub fn child(&self, name: &str) -> [u8; 8] {
        let h = Sha256::digest([&self.trace_id[..], name.as_bytes()].concat());
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[..8]);
        id
    }
}

/// One finished span.
pub struct SpanData {
    pub name: String,
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub attrs: Vec<(String, String)>,
    pub error: Option<String>,
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    }
}

fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

impl SelfTelemetry {
    pub fn new(
        emit: Option<Arc<dyn Consumer>>,
        service_name: &str,
        component_id: Arc<str>,
    ) -> SelfTelemetry {
        SelfTelemetry {
            emit,
            service_name: service_name.to_owned(),
            component_id,
        }
    }

    fn resource(&self) -> Resource {
        Resource {
            attributes: vec![
                kv("service.name", &self.service_name),
                kv("sluice.component_id", &self.component_id),
            ],
            ..Default::default()
        }
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope {
            name: "sluice-watcher".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }
    }

    pub fn spans(&self, ctx: TraceCtx, spans: Vec<SpanData>) {
        if self.emit.is_none() || spans.is_empty() {
            return;
        }
        let n = spans.len();
        let otlp: Vec<Span> = spans
            .into_iter()
            .map(|s| Span {
                trace_id: ctx.trace_id.to_vec(),
                span_id: s.span_id.to_vec(),
                parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
                name: s.name,
                kind: span::SpanKind::Internal as i32,
                start_time_unix_nano: ms_to_ns(s.start_ms),
                end_time_unix_nano: ms_to_ns(s.end_ms.max(s.start_ms)),
                attributes: s.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                status: Some(match &s.error {
                    Some(m) => Status {
                        code: 2,
                        message: m.clone(),
                    },
                    None => Status {
                        code: 1,
                        message: String::new(),
                    },
                }),
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(Self::scope()),
                    spans: otlp,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        self.send(Item::new(
            Signal::Traces,
            Bytes::from(req.encode_to_vec()),
            u32::try_from(n).unwrap_or(u32::MAX),
        ));
    }

    pub fn log(&self, ctx: Option<TraceCtx>, kind: &str, body: &str, error: bool) {
        if self.emit.is_none() {
            return;
        }
        let now = crate::alert::now_ms();
        let rec = LogRecord {
            time_unix_nano: ms_to_ns(now),
            observed_time_unix_nano: ms_to_ns(now),
            severity_number: if error { 17 } else { 9 },
            severity_text: if error { "ERROR" } else { "INFO" }.into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.to_owned())),
            }),
            attributes: vec![kv("event_type", &format!("watcher.{kind}"))],
            trace_id: ctx.map(|c| c.trace_id.to_vec()).unwrap_or_default(),
            span_id: ctx.map(|c| c.root_span.to_vec()).unwrap_or_default(),
            event_name: format!("watcher.{kind}"),
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(Self::scope()),
                    log_records: vec![rec],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        self.send(Item::new(Signal::Logs, Bytes::from(req.encode_to_vec()), 1));
    }

    fn send(&self, item: Item) {
        let Some(emit) = self.emit.clone() else {
            return;
        };
        if !emit.accepts(item.signal) {
            return;
        }
        let component = self.component_id.clone();
        // Never let the pipeline's backpressure slow an investigation down.
        tokio::spawn(async move {
            let signal = item.signal;
            if let Err(refusal) = emit.consume(item).await {
                metrics::counter!("sluice_watcher_self_telemetry_dropped_total",
                    "component_id" => component.to_string(), "signal" => signal.as_str(),
                    "reason" => refusal.reason())
                .increment(1);
            }
        });
    }
}
