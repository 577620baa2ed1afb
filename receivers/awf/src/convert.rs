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

use crate::aggregate::{Aggregator, AwfMetric, ExemplarRef, MetricUpdate, data_points};
use crate::attrs::{self, kv_f64, kv_i64, kv_str};
use crate::event::{EventKind, WorkflowEvent};
use crate::ids::{self, SpanId, TraceId};
use crate::redact::Redactor;
use crate::seen_set::SeenSet;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use sluice_core::{Item, Signal};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Instrumentation scope of everything the converter produces.
pub const SCOPE_NAME: &str = "sluice.receiver.awf";

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

#[derive(Debug)]
enum Restore {
    Exec(String, Box<ExecState>),
    Step(String, String, OpenStep),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Event,
    Identity,
}

/// Output of one conversion, to deliver and then [`Converter::commit`] or
/// [`Converter::abandon`].
#[derive(Debug)]
pub struct Pending {
    pub spans: Vec<Span>,
    pub logs: Vec<LogRecord>,
    pub stats: ConvertStats,
    updates: Vec<MetricUpdate>,
    keys: Vec<(KeyKind, u64)>,
    restore: Vec<Restore>,
    resource: Arc<Resource>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.logs.is_empty() && self.updates.is_empty()
    }

    /// Metric observations this conversion will add on commit.
    pub fn metric_updates(&self) -> &[MetricUpdate] {
        &self.updates
    }

    /// The spans as one `ExportTraceServiceRequest` item, if any.
    pub fn traces_item(&self) -> Option<Item> {
        if self.spans.is_empty() {
            return None;
        }
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some((*self.resource).clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: self.spans.clone(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        Some(Item::new(
            Signal::Traces,
            Bytes::from(req.encode_to_vec()),
            count(self.spans.len()),
        ))
    }

    /// The log records as one `ExportLogsServiceRequest` item, if any.
    pub fn logs_item(&self) -> Option<Item> {
        if self.logs.is_empty() {
            return None;
        }
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some((*self.resource).clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: self.logs.clone(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        Some(Item::new(
            Signal::Logs,
            Bytes::from(req.encode_to_vec()),
            count(self.logs.len()),
        ))
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
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
        Pending {
            spans: Vec::new(),
            logs: Vec::new(),
            stats: ConvertStats::default(),
            updates: Vec::new(),
            keys: Vec::new(),
            restore: Vec::new(),
            resource: self.resource.clone(),
        }
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

    /// Closes steps and executions that outlived their timeouts at `now`.
    pub fn expire(&mut self, now: u64) -> Pending {
        let mut p = self.pending();
        let step_timeout = nanos(self.cfg.step_timeout);
        let exec_timeout = nanos(self.cfg.execution_timeout);
        let mut expired_steps = Vec::new();
        let mut expired_execs = Vec::new();
        for (exec, state) in &self.executions {
            if now.saturating_sub(state.last_seen) >= exec_timeout {
                expired_execs.push(exec.clone());
                continue;
            }
            for (step, open) in &state.steps {
                if now.saturating_sub(open.opened_at) >= step_timeout {
                    expired_steps.push((exec.clone(), step.clone()));
                }
            }
        }
        for (exec, step) in expired_steps {
            let Some(state) = self.executions.get_mut(&exec) else {
                continue;
            };
            let Some(open) = state.steps.remove(&step) else {
                continue;
            };
            let workflow_id = state.workflow_id.clone();
            p.restore
                .push(Restore::Step(exec.clone(), step.clone(), open.clone()));
            let msg = format!(
                "no end event within step_timeout ({:?})",
                self.cfg.step_timeout
            );
            let end = open.start.saturating_add(step_timeout);
            if self.close_step(
                &mut p,
                &exec,
                &step,
                open,
                workflow_id,
                end,
                StepEnd::Timeout(msg),
            ) {
                p.stats.timed_out_steps += 1;
            }
        }
        for exec in expired_execs {
            let Some(mut state) = self.executions.remove(&exec) else {
                continue;
            };
            p.restore
                .push(Restore::Exec(exec.clone(), Box::new(state.clone())));
            let end = state.last_event_time;
            let workflow_id = state.workflow_id.clone();
            for (step, open) in std::mem::take(&mut state.steps) {
                let msg = format!(
                    "no event for the execution within execution_timeout ({:?})",
                    self.cfg.execution_timeout
                );
                self.close_step(
                    &mut p,
                    &exec,
                    &step,
                    open,
                    workflow_id.clone(),
                    end,
                    StepEnd::Timeout(msg),
                );
            }
            if let Some(start) = state.workflow_start {
                let span_id = ids::workflow_span_id(&exec);
                if self.claim(&mut p, KeyKind::Identity, span_key(&span_id)) {
                    let msg = format!(
                        "no terminal event within execution_timeout ({:?})",
                        self.cfg.execution_timeout
                    );
                    let mut attributes = vec![kv_str("execution_id", exec.as_str())];
                    if let Some(w) = &workflow_id {
                        attributes.push(kv_str("workflow_id", w.as_str()));
                    }
                    attributes.push(kv_str("status", "timeout"));
                    p.spans.push(make_span(SpanParts {
                        trace_id: ids::trace_id(&exec),
                        span_id,
                        parent: None,
                        name: "awf.workflow",
                        kind: span::SpanKind::Internal,
                        start,
                        end: end.max(start),
                        attributes,
                        error: Some(msg),
                        events: Vec::new(),
                    }));
                    p.updates.push(MetricUpdate {
                        metric: AwfMetric::Workflows,
                        label_values: vec![label(&workflow_id), "timeout".to_owned()],
                        value: 1.0,
                        exemplar: Some(ExemplarRef {
                            trace_id: ids::trace_id(&exec),
                            span_id,
                            execution_id: exec.clone(),
                            time_unix_nano: end,
                        }),
                    });
                    p.stats.timed_out_executions += 1;
                }
            }
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
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some((*self.resource).clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        Some(Item::new(
            Signal::Metrics,
            Bytes::from(req.encode_to_vec()),
            count(points),
        ))
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
        let span_id = match &e.kind {
            EventKind::WorkflowStarted => self.on_workflow_started(&exec, e, ts),
            EventKind::WorkflowCompleted
            | EventKind::WorkflowFailed
            | EventKind::WorkflowCancelled => self.on_workflow_end(p, &exec, e, ts),
            EventKind::StepStarted => self.on_step_started(p, &exec, e, ts, now),
            EventKind::StepCompleted | EventKind::StepFailed => self.on_step_end(p, &exec, e, ts),
            EventKind::StepRetried => self.on_step_retried(p, &exec, e, ts),
            EventKind::StepFallback => self.on_step_fallback(p, &exec, e, ts),
            EventKind::AgentInvoked => self.on_agent_invoked(p, &exec, e, ts),
            EventKind::Other(_) => self.current_span(&exec, e),
        };
        let record = self.log_record(p, e, ts, now, Some((trace_id, span_id)));
        p.logs.push(record);
    }

    /// The span an event without its own span belongs to: its step's current attempt, else
    /// the workflow.
    fn current_span(&self, exec: &str, e: &WorkflowEvent) -> SpanId {
        match &e.step_id {
            Some(step) => {
                let attempt = e
                    .attempt
                    .unwrap_or_else(|| self.current_attempt(exec, step));
                ids::step_span_id(exec, step, attempt)
            }
            None => ids::workflow_span_id(exec),
        }
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

    fn on_workflow_started(&mut self, exec: &str, e: &WorkflowEvent, ts: u64) -> SpanId {
        if let Some(state) = self.executions.get_mut(exec) {
            let start = e.started_at.unwrap_or(ts);
            state.workflow_start = Some(state.workflow_start.map_or(start, |s| s.min(start)));
            if let Some(w) = &e.workflow_id {
                state.workflow_id = Some(w.clone());
            }
        }
        ids::workflow_span_id(exec)
    }

    fn on_workflow_end(
        &mut self,
        p: &mut Pending,
        exec: &str,
        e: &WorkflowEvent,
        ts: u64,
    ) -> SpanId {
        let span_id = ids::workflow_span_id(exec);
        if !self.claim(p, KeyKind::Identity, span_key(&span_id)) {
            p.stats.replayed += 1;
            return span_id;
        }
        let mut state = self.executions.remove(exec).unwrap_or_default();
        p.restore
            .push(Restore::Exec(exec.to_owned(), Box::new(state.clone())));
        let workflow_id = e.workflow_id.clone().or_else(|| state.workflow_id.clone());
        // Steps still open when the workflow ended will never get their end event.
        for (step, open) in std::mem::take(&mut state.steps) {
            self.close_step(
                p,
                exec,
                &step,
                open,
                workflow_id.clone(),
                ts,
                StepEnd::Aborted,
            );
        }
        let start = e
            .started_at
            .or(state.workflow_start)
            .or_else(|| duration_start(e, ts))
            .unwrap_or(ts);
        let status = match e.kind {
            EventKind::WorkflowCompleted => "completed",
            EventKind::WorkflowCancelled => "cancelled",
            _ => "failed",
        };
        let mut attributes = Vec::new();
        push_common(&mut attributes, e, workflow_id.as_deref(), None);
        if e.status.is_none() {
            attributes.push(kv_str("status", status));
        }
        p.stats.dropped_attributes += u64::from(push_free(&mut attributes, e));
        let error = match e.kind {
            EventKind::WorkflowFailed => Some(error_message(e, "workflow failed")),
            _ => e.error.as_ref().map(|err| err.message.clone()),
        };
        p.spans.push(make_span(SpanParts {
            trace_id: ids::trace_id(exec),
            span_id,
            parent: None,
            name: "awf.workflow",
            kind: span::SpanKind::Internal,
            start,
            end: ts.max(start),
            attributes,
            error,
            events: Vec::new(),
        }));
        p.updates.push(MetricUpdate {
            metric: AwfMetric::Workflows,
            label_values: vec![label(&workflow_id), status.to_owned()],
            value: 1.0,
            exemplar: Some(exemplar(exec, span_id, ts)),
        });
        span_id
    }

    fn on_step_started(
        &mut self,
        p: &mut Pending,
        exec: &str,
        e: &WorkflowEvent,
        ts: u64,
        now: u64,
    ) -> SpanId {
        let Some(step) = e.step_id.as_deref() else {
            return ids::workflow_span_id(exec);
        };
        let attempt = match e.attempt {
            Some(a) => a,
            None => {
                // Without an explicit attempt, a start after that attempt's span was emitted
                // (and that is not a replay: replays were dropped by event key) is a new one.
                let mut a = self
                    .executions
                    .get(exec)
                    .and_then(|s| s.attempts.get(step).copied())
                    .unwrap_or(1);
                for _ in 0..1000 {
                    let k = span_key(&ids::step_span_id(exec, step, a));
                    if !self.done.contains(k) && !self.in_flight.contains(&k) {
                        break;
                    }
                    a = a.saturating_add(1);
                }
                a
            }
        };
        let span_id = ids::step_span_id(exec, step, attempt);
        let Some(state) = self.executions.get_mut(exec) else {
            return span_id;
        };
        let latest = state.attempts.entry(step.to_owned()).or_insert(attempt);
        *latest = (*latest).max(attempt);
        let workflow_id = state.workflow_id.clone();
        let superseded = match state.steps.get(step) {
            Some(open) if open.attempt == attempt => {
                // A repeated start of the same attempt keeps the earliest start.
                if let Some(open) = state.steps.get_mut(step) {
                    open.start = open.start.min(ts);
                }
                return span_id;
            }
            Some(open) if open.attempt > attempt => return span_id, // a late, stale start
            Some(_) => state.steps.remove(step),
            None => None,
        };
        state.steps.insert(
            step.to_owned(),
            OpenStep {
                attempt,
                start: e.started_at.unwrap_or(ts),
                opened_at: now,
                agent_id: e.agent_id.clone(),
                framework: e.framework.clone(),
                provider: e.provider.clone(),
                events: Vec::new(),
            },
        );
        if let Some(old) = superseded {
            p.restore
                .push(Restore::Step(exec.to_owned(), step.to_owned(), old.clone()));
            self.close_step(
                p,
                exec,
                step,
                old,
                workflow_id,
                ts,
                StepEnd::Failed("superseded by a newer attempt".into()),
            );
        }
        span_id
    }

    fn on_step_end(&mut self, p: &mut Pending, exec: &str, e: &WorkflowEvent, ts: u64) -> SpanId {
        let Some(step) = e.step_id.as_deref() else {
            return ids::workflow_span_id(exec);
        };
        let attempt = e
            .attempt
            .unwrap_or_else(|| self.current_attempt(exec, step));
        let span_id = ids::step_span_id(exec, step, attempt);
        let state = self.executions.get_mut(exec);
        let workflow_id = state
            .as_ref()
            .and_then(|s| s.workflow_id.clone())
            .or_else(|| e.workflow_id.clone());
        let open = state.and_then(|s| match s.steps.get(step) {
            Some(o) if o.attempt == attempt => s.steps.remove(step),
            _ => None,
        });
        if let Some(o) = &open {
            p.restore
                .push(Restore::Step(exec.to_owned(), step.to_owned(), o.clone()));
        }
        let open = open.unwrap_or_else(|| OpenStep {
            attempt,
            start: e.started_at.or_else(|| duration_start(e, ts)).unwrap_or(ts),
            opened_at: 0,
            agent_id: None,
            framework: None,
            provider: None,
            events: Vec::new(),
        });
        let end = if e.kind == EventKind::StepFailed {
            StepEnd::Failed(error_message(e, "step failed"))
        } else {
            StepEnd::Completed
        };
        if !self.close_step_with(p, exec, step, open, workflow_id, ts, end, Some(e)) {
            p.stats.replayed += 1;
        }
        span_id
    }

    fn on_step_retried(
        &mut self,
        p: &mut Pending,
        exec: &str,
        e: &WorkflowEvent,
        ts: u64,
    ) -> SpanId {
        let Some(step) = e.step_id.as_deref() else {
            return ids::workflow_span_id(exec);
        };
        let previous = self
            .executions
            .get(exec)
            .and_then(|s| s.attempts.get(step).copied())
            .unwrap_or(1);
        let new_attempt = e
            .attempt
            .or_else(|| {
                e.metrics
                    .as_ref()
                    .and_then(|m| m.retry_count)
                    .map(|r| r.saturating_add(1))
            })
            .unwrap_or(previous.saturating_add(1));
        let span_id = ids::step_span_id(exec, step, new_attempt);
        let marker = ids::key("awf.retry", &[exec, step, &new_attempt.to_string()]);
        if !self.claim(p, KeyKind::Identity, marker) {
            p.stats.replayed += 1;
            return span_id;
        }
        let mut agent_id = e.agent_id.clone();
        let mut superseded = None;
        let mut workflow_id = None;
        if let Some(state) = self.executions.get_mut(exec) {
            let latest = state.attempts.entry(step.to_owned()).or_insert(new_attempt);
            *latest = (*latest).max(new_attempt);
            workflow_id.clone_from(&state.workflow_id);
            if let Some(open) = state.steps.get(step) {
                if agent_id.is_none() {
                    agent_id.clone_from(&open.agent_id);
                }
                if open.attempt < new_attempt {
                    superseded = state.steps.remove(step);
                }
            }
        }
        if let Some(old) = superseded {
            p.restore
                .push(Restore::Step(exec.to_owned(), step.to_owned(), old.clone()));
            let msg = error_message(e, "step attempt retried");
            self.close_step(p, exec, step, old, workflow_id, ts, StepEnd::Failed(msg));
        }
        p.updates.push(MetricUpdate {
            metric: AwfMetric::Retries,
            label_values: vec![step.to_owned(), label(&agent_id)],
            value: 1.0,
            exemplar: Some(exemplar(exec, span_id, ts)),
        });
        span_id
    }

    fn on_step_fallback(
        &mut self,
        p: &mut Pending,
        exec: &str,
        e: &WorkflowEvent,
        ts: u64,
    ) -> SpanId {
        let Some(step) = e.step_id.as_deref() else {
            return ids::workflow_span_id(exec);
        };
        let attempt = e
            .attempt
            .unwrap_or_else(|| self.current_attempt(exec, step));
        let span_id = ids::step_span_id(exec, step, attempt);
        let from = e.agent_id.as_deref().unwrap_or("");
        let to = e.fallback_agent_id.as_deref().unwrap_or("");
        let marker = ids::key(
            "awf.fallback",
            &[exec, step, &attempt.to_string(), from, to],
        );
        if !self.claim(p, KeyKind::Identity, marker) {
            p.stats.replayed += 1;
            return span_id;
        }
        if let Some(open) = self
            .executions
            .get_mut(exec)
            .and_then(|s| s.steps.get_mut(step))
            .filter(|o| o.attempt == attempt)
        {
            let mut attributes = vec![kv_str("agent_id", from)];
            if !to.is_empty() {
                attributes.push(kv_str("fallback_agent_id", to));
            }
            open.events.push(span::Event {
                time_unix_nano: ts,
                name: "awf.fallback".to_owned(),
                attributes,
                dropped_attributes_count: 0,
            });
        }
        p.updates.push(MetricUpdate {
            metric: AwfMetric::Fallbacks,
            label_values: vec![step.to_owned()],
            value: 1.0,
            exemplar: Some(exemplar(exec, span_id, ts)),
        });
        span_id
    }

    fn on_agent_invoked(
        &mut self,
        p: &mut Pending,
        exec: &str,
        e: &WorkflowEvent,
        ts: u64,
    ) -> SpanId {
        let step = e.step_id.as_deref().unwrap_or("");
        let attempt = if step.is_empty() {
            e.attempt.unwrap_or(1)
        } else {
            e.attempt
                .unwrap_or_else(|| self.current_attempt(exec, step))
        };
        let agent = e.agent_id.as_deref().unwrap_or("");
        let invocation = match e.attributes.get("invocation_id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let span_id = ids::agent_span_id(exec, step, attempt, agent, &invocation);
        if !self.claim(p, KeyKind::Identity, span_key(&span_id)) {
            p.stats.replayed += 1;
            return span_id;
        }
        let parent = if step.is_empty() {
            ids::workflow_span_id(exec)
        } else {
            ids::step_span_id(exec, step, attempt)
        };
        // Provider/framework default to what the step's start said.
        let open = self
            .executions
            .get(exec)
            .and_then(|s| s.steps.get(step))
            .filter(|o| o.attempt == attempt);
        let provider = e
            .provider
            .clone()
            .or_else(|| open.and_then(|o| o.provider.clone()));
        let framework = e
            .framework
            .clone()
            .or_else(|| open.and_then(|o| o.framework.clone()));
        let workflow_id = e.workflow_id.clone().or_else(|| {
            self.executions
                .get(exec)
                .and_then(|s| s.workflow_id.clone())
        });
        if !step.is_empty()
            && let Some(state) = self.executions.get_mut(exec)
        {
            state.invoked.insert((step.to_owned(), attempt));
        }
        let start = e.started_at.or_else(|| duration_start(e, ts)).unwrap_or(ts);
        let mut attributes = Vec::new();
        push_common(&mut attributes, e, workflow_id.as_deref(), Some(attempt));
        if e.provider.is_none()
            && let Some(pv) = &provider
        {
            attributes.push(kv_str("provider", pv.as_str()));
        }
        if e.framework.is_none()
            && let Some(fw) = &framework
        {
            attributes.push(kv_str("framework", fw.as_str()));
        }
        if e.tokens().is_none() {
            // Every invoke span carries token counts (`docs/awf-events.md` §3, Spans); absent means none reported.
            attributes.push(kv_i64("input_tokens", 0));
            attributes.push(kv_i64("output_tokens", 0));
        }
        p.stats.dropped_attributes += u64::from(push_free(&mut attributes, e));
        let error = e
            .is_failure()
            .then(|| error_message(e, "agent invocation failed"));
        p.spans.push(make_span(SpanParts {
            trace_id: ids::trace_id(exec),
            span_id,
            parent: Some(parent),
            name: "awf.agent.invoke",
            kind: span::SpanKind::Client,
            start,
            end: ts.max(start),
            attributes,
            error,
            events: Vec::new(),
        }));
        let agent_label = label(&e.agent_id);
        self.push_usage(p, exec, span_id, ts, &agent_label, provider.as_deref(), e);
        span_id
    }

    /// Token and cost counters of one event.
    #[allow(clippy::too_many_arguments)]
    fn push_usage(
        &self,
        p: &mut Pending,
        exec: &str,
        span_id: SpanId,
        ts: u64,
        agent: &str,
        provider: Option<&str>,
        e: &WorkflowEvent,
    ) {
        if let Some(t) = e.tokens() {
            for (direction, n) in [("input", t.input_tokens), ("output", t.output_tokens)] {
                if n > 0 {
                    p.updates.push(MetricUpdate {
                        metric: AwfMetric::Tokens,
                        label_values: vec![agent.to_owned(), direction.to_owned()],
                        value: n as f64,
                        exemplar: Some(exemplar(exec, span_id, ts)),
                    });
                }
            }
        }
        if let Some(c) = e.cost_usd().filter(|c| *c > 0.0) {
            p.updates.push(MetricUpdate {
                metric: AwfMetric::Cost,
                label_values: vec![agent.to_owned(), provider.unwrap_or("unknown").to_owned()],
                value: c,
                exemplar: Some(exemplar(exec, span_id, ts)),
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn close_step(
        &mut self,
        p: &mut Pending,
        exec: &str,
        step: &str,
        open: OpenStep,
        workflow_id: Option<String>,
        end: u64,
        how: StepEnd,
    ) -> bool {
        self.close_step_with(p, exec, step, open, workflow_id, end, how, None)
    }

    /// Emits the `awf.step` span of `open` and its duration observation, unless that span
    /// was already emitted. `e` is the end event, when there is one.
    #[allow(clippy::too_many_arguments)]
    fn close_step_with(
        &mut self,
        p: &mut Pending,
        exec: &str,
        step: &str,
        open: OpenStep,
        workflow_id: Option<String>,
        end: u64,
        how: StepEnd,
        e: Option<&WorkflowEvent>,
    ) -> bool {
        let span_id = ids::step_span_id(exec, step, open.attempt);
        if !self.claim(p, KeyKind::Identity, span_key(&span_id)) {
            return false;
        }
        let agent_id = e
            .and_then(|e| e.agent_id.clone())
            .or_else(|| open.agent_id.clone());
        let framework = e
            .and_then(|e| e.framework.clone())
            .or_else(|| open.framework.clone());
        let provider = e
            .and_then(|e| e.provider.clone())
            .or_else(|| open.provider.clone());
        let end = end.max(open.start);
        let mut attributes = Vec::new();
        match e {
            Some(e) => push_common(
                &mut attributes,
                e,
                workflow_id.as_deref(),
                Some(open.attempt),
            ),
            None => {
                attributes.push(kv_str("execution_id", exec));
                if let Some(w) = &workflow_id {
                    attributes.push(kv_str("workflow_id", w.as_str()));
                }
                attributes.push(kv_str("step_id", step));
                attributes.push(kv_i64("attempt", i64::from(open.attempt)));
            }
        }
        let has = |attrs: &Vec<KeyValue>, k: &str| attrs.iter().any(|a| a.key == k);
        for (k, v) in [
            ("agent_id", &agent_id),
            ("framework", &framework),
            ("provider", &provider),
        ] {
            if let Some(v) = v
                && !has(&attributes, k)
            {
                attributes.push(kv_str(k, v.as_str()));
            }
        }
        if !has(&attributes, "status") {
            attributes.push(kv_str("status", how.status()));
        }
        if let Some(e) = e {
            p.stats.dropped_attributes += u64::from(push_free(&mut attributes, e));
        }
        let duration_ms = e
            .and_then(WorkflowEvent::execution_time_ms)
            .unwrap_or_else(|| (end - open.start) as f64 / 1e6);
        p.spans.push(make_span(SpanParts {
            trace_id: ids::trace_id(exec),
            span_id,
            parent: Some(ids::workflow_span_id(exec)),
            name: "awf.step",
            kind: span::SpanKind::Internal,
            start: open.start,
            end,
            attributes,
            error: how.error(),
            events: open.events,
        }));
        let agent_label = label(&agent_id);
        p.updates.push(MetricUpdate {
            metric: AwfMetric::StepDuration,
            label_values: vec![
                step.to_owned(),
                agent_label.clone(),
                how.status().to_owned(),
            ],
            value: duration_ms,
            exemplar: Some(exemplar(exec, span_id, end)),
        });
        // Tokens and cost come from `agent.invoked` when the step had one; a step end event is
        // their source only for emitters that do not send invocations.
        if let Some(e) = e {
            let invoked = self
                .executions
                .get(exec)
                .is_some_and(|s| s.invoked.contains(&(step.to_owned(), open.attempt)));
            if !invoked {
                self.push_usage(p, exec, span_id, end, &agent_label, provider.as_deref(), e);
            }
        }
        true
    }

    fn log_record(
        &self,
        p: &mut Pending,
        e: &WorkflowEvent,
        ts: u64,
        now: u64,
        ctx: Option<(TraceId, SpanId)>,
    ) -> LogRecord {
        let (severity, text) = if e.is_failure() {
            (SeverityNumber::Error, "ERROR")
        } else if matches!(
            e.kind,
            EventKind::StepRetried | EventKind::StepFallback | EventKind::WorkflowCancelled
        ) {
            (SeverityNumber::Warn, "WARN")
        } else {
            (SeverityNumber::Info, "INFO")
        };
        let mut attributes = vec![kv_str("event_type", e.kind.as_str())];
        if let Some(id) = &e.id {
            attributes.push(kv_str("event_id", id.as_str()));
        }
        let workflow_id = e.workflow_id.clone().or_else(|| {
            e.execution_id
                .as_ref()
                .and_then(|x| self.executions.get(x))
                .and_then(|s| s.workflow_id.clone())
        });
        push_common(&mut attributes, e, workflow_id.as_deref(), e.attempt);
        p.stats.dropped_attributes += u64::from(push_free(&mut attributes, e));
        let (trace_id, span_id) = ctx
            .map(|(t, s)| (t.to_vec(), s.to_vec()))
            .unwrap_or_default();
        LogRecord {
            time_unix_nano: ts,
            observed_time_unix_nano: now,
            severity_number: severity as i32,
            severity_text: text.to_owned(),
            body: Some(attrs::any_str(summary(e))),
            attributes,
            flags: if trace_id.is_empty() { 0 } else { 1 },
            trace_id,
            span_id,
            event_name: e.kind.as_str().to_owned(),
            ..Default::default()
        }
    }
}

/// How a step attempt ended.
#[derive(Debug, Clone)]
enum StepEnd {
    Completed,
    Failed(String),
    Timeout(String),
    /// The workflow ended while the step was open.
    Aborted,
}

impl StepEnd {
    fn status(&self) -> &'static str {
        match self {
            StepEnd::Completed => "completed",
            StepEnd::Failed(_) => "failed",
            StepEnd::Timeout(_) => "timeout",
            StepEnd::Aborted => "aborted",
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            StepEnd::Completed => None,
            StepEnd::Failed(m) | StepEnd::Timeout(m) => Some(m.clone()),
            StepEnd::Aborted => Some("the workflow ended before the step did".to_owned()),
        }
    }
}

struct SpanParts {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    name: &'static str,
    kind: span::SpanKind,
    start: u64,
    end: u64,
    attributes: Vec<KeyValue>,
    error: Option<String>,
    events: Vec<span::Event>,
}

fn make_span(s: SpanParts) -> Span {
    let mut events = s.events;
    let status = match &s.error {
        Some(msg) => {
            // OpenTelemetry's exception event, so backends show the error on the span.
            events.push(span::Event {
                time_unix_nano: s.end,
                name: "exception".to_owned(),
                attributes: vec![kv_str("exception.message", msg.as_str())],
                dropped_attributes_count: 0,
            });
            Status {
                message: msg.clone(),
                code: status::StatusCode::Error as i32,
            }
        }
        None => Status {
            message: String::new(),
            code: status::StatusCode::Ok as i32,
        },
    };
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name.to_owned(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start,
        end_time_unix_nano: s.end.max(s.start),
        attributes: s.attributes,
        events,
        status: Some(status),
        flags: 0x100, // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK set, parent is local
        ..Default::default()
    }
}

/// The known fields of an event as attributes (names as in `docs/awf-events.md` §1: `workflow_id`, `execution_id`,
/// `step_id`, `agent_id`, `framework`, `input_tokens`, `output_tokens`, …).
fn push_common(
    out: &mut Vec<KeyValue>,
    e: &WorkflowEvent,
    workflow_id: Option<&str>,
    attempt: Option<u32>,
) {
    if let Some(x) = &e.execution_id {
        out.push(kv_str("execution_id", x.as_str()));
    }
    if let Some(w) = workflow_id {
        out.push(kv_str("workflow_id", w));
    }
    for (k, v) in [
        ("step_id", &e.step_id),
        ("agent_id", &e.agent_id),
        ("framework", &e.framework),
        ("provider", &e.provider),
        ("status", &e.status),
        ("fallback_agent_id", &e.fallback_agent_id),
    ] {
        if let Some(v) = v {
            out.push(kv_str(k, v.as_str()));
        }
    }
    if let Some(a) = attempt.or(e.attempt) {
        out.push(kv_i64("attempt", i64::from(a)));
    }
    if let Some(err) = &e.error {
        out.push(kv_str("error.message", err.message.as_str()));
        if let Some(t) = &err.kind {
            out.push(kv_str("error.type", t.as_str()));
        }
    }
    if let Some(m) = &e.metrics {
        if let Some(ms) = m.execution_time_ms {
            out.push(kv_f64("execution_time_ms", ms));
        }
        if let Some(t) = m.token_usage {
            out.push(kv_i64("input_tokens", clamp_i64(t.input_tokens)));
            out.push(kv_i64("output_tokens", clamp_i64(t.output_tokens)));
        }
        if let Some(c) = m.cost_usd {
            out.push(kv_f64("cost_usd", c));
        }
        if let Some(r) = m.retry_count {
            out.push(kv_i64("retry_count", i64::from(r)));
        }
    }
}

/// Free-form fields, never overriding a known attribute.
fn push_free(out: &mut Vec<KeyValue>, e: &WorkflowEvent) -> u32 {
    if e.attributes.is_empty() {
        return 0;
    }
    // Known attributes are few (~15): a scan beats building a set per record.
    let known = out.len();
    let taken: Vec<String> = out[..known].iter().map(|k| k.key.clone()).collect();
    attrs::append_json(out, &e.attributes, &|k| taken.iter().any(|t| t == k))
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
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

/// A one-line, human-readable log body.
fn summary(e: &WorkflowEvent) -> String {
    use std::fmt::Write;
    let mut s = e.kind.as_str().to_owned();
    for (k, v) in [
        ("workflow", &e.workflow_id),
        ("execution", &e.execution_id),
        ("step", &e.step_id),
        ("agent", &e.agent_id),
        ("to", &e.fallback_agent_id),
        ("status", &e.status),
    ] {
        if let Some(v) = v {
            let _ = write!(s, " {k}={v}");
        }
    }
    if let Some(a) = e.attempt {
        let _ = write!(s, " attempt={a}");
    }
    if let Some(ms) = e.execution_time_ms() {
        let _ = write!(s, " duration_ms={ms}");
    }
    if let Some(err) = &e.error {
        let _ = write!(s, ": {}", err.message);
    }
    s
}
