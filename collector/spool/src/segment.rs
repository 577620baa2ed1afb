//! Segment files: `<first_seq:020>.seg`, append-only, records never span two files.

use crate::record::{self, Decoded, HEADER_LEN};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct SegmentMeta {
    pub first_seq: u64,
    pub path: PathBuf,
    /// Bytes of whole, published records.
    pub len: u64,
    /// One past the last record's sequence number (== first_seq when empty).
    pub next_seq: u64,
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// Segment files in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_suffix(".seg")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// What recovery found in one segment.
#[derive(Debug, Default)]
pub struct Recovered {
    pub len: u64,
    pub records: u64,
    pub last_seq: Option<u64>,
    pub corrupt_records: u64,
    /// Bytes cut from the end (torn tail or unframeable garbage).
    pub truncated_bytes: u64,
}

/// Validates every record of a segment and truncates whatever cannot be framed at its end.
/// A complete record with a bad checksum is skipped (and counted), not truncated: what follows
/// it is still readable.
pub fn recover(path: &Path) -> io::Result<Recovered> {
    let data = fs::read(path)?;
    let mut rec = Recovered::default();
    let mut at = 0usize;
    while at < data.len() {
        match record::decode(&data[at..]) {
            Decoded::Record(r, n) => {
                rec.records += 1;
                rec.last_seq = Some(r.seq);
                at += n;
            }
            Decoded::Corrupt(n) => {
                rec.corrupt_records += 1;
                at += n;
            }
            Decoded::Incomplete | Decoded::Unreadable => break,
        }
    }
    rec.len = at as u64;
    rec.truncated_bytes = (data.len() - at) as u64;
    if rec.truncated_bytes > 0 {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(rec.len)?;
        f.sync_all()?;
    }
    Ok(rec)
}

/// Bytes a segment reader asks the kernel for at once: a catching-up exporter reads dozens of
/// compressed records per read instead of seeking and reading twice for each.
const READ_AHEAD: u64 = 1 << 20;

/// Sequential reader over one segment, bounded by the published length.
pub struct SegmentReader {
    pub first_seq: u64,
    file: File,
    offset: u64,
    /// Offset of the record `next` returned last, so it can be handed back.
    last_offset: u64,
    /// Bytes of the file from `buf_start`, all below a published length when they were read.
    /// Published bytes never change (segments are append-only), so they stay valid.
    buf: Vec<u8>,
    buf_start: u64,
}

pub enum ReadStep {
    Record(record::Record),
    Corrupt,
    /// Nothing more below `limit` (or the rest cannot be framed).
    End,
}

impl SegmentReader {
    pub fn open(meta: &SegmentMeta) -> io::Result<SegmentReader> {
        Ok(SegmentReader {
            first_seq: meta.first_seq,
            file: File::open(&meta.path)?,
            offset: 0,
            last_offset: 0,
            buf: Vec::new(),
            buf_start: 0,
        })
    }

    /// Reads the record at the current offset if it ends at or before `limit`.
    pub fn next(&mut self, limit: u64) -> io::Result<ReadStep> {
        if self.offset + HEADER_LEN as u64 > limit {
            return Ok(ReadStep::End);
        }
        let header = self.published(self.offset, HEADER_LEN, limit)?;
        let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let total = HEADER_LEN as u64 + body_len;
        if body_len as usize > record::MAX_BODY_LEN || self.offset + total > limit {
            return Ok(ReadStep::End);
        }
        let frame = self.published(self.offset, total as usize, limit)?;
        match record::decode(frame) {
            Decoded::Record(r, n) => {
                self.last_offset = self.offset;
                self.offset += n as u64;
                Ok(ReadStep::Record(r))
            }
            Decoded::Corrupt(n) => {
                self.offset += n as u64;
                Ok(ReadStep::Corrupt)
            }
            Decoded::Incomplete | Decoded::Unreadable => Ok(ReadStep::End),
        }
    }

    /// The `len` bytes at `at`, which end at or before `limit`: from the buffer, refilled by one
    /// positioned read of up to [`READ_AHEAD`] bytes (never past `limit`) when they are not
    /// all in it.
    fn published(&mut self, at: u64, len: usize, limit: u64) -> io::Result<&[u8]> {
        let end = at + len as u64;
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if at < self.buf_start || end > buffered_end {
            let want = (len as u64).max(READ_AHEAD).min(limit.saturating_sub(at));
            self.buf.clear();
            self.buf.resize(want as usize, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.buf_start = at;
        }
        let from = (at - self.buf_start) as usize;
        self.buf
            .get(from..from + len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "segment read short"))
    }

    /// Hands back the record `next` returned last: the next call returns it again.
    pub fn unread(&mut self) {
        self.offset = self.last_offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_core::{Item, Signal};

    /// A segment of `n` records whose payloads are `size` bytes that hardly compress, so that
    /// they straddle the read-ahead buffer's boundaries; and where each record's frame ends.
    fn segment(dir: &Path, n: u64, size: usize) -> (SegmentMeta, Vec<Vec<u8>>, Vec<u64>) {
        let mut file = Vec::new();
        let mut payloads = Vec::new();
        let mut ends = Vec::new();
        for seq in 0..n {
            let payload: Vec<u8> = (0..size)
                .map(|i| ((i as u64 * 2_654_435_761) ^ (seq * 40_503)) as u8)
                .collect();
            let item = Item::new(Signal::Logs, Bytes::from(payload.clone()), 1);
            record::encode_into(&mut file, seq, 0, &item, true);
            payloads.push(payload);
            ends.push(file.len() as u64);
        }
        let path = segment_path(dir, 0);
        fs::write(&path, &file).expect("write segment");
        let meta = SegmentMeta {
            first_seq: 0,
            path,
            len: file.len() as u64,
            next_seq: n,
        };
        (meta, payloads, ends)
    }

    fn payload(step: ReadStep) -> Option<Vec<u8>> {
        match step {
            ReadStep::Record(r) => Some(r.item.payload.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn reads_records_across_read_ahead_boundaries_and_hands_one_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        // ~3.5 read-aheads of records that never line up with the buffer's edges.
        let (meta, payloads, _) = segment(dir.path(), 100, 37_017);
        let mut reader = SegmentReader::open(&meta).expect("open");
        for (i, want) in payloads.iter().enumerate() {
            let got = payload(reader.next(meta.len).expect("read")).expect("a record");
            assert_eq!(&got, want, "record {i}");
            if i % 9 == 0 {
                reader.unread();
                let again = payload(reader.next(meta.len).expect("read")).expect("a record");
                assert_eq!(&again, want, "record {i} handed back");
            }
        }
        assert!(matches!(reader.next(meta.len), Ok(ReadStep::End)));
    }

    #[test]
    fn stops_at_the_published_length_and_reads_on_when_it_grows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta, payloads, ends) = segment(dir.path(), 10, 1000);
        let mut reader = SegmentReader::open(&meta).expect("open");
        // Published: four records and half of the fifth (still being written).
        let published = ends[3] + (ends[4] - ends[3]) / 2;
        for want in &payloads[..4] {
            assert_eq!(
                payload(reader.next(published).expect("read")).as_ref(),
                Some(want)
            );
        }
        assert!(matches!(reader.next(published), Ok(ReadStep::End)));
        // The rest is published: the reader goes on from where it stopped.
        for want in &payloads[4..] {
            assert_eq!(
                payload(reader.next(meta.len).expect("read")).as_ref(),
                Some(want)
            );
        }
        assert!(matches!(reader.next(meta.len), Ok(ReadStep::End)));
    }
}
