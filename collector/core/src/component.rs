//! The three component kinds and the contract between them and the pipeline.
//!
//! * A [`Receiver`] turns wire input into [`Item`]s and hands them to a [`Consumer`]; the
//!   consumer's answer (accepted, or a [`Refusal`]) is what the receiver tells its client.
//! * A [`Processor`] transforms items on the ingest path, before they are spooled.
//! * An [`Exporter`] turns a [`Batch`] read from the spool into requests and sends each one.
//!   Retries, backoff, concurrency, batching and cursor bookkeeping are the pipeline's shared
//!   machinery; an exporter only says what a response means ([`SendOutcome`]).

use crate::item::{Item, Signal};
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why the pipeline did not accept an item. Receivers map it to their protocol's status.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Temporarily full (queue, spool bytes, disk). The client should retry after the delay:
    /// HTTP 429 + `Retry-After`, gRPC `RESOURCE_EXHAUSTED` + `RetryInfo`.
    Backpressure {
        reason: &'static str,
        retry_after: Duration,
    },
    /// Sluice cannot take data right now (stopping, storage failing): HTTP 503 / `UNAVAILABLE`.
    Unavailable {
        reason: &'static str,
        message: String,
    },
    /// No pipeline takes this signal from this receiver: HTTP 404 / `UNIMPLEMENTED`.
    NoPipeline(Signal),
    /// The item itself is bad (a processor refused it): HTTP 400 / `INVALID_ARGUMENT`.
    Invalid(String),
}

impl Refusal {
    /// Short label used as the `reason` of refusal counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Backpressure { reason, .. } => reason,
            Refusal::Unavailable { reason, .. } => reason,
            Refusal::NoPipeline(_) => "no_pipeline",
            Refusal::Invalid(_) => "invalid",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Refusal::Backpressure { .. } | Refusal::Unavailable { .. }
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Backpressure {
                reason,
                retry_after,
            } => {
                write!(
                    f,
                    "pipeline is full ({reason}); retry after {}s",
                    retry_after.as_secs().max(1)
                )
            }
            Refusal::Unavailable { reason, message } => {
                write!(f, "unavailable ({reason}): {message}")
            }
            Refusal::NoPipeline(signal) => {
                write!(f, "no pipeline accepts {signal} from this receiver")
            }
            Refusal::Invalid(msg) => write!(f, "invalid data: {msg}"),
        }
    }
}

/// Where a receiver delivers items. `consume` resolves once the item is durable at the
/// pipeline's configured level; only then may the receiver acknowledge its client.
pub trait Consumer: Send + Sync + 'static {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>>;

    /// Signals for which at least one pipeline is wired to this receiver.
    fn accepts(&self, signal: Signal) -> bool;
}

/// Everything a running receiver gets from the pipeline.
#[derive(Clone)]
pub struct ReceiverContext {
    /// `<kind>.<name>`, e.g. `receivers.otlp`; the `component_id` label of its metrics.
    pub component_id: Arc<str>,
    pub consumer: Arc<dyn Consumer>,
    /// Turns true when the receiver must stop accepting new work and return.
    pub shutdown: watch::Receiver<bool>,
}

impl ReceiverContext {
    /// Resolves when shutdown has been requested.
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Why a receiver stopped serving: what failed (a listener or client, named as its config
/// key or component is, e.g. `push.endpoint`) and the underlying error.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ReceiverError {
    pub what: String,
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl ReceiverError {
    pub fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ReceiverError {
        ReceiverError {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// A receiver built from config. Building binds its listeners (so address clashes fail at
/// start, with the config key); `run` serves until shutdown.
pub trait Receiver: Send + 'static {
    /// Addresses this receiver listens on, for readiness and clash checks.
    fn listen_addrs(&self) -> Vec<std::net::SocketAddr>;

    /// Gives a receiver that keeps state across restarts (`file_log`'s read positions) its own
    /// directory under `--storage.path`, before `run`. Most receivers keep none.
    fn use_storage(&mut self, _dir: &std::path::Path) -> Result<(), ReceiverError> {
        Ok(())
    }

    fn run(self: Box<Self>, ctx: ReceiverContext) -> BoxFuture<'static, Result<(), ReceiverError>>;
}

/// Transforms items on the ingest path (before the spool). Returning `Ok(None)` drops the item
/// deliberately (the processor counts why); `Err` refuses it back to the client.
pub trait Processor: Send + Sync + 'static {
    fn process(&self, item: Item) -> Result<Option<Item>, Refusal>;
}

/// Items of one signal and one tenant, read from the spool, that an exporter sends together.
#[derive(Debug, Clone)]
pub struct Batch {
    pub signal: Signal,
    pub tenant: Option<Arc<str>>,
    pub items: Vec<Item>,
}

impl Batch {
    pub fn item_count(&self) -> u64 {
        self.items.iter().map(|i| u64::from(i.count)).sum()
    }

    pub fn byte_size(&self) -> usize {
        self.items.iter().map(|i| i.payload.len()).sum()
    }
}

/// What sending one request achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// The backend took everything.
    Sent,
    /// The backend took the request but refused `rejected` items for good (OTLP partial
    /// success). Counted and logged; never retried.
    PartiallyRejected { rejected: u64, message: String },
    /// Try again later (network error, 429, 5xx, retryable gRPC codes). `retry_after` is the
    /// backend's minimum delay (`Retry-After`, `RetryInfo`), if it gave one.
    Retryable {
        reason: &'static str,
        retry_after: Option<Duration>,
        message: String,
    },
    /// The backend refused the request for good (400, other 4xx, permanent gRPC codes).
    /// Counted with `reason`, logged once per distinct reason, and the data is skipped.
    Rejected {
        reason: &'static str,
        message: String,
    },
}

/// An exporter: converts batches to requests and sends them.
pub trait Exporter: Send + Sync + 'static {
    type Request: Send + Sync + 'static;

    /// True when batches must reach the backend in spool order (remote-write series order,
    /// Loki stream order): the pipeline then converts batches in spool order and sends each
    /// lane's requests (see [`Exporter::lanes`]) one batch at a time, in spool order.
    fn ordered(&self) -> bool {
        false
    }

    /// For an ordered exporter: whether [`Exporter::build_requests`] must see batches in spool
    /// order because it keeps state across them (remote-write's delta totals). When false,
    /// batches convert concurrently, off the driver task, and only their sends keep spool
    /// order per lane.
    fn converts_in_order(&self) -> bool {
        true
    }

    /// For an ordered exporter: how many independent ordered lanes its requests fall into.
    /// Order is kept per lane: a lane's request of batch N is sent once that lane's requests
    /// of batch N-1 are final, so a slow lane holds back only itself (remote-write: one lane
    /// per shard, as every series always lands in the same shard; Prometheus' shards work so).
    fn lanes(&self) -> usize {
        1
    }

    /// The lane of a request, below [`Exporter::lanes`] (larger values share the last lane).
    fn lane(&self, _request: &Self::Request) -> usize {
        0
    }

    /// Converts a batch into zero or more requests. Items that cannot be converted are counted
    /// by the exporter (with a reason) and left out; they are never retried.
    fn build_requests(&self, batch: &Batch) -> Vec<Self::Request>;

    /// Items (spans, points, records, samples, entries) carried by a request, for metrics.
    fn request_items(&self, request: &Self::Request) -> u64;

    /// Splits a request the backend refused for good into two requests that together hold its
    /// items, so the pipeline can resend the halves and isolate the refused items
    /// (docs/validation.md §2). `None` (the default): it holds a single item, or the backend
    /// keeps the valid part of a refused request (Loki, remote-write), so there is nothing to
    /// isolate.
    fn split(&self, _request: &Self::Request) -> Option<(Self::Request, Self::Request)> {
        None
    }

    /// The OTLP `Export*ServiceRequest` encoding of a request, stored in the dead-letter store
    /// when it is refused for good. `None` (the default): the pipeline stores the batch items
    /// the request was built from.
    fn dead_letter_payload(&self, _request: &Self::Request) -> Option<bytes::Bytes> {
        None
    }

    /// Sends one request once. The pipeline retries according to the outcome.
    fn send(&self, request: &Self::Request) -> impl Future<Output = SendOutcome> + Send;
}

/// What the collector's registry asks of a component's typed config besides parsing it and
/// its `validate`. Every component's `Config` implements it; the defaults fit components
/// that listen nowhere and retry with the default policy.
pub trait ComponentConfig {
    /// Endpoints this component will listen on, by config key (`("grpc.endpoint",
    /// "127.0.0.1:4317")`), so clashes are found before anything binds.
    fn listen_endpoints(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }

    /// The retry policy the exporter driver applies to this exporter's requests.
    fn retry(&self) -> crate::retry::RetryConfig {
        crate::retry::RetryConfig::default()
    }
}
