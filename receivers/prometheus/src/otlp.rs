//! Scraped points → one OTLP `ExportMetricsServiceRequest` per scrape, in the pass-through
//! form the remote-write exporter sends unchanged (`sluice_core::prometheus`): one metric per
//! series name, the exact labels as attributes, counters as monotonic cumulative sums, every
//! other type as a gauge (histograms and summaries as their `_bucket` / `_sum` / `_count` /
//! quantile series), the family type in `Metric.metadata`, stale markers flagged
//! `FLAG_NO_RECORDED_VALUE` with the stale NaN as value. The resource carries `service.name`
//! (= `job`) and `service.instance.id` (= `instance`) for exporters that read OTLP.

use crate::parse::MetricKind;
use crate::scrape::Point;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_core::prometheus::{PASSTHROUGH_SCOPE, TYPE_METADATA_KEY};
use std::collections::HashMap;

/// Prometheus' stale marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u32 = 1;

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
    }
}

fn data_point(p: &Point) -> NumberDataPoint {
    let value = if p.stale {
        f64::from_bits(STALE_NAN_BITS)
    } else {
        p.value
    };
    NumberDataPoint {
        attributes: p
            .labels
            .iter()
            .filter(|(n, _)| n != "__name__")
            .map(|(n, v)| string_kv(n, v))
            .collect(),
        start_time_unix_nano: 0,
        time_unix_nano: u64::try_from(p.timestamp_ms)
            .unwrap_or(0)
            .saturating_mul(1_000_000),
        exemplars: Vec::new(),
        flags: if p.stale { FLAG_NO_RECORDED_VALUE } else { 0 },
        value: Some(number_data_point::Value::AsDouble(value)),
    }
}

/// Encodes `points` (of one target); returns the payload and its data point count.
pub fn encode(points: &[Point], job: &str, instance: &str) -> (Bytes, u32) {
    let mut metrics: Vec<Metric> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for p in points {
        let name = p.name();
        let i = *index.entry(name).or_insert_with(|| {
            let data = if p.kind == MetricKind::Counter {
                Data::Sum(Sum {
                    data_points: Vec::new(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })
            } else {
                Data::Gauge(Gauge {
                    data_points: Vec::new(),
                })
            };
            metrics.push(Metric {
                name: name.to_owned(),
                description: String::new(),
                unit: String::new(),
                metadata: vec![string_kv(TYPE_METADATA_KEY, p.kind.as_str())],
                data: Some(data),
            });
            metrics.len() - 1
        });
        let point = data_point(p);
        match metrics.get_mut(i).and_then(|m| m.data.as_mut()) {
            Some(Data::Sum(s)) => s.data_points.push(point),
            Some(Data::Gauge(g)) => g.data_points.push(point),
            _ => {}
        }
    }
    let mut attributes = vec![string_kv("service.name", job)];
    if !instance.is_empty() {
        attributes.push(string_kv("service.instance.id", instance));
    }
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: PASSTHROUGH_SCOPE.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let count = u32::try_from(points.len()).unwrap_or(u32::MAX);
    (Bytes::from(request.encode_to_vec()), count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_become_passthrough_metrics() {
        let point = |name: &str, kind, value: f64, stale| Point {
            labels: vec![
                ("__name__".into(), name.into()),
                ("job".into(), "j".into()),
                ("le".into(), "0.5".into()),
            ],
            kind,
            timestamp_ms: 1_700_000_000_123,
            value,
            stale,
        };
        let points = [
            point("c_total", MetricKind::Counter, 5.0, false),
            point("h_bucket", MetricKind::Histogram, 2.0, false),
            point("h_bucket", MetricKind::Histogram, 0.0, true),
        ];
        let (bytes, count) = encode(&points, "j", "h:1");
        assert_eq!(count, 3);
        let req = ExportMetricsServiceRequest::decode(bytes.as_ref()).unwrap();
        let rm = &req.resource_metrics[0];
        let sm = &rm.scope_metrics[0];
        assert_eq!(sm.scope.as_ref().unwrap().name, PASSTHROUGH_SCOPE);
        assert_eq!(sm.metrics.len(), 2);
        let Some(Data::Sum(sum)) = &sm.metrics[0].data else {
            panic!("counter is a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points[0].time_unix_nano, 1_700_000_000_123_000_000);
        let Some(Data::Gauge(g)) = &sm.metrics[1].data else {
            panic!("histogram series are gauges")
        };
        assert_eq!(g.data_points.len(), 2);
        let stale = &g.data_points[1];
        assert_eq!(stale.flags, 1);
        let Some(number_data_point::Value::AsDouble(v)) = stale.value else {
            panic!()
        };
        assert_eq!(v.to_bits(), STALE_NAN_BITS);
        let keys: Vec<&str> = stale.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["job", "le"]);
        assert_eq!(sm.metrics[1].metadata[0].key, TYPE_METADATA_KEY);
    }
}
