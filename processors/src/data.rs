//! The decoded form processors work on, and helpers over OTLP attributes.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data};
use prost::Message;
use sluice_core::Signal;

/// An OTLP `Export*ServiceRequest`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Request {
    pub fn decode(signal: Signal, payload: &[u8]) -> Result<Request, prost::DecodeError> {
        Ok(match signal {
            Signal::Traces => Request::Traces(ExportTraceServiceRequest::decode(payload)?),
            Signal::Metrics => Request::Metrics(ExportMetricsServiceRequest::decode(payload)?),
            Signal::Logs => Request::Logs(ExportLogsServiceRequest::decode(payload)?),
        })
    }

    pub fn encode(&self) -> Bytes {
        Bytes::from(match self {
            Request::Traces(r) => r.encode_to_vec(),
            Request::Metrics(r) => r.encode_to_vec(),
            Request::Logs(r) => r.encode_to_vec(),
        })
    }

    pub fn signal(&self) -> Signal {
        match self {
            Request::Traces(_) => Signal::Traces,
            Request::Metrics(_) => Signal::Metrics,
            Request::Logs(_) => Signal::Logs,
        }
    }

    /// Spans, data points or log records, counted as the receivers count them.
    pub fn count(&self) -> u32 {
        let n: usize = match self {
            Request::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            Request::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(data_point_count)
                .sum(),
            Request::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Removes scopes and resources left without spans, metrics or records, so an emptied
    /// request encodes as empty.
    pub fn prune(&mut self) {
        match self {
            Request::Traces(r) => {
                for rs in &mut r.resource_spans {
                    rs.scope_spans.retain(|s| !s.spans.is_empty());
                }
                r.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
            }
            Request::Metrics(r) => {
                for rm in &mut r.resource_metrics {
                    for sm in &mut rm.scope_metrics {
                        sm.metrics.retain(|m| data_point_count(m) > 0);
                    }
                    rm.scope_metrics.retain(|s| !s.metrics.is_empty());
                }
                r.resource_metrics.retain(|rm| !rm.scope_metrics.is_empty());
            }
            Request::Logs(r) => {
                for rl in &mut r.resource_logs {
                    rl.scope_logs.retain(|s| !s.log_records.is_empty());
                }
                r.resource_logs.retain(|rl| !rl.scope_logs.is_empty());
            }
        }
    }

    /// Every resource's attributes.
    pub fn resource_attributes_mut(&mut self) -> Vec<&mut Vec<KeyValue>> {
        match self {
            Request::Traces(r) => r
                .resource_spans
                .iter_mut()
                .map(|rs| &mut rs.resource.get_or_insert_with(Default::default).attributes)
                .collect(),
            Request::Metrics(r) => r
                .resource_metrics
                .iter_mut()
                .map(|rm| &mut rm.resource.get_or_insert_with(Default::default).attributes)
                .collect(),
            Request::Logs(r) => r
                .resource_logs
                .iter_mut()
                .map(|rl| &mut rl.resource.get_or_insert_with(Default::default).attributes)
                .collect(),
        }
    }

    /// Calls `f` with the attributes of every span, data point or log record.
    pub fn for_each_record_attributes(&mut self, mut f: impl FnMut(&mut Vec<KeyValue>)) {
        match self {
            Request::Traces(r) => r
                .resource_spans
                .iter_mut()
                .flat_map(|rs| &mut rs.scope_spans)
                .flat_map(|ss| &mut ss.spans)
                .for_each(|s| f(&mut s.attributes)),
            Request::Metrics(r) => r
                .resource_metrics
                .iter_mut()
                .flat_map(|rm| &mut rm.scope_metrics)
                .flat_map(|sm| &mut sm.metrics)
                .for_each(|m| for_each_point_attributes(m, &mut f)),
            Request::Logs(r) => r
                .resource_logs
                .iter_mut()
                .flat_map(|rl| &mut rl.scope_logs)
                .flat_map(|sl| &mut sl.log_records)
                .for_each(|l| f(&mut l.attributes)),
        }
    }
}

/// Data points in one metric, of every point kind.
pub fn data_point_count(m: &Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Calls `f` with the attributes of each data point of `m`.
pub fn for_each_point_attributes(m: &mut Metric, f: &mut impl FnMut(&mut Vec<KeyValue>)) {
    match &mut m.data {
        Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::Sum(s)) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::Histogram(h)) => h.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(Data::ExponentialHistogram(e)) => {
            e.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        Some(Data::Summary(s)) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        None => {}
    }
}

pub fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

pub fn get_mut<'a>(attrs: &'a mut [KeyValue], key: &str) -> Option<&'a mut KeyValue> {
    attrs.iter_mut().find(|kv| kv.key == key)
}

/// Sets `key` to `value`, replacing an existing value.
pub fn upsert(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match get_mut(attrs, key) {
        Some(kv) => kv.value = Some(value),
        None => attrs.push(KeyValue {
            key: key.to_string(),
            value: Some(value),
            ..Default::default()
        }),
    }
}

pub fn string_value(s: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.into())),
    }
}

/// The text form of a value, as the OpenTelemetry Collector renders attribute values
/// (strings as they are, numbers and booleans in decimal, bytes in hex).
pub fn value_text(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::ArrayValue(a)) => {
            let parts: Vec<String> = a.values.iter().map(value_text).collect();
            format!("[{}]", parts.join(","))
        }
        Some(Value::KvlistValue(l)) => {
            let parts: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}:{}",
                        kv.key,
                        kv.value.as_ref().map(value_text).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

/// SHA-256 of `bytes`, lowercase hex: what `hash` actions write.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A value given in a config (`value = ...`), turned into an OTLP value.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Bool(bool),
    Int(i64),
    Double(f64),
    String(String),
}

impl ConfigValue {
    pub fn to_any(&self) -> AnyValue {
        AnyValue {
            value: Some(match self {
                ConfigValue::Bool(b) => Value::BoolValue(*b),
                ConfigValue::Int(i) => Value::IntValue(*i),
                ConfigValue::Double(d) => Value::DoubleValue(*d),
                ConfigValue::String(s) => Value::StringValue(s.clone()),
            }),
        }
    }
}
