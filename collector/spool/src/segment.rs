//! Segment files: `<first_seq:020>.seg`, append-only, records never span two files.

use crate::record::{self, Decoded, HEADER_LEN};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
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

/// Sequential reader over one segment, bounded by the published length.
pub struct SegmentReader {
    pub first_seq: u64,
    file: File,
    offset: u64,
    /// Offset of the record `next` returned last, so it can be handed back.
    last_offset: u64,
    buf: Vec<u8>,
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
        })
    }

    /// Reads the record at the current offset if it ends at or before `limit`.
    pub fn next(&mut self, limit: u64) -> io::Result<ReadStep> {
        if self.offset + HEADER_LEN as u64 > limit {
            return Ok(ReadStep::End);
        }
        let mut header = [0u8; HEADER_LEN];
        self.file.seek(SeekFrom::Start(self.offset))?;
        self.file.read_exact(&mut header)?;
        let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let total = HEADER_LEN as u64 + body_len;
        if body_len as usize > record::MAX_BODY_LEN || self.offset + total > limit {
            return Ok(ReadStep::End);
        }
        self.buf.clear();
        self.buf.extend_from_slice(&header);
        self.buf.resize(total as usize, 0);
        self.file.read_exact(&mut self.buf[HEADER_LEN..])?;
        match record::decode(&self.buf) {
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

    /// Hands back the record `next` returned last: the next call returns it again.
    pub fn unread(&mut self) {
        self.offset = self.last_offset;
    }
}
