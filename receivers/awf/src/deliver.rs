//! Delivery of converted events to the pipeline, shared by the SSE, discovery and push paths.
//!
//! Stream events are never dropped because the pipeline is momentarily full: delivery retries
//! with backoff (the stream is not read meanwhile, so the server buffers). A push request is
//! answered with the refusal instead, and its conversion abandoned so the client's retry is
//! converted again.

use crate::convert::{ConvertStats, Converter, Pending};
use crate::event::WorkflowEvent;
use parking_lot::Mutex;
use sluice_core::retry::{Backoff, RetryConfig};
use sluice_core::time::now_unix_nanos;
use sluice_core::{DurationStr, Item, ReceiverContext, Refusal, telemetry};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const EVENTS: &str = "sluice_awf_events_total";
pub const EVENTS_DROPPED: &str = "sluice_awf_events_dropped_total";
pub const EVENTS_DUPLICATE: &str = "sluice_awf_events_duplicate_total";
pub const EVENTS_REPLAYED: &str = "sluice_awf_events_replayed_total";
pub const CONSUME_RETRIES: &str = "sluice_awf_consume_retries_total";
pub const STREAM_CONNECTIONS: &str = "sluice_awf_stream_connections_total";
pub const STREAMS_ACTIVE: &str = "sluice_awf_streams_active";
/// Discovered streams whose body ended before the execution's terminal event.
pub const STREAM_PREMATURE_ENDS: &str = "sluice_awf_stream_premature_ends_total";
/// Reconnects, by the outcome of the connection before (`after`).
pub const STREAM_RECONNECTS: &str = "sluice_awf_stream_reconnects_total";
/// Discovered executions given up before their terminal event: their later events are lost.
pub const STREAMS_ABANDONED: &str = "sluice_awf_streams_abandoned_total";
pub const TIMEOUTS: &str = "sluice_awf_timeouts_total";
pub const REDACTED: &str = "sluice_awf_redacted_values_total";
pub const SERIES_DROPPED: &str = "sluice_awf_metric_series_dropped_total";
pub const UNCORRELATED: &str = "sluice_awf_events_uncorrelated_total";
pub const UNTRACKED: &str = "sluice_awf_events_untracked_total";
pub const ATTRIBUTES_DROPPED: &str = "sluice_awf_attributes_dropped_total";

/// How a refusal is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Retry retryable refusals until accepted or shutdown (SSE streams, timers).
    UntilAccepted,
    /// Give the refusal back to the caller (push: the client retries), unless part of the
    /// conversion was already accepted — then retry the rest for up to `max_wait`.
    Push { max_wait: Duration },
}

/// What every task of one receiver shares.
pub struct Shared {
    pub ctx: ReceiverContext,
    pub converter: Mutex<Converter>,
    pub tenant: Option<Arc<str>>,
    retry: RetryConfig,
}

impl Shared {
    pub fn new(ctx: ReceiverContext, converter: Converter, tenant: Option<Arc<str>>) -> Shared {
        Shared {
            ctx,
            converter: Mutex::new(converter),
            tenant,
            retry: RetryConfig {
                initial_interval: DurationStr::from_millis(50),
                max_interval: DurationStr::from_secs(5),
                multiplier: 2.0,
                randomization_factor: 0.2,
                max_age: None,
            },
        }
    }

    pub fn component_id(&self) -> &str {
        &self.ctx.component_id
    }

    pub fn is_stopping(&self) -> bool {
        *self.ctx.shutdown.borrow()
    }

    pub fn count_dropped(&self, reason: &'static str, n: u64) {
        metrics::counter!(EVENTS_DROPPED, "component_id" => self.component_id().to_owned(), "reason" => reason)
            .increment(n);
    }

    /// Converts and delivers `events`; on success the conversion is committed.
    pub async fn ingest(
        &self,
        events: Vec<WorkflowEvent>,
        source: &'static str,
        mode: Mode,
    ) -> Result<ConvertStats, Refusal> {
        if events.is_empty() {
            return Ok(ConvertStats::default());
        }
        metrics::counter!(EVENTS, "component_id" => self.component_id().to_owned(), "source" => source)
            .increment(events.len() as u64);
        let pending = self.converter.lock().convert(events, now_unix_nanos());
        self.deliver(pending, mode).await
    }

    /// Closes timed-out steps and executions and delivers the result.
    pub async fn expire(&self) {
        let pending = self.converter.lock().expire(now_unix_nanos());
        if !pending.is_empty() {
            let _ = self.deliver(pending, Mode::UntilAccepted).await;
        }
    }

    /// Emits the cumulative metrics once. A refusal is only counted: the next emission
    /// carries the same totals.
    pub async fn flush_metrics(&self) {
        if !self.ctx.consumer.accepts(sluice_core::Signal::Metrics) {
            return;
        }
        let item = self.converter.lock().metrics_item(now_unix_nanos());
        if let Some(item) = item {
            let item = item.with_tenant(self.tenant.clone());
            let (signal, n) = (item.signal, u64::from(item.count));
            match self.ctx.consumer.consume(item).await {
                Ok(()) => telemetry::receiver_accepted(self.component_id(), signal, n),
                Err(r) => {
                    telemetry::receiver_refused(self.component_id(), Some(signal), r.reason(), n)
                }
            }
        }
        let dropped = std::mem::take(&mut self.converter.lock().series_dropped);
        if dropped > 0 {
            metrics::counter!(SERIES_DROPPED, "component_id" => self.component_id().to_owned())
                .increment(dropped);
        }
    }

    async fn deliver(&self, pending: Pending, mode: Mode) -> Result<ConvertStats, Refusal> {
        let stats = pending.stats;
        let items: Vec<Item> = [pending.traces_item(), pending.logs_item()]
            .into_iter()
            .flatten()
            .filter(|i| self.ctx.consumer.accepts(i.signal))
            .map(|i| i.with_tenant(self.tenant.clone()))
            .collect();
        let mut accepted_any = false;
        for item in items {
            match self.deliver_item(item, mode, accepted_any).await {
                Ok(()) => accepted_any = true,
                // A stream cannot answer the sender: an item the pipeline refuses for good
                // (counted by `deliver_item`) is dropped and the stream goes on.
                Err(refusal) if mode == Mode::UntilAccepted && !refusal.is_retryable() => {}
                Err(refusal) => {
                    self.converter.lock().abandon(pending);
                    return Err(refusal);
                }
            }
        }
        self.converter.lock().commit(pending, now_unix_nanos());
        self.count_stats(&stats);
        Ok(stats)
    }

    async fn deliver_item(
        &self,
        item: Item,
        mode: Mode,
        accepted_any: bool,
    ) -> Result<(), Refusal> {
        let (signal, n) = (item.signal, u64::from(item.count));
        let mut backoff = Backoff::new(&self.retry);
        let started = Instant::now();
        loop {
            let refusal = match self.ctx.consumer.consume(item.clone()).await {
                Ok(()) => {
                    telemetry::receiver_accepted(self.component_id(), signal, n);
                    return Ok(());
                }
                Err(r) => r,
            };
            let keep_trying = refusal.is_retryable()
                && !self.is_stopping()
                && match mode {
                    Mode::UntilAccepted => true,
                    Mode::Push { max_wait } => accepted_any && started.elapsed() < max_wait,
                };
            if !keep_trying {
                telemetry::receiver_refused(self.component_id(), Some(signal), refusal.reason(), n);
                return Err(refusal);
            }
            metrics::counter!(CONSUME_RETRIES, "component_id" => self.component_id().to_owned(), "reason" => refusal.reason())
                .increment(1);
            let floor = match &refusal {
                Refusal::Backpressure { retry_after, .. } => Some(*retry_after),
                _ => None,
            };
            let delay = backoff.next_delay(floor).min(Duration::from_secs(30));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.ctx.stopped() => {}
            }
        }
    }

    fn count_stats(&self, s: &ConvertStats) {
        let id = self.component_id().to_owned();
        if s.duplicates > 0 {
            metrics::counter!(EVENTS_DUPLICATE, "component_id" => id.clone())
                .increment(s.duplicates);
        }
        if s.replayed > 0 {
            metrics::counter!(EVENTS_REPLAYED, "component_id" => id.clone()).increment(s.replayed);
        }
        if s.uncorrelated > 0 {
            // Logged without trace context; no spans or metrics can be derived.
            metrics::counter!(UNCORRELATED, "component_id" => id.clone()).increment(s.uncorrelated);
        }
        if s.untracked > 0 {
            metrics::counter!(UNTRACKED, "component_id" => id.clone()).increment(s.untracked);
        }
        if s.dropped_attributes > 0 {
            metrics::counter!(ATTRIBUTES_DROPPED, "component_id" => id.clone())
                .increment(s.dropped_attributes);
        }
        if s.redacted > 0 {
            metrics::counter!(REDACTED, "component_id" => id.clone()).increment(s.redacted);
        }
        if s.timed_out_steps > 0 {
            metrics::counter!(TIMEOUTS, "component_id" => id.clone(), "kind" => "step")
                .increment(s.timed_out_steps);
        }
        if s.timed_out_executions > 0 {
            metrics::counter!(TIMEOUTS, "component_id" => id, "kind" => "execution")
                .increment(s.timed_out_executions);
        }
    }
}
