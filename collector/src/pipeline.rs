//! Running pipelines: the ingest router receivers deliver to, and the shared exporter driver
//! that batches spooled records, sends them with retries and moves the exporter's cursor.

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use sluice_core::batch::BatchConfig;
use sluice_core::retry::{Backoff, RetryConfig};
use sluice_core::telemetry;
use sluice_core::time::now_unix_millis;
use sluice_core::{Batch, Consumer, Exporter, Item, Refusal, SendOutcome, Signal};
use sluice_processors::Chain;
use sluice_spool::{AppendTicket, Record, Spool, SpoolReader};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ingest side of one pipeline: its processors (none: items go to the spool as the
/// receiver made them), then its spool.
pub struct PipelineIngest {
    pub name: Arc<str>,
    pub processors: Option<Arc<Chain>>,
    pub spool: Spool,
}

impl PipelineIngest {
    pub(crate) fn ingest(&self, item: Item) -> Result<Option<AppendTicket>, Refusal> {
        self.ingest_from(0, item)
    }

    /// Runs the processors from stage `from` on, then appends to the spool.
    fn ingest_from(&self, from: usize, item: Item) -> Result<Option<AppendTicket>, Refusal> {
        let item = match &self.processors {
            None => item,
            Some(chain) => match chain.process_from(from, item)? {
                Some(item) => item,
                None => return Ok(None),
            },
        };
        self.spool.append(item).map(Some)
    }

    /// Connects each processor that holds data back to the stages after it.
    pub fn connect_downstreams(self: &Arc<Self>) {
        let Some(chain) = &self.processors else {
            return;
        };
        for (i, ctx) in chain.contexts().enumerate() {
            ctx.downstream.set(Arc::new(PipelineRest {
                ingest: Arc::downgrade(self),
                from: i + 1,
            }));
        }
    }

    /// Hands on what processors hold back (tail sampling); before the spool closes.
    pub fn flush(&self) {
        if let Some(chain) = &self.processors {
            chain.flush();
        }
    }
}

/// The part of a pipeline after one of its processors.
struct PipelineRest {
    ingest: std::sync::Weak<PipelineIngest>,
    from: usize,
}

impl Consumer for PipelineRest {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        let result = match self.ingest.upgrade() {
            Some(p) => p.ingest_from(self.from, item),
            None => Err(Refusal::Unavailable {
                reason: "stopped",
                message: "the pipeline is not running".into(),
            }),
        };
        match result {
            Ok(Some(ticket)) => Box::pin(ticket),
            Ok(None) => Box::pin(std::future::ready(Ok(()))),
            Err(r) => Box::pin(std::future::ready(Err(r))),
        }
    }

    fn accepts(&self, _signal: Signal) -> bool {
        true
    }
}

/// What a receiver delivers to: every pipeline that takes the item's signal from it.
pub struct Router {
    by_signal: [Vec<Arc<PipelineIngest>>; 3],
}

fn signal_index(s: Signal) -> usize {
    match s {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl Router {
    pub fn new(routes: Vec<(Signal, Arc<PipelineIngest>)>) -> Router {
        let mut by_signal: [Vec<Arc<PipelineIngest>>; 3] = Default::default();
        for (signal, p) in routes {
            by_signal[signal_index(signal)].push(p);
        }
        Router { by_signal }
    }
}

impl Consumer for Router {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        let targets = &self.by_signal[signal_index(item.signal)];
        match targets.len() {
            0 => Box::pin(std::future::ready(Err(Refusal::NoPipeline(item.signal)))),
            1 => match targets[0].ingest(item) {
                Ok(Some(ticket)) => Box::pin(ticket),
                Ok(None) => Box::pin(std::future::ready(Ok(()))),
                Err(r) => Box::pin(std::future::ready(Err(r))),
            },
            _ => {
                // Fan-out: every pipeline must hold the item before the client hears "ok".
                let mut tickets = Vec::with_capacity(targets.len());
                for t in targets {
                    match t.ingest(item.clone()) {
                        Ok(Some(ticket)) => tickets.push(ticket),
                        Ok(None) => {}
                        Err(r) => return Box::pin(std::future::ready(Err(r))),
                    }
                }
                Box::pin(async move {
                    for t in futures::future::join_all(tickets).await {
                        t?;
                    }
                    Ok(())
                })
            }
        }
    }

    fn accepts(&self, signal: Signal) -> bool {
        !self.by_signal[signal_index(signal)].is_empty()
    }
}

/// A consumer whose target is set after it is handed out: the watcher needs somewhere to send
/// its own telemetry before the pipelines it sits in exist.
#[derive(Default)]
pub struct LateConsumer {
    inner: std::sync::OnceLock<Arc<dyn Consumer>>,
}

impl LateConsumer {
    pub fn set(&self, target: Arc<dyn Consumer>) {
        let _ = self.inner.set(target);
    }
}

impl Consumer for LateConsumer {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        match self.inner.get() {
            Some(c) => c.consume(item),
            None => Box::pin(std::future::ready(Err(Refusal::Unavailable {
                reason: "starting",
                message: "pipelines are not running yet".into(),
            }))),
        }
    }

    fn accepts(&self, signal: Signal) -> bool {
        self.inner.get().is_some_and(|c| c.accepts(signal))
    }
}

/// Settings of one exporter's driver.
#[derive(Clone)]
pub struct DriverSettings {
    /// `exporters.<name>`.
    pub component_id: Arc<str>,
    pub pipeline: Arc<str>,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// Where items refused for good are kept; `None`: they are only counted and logged.
    pub dead_letter: Option<Arc<crate::dead_letter::DeadLetterStore>>,
}

/// A refusal reason is logged at most this often; between, refusals are only counted.
const LOG_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct DriverCtx<E> {
    pub(crate) exporter: Arc<E>,
    pub(crate) settings: DriverSettings,
    /// When each rejection reason was last logged at warn level (once a minute, then counted).
    logged_reasons: parking_lot::Mutex<HashMap<&'static str, Instant>>,
    turns: Turns,
    /// Conversions running off the driver task at once: one per core, so that concurrent
    /// conversion uses the cores without queueing `max_in_flight` CPU-bound tasks (and their
    /// memory) at the same time.
    convert_slots: tokio::sync::Semaphore,
}

/// The order in which an ordered exporter's batches convert and send.
///
/// Each stage is entered by batch number, one batch at a time: conversion runs in spool order
/// (it can keep state, e.g. delta-to-cumulative), and each of the exporter's ordered lanes
/// sends its requests of batch N only once its requests of batch N-1 are final. That keeps
/// remote-write series and Loki streams in spool order, while conversion runs ahead of the
/// network and a slow lane (shard) holds back only itself.
struct Turns {
    convert: tokio::sync::watch::Sender<u64>,
    lanes: Vec<tokio::sync::watch::Sender<u64>>,
}

impl Turns {
    fn new(lanes: usize) -> Turns {
        Turns {
            convert: Default::default(),
            lanes: (0..lanes.max(1)).map(|_| Default::default()).collect(),
        }
    }

    async fn enter(stage: &tokio::sync::watch::Sender<u64>, batch: u64) {
        // The sender lives as long as the driver, so waiting cannot fail.
        let _ = stage.subscribe().wait_for(|turn| *turn == batch).await;
    }

    fn leave(stage: &tokio::sync::watch::Sender<u64>, batch: u64) {
        stage.send_replace(batch + 1);
    }
}

impl<E: Exporter> DriverCtx<E> {
    pub(crate) fn log_once(&self, reason: &'static str, message: &str, items: u64) {
        let now = Instant::now();
        let due = match self.logged_reasons.lock().entry(reason) {
            Entry::Vacant(e) => {
                e.insert(now);
                true
            }
            Entry::Occupied(mut e) if now.duration_since(*e.get()) >= LOG_EVERY => {
                e.insert(now);
                true
            }
            Entry::Occupied(_) => false,
        };
        if due {
            tracing::warn!(exporter = %self.settings.component_id, pipeline = %self.settings.pipeline, reason, items,
                backend_message = message, "backend refused data for good (kept in the dead-letter store when one is configured; this reason is logged at most once a minute)");
        } else {
            tracing::debug!(exporter = %self.settings.component_id, reason, items, backend_message = message, "backend refused data");
        }
    }

    fn labels(&self, signal: Signal) -> [(&'static str, String); 3] {
        [
            ("component_id", self.settings.component_id.to_string()),
            ("pipeline", self.settings.pipeline.to_string()),
            ("signal", signal.as_str().to_string()),
        ]
    }

    pub(crate) fn drop_items(&self, signal: Signal, reason: &'static str, n: u64) {
        if n > 0 {
            telemetry::exporter_dropped(&self.settings.component_id, signal, reason, n);
        }
    }
}

/// Runs one exporter until its spool is closed and everything readable was handled, or until
/// the task is aborted (shutdown deadline): in-flight data then simply stays in the spool.
pub async fn run_driver<E: Exporter>(
    exporter: Arc<E>,
    mut reader: SpoolReader,
    settings: DriverSettings,
) {
    let ordered = exporter.ordered();
    // An ordered exporter converts batches in spool order and sends each lane's requests in
    // spool order (see `Turns`); at least two batches in flight, so the next one is converted
    // while the current one is sent.
    let max_in_flight = if ordered {
        settings.batch.max_in_flight.max(2)
    } else {
        settings.batch.max_in_flight.max(1)
    };
    let batch = settings.batch.clone();
    let lanes = exporter.lanes();
    let ctx = Arc::new(DriverCtx {
        exporter,
        settings,
        logged_reasons: Default::default(),
        turns: Turns::new(lanes),
        convert_slots: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ),
    });
    let mut next_batch = 0u64;
    let age_gauge = metrics::gauge!("sluice_exporter_oldest_undelivered_age_seconds",
        "component_id" => ctx.settings.component_id.to_string(), "pipeline" => ctx.settings.pipeline.to_string());
    // Spooled requests this exporter has not finished yet (its queue, which lives on disk).
    let depth_gauge = metrics::gauge!("sluice_exporter_queue_depth_records",
        "component_id" => ctx.settings.component_id.to_string(), "pipeline" => ctx.settings.pipeline.to_string());

    let mut in_flight = FuturesUnordered::new();
    // Delivered ranges [start, end) not yet contiguous with the committed cursor.
    let mut done: BTreeMap<u64, u64> = BTreeMap::new();
    // Oldest append time of each in-flight range, for the age gauge.
    let mut outstanding: BTreeMap<u64, u64> = BTreeMap::new();
    let mut committed = reader.position();
    let mut pending: Vec<Record> = Vec::new();
    let mut pending_start = reader.position();
    let mut pending_items = 0u64;
    let mut pending_bytes = 0usize;
    let mut pending_since: Option<Instant> = None;
    let max_items = batch.max_items();
    let max_bytes = batch.send_batch_max_bytes.as_usize();

    loop {
        if in_flight.len() < max_in_flight && pending_items < max_items && pending_bytes < max_bytes
        {
            if pending.is_empty() {
                pending_start = reader.position();
            }
            // Records are whole client requests: a batch holds at most `max_items` items unless
            // one request alone is larger.
            let records = reader.read_items(max_items - pending_items, max_bytes - pending_bytes);
            for r in records {
                pending_items += u64::from(r.item.count);
                pending_bytes += r.item.payload.len();
                pending.push(r);
            }
            if !pending.is_empty() && pending_since.is_none() {
                pending_since = Some(Instant::now());
            }
        }
        let finishing = reader.is_finished();
        let full = pending_items >= batch.send_batch_size || pending_bytes >= max_bytes;
        let timed_out = pending_since.is_some_and(|t| t.elapsed() >= batch.timeout.0);
        if !pending.is_empty()
            && in_flight.len() < max_in_flight
            && (full || timed_out || finishing)
        {
            let records = std::mem::take(&mut pending);
            let range = (pending_start, reader.position());
            outstanding.insert(
                range.0,
                records
                    .first()
                    .map(|r| r.appended_ms)
                    .unwrap_or_else(now_unix_millis),
            );
            metrics::histogram!(telemetry::EXPORTER_BATCH_ITEMS, "component_id" => ctx.settings.component_id.to_string())
                .record(pending_items as f64);
            pending_items = 0;
            pending_bytes = 0;
            pending_since = None;
            let turn = ordered.then_some(next_batch);
            next_batch += 1;
            in_flight.push(deliver(ctx.clone(), records, range, turn));
            continue;
        }
        let oldest = outstanding
            .values()
            .next()
            .copied()
            .or_else(|| pending.first().map(|r| r.appended_ms));
        depth_gauge.set(reader.backlog(committed) as f64);
        age_gauge.set(
            oldest
                .map(|t| now_unix_millis().saturating_sub(t) as f64 / 1000.0)
                .unwrap_or(0.0),
        );
        if finishing && pending.is_empty() && in_flight.is_empty() {
            return;
        }
        let can_take_more = in_flight.len() < max_in_flight;
        let deadline = pending_since.map(|t| tokio::time::Instant::from_std(t + batch.timeout.0));
        tokio::select! {
            Some((start, end)) = in_flight.next(), if !in_flight.is_empty() => {
                outstanding.remove(&start);
                done.insert(start, end);
                while let Some(end) = done.remove(&committed) {
                    committed = end;
                }
                reader.commit(committed);
            }
            _ = reader.wait(), if can_take_more && !finishing && pending_items < max_items && pending_bytes < max_bytes => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if can_take_more && deadline.is_some() => {}
        }
    }
}

/// Delivers one range of records; resolves to the range once every item in it is final.
async fn deliver<E: Exporter>(
    ctx: Arc<DriverCtx<E>>,
    records: Vec<Record>,
    range: (u64, u64),
    turn: Option<u64>,
) -> (u64, u64) {
    let max_age = ctx.settings.retry.max_age.map(|d| d.0.as_millis() as u64);
    let now = now_unix_millis();
    // Group by (signal, tenant), keeping spool order inside each group; remember each group's
    // oldest append time, which `max_age` is measured from.
    let mut groups: Vec<(Batch, u64)> = Vec::new();
    for r in records {
        if let Some(max_age) = max_age
            && now.saturating_sub(r.appended_ms) > max_age
        {
            ctx.drop_items(r.item.signal, "expired", u64::from(r.item.count));
            continue;
        }
        match groups
            .iter_mut()
            .find(|(b, _)| b.signal == r.item.signal && b.tenant == r.item.tenant)
        {
            Some((b, oldest)) => {
                *oldest = (*oldest).min(r.appended_ms);
                b.items.push(r.item);
            }
            None => groups.push((
                Batch {
                    signal: r.item.signal,
                    tenant: r.item.tenant.clone(),
                    items: vec![r.item],
                },
                r.appended_ms,
            )),
        }
    }
    let in_order = turn.filter(|_| ctx.exporter.converts_in_order());
    if let Some(batch) = in_order {
        Turns::enter(&ctx.turns.convert, batch).await;
    }
    let converted = match (turn, in_order) {
        // Stateless conversion of an ordered exporter (Loki): on the blocking pool, so that
        // batches convert concurrently and the driver keeps reading and sending meanwhile.
        (Some(_), None) => convert_elsewhere(&ctx, groups).await,
        _ => convert(&*ctx.exporter, groups),
    };
    if let Some(batch) = in_order {
        Turns::leave(&ctx.turns.convert, batch);
    }
    let ctx: &DriverCtx<E> = &ctx;
    let send = |batch, oldest_ms, req| send_one(ctx, batch, oldest_ms, req);
    match turn {
        None => {
            let sends = converted.iter().flat_map(|(batch, oldest_ms, requests)| {
                requests.iter().map(|req| send(batch, *oldest_ms, req))
            });
            futures::future::join_all(sends).await;
        }
        Some(turn) => {
            // Every lane takes its turn for this batch, with or without requests in it, so the
            // next batch's requests of that lane know this one is done.
            let last = ctx.turns.lanes.len() - 1;
            let lanes = ctx.turns.lanes.iter().enumerate().map(|(lane, stage)| {
                let sends: Vec<_> = converted
                    .iter()
                    .flat_map(|(batch, oldest_ms, requests)| {
                        requests
                            .iter()
                            .filter(move |req| ctx.exporter.lane(req).min(last) == lane)
                            .map(|req| send(batch, *oldest_ms, req))
                    })
                    .collect();
                async move {
                    Turns::enter(stage, turn).await;
                    futures::future::join_all(sends).await;
                    Turns::leave(stage, turn);
                }
            });
            futures::future::join_all(lanes).await;
        }
    }
    range
}

type Converted<R> = Vec<(Batch, u64, Vec<R>)>;

fn convert<E: Exporter>(exporter: &E, groups: Vec<(Batch, u64)>) -> Converted<E::Request> {
    groups
        .into_iter()
        .map(|(batch, oldest_ms)| {
            let requests = exporter.build_requests(&batch);
            (batch, oldest_ms, requests)
        })
        .collect()
}

/// [`convert`] on the blocking pool. A panic in the exporter's conversion resumes here, as it
/// would have inline.
async fn convert_elsewhere<E: Exporter>(
    ctx: &DriverCtx<E>,
    groups: Vec<(Batch, u64)>,
) -> Converted<E::Request> {
    // The semaphore is never closed, so acquiring cannot fail.
    let _slot = ctx.convert_slots.acquire().await.ok();
    let exporter = ctx.exporter.clone();
    match tokio::task::spawn_blocking(move || convert(&*exporter, groups)).await {
        Ok(converted) => converted,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down before the conversion started: this batch must never
        // count as delivered, so it stays pending; its records are read again after restart.
        Err(_) => std::future::pending().await,
    }
}

/// Sends one request of `batch` until it is final, isolating what the backend refuses for good.
async fn send_one<E: Exporter>(
    ctx: &DriverCtx<E>,
    batch: &Batch,
    oldest_ms: u64,
    req: &E::Request,
) {
    if let Some((reason, message)) = send_until_final(ctx, req, batch.signal, oldest_ms).await {
        crate::isolate::refused(ctx, req, batch, oldest_ms, reason, message).await;
    }
}

/// Sends one request, retrying retryable failures with backoff until it is final. Returns the
/// reason and backend message of a permanent refusal, which the caller isolates.
pub(crate) async fn send_until_final<E: Exporter>(
    ctx: &DriverCtx<E>,
    req: &E::Request,
    signal: Signal,
    appended_ms: u64,
) -> Option<(&'static str, String)> {
    let items = ctx.exporter.request_items(req);
    let labels = ctx.labels(signal);
    let mut backoff = Backoff::new(&ctx.settings.retry);
    loop {
        let started = Instant::now();
        let outcome = ctx.exporter.send(req).await;
        metrics::histogram!(telemetry::EXPORTER_DURATION, &labels)
            .record(started.elapsed().as_secs_f64());
        match outcome {
            SendOutcome::Sent => {
                metrics::counter!(telemetry::EXPORTER_SENT, &labels).increment(items);
                metrics::counter!(telemetry::EXPORTER_SENT_REQUESTS, &labels).increment(1);
                return None;
            }
            SendOutcome::PartiallyRejected { rejected, message } => {
                let rejected = rejected.min(items);
                metrics::counter!(telemetry::EXPORTER_SENT, &labels).increment(items - rejected);
                metrics::counter!(telemetry::EXPORTER_SENT_REQUESTS, &labels).increment(1);
                ctx.drop_items(signal, "partial_success", rejected);
                ctx.log_once("partial_success", &message, rejected);
                return None;
            }
            SendOutcome::Rejected { reason, message } => return Some((reason, message)),
            SendOutcome::Retryable {
                reason,
                retry_after,
                message,
            } => {
                metrics::counter!(telemetry::EXPORTER_RETRIES, "component_id" => ctx.settings.component_id.to_string(),
                    "pipeline" => ctx.settings.pipeline.to_string(), "reason" => reason)
                .increment(1);
                if let Some(max_age) = ctx.settings.retry.max_age
                    && Duration::from_millis(now_unix_millis().saturating_sub(appended_ms))
                        > max_age.0
                {
                    ctx.drop_items(signal, "expired", items);
                    tracing::warn!(exporter = %ctx.settings.component_id, items, reason, "retry max_age reached; dropping");
                    return None;
                }
                let delay = backoff.next_delay(retry_after);
                if backoff.attempts == 1 || backoff.attempts.is_power_of_two() {
                    tracing::warn!(exporter = %ctx.settings.component_id, pipeline = %ctx.settings.pipeline, reason,
                        attempt = backoff.attempts, retry_in_ms = delay.as_millis() as u64, backend_message = %message,
                        "send failed; will retry (data stays in the spool)");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}
