//! OTLP payload builders shared by exporter integration tests (OTLP, debug).

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use sluice_core::{Batch, Item, Signal};
use std::sync::Arc;

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), int_kv("host.cpus", 2)],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "sluice-test".into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

/// `spans` spans of one trace for `service`; ids derive from `seed` so every call differs.
pub fn traces(service: &str, seed: u8, spans: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: vec![seed; 16],
                        span_id: [seed, i as u8, 0xab, 0xcd, 1, 2, 3, 4].to_vec(),
                        parent_span_id: if i == 0 {
                            Vec::new()
                        } else {
                            [seed, 0, 0xab, 0xcd, 1, 2, 3, 4].to_vec()
                        },
                        name: format!("{service}/op-{i}"),
                        kind: span::SpanKind::Server as i32,
                        start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        end_time_unix_nano: 1_700_000_000_500_000_000 + i as u64,
                        attributes: vec![kv("http.route", "/api/items"), int_kv("index", i as i64)],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A gauge with `points` points and a cumulative histogram with one point.
pub fn metrics(service: &str, points: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    Metric {
                        name: "queue_depth".into(),
                        unit: "1".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: (0..points)
                                .map(|i| NumberDataPoint {
                                    attributes: vec![kv("queue", &format!("q{i}"))],
                                    time_unix_nano: 1_700_000_000_000_000_000,
                                    value: Some(number_data_point::Value::AsDouble(i as f64 + 0.5)),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "latency".into(),
                        unit: "s".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            data_points: vec![HistogramDataPoint {
                                count: 3,
                                sum: Some(1.5),
                                bucket_counts: vec![1, 2, 0],
                                explicit_bounds: vec![0.1, 1.0],
                                time_unix_nano: 1_700_000_000_000_000_000,
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn logs(service: &str, records: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: (0..records)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        attributes: vec![kv("logger", "main")],
                        trace_id: vec![7; 16],
                        span_id: vec![8; 8],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn trace_item(req: &ExportTraceServiceRequest) -> Item {
    let count = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u32)
        .sum();
    Item::new(Signal::Traces, Bytes::from(req.encode_to_vec()), count)
}

pub fn metric_item(req: &ExportMetricsServiceRequest, points: u32) -> Item {
    Item::new(Signal::Metrics, Bytes::from(req.encode_to_vec()), points)
}

pub fn log_item(req: &ExportLogsServiceRequest) -> Item {
    let count = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u32)
        .sum();
    Item::new(Signal::Logs, Bytes::from(req.encode_to_vec()), count)
}

pub fn batch(signal: Signal, tenant: Option<&str>, items: Vec<Item>) -> Batch {
    let tenant: Option<Arc<str>> = tenant.map(Arc::from);
    Batch {
        signal,
        tenant: tenant.clone(),
        items: items
            .into_iter()
            .map(|i| i.with_tenant(tenant.clone()))
            .collect(),
    }
}
