//! The decoded requests the server records, and their item counts.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use sluice_core::Signal;
use thiserror::Error;

/// Why a body is not an `Export*ServiceRequest`; the text is what the answer says.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("unmarshalling request: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("unmarshalling JSON request: {0}")]
    Json(#[from] serde_json::Error),
}

/// A decoded `Export*ServiceRequest`.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Payload {
    pub(super) fn decode_protobuf(signal: Signal, body: &[u8]) -> Result<Payload, DecodeError> {
        let r = match signal {
            Signal::Traces => ExportTraceServiceRequest::decode(body).map(Payload::Traces),
            Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(Payload::Metrics),
            Signal::Logs => ExportLogsServiceRequest::decode(body).map(Payload::Logs),
        };
        Ok(r?)
    }

    pub(super) fn decode_json(signal: Signal, body: &[u8]) -> Result<Payload, DecodeError> {
        let r = match signal {
            Signal::Traces => serde_json::from_slice(body).map(Payload::Traces),
            Signal::Metrics => serde_json::from_slice(body).map(Payload::Metrics),
            Signal::Logs => serde_json::from_slice(body).map(Payload::Logs),
        };
        Ok(r?)
    }

    pub fn traces(&self) -> Option<&ExportTraceServiceRequest> {
        match self {
            Payload::Traces(r) => Some(r),
            _ => None,
        }
    }

    pub fn metrics(&self) -> Option<&ExportMetricsServiceRequest> {
        match self {
            Payload::Metrics(r) => Some(r),
            _ => None,
        }
    }

    pub fn logs(&self) -> Option<&ExportLogsServiceRequest> {
        match self {
            Payload::Logs(r) => Some(r),
            _ => None,
        }
    }

    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
        }
    }

    /// Spans, data points or log records.
    pub fn item_count(&self) -> usize {
        match self {
            Payload::Traces(r) => spans_of(r).count(),
            Payload::Metrics(r) => metrics_of(r).map(data_point_count).sum(),
            Payload::Logs(r) => log_records_of(r).count(),
        }
    }
}

pub(super) fn spans_of(r: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    r.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
}

pub(super) fn metrics_of(r: &ExportMetricsServiceRequest) -> impl Iterator<Item = &Metric> {
    r.resource_metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics.iter().flat_map(|sm| sm.metrics.iter()))
}

pub(super) fn log_records_of(r: &ExportLogsServiceRequest) -> impl Iterator<Item = &LogRecord> {
    r.resource_logs
        .iter()
        .flat_map(|rl| rl.scope_logs.iter().flat_map(|sl| sl.log_records.iter()))
}

/// Data points in one metric, counted as the Collector does.
pub fn data_point_count(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(e)) => e.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

pub(super) fn has_zero_id(payload: &Payload) -> bool {
    let zero = |id: &[u8]| id.iter().all(|&b| b == 0);
    payload
        .traces()
        .is_some_and(|r| spans_of(r).any(|s| zero(&s.span_id) || zero(&s.trace_id)))
}
