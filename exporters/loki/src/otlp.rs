//! The OTLP logs messages the mapping reads, decoded from an item's `Bytes` payload without
//! copying the hot strings: attribute keys, string values and bytes values are slices of the
//! payload (`Bytes`), not owned `String`s and `Vec`s. Allocating and copying every attribute
//! of every record was the largest single item of the Loki exporter's profile.
//!
//! The messages mirror `opentelemetry.proto.logs.v1` and `common.v1` field for field (tags,
//! types, unknown fields skipped, last value wins, repeated messages merged) and every string
//! is checked for UTF-8 where prost checks it, so a payload decodes here exactly when
//! `ExportLogsServiceRequest::decode` accepts it, with the same values.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, bool as pbool, bytes as pbytes, double, fixed32, fixed64, int32,
    int64, message, skip_field, string, uint32,
};
use prost::{DecodeError, Message};

/// `ExportLogsServiceRequest` (and `LogsData`: same field).
#[derive(Clone, PartialEq, Message)]
pub struct LogsRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
    #[prost(message, repeated, tag = "3")]
    pub entity_refs: Vec<EntityRef>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntityRef {
    #[prost(string, tag = "1")]
    pub schema_url: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
    #[prost(string, repeated, tag = "3")]
    pub id_keys: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub description_keys: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `LogRecord`, decoded as prost's derive would (tags, types, defaults, error paths), except
/// that an attribute of the common short-string shape is read in one step
/// ([`sluice_otlp::ShortStringAttribute`]) instead of through two nested message merges.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct LogRecord {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    /// An open enum: unknown numbers are kept, as prost keeps them.
    pub severity_number: i32,
    pub severity_text: String,
    pub body: Option<AnyValue>,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub trace_id: Bytes,
    pub span_id: Bytes,
    pub event_name: String,
}

impl Message for LogRecord {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.time_unix_nano != 0 {
            fixed64::encode(1, &self.time_unix_nano, buf);
        }
        if self.severity_number != 0 {
            int32::encode(2, &self.severity_number, buf);
        }
        if !self.severity_text.is_empty() {
            string::encode(3, &self.severity_text, buf);
        }
        if let Some(body) = &self.body {
            message::encode(5, body, buf);
        }
        message::encode_repeated(6, &self.attributes, buf);
        if self.dropped_attributes_count != 0 {
            uint32::encode(7, &self.dropped_attributes_count, buf);
        }
        if self.flags != 0 {
            fixed32::encode(8, &self.flags, buf);
        }
        if !self.trace_id.is_empty() {
            pbytes::encode(9, &self.trace_id, buf);
        }
        if !self.span_id.is_empty() {
            pbytes::encode(10, &self.span_id, buf);
        }
        if self.observed_time_unix_nano != 0 {
            fixed64::encode(11, &self.observed_time_unix_nano, buf);
        }
        if !self.event_name.is_empty() {
            string::encode(12, &self.event_name, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (merged, field) = match tag {
            1 => (
                fixed64::merge(wire_type, &mut self.time_unix_nano, buf, ctx),
                "time_unix_nano",
            ),
            2 => (
                int32::merge(wire_type, &mut self.severity_number, buf, ctx),
                "severity_number",
            ),
            3 => (
                string::merge(wire_type, &mut self.severity_text, buf, ctx),
                "severity_text",
            ),
            5 => (
                message::merge(
                    wire_type,
                    self.body.get_or_insert_with(AnyValue::default),
                    buf,
                    ctx,
                ),
                "body",
            ),
            6 => {
                if wire_type == WireType::LengthDelimited
                    && let Some(attribute) = short_string_attribute(buf)
                {
                    self.attributes.push(attribute);
                    return Ok(());
                }
                (
                    message::merge_repeated(wire_type, &mut self.attributes, buf, ctx),
                    "attributes",
                )
            }
            7 => (
                uint32::merge(wire_type, &mut self.dropped_attributes_count, buf, ctx),
                "dropped_attributes_count",
            ),
            8 => (
                fixed32::merge(wire_type, &mut self.flags, buf, ctx),
                "flags",
            ),
            9 => (
                pbytes::merge(wire_type, &mut self.trace_id, buf, ctx),
                "trace_id",
            ),
            10 => (
                pbytes::merge(wire_type, &mut self.span_id, buf, ctx),
                "span_id",
            ),
            11 => (
                fixed64::merge(wire_type, &mut self.observed_time_unix_nano, buf, ctx),
                "observed_time_unix_nano",
            ),
            12 => (
                string::merge(wire_type, &mut self.event_name, buf, ctx),
                "event_name",
            ),
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        merged.map_err(|mut error| {
            error.push("LogRecord", field);
            error
        })
    }

    fn encoded_len(&self) -> usize {
        let nonzero = |set: bool, len: usize| if set { len } else { 0 };
        nonzero(
            self.time_unix_nano != 0,
            fixed64::encoded_len(1, &self.time_unix_nano),
        ) + nonzero(
            self.severity_number != 0,
            int32::encoded_len(2, &self.severity_number),
        ) + nonzero(
            !self.severity_text.is_empty(),
            string::encoded_len(3, &self.severity_text),
        ) + self
            .body
            .as_ref()
            .map_or(0, |body| message::encoded_len(5, body))
            + message::encoded_len_repeated(6, &self.attributes)
            + nonzero(
                self.dropped_attributes_count != 0,
                uint32::encoded_len(7, &self.dropped_attributes_count),
            )
            + nonzero(self.flags != 0, fixed32::encoded_len(8, &self.flags))
            + nonzero(
                !self.trace_id.is_empty(),
                pbytes::encoded_len(9, &self.trace_id),
            )
            + nonzero(
                !self.span_id.is_empty(),
                pbytes::encoded_len(10, &self.span_id),
            )
            + nonzero(
                self.observed_time_unix_nano != 0,
                fixed64::encoded_len(11, &self.observed_time_unix_nano),
            )
            + nonzero(
                !self.event_name.is_empty(),
                string::encoded_len(12, &self.event_name),
            )
    }

    fn clear(&mut self) {
        *self = LogRecord::default();
    }
}

/// The attribute at the front of `buf` (its length prefix, then the `KeyValue`) when it has
/// the short-string shape and lies in one chunk, read with the key and text as slices of the
/// payload; `None` leaves `buf` untouched for the general decode.
#[inline(always)]
fn short_string_attribute(buf: &mut impl Buf) -> Option<KeyValue> {
    let (body_len, parts) = {
        let [len, rest @ ..] = buf.chunk() else {
            return None;
        };
        if *len >= 0x80 {
            return None;
        }
        let body = rest.get(..usize::from(*len))?;
        (body.len(), sluice_otlp::ShortStringAttribute::parse(body)?)
    };
    buf.advance(1 + parts.key.start);
    let key = buf.copy_to_bytes(parts.key.len());
    let value = match parts.text {
        None => {
            buf.advance(body_len - parts.key.end);
            AnyValue::default()
        }
        Some(text) => {
            buf.advance(text.start - parts.key.end);
            AnyValue {
                value: Some(any_value::Value::StringValue(buf.copy_to_bytes(text.len()))),
            }
        }
    };
    Some(KeyValue {
        key,
        value: Some(value),
        key_strindex: 0,
    })
}

#[derive(Clone, PartialEq, Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// `KeyValue` with the key as a slice of the payload (checked UTF-8).
#[derive(Clone, PartialEq, Debug, Default)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Option<AnyValue>,
    pub key_strindex: i32,
}

impl KeyValue {
    /// The key as text (checked when decoded; a key built in code that is not UTF-8 reads as "").
    pub fn key_str(&self) -> &str {
        text(&self.key)
    }
}

/// `AnyValue` with strings and bytes as slices of the payload.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct AnyValue {
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    use super::{ArrayValue, Bytes, KeyValueList};

    #[derive(Clone, PartialEq, Debug)]
    pub enum Value {
        /// Checked UTF-8 (see [`super::text`]).
        StringValue(Bytes),
        BoolValue(bool),
        IntValue(i64),
        DoubleValue(f64),
        ArrayValue(ArrayValue),
        KvlistValue(KeyValueList),
        BytesValue(Bytes),
        StringValueStrindex(i32),
    }
}

/// A decoded string field as `&str`. Every string field was checked for UTF-8 when it was
/// decoded, so this never yields "" for a decoded value.
pub fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// Decodes one item's payload, sharing its buffer.
pub fn decode(payload: Bytes) -> Result<LogsRequest, DecodeError> {
    LogsRequest::decode(payload)
}

/// A string field: the bytes (a slice when `buf` is `Bytes`), last value wins, refused when
/// any occurrence is not UTF-8, like prost's `string::merge`.
fn merge_str(
    wire_type: WireType,
    value: &mut Bytes,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    pbytes::merge(wire_type, value, buf, ctx)?;
    // Most strings are short ASCII, which `is_ascii` checks a word at a time.
    if value.is_ascii() || std::str::from_utf8(value).is_ok() {
        return Ok(());
    }
    *value = Bytes::new();
    Err(utf8_error())
}

/// prost's error for a string that is not UTF-8. prost keeps its constructor for its own
/// generated code (deprecated for other callers), and a mirror of its string decoding needs it.
fn utf8_error() -> DecodeError {
    #[allow(deprecated)]
    DecodeError::new("invalid string value: data is not UTF-8 encoded")
}

impl Message for KeyValue {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.key.is_empty() {
            pbytes::encode(1, &self.key, buf);
        }
        if let Some(value) = &self.value {
            message::encode(2, value, buf);
        }
        if self.key_strindex != 0 {
            int32::encode(3, &self.key_strindex, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => merge_str(wire_type, &mut self.key, buf, ctx),
            2 => message::merge(
                wire_type,
                self.value.get_or_insert_with(AnyValue::default),
                buf,
                ctx,
            ),
            3 => int32::merge(wire_type, &mut self.key_strindex, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        (if self.key.is_empty() {
            0
        } else {
            pbytes::encoded_len(1, &self.key)
        }) + self
            .value
            .as_ref()
            .map_or(0, |v| message::encoded_len(2, v))
            + if self.key_strindex != 0 {
                int32::encoded_len(3, &self.key_strindex)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        *self = KeyValue::default();
    }
}

impl Message for AnyValue {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        use any_value::Value;
        match &self.value {
            None => {}
            Some(Value::StringValue(v)) => pbytes::encode(1, v, buf),
            Some(Value::BoolValue(v)) => pbool::encode(2, v, buf),
            Some(Value::IntValue(v)) => int64::encode(3, v, buf),
            Some(Value::DoubleValue(v)) => double::encode(4, v, buf),
            Some(Value::ArrayValue(v)) => message::encode(5, v, buf),
            Some(Value::KvlistValue(v)) => message::encode(6, v, buf),
            Some(Value::BytesValue(v)) => pbytes::encode(7, v, buf),
            Some(Value::StringValueStrindex(v)) => int32::encode(8, v, buf),
        }
    }

    /// A oneof as prost merges it: a message variant that is already set merges, anything
    /// else replaces.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        use any_value::Value;
        let value = match tag {
            1 => {
                let mut v = Bytes::new();
                merge_str(wire_type, &mut v, buf, ctx)?;
                Value::StringValue(v)
            }
            2 => {
                let mut v = false;
                pbool::merge(wire_type, &mut v, buf, ctx)?;
                Value::BoolValue(v)
            }
            3 => {
                let mut v = 0;
                int64::merge(wire_type, &mut v, buf, ctx)?;
                Value::IntValue(v)
            }
            4 => {
                let mut v = 0.0;
                double::merge(wire_type, &mut v, buf, ctx)?;
                Value::DoubleValue(v)
            }
            5 => {
                if let Some(Value::ArrayValue(v)) = &mut self.value {
                    return message::merge(wire_type, v, buf, ctx);
                }
                let mut v = ArrayValue::default();
                message::merge(wire_type, &mut v, buf, ctx)?;
                Value::ArrayValue(v)
            }
            6 => {
                if let Some(Value::KvlistValue(v)) = &mut self.value {
                    return message::merge(wire_type, v, buf, ctx);
                }
                let mut v = KeyValueList::default();
                message::merge(wire_type, &mut v, buf, ctx)?;
                Value::KvlistValue(v)
            }
            7 => {
                let mut v = Bytes::new();
                pbytes::merge(wire_type, &mut v, buf, ctx)?;
                Value::BytesValue(v)
            }
            8 => {
                let mut v = 0;
                int32::merge(wire_type, &mut v, buf, ctx)?;
                Value::StringValueStrindex(v)
            }
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        self.value = Some(value);
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        use any_value::Value;
        match &self.value {
            None => 0,
            Some(Value::StringValue(v)) => pbytes::encoded_len(1, v),
            Some(Value::BoolValue(v)) => pbool::encoded_len(2, v),
            Some(Value::IntValue(v)) => int64::encoded_len(3, v),
            Some(Value::DoubleValue(v)) => double::encoded_len(4, v),
            Some(Value::ArrayValue(v)) => message::encoded_len(5, v),
            Some(Value::KvlistValue(v)) => message::encoded_len(6, v),
            Some(Value::BytesValue(v)) => pbytes::encoded_len(7, v),
            Some(Value::StringValueStrindex(v)) => int32::encoded_len(8, v),
        }
    }

    fn clear(&mut self) {
        self.value = None;
    }
}
