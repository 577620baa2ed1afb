//! The spool: a write-ahead log per pipeline that makes "acknowledged" mean "kept".
//!
//! Receivers [`Spool::append`] items; the returned ticket resolves once the item is durable at
//! the configured [`Fsync`] level, and only then do they answer their client. One writer thread
//! batches concurrent appends into one write (and one fsync: group commit). Each exporter reads
//! through its own [`SpoolReader`] cursor: a caught-up reader is served from an in-memory tail,
//! a lagging one from the segment files. A segment is deleted once every cursor has passed it;
//! nothing else ever deletes spooled data.
//!
//! Durability levels (what an acknowledged item survives):
//! * `always`: written and `fdatasync`ed before the ack — survives kill -9 and power loss.
//! * `interval`: written to the OS before the ack, fsynced every `fsync_interval` — survives
//!   kill -9 and restarts; power loss can lose the last interval.
//! * `none`: acknowledged when queued for the writer — a crash loses what is still queued.

mod cursor;
mod record;
mod segment;

pub use cursor::{CursorState, cursor_path};
pub use record::{Record, encoded_len};
pub use segment::segment_path;

use parking_lot::Mutex;
use segment::{ReadStep, SegmentMeta, SegmentReader};
use serde::{Deserialize, Serialize};
use sluice_core::config::InvalidConfig;
use sluice_core::time::now_unix_millis;
use sluice_core::{ByteSize, DurationStr, Item, Refusal};
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Always,
    #[default]
    Interval,
    None,
}

/// `[pipelines.spool]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// When an acknowledged item is on disk; see the crate docs.
    pub fsync: Fsync,
    /// How often `interval` fsyncs.
    pub fsync_interval: DurationStr,
    /// Most bytes the spool holds; beyond it receivers get retryable refusals.
    pub max_bytes: ByteSize,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: ByteSize,
    /// Appends waiting for the writer; beyond it receivers get retryable refusals.
    pub queue_capacity: usize,
    /// Most bytes of recent records kept in memory until every exporter has read them, so
    /// exporters that keep up never read the disk. Records leave as soon as all readers passed
    /// them, so at moderate rates the tail stays small; the default, 64 MiB, lets an exporter
    /// trail intake by the batches it has in flight at ~1M spans/s before it reads from disk
    /// (decompressing, which showed as 5 % of Sluice's CPU at full load with 16 MiB). An
    /// exporter that falls further behind keeps up to half of it for the records right after
    /// its position, so that it can catch up from memory (docs/spool.md, "Read path").
    pub memory_bytes: ByteSize,
    /// Store payloads snappy-compressed on disk (`"snappy"`, the default) or as they came
    /// (`"none"`). Compression cuts disk writes 4–5× for OTLP, which is what bounds fsync'd
    /// throughput; memory copies stay uncompressed.
    pub compression: SpoolCompression,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpoolCompression {
    #[default]
    Snappy,
    None,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            fsync: Fsync::Interval,
            fsync_interval: DurationStr::from_millis(200),
            max_bytes: ByteSize::gib(1),
            segment_bytes: ByteSize::mib(64),
            queue_capacity: 8192,
            memory_bytes: ByteSize::mib(64),
            compression: SpoolCompression::Snappy,
        }
    }
}

impl SpoolConfig {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.segment_bytes.0 < 4096 {
            return Err(InvalidConfig::new("segment_bytes", "must be at least 4KiB"));
        }
        if self.max_bytes.0 < self.segment_bytes.0 {
            return Err(InvalidConfig::new(
                "max_bytes",
                format!(
                    "{} must be at least segment_bytes ({})",
                    self.max_bytes, self.segment_bytes
                ),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(InvalidConfig::new("queue_capacity", "must be at least 1"));
        }
        if self.fsync == Fsync::Interval && self.fsync_interval.0.is_zero() {
            return Err(InvalidConfig::new(
                "fsync_interval",
                "must be greater than 0 with fsync = \"interval\"",
            ));
        }
        Ok(())
    }
}

/// fsyncs done by `interval` syncer threads in this process (for tests and diagnostics).
static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// How many `interval` fsyncs this process has run so far.
pub fn interval_fsyncs() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

/// Retry-After given to clients refused because the spool is full.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Most appends, and bytes, the writer folds into one write.
const MAX_GROUP_APPENDS: usize = 4096;
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

struct Pending {
    item: Item,
    ack: Option<oneshot::Sender<Result<u64, Refusal>>>,
}

/// Records kept in memory, consecutive in sequence.
struct Window {
    /// Sequence number of `records[0]`; for an empty tail, the next one to be published.
    first_seq: u64,
    records: VecDeque<Record>,
    bytes: usize,
}

impl Window {
    fn starting_at(first_seq: u64) -> Self {
        Window {
            first_seq,
            records: VecDeque::new(),
            bytes: 0,
        }
    }

    fn end(&self) -> u64 {
        self.first_seq + self.records.len() as u64
    }

    fn holds(&self, seq: u64) -> bool {
        seq >= self.first_seq && seq < self.end()
    }

    fn push_back(&mut self, record: Record) {
        self.bytes += record.item.payload.len();
        self.records.push_back(record);
    }

    fn pop_front(&mut self) -> Option<Record> {
        let record = self.records.pop_front()?;
        self.bytes -= record.item.payload.len();
        self.first_seq = record.seq + 1;
        Some(record)
    }

    /// Drops the records below `seq`.
    fn drop_below(&mut self, seq: u64) {
        while self.records.front().is_some_and(|r| r.seq < seq) {
            self.pop_front();
        }
    }

    /// Copies records from `seq` on into `out` while `budget` admits them; true when it
    /// stopped at the window's end rather than at the budget.
    fn read_from(
        &self,
        seq: u64,
        out: &mut Vec<Record>,
        budget: &mut ReadBudget,
        weight: &impl Fn(&Record) -> u64,
    ) -> bool {
        let start = seq.saturating_sub(self.first_seq) as usize;
        for r in self.records.range(start.min(self.records.len())..) {
            if !budget.admit(out.is_empty(), weight(r), r.item.payload.len()) {
                return false;
            }
            out.push(r.clone());
        }
        true
    }
}

/// What one read may still take, in weight (records or items) and payload bytes.
struct ReadBudget {
    max_weight: u64,
    max_bytes: usize,
    weight: u64,
    bytes: usize,
}

impl ReadBudget {
    fn new(max_weight: u64, max_bytes: usize) -> Self {
        ReadBudget {
            max_weight,
            max_bytes,
            weight: 0,
            bytes: 0,
        }
    }

    /// Takes a record into the budget if it fits; the first record of a read always fits.
    fn admit(&mut self, first: bool, weight: u64, bytes: usize) -> bool {
        if !first && (self.weight + weight > self.max_weight || self.bytes + bytes > self.max_bytes)
        {
            return false;
        }
        self.weight += weight;
        self.bytes += bytes;
        true
    }

    fn full(&self) -> bool {
        self.weight >= self.max_weight
    }
}

struct State {
    segments: Vec<SegmentMeta>,
    /// The newest records, for the exporters that keep up.
    tail: Window,
    /// Records the tail let go of while an exporter still had to read them, oldest first and
    /// without gaps, so that an exporter that fell behind the tail reads the records right
    /// after its position from memory: one that could only read disk would spend a
    /// decompression per record more than one that keeps up, and on a machine near its limit
    /// could stay behind for good.
    catch_up: Window,
}

struct Shared {
    name: String,
    dir: PathBuf,
    cursor_dir: PathBuf,
    config: SpoolConfig,
    queue: crossbeam_queue::ArrayQueue<Pending>,
    state: Mutex<State>,
    /// One past the newest record readers may see.
    published: AtomicU64,
    readers_notify: Notify,
    disk_bytes: AtomicU64,
    queued_bytes: AtomicU64,
    /// Set after a write failed for lack of space; appends are refused until it passes.
    disk_full_until_ms: AtomicU64,
    closed: AtomicBool,
    /// A cursor moved: the writer thread should look for segments to delete.
    gc_requested: AtomicBool,
    cursors: Mutex<HashMap<String, CursorState>>,
    /// Where each live reader will read next: the memory tail drops what all of them passed.
    reader_positions: Mutex<Vec<std::sync::Weak<AtomicU64>>>,
    /// Where each reader started when the spool opened: records below it were spooled before
    /// this process started (replayed).
    replay_end: u64,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
    writer_thread: Mutex<Option<thread::Thread>>,
}

/// A pipeline's spool. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

/// Records and their bytes on disk ([`Spool::stored_between`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub records: u64,
    pub bytes: u64,
}

/// How often a long start-up check of the segments reports how far it got (`ScanProgress`).
pub const OPEN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Progress of the start-up check of a spool's segments: a line every `every` while it lasts
/// (a small spool is checked before the first line is due: nothing is said), and one at the
/// end if anything was. The lines are returned; `Spool::open` logs them.
struct ScanProgress {
    segments: usize,
    total_bytes: u64,
    checked_segments: usize,
    checked_bytes: u64,
    every: Duration,
    started: Instant,
    next_report: Instant,
    reported: bool,
}

impl ScanProgress {
    fn new(segments: &[(u64, PathBuf)], every: Duration) -> ScanProgress {
        let started = Instant::now();
        ScanProgress {
            segments: segments.len(),
            total_bytes: segments
                .iter()
                .filter_map(|(_, p)| fs::metadata(p).ok())
                .map(|m| m.len())
                .sum(),
            checked_segments: 0,
            checked_bytes: 0,
            every,
            started,
            next_report: started + every,
            reported: false,
        }
    }

    /// One more segment of `bytes` checked; a progress line when one is due.
    fn checked(&mut self, bytes: u64) -> Option<String> {
        self.checked_segments += 1;
        self.checked_bytes += bytes;
        let now = Instant::now();
        if now < self.next_report || self.checked_segments >= self.segments {
            return None;
        }
        self.next_report = now + self.every;
        self.reported = true;
        let rate = self.checked_bytes as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let left = self.total_bytes.saturating_sub(self.checked_bytes) as f64 / rate.max(1.0);
        Some(format!(
            "checking spool segments from an earlier run: {} of {} ({} of {}), {}/s, about {:.0}s left",
            self.checked_segments,
            self.segments,
            human_bytes(self.checked_bytes),
            human_bytes(self.total_bytes),
            human_bytes(rate as u64),
            left
        ))
    }

    /// The closing line, if progress was reported.
    fn finish(&self) -> Option<String> {
        self.reported.then(|| {
            format!(
                "checked spool segments: {} ({}) in {:.1}s",
                self.segments,
                human_bytes(self.checked_bytes),
                self.started.elapsed().as_secs_f64()
            )
        })
    }
}

/// `1.5 GiB`, `320 KiB`, `12 B`: byte counts for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What opening found on disk.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    pub segments: usize,
    pub records: u64,
    pub corrupt_records: u64,
    pub truncated_bytes: u64,
    pub cursors_recovered: Vec<String>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` for the given exporters: validates every segment,
    /// truncates a torn tail, loads cursors (a missing or damaged one starts at the oldest
    /// record), and removes cursors of exporters no longer configured so they stop holding data.
    pub fn open(
        name: &str,
        dir: &Path,
        config: SpoolConfig,
        exporters: &[String],
    ) -> io::Result<(Spool, OpenReport)> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let cursor_dir = dir.join("cursors");
        fs::create_dir_all(&cursor_dir)?;
        let mut report = OpenReport::default();
        let mut segments = Vec::new();
        let mut next_seq = 0u64;
        let mut disk_bytes = 0u64;
        let found = segment::list(dir)?;
        let mut scan = ScanProgress::new(&found, OPEN_PROGRESS_EVERY);
        for (first_seq, path) in found {
            let rec = segment::recover(&path)?;
            if let Some(line) = scan.checked(rec.len + rec.truncated_bytes) {
                tracing::info!(spool = name, "{line}");
            }
            report.records += rec.records;
            report.corrupt_records += rec.corrupt_records;
            report.truncated_bytes += rec.truncated_bytes;
            if rec.corrupt_records > 0 || rec.truncated_bytes > 0 {
                tracing::warn!(spool = name, segment = %path.display(), corrupt = rec.corrupt_records,
                    truncated_bytes = rec.truncated_bytes, "spool segment was damaged; skipped what could not be read");
            }
            let seg_next = rec
                .last_seq
                .map(|s| s + 1)
                .unwrap_or(first_seq)
                .max(first_seq);
            next_seq = next_seq.max(seg_next);
            disk_bytes += rec.len;
            segments.push(SegmentMeta {
                first_seq,
                path,
                len: rec.len,
                next_seq: seg_next,
            });
        }
        if let Some(line) = scan.finish() {
            tracing::info!(spool = name, "{line}");
        }
        metrics::counter!("sluice_spool_corrupt_records_total", "pipeline" => name.to_owned())
            .increment(report.corrupt_records);
        report.segments = segments.len();
        let oldest = segments.first().map(|s| s.first_seq);

        let mut cursors = HashMap::new();
        for exporter in exporters {
            let state = match cursor::load(&cursor_dir, exporter) {
                cursor::Loaded::Found(s) => s,
                cursor::Loaded::Missing => CursorState::default(),
                cursor::Loaded::Damaged(why) => {
                    tracing::warn!(spool = name, exporter, reason = %why, "cursor damaged; replaying from the oldest record");
                    report.cursors_recovered.push(exporter.clone());
                    CursorState::default()
                }
            };
            next_seq = next_seq.max(state.committed);
            cursors.insert(exporter.clone(), state);
        }
        // A cursor before the oldest segment points at data already delivered and deleted.
        let floor = oldest.unwrap_or(next_seq);
        for state in cursors.values_mut() {
            state.committed = state.committed.max(floor).min(next_seq);
        }
        for stale in cursor::list(&cursor_dir) {
            if !exporters.contains(&stale) {
                tracing::info!(
                    spool = name,
                    exporter = stale,
                    "exporter no longer configured; its cursor no longer holds spooled data"
                );
                cursor::remove(&cursor_dir, &stale)?;
            }
        }

        let shared = Arc::new(Shared {
            name: name.to_owned(),
            dir: dir.to_owned(),
            cursor_dir,
            queue: crossbeam_queue::ArrayQueue::new(config.queue_capacity),
            state: Mutex::new(State {
                segments,
                tail: Window::starting_at(next_seq),
                catch_up: Window::starting_at(next_seq),
            }),
            published: AtomicU64::new(next_seq),
            readers_notify: Notify::new(),
            disk_bytes: AtomicU64::new(disk_bytes),
            queued_bytes: AtomicU64::new(0),
            disk_full_until_ms: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            gc_requested: AtomicBool::new(false),
            cursors: Mutex::new(cursors),
            reader_positions: Mutex::new(Vec::new()),
            replay_end: next_seq,
            writer: Mutex::new(None),
            writer_thread: Mutex::new(None),
            config,
        });
        let writer_shared = shared.clone();
        let handle = thread::Builder::new()
            .name(format!("spool-{name}"))
            .spawn(move || Writer::new(writer_shared, next_seq).run())?;
        *shared.writer_thread.lock() = Some(handle.thread().clone());
        *shared.writer.lock() = Some(handle);
        let spool = Spool { shared };
        spool.publish_gauges();
        spool.gc();
        Ok((spool, report))
    }

    /// Queues an item. `Err` is an immediate refusal (full, stopping); the ticket resolves when
    /// the item is durable at the configured level.
    pub fn append(&self, item: Item) -> Result<AppendTicket, Refusal> {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(Refusal::Unavailable {
                reason: "stopping",
                message: "sluice is shutting down".into(),
            });
        }
        if s.disk_full_until_ms.load(Ordering::Relaxed) > now_unix_millis() {
            return Err(Refusal::Backpressure {
                reason: "disk_full",
                retry_after: FULL_RETRY_AFTER,
            });
        }
        let size = encoded_len(&item) as u64;
        let used = s.disk_bytes.load(Ordering::Relaxed) + s.queued_bytes.load(Ordering::Relaxed);
        if used + size > s.config.max_bytes.0 {
            return Err(Refusal::Backpressure {
                reason: "spool_full",
                retry_after: FULL_RETRY_AFTER,
            });
        }
        let (ack, rx) = if s.config.fsync == Fsync::None {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        s.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if s.queue.push(Pending { item, ack }).is_err() {
            s.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(Refusal::Backpressure {
                reason: "queue_full",
                retry_after: FULL_RETRY_AFTER,
            });
        }
        self.wake_writer();
        Ok(AppendTicket { rx })
    }

    fn wake_writer(&self) {
        if let Some(t) = self.shared.writer_thread.lock().as_ref() {
            t.unpark();
        }
    }

    /// A reader for `exporter`, which must have been named at open.
    pub fn reader(&self, exporter: &str) -> Option<SpoolReader> {
        let state = *self.shared.cursors.lock().get(exporter)?;
        let shared_pos = Arc::new(AtomicU64::new(state.committed));
        let mut positions = self.shared.reader_positions.lock();
        positions.retain(|p| p.strong_count() > 0);
        positions.push(Arc::downgrade(&shared_pos));
        drop(positions);
        let read_from = |source: &'static str| {
            metrics::counter!("sluice_spool_read_items_total", "pipeline" => self.shared.name.clone(),
                "exporter" => exporter.to_owned(), "source" => source)
        };
        Some(SpoolReader {
            shared: self.shared.clone(),
            name: exporter.to_owned(),
            pos: state.committed,
            shared_pos,
            dispatched_before: state.dispatched,
            disk: None,
            read_from_memory: read_from("memory"),
            read_from_disk: read_from("disk"),
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Bytes on disk plus bytes queued for the writer.
    pub fn used_bytes(&self) -> u64 {
        self.shared.disk_bytes.load(Ordering::Relaxed)
            + self.shared.queued_bytes.load(Ordering::Relaxed)
    }

    /// One past the newest readable record.
    pub fn published(&self) -> u64 {
        self.shared.published.load(Ordering::Acquire)
    }

    pub fn cursor(&self, exporter: &str) -> Option<CursorState> {
        self.shared.cursors.lock().get(exporter).copied()
    }

    pub fn segment_count(&self) -> usize {
        self.shared.state.lock().segments.len()
    }

    /// One past the newest record found when the spool opened: records below it were spooled
    /// by an earlier run, and a reader behind it is replaying them.
    pub fn replay_end(&self) -> u64 {
        self.shared.replay_end
    }

    /// The records in `[from, to)` that are still on disk, and their bytes. Bytes are exact for
    /// whole segments and prorated by record count for a segment the range cuts.
    pub fn stored_between(&self, from: u64, to: u64) -> Stored {
        let state = self.shared.state.lock();
        let mut out = Stored::default();
        for seg in &state.segments {
            let (lo, hi) = (from.max(seg.first_seq), to.min(seg.next_seq));
            if lo >= hi {
                continue;
            }
            let records = hi - lo;
            let in_segment = seg.next_seq - seg.first_seq;
            out.records += records;
            out.bytes += if records == in_segment {
                seg.len
            } else {
                (seg.len as u128 * records as u128 / in_segment as u128) as u64
            };
        }
        out
    }

    /// Stops intake, writes what is queued, fsyncs and persists cursors. Spooled data stays for
    /// the next start.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.wake_writer();
        if let Some(handle) = self.shared.writer.lock().take() {
            let _ = handle.join();
        }
        self.persist_cursors();
        self.shared.readers_notify.notify_waiters();
    }

    fn persist_cursors(&self) {
        let cursors = self.shared.cursors.lock().clone();
        for (name, state) in cursors {
            if let Err(e) = cursor::store(&self.shared.cursor_dir, &name, state) {
                tracing::warn!(spool = %self.shared.name, exporter = name, error = %e, "could not persist cursor");
            }
        }
    }

    fn gc(&self) {
        self.shared.gc();
    }

    fn publish_gauges(&self) {
        self.shared.publish_gauges();
    }
}

impl Shared {
    /// Deletes segments every cursor has passed. The newest segment is always kept.
    fn gc(&self) {
        let s = self;
        let min_committed = match s.cursors.lock().values().map(|c| c.committed).min() {
            Some(m) => m,
            None => return,
        };
        let mut state = s.state.lock();
        while state.segments.len() > 1 && state.segments[0].next_seq <= min_committed {
            let seg = state.segments.remove(0);
            match fs::remove_file(&seg.path) {
                Ok(()) => {
                    s.disk_bytes.fetch_sub(seg.len, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(spool = %s.name, segment = %seg.path.display(), error = %e, "could not delete delivered segment");
                    state.segments.insert(0, seg);
                    break;
                }
            }
        }
        drop(state);
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        let s = self;
        metrics::gauge!("sluice_spool_bytes", "pipeline" => s.name.clone())
            .set(s.disk_bytes.load(Ordering::Relaxed) as f64);
        metrics::gauge!("sluice_spool_segments", "pipeline" => s.name.clone())
            .set(s.state.lock().segments.len() as f64);
    }
}

/// Resolves when an appended item is durable; carries its sequence number when known.
pub struct AppendTicket {
    rx: Option<oneshot::Receiver<Result<u64, Refusal>>>,
}

impl Future for AppendTicket {
    type Output = Result<(), Refusal>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.rx.as_mut() {
            None => Poll::Ready(Ok(())),
            Some(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(result)) => Poll::Ready(result.map(|_| ())),
                Poll::Ready(Err(_)) => Poll::Ready(Err(Refusal::Unavailable {
                    reason: "spool_stopped",
                    message: "the spool writer stopped before the data was written".into(),
                })),
            },
        }
    }
}

/// An exporter's view of the spool.
pub struct SpoolReader {
    shared: Arc<Shared>,
    name: String,
    /// Next sequence number to hand out.
    pos: u64,
    /// `pos` as the writer sees it, to drop memory-tail records every reader has passed.
    shared_pos: Arc<AtomicU64>,
    /// How far this exporter had read before the last stop: re-reads below it may be duplicates.
    dispatched_before: u64,
    disk: Option<SegmentReader>,
    /// `sluice_spool_read_items_total` by source: whether this reader keeps up (memory) or
    /// reads back what the memory tail no longer holds (disk: a read and a decompression).
    read_from_memory: metrics::Counter,
    read_from_disk: metrics::Counter,
}

impl Shared {
    /// The lowest position of the live readers (records below it were read by all); `None`
    /// while there are none, so that records wait in memory for a reader yet to start.
    fn passed_by_all_readers(&self) -> Option<u64> {
        let mut positions = self.reader_positions.lock();
        positions.retain(|p| p.strong_count() > 0);
        positions
            .iter()
            .filter_map(|p| p.upgrade())
            .map(|p| p.load(Ordering::Acquire))
            .min()
    }
}

/// Trims the memory windows after an append. What every reader has read leaves (each holds its
/// own copy until delivered), so memory is spent only on records some exporter still has to
/// read. Past `cap` bytes the tail lets go of its oldest records; the catch-up window takes
/// them, up to half of `cap`, for the exporter that fell behind, and keeps the oldest when
/// full. Once that exporter has read it all, the window starts again at whatever the tail lets
/// go of next, so the exporter reads disk only for the stretch between the two.
fn keep_in_memory(tail: &mut Window, catch_up: &mut Window, cap: usize, passed: Option<u64>) {
    if let Some(passed) = passed {
        catch_up.drop_below(passed);
    }
    let catch_up_cap = cap / 2;
    while let Some(front) = tail.records.front() {
        let read_by_all = passed.is_some_and(|p| front.seq < p);
        if !read_by_all && tail.bytes + catch_up.bytes <= cap {
            break;
        }
        let Some(record) = tail.pop_front() else {
            break;
        };
        if read_by_all {
            continue;
        }
        if catch_up.records.is_empty() {
            catch_up.first_seq = record.seq;
        }
        if record.seq == catch_up.end()
            && catch_up.bytes + record.item.payload.len() <= catch_up_cap
        {
            catch_up.push_back(record);
        }
    }
}

impl SpoolReader {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Next sequence number this reader will return.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Records published but not yet final for this exporter, given its committed position.
    pub fn backlog(&self, committed: u64) -> u64 {
        self.shared
            .published
            .load(Ordering::Acquire)
            .saturating_sub(committed)
    }

    pub fn has_more(&self) -> bool {
        self.pos < self.shared.published.load(Ordering::Acquire)
    }

    /// Resolves when there is something to read or the spool is closed.
    pub async fn wait(&self) {
        loop {
            let notified = self.shared.readers_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_more() || self.shared.closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Reads up to `max_records` records / `max_bytes` payload bytes (at least one record if
    /// any is available) without waiting.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> Vec<Record> {
        self.read_limited(max_records as u64, max_bytes, |_| 1)
    }

    /// Reads records holding up to `max_items` items (spans, data points, log records) /
    /// `max_bytes` payload bytes (at least one record if any is available) without waiting.
    /// Batches are sized in items, as Alloy's `send_batch_max_size` is.
    pub fn read_items(&mut self, max_items: u64, max_bytes: usize) -> Vec<Record> {
        self.read_limited(max_items, max_bytes, |r| u64::from(r.item.count))
    }

    fn read_limited(
        &mut self,
        max_weight: u64,
        max_bytes: usize,
        weight: impl Fn(&Record) -> u64,
    ) -> Vec<Record> {
        let mut out = Vec::new();
        let published = self.shared.published.load(Ordering::Acquire);
        if self.pos >= published {
            return out;
        }
        let mut budget = ReadBudget::new(max_weight, max_bytes);
        let from_memory = {
            let state = self.shared.state.lock();
            let (tail, catch_up) = (&state.tail, &state.catch_up);
            if self.pos >= tail.first_seq {
                tail.read_from(self.pos, &mut out, &mut budget, &weight);
                true
            } else if catch_up.holds(self.pos) {
                if catch_up.read_from(self.pos, &mut out, &mut budget, &weight)
                    && catch_up.end() == tail.first_seq
                {
                    tail.read_from(tail.first_seq, &mut out, &mut budget, &weight);
                }
                true
            } else {
                false
            }
        };
        if !from_memory {
            self.read_disk(&mut out, &mut budget, weight);
        }
        let items: u64 = out.iter().map(|r| u64::from(r.item.count)).sum();
        if from_memory {
            self.read_from_memory.increment(items);
        } else {
            self.read_from_disk.increment(items);
        }
        if let Some(last) = out.last() {
            self.pos = last.seq + 1;
        }
        self.shared_pos.store(self.pos, Ordering::Release);
        self.count_replays(&out);
        out
    }

    fn count_replays(&self, records: &[Record]) {
        let replay_end = self.shared.replay_end;
        let replayed = records
            .iter()
            .filter(|r| r.seq < replay_end)
            .map(|r| u64::from(r.item.count))
            .sum::<u64>();
        if replayed > 0 {
            let labels = [
                ("pipeline", self.shared.name.clone()),
                ("exporter", self.name.clone()),
            ];
            metrics::counter!("sluice_spool_replayed_items_total", &labels).increment(replayed);
            let redelivered = records
                .iter()
                .filter(|r| r.seq < self.dispatched_before)
                .map(|r| u64::from(r.item.count))
                .sum::<u64>();
            metrics::counter!("sluice_spool_redelivered_items_total", &labels)
                .increment(redelivered);
        }
    }

    fn read_disk(
        &mut self,
        out: &mut Vec<Record>,
        budget: &mut ReadBudget,
        weight: impl Fn(&Record) -> u64,
    ) {
        loop {
            // Find the segment holding `pos`, reusing the open reader when it still fits.
            let (meta, in_memory_from) = {
                let state = self.shared.state.lock();
                // Where memory takes over: the catch-up window if it lies ahead, else the tail.
                let catch_up = &state.catch_up;
                let in_memory_from =
                    if !catch_up.records.is_empty() && catch_up.first_seq > self.pos {
                        catch_up.first_seq
                    } else {
                        state.tail.first_seq
                    };
                let idx = state.segments.partition_point(|s| s.first_seq <= self.pos);
                let meta = if idx == 0 {
                    // Before the oldest segment: those records were delivered and deleted.
                    match state.segments.first() {
                        Some(first) => {
                            self.pos = first.first_seq;
                            first.clone()
                        }
                        None => {
                            self.pos = self.pos.max(in_memory_from);
                            return;
                        }
                    }
                } else {
                    state.segments[idx - 1].clone()
                };
                (meta, in_memory_from)
            };
            if self.pos >= in_memory_from {
                return; // caught up with memory: the next read serves from there
            }
            if self.disk.as_ref().map(|d| d.first_seq) != Some(meta.first_seq) {
                match SegmentReader::open(&meta) {
                    Ok(r) => self.disk = Some(r),
                    Err(e) => {
                        tracing::error!(spool = %self.shared.name, segment = %meta.path.display(), error = %e, "cannot open segment; skipping it");
                        self.pos = meta.next_seq.max(self.pos + 1);
                        self.disk = None;
                        continue;
                    }
                }
            }
            let Some(reader) = self.disk.as_mut() else {
                return;
            };
            loop {
                if !out.is_empty() && budget.full() {
                    return;
                }
                match reader.next(meta.len) {
                    Ok(ReadStep::Record(r)) => {
                        if r.seq < self.pos {
                            continue;
                        }
                        // Stop where memory holds the rest (unless nothing was read yet:
                        // a gap in the segments may have jumped past that point).
                        if (r.seq >= in_memory_from && !out.is_empty())
                            || !budget.admit(out.is_empty(), weight(&r), r.item.payload.len())
                        {
                            reader.unread();
                            return;
                        }
                        self.pos = r.seq + 1;
                        out.push(r);
                    }
                    Ok(ReadStep::Corrupt) => {
                        // Counted in sluice_spool_corrupt_records_total when found at open;
                        // damage that appears while running is counted here, per exporter.
                        tracing::warn!(spool = %self.shared.name, exporter = %self.name, segment = %meta.path.display(),
                            "skipped a spool record with a bad checksum");
                        metrics::counter!("sluice_spool_skipped_records_total", "pipeline" => self.shared.name.clone(),
                            "exporter" => self.name.clone(), "reason" => "corrupt").increment(1);
                    }
                    Ok(ReadStep::End) => break,
                    Err(e) => {
                        tracing::error!(spool = %self.shared.name, segment = %meta.path.display(), error = %e, "segment read failed; skipping the rest of it");
                        break;
                    }
                }
            }
            // End of this segment: everything it held is behind us.
            self.pos = self.pos.max(meta.next_seq);
            self.disk = None;
            if !out.is_empty() {
                return;
            }
            if self.pos >= self.shared.published.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// Marks everything below `upto` as delivered (or dropped for good), persists the cursor
    /// and deletes segments no cursor needs any more.
    pub fn commit(&self, upto: u64) {
        let state = {
            let mut cursors = self.shared.cursors.lock();
            let Some(c) = cursors.get_mut(&self.name) else {
                return;
            };
            if upto <= c.committed {
                return;
            }
            c.committed = upto;
            c.dispatched = c.dispatched.max(self.pos);
            *c
        };
        if let Err(e) = cursor::store(&self.shared.cursor_dir, &self.name, state) {
            tracing::warn!(spool = %self.shared.name, exporter = %self.name, error = %e, "could not persist cursor; a restart may resend some data");
        }
        // Deleting a large segment can take milliseconds; leave it to the writer thread so
        // the async worker running this exporter never stalls the requests queued behind it.
        self.shared.gc_requested.store(true, Ordering::Release);
        if let Some(t) = self.shared.writer_thread.lock().as_ref() {
            t.unpark();
        }
    }

    /// Closed and fully read: nothing more will ever come.
    pub fn is_finished(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) && !self.has_more()
    }
}

struct Writer {
    shared: Arc<Shared>,
    next_seq: u64,
    file: Option<File>,
    /// First sequence number of the segment `file` is.
    segment_first_seq: u64,
    buf: Vec<u8>,
    /// With `fsync = "interval"`: the thread that syncs, so appends never wait behind an fsync.
    syncer: Option<(Arc<IntervalSyncer>, thread::JoinHandle<()>)>,
    /// With `fsync = "always"`: the threads that sync written groups and then acknowledge them.
    always: Option<AlwaysSyncers>,
}

/// Threads that fsync and acknowledge groups for `fsync = "always"`.
///
/// The writer hands each written group over and goes on encoding and writing the next one, so
/// compression and `write` overlap the flush instead of queueing behind it. Several threads let
/// a new group's `fdatasync` start at once rather than after the one in progress: the device
/// completes concurrent flushes far faster than serial ones (`benches/RESULTS.md`), which is
/// what bounds a client's latency, and so its throughput, at this level.
struct AlwaysSyncers {
    jobs: Option<std::sync::mpsc::Sender<SyncJob>>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// A written group waiting for its fsync.
struct SyncJob {
    /// The segment the group went to (a handle of its own: the writer may rotate meanwhile),
    /// and that segment's first sequence number, which names it.
    file: File,
    segment: u64,
    acks: Vec<(oneshot::Sender<Result<u64, Refusal>>, u64)>,
}

const ALWAYS_SYNC_THREADS: usize = 4;
/// Most groups one fsync acknowledges; more waiting groups go to the next free thread.
const MAX_JOBS_PER_SYNC: usize = 256;

impl AlwaysSyncers {
    fn start(name: &str) -> io::Result<AlwaysSyncers> {
        let (tx, rx) = std::sync::mpsc::channel::<SyncJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(ALWAYS_SYNC_THREADS);
        for i in 0..ALWAYS_SYNC_THREADS {
            let rx = rx.clone();
            let name = name.to_owned();
            threads.push(
                thread::Builder::new()
                    .name(format!("spool-fsync-{name}-{i}"))
                    .spawn(move || Self::run(&name, &rx))?,
            );
        }
        Ok(AlwaysSyncers {
            jobs: Some(tx),
            threads,
        })
    }

    fn run(name: &str, rx: &Mutex<std::sync::mpsc::Receiver<SyncJob>>) {
        loop {
            // Everything queued now was written before the fsync below starts, so one fsync
            // per segment covers all of it.
            let jobs = {
                let rx = rx.lock();
                let Ok(first) = rx.recv() else {
                    return; // the writer stopped and every job was taken
                };
                let mut jobs = vec![first];
                while jobs.len() < MAX_JOBS_PER_SYNC {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                jobs
            };
            let mut synced: Vec<(u64, Result<(), Refusal>)> = Vec::new();
            for job in jobs {
                let result = match synced.iter().find(|(seg, _)| *seg == job.segment) {
                    Some((_, r)) => r.clone(),
                    None => {
                        let r = Self::sync(name, &job.file);
                        synced.push((job.segment, r.clone()));
                        r
                    }
                };
                for (ack, seq) in job.acks {
                    let _ = ack.send(result.clone().map(|()| seq));
                }
            }
        }
    }

    fn sync(name: &str, file: &File) -> Result<(), Refusal> {
        let start = Instant::now();
        let result = file.sync_data();
        metrics::histogram!("sluice_spool_fsync_duration_seconds", "pipeline" => name.to_owned())
            .record(start.elapsed().as_secs_f64());
        result.map_err(|e| {
            // The data stays in the segment (and may be delivered); the client is told it was
            // not kept and resends, so the worst case is a duplicate, never a lost ack.
            tracing::error!(spool = name, error = %e, "fsync failed; refusing the appends it covered");
            Refusal::Unavailable {
                reason: "storage_error",
                message: format!("spool fsync failed: {e}"),
            }
        })
    }

    fn submit(&self, job: SyncJob) {
        if let Some(tx) = &self.jobs
            && let Err(std::sync::mpsc::SendError(job)) = tx.send(job)
        {
            // Every sync thread is gone (it cannot happen short of a panic there): refuse
            // rather than leave the clients waiting.
            for (ack, _) in job.acks {
                let _ = ack.send(Err(Refusal::Unavailable {
                    reason: "spool_stopped",
                    message: "the spool's fsync threads stopped".into(),
                }));
            }
        }
    }

    /// Waits until every submitted group was synced and acknowledged.
    fn stop(mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Runs `interval` fsyncs off the writer thread. Under steady load the writer never idles, so
/// syncing from its own loop would either stall appends behind a large fsync or never happen.
struct IntervalSyncer {
    name: String,
    interval: Duration,
    /// A handle on the segment being written, and whether it has unsynced writes.
    active: Mutex<Option<File>>,
    dirty: AtomicBool,
    /// Segments closed since the last round; each gets a final sync.
    rotated: Mutex<Vec<File>>,
    stop: AtomicBool,
}

impl IntervalSyncer {
    fn run(&self) {
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            if !stopping {
                thread::park_timeout(self.interval);
            }
            for f in std::mem::take(&mut *self.rotated.lock()) {
                self.sync(&f);
            }
            if self.dirty.swap(false, Ordering::AcqRel) {
                let active = self.active.lock().as_ref().and_then(|f| f.try_clone().ok());
                if let Some(f) = active {
                    self.sync(&f);
                }
            }
            if stopping {
                return;
            }
        }
    }

    fn sync(&self, f: &File) {
        FSYNCS.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        if let Err(e) = f.sync_data() {
            tracing::error!(spool = %self.name, error = %e, "fsync failed");
        }
        metrics::histogram!("sluice_spool_fsync_duration_seconds", "pipeline" => self.name.clone())
            .record(start.elapsed().as_secs_f64());
    }
}

impl Writer {
    fn new(shared: Arc<Shared>, next_seq: u64) -> Writer {
        let syncer = (shared.config.fsync == Fsync::Interval).then(|| {
            let syncer = Arc::new(IntervalSyncer {
                name: shared.name.clone(),
                interval: shared.config.fsync_interval.0,
                active: Mutex::new(None),
                dirty: AtomicBool::new(false),
                rotated: Mutex::new(Vec::new()),
                stop: AtomicBool::new(false),
            });
            let runner = syncer.clone();
            let handle = thread::Builder::new()
                .name(format!("spool-sync-{}", shared.name))
                .spawn(move || runner.run());
            (syncer, handle)
        });
        // A syncer that could not start leaves `interval` acking after write() only, which is
        // still kill -9 safe; say so rather than fail.
        let syncer = match syncer {
            Some((s, Ok(h))) => Some((s, h)),
            Some((_, Err(e))) => {
                tracing::error!(spool = %shared.name, error = %e, "cannot start the fsync thread; data is written but not fsynced");
                None
            }
            None => None,
        };
        let always = match shared.config.fsync {
            Fsync::Always => match AlwaysSyncers::start(&shared.name) {
                Ok(a) => Some(a),
                Err(e) => {
                    // The writer then syncs each group itself, as durable, only slower.
                    tracing::error!(spool = %shared.name, error = %e, "cannot start the fsync threads; syncing on the writer thread");
                    None
                }
            },
            _ => None,
        };
        Writer {
            shared,
            next_seq,
            file: None,
            segment_first_seq: next_seq,
            buf: Vec::with_capacity(1 << 20),
            syncer,
            always,
        }
    }

    /// Points the syncer at the segment now being written.
    fn track_active(&self) {
        if let (Some((syncer, _)), Some(f)) = (&self.syncer, &self.file) {
            *syncer.active.lock() = f.try_clone().ok();
        }
    }

    fn run(mut self) {
        let mut group = Vec::new();
        loop {
            let mut bytes = 0usize;
            while group.len() < MAX_GROUP_APPENDS && bytes < MAX_GROUP_BYTES {
                match self.shared.queue.pop() {
                    Some(p) => {
                        bytes += encoded_len(&p.item);
                        group.push(p);
                    }
                    None => break,
                }
            }
            if self.shared.gc_requested.swap(false, Ordering::AcqRel) {
                self.shared.gc();
            }
            if !group.is_empty() {
                self.write_group(&mut group);
                continue;
            }
            if self.shared.closed.load(Ordering::Acquire) && self.shared.queue.is_empty() {
                if let Some(always) = self.always.take() {
                    always.stop();
                }
                if let Some((syncer, handle)) = self.syncer.take() {
                    syncer.stop.store(true, Ordering::Release);
                    handle.thread().unpark();
                    let _ = handle.join();
                }
                return;
            }
            thread::park_timeout(Duration::from_millis(50));
        }
    }

    /// Opens the newest segment for appending, or starts a new one when it is full.
    fn ensure_segment(&mut self) -> io::Result<()> {
        let seg_bytes = self.shared.config.segment_bytes.0;
        let (need_new, last) = {
            let state = self.shared.state.lock();
            match state.segments.last() {
                Some(last) if last.len < seg_bytes => {
                    (false, Some((last.path.clone(), last.first_seq)))
                }
                _ => (true, None),
            }
        };
        if !need_new {
            if self.file.is_none()
                && let Some((path, first_seq)) = last
            {
                self.file = Some(OpenOptions::new().append(true).open(path)?);
                self.segment_first_seq = first_seq;
                self.track_active();
            }
            return Ok(());
        }
        // The closed segment gets its final fsync on the syncer thread (with `always` every
        // group was synced already).
        if let (Some((syncer, _)), Some(old)) = (&self.syncer, self.file.take()) {
            syncer.rotated.lock().push(old);
        }
        let path = segment::segment_path(&self.shared.dir, self.next_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if self.shared.config.fsync == Fsync::Always {
            File::open(&self.shared.dir)?.sync_all()?;
        }
        self.file = Some(file);
        self.segment_first_seq = self.next_seq;
        self.track_active();
        self.shared.state.lock().segments.push(SegmentMeta {
            first_seq: self.next_seq,
            path,
            len: 0,
            next_seq: self.next_seq,
        });
        Ok(())
    }

    fn write_group(&mut self, group: &mut Vec<Pending>) {
        let shared = self.shared.clone();
        let queued: u64 = group.iter().map(|p| encoded_len(&p.item) as u64).sum();
        let result = self.ensure_segment().and_then(|()| {
            self.buf.clear();
            let now = now_unix_millis();
            let compress = shared.config.compression == SpoolCompression::Snappy;
            for (i, p) in group.iter().enumerate() {
                record::encode_into(&mut self.buf, self.next_seq + i as u64, now, &p.item, compress);
            }
            let file = self.file.as_mut().ok_or_else(|| io::Error::other("no open segment"))?;
            let before = file.metadata()?.len();
            if let Err(e) = file.write_all(&self.buf) {
                // Cut whatever part of the group reached the file so no half record or
                // unacknowledged record stays behind.
                let _ = file.set_len(before);
                return Err(e);
            }
            if shared.config.fsync == Fsync::Always && self.always.is_none() {
                let start = Instant::now();
                if let Err(e) = file.sync_data() {
                    let _ = file.set_len(before);
                    return Err(e);
                }
                metrics::histogram!("sluice_spool_fsync_duration_seconds", "pipeline" => shared.name.clone())
                    .record(start.elapsed().as_secs_f64());
            } else if let Some((syncer, _)) = &self.syncer {
                syncer.dirty.store(true, Ordering::Release);
            }
            Ok(now)
        });
        shared.queued_bytes.fetch_sub(queued, Ordering::Relaxed);
        match result {
            Ok(now) => {
                let first = self.next_seq;
                self.next_seq += group.len() as u64;
                let written = self.buf.len() as u64;
                shared.disk_bytes.fetch_add(written, Ordering::Relaxed);
                let items: u64 = group.iter().map(|p| u64::from(p.item.count)).sum();
                {
                    let mut state = shared.state.lock();
                    if let Some(last) = state.segments.last_mut() {
                        last.len += written;
                        last.next_seq = self.next_seq;
                    }
                    let cap = shared.config.memory_bytes.as_usize();
                    let passed = shared.passed_by_all_readers();
                    let State { tail, catch_up, .. } = &mut *state;
                    for (i, p) in group.iter().enumerate() {
                        tail.push_back(Record {
                            seq: first + i as u64,
                            appended_ms: now,
                            item: p.item.clone(),
                        });
                    }
                    keep_in_memory(tail, catch_up, cap, passed);
                }
                shared.published.store(self.next_seq, Ordering::Release);
                shared.readers_notify.notify_waiters();
                metrics::counter!("sluice_spool_appended_items_total", "pipeline" => shared.name.clone()).increment(items);
                let acks = group
                    .drain(..)
                    .enumerate()
                    .filter_map(|(i, p)| p.ack.map(|ack| (ack, first + i as u64)));
                let sync_file = match (&self.always, &self.file) {
                    (Some(_), Some(file)) => file.try_clone().ok(),
                    _ => None,
                };
                match (&self.always, sync_file) {
                    (Some(always), Some(file)) => always.submit(SyncJob {
                        file,
                        segment: self.segment_first_seq,
                        acks: acks.collect(),
                    }),
                    (Some(_), None) => {
                        // No handle to sync with: refuse rather than acknowledge unsynced data.
                        for (ack, _) in acks {
                            let _ = ack.send(Err(Refusal::Unavailable {
                                reason: "storage_error",
                                message: "cannot open the segment for fsync".into(),
                            }));
                        }
                    }
                    _ => {
                        for (ack, seq) in acks {
                            let _ = ack.send(Ok(seq));
                        }
                    }
                }
                metrics::gauge!("sluice_spool_bytes", "pipeline" => shared.name.clone())
                    .set(shared.disk_bytes.load(Ordering::Relaxed) as f64);
            }
            Err(e) => {
                let out_of_space = e.kind() == io::ErrorKind::StorageFull;
                let refusal = if out_of_space {
                    shared.disk_full_until_ms.store(
                        now_unix_millis() + FULL_RETRY_AFTER.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    Refusal::Backpressure {
                        reason: "disk_full",
                        retry_after: FULL_RETRY_AFTER,
                    }
                } else {
                    Refusal::Unavailable {
                        reason: "storage_error",
                        message: format!("spool write failed: {e}"),
                    }
                };
                tracing::error!(spool = %shared.name, error = %e, appends = group.len(), "spool write failed; refusing these appends");
                // A reopened file handle avoids writing after a failed append position.
                self.file = None;
                let mut lost = 0u64;
                for p in group.drain(..) {
                    match p.ack {
                        Some(ack) => {
                            let _ = ack.send(Err(refusal.clone()));
                        }
                        // fsync = "none" acknowledged at enqueue: this is a real loss; count it.
                        None => lost += u64::from(p.item.count),
                    }
                }
                if lost > 0 {
                    metrics::counter!("sluice_spool_dropped_items_total", "pipeline" => shared.name.clone(), "reason" => refusal.reason())
                        .increment(lost);
                }
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
