//! The validating walker: one pass over the protobuf wire format, no allocation, no decode.

use crate::error::{PathSegment, WireError, WireErrorKind};
use crate::schema::{Kind, Schema, UNKNOWN};

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_START_GROUP: u8 = 3;
const WT_END_GROUP: u8 = 4;
const WT_I32: u8 = 5;

/// Deepest nesting of messages and groups accepted. Real OTLP nests about 8 levels plus
/// attribute values; prost refuses past 100, and staying below that keeps `validate` at least
/// as strict as a prost decode.
pub(crate) const MAX_DEPTH: u32 = 64;

/// Walks `buf` as a `schema` message and returns the number of item messages inside.
pub(crate) fn walk(schema: &'static Schema, buf: &[u8]) -> Result<u32, WireError> {
    let mut walker = Walker { count: 0 };
    walker.message(schema, buf, 0, buf.len(), 0)?;
    Ok(walker.count)
}

struct Walker {
    count: u32,
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
fn key(data: &[u8], pos: &mut usize) -> Result<(u32, u8), WireError> {
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
fn length_delimited(data: &[u8], pos: &mut usize) -> Result<(usize, usize), WireError> {
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

fn expected_wire(kind: Kind) -> &'static str {
    match kind {
        Kind::Varint | Kind::PackedVarint => "varint",
        Kind::Fixed64 | Kind::PackedFixed64 => "64-bit",
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
            if let Err(mut err) = self.field(field.kind, number, wire, data, &mut pos, depth) {
                err.push(match field.kind {
                    Kind::Unknown => PathSegment::Unknown(number),
                    _ => PathSegment::Field(field.name),
                });
                return Err(err);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn field(
        &mut self,
        kind: Kind,
        number: u32,
        wire: u8,
        data: &[u8],
        pos: &mut usize,
        depth: u32,
    ) -> Result<(), WireError> {
        let end = data.len();
        let at = *pos;
        match (kind, wire) {
            (Kind::Varint | Kind::PackedVarint | Kind::Unknown, WT_VARINT) => {
                varint(data, pos)?;
            }
            (Kind::Fixed64 | Kind::PackedFixed64 | Kind::Unknown, WT_I64) => skip(end, pos, 8)?,
            (Kind::Fixed32 | Kind::Unknown, WT_I32) => skip(end, pos, 4)?,
            (Kind::Varint | Kind::Fixed64 | Kind::Fixed32, WT_LEN) => {
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
                    Kind::Msg(sub) => {
                        if depth >= MAX_DEPTH {
                            return Err(WireError::at(WireErrorKind::TooDeep, body_start));
                        }
                        self.message(sub, data, body_start, body_end, depth + 1)?;
                        if sub.is_item {
                            self.count = self.count.saturating_add(1);
                        }
                    }
                    Kind::Str => {
                        if std::str::from_utf8(body).is_err() {
                            return Err(WireError::at(WireErrorKind::InvalidUtf8, body_start));
                        }
                    }
                    Kind::Id(len) => {
                        if !body.is_empty() && body.len() != len {
                            return Err(WireError::at(
                                WireErrorKind::IdLength {
                                    expected: len,
                                    found: body.len(),
                                },
                                body_start,
                            ));
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
                    Kind::Varint | Kind::Fixed64 | Kind::Fixed32 => {}
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
