//! The OTLP logs messages the mapping reads, as views into an item's payload: every string
//! and bytes field is a slice of the payload, so decoding allocates only the lists (records,
//! attributes) and checks each string for UTF-8 once, here. With reference-counted slices and
//! a second UTF-8 check when the line was written, decoding was 22 % of the collector's
//! profile under Loki load; it is 12 % now (`benches/RESULTS.md`, session 8).
//!
//! [`decode`] mirrors prost's decoding of `opentelemetry.proto.collector.logs.v1` field for
//! field: tags and wire types, unknown fields skipped, last value wins, a repeated singular
//! message merged into the first, a oneof message variant merged only into the same variant,
//! strings refused unless UTF-8. What it does not cover it leaves to prost: a malformed
//! payload, a group, nesting deeper than [`MAX_DEPTH`]. [`with_request`] then decodes with
//! prost, so a payload is accepted exactly when `ExportLogsServiceRequest::decode` accepts it,
//! with prost's error when it does not.
//!
//! Only the fields the mapping reads are kept; the others are decoded (and so checked) and
//! dropped.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1 as proto;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
use prost::{DecodeError, Message};

/// Nesting below prost's recursion limit (100), so prost's limit can never be what decides a
/// payload [`decode`] accepts; anything deeper goes to prost.
pub const MAX_DEPTH: u32 = 64;

/// The most attribute slots a record is given ahead from the record before it.
const ATTRIBUTES_HINT_MAX: usize = 64;

/// `ExportLogsServiceRequest` (and `LogsData`: same field).
#[derive(Clone, PartialEq, Debug, Default)]
pub struct LogsRequest<'a> {
    pub resource_logs: Vec<ResourceLogs<'a>>,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct ResourceLogs<'a> {
    pub resource: Option<Resource<'a>>,
    pub scope_logs: Vec<ScopeLogs<'a>>,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct Resource<'a> {
    pub attributes: Vec<KeyValue<'a>>,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct ScopeLogs<'a> {
    pub scope: Option<InstrumentationScope<'a>>,
    pub log_records: Vec<LogRecord<'a>>,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct InstrumentationScope<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct LogRecord<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    /// An open enum: unknown numbers are kept, as prost keeps them.
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: Option<AnyValue<'a>>,
    pub attributes: Vec<KeyValue<'a>>,
    pub flags: u32,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct KeyValue<'a> {
    pub key: &'a str,
    pub value: Option<AnyValue<'a>>,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct AnyValue<'a> {
    pub value: Option<any_value::Value<'a>>,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct ArrayValue<'a> {
    pub values: Vec<AnyValue<'a>>,
}

#[derive(Clone, PartialEq, Debug, Default)]
pub struct KeyValueList<'a> {
    pub values: Vec<KeyValue<'a>>,
}

pub mod any_value {
    use super::{ArrayValue, KeyValueList};

    #[derive(Clone, PartialEq, Debug)]
    pub enum Value<'a> {
        StringValue(&'a str),
        BoolValue(bool),
        IntValue(i64),
        DoubleValue(f64),
        ArrayValue(ArrayValue<'a>),
        KvlistValue(KeyValueList<'a>),
        BytesValue(&'a [u8]),
        StringValueStrindex(i32),
    }
}

/// Decodes `payload` and hands the request to `f`: through [`decode`], else through prost
/// (see the module documentation), whose error is returned when neither accepts it.
pub fn with_request<T>(
    payload: &[u8],
    f: impl FnOnce(&LogsRequest<'_>) -> T,
) -> Result<T, DecodeError> {
    if let Some(request) = decode(payload) {
        return Ok(f(&request));
    }
    let owned = ExportLogsServiceRequest::decode(payload)?;
    Ok(f(&LogsRequest::from_proto(&owned)))
}

/// The request in `payload` as views into it, or `None` when it is malformed or needs what
/// only prost decodes (a group, deep nesting): decode it with prost then, as [`with_request`]
/// does.
pub fn decode(payload: &[u8]) -> Option<LogsRequest<'_>> {
    let mut request = LogsRequest::default();
    fields(payload, |tag, wire, buf| match tag {
        1 => {
            let mut resource_logs = ResourceLogs::default();
            merge_resource_logs(&mut resource_logs, delimited(wire, buf)?, 1)?;
            request.resource_logs.push(resource_logs);
            Some(())
        }
        _ => skip(wire, tag, buf),
    })?;
    Some(request)
}

impl<'a> LogsRequest<'a> {
    /// The same request as views into a prost-decoded one.
    pub fn from_proto(request: &'a ExportLogsServiceRequest) -> LogsRequest<'a> {
        let attributes =
            |list: &'a [proto::KeyValue]| list.iter().map(KeyValue::from_proto).collect();
        LogsRequest {
            resource_logs: request
                .resource_logs
                .iter()
                .map(|rl| ResourceLogs {
                    resource: rl.resource.as_ref().map(|r| Resource {
                        attributes: attributes(&r.attributes),
                    }),
                    scope_logs: rl
                        .scope_logs
                        .iter()
                        .map(|sl| ScopeLogs {
                            scope: sl.scope.as_ref().map(|s| InstrumentationScope {
                                name: &s.name,
                                version: &s.version,
                            }),
                            log_records: sl
                                .log_records
                                .iter()
                                .map(|r| LogRecord {
                                    time_unix_nano: r.time_unix_nano,
                                    observed_time_unix_nano: r.observed_time_unix_nano,
                                    severity_number: r.severity_number,
                                    severity_text: &r.severity_text,
                                    body: r.body.as_ref().map(AnyValue::from_proto),
                                    attributes: attributes(&r.attributes),
                                    flags: r.flags,
                                    trace_id: &r.trace_id,
                                    span_id: &r.span_id,
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl<'a> KeyValue<'a> {
    fn from_proto(kv: &'a proto::KeyValue) -> KeyValue<'a> {
        KeyValue {
            key: &kv.key,
            value: kv.value.as_ref().map(AnyValue::from_proto),
        }
    }
}

impl<'a> AnyValue<'a> {
    fn from_proto(v: &'a proto::AnyValue) -> AnyValue<'a> {
        use any_value::Value;
        use proto::any_value::Value as P;
        AnyValue {
            value: v.value.as_ref().map(|v| match v {
                P::StringValue(s) => Value::StringValue(s),
                P::BoolValue(b) => Value::BoolValue(*b),
                P::IntValue(i) => Value::IntValue(*i),
                P::DoubleValue(f) => Value::DoubleValue(*f),
                P::ArrayValue(a) => Value::ArrayValue(ArrayValue {
                    values: a.values.iter().map(AnyValue::from_proto).collect(),
                }),
                P::KvlistValue(l) => Value::KvlistValue(KeyValueList {
                    values: l.values.iter().map(KeyValue::from_proto).collect(),
                }),
                P::BytesValue(b) => Value::BytesValue(b),
                P::StringValueStrindex(i) => Value::StringValueStrindex(*i),
            }),
        }
    }
}

// The decoding. Every function returns `None` where prost's would fail or where the payload
// needs what only prost decodes; `with_request` then asks prost.

/// Calls `field` with each field's tag, wire type and the buffer positioned at its value; the
/// field must consume exactly its value.
fn fields<'a>(
    mut buf: &'a [u8],
    mut field: impl FnMut(u32, WireType, &mut &'a [u8]) -> Option<()>,
) -> Option<()> {
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        field(tag, wire, &mut buf)?;
    }
    Some(())
}

/// An unknown field, skipped as prost skips it (groups are left to prost).
fn skip(wire: WireType, tag: u32, buf: &mut &[u8]) -> Option<()> {
    match wire {
        WireType::StartGroup | WireType::EndGroup => None,
        _ => skip_field(wire, tag, buf, DecodeContext::default()).ok(),
    }
}

fn delimited<'a>(wire: WireType, buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    if wire != WireType::LengthDelimited {
        return None;
    }
    let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
    let value = buf.get(..len)?;
    *buf = buf.get(len..)?;
    Some(value)
}

fn string<'a>(wire: WireType, buf: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(delimited(wire, buf)?).ok()
}

fn varint(wire: WireType, buf: &mut &[u8]) -> Option<u64> {
    if wire != WireType::Varint {
        return None;
    }
    decode_varint(buf).ok()
}

fn fixed64(wire: WireType, buf: &mut &[u8]) -> Option<u64> {
    if wire != WireType::SixtyFourBit {
        return None;
    }
    let (value, rest) = buf.split_first_chunk::<8>()?;
    *buf = rest;
    Some(u64::from_le_bytes(*value))
}

fn fixed32(wire: WireType, buf: &mut &[u8]) -> Option<u32> {
    if wire != WireType::ThirtyTwoBit {
        return None;
    }
    let (value, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(u32::from_le_bytes(*value))
}

/// The value of a nested message field at `depth`, or `None` past [`MAX_DEPTH`].
fn nested<'a>(wire: WireType, buf: &mut &'a [u8], depth: u32) -> Option<&'a [u8]> {
    if depth > MAX_DEPTH {
        return None;
    }
    delimited(wire, buf)
}

fn merge_resource_logs<'a>(rl: &mut ResourceLogs<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1 => {
            let resource = rl.resource.get_or_insert_with(Resource::default);
            merge_resource(resource, nested(wire, buf, depth + 1)?, depth + 1)
        }
        2 => {
            let mut scope_logs = ScopeLogs::default();
            merge_scope_logs(&mut scope_logs, nested(wire, buf, depth + 1)?, depth + 1)?;
            rl.scope_logs.push(scope_logs);
            Some(())
        }
        3 => string(wire, buf).map(drop), // schema_url
        _ => skip(wire, tag, buf),
    })
}

fn merge_resource<'a>(resource: &mut Resource<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1 => push_attribute(&mut resource.attributes, wire, buf, depth + 1),
        2 => varint(wire, buf).map(drop), // dropped_attributes_count
        3 => check_entity_ref(nested(wire, buf, depth + 1)?), // entity_refs
        _ => skip(wire, tag, buf),
    })
}

/// `EntityRef`: four string fields (two repeated), checked and dropped.
fn check_entity_ref(buf: &[u8]) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1..=4 => string(wire, buf).map(drop),
        _ => skip(wire, tag, buf),
    })
}

fn merge_scope_logs<'a>(sl: &mut ScopeLogs<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1 => {
            let scope = sl.scope.get_or_insert_with(InstrumentationScope::default);
            merge_scope(scope, nested(wire, buf, depth + 1)?, depth + 1)
        }
        2 => {
            // Records of one scope tend to carry as many attributes as the one before: sized
            // so, the list is allocated once instead of growing through 4, 8, ... Capped, so
            // that one record with a huge list does not size every empty record after it.
            let attributes = sl
                .log_records
                .last()
                .map_or(0, |r| r.attributes.len().min(ATTRIBUTES_HINT_MAX));
            let mut record = LogRecord {
                attributes: Vec::with_capacity(attributes),
                ..LogRecord::default()
            };
            merge_log_record(&mut record, nested(wire, buf, depth + 1)?, depth + 1)?;
            sl.log_records.push(record);
            Some(())
        }
        3 => string(wire, buf).map(drop), // schema_url
        _ => skip(wire, tag, buf),
    })
}

fn merge_scope<'a>(scope: &mut InstrumentationScope<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1 => string(wire, buf).map(|s| scope.name = s),
        2 => string(wire, buf).map(|s| scope.version = s),
        // attributes: checked and dropped.
        3 => push_attribute(&mut Vec::new(), wire, buf, depth + 1),
        4 => varint(wire, buf).map(drop), // dropped_attributes_count
        _ => skip(wire, tag, buf),
    })
}

fn merge_log_record<'a>(record: &mut LogRecord<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1 => fixed64(wire, buf).map(|v| record.time_unix_nano = v),
        // int32 and uint32 as prost reads them: the varint truncated.
        2 => varint(wire, buf).map(|v| record.severity_number = v as i32),
        3 => string(wire, buf).map(|s| record.severity_text = s),
        5 => {
            let body = record.body.get_or_insert_with(AnyValue::default);
            merge_any_value(body, nested(wire, buf, depth + 1)?, depth + 1)
        }
        6 => push_attribute(&mut record.attributes, wire, buf, depth + 1),
        7 => varint(wire, buf).map(drop), // dropped_attributes_count
        8 => fixed32(wire, buf).map(|v| record.flags = v),
        9 => delimited(wire, buf).map(|b| record.trace_id = b),
        10 => delimited(wire, buf).map(|b| record.span_id = b),
        11 => fixed64(wire, buf).map(|v| record.observed_time_unix_nano = v),
        12 => string(wire, buf).map(drop), // event_name
        _ => skip(wire, tag, buf),
    })
}

/// One more element of a repeated `KeyValue` field at `depth`. The common short-string shape
/// ([`sluice_otlp::ShortStringAttribute`]) is read in one step.
fn push_attribute<'a>(
    attributes: &mut Vec<KeyValue<'a>>,
    wire: WireType,
    buf: &mut &'a [u8],
    depth: u32,
) -> Option<()> {
    let body = nested(wire, buf, depth)?;
    // Each branch pushes its own value instead of both building one that is pushed after
    // them: a copy through a shared temporary less, and the loadgen-shaped conversion bench
    // ~5 % faster (benches/RESULTS.md, session 12).
    match sluice_otlp::ShortStringAttribute::parse_str(body) {
        Some((key, text)) => attributes.push(KeyValue {
            key,
            value: Some(AnyValue {
                value: text.map(any_value::Value::StringValue),
            }),
        }),
        None => {
            let mut kv = KeyValue::default();
            merge_key_value(&mut kv, body, depth)?;
            attributes.push(kv);
        }
    }
    Some(())
}

fn merge_key_value<'a>(kv: &mut KeyValue<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1 => string(wire, buf).map(|s| kv.key = s),
        2 => {
            let value = kv.value.get_or_insert_with(AnyValue::default);
            merge_any_value(value, nested(wire, buf, depth + 1)?, depth + 1)
        }
        3 => varint(wire, buf).map(drop), // key_strindex
        _ => skip(wire, tag, buf),
    })
}

/// The oneof as prost merges it: a message variant that is already set merges, anything else
/// replaces.
fn merge_any_value<'a>(v: &mut AnyValue<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    use any_value::Value;
    fields(buf, |tag, wire, buf| {
        let value = match tag {
            1 => Value::StringValue(string(wire, buf)?),
            2 => Value::BoolValue(varint(wire, buf)? != 0),
            3 => Value::IntValue(varint(wire, buf)? as i64),
            4 => Value::DoubleValue(f64::from_bits(fixed64(wire, buf)?)),
            5 => {
                let inner = nested(wire, buf, depth + 1)?;
                if let Some(Value::ArrayValue(array)) = &mut v.value {
                    return merge_array(array, inner, depth + 1);
                }
                let mut array = ArrayValue::default();
                merge_array(&mut array, inner, depth + 1)?;
                Value::ArrayValue(array)
            }
            6 => {
                let inner = nested(wire, buf, depth + 1)?;
                if let Some(Value::KvlistValue(list)) = &mut v.value {
                    return merge_kvlist(list, inner, depth + 1);
                }
                let mut list = KeyValueList::default();
                merge_kvlist(&mut list, inner, depth + 1)?;
                Value::KvlistValue(list)
            }
            7 => Value::BytesValue(delimited(wire, buf)?),
            8 => Value::StringValueStrindex(varint(wire, buf)? as i32),
            _ => return skip(wire, tag, buf),
        };
        v.value = Some(value);
        Some(())
    })
}

fn merge_array<'a>(array: &mut ArrayValue<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1 => {
            let mut value = AnyValue::default();
            merge_any_value(&mut value, nested(wire, buf, depth + 1)?, depth + 1)?;
            array.values.push(value);
            Some(())
        }
        _ => skip(wire, tag, buf),
    })
}

fn merge_kvlist<'a>(list: &mut KeyValueList<'a>, buf: &'a [u8], depth: u32) -> Option<()> {
    fields(buf, |tag, wire, buf| match tag {
        1 => push_attribute(&mut list.values, wire, buf, depth + 1),
        _ => skip(wire, tag, buf),
    })
}
