//! proptest strategies for random, valid OTLP requests (every field kind, every point kind).

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::Event, span::Link,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z.]{1,12}", "\\PC{0,6}"]
}

/// An id of exactly `len` bytes, or empty (allowed by OTLP).
fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), vec(any::<u8>(), len)]
}

pub fn any_value() -> impl Strategy<Value = AnyValue> {
    use any_value::Value;
    let leaf = prop_oneof![
        Just(None),
        text().prop_map(|s| Some(Value::StringValue(s))),
        any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
        any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
        any::<f64>().prop_map(|d| Some(Value::DoubleValue(d))),
        vec(any::<u8>(), 0..6).prop_map(|b| Some(Value::BytesValue(b))),
    ]
    .prop_map(|value| AnyValue { value });
    let leaf = leaf.boxed();
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
            }),
            vec((text(), option::of(inner)), 0..4).prop_map(|kvs| AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value,
                            key_strindex: 0,
                        })
                        .collect(),
                })),
            }),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec((text(), option::of(any_value())), 0..3).prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, value)| KeyValue {
                key,
                value,
                key_strindex: 0,
            })
            .collect()
    })
}

fn resource() -> impl Strategy<Value = Option<Resource>> {
    option::of(
        (
            attributes(),
            any::<u32>(),
            vec((text(), text(), vec(text(), 0..2)), 0..2),
        )
            .prop_map(|(attributes, dropped, refs)| Resource {
                attributes,
                dropped_attributes_count: dropped,
                entity_refs: refs
                    .into_iter()
                    .map(|(schema_url, r#type, id_keys)| EntityRef {
                        schema_url,
                        r#type,
                        id_keys,
                        description_keys: vec![],
                    })
                    .collect(),
            }),
    )
}

fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
    option::of((text(), text(), attributes(), any::<u32>()).prop_map(
        |(name, version, attributes, dropped_attributes_count)| InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count,
        },
    ))
}

fn span() -> impl Strategy<Value = Span> {
    let ids = (id(16), id(8), id(8), text(), text(), any::<u32>(), -1i32..7);
    let times = (any::<u64>(), any::<u64>(), attributes(), any::<u32>());
    let events = vec(
        (any::<u64>(), text(), attributes()).prop_map(|(time_unix_nano, name, attributes)| Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count: 1,
        }),
        0..3,
    );
    let links = vec(
        (id(16), id(8), text(), attributes(), any::<u32>()).prop_map(
            |(trace_id, span_id, trace_state, attributes, flags)| Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                dropped_attributes_count: 0,
                flags,
            },
        ),
        0..3,
    );
    let status = option::of((text(), 0i32..3).prop_map(|(message, code)| Status { message, code }));
    (ids, times, events, links, status).prop_map(
        |(
            (trace_id, span_id, parent_span_id, name, trace_state, flags, kind),
            (start, end, attributes, dropped),
            events,
            links,
            status,
        )| Span {
            trace_id,
            span_id,
            trace_state,
            parent_span_id,
            flags,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            dropped_attributes_count: dropped,
            events,
            dropped_events_count: 0,
            links,
            dropped_links_count: 2,
            status,
        },
    )
}

pub fn trace_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans =
        (scope(), vec(span(), 0..4), text()).prop_map(|(scope, spans, schema_url)| ScopeSpans {
            scope,
            spans,
            schema_url,
        });
    let resource_spans = (resource(), vec(scope_spans, 0..3), text()).prop_map(
        |(resource, scope_spans, schema_url)| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        },
    );
    vec(resource_spans, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    vec(
        (
            attributes(),
            any::<u64>(),
            id(8),
            id(16),
            any::<bool>(),
            any::<i64>(),
        )
            .prop_map(
                |(filtered_attributes, time_unix_nano, span_id, trace_id, int, v)| Exemplar {
                    filtered_attributes,
                    time_unix_nano,
                    span_id,
                    trace_id,
                    value: Some(if int {
                        exemplar::Value::AsInt(v)
                    } else {
                        exemplar::Value::AsDouble(v as f64)
                    }),
                },
            ),
        0..2,
    )
}

fn number_points() -> impl Strategy<Value = Vec<NumberDataPoint>> {
    vec(
        (
            attributes(),
            any::<u64>(),
            any::<u64>(),
            exemplars(),
            any::<u32>(),
            option::of(any::<(bool, i64)>()),
        )
            .prop_map(|(attributes, start, time, exemplars, flags, value)| {
                NumberDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    exemplars,
                    flags,
                    value: value.map(|(int, v)| {
                        if int {
                            number_data_point::Value::AsInt(v)
                        } else {
                            number_data_point::Value::AsDouble(v as f64)
                        }
                    }),
                }
            }),
        0..4,
    )
}

fn histogram_points() -> impl Strategy<Value = Vec<HistogramDataPoint>> {
    vec(
        (
            attributes(),
            any::<u64>(),
            option::of(any::<f64>()),
            vec(any::<u64>(), 0..5),
            vec(any::<f64>(), 0..4),
            exemplars(),
            option::of(any::<f64>()),
        )
            .prop_map(
                |(attributes, count, sum, bucket_counts, explicit_bounds, exemplars, min)| {
                    HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count,
                        sum,
                        bucket_counts,
                        explicit_bounds,
                        exemplars,
                        flags: 0,
                        min,
                        max: min,
                    }
                },
            ),
        0..3,
    )
}

fn buckets() -> impl Strategy<Value = Option<Buckets>> {
    option::of(
        (any::<i32>(), vec(any::<u64>(), 0..5)).prop_map(|(offset, bucket_counts)| Buckets {
            offset,
            bucket_counts,
        }),
    )
}

fn exp_histogram_points() -> impl Strategy<Value = Vec<ExponentialHistogramDataPoint>> {
    vec(
        (
            attributes(),
            any::<u64>(),
            any::<i32>(),
            buckets(),
            buckets(),
            exemplars(),
            any::<f64>(),
        )
            .prop_map(
                |(attributes, count, scale, positive, negative, exemplars, zero_threshold)| {
                    ExponentialHistogramDataPoint {
                        attributes,
                        start_time_unix_nano: 3,
                        time_unix_nano: 4,
                        count,
                        sum: Some(1.5),
                        scale,
                        zero_count: 7,
                        positive,
                        negative,
                        flags: 1,
                        exemplars,
                        min: None,
                        max: Some(9.0),
                        zero_threshold,
                    }
                },
            ),
        0..3,
    )
}

fn summary_points() -> impl Strategy<Value = Vec<SummaryDataPoint>> {
    vec(
        (
            attributes(),
            any::<u64>(),
            any::<f64>(),
            vec((any::<f64>(), any::<f64>()), 0..3),
        )
            .prop_map(|(attributes, count, sum, quantiles)| SummaryDataPoint {
                attributes,
                start_time_unix_nano: 5,
                time_unix_nano: 6,
                count,
                sum,
                quantile_values: quantiles
                    .into_iter()
                    .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                    .collect(),
                flags: 0,
            }),
        0..3,
    )
}

fn metric_data() -> impl Strategy<Value = Option<metric::Data>> {
    prop_oneof![
        Just(None),
        number_points().prop_map(|data_points| Some(metric::Data::Gauge(Gauge { data_points }))),
        (number_points(), 0i32..3, any::<bool>()).prop_map(|(data_points, t, m)| Some(
            metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: t,
                is_monotonic: m,
            })
        )),
        (histogram_points(), 0i32..3).prop_map(|(data_points, t)| Some(metric::Data::Histogram(
            Histogram {
                data_points,
                aggregation_temporality: t,
            }
        ))),
        (exp_histogram_points(), 0i32..3).prop_map(|(data_points, t)| Some(
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points,
                aggregation_temporality: t,
            })
        )),
        summary_points()
            .prop_map(|data_points| Some(metric::Data::Summary(Summary { data_points }))),
    ]
}

pub fn metrics_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let metric = (text(), text(), text(), attributes(), metric_data()).prop_map(
        |(name, description, unit, metadata, data)| Metric {
            name,
            description,
            unit,
            metadata,
            data,
        },
    );
    let scope_metrics =
        (scope(), vec(metric, 0..4), text()).prop_map(|(scope, metrics, schema_url)| {
            ScopeMetrics {
                scope,
                metrics,
                schema_url,
            }
        });
    let resource_metrics = (resource(), vec(scope_metrics, 0..3), text()).prop_map(
        |(resource, scope_metrics, schema_url)| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url,
        },
    );
    vec(resource_metrics, 0..3)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        (any::<u64>(), any::<u64>(), 0i32..25, text()),
        option::of(any_value()),
        attributes(),
        (any::<u32>(), id(16), id(8), text()),
    )
        .prop_map(
            |(
                (time, observed, severity_number, severity_text),
                body,
                attributes,
                (flags, trace_id, span_id, event_name),
            )| LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: observed,
                severity_number,
                severity_text,
                body,
                attributes,
                dropped_attributes_count: 0,
                flags,
                trace_id,
                span_id,
                event_name,
            },
        )
}

pub fn logs_request() -> impl Strategy<Value = ExportLogsServiceRequest> {
    let scope_logs =
        (scope(), vec(log_record(), 0..4), text()).prop_map(|(scope, log_records, schema_url)| {
            ScopeLogs {
                scope,
                log_records,
                schema_url,
            }
        });
    let resource_logs = (resource(), vec(scope_logs, 0..3), text()).prop_map(
        |(resource, scope_logs, schema_url)| ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        },
    );
    vec(resource_logs, 0..3).prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

pub fn trace_count(req: &ExportTraceServiceRequest) -> u32 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u32)
        .sum()
}

pub fn metrics_count(req: &ExportMetricsServiceRequest) -> u32 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            None => 0,
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
        } as u32)
        .sum()
}

pub fn logs_count(req: &ExportLogsServiceRequest) -> u32 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u32)
        .sum()
}
