//! The output of one conversion ([`Pending`]) and its encoding as OTLP request items.

use super::ConvertStats;
use super::ExecState;
use super::OpenStep;
use crate::aggregate::MetricUpdate;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sluice_core::{Item, Signal};
use std::sync::Arc;

/// An OTLP export request holding `$records` under `$resource` and this receiver's scope:
/// the nesting all three signals share, with their own type and field names.
macro_rules! export_request {
    ($request:ident { $resources:ident: $resource_ty:ident { $scopes:ident: $scope_ty:ident { $records:ident } } }, $resource:expr) => {
        $request {
            $resources: vec![$resource_ty {
                resource: Some(Resource::clone($resource)),
                $scopes: vec![$scope_ty {
                    scope: Some($crate::convert::pending::scope()),
                    $records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    };
}
pub(super) use export_request;

/// Instrumentation scope of everything the converter produces.
pub const SCOPE_NAME: &str = "sluice.receiver.awf";

/// Converter state a conversion consumed, put back by [`super::Converter::abandon`].
#[derive(Debug)]
pub(super) enum Restore {
    Exec(String, Box<ExecState>),
    Step(String, String, OpenStep),
}

/// Which de-duplication window a claimed key goes to on commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    /// An event (by id or content).
    Event,
    /// An emitted span or a counted retry/fallback.
    Identity,
}

/// Output of one conversion, to deliver and then [`super::Converter::commit`] or
/// [`super::Converter::abandon`].
#[derive(Debug)]
pub struct Pending {
    pub spans: Vec<Span>,
    pub logs: Vec<LogRecord>,
    pub stats: ConvertStats,
    pub(super) updates: Vec<MetricUpdate>,
    pub(super) keys: Vec<(KeyKind, u64)>,
    pub(super) restore: Vec<Restore>,
    pub(super) resource: Arc<Resource>,
}

impl Pending {
    pub(super) fn new(resource: Arc<Resource>) -> Pending {
        Pending {
            spans: Vec::new(),
            logs: Vec::new(),
            stats: ConvertStats::default(),
            updates: Vec::new(),
            keys: Vec::new(),
            restore: Vec::new(),
            resource,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.logs.is_empty() && self.updates.is_empty()
    }

    /// Metric observations this conversion will add on commit.
    pub fn metric_updates(&self) -> &[MetricUpdate] {
        &self.updates
    }

    /// The spans as one `ExportTraceServiceRequest` item, if any.
    pub fn traces_item(&self) -> Option<Item> {
        encode_item(Signal::Traces, &self.spans, |spans| {
            export_request!(
                ExportTraceServiceRequest {
                    resource_spans: ResourceSpans {
                        scope_spans: ScopeSpans { spans }
                    }
                },
                &self.resource
            )
        })
    }

    /// The log records as one `ExportLogsServiceRequest` item, if any.
    pub fn logs_item(&self) -> Option<Item> {
        encode_item(Signal::Logs, &self.logs, |log_records| {
            export_request!(
                ExportLogsServiceRequest {
                    resource_logs: ResourceLogs {
                        scope_logs: ScopeLogs { log_records }
                    }
                },
                &self.resource
            )
        })
    }
}

/// `records` wrapped by `request` and encoded as one item counting `records`; none when empty.
fn encode_item<T: Clone, R: Message>(
    signal: Signal,
    records: &[T],
    request: impl FnOnce(Vec<T>) -> R,
) -> Option<Item> {
    if records.is_empty() {
        return None;
    }
    let req = request(records.to_vec());
    Some(request_item(signal, &req, records.len()))
}

/// An encoded export request as an item of `count` records.
pub(super) fn request_item(signal: Signal, req: &impl Message, count: usize) -> Item {
    Item::new(
        signal,
        Bytes::from(req.encode_to_vec()),
        u32::try_from(count).unwrap_or(u32::MAX),
    )
}

pub(super) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}
