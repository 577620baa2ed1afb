//! The validating walker: one pass over the protobuf wire format, no allocation, no decode.

use crate::error::{PathSegment, WireError, WireErrorKind};
use crate::rules::{self, Checked, Problem, ProblemKind, Reason};
use crate::schema::{Field, IdRule, Kind, Schema, UNKNOWN};

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
pub(crate) const WT_LEN: u8 = 2;
const WT_START_GROUP: u8 = 3;
const WT_END_GROUP: u8 = 4;
const WT_I32: u8 = 5;

/// Deepest nesting of messages and groups accepted. Real OTLP nests about 8 levels plus
/// attribute values; prost refuses past 100, and staying below that keeps `validate` at least
/// as strict as a prost decode.
pub(crate) const MAX_DEPTH: u32 = 64;

/// Walks `buf` as a `schema` message and returns the number of item messages inside.
pub(crate) fn walk(schema: &'static Schema, buf: &[u8]) -> Result<u32, WireError> {
    let mut walker = Walker::new(None);
    walker.message(schema, buf, 0, buf.len(), 0)?;
    Ok(walker.count)
}

/// Walks `buf` like [`walk`] and applies the intake rules to every item.
pub(crate) fn check(
    schema: &'static Schema,
    buf: &[u8],
    limits: Limits,
) -> Result<Checked, WireError> {
    let mut walker = Walker::new(Some(limits));
    walker.message(schema, buf, 0, buf.len(), 0)?;
    Ok(Checked {
        items: walker.count,
        rejected: walker.rejected,
        first: walker.first,
        by_reason: walker.by_reason,
        limits,
    })
}

/// Re-encodes a request that passed [`check`] without its refused items. Cold path: it runs
/// only when something was refused.
pub(crate) fn filter(
    schema: &'static Schema,
    buf: &[u8],
    limits: Limits,
) -> Result<Vec<u8>, WireError> {
    let mut walker = Walker::new(Some(limits));
    let mut out = Vec::with_capacity(buf.len());
    walker.filter_message(schema, buf, 0, buf.len(), 0, &mut out)?;
    Ok(out)
}

/// The intake rules' parameters, fixed for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Timestamps above this (Unix ns) are too far in the future.
    pub latest_ns: u64,
}

struct Walker {
    count: u32,
    limits: Option<Limits>,
    /// The first problem of the item being walked.
    item_problem: Option<Problem>,
    /// `IdRule::Required` bits seen in the item being walked.
    item_ids: u8,
    /// A problem every item inside the current `Metric` shares (its name).
    inherited: Option<Problem>,
    rejected: u32,
    first: Option<Problem>,
    by_reason: [u32; Reason::COUNT],
}

impl Walker {
    fn new(limits: Option<Limits>) -> Walker {
        Walker {
            count: 0,
            limits,
            item_problem: None,
            item_ids: 0,
            inherited: None,
            rejected: 0,
            first: None,
            by_reason: [0; Reason::COUNT],
        }
    }

    #[cold]
    fn problem(&mut self, kind: ProblemKind, field: &'static str, at: usize, len: usize) {
        if self.item_problem.is_none() {
            self.item_problem = Some(Problem {
                kind,
                field,
                item: self.count,
                at,
                len,
            });
        }
    }
}

/// Reads a varint at `*pos`, refusing the ones prost refuses (truncated, over 10 bytes, or
/// overflowing 64 bits).
#[inline(always)]
fn varint(data: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    match data.get(start) {
        Some(&b) if b < 0x80 => {
            *pos = start + 1;
            return Ok(u64::from(b));
        }
        Some(_) => {}
        None => return Err(WireError::at(WireErrorKind::Truncated, start)),
    }
    varint_slow(data, pos)
}

#[inline(never)]
fn varint_slow(data: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&b) = data.get(start + i) else {
            return Err(WireError::at(WireErrorKind::Truncated, start));
        };
        if i == 9 {
            // The 10th byte holds only bit 63: anything above 1 overflows.
            if b > 1 {
                return Err(WireError::at(WireErrorKind::InvalidVarint, start));
            }
            *pos = start + 10;
            return Ok(value | (u64::from(b) << 63));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos = start + i + 1;
            return Ok(value);
        }
    }
    Err(WireError::at(WireErrorKind::InvalidVarint, start))
}

/// Decodes a field key into (field number, wire type), refusing what prost refuses.
#[inline(always)]
pub(crate) fn key(data: &[u8], pos: &mut usize) -> Result<(u32, u8), WireError> {
    let at = *pos;
    let key = varint(data, pos)?;
    let wire = (key & 7) as u8;
    if key > u64::from(u32::MAX) || key >> 3 == 0 || wire > WT_I32 {
        return Err(WireError::at(WireErrorKind::InvalidKey(key), at));
    }
    Ok(((key >> 3) as u32, wire))
}

/// Advances past `n` bytes, or fails if they are not there.
#[inline(always)]
fn skip(end: usize, pos: &mut usize, n: usize) -> Result<(), WireError> {
    if end - *pos < n {
        return Err(WireError::at(WireErrorKind::Truncated, *pos));
    }
    *pos += n;
    Ok(())
}

/// Reads a length prefix and returns the body's range.
#[inline(always)]
pub(crate) fn length_delimited(data: &[u8], pos: &mut usize) -> Result<(usize, usize), WireError> {
    let at = *pos;
    let len = varint(data, pos)?;
    let remaining = data.len() - *pos;
    if len > remaining as u64 {
        return Err(WireError::at(WireErrorKind::Truncated, at));
    }
    let start = *pos;
    *pos = start + len as usize;
    Ok((start, *pos))
}

/// Whether `bytes` is UTF-8, as protobuf requires of `string` fields. Nearly every OTLP
/// string is short ASCII (attribute keys, names, ids as text), which `is_ascii` checks a word
/// at a time; the general check showed as 6 % of Sluice's CPU on the trace path.
#[inline(always)]
fn utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

impl Walker {
    /// Whether `body`, a `KeyValue` of `schema`, has the shape nearly every attribute has
    /// (see [`ShortStringAttribute`]) and the general walk would find no problem in it: for a
    /// data point attribute, that means a key that is a valid label name too. Walking
    /// attributes one field at a time was most of the walker's cost on spans and log records.
    #[inline(always)]
    fn short_string_attribute(&self, schema: &Schema, body: &[u8]) -> bool {
        let Some(parts) = ShortStringAttribute::parse(body) else {
            return false;
        };
        let label_key = matches!(schema.fields.get(1), Some(f) if matches!(f.kind, Kind::LabelKey));
        !label_key || self.limits.is_none() || rules::label_name_ok(&body[parts.key])
    }
}

/// A `KeyValue` encoding of the shape nearly every attribute has: an ASCII key, then a value
/// that is empty or a single ASCII `string_value`, fields in order, every length under 128.
/// Anything else (other value types, non-ASCII text, longer strings, repeated or unknown
/// fields) does not parse and takes the general path, so a decoder may use this as a fast
/// path and get exactly what prost's decode gives. [`ShortStringAttribute::parse_str`] also
/// reads the shape with non-ASCII UTF-8 strings, for a decoder that wants them as `&str`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShortStringAttribute {
    /// Where the key is in the body.
    pub key: std::ops::Range<usize>,
    /// Where the `string_value` is, or `None` for an `AnyValue` with no value set.
    pub text: Option<std::ops::Range<usize>>,
}

impl ShortStringAttribute {
    #[inline(always)]
    pub fn parse(body: &[u8]) -> Option<ShortStringAttribute> {
        let short = Self::shape(body)?;
        // Framing bytes are below 0x80 too: the key and text are ASCII when the body is.
        body.is_ascii().then_some(short)
    }

    /// The key and `string_value` as text, for a body of the same shape whose strings are
    /// UTF-8 (not only ASCII). Every framing byte of the shape is below 0x80, so the strings
    /// are valid exactly when the whole body is, and one check of it covers both.
    #[inline(always)]
    pub fn parse_str(body: &[u8]) -> Option<(&str, Option<&str>)> {
        let short = Self::shape(body)?;
        let text = std::str::from_utf8(body).ok()?;
        let value = match short.text {
            Some(range) => Some(text.get(range)?),
            None => None,
        };
        Some((text.get(short.key)?, value))
    }

    /// The shape without the ASCII condition.
    #[inline(always)]
    fn shape(body: &[u8]) -> Option<ShortStringAttribute> {
        // key: tag 1, length-delimited.
        let [0x0a, key_len, rest @ ..] = body else {
            return None;
        };
        let key_len = usize::from(*key_len);
        if key_len >= 0x80 || rest.len() < key_len + 2 {
            return None;
        }
        let rest = rest.get(key_len..)?;
        // value: tag 2, length-delimited, to the end of the body.
        let [0x12, value_len, value @ ..] = rest else {
            return None;
        };
        if *value_len >= 0x80 || usize::from(*value_len) != value.len() {
            return None;
        }
        let text = match value {
            [] => None,
            // string_value: tag 1, the whole value.
            [0x0a, text_len, text @ ..]
                if *text_len < 0x80 && usize::from(*text_len) == text.len() =>
            {
                Some(body.len() - text.len()..body.len())
            }
            _ => return None,
        };
        Some(ShortStringAttribute {
            key: 2..2 + key_len,
            text,
        })
    }
}

fn expected_wire(kind: Kind) -> &'static str {
    match kind {
        Kind::Varint | Kind::PackedVarint => "varint",
        Kind::Fixed64 | Kind::PackedFixed64 | Kind::Time => "64-bit",
        Kind::Fixed32 => "32-bit",
        _ => "length-delimited",
    }
}

impl Walker {
    /// Walks the message occupying `buf[start..end]`.
    fn message(
        &mut self,
        schema: &'static Schema,
        buf: &[u8],
        start: usize,
        end: usize,
        depth: u32,
    ) -> Result<(), WireError> {
        // Slicing at `end` makes every read respect the message boundary.
        let data = &buf[..end];
        let mut pos = start;
        while pos < end {
            let (number, wire) = key(data, &mut pos)?;
            let field = schema
                .fields
                .get(number as usize)
                .copied()
                .unwrap_or(UNKNOWN);
            if let Err(mut err) = self.field(field, number, wire, data, &mut pos, depth) {
                err.push(match field.kind {
                    Kind::Unknown => PathSegment::Unknown(number),
                    _ => PathSegment::Field(field.name),
                });
                return Err(err);
            }
        }
        Ok(())
    }

    /// Walks one item message and returns its first problem under the intake rules.
    fn item(
        &mut self,
        schema: &'static Schema,
        data: &[u8],
        start: usize,
        end: usize,
        depth: u32,
    ) -> Result<Option<Problem>, WireError> {
        self.item_problem = self.inherited.map(|p| Problem {
            item: self.count,
            ..p
        });
        self.item_ids = 0;
        self.message(schema, data, start, end, depth)?;
        if self.limits.is_some() {
            let missing = schema.required_ids & !self.item_ids;
            if missing != 0 {
                // Bit 1 is the trace id (schema.rs); name the first one missing.
                let field = if missing & 1 != 0 {
                    "trace_id"
                } else {
                    "span_id"
                };
                self.problem(ProblemKind::MissingId, field, start, 0);
            }
        }
        Ok(self.item_problem.take())
    }

    #[inline(always)]
    fn field(
        &mut self,
        field: Field,
        number: u32,
        wire: u8,
        data: &[u8],
        pos: &mut usize,
        depth: u32,
    ) -> Result<(), WireError> {
        let kind = field.kind;
        let end = data.len();
        let at = *pos;
        match (kind, wire) {
            (Kind::Varint | Kind::PackedVarint | Kind::Unknown, WT_VARINT) => {
                varint(data, pos)?;
            }
            (Kind::Time, WT_I64) => {
                skip(end, pos, 8)?;
                if let Some(limits) = self.limits {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(&data[at..at + 8]);
                    if u64::from_le_bytes(le) > limits.latest_ns {
                        self.problem(ProblemKind::FutureTimestamp, field.name, at, 8);
                    }
                }
            }
            (Kind::Fixed64 | Kind::PackedFixed64 | Kind::Unknown, WT_I64) => skip(end, pos, 8)?,
            (Kind::Fixed32 | Kind::Unknown, WT_I32) => skip(end, pos, 4)?,
            (Kind::Varint | Kind::Fixed64 | Kind::Fixed32 | Kind::Time, WT_LEN) => {
                return Err(WireError::at(
                    WireErrorKind::WireType {
                        expected: expected_wire(kind),
                        found: wire,
                    },
                    at,
                ));
            }
            (_, WT_LEN) => {
                let (body_start, body_end) = length_delimited(data, pos)?;
                let body = &data[body_start..body_end];
                match kind {
                    Kind::Msg(sub)
                        if sub.key_value
                            && depth + 2 < MAX_DEPTH
                            && self.short_string_attribute(sub, body) => {}
                    Kind::Msg(sub) => {
                        if depth >= MAX_DEPTH {
                            return Err(WireError::at(WireErrorKind::TooDeep, body_start));
                        }
                        if sub.is_item {
                            let problem = self.item(sub, data, body_start, body_end, depth + 1)?;
                            if let Some(problem) = problem {
                                self.reject(problem);
                            }
                            self.count = self.count.saturating_add(1);
                        } else if sub.metric && self.limits.is_some() {
                            self.inherited = metric_name_problem(data, body_start, body_end);
                            let walked = self.message(sub, data, body_start, body_end, depth + 1);
                            self.inherited = None;
                            walked?;
                        } else {
                            self.message(sub, data, body_start, body_end, depth + 1)?;
                        }
                    }
                    Kind::Str => {
                        if !utf8(body) {
                            return Err(WireError::at(WireErrorKind::InvalidUtf8, body_start));
                        }
                    }
                    Kind::LabelKey => {
                        if !utf8(body) {
                            return Err(WireError::at(WireErrorKind::InvalidUtf8, body_start));
                        }
                        if self.limits.is_some() && !rules::label_name_ok(body) {
                            self.problem(
                                ProblemKind::LabelName,
                                field.name,
                                body_start,
                                body.len(),
                            );
                        }
                    }
                    Kind::Id(len, rule) => {
                        if !body.is_empty() && body.len() != len {
                            return Err(WireError::at(
                                WireErrorKind::IdLength {
                                    expected: len,
                                    found: body.len(),
                                },
                                body_start,
                            ));
                        }
                        if self.limits.is_some() && !body.is_empty() {
                            if let IdRule::Required(bit) = rule {
                                self.item_ids |= bit;
                            }
                            if rule != IdRule::Any && body.iter().all(|&b| b == 0) {
                                self.problem(ProblemKind::ZeroId, field.name, body_start, len);
                            }
                        }
                    }
                    Kind::Bytes | Kind::Unknown => {}
                    Kind::PackedFixed64 => {
                        if !body.len().is_multiple_of(8) {
                            return Err(WireError::at(
                                WireErrorKind::PackedLength(body.len()),
                                body_start,
                            ));
                        }
                    }
                    Kind::PackedVarint => {
                        let mut p = 0;
                        while p < body.len() {
                            varint(body, &mut p).map_err(|e| e.shifted(body_start))?;
                        }
                    }
                    // Refused above, before reading the length.
                    Kind::Varint | Kind::Fixed64 | Kind::Fixed32 | Kind::Time => {}
                }
            }
            (Kind::Unknown, WT_START_GROUP) => skip_group(number, data, pos, depth)?,
            (Kind::Unknown, WT_END_GROUP) => {
                return Err(WireError::at(WireErrorKind::UnexpectedEndGroup, at));
            }
            (_, found) => {
                return Err(WireError::at(
                    WireErrorKind::WireType {
                        expected: expected_wire(kind),
                        found,
                    },
                    at,
                ));
            }
        }
        Ok(())
    }

    #[cold]
    fn reject(&mut self, problem: Problem) {
        self.rejected = self.rejected.saturating_add(1);
        let reason = problem.reason() as usize;
        self.by_reason[reason] = self.by_reason[reason].saturating_add(1);
        if self.first.is_none() {
            self.first = Some(problem);
        }
    }

    /// Copies `buf[start..end]` into `out`, leaving out refused items and rewriting the
    /// lengths of the messages that held them.
    fn filter_message(
        &mut self,
        schema: &'static Schema,
        buf: &[u8],
        start: usize,
        end: usize,
        depth: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let data = &buf[..end];
        let mut pos = start;
        while pos < end {
            let field_start = pos;
            let (number, wire) = key(data, &mut pos)?;
            let field = schema
                .fields
                .get(number as usize)
                .copied()
                .unwrap_or(UNKNOWN);
            match (field.kind, wire) {
                (Kind::Msg(sub), WT_LEN) if sub.is_item || sub.container => {
                    let (body_start, body_end) = length_delimited(data, &mut pos)?;
                    if depth >= MAX_DEPTH {
                        return Err(WireError::at(WireErrorKind::TooDeep, body_start));
                    }
                    if sub.is_item {
                        let problem = self.item(sub, data, body_start, body_end, depth + 1)?;
                        self.count = self.count.saturating_add(1);
                        if problem.is_none() {
                            out.extend_from_slice(&data[field_start..body_end]);
                        }
                        continue;
                    }
                    if sub.metric && metric_name_problem(data, body_start, body_end).is_some() {
                        // Every point of a metric Prometheus cannot name is refused: leave
                        // out the whole metric, counting its points.
                        self.count = self
                            .count
                            .saturating_add(walk(sub, &data[body_start..body_end])?);
                        continue;
                    }
                    let mut inner = Vec::with_capacity(body_end - body_start);
                    self.filter_message(sub, data, body_start, body_end, depth + 1, &mut inner)?;
                    encode_varint(u64::from(number) << 3 | u64::from(WT_LEN), out);
                    encode_varint(inner.len() as u64, out);
                    out.extend_from_slice(&inner);
                }
                _ => {
                    self.field(field, number, wire, data, &mut pos, depth)?;
                    out.extend_from_slice(&data[field_start..pos]);
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The problem of a `Metric` (in `data[start..end]`) whose name Prometheus cannot use, found by
/// hopping over its top-level fields. Malformed input yields `None`: the main walk reports it.
#[cold]
fn metric_name_problem(data: &[u8], start: usize, end: usize) -> Option<Problem> {
    let data = &data[..end];
    let mut pos = start;
    while pos < end {
        let (number, wire) = key(data, &mut pos).ok()?;
        match wire {
            WT_VARINT => {
                varint(data, &mut pos).ok()?;
            }
            WT_I64 => skip(end, &mut pos, 8).ok()?,
            WT_I32 => skip(end, &mut pos, 4).ok()?,
            WT_LEN => {
                let (s, e) = length_delimited(data, &mut pos).ok()?;
                if number == 1 {
                    return (!rules::metric_name_ok(&data[s..e])).then_some(Problem {
                        kind: ProblemKind::MetricName,
                        field: "name",
                        item: 0,
                        at: s,
                        len: e - s,
                    });
                }
            }
            _ => return None,
        }
    }
    Some(Problem {
        kind: ProblemKind::MetricName,
        field: "name",
        item: 0,
        at: start,
        len: 0,
    })
}

/// Skips one field of any wire type whose key was just read.
pub(crate) fn skip_field(
    number: u32,
    wire: u8,
    data: &[u8],
    pos: &mut usize,
) -> Result<(), WireError> {
    let end = data.len();
    match wire {
        WT_VARINT => varint(data, pos).map(|_| ()),
        WT_I64 => skip(end, pos, 8),
        WT_I32 => skip(end, pos, 4),
        WT_LEN => length_delimited(data, pos).map(|_| ()),
        WT_START_GROUP => skip_group(number, data, pos, 0),
        _ => Err(WireError::at(WireErrorKind::UnexpectedEndGroup, *pos)),
    }
}

/// Skips a (deprecated) group of an unknown field up to its matching end marker.
fn skip_group(number: u32, data: &[u8], pos: &mut usize, depth: u32) -> Result<(), WireError> {
    if depth >= MAX_DEPTH {
        return Err(WireError::at(WireErrorKind::TooDeep, *pos));
    }
    let end = data.len();
    loop {
        let at = *pos;
        let (inner, wire) = key(data, pos)?;
        match wire {
            WT_VARINT => {
                varint(data, pos)?;
            }
            WT_I64 => skip(end, pos, 8)?,
            WT_I32 => skip(end, pos, 4)?,
            WT_LEN => {
                length_delimited(data, pos)?;
            }
            WT_START_GROUP => skip_group(inner, data, pos, depth + 1)?,
            WT_END_GROUP if inner == number => return Ok(()),
            _ => return Err(WireError::at(WireErrorKind::UnexpectedEndGroup, at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{KEY_VALUE, LABEL_KEY_VALUE};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use prost::Message;

    fn attribute(key: &str, value: Option<Value>) -> Vec<u8> {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn walker() -> Walker {
        Walker::new(Some(Limits { latest_ns: 0 }))
    }

    /// The general walk of one `KeyValue`: accepted with no intake problem.
    fn walked_clean(schema: &'static Schema, body: &[u8]) -> bool {
        let mut walker = walker();
        let walked = walker.message(schema, body, 0, body.len(), 0).is_ok();
        walked && walker.item_problem.is_none()
    }

    fn fast(schema: &'static Schema, body: &[u8]) -> bool {
        walker().short_string_attribute(schema, body)
    }

    fn seeds() -> Vec<Vec<u8>> {
        vec![
            attribute("attr.key0", Some(Value::StringValue("value-17-0".into()))),
            attribute("e", Some(Value::StringValue(String::new()))),
            // An empty key is not encoded at all: the value comes first.
            attribute("", Some(Value::StringValue("v".into()))),
            attribute("k", None),
            // The value's length (2 + text) is the limit: 127 fits one byte, 128 does not.
            attribute("long", Some(Value::StringValue("x".repeat(125)))),
            attribute("long", Some(Value::StringValue("x".repeat(126)))),
            attribute("n", Some(Value::IntValue(5))),
            attribute("b", Some(Value::BoolValue(true))),
            attribute("ü", Some(Value::StringValue("text".into()))),
            attribute("k", Some(Value::StringValue("é".into()))),
            attribute(&"k".repeat(127), Some(Value::StringValue("v".into()))),
            attribute(&"k".repeat(128), Some(Value::StringValue("v".into()))),
            KeyValue {
                key: "no value".into(),
                value: None,
                ..Default::default()
            }
            .encode_to_vec(),
        ]
    }

    /// Every seed, each of its truncations, and each with one byte replaced by every value.
    fn each_mutation(check: &mut impl FnMut(&[u8])) {
        for seed in seeds() {
            for cut in 0..=seed.len() {
                check(&seed[..cut]);
            }
            for at in 0..seed.len() {
                for byte in 0..=255u8 {
                    let mut body = seed.clone();
                    body[at] = byte;
                    check(&body);
                }
            }
        }
    }

    #[test]
    fn short_string_attributes_take_the_fast_path() {
        let fast: Vec<bool> = seeds().iter().map(|b| fast(&KEY_VALUE, b)).collect();
        // The common shape, empty strings and values, lengths up to 127 are fast; the rest
        // (other types, non-ASCII, longer, missing fields) are walked.
        assert_eq!(
            fast,
            [
                true, true, false, true, true, false, false, false, false, false, true, false,
                false
            ]
        );
    }

    /// Every byte of every seed replaced by every value, and every truncation: whenever the
    /// fast path accepts, the general walk accepts with no problem and prost decodes the
    /// attribute with an ASCII string (or no) value.
    #[test]
    fn the_fast_path_accepts_only_what_the_walk_and_prost_accept() {
        let mut accepted = 0;
        let mut check = |body: &[u8]| {
            for schema in [&KEY_VALUE, &LABEL_KEY_VALUE] {
                if fast(schema, body) {
                    assert!(walked_clean(schema, body), "walk refused {body:?}");
                }
            }
            if fast(&KEY_VALUE, body) {
                accepted += 1;
                let kv = KeyValue::decode(body).expect("prost refused a fast-path attribute");
                let parts = ShortStringAttribute::parse(body).expect("parses when accepted");
                assert_eq!(&body[parts.key], kv.key.as_bytes());
                match (kv.value.and_then(|v| v.value), parts.text) {
                    (None, None) => {}
                    (Some(Value::StringValue(s)), Some(text)) => {
                        assert_eq!(&body[text], s.as_bytes())
                    }
                    other => panic!("fast path read {other:?} from {body:?}"),
                }
            }
        };
        each_mutation(&mut check);
        assert!(
            accepted > 1000,
            "only {accepted} mutations took the fast path"
        );
    }

    /// `parse_str` over the same seeds, mutations and truncations: whenever it reads a key and
    /// value, prost decodes the same strings from the body; it reads every ASCII attribute
    /// `parse` reads, and the seeds with UTF-8 key or text too.
    #[test]
    fn parse_str_reads_what_prost_reads() {
        let mut read = 0;
        let mut check = |body: &[u8]| {
            let parsed = ShortStringAttribute::parse_str(body);
            if ShortStringAttribute::parse(body).is_some() {
                assert!(parsed.is_some(), "parse read {body:?}, parse_str did not");
            }
            let Some((key, text)) = parsed else {
                return;
            };
            read += 1;
            let kv = KeyValue::decode(body).expect("prost refused what parse_str read");
            assert_eq!(key, kv.key);
            match (kv.value.and_then(|v| v.value), text) {
                (None, None) => {}
                (Some(Value::StringValue(s)), Some(text)) => assert_eq!(text, s),
                other => panic!("parse_str read {other:?} from {body:?}"),
            }
        };
        each_mutation(&mut check);
        assert!(read > 1000, "only {read} mutations were read");
        let utf8: Vec<_> = seeds()
            .iter()
            .filter_map(|b| ShortStringAttribute::parse_str(b))
            .filter(|(k, v)| !k.is_ascii() || v.is_some_and(|v| !v.is_ascii()))
            .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
            .collect();
        assert_eq!(
            utf8,
            [
                ("ü".to_owned(), Some("text".to_owned())),
                ("k".to_owned(), Some("é".to_owned()))
            ]
        );
    }

    /// A data point attribute whose key is no label name is walked, so the problem is found.
    #[test]
    fn a_data_point_attribute_takes_the_fast_path_only_with_a_label_name() {
        let good = attribute("http.route", Some(Value::StringValue("/".into())));
        let bad = attribute("._.", Some(Value::StringValue("/".into())));
        assert!(fast(&LABEL_KEY_VALUE, &good) && walked_clean(&LABEL_KEY_VALUE, &good));
        assert!(!fast(&LABEL_KEY_VALUE, &bad) && !walked_clean(&LABEL_KEY_VALUE, &bad));
        // Any key is fine where no rule reads it.
        assert!(fast(&KEY_VALUE, &bad) && walked_clean(&KEY_VALUE, &bad));
    }
}
