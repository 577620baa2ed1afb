//! Ingest-path processors: they run in line, in a pipeline's configured order, after the
//! receiver and before the spool.
//!
//! Items carry OTLP protobuf bytes. A [`Chain`] decodes an item (with prost) only when a stage
//! that needs the decoded form comes up, hands the decoded request from stage to stage, and
//! encodes it once at the end (or before a stage that works on bytes). A pipeline without
//! processors never builds a chain, so its items stay the receiver's bytes.
//!
//! Each processor has a module with its `TYPE_NAME`, its `Config` (with `validate`) and
//! `build`; the collector's registry wires them.

pub mod attributes;
pub mod data;
pub mod filter;
pub mod memory_limiter;
pub mod ottl;
pub mod redaction;
pub mod resource;
pub mod tail_sampling;
pub mod transform;

pub use data::Request;

/// Why a processor could not be built from its (already validated) config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error("{processor} runs a background task and needs the collector's Tokio runtime")]
    NoRuntime { processor: &'static str },
}

use futures::future::BoxFuture;
use metrics::{Counter, Histogram};
use sluice_core::{Consumer, InvalidConfig, Item, Processor, Refusal, Signal};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

pub const INCOMING: &str = "sluice_processor_incoming_items_total";
pub const OUTGOING: &str = "sluice_processor_outgoing_items_total";
pub const REFUSED: &str = "sluice_processor_refused_items_total";
pub const DURATION: &str = "sluice_processor_duration_seconds";
pub use sluice_core::telemetry::PROCESSOR_DROPPED as DROPPED;

/// A processor that works on the decoded request.
pub trait RequestProcessor: Send + Sync + 'static {
    /// Signals it acts on; items of other signals pass by without being decoded.
    fn applies_to(&self, _signal: Signal) -> bool {
        true
    }

    /// Changes `request` in place. Removing spans, points or records drops them (the processor
    /// counts why through its [`Context`]); `Err` refuses the whole item back to the client.
    fn process(&self, request: &mut Request) -> Result<(), Refusal>;

    /// Hands on whatever it holds back (tail sampling's pending traces), now: the pipeline is
    /// stopping.
    fn flush(&self) {}
}

/// One step of a chain.
#[derive(Clone)]
pub enum Stage {
    /// Works on the item's bytes (the memory limiter, the watcher).
    Item(Arc<dyn Processor>),
    /// Works on the decoded request.
    Request(Arc<dyn RequestProcessor>),
}

/// Who a processor is (`processors.<name>` in pipeline `<pipeline>`, for its metrics), and
/// where it hands on data it held back.
#[derive(Clone)]
pub struct Context {
    pub component_id: Arc<str>,
    pub pipeline: Arc<str>,
    pub downstream: Arc<Downstream>,
}

/// Where a processor that holds data back (tail sampling) hands it on later: the stages after
/// it, then the spool. The pipeline sets it once it exists.
#[derive(Default)]
pub struct Downstream {
    target: OnceLock<Arc<dyn Consumer>>,
}

impl Downstream {
    pub fn set(&self, target: Arc<dyn Consumer>) {
        let _ = self.target.set(target);
    }

    /// Runs the rest of the pipeline on `item`; the future resolves once it is durable.
    pub fn send(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        match self.target.get() {
            Some(t) => t.consume(item),
            None => Box::pin(std::future::ready(Err(Refusal::Unavailable {
                reason: "stopped",
                message: "the pipeline is not running".into(),
            }))),
        }
    }
}

impl Context {
    pub fn new(component_id: &str, pipeline: &str) -> Context {
        Context {
            component_id: Arc::from(component_id),
            pipeline: Arc::from(pipeline),
            downstream: Arc::default(),
        }
    }

    /// The processor dropped `n` items of `signal` on purpose, for `reason`.
    pub fn dropped(&self, signal: Signal, reason: &'static str, n: u64) {
        if n > 0 {
            metrics::counter!(DROPPED, "component_id" => self.component_id.to_string(),
                "pipeline" => self.pipeline.to_string(), "signal" => signal.as_str(), "reason" => reason)
            .increment(n);
        }
    }
}

struct StageMetrics {
    incoming: [Counter; 3],
    outgoing: [Counter; 3],
    duration: Histogram,
    ctx: Context,
}

impl StageMetrics {
    fn new(ctx: Context) -> StageMetrics {
        let per_signal = |name: &'static str| {
            Signal::ALL.map(|s| {
                metrics::counter!(name, "component_id" => ctx.component_id.to_string(),
                    "pipeline" => ctx.pipeline.to_string(), "signal" => s.as_str())
            })
        };
        StageMetrics {
            incoming: per_signal(INCOMING),
            outgoing: per_signal(OUTGOING),
            duration: metrics::histogram!(DURATION, "component_id" => ctx.component_id.to_string(),
                "pipeline" => ctx.pipeline.to_string()),
            ctx,
        }
    }

    fn refused(&self, signal: Signal, refusal: &Refusal, n: u32) {
        metrics::counter!(REFUSED, "component_id" => self.ctx.component_id.to_string(),
            "pipeline" => self.ctx.pipeline.to_string(), "signal" => signal.as_str(), "reason" => refusal.reason())
        .increment(u64::from(n));
    }
}

fn index(s: Signal) -> usize {
    match s {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

/// An item while it moves through a chain: still bytes, or decoded.
enum Form {
    Bytes(Item),
    Decoded {
        request: Request,
        tenant: Option<Arc<str>>,
    },
}

impl Form {
    fn into_item(self) -> Item {
        match self {
            Form::Bytes(item) => item,
            Form::Decoded { request, tenant } => {
                let count = request.count();
                Item::new(request.signal(), request.encode(), count).with_tenant(tenant)
            }
        }
    }
}

/// A pipeline's processors in configured order, run as one [`Processor`].
pub struct Chain {
    stages: Vec<(Stage, StageMetrics)>,
}

impl Chain {
    pub fn new(stages: Vec<(Stage, Context)>) -> Chain {
        Chain {
            stages: stages
                .into_iter()
                .map(|(s, ctx)| (s, StageMetrics::new(ctx)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Each stage's context, in order (the pipeline sets their downstreams).
    pub fn contexts(&self) -> impl Iterator<Item = &Context> {
        self.stages.iter().map(|(_, m)| &m.ctx)
    }

    /// Hands on what any stage holds back; for shutdown.
    pub fn flush(&self) {
        for (stage, _) in &self.stages {
            if let Stage::Request(p) = stage {
                p.flush();
            }
        }
    }

    /// Runs the stages from index `start` on.
    pub fn process_from(&self, start: usize, item: Item) -> Result<Option<Item>, Refusal> {
        let signal = item.signal;
        let mut form = Form::Bytes(item);
        for (stage, m) in self.stages.iter().skip(start) {
            let started = Instant::now();
            let incoming;
            let outgoing;
            match stage {
                Stage::Item(p) => {
                    let item = form.into_item();
                    incoming = item.count;
                    m.incoming[index(signal)].increment(u64::from(incoming));
                    match p.process(item) {
                        Ok(Some(next)) => {
                            outgoing = next.count;
                            form = Form::Bytes(next);
                        }
                        Ok(None) => {
                            m.duration.record(started.elapsed().as_secs_f64());
                            return Ok(None);
                        }
                        Err(refusal) => {
                            m.refused(signal, &refusal, incoming);
                            return Err(refusal);
                        }
                    }
                }
                Stage::Request(p) => {
                    if !p.applies_to(signal) {
                        continue;
                    }
                    let (mut request, tenant) = match form {
                        Form::Decoded { request, tenant } => (request, tenant),
                        Form::Bytes(item) => match Request::decode(signal, &item.payload) {
                            Ok(request) => (request, item.tenant),
                            Err(e) => {
                                // Receivers validate what they accept, so this is a bug or a
                                // replayed item from an older format: refuse it, say why.
                                let refusal = Refusal::Invalid(format!(
                                    "cannot decode the {signal} request: {e}"
                                ));
                                m.refused(signal, &refusal, item.count);
                                return Err(refusal);
                            }
                        },
                    };
                    incoming = request.count();
                    m.incoming[index(signal)].increment(u64::from(incoming));
                    if let Err(refusal) = p.process(&mut request) {
                        m.refused(signal, &refusal, incoming);
                        return Err(refusal);
                    }
                    request.prune();
                    outgoing = request.count();
                    form = Form::Decoded { request, tenant };
                }
            }
            m.outgoing[index(signal)].increment(u64::from(outgoing));
            m.duration.record(started.elapsed().as_secs_f64());
            if outgoing == 0 && incoming > 0 {
                return Ok(None);
            }
        }
        Ok(Some(form.into_item()))
    }
}

impl Processor for Chain {
    fn process(&self, item: Item) -> Result<Option<Item>, Refusal> {
        self.process_from(0, item)
    }
}

pub(crate) fn compile_regex(field: &str, pattern: &str) -> Result<regex::Regex, InvalidConfig> {
    regex::Regex::new(pattern).map_err(|e| {
        InvalidConfig::new(
            field,
            format!("invalid regular expression {pattern:?}: {e}"),
        )
    })
}
