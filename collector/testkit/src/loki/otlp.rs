//! Loki 3's native OTLP ingestion: OTLP log records mapped to streams.

use super::LokiEntry;
use super::decode::{DecodeError, IncomingLabels, IncomingStream};
use super::ingest::now_ns;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

/// An OTLP logs request in `media_type` (protobuf or JSON).
pub(super) fn decode_otlp(
    media_type: &str,
    body: &[u8],
) -> Result<ExportLogsServiceRequest, DecodeError> {
    match media_type {
        "application/x-protobuf" => {
            ExportLogsServiceRequest::decode(body).map_err(DecodeError::OtlpProtobuf)
        }
        "application/json" => serde_json::from_slice(body).map_err(DecodeError::OtlpJson),
        other => Err(DecodeError::UnsupportedContentType(other.to_owned())),
    }
}

/// Resource attributes Loki 3 indexes as labels by default (`.` → `_`).
const OTLP_INDEX_LABELS: [&str; 17] = [
    "cloud.availability_zone",
    "cloud.region",
    "container.name",
    "deployment.environment.name",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.daemonset.name",
    "k8s.deployment.name",
    "k8s.job.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "service.instance.id",
    "service.name",
    "service.namespace",
];

fn otlp_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A plain text form of an OTLP value (Loki's `AsString`).
fn otlp_text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(f)) => f.to_string(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| otlp_text(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| format!("{}:{}", kv.key, otlp_text(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        _ => String::new(),
    }
}

/// Loki 3's native OTLP mapping (`pkg/loghttp/push/otlp.go`), simplified to what tests use.
pub(super) fn otlp_to_streams(req: &ExportLogsServiceRequest) -> Vec<IncomingStream> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let attrs: &[KeyValue] = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let mut labels = Vec::new();
        let mut res_md = Vec::new();
        for kv in attrs {
            let value = otlp_text(kv.value.as_ref());
            if OTLP_INDEX_LABELS.contains(&kv.key.as_str()) {
                labels.push((otlp_name(&kv.key), value));
            } else {
                res_md.push((otlp_name(&kv.key), value));
            }
        }
        if !labels.iter().any(|(n, _)| n == "service_name") {
            labels.push(("service_name".into(), "unknown_service".into()));
        }
        let entries = rl
            .scope_logs
            .iter()
            .flat_map(|sl| {
                let res_md = &res_md;
                sl.log_records
                    .iter()
                    .map(move |r| otlp_entry(res_md, sl.scope.as_ref(), r))
            })
            .collect();
        out.push(IncomingStream {
            labels: IncomingLabels::Parsed(labels),
            entries,
        });
    }
    out
}

/// One log record as an entry: body as the line; resource, scope and record attributes,
/// severity and trace context as structured metadata.
fn otlp_entry(
    resource_metadata: &[(String, String)],
    scope: Option<&InstrumentationScope>,
    r: &LogRecord,
) -> LokiEntry {
    let mut md = resource_metadata.to_vec();
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            md.push(("scope_name".into(), scope.name.clone()));
        }
        if !scope.version.is_empty() {
            md.push(("scope_version".into(), scope.version.clone()));
        }
    }
    for kv in &r.attributes {
        md.push((otlp_name(&kv.key), otlp_text(kv.value.as_ref())));
    }
    if !r.severity_text.is_empty() {
        md.push(("severity_text".into(), r.severity_text.clone()));
    }
    if r.severity_number != 0 {
        md.push(("severity_number".into(), r.severity_number.to_string()));
    }
    if !r.trace_id.is_empty() {
        md.push(("trace_id".into(), hex::encode(&r.trace_id)));
    }
    if !r.span_id.is_empty() {
        md.push(("span_id".into(), hex::encode(&r.span_id)));
    }
    md.retain(|(_, v)| !v.is_empty());
    let ts = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else if r.observed_time_unix_nano != 0 {
        r.observed_time_unix_nano
    } else {
        now_ns() as u64
    };
    LokiEntry {
        timestamp_ns: i64::try_from(ts).unwrap_or(i64::MAX),
        line: otlp_text(r.body.as_ref()),
        structured_metadata: md,
    }
}
