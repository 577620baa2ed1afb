//! OTLP metrics messages as the translator reads them: the same field numbers and wire types
//! as `opentelemetry.proto.metrics.v1`, decoded by prost with its usual semantics (unknown
//! fields skipped, last value wins, repeated fields append), but without owning what most
//! points never need owned.
//!
//! Decoded from the item's `Bytes`, the `bytes` fields below are slices of the spooled payload,
//! not copies: a metric's raw bytes are decoded only once it is known whether it belongs to the
//! passthrough scope, and a number point's attributes stay raw `KeyValue` bytes, which are the
//! key of the translator's series cache and are decoded only when the cache misses.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, ExponentialHistogram, Histogram, Summary};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// `ExportMetricsServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

/// `ResourceMetrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceMetrics {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
}

/// `ScopeMetrics`, its metrics still encoded (see the module comment).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeMetrics {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub metrics: Vec<Bytes>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `Metric`, with gauges and sums in their raw-attribute form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub description: String,
    #[prost(string, tag = "3")]
    pub unit: String,
    #[prost(oneof = "Data", tags = "5, 7, 9, 10, 11")]
    pub data: Option<Data>,
    #[prost(message, repeated, tag = "12")]
    pub metadata: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Data {
    #[prost(message, tag = "5")]
    Gauge(Gauge),
    #[prost(message, tag = "7")]
    Sum(Sum),
    #[prost(message, tag = "9")]
    Histogram(Histogram),
    #[prost(message, tag = "10")]
    ExponentialHistogram(ExponentialHistogram),
    #[prost(message, tag = "11")]
    Summary(Summary),
}

/// `Gauge`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

/// `Sum`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sum {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
    #[prost(bool, tag = "3")]
    pub is_monotonic: bool,
}

/// `NumberDataPoint`, each attribute an encoded `KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NumberDataPoint {
    #[prost(bytes = "bytes", repeated, tag = "7")]
    pub attributes: Vec<Bytes>,
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    #[prost(message, repeated, tag = "5")]
    pub exemplars: Vec<Exemplar>,
    #[prost(uint32, tag = "8")]
    pub flags: u32,
    #[prost(oneof = "Value", tags = "4, 6")]
    pub value: Option<Value>,
}

#[derive(Clone, Copy, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(double, tag = "4")]
    AsDouble(f64),
    #[prost(sfixed64, tag = "6")]
    AsInt(i64),
}

impl NumberDataPoint {
    pub fn value(&self) -> Option<f64> {
        match self.value {
            Some(Value::AsDouble(d)) => Some(d),
            Some(Value::AsInt(i)) => Some(i as f64),
            None => None,
        }
    }

    /// The attributes decoded, as `opentelemetry_proto`'s point would hold them.
    pub fn decode_attributes(&self) -> Result<Vec<KeyValue>, prost::DecodeError> {
        use prost::Message;
        self.attributes
            .iter()
            .map(|raw| KeyValue::decode(raw.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::labels::tests::kv;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1 as otlp;
    use prost::Message;

    #[test]
    fn reads_what_opentelemetry_proto_encodes() {
        let point = otlp::NumberDataPoint {
            attributes: vec![kv("a", "1"), kv("b", "2")],
            start_time_unix_nano: 7,
            time_unix_nano: 9,
            flags: 1,
            value: Some(otlp::number_data_point::Value::AsInt(-3)),
            exemplars: vec![otlp::Exemplar {
                time_unix_nano: 8,
                ..Default::default()
            }],
        };
        let metric = otlp::Metric {
            name: "m".into(),
            description: "d".into(),
            unit: "s".into(),
            data: Some(otlp::metric::Data::Sum(otlp::Sum {
                data_points: vec![point.clone()],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            metadata: vec![kv("x", "y")],
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![otlp::ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "s")],
                    ..Default::default()
                }),
                scope_metrics: vec![otlp::ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "sc".into(),
                        ..Default::default()
                    }),
                    metrics: vec![metric.clone()],
                    schema_url: "u".into(),
                }],
                schema_url: String::new(),
            }],
        };
        let raw = Request::decode(Bytes::from(request.encode_to_vec())).unwrap();
        let rm = &raw.resource_metrics[0];
        assert_eq!(rm.resource, request.resource_metrics[0].resource);
        let sm = &rm.scope_metrics[0];
        assert_eq!(sm.schema_url, "u");
        assert_eq!(sm.scope.as_ref().unwrap().name, "sc");
        assert_eq!(otlp::Metric::decode(sm.metrics[0].clone()).unwrap(), metric);
        let m = Metric::decode(sm.metrics[0].clone()).unwrap();
        assert_eq!(
            (m.name.as_str(), m.description.as_str(), m.unit.as_str()),
            ("m", "d", "s")
        );
        assert_eq!(m.metadata, metric.metadata);
        let Some(Data::Sum(sum)) = m.data else {
            panic!("not a sum: {:?}", m.data)
        };
        assert_eq!((sum.aggregation_temporality, sum.is_monotonic), (2, true));
        let p = &sum.data_points[0];
        assert_eq!(p.decode_attributes().unwrap(), point.attributes);
        assert_eq!(
            (p.start_time_unix_nano, p.time_unix_nano, p.flags, p.value()),
            (7, 9, 1, Some(-3.0))
        );
        assert_eq!(p.exemplars, point.exemplars);
    }
}
