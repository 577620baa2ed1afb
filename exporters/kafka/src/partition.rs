//! Turning a batch's items into Kafka records, each one OTLP `Export*ServiceRequest` (the
//! OpenTelemetry Collector's `otlp_proto` encoding), keyed so that related data shares a
//! partition: traces by trace id, metrics and logs by resource.

use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use sha2::{Digest, Sha256};
use sluice_core::{Item, Signal};
use std::collections::HashMap;

/// One Kafka record's key and value.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedPayload {
    /// `None`: no key, the producer spreads such records over partitions.
    pub key: Option<Bytes>,
    /// An encoded `Export*ServiceRequest`.
    pub payload: Bytes,
    /// Spans, data points or log records in `payload`.
    pub items: u64,
}

/// Records keyed by trace id: the spans of each trace id (across every item) in one request,
/// in the order trace ids were first seen. Spans keep their resource and scope.
pub fn by_trace_id<'a>(
    items: impl Iterator<Item = &'a Item>,
) -> Result<Vec<KeyedPayload>, prost::DecodeError> {
    let mut order: Vec<(Vec<u8>, ExportTraceServiceRequest, u64)> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for item in items {
        let request = ExportTraceServiceRequest::decode(&item.payload[..])?;
        for resource_spans in request.resource_spans {
            // Per trace id: this resource's spans of that trace, scope by scope.
            let mut per_trace: Vec<(Vec<u8>, ResourceSpans)> = Vec::new();
            for scope_spans in resource_spans.scope_spans {
                let mut per_scope: Vec<(Vec<u8>, ScopeSpans)> = Vec::new();
                for span in scope_spans.spans {
                    let slot = match per_scope.iter().position(|(id, _)| *id == span.trace_id) {
                        Some(i) => i,
                        None => {
                            per_scope.push((
                                span.trace_id.clone(),
                                ScopeSpans {
                                    scope: scope_spans.scope.clone(),
                                    spans: Vec::new(),
                                    schema_url: scope_spans.schema_url.clone(),
                                },
                            ));
                            per_scope.len() - 1
                        }
                    };
                    per_scope[slot].1.spans.push(span);
                }
                for (trace_id, scope) in per_scope {
                    let slot = match per_trace.iter().position(|(id, _)| *id == trace_id) {
                        Some(i) => i,
                        None => {
                            per_trace.push((
                                trace_id,
                                ResourceSpans {
                                    resource: resource_spans.resource.clone(),
                                    scope_spans: Vec::new(),
                                    schema_url: resource_spans.schema_url.clone(),
                                },
                            ));
                            per_trace.len() - 1
                        }
                    };
                    per_trace[slot].1.scope_spans.push(scope);
                }
            }
            for (trace_id, rs) in per_trace {
                let spans: u64 = rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
                let slot = *index.entry(trace_id.clone()).or_insert_with(|| {
                    order.push((trace_id, ExportTraceServiceRequest::default(), 0));
                    order.len() - 1
                });
                order[slot].1.resource_spans.push(rs);
                order[slot].2 += spans;
            }
        }
    }
    Ok(order
        .into_iter()
        .map(|(trace_id, request, items)| KeyedPayload {
            // A span without a trace id is invalid OTLP; it still travels, unkeyed.
            key: (!trace_id.is_empty()).then(|| Bytes::from(hex::encode(&trace_id))),
            payload: Bytes::from(request.encode_to_vec()),
            items,
        })
        .collect())
}

/// A stable key for a resource: a hash over its attributes sorted by key, so the same
/// resource maps to the same partition whatever the attribute order and whichever Sluice sent it.
pub fn resource_key(resource: Option<&Resource>) -> Bytes {
    let mut attributes: Vec<&KeyValue> = resource
        .map(|r| r.attributes.iter().collect())
        .unwrap_or_default();
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    let mut hasher = Sha256::new();
    for kv in attributes {
        hasher.update((kv.key.len() as u64).to_le_bytes());
        hasher.update(kv.key.as_bytes());
        let value = kv
            .value
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(&value);
    }
    Bytes::from(hex::encode(&hasher.finalize()[..16]))
}

/// Records keyed by resource, for metrics or logs: the entries of one resource (across every
/// item) in one request, in first-seen order.
pub fn by_resource<'a>(
    signal: Signal,
    items: impl Iterator<Item = &'a Item>,
) -> Result<Vec<KeyedPayload>, prost::DecodeError> {
    let mut out: Vec<KeyedPayload> = Vec::new();
    let mut index: HashMap<Bytes, usize> = HashMap::new();
    let mut push = |key: Bytes, encoded: Vec<u8>, items: u64, out: &mut Vec<KeyedPayload>| {
        match index.get(&key) {
            // Concatenated encodings of one message type are one message holding both.
            Some(&i) => {
                let slot = &mut out[i];
                let mut merged = BytesMut::with_capacity(slot.payload.len() + encoded.len());
                merged.extend_from_slice(&slot.payload);
                merged.extend_from_slice(&encoded);
                slot.payload = merged.freeze();
                slot.items += items;
            }
            None => {
                index.insert(key.clone(), out.len());
                out.push(KeyedPayload {
                    key: Some(key),
                    payload: Bytes::from(encoded),
                    items,
                });
            }
        }
    };
    for item in items {
        match signal {
            Signal::Metrics => {
                let request = ExportMetricsServiceRequest::decode(&item.payload[..])?;
                for rm in request.resource_metrics {
                    let key = resource_key(rm.resource.as_ref());
                    let one = ExportMetricsServiceRequest {
                        resource_metrics: vec![rm],
                    }
                    .encode_to_vec();
                    let items = u64::from(sluice_otlp::count_items(Signal::Metrics, &one));
                    push(key, one, items, &mut out);
                }
            }
            Signal::Logs => {
                let request = ExportLogsServiceRequest::decode(&item.payload[..])?;
                for rl in request.resource_logs {
                    let key = resource_key(rl.resource.as_ref());
                    let items: u64 = rl
                        .scope_logs
                        .iter()
                        .map(|s| s.log_records.len() as u64)
                        .sum();
                    let one = ExportLogsServiceRequest {
                        resource_logs: vec![rl],
                    }
                    .encode_to_vec();
                    push(key, one, items, &mut out);
                }
            }
            Signal::Traces => {
                let request = ExportTraceServiceRequest::decode(&item.payload[..])?;
                for rs in request.resource_spans {
                    let key = resource_key(rs.resource.as_ref());
                    let items: u64 = rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
                    let one = ExportTraceServiceRequest {
                        resource_spans: vec![rs],
                    }
                    .encode_to_vec();
                    push(key, one, items, &mut out);
                }
            }
        }
    }
    Ok(out)
}

/// Unkeyed records: consecutive payloads concatenated up to `cap` bytes (a payload larger
/// than `cap` on its own is a record of its own). No decoding.
pub fn unkeyed<'a>(items: impl Iterator<Item = &'a Item>, cap: usize) -> Vec<KeyedPayload> {
    let mut out: Vec<KeyedPayload> = Vec::new();
    let mut buf = BytesMut::new();
    let mut count = 0u64;
    for item in items {
        if !buf.is_empty() && buf.len().saturating_add(item.payload.len()) > cap {
            out.push(KeyedPayload {
                key: None,
                payload: buf.split().freeze(),
                items: std::mem::take(&mut count),
            });
        }
        buf.extend_from_slice(&item.payload);
        count += u64::from(item.count);
    }
    if !buf.is_empty() {
        out.push(KeyedPayload {
            key: None,
            payload: buf.freeze(),
            items: count,
        });
    }
    out
}

/// Splits records larger than `cap` into halves (same key) until each fits or holds a single
/// item; a single item over `cap` stays as it is and the producer refuses it.
pub fn fit(signal: Signal, records: Vec<KeyedPayload>, cap: usize) -> Vec<KeyedPayload> {
    let mut out = Vec::with_capacity(records.len());
    let mut stack: Vec<KeyedPayload> = records.into_iter().rev().collect();
    while let Some(record) = stack.pop() {
        if record.payload.len() <= cap {
            out.push(record);
            continue;
        }
        match sluice_otlp::split(signal, &record.payload) {
            Some((first, second)) => {
                let first_items = u64::from(sluice_otlp::count_items(signal, &first));
                stack.push(KeyedPayload {
                    key: record.key.clone(),
                    items: record.items.saturating_sub(first_items),
                    payload: Bytes::from(second),
                });
                stack.push(KeyedPayload {
                    key: record.key,
                    items: first_items,
                    payload: Bytes::from(first),
                });
            }
            None => out.push(record),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_testkit::payloads;

    #[test]
    fn traces_are_grouped_by_trace_id_across_items() {
        // Item one: trace 1 (2 spans) and trace 2 (1 span); item two: trace 1 (3 spans).
        let mut first = payloads::traces("a", 1, 2);
        first
            .resource_spans
            .extend(payloads::traces("b", 2, 1).resource_spans);
        let items = [
            payloads::trace_item(&first),
            payloads::trace_item(&payloads::traces("a", 1, 3)),
        ];
        let records = by_trace_id(items.iter()).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].items, 5);
        assert_eq!(records[1].items, 1);
        for record in &records {
            let decoded = ExportTraceServiceRequest::decode(&record.payload[..]).unwrap();
            let key = record.key.clone().unwrap();
            for rs in &decoded.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        assert_eq!(hex::encode(&span.trace_id).as_bytes(), &key[..]);
                    }
                }
            }
            assert_eq!(
                u64::from(sluice_otlp::count_items(Signal::Traces, &record.payload)),
                record.items
            );
        }
        assert_ne!(records[0].key, records[1].key);
    }

    #[test]
    fn resource_key_ignores_attribute_order() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let r1 = Resource {
            attributes: vec![kv("service.name", "a"), kv("host", "h")],
            ..Default::default()
        };
        let r2 = Resource {
            attributes: vec![kv("host", "h"), kv("service.name", "a")],
            ..Default::default()
        };
        let r3 = Resource {
            attributes: vec![kv("host", "h"), kv("service.name", "b")],
            ..Default::default()
        };
        assert_eq!(resource_key(Some(&r1)), resource_key(Some(&r2)));
        assert_ne!(resource_key(Some(&r1)), resource_key(Some(&r3)));
    }

    #[test]
    fn unkeyed_concatenates_up_to_the_cap_and_fit_splits() {
        let items: Vec<Item> = (0..4)
            .map(|i| payloads::trace_item(&payloads::traces("a", i, 4)))
            .collect();
        let one = items[0].payload.clone();
        let records = unkeyed(items.iter(), one.len() * 2);
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.items == 8 && r.key.is_none()));
        let fitted = fit(Signal::Traces, records, one.len() / 2 + 1);
        let total: u64 = fitted.iter().map(|r| r.items).sum();
        assert_eq!(total, 16);
        for r in &fitted {
            assert_eq!(
                u64::from(sluice_otlp::count_items(Signal::Traces, &r.payload)),
                r.items
            );
        }
    }
}
