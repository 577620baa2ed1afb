//! Finding, following and reading the files: glob scans, rotation by rename (the old file is
//! read to its end by its open handle while the new one is picked up) and by copytruncate (the
//! file shrank below the read offset, or its first bytes changed: read again from 0), line
//! splitting and multi-line joining. Synchronous: the receiver runs it on the blocking pool.
//!
//! Offsets: every entry carries the offset just past its last line; a file's `emitted` offset
//! is the end of the last entry handed out (or of the last skipped empty line), and only those
//! offsets are ever recorded, so a half-read line or a multi-line entry still being joined is
//! read again after a restart.

use crate::config::{Config, StartAt};
use crate::counters as m;
use crate::positions::{FileId, Head, Position};
use regex::Regex;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of a file's beginning that identify it (see [`Head`]).
const HEAD_BYTES: u64 = 256;
/// Bytes read from one file per read call.
const CHUNK: usize = 64 * 1024;
/// Polls a rotated file must stay at its end before it is closed: the writer may still hold it
/// open for a moment after the rename.
const ROTATED_IDLE_POLLS: u32 = 3;

/// One log entry read from a file: a line, or lines joined by `multiline`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub text: String,
    pub path: Arc<str>,
    /// Read again after a restart and possibly already spooled before it.
    pub reread: bool,
}

/// How far a batch's entries reach in one file; recorded once the batch is durable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    pub id: FileId,
    generation: u64,
    pub end: u64,
}

#[derive(Debug, Default)]
pub struct Batch {
    pub entries: Vec<Entry>,
    pub marks: Vec<Mark>,
    /// The batch was cut at `max_batch_entries`: more data is waiting.
    pub full: bool,
}

struct Multiline {
    line_start: Regex,
    flush_timeout: Duration,
    max_lines: usize,
}

struct Joining {
    text: Vec<u8>,
    lines: usize,
    end: u64,
    last: Instant,
}

struct Tracked {
    path: PathBuf,
    label: Arc<str>,
    /// `None` once a rotated file was read to its end and closed; kept until its last
    /// entries are durable.
    file: Option<File>,
    /// Bumped by a truncation: marks of older generations no longer mean anything.
    generation: u64,
    read_offset: u64,
    /// Bytes after the last newline.
    partial: Vec<u8>,
    /// `partial` reached `max_entry_size`: the rest of that line is being skipped.
    partial_cut: bool,
    joining: Option<Joining>,
    emitted: u64,
    pending_end: u64,
    committed: u64,
    reread_until: u64,
    head: Head,
    /// The path no longer leads to this file (renamed or deleted).
    rotated: bool,
    idle_polls: u32,
}

impl Tracked {
    fn position(&self, id: FileId) -> Position {
        Position {
            id,
            path: self.path.to_string_lossy().into_owned(),
            offset: self.committed,
            pending_end: self.pending_end.max(self.committed),
            head: self.head,
        }
    }
}

pub struct Tailer {
    id: Arc<str>,
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    start_at: StartAt,
    max_entry_size: usize,
    max_batch_entries: usize,
    multiline: Option<Multiline>,
    files: BTreeMap<FileId, Tracked>,
    /// Positions read at start, used for the files the first scan finds.
    recorded: HashMap<FileId, Position>,
    scanned_once: bool,
    /// Positions changed since the last save.
    pub dirty: bool,
}

fn file_id(meta: &std::fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

fn read_head(file: &File, size: u64) -> std::io::Result<Head> {
    let len = size.min(HEAD_BYTES) as usize;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(Head {
        len: len as u32,
        crc: crc32c::crc32c(&buf),
    })
}

/// The file still starts with the bytes `head` was taken from.
fn head_matches(file: &File, size: u64, head: Head) -> bool {
    if u64::from(head.len) > size {
        return false;
    }
    let mut buf = vec![0; head.len as usize];
    file.read_exact_at(&mut buf, 0).is_ok() && crc32c::crc32c(&buf) == head.crc
}

impl Tailer {
    /// `config` must have passed `validate`.
    pub fn new(config: &Config, component_id: Arc<str>, recorded: Vec<Position>) -> Tailer {
        let multiline = config.multiline.as_ref().and_then(|m| {
            Some(Multiline {
                line_start: Regex::new(&m.line_start_pattern).ok()?,
                flush_timeout: m.flush_timeout.get(),
                max_lines: m.max_lines,
            })
        });
        Tailer {
            id: component_id,
            include: config.include.clone(),
            exclude: config
                .exclude
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
            start_at: config.start_at,
            max_entry_size: config.max_entry_size.as_usize(),
            max_batch_entries: config.max_batch_entries,
            multiline,
            files: BTreeMap::new(),
            recorded: recorded.into_iter().map(|p| (p.id, p)).collect(),
            scanned_once: false,
            dirty: false,
        }
    }

    /// The positions to record now.
    pub fn positions(&self) -> Vec<Position> {
        self.files.iter().map(|(id, t)| t.position(*id)).collect()
    }

    pub fn open_files(&self) -> usize {
        self.files.values().filter(|t| t.file.is_some()).count()
    }

    /// Matches the globs: opens new files, notices rotated ones.
    pub fn scan(&mut self) {
        let mut found: BTreeMap<FileId, PathBuf> = BTreeMap::new();
        for pattern in &self.include {
            let paths = match glob::glob(pattern) {
                Ok(paths) => paths,
                Err(_) => continue, // checked by Config::validate
            };
            for entry in paths {
                let Ok(path) = entry else {
                    m::error(&self.id, "scan");
                    continue;
                };
                if self.exclude.iter().any(|p| p.matches_path(&path)) {
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => {
                        found.entry(file_id(&meta)).or_insert(path);
                    }
                    Ok(_) => {}
                    // Gone between the glob and the stat: the next scan sees what replaced it.
                    Err(_) => {}
                }
            }
        }
        for (id, path) in &found {
            match self.files.get_mut(id) {
                Some(t) => {
                    if t.path != *path {
                        t.label = Arc::from(path.to_string_lossy().as_ref());
                        t.path = path.clone();
                    }
                    t.rotated = false;
                }
                None => {
                    let recorded = self.recorded.remove(id);
                    let from_start = self.scanned_once || self.start_at == StartAt::Beginning;
                    self.open(*id, path, recorded, from_start, false);
                }
            }
        }
        for (id, t) in self.files.iter_mut() {
            if !found.contains_key(id) && !t.rotated && t.file.is_some() {
                t.rotated = true;
                t.idle_polls = 0;
                m::file_event(&self.id, "rotated");
                tracing::debug!(component_id = %self.id, path = %t.path.display(), "file rotated or removed; reading it to its end");
            }
        }
        if !self.scanned_once {
            self.scanned_once = true;
            self.recover_rotated_while_stopped();
        }
    }

    /// Files with a recorded position that no glob matched were renamed while Sluice was not
    /// running: look for them by inode beside their recorded path and read them to the end.
    fn recover_rotated_while_stopped(&mut self) {
        let recorded: Vec<Position> = self.recorded.drain().map(|(_, p)| p).collect();
        for p in recorded {
            let dir = Path::new(&p.path).parent().map(Path::to_owned);
            let found = dir
                .and_then(|dir| std::fs::read_dir(dir).ok())
                .and_then(|entries| {
                    entries.flatten().map(|e| e.path()).find(|path| {
                        std::fs::metadata(path)
                            .is_ok_and(|meta| meta.is_file() && file_id(&meta) == p.id)
                    })
                });
            match found {
                Some(path) => {
                    tracing::info!(component_id = %self.id, path = %path.display(), was = %p.path, "file was rotated while stopped; reading it to its end");
                    m::file_event(&self.id, "rotated");
                    let id = p.id;
                    self.open(id, &path, Some(p), true, true);
                }
                None => {
                    tracing::warn!(component_id = %self.id, path = %p.path, offset = p.offset, "a file with a recorded position is gone; what it held after that offset was not read");
                    m::file_event(&self.id, "lost");
                }
            }
        }
    }

    fn open(
        &mut self,
        id: FileId,
        path: &Path,
        recorded: Option<Position>,
        from_start: bool,
        rotated: bool,
    ) {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(error) => {
                tracing::warn!(component_id = %self.id, path = %path.display(), %error, "cannot open file");
                m::error(&self.id, "open");
                return;
            }
        };
        let size = match file.metadata() {
            Ok(meta) if file_id(&meta) == id => meta.len(),
            // Replaced between the stat and the open: the next scan picks up the new one.
            _ => return,
        };
        let (offset, reread_until) = match recorded {
            Some(p) if p.offset <= size && head_matches(&file, size, p.head) => {
                (p.offset, p.pending_end)
            }
            Some(p) => {
                tracing::info!(component_id = %self.id, path = %path.display(), recorded = p.offset, size, "file was truncated or replaced while stopped; reading it from the start");
                m::file_event(&self.id, "truncated");
                (0, 0)
            }
            None if from_start => (0, 0),
            None => (size, 0),
        };
        let head = read_head(&file, size).unwrap_or_default();
        m::file_event(&self.id, "opened");
        tracing::debug!(component_id = %self.id, path = %path.display(), offset, "file opened");
        self.files.insert(
            id,
            Tracked {
                label: Arc::from(path.to_string_lossy().as_ref()),
                path: path.to_owned(),
                file: Some(file),
                generation: 0,
                read_offset: offset,
                partial: Vec::new(),
                partial_cut: false,
                joining: None,
                emitted: offset,
                pending_end: offset,
                committed: offset,
                reread_until,
                head,
                rotated,
                idle_polls: 0,
            },
        );
        self.dirty = true;
    }

    /// Reads what the open files gained, up to `max_batch_entries` entries.
    pub fn read(&mut self, now: Instant) -> Batch {
        let mut batch = Batch::default();
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        for id in ids {
            if batch.entries.len() >= self.max_batch_entries {
                batch.full = true;
                break;
            }
            self.read_file(id, now, &mut batch);
        }
        self.files
            .retain(|_, t| t.file.is_some() || t.committed < t.emitted);
        for (id, t) in &self.files {
            if t.emitted > t.pending_end.max(t.committed) {
                batch.marks.push(Mark {
                    id: *id,
                    generation: t.generation,
                    end: t.emitted,
                });
            }
        }
        batch
    }

    fn read_file(&mut self, id: FileId, now: Instant, batch: &mut Batch) {
        let Some(t) = self.files.get_mut(&id) else {
            return;
        };
        // Out of `t` while reading, so `t` can be changed meanwhile; put back unless closed.
        let Some(file) = t.file.take() else { return };
        let reader = Reading {
            id: &self.id,
            multiline: &self.multiline,
            max_entry: self.max_entry_size,
            limit: self.max_batch_entries,
        };
        let (changed, close) = reader.read(&file, t, now, batch);
        if !close {
            t.file = Some(file);
        }
        self.dirty |= changed;
    }

    /// The pipeline was handed the batch with these marks (before it confirms durability).
    pub fn begin(&mut self, marks: &[Mark]) {
        for mark in marks {
            if let Some(t) = self.files.get_mut(&mark.id)
                && t.generation == mark.generation
            {
                t.pending_end = t.pending_end.max(mark.end);
            }
        }
        self.dirty = true;
    }

    /// The batch with these marks is durable in the spool (or refused for good).
    pub fn commit(&mut self, marks: &[Mark]) {
        for mark in marks {
            if let Some(t) = self.files.get_mut(&mark.id)
                && t.generation == mark.generation
            {
                t.committed = t.committed.max(mark.end);
            }
        }
        self.files
            .retain(|_, t| t.file.is_some() || t.committed < t.emitted);
        self.dirty = true;
    }

    /// The batch with these marks was not delivered (shutdown): read it again next time.
    pub fn abandon(&mut self, marks: &[Mark]) {
        for mark in marks {
            if let Some(t) = self.files.get_mut(&mark.id)
                && t.generation == mark.generation
            {
                t.pending_end = t.committed;
            }
        }
        self.dirty = true;
    }
}

/// What reading one file needs from the [`Tailer`] besides the file itself.
struct Reading<'a> {
    id: &'a str,
    multiline: &'a Option<Multiline>,
    max_entry: usize,
    limit: usize,
}

impl Reading<'_> {
    /// Reads what `file` gained. Returns (positions changed, the file is done and to be closed).
    fn read(&self, file: &File, t: &mut Tracked, now: Instant, batch: &mut Batch) -> (bool, bool) {
        let mut changed = false;
        let size = match file.metadata() {
            Ok(meta) => meta.len(),
            Err(_) => {
                m::error(self.id, "read");
                return (false, false);
            }
        };
        if size < t.read_offset || (size > t.read_offset && !head_matches(file, size, t.head)) {
            // copytruncate: what the file held is gone (copied elsewhere). Hand out what was
            // already read, then read the new content from the start.
            tracing::info!(component_id = %self.id, path = %t.path.display(), offset = t.read_offset, size, "file truncated; reading it from the start");
            m::file_event(self.id, "truncated");
            flush_partial(t, batch);
            flush_joining(t, batch);
            t.generation += 1;
            t.read_offset = 0;
            t.emitted = 0;
            t.pending_end = 0;
            t.committed = 0;
            t.reread_until = 0;
            t.head = Head::default();
            changed = true;
        }
        let mut buf = vec![0u8; CHUNK];
        let mut got_data = false;
        while t.read_offset < size && batch.entries.len() < self.limit {
            let want = (size - t.read_offset).min(CHUNK as u64) as usize;
            let n = match file.read_at(&mut buf[..want], t.read_offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(component_id = %self.id, path = %t.path.display(), %error, "read failed");
                    m::error(self.id, "read");
                    break;
                }
            };
            got_data = true;
            let base = t.read_offset;
            t.read_offset += n as u64;
            let mut start = 0;
            let mut lines = 0u64;
            for (i, byte) in buf[..n].iter().enumerate() {
                if *byte != b'\n' {
                    continue;
                }
                lines += 1;
                append_capped(t, &buf[start..i], self.max_entry);
                let mut line = std::mem::take(&mut t.partial);
                if t.partial_cut {
                    m::entry_cut(self.id);
                }
                t.partial_cut = false;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let end = base + i as u64 + 1;
                take_line(t, self.multiline, line, end, self.max_entry, now, batch);
                start = i + 1;
                if batch.entries.len() >= self.limit {
                    // The batch is full: the rest of the chunk is read again next time, so a
                    // batch (and what a crash can duplicate) never exceeds the limit.
                    t.read_offset = end;
                    break;
                }
            }
            m::lines_read(self.id, lines);
            m::bytes_read(self.id, t.read_offset - base);
            if batch.entries.len() >= self.limit {
                batch.full = true;
                break;
            }
            append_capped(t, &buf[start..n], self.max_entry);
        }
        if t.head.len < HEAD_BYTES as u32 && size > u64::from(t.head.len) {
            t.head = read_head(file, size).unwrap_or(t.head);
        }
        if got_data {
            t.idle_polls = 0;
        }
        if let Some(ml) = self.multiline
            && t.joining
                .as_ref()
                .is_some_and(|j| now.duration_since(j.last) >= ml.flush_timeout)
        {
            flush_joining(t, batch);
        }
        if t.rotated && !got_data && t.read_offset >= size {
            t.idle_polls += 1;
            if t.idle_polls >= ROTATED_IDLE_POLLS {
                // Nothing will be appended any more: what is left is complete.
                flush_partial(t, batch);
                flush_joining(t, batch);
                m::file_event(self.id, "closed");
                tracing::debug!(component_id = %self.id, path = %t.path.display(), "rotated file read to its end; closed");
                return (changed, true);
            }
        }
        (changed, false)
    }
}

fn append_capped(t: &mut Tracked, bytes: &[u8], max: usize) {
    let room = max.saturating_sub(t.partial.len());
    if bytes.len() > room {
        t.partial_cut = true;
    }
    t.partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn take_line(
    t: &mut Tracked,
    multiline: &Option<Multiline>,
    line: Vec<u8>,
    end: u64,
    max_entry: usize,
    now: Instant,
    batch: &mut Batch,
) {
    let Some(ml) = multiline else {
        if line.is_empty() {
            t.emitted = end;
        } else {
            emit(t, line, end, batch);
        }
        return;
    };
    let starts = ml.line_start.is_match(&String::from_utf8_lossy(&line));
    match &mut t.joining {
        Some(j) if !starts && j.lines < ml.max_lines => {
            if j.text.len() < max_entry {
                j.text.push(b'\n');
                let room = max_entry - j.text.len();
                j.text.extend_from_slice(&line[..line.len().min(room)]);
            }
            j.lines += 1;
            j.end = end;
            j.last = now;
        }
        _ => {
            flush_joining(t, batch);
            t.joining = Some(Joining {
                text: line,
                lines: 1,
                end,
                last: now,
            });
        }
    }
}

fn flush_joining(t: &mut Tracked, batch: &mut Batch) {
    if let Some(j) = t.joining.take() {
        emit(t, j.text, j.end, batch);
    }
}

/// A rotated or truncated file's last line without a newline is complete.
fn flush_partial(t: &mut Tracked, batch: &mut Batch) {
    if t.partial.is_empty() {
        return;
    }
    let line = std::mem::take(&mut t.partial);
    let end = t.read_offset;
    // Joined to a multi-line entry or standing alone, like any other line.
    match &mut t.joining {
        Some(j) => {
            j.text.push(b'\n');
            j.text.extend_from_slice(&line);
            j.end = end;
        }
        None => emit(t, line, end, batch),
    }
}

fn emit(t: &mut Tracked, text: Vec<u8>, end: u64, batch: &mut Batch) {
    let text = match String::from_utf8(text) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    batch.entries.push(Entry {
        text,
        path: t.label.clone(),
        reread: end <= t.reread_until,
    });
    t.emitted = end;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            "include = [\"{}/*.log\"]\nstart_at = \"beginning\"\n{extra}",
            dir.display()
        );
        let c: Config = toml::from_str(&text).unwrap();
        c.validate().unwrap();
        c
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn tailer(c: &Config, recorded: Vec<Position>) -> Tailer {
        Tailer::new(c, Arc::from("receivers.test"), recorded)
    }

    /// One scan and one read, with the batch committed as if the spool took it.
    fn step(t: &mut Tailer, now: Instant) -> Vec<String> {
        t.scan();
        let batch = t.read(now);
        t.begin(&batch.marks);
        t.commit(&batch.marks);
        batch.entries.into_iter().map(|e| e.text).collect()
    }

    /// `app.log` in a fresh directory, holding "one" and "two", and a tailer that has read
    /// and committed both.
    fn past_two_lines() -> (tempfile::TempDir, PathBuf, Config, Tailer) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "one\ntwo\n");
        let c = config(dir.path(), "");
        let mut t = tailer(&c, Vec::new());
        assert_eq!(step(&mut t, Instant::now()), ["one", "two"]);
        (dir, log, c, t)
    }

    fn drain(t: &mut Tailer) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..(ROTATED_IDLE_POLLS + 2) {
            out.extend(step(t, Instant::now()));
        }
        out
    }

    #[test]
    fn rename_rotation_reads_the_old_file_to_its_end_then_the_new_one() {
        let (dir, log, _c, mut t) = past_two_lines();
        // The writer still holds the old file after the rename and writes a last line to it.
        let mut writer = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "four\n");
        writer.write_all(b"three\n").unwrap();
        drop(writer);
        let mut got = drain(&mut t);
        got.sort();
        assert_eq!(got, ["four", "three"]);
        assert_eq!(t.open_files(), 1, "the rotated file is closed once read");
        append(&log, "five\n");
        assert_eq!(step(&mut t, Instant::now()), ["five"]);
        let positions = t.positions();
        assert_eq!(positions.len(), 1);
        assert_eq!(positions[0].offset, "four\nfive\n".len() as u64);
    }

    #[test]
    fn copytruncate_restarts_at_zero() {
        let (dir, log, _c, mut t) = past_two_lines();
        std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, "3\n");
        assert_eq!(step(&mut t, Instant::now()), ["3"]);
        // Truncated again and rewritten past the old offset before the next read: the first
        // bytes changed, so it is still seen as a truncation.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, "a much longer first line\nand another\n");
        assert_eq!(
            step(&mut t, Instant::now()),
            ["a much longer first line", "and another"]
        );
    }

    #[test]
    fn multiline_joins_until_the_next_start_or_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(
            &log,
            "2026-12-04 boom\n  at a()\n  at b()\n2026-12-04 next\n  at c()\n",
        );
        let c = config(
            dir.path(),
            "[multiline]\nline_start_pattern = '^\\d{4}-'\nflush_timeout = \"1s\"",
        );
        let mut t = tailer(&c, Vec::new());
        let now = Instant::now();
        assert_eq!(step(&mut t, now), ["2026-12-04 boom\n  at a()\n  at b()"]);
        // The second entry is still joining: its start is the recorded offset.
        assert_eq!(t.positions()[0].offset, 34);
        assert!(step(&mut t, now).is_empty());
        assert_eq!(
            step(&mut t, now + Duration::from_secs(2)),
            ["2026-12-04 next\n  at c()"]
        );
    }

    #[test]
    fn a_batch_never_exceeds_max_batch_entries() {
        let dir = tempfile::tempdir().unwrap();
        append(&dir.path().join("app.log"), "1\n2\n3\n4\n5\n");
        let c = config(dir.path(), "max_batch_entries = 2");
        let mut t = tailer(&c, Vec::new());
        assert_eq!(step(&mut t, Instant::now()), ["1", "2"]);
        assert_eq!(t.positions()[0].offset, 4);
        assert_eq!(step(&mut t, Instant::now()), ["3", "4"]);
        assert_eq!(step(&mut t, Instant::now()), ["5"]);
    }

    #[test]
    fn long_entries_are_cut_and_crlf_is_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, &format!("{}\r\nshort\r\n\n", "x".repeat(100)));
        let c = config(dir.path(), "max_entry_size = 64");
        let mut t = tailer(&c, Vec::new());
        assert_eq!(
            step(&mut t, Instant::now()),
            ["x".repeat(64), "short".into()]
        );
        // The empty line is skipped but its bytes are behind the recorded offset.
        assert_eq!(t.positions()[0].offset, 100 + 2 + 7 + 1);
    }

    #[test]
    fn a_restart_goes_on_from_the_durable_offset_and_flags_the_possible_duplicates() {
        let (_dir, log, c, mut t) = past_two_lines();
        append(&log, "three\nfour\n");
        t.scan();
        let batch = t.read(Instant::now());
        t.begin(&batch.marks);
        // Crash here: handed to the spool, durability not confirmed.
        let recorded = t.positions();
        assert_eq!(recorded[0].offset, 8);
        assert_eq!(recorded[0].pending_end, 19);
        append(&log, "five\n");
        let mut again = tailer(&c, recorded);
        again.scan();
        let batch = again.read(Instant::now());
        let got: Vec<(&str, bool)> = batch
            .entries
            .iter()
            .map(|e| (e.text.as_str(), e.reread))
            .collect();
        assert_eq!(got, [("three", true), ("four", true), ("five", false)]);
    }

    #[test]
    fn a_file_renamed_while_stopped_is_found_by_inode_and_finished() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "one\n");
        let c = config(dir.path(), "");
        let mut t = tailer(&c, Vec::new());
        assert_eq!(step(&mut t, Instant::now()), ["one"]);
        let recorded = t.positions();
        drop(t);
        append(&log, "two\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "three\n");
        let mut again = tailer(&c, recorded);
        let mut got = drain(&mut again);
        got.sort();
        assert_eq!(got, ["three", "two"]);
    }

    #[test]
    fn start_at_end_skips_what_files_held_at_start_but_not_new_files() {
        let dir = tempfile::tempdir().unwrap();
        append(&dir.path().join("a.log"), "old\n");
        let exclude = format!("exclude = [\"{}/skip.log\"]", dir.path().display());
        let c = config(dir.path(), &exclude);
        let c = Config {
            start_at: StartAt::End,
            ..c
        };
        let mut t = tailer(&c, Vec::new());
        assert!(step(&mut t, Instant::now()).is_empty());
        append(&dir.path().join("a.log"), "new\n");
        append(&dir.path().join("b.log"), "born later\n");
        append(&dir.path().join("skip.log"), "excluded\n");
        let mut got = step(&mut t, Instant::now());
        got.sort();
        assert_eq!(got, ["born later", "new"]);
    }
}
