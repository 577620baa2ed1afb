//! File log receiver (`type = "file_log"`; Alloy's `loki.source.file`, the OpenTelemetry
//! Collector's `filelog`): tails the files matched by glob patterns, follows their rotation,
//! joins multi-line entries, parses lines into attributes and hands them to the pipeline as
//! OTLP log records.
//!
//! **Positions follow durability.** A batch of entries is one spool append. Before handing it
//! over, the positions file records the batch's end as `pending_end`; once the pipeline
//! answers that the batch is durable, the batch's end becomes the file's `offset` (written
//! with the next batch, or when reading goes idle). After a restart or `kill -9` reading goes
//! on from `offset`: nothing durable-but-unrecorded is lost, and what may be read twice is at
//! most the one batch that was in flight (`max_batch_entries` entries), each of which is
//! counted in `sluice_file_log_reread_entries_total`. See `docs/file_log.md`.

mod config;
pub mod counters;
mod parse;
mod positions;
mod tail;

pub use config::{
    Config, Format, MultilineConfig, SeverityConfig, StartAt, TimeLayout, TimestampConfig,
};
pub use parse::{FILE_NAME_ATTR, FILE_PATH_ATTR, Parser, parse_time, severity_number};
pub use positions::{FileId, Head, Position, PositionsError, PositionsFile};
pub use tail::{Batch, Entry, Mark, Tailer};

use bytes::Bytes;
use futures::future::BoxFuture;
use prost::Message;
use sluice_core::config::DurationStr;
use sluice_core::retry::{Backoff, RetryConfig};
use sluice_core::telemetry::{receiver_accepted, receiver_refused, receiver_request};
use sluice_core::{Item, Receiver, ReceiverContext, ReceiverError, Refusal, Signal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const TYPE_NAME: &str = "file_log";

/// Why the receiver stopped.
#[derive(Debug, thiserror::Error)]
pub enum FileLogError {
    #[error("no pipeline takes logs from this receiver")]
    NoLogsPipeline,
    #[error("no storage directory for the positions file")]
    NoStorage,
    #[error(transparent)]
    Positions(#[from] PositionsError),
    #[error("file reader task failed: {0}")]
    ReaderTask(#[from] tokio::task::JoinError),
}

pub struct FileLogReceiver {
    config: Config,
    component_id: Arc<str>,
    storage: Option<PathBuf>,
}

pub fn build(config: &Config, component_id: &str) -> anyhow::Result<FileLogReceiver> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    Ok(FileLogReceiver {
        config: config.clone(),
        component_id: component_id.into(),
        storage: None,
    })
}

impl Receiver for FileLogReceiver {
    fn listen_addrs(&self) -> Vec<std::net::SocketAddr> {
        Vec::new()
    }

    fn use_storage(&mut self, dir: &Path) -> Result<(), ReceiverError> {
        // Read now, so an unreadable positions file fails the start, not the run.
        PositionsFile::open(dir).map_err(|e| ReceiverError::new("positions", e))?;
        self.storage = Some(dir.to_owned());
        Ok(())
    }

    fn run(self: Box<Self>, ctx: ReceiverContext) -> BoxFuture<'static, Result<(), ReceiverError>> {
        let id = self.component_id.to_string();
        Box::pin(async move { self.serve(ctx).await.map_err(|e| ReceiverError::new(id, e)) })
    }
}

/// What became of one batch.
enum Fate {
    /// Durable in the spool, or refused for good (counted): its positions may be recorded.
    Settled,
    /// Shutdown while the pipeline still refused it for now: read it again next time.
    Abandoned,
}

/// Runs `f` on the tailer on the blocking pool (file I/O), handing the tailer back.
async fn blocking<T: Send + 'static>(
    tailer: Tailer,
    f: impl FnOnce(&mut Tailer) -> T + Send + 'static,
) -> Result<(Tailer, T), FileLogError> {
    tokio::task::spawn_blocking(move || {
        let mut tailer = tailer;
        let out = f(&mut tailer);
        (tailer, out)
    })
    .await
    .map_err(FileLogError::ReaderTask)
}

impl FileLogReceiver {
    async fn serve(self, ctx: ReceiverContext) -> Result<(), FileLogError> {
        let id = self.component_id.clone();
        if !ctx.consumer.accepts(Signal::Logs) {
            return Err(FileLogError::NoLogsPipeline);
        }
        let dir = self.storage.clone().ok_or(FileLogError::NoStorage)?;
        let (positions, recorded) = PositionsFile::open(&dir)?;
        let positions = Arc::new(positions);
        let parser = Arc::new(Parser::new(&self.config, id.clone()));
        let tenant = self.config.tenant.as_deref().map(Arc::<str>::from);
        let mut tailer = Tailer::new(&self.config, id.clone(), recorded);
        let scan_every = self.config.scan_interval.get();
        let poll_every = self.config.poll_interval.get();
        let mut last_scan: Option<Instant> = None;
        tracing::info!(component_id = %id, include = ?self.config.include, positions = %dir.display(), "file_log receiver started");

        loop {
            if *ctx.shutdown.borrow() {
                break;
            }
            let scan = last_scan.is_none_or(|at| at.elapsed() >= scan_every);
            if scan {
                last_scan = Some(Instant::now());
            }
            let (t, batch) = blocking(tailer, move |t| {
                if scan {
                    t.scan();
                }
                t.read(Instant::now())
            })
            .await?;
            tailer = t;
            m_open_files(&id, &tailer);

            if batch.entries.is_empty() {
                if !batch.marks.is_empty() {
                    // Only empty lines: nothing to spool, the offsets move on.
                    tailer.commit(&batch.marks);
                }
                if tailer.dirty {
                    tailer = save(tailer, &positions, &id).await?;
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll_every) => {}
                    _ = ctx.stopped() => {}
                }
                continue;
            }

            // Record what is about to be handed over before handing it over: after a crash,
            // these entries are the possible duplicates, and are counted as such.
            tailer.begin(&batch.marks);
            let (t, recorded) = save_until_ok(tailer, &positions, &id, &ctx).await?;
            tailer = t;
            if !recorded {
                tailer.abandon(&batch.marks);
                break;
            }
            let reread = batch.entries.iter().filter(|e| e.reread).count() as u64;
            counters::reread(&id, reread);
            let request = parser.request(&batch.entries, sluice_core::time::now_unix_nanos());
            let count = batch.entries.len() as u32;
            let item = Item::new(Signal::Logs, Bytes::from(request.encode_to_vec()), count)
                .with_tenant(tenant.clone());
            match self.deliver(&ctx, item).await {
                Fate::Settled => tailer.commit(&batch.marks),
                Fate::Abandoned => {
                    tailer.abandon(&batch.marks);
                    break;
                }
            }
            if !batch.full {
                tokio::select! {
                    _ = tokio::time::sleep(poll_every) => {}
                    _ = ctx.stopped() => {}
                }
            }
        }
        save(tailer, &positions, &id).await?;
        Ok(())
    }

    /// Hands one batch to the pipeline, retrying while it is full.
    async fn deliver(&self, ctx: &ReceiverContext, item: Item) -> Fate {
        let id = &self.component_id;
        let count = u64::from(item.count);
        let mut backoff = Backoff::new(&self.config.retry);
        let mut shutdown = ctx.shutdown.clone();
        let started = Instant::now();
        loop {
            match ctx.consumer.consume(item.clone()).await {
                Ok(()) => {
                    receiver_accepted(id, Signal::Logs, count);
                    receiver_request(id, "file", "ok".into(), started.elapsed());
                    return Fate::Settled;
                }
                Err(refusal) if refusal.is_retryable() => {
                    receiver_refused(id, Some(Signal::Logs), refusal.reason(), count);
                    let retry_after = match &refusal {
                        Refusal::Backpressure { retry_after, .. } => Some(*retry_after),
                        _ => None,
                    };
                    let delay = backoff.next_delay(retry_after);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return Fate::Abandoned,
                    }
                }
                Err(refusal) => {
                    tracing::warn!(component_id = %id, %refusal, entries = count, "entries refused by the pipeline; skipped");
                    receiver_refused(id, Some(Signal::Logs), refusal.reason(), count);
                    receiver_request(id, "file", refusal.reason().into(), started.elapsed());
                    return Fate::Settled;
                }
            }
        }
    }
}

fn m_open_files(id: &str, tailer: &Tailer) {
    counters::open_files(id, tailer.open_files());
}

/// Writes the positions file; a failure is logged and counted, and retried at the next save.
async fn save(
    tailer: Tailer,
    positions: &Arc<PositionsFile>,
    id: &Arc<str>,
) -> Result<Tailer, FileLogError> {
    let (tailer, result) = write(tailer, positions).await?;
    if let Err(error) = result {
        tracing::warn!(component_id = %id, %error, "cannot write the positions file");
        counters::error(id, "positions");
    }
    Ok(tailer)
}

/// Writes the positions file, retrying until it is written (true) or shutdown (false): entries
/// are handed to the pipeline only once their `pending_end` is recorded.
async fn save_until_ok(
    tailer: Tailer,
    positions: &Arc<PositionsFile>,
    id: &Arc<str>,
    ctx: &ReceiverContext,
) -> Result<(Tailer, bool), FileLogError> {
    let mut tailer = tailer;
    // A local disk: retry soon, then every 5s at most while it stays unwritable.
    let mut backoff = Backoff::new(&RetryConfig {
        initial_interval: DurationStr::from_millis(100),
        max_interval: DurationStr::from_secs(5),
        multiplier: 2.0,
        randomization_factor: 0.0,
        max_age: None,
    });
    loop {
        let (t, result) = write(tailer, positions).await?;
        tailer = t;
        match result {
            Ok(()) => return Ok((tailer, true)),
            Err(error) => {
                tracing::warn!(component_id = %id, %error, "cannot write the positions file; retrying");
                counters::error(id, "positions");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay(None)) => {}
                    _ = ctx.stopped() => return Ok((tailer, false)),
                }
            }
        }
    }
}

async fn write(
    tailer: Tailer,
    positions: &Arc<PositionsFile>,
) -> Result<(Tailer, std::io::Result<()>), FileLogError> {
    let positions = positions.clone();
    blocking(tailer, move |t| {
        let result = positions.save(&t.positions());
        if result.is_ok() {
            t.dirty = false;
        }
        result
    })
    .await
}
