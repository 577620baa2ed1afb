//! AWF events → OTLP spans, cumulative metrics and log records (`docs/awf-events.md` §3).
//!
//! Spans: `awf.workflow` (root, one per execution) → `awf.step` (one per step attempt) →
//! `awf.agent.invoke` (one per agent invocation). A span is emitted once, complete, when its
//! end event arrives; ids are derived from execution / step / attempt ([`crate::ids`]).
//!
//! Exactly-once accounting across reconnects and replays rests on two windows:
//! * events already seen (by `id`, else by a hash of their content) are skipped;
//! * spans already emitted and retries/fallbacks already counted (by their derived identity)
//!   are never emitted or counted again, even when the replayed event has a different id.
//!
//! Conversion is two-phase: [`Converter::convert`] returns a [`Pending`] whose spans and logs
//! the caller delivers; only [`Converter::commit`] (after delivery succeeded) adds its metric
//! observations and marks its events/spans as done. [`Converter::abandon`] undoes the
//! bookkeeping so that a client retrying a refused push is converted again, not dropped.
//!
//! * [`pending`] — what one conversion produced, and its encoding as OTLP items.
//! * [`workflow`], [`step`], [`agent`] — the handlers of each event family.
//! * [`expire`] — step and execution timeouts.
//! * [`spans`], [`logs`] — building spans, log records and their attributes.

mod agent;
mod expire;
mod logs;
mod pending;
mod spans;
mod step;
mod workflow;

pub use pending::{Pending, SCOPE_NAME};

use crate::aggregate::{Aggregator, ExemplarRef, data_points};
use crate::attrs::kv_str;
use crate::event::{EventKind, WorkflowEvent};
use crate::ids::{self, SpanId};
use crate::redact::Redactor;
use crate::seen_set::SeenSet;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span;
use pending::{KeyKind, Restore, export_request, request_item};
use sluice_core::{Item, Signal};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Settings of a [`Converter`].
#[derive(Debug, Clone)]
pub struct ConvertConfig {
    /// `service.name` of the produced resource.
    pub service_name: String,
    /// An open step with no end event after this long (since its start was received) is
    /// closed with an error status.
    pub step_timeout: Duration,
    /// An execution with no event for this long is closed (workflow span with error status,
    /// `awf_workflow_total{status="timeout"}`) and forgotten.
    pub execution_timeout: Duration,
    /// How many event ids, and separately how many span/retry/fallback identities, are
    /// remembered for de-duplication.
    pub dedup_window: usize,
    /// Executions tracked at once; beyond it events still convert, without start times.
    pub max_open_executions: usize,
    /// Metric series kept at once; observations for new series beyond it are dropped.
    pub max_series: usize,
    pub redactor: Redactor,
}

impl Default for ConvertConfig {
    fn default() -> Self {
        ConvertConfig {
            service_name: "awf".to_owned(),
            step_timeout: Duration::from_secs(600),
            execution_timeout: Duration::from_secs(3600),
            dedup_window: 100_000,
            max_open_executions: 100_000,
            max_series: 10_000,
            redactor: Redactor::none(),
        }
    }
}

/// What a conversion saw, for the receiver's self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvertStats {
    pub events: u64,
    /// Events skipped because the same event (id or content) was already converted.
    pub duplicates: u64,
    /// End/retry/fallback events whose span or count was already emitted: logged only.
    pub replayed: u64,
    /// Events without `execution_id`: logged without trace context, no spans or metrics.
    pub uncorrelated: u64,
    /// Values removed or hashed by redaction.
    pub redacted: u64,
    /// Steps and executions closed by a timeout.
    pub timed_out_steps: u64,
    pub timed_out_executions: u64,
    /// Executions not tracked because `max_open_executions` was reached.
    pub untracked: u64,
    /// Free-form attributes dropped for exceeding the per-event limit.
    pub dropped_attributes: u64,
}

/// The event a handler converts: its execution, the event, its time and when it arrived.
#[derive(Clone, Copy)]
struct At<'a> {
    exec: &'a str,
    e: &'a WorkflowEvent,
    ts: u64,
    now: u64,
}

/// A step attempt whose start was seen and whose end was not.
#[derive(Debug, Clone)]
struct OpenStep {
    attempt: u32,
    start: u64,
    opened_at: u64,
    agent_id: Option<String>,
    framework: Option<String>,
    provider: Option<String>,
    events: Vec<span::Event>,
}

/// What the converter remembers of one execution between its events.
#[derive(Debug, Clone, Default)]
struct ExecState {
    workflow_id: Option<String>,
    /// Set by `workflow.started`: the execution is active.
    workflow_start: Option<u64>,
    last_seen: u64,
    last_event_time: u64,
    steps: HashMap<String, OpenStep>,
    /// Latest attempt seen per step.
    attempts: HashMap<String, u32>,
    /// Step attempts that had an `agent.invoked` (their tokens are counted from it).
    invoked: HashSet<(String, u32)>,
}

/// Converts events to OTLP, keeping the state needed to pair start and end events and the
/// cumulative metric totals. One converter is shared by all streams of a receiver.
#[derive(Debug)]
pub struct Converter {
    cfg: ConvertConfig,
    resource: Arc<Resource>,
    executions: HashMap<String, ExecState>,
    seen_events: SeenSet,
    done: SeenSet,
    in_flight: HashSet<u64>,
    metrics: Aggregator,
    /// Workflows that ever had an active execution, so their gauge reports 0, not nothing.
    gauge_workflows: HashSet<String>,
    /// Observations dropped because of `max_series`.
    pub series_dropped: u64,
}

impl Converter {
    pub fn new(cfg: ConvertConfig) -> Converter {
        let resource = Arc::new(Resource {
            attributes: vec![kv_str("service.name", cfg.service_name.as_str())],
            ..Default::default()
        });
        Converter {
            seen_events: SeenSet::new(cfg.dedup_window),
            done: SeenSet::new(cfg.dedup_window),
            metrics: Aggregator::new(cfg.max_series),
            resource,
            executions: HashMap::new(),
            in_flight: HashSet::new(),
            gauge_workflows: HashSet::new(),
            series_dropped: 0,
            cfg,
        }
    }

    pub fn config(&self) -> &ConvertConfig {
        &self.cfg
    }

    /// Executions currently tracked.
    pub fn open_executions(&self) -> usize {
        self.executions.len()
    }

    /// The cumulative metric store (tests, diagnostics).
    pub fn aggregator(&self) -> &Aggregator {
        &self.metrics
    }

    fn pending(&self) -> Pending {
        Pending::new(self.resource.clone())
    }

    /// Converts `events` received at `now` (Unix ns). Nothing is final until
    /// [`Converter::commit`].
    pub fn convert(&mut self, events: Vec<WorkflowEvent>, now: u64) -> Pending {
        let mut p = self.pending();
        for mut event in events {
            p.stats.events += 1;
            let key = event_key(&event);
            if !self.claim(&mut p, KeyKind::Event, key) {
                p.stats.duplicates += 1;
                continue;
            }
            p.stats.redacted += self.cfg.redactor.apply(&mut event) as u64;
            self.convert_one(&mut p, &event, now);
        }
        p
    }

    /// Makes a delivered conversion final: its metric observations are added and its events
    /// and spans will never be converted again.
    pub fn commit(&mut self, p: Pending, now: u64) {
        for u in &p.updates {
            if !self.metrics.apply(u, now) {
                self.series_dropped += 1;
            }
        }
        for (kind, key) in p.keys {
            self.in_flight.remove(&key);
            match kind {
                KeyKind::Event => self.seen_events.insert(key),
                KeyKind::Identity => self.done.insert(key),
            };
        }
    }

    /// Forgets a conversion whose delivery failed: its events will be converted again when
    /// they come back, and the step/execution state it consumed is put back.
    pub fn abandon(&mut self, p: Pending) {
        for (_, key) in p.keys {
            self.in_flight.remove(&key);
        }
        for r in p.restore {
            match r {
                Restore::Exec(exec, state) => {
                    self.executions.entry(exec).or_insert(*state);
                }
                Restore::Step(exec, step, open) => {
                    if let Some(state) = self.executions.get_mut(&exec) {
                        state.steps.entry(step).or_insert(open);
                    }
                }
            }
        }
    }

    /// All metric series (cumulative) and the active-executions gauge, as one item.
    pub fn metrics_item(&mut self, now: u64) -> Option<Item> {
        let mut active: BTreeMap<String, i64> = self
            .gauge_workflows
            .iter()
            .map(|w| (w.clone(), 0))
            .collect();
        for state in self.executions.values() {
            if state.workflow_start.is_some() {
                let wf = label(&state.workflow_id);
                *active.entry(wf.clone()).or_insert(0) += 1;
                if self.gauge_workflows.len() < self.cfg.max_series {
                    self.gauge_workflows.insert(wf);
                }
            }
        }
        let metrics = self.metrics.snapshot(now, &active);
        if metrics.is_empty() {
            return None;
        }
        let points = data_points(&metrics);
        let req = export_request!(
            ExportMetricsServiceRequest {
                resource_metrics: ResourceMetrics {
                    scope_metrics: ScopeMetrics { metrics }
                }
            },
            &self.resource
        );
        Some(request_item(Signal::Metrics, &req, points))
    }

    /// Claims `key` for this conversion; false when it is done or claimed by another one.
    fn claim(&mut self, p: &mut Pending, kind: KeyKind, key: u64) -> bool {
        let done = match kind {
            KeyKind::Event => self.seen_events.contains(key),
            KeyKind::Identity => self.done.contains(key),
        };
        if done || !self.in_flight.insert(key) {
            return false;
        }
        p.keys.push((kind, key));
        true
    }

    /// The execution's state, created on first sight unless the table is full.
    fn state<'a>(
        executions: &'a mut HashMap<String, ExecState>,
        max: usize,
        exec: &str,
        stats: &mut ConvertStats,
    ) -> Option<&'a mut ExecState> {
        if !executions.contains_key(exec) {
            if executions.len() >= max {
                stats.untracked += 1;
                return None;
            }
            executions.insert(exec.to_owned(), ExecState::default());
        }
        executions.get_mut(exec)
    }

    fn convert_one(&mut self, p: &mut Pending, e: &WorkflowEvent, now: u64) {
        let ts = e.timestamp.unwrap_or(now);
        let Some(exec) = e.execution_id.clone() else {
            p.stats.uncorrelated += 1;
            let record = self.log_record(p, e, ts, now, None);
            p.logs.push(record);
            return;
        };
        let max = self.cfg.max_open_executions;
        // Events of an execution that already ended (late or replayed) must not bring it back
        // to life: they are converted without state.
        let ended = self.done.contains(span_key(&ids::workflow_span_id(&exec)));
        let state = if ended {
            None
        } else {
            Self::state(&mut self.executions, max, &exec, &mut p.stats)
        };
        if let Some(state) = state {
            state.last_seen = now;
            state.last_event_time = state.last_event_time.max(ts);
            if state.workflow_id.is_none() {
                state.workflow_id.clone_from(&e.workflow_id);
            }
        }
        let trace_id = ids::trace_id(&exec);
        let at = At {
            exec: &exec,
            e,
            ts,
            now,
        };
        let span_id = match &e.kind {
            EventKind::WorkflowStarted => self.on_workflow_started(&exec, e, ts),
            EventKind::WorkflowCompleted
            | EventKind::WorkflowFailed
            | EventKind::WorkflowCancelled => self.on_workflow_end(p, at),
            EventKind::StepStarted => self.on_step_started(p, at),
            EventKind::StepCompleted | EventKind::StepFailed => self.on_step_end(p, at),
            EventKind::StepRetried => self.on_step_retried(p, at),
            EventKind::StepFallback => self.on_step_fallback(p, at),
            EventKind::AgentInvoked => self.on_agent_invoked(p, at),
            EventKind::Other(_) => self.current_span(&exec, e),
        };
        let record = self.log_record(p, e, ts, now, Some((trace_id, span_id)));
        p.logs.push(record);
    }

    /// The span an event without its own span belongs to: its step's current attempt, else
    /// the workflow.
    fn current_span(&self, exec: &str, e: &WorkflowEvent) -> SpanId {
        match self.step_attempt(exec, e) {
            Some((step, attempt)) => ids::step_span_id(exec, step, attempt),
            None => ids::workflow_span_id(exec),
        }
    }

    /// The step an event names and its attempt: the event's, else the step's current one.
    fn step_attempt<'e>(&self, exec: &str, e: &'e WorkflowEvent) -> Option<(&'e str, u32)> {
        let step = e.step_id.as_deref()?;
        let attempt = e
            .attempt
            .unwrap_or_else(|| self.current_attempt(exec, step));
        Some((step, attempt))
    }

    fn current_attempt(&self, exec: &str, step: &str) -> u32 {
        self.executions
            .get(exec)
            .and_then(|s| {
                s.steps
                    .get(step)
                    .map(|o| o.attempt)
                    .or_else(|| s.attempts.get(step).copied())
            })
            .unwrap_or(1)
    }
}

fn span_key(id: &SpanId) -> u64 {
    u64::from_le_bytes(*id)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn label(v: &Option<String>) -> String {
    match v {
        Some(s) if !s.is_empty() => s.clone(),
        _ => "unknown".to_owned(),
    }
}

fn exemplar(exec: &str, span_id: SpanId, ts: u64) -> ExemplarRef {
    ExemplarRef {
        trace_id: ids::trace_id(exec),
        span_id,
        execution_id: exec.to_owned(),
        time_unix_nano: ts,
    }
}

/// Start of the work an end event reports, from its `execution_time_ms`.
fn duration_start(e: &WorkflowEvent, end: u64) -> Option<u64> {
    let ms = e.execution_time_ms()?;
    Some(end.saturating_sub((ms * 1e6) as u64))
}

fn error_message(e: &WorkflowEvent, default: &str) -> String {
    e.error
        .as_ref()
        .map(|err| err.message.clone())
        .unwrap_or_else(|| default.to_owned())
}

/// The key de-duplicating an event: its `id` within its execution, else a hash of its content
/// (AWF's own SSE stream sends no ids, and a replay repeats events byte for byte).
pub fn event_key(e: &WorkflowEvent) -> u64 {
    let exec = e.execution_id.as_deref().unwrap_or("");
    match &e.id {
        Some(id) => ids::key("awf.event.id", &[exec, id]),
        None => ids::key("awf.event.content", &[&e.to_value().to_string()]),
    }
}
