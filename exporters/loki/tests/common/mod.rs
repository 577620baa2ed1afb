//! Builders for OTLP log requests and batches shared by the Loki exporter tests.
#![allow(dead_code)]

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_core::{Batch, Item, Signal};
use std::time::{SystemTime, UNIX_EPOCH};

pub const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
pub const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
pub const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const SPAN_HEX: &str = "00f067aa0ba902b7";

pub fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}
pub fn i(v: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(v)),
    }
}
pub fn d(v: f64) -> AnyValue {
    AnyValue {
        value: Some(Value::DoubleValue(v)),
    }
}
pub fn b(v: bool) -> AnyValue {
    AnyValue {
        value: Some(Value::BoolValue(v)),
    }
}
pub fn arr(items: Vec<AnyValue>) -> AnyValue {
    AnyValue {
        value: Some(Value::ArrayValue(ArrayValue { values: items })),
    }
}
pub fn map(items: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(Value::KvlistValue(KeyValueList { values: items })),
    }
}
pub fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}
pub fn ks(k: &str, v: &str) -> KeyValue {
    kv(k, s(v))
}

/// Nanoseconds a minute ago, rounded to the millisecond (Loki keeps ns, but readable).
pub fn base_ns() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (now - 60_000_000_000) / 1_000_000 * 1_000_000
}

pub fn record(ts: u64, severity: i32, body: &str, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: ts,
        severity_number: severity,
        body: Some(s(body)),
        attributes: attrs,
        ..Default::default()
    }
}

pub fn resource_logs(
    res_attrs: Vec<KeyValue>,
    scope: Option<(&str, &str)>,
    records: Vec<LogRecord>,
) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: res_attrs,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: scope.map(|(name, version)| InstrumentationScope {
                name: name.into(),
                version: version.into(),
                ..Default::default()
            }),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn request(rls: Vec<ResourceLogs>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest { resource_logs: rls }
}

pub fn count(req: &ExportLogsServiceRequest) -> u32 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u32)
        .sum()
}

pub fn item(req: &ExportLogsServiceRequest) -> Item {
    Item::new(Signal::Logs, Bytes::from(req.encode_to_vec()), count(req))
}

pub fn batch(reqs: &[ExportLogsServiceRequest]) -> Batch {
    Batch {
        signal: Signal::Logs,
        tenant: None,
        items: reqs.iter().map(item).collect(),
    }
}

/// The usual service resource.
pub fn checkout_resource() -> Vec<KeyValue> {
    vec![
        ks("service.name", "checkout"),
        ks("service.namespace", "shop"),
        ks("service.instance.id", "pod-1"),
        ks("host.name", "h1"),
    ]
}
