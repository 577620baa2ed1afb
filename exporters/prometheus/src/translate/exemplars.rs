//! OTLP exemplars → remote-write exemplars (OpenTelemetry specification, Prometheus and OpenMetrics
//! Compatibility, "Exemplars").

use super::labels::sanitize_attributes;
use crate::remote_write::v1;
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, exemplar};

/// Exemplar label names + values may hold at most this many runes (OpenMetrics).
const MAX_EXEMPLAR_RUNES: usize = 128;

/// `trace_id`/`span_id` as lowercase hex, then the filtered attributes if all of them fit in
/// the rune budget. A missing timestamp takes the point's (`point_ms`).
pub fn convert(e: &Exemplar, point_ms: i64) -> v1::Exemplar {
    let mut labels: Vec<v1::Label> = Vec::new();
    let mut runes = 0usize;
    for (name, id) in [("trace_id", &e.trace_id), ("span_id", &e.span_id)] {
        if !id.is_empty() {
            let value = hex::encode(id);
            runes += name.len() + value.len();
            labels.push(v1::Label {
                name: name.to_owned(),
                value,
            });
        }
    }
    let attrs = sanitize_attributes(&e.filtered_attributes, |_| false);
    let attrs: Vec<v1::Label> = attrs
        .into_iter()
        .filter(|l| l.name != "trace_id" && l.name != "span_id")
        .collect();
    let attr_runes: usize = attrs
        .iter()
        .map(|l| l.name.chars().count() + l.value.chars().count())
        .sum();
    // All filtered attributes or none, as Prometheus does: a partial set would mislead.
    if runes + attr_runes <= MAX_EXEMPLAR_RUNES {
        labels.extend(attrs);
    }
    labels.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let value = match e.value {
        Some(exemplar::Value::AsDouble(d)) => d,
        Some(exemplar::Value::AsInt(i)) => i as f64,
        None => 0.0,
    };
    let timestamp = match (e.time_unix_nano / 1_000_000) as i64 {
        0 => point_ms,
        t => t,
    };
    v1::Exemplar {
        labels,
        value,
        timestamp,
    }
}
