//! On-disk record framing.
//!
//! ```text
//! | body_len u32 LE | crc32c(body) u32 LE | body |
//! body = seq u64 | appended_ms u64 | signal u8 | count u32 | tenant_len u16 | tenant | payload
//! ```
//! The checksum covers the whole body, so a torn write or a flipped bit anywhere is detected.

use bytes::Bytes;
use sluice_core::{Item, Signal};
use std::sync::Arc;

pub const HEADER_LEN: usize = 8;
const FIXED_BODY_LEN: usize = 8 + 8 + 1 + 4 + 2;
/// Larger than any request a receiver accepts; a length above it can only be garbage.
pub const MAX_BODY_LEN: usize = 512 * 1024 * 1024;

/// One spooled item with its position and the time it was appended.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub appended_ms: u64,
    pub item: Item,
}

impl Record {
    /// Bytes this record takes on disk.
    pub fn disk_len(&self) -> usize {
        encoded_len(&self.item)
    }
}

pub fn encoded_len(item: &Item) -> usize {
    HEADER_LEN + FIXED_BODY_LEN + tenant_bytes(item).len() + item.payload.len()
}

fn tenant_bytes(item: &Item) -> &[u8] {
    // Tenants longer than u16::MAX cannot come from a header; cut defensively.
    let t = item.tenant.as_deref().unwrap_or("").as_bytes();
    &t[..t.len().min(u16::MAX as usize)]
}

pub fn encode_into(buf: &mut Vec<u8>, seq: u64, appended_ms: u64, item: &Item) {
    let tenant = tenant_bytes(item);
    let body_len = FIXED_BODY_LEN + tenant.len() + item.payload.len();
    let start = buf.len();
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    let body_start = buf.len();
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&appended_ms.to_le_bytes());
    buf.push(item.signal.as_u8());
    buf.extend_from_slice(&item.count.to_le_bytes());
    buf.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    buf.extend_from_slice(tenant);
    buf.extend_from_slice(&item.payload);
    let crc = crc32c::crc32c(&buf[body_start..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What is at the start of a byte slice.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A valid record and the bytes it took.
    Record(Record, usize),
    /// A complete frame whose checksum or contents are wrong: skip `len` bytes and go on.
    Corrupt(usize),
    /// Not enough bytes for the frame the header announces (a torn write at the tail).
    Incomplete,
    /// The header itself is nonsense: nothing after this point can be framed.
    Unreadable,
}

pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete;
    }
    let body_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(FIXED_BODY_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Decoded::Unreadable;
    }
    let total = HEADER_LEN + body_len;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[HEADER_LEN..total];
    if crc32c::crc32c(body) != crc {
        return Decoded::Corrupt(total);
    }
    match parse_body(body) {
        Some(record) => Decoded::Record(record, total),
        None => Decoded::Corrupt(total),
    }
}

fn parse_body(body: &[u8]) -> Option<Record> {
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
    };
    let seq = u64_at(0)?;
    let appended_ms = u64_at(8)?;
    let signal = Signal::from_u8(*body.get(16)?)?;
    let count = u32::from_le_bytes(body.get(17..21)?.try_into().ok()?);
    let tenant_len = u16::from_le_bytes(body.get(21..23)?.try_into().ok()?) as usize;
    let tenant = body.get(23..23 + tenant_len)?;
    let tenant: Option<Arc<str>> = if tenant.is_empty() {
        None
    } else {
        Some(Arc::from(std::str::from_utf8(tenant).ok()?))
    };
    let payload = Bytes::copy_from_slice(body.get(23 + tenant_len..)?);
    Some(Record {
        seq,
        appended_ms,
        item: Item {
            signal,
            tenant,
            payload,
            count,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        Item::new(Signal::Logs, Bytes::from_static(b"payload-bytes"), 3)
            .with_tenant(Some(Arc::from("team-a")))
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 42, 1000, &item());
        assert_eq!(buf.len(), encoded_len(&item()));
        match decode(&buf) {
            Decoded::Record(r, n) => {
                assert_eq!(n, buf.len());
                assert_eq!(r.seq, 42);
                assert_eq!(r.appended_ms, 1000);
                assert_eq!(r.item, item());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 1, 1, &item());
        for cut in 0..buf.len() {
            assert_eq!(
                decode(&buf[..cut]),
                Decoded::Incomplete,
                "a cut at {cut} is a torn write"
            );
        }
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert_eq!(decode(&flipped), Decoded::Corrupt(buf.len()));
        let mut garbage_len = buf.clone();
        garbage_len[3] = 0xff;
        assert_eq!(decode(&garbage_len), Decoded::Unreadable);
    }
}
