//! Splitting a request in two halves of about equal item counts, to isolate the items a backend
//! refuses (docs/validation.md §2). Cold path: it runs only after a permanent refusal.

use crate::schema::{Kind, Schema, UNKNOWN};
use crate::walk::{self, WT_LEN, encode_varint, key, length_delimited, skip_field};
use crate::{Signal, root};

/// Splits an `Export*ServiceRequest` into two requests that together hold exactly its items,
/// each at least one, resources and scopes repeated in both halves. `None` when `buf` holds
/// fewer than two items or is not a valid request.
pub fn split(signal: Signal, buf: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (schema, _) = root(signal);
    split_message(schema, buf)
}

struct Part {
    /// The whole field: key, length and body.
    field: (usize, usize),
    body: (usize, usize),
    schema: &'static Schema,
    items: u32,
}

fn split_message(schema: &'static Schema, buf: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut shared: Vec<(usize, usize)> = Vec::new();
    let mut parts: Vec<Part> = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let (number, wire) = key(buf, &mut pos).ok()?;
        let field = schema
            .fields
            .get(number as usize)
            .copied()
            .unwrap_or(UNKNOWN);
        match (field.kind, wire) {
            (Kind::Msg(sub), WT_LEN) if sub.is_item || sub.container => {
                let body = length_delimited(buf, &mut pos).ok()?;
                let items = if sub.is_item {
                    1
                } else {
                    walk::walk(sub, &buf[body.0..body.1]).ok()?
                };
                parts.push(Part {
                    field: (start, pos),
                    body,
                    schema: sub,
                    items,
                });
            }
            _ => {
                skip_field(number, wire, buf, &mut pos).ok()?;
                shared.push((start, pos));
            }
        }
    }
    let total: u32 = parts.iter().map(|p| p.items).sum();
    if total < 2 {
        return None;
    }
    let with_items: Vec<&Part> = parts.iter().filter(|p| p.items > 0).collect();
    let mut first = Vec::new();
    let mut second = Vec::new();
    for &(s, e) in &shared {
        first.extend_from_slice(&buf[s..e]);
        second.extend_from_slice(&buf[s..e]);
    }
    if let [only] = with_items.as_slice() {
        // Every item sits in one child: split inside it and wrap each half the same way.
        let (a, b) = split_message(only.schema, &buf[only.body.0..only.body.1])?;
        let key_bytes = &buf[only.field.0..only.field.0 + key_len(buf, only.field.0)?];
        for (out, half) in [(&mut first, a), (&mut second, b)] {
            out.extend_from_slice(key_bytes);
            encode_varint(half.len() as u64, out);
            out.extend_from_slice(&half);
        }
        // Children without items (empty resources) stay with the first half.
        for part in parts.iter().filter(|p| p.items == 0) {
            first.extend_from_slice(&buf[part.field.0..part.field.1]);
        }
        return Some((first, second));
    }
    // Cut where the first half reaches half the items, keeping at least one child per side.
    let mut seen = 0;
    let mut cut = 0;
    for (i, part) in parts.iter().enumerate() {
        if seen > 0 && seen + part.items > total / 2 {
            cut = i;
            break;
        }
        seen += part.items;
        cut = i + 1;
    }
    if cut >= parts.len() {
        // Only the last child has items left past the half: cut before it.
        cut = parts.len() - 1;
    }
    for (i, part) in parts.iter().enumerate() {
        let out = if i < cut { &mut first } else { &mut second };
        out.extend_from_slice(&buf[part.field.0..part.field.1]);
    }
    Some((first, second))
}

fn key_len(buf: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    key(buf, &mut pos).ok()?;
    Some(pos - start)
}
