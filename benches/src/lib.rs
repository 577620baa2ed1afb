//! Shared inputs for Sluice's criterion benches: realistic OTLP requests of each signal.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub use sluice_loadgen::loadgen::build_request as traces_request;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", "bench"),
            kv("service.namespace", "awf"),
            kv("service.instance.id", "i-1"),
        ],
        ..Default::default()
    })
}

/// `records` log records (~260 bytes each) with severities, attributes and trace context.
pub fn logs_request(records: usize) -> ExportLogsServiceRequest {
    let log_records = (0..records)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1000,
            severity_number: if i % 10 == 0 { 17 } else { 9 },
            severity_text: if i % 10 == 0 {
                "ERROR".into()
            } else {
                "INFO".into()
            },
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "step {i} of workflow finished in {} ms",
                    i % 97
                ))),
            }),
            attributes: vec![
                kv("execution_id", &format!("exec-{}", i % 50)),
                kv("agent_id", "planner"),
                kv("step_id", "plan"),
            ],
            trace_id: vec![7; 16],
            span_id: vec![9; 8],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "bench".into(),
                    ..Default::default()
                }),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// `series` cumulative monotonic sums, one point each.
pub fn metrics_request(series: usize) -> ExportMetricsServiceRequest {
    let points = (0..series)
        .map(|i| NumberDataPoint {
            attributes: vec![
                kv("agent_id", &format!("agent-{}", i % 40)),
                kv("status", if i % 3 == 0 { "failed" } else { "ok" }),
                kv("series", &i.to_string()),
            ],
            start_time_unix_nano: 1_700_000_000_000_000_000,
            time_unix_nano: 1_700_000_060_000_000_000,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "bench".into(),
                    ..Default::default()
                }),
                metrics: vec![Metric {
                    name: "awf.tokens".into(),
                    unit: "{token}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
