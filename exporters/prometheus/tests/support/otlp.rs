//! Small builders for OTLP metrics requests, so tests read as data.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exponential_histogram_data_point, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_core::{Item, Signal};

pub const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
pub const DELTA: i32 = AggregationTemporality::Delta as i32;

pub fn kv(key: &str, value: &str) -> KeyValue {
    kv_any(key, any_value::Value::StringValue(value.into()))
}

pub fn kv_any(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn scope(name: &str, version: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.into(),
        version: version.into(),
        ..Default::default()
    }
}

/// One resource with one scope holding `metrics`.
pub fn request(
    resource: Vec<KeyValue>,
    scope: Option<InstrumentationScope>,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope,
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

pub fn item(request: &ExportMetricsServiceRequest) -> Item {
    let count = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum::<usize>();
    Item::new(
        Signal::Metrics,
        Bytes::from(request.encode_to_vec()),
        count as u32,
    )
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("{name} help"),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

pub fn number(time_ns: u64, value: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: 1_000_000_000,
        time_unix_nano: time_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

pub fn int_number(time_ns: u64, value: i64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        value: Some(number_data_point::Value::AsInt(value)),
        ..number(time_ns, 0.0, attrs)
    }
}

pub fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

pub fn sum(
    name: &str,
    unit: &str,
    temporality: i32,
    monotonic: bool,
    points: Vec<NumberDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality,
            is_monotonic: monotonic,
        }),
    )
}

pub fn histogram_point(
    time_ns: u64,
    bounds: &[f64],
    counts: &[u64],
    sum: Option<f64>,
    attrs: Vec<KeyValue>,
) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: attrs,
        start_time_unix_nano: 1_000_000_000,
        time_unix_nano: time_ns,
        count: counts.iter().sum(),
        sum,
        bucket_counts: counts.to_vec(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    }
}

pub fn histogram(
    name: &str,
    unit: &str,
    temporality: i32,
    points: Vec<HistogramDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: temporality,
        }),
    )
}

#[allow(clippy::too_many_arguments)]
pub fn exp_point(
    time_ns: u64,
    scale: i32,
    zero_count: u64,
    positive: (i32, &[u64]),
    negative: (i32, &[u64]),
    sum: f64,
    attrs: Vec<KeyValue>,
) -> ExponentialHistogramDataPoint {
    let total = zero_count + positive.1.iter().sum::<u64>() + negative.1.iter().sum::<u64>();
    ExponentialHistogramDataPoint {
        attributes: attrs,
        start_time_unix_nano: 1_000_000_000,
        time_unix_nano: time_ns,
        count: total,
        sum: Some(sum),
        scale,
        zero_count,
        positive: Some(exponential_histogram_data_point::Buckets {
            offset: positive.0,
            bucket_counts: positive.1.to_vec(),
        }),
        negative: Some(exponential_histogram_data_point::Buckets {
            offset: negative.0,
            bucket_counts: negative.1.to_vec(),
        }),
        ..Default::default()
    }
}

pub fn exp_histogram(
    name: &str,
    unit: &str,
    temporality: i32,
    points: Vec<ExponentialHistogramDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points,
            aggregation_temporality: temporality,
        }),
    )
}

pub fn summary_point(
    time_ns: u64,
    count: u64,
    sum: f64,
    quantiles: &[(f64, f64)],
    attrs: Vec<KeyValue>,
) -> SummaryDataPoint {
    SummaryDataPoint {
        attributes: attrs,
        start_time_unix_nano: 1_000_000_000,
        time_unix_nano: time_ns,
        count,
        sum,
        quantile_values: quantiles
            .iter()
            .map(|&(quantile, value)| ValueAtQuantile { quantile, value })
            .collect(),
        ..Default::default()
    }
}

pub fn summary(name: &str, unit: &str, points: Vec<SummaryDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Summary(Summary {
            data_points: points,
        }),
    )
}

pub fn exemplar(
    time_ns: u64,
    value: f64,
    trace: &[u8],
    span: &[u8],
    attrs: Vec<KeyValue>,
) -> Exemplar {
    Exemplar {
        filtered_attributes: attrs,
        time_unix_nano: time_ns,
        span_id: span.to_vec(),
        trace_id: trace.to_vec(),
        value: Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(value)),
    }
}
