//! On-disk record framing.
//!
//! ```text
//! | body_len u32 LE | crc32c(body) u32 LE | body |
//! body = seq u64 | appended_ms u64 | kind u8 | count u32 | tenant_len u16 | tenant | payload
//! ```
//! `kind` is the signal, with bit 7 set when the payload is snappy-compressed (block format).
//! The checksum covers the whole body as stored, so a torn write or a flipped bit anywhere is
//! detected before anything is decompressed.

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

const COMPRESSED: u8 = 0x80;

/// Appends one record to `buf`. With `compress`, the payload is stored snappy-compressed when
/// that saves at least an eighth (OTLP typically shrinks 4–5×, which is what lets the spool
/// keep up with fsync on a disk that writes ~250 MB/s).
pub fn encode_into(buf: &mut Vec<u8>, seq: u64, appended_ms: u64, item: &Item, compress: bool) {
    let tenant = tenant_bytes(item);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    let body_start = buf.len();
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&appended_ms.to_le_bytes());
    let kind_at = buf.len();
    buf.push(item.signal.as_u8());
    buf.extend_from_slice(&item.count.to_le_bytes());
    buf.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    buf.extend_from_slice(tenant);
    let raw = &item.payload[..];
    let mut stored_compressed = false;
    if compress && raw.len() >= 256 {
        stored_compressed =
            sluice_core::snappy::with_compressed(raw, |compressed| match compressed {
                Ok(c) if c.len() < raw.len() - raw.len() / 8 => {
                    buf.extend_from_slice(c);
                    true
                }
                _ => false,
            });
    }
    if stored_compressed {
        buf[kind_at] |= COMPRESSED;
    } else {
        buf.extend_from_slice(raw);
    }
    let body_len = (buf.len() - body_start) as u32;
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
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
    let kind = *body.get(16)?;
    let signal = Signal::from_u8(kind & !COMPRESSED)?;
    let count = u32::from_le_bytes(body.get(17..21)?.try_into().ok()?);
    let tenant_len = u16::from_le_bytes(body.get(21..23)?.try_into().ok()?) as usize;
    let tenant = body.get(23..23 + tenant_len)?;
    let tenant: Option<Arc<str>> = if tenant.is_empty() {
        None
    } else {
        Some(Arc::from(std::str::from_utf8(tenant).ok()?))
    };
    let stored = body.get(23 + tenant_len..)?;
    let payload = if kind & COMPRESSED != 0 {
        // Bounded by the record size limit; a bad length is refused, not allocated.
        let len = snap::raw::decompress_len(stored)
            .ok()
            .filter(|n| *n <= MAX_BODY_LEN)?;
        let mut out = vec![0u8; len];
        snap::raw::Decoder::new()
            .decompress(stored, &mut out)
            .ok()?;
        Bytes::from(out)
    } else {
        Bytes::copy_from_slice(stored)
    };
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
        encode_into(&mut buf, 42, 1000, &item(), true);
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
    fn compressible_payloads_are_stored_compressed_and_round_trip() {
        let payload = Bytes::from("span attributes repeat a lot. ".repeat(100));
        let big = Item::new(Signal::Traces, payload.clone(), 9);
        let mut packed = Vec::new();
        encode_into(&mut packed, 7, 5, &big, true);
        let mut plain = Vec::new();
        encode_into(&mut plain, 7, 5, &big, false);
        assert!(
            packed.len() * 4 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        assert!(
            packed.len() <= encoded_len(&big),
            "accounting uses the uncompressed size as a bound"
        );
        for buf in [&packed, &plain] {
            match decode(buf) {
                Decoded::Record(r, n) => {
                    assert_eq!(n, buf.len());
                    assert_eq!(r.item, big);
                }
                other => panic!("{other:?}"),
            }
        }
        // A flipped bit inside the compressed payload is caught by the checksum.
        let mut bad = packed.clone();
        let last = bad.len() - 2;
        bad[last] ^= 0x10;
        assert_eq!(decode(&bad), Decoded::Corrupt(packed.len()));
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 1, 1, &item(), true);
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
