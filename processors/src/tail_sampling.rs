//! `tail_sampling`: holds each trace's spans for `decision_wait` after its first span arrives,
//! then keeps or drops the whole trace by its policies (kept when any policy says so), with the
//! configuration of the OpenTelemetry Collector's tail sampling processor.
//!
//! A decision needs every span of a trace in one place: behind the Kafka gateway, which
//! partitions by trace id, each Sluice sees whole traces. Memory is bounded by `num_traces`:
//! when a new trace would exceed it, the oldest pending trace is decided early. Spans that
//! arrive after their trace was decided follow that decision (the last `num_traces` decisions
//! are remembered).
//!
//! Pending traces live in memory until decided; the client was answered when they arrived.
//! A crash loses them (as it does in the Collector); a stop or reload decides them all first.

use crate::filter::ErrorMode;
use crate::ottl::{self, ContextKind, Expr};
use crate::{BuildError, Context, Request, RequestProcessor, Stage};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use parking_lot::Mutex;
use serde::Deserialize;
use sluice_core::{DurationStr, InvalidConfig, Item, Refusal, Signal};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

pub const TYPE_NAME: &str = "tail_sampling";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyType {
    AlwaysSample,
    StatusCode,
    Latency,
    Probabilistic,
    OttlCondition,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodeConfig {
    /// `ERROR`, `OK`, `UNSET`.
    pub status_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Keeps traces lasting at least this long (first span start to last span end).
    pub threshold_ms: u64,
    /// ... and less than this, when set.
    #[serde(default)]
    pub upper_threshold_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticConfig {
    /// Percentage of traces kept, decided from the trace id (the same on every instance).
    pub sampling_percentage: f64,
    #[serde(default)]
    pub hash_salt: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OttlConditionConfig {
    #[serde(default)]
    pub error_mode: ErrorMode,
    /// Keeps the trace when any span matches any condition.
    pub span: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PolicyType,
    #[serde(default)]
    pub status_code: Option<StatusCodeConfig>,
    #[serde(default)]
    pub latency: Option<LatencyConfig>,
    #[serde(default)]
    pub probabilistic: Option<ProbabilisticConfig>,
    #[serde(default)]
    pub ottl_condition: Option<OttlConditionConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long after a trace's first span its decision is made.
    #[serde(default = "default_wait")]
    pub decision_wait: DurationStr,
    /// Traces held at most; the oldest is decided early beyond it.
    #[serde(default = "default_num_traces")]
    pub num_traces: usize,
    /// Accepted for compatibility; Sluice sizes its tables as traces arrive.
    #[serde(default)]
    pub expected_new_traces_per_sec: u64,
    pub policies: Vec<PolicyConfig>,
}

fn default_wait() -> DurationStr {
    DurationStr::from_secs(30)
}

fn default_num_traces() -> usize {
    50_000
}

impl sluice_core::ComponentConfig for Config {}

enum Policy {
    Always,
    Status(Vec<i32>),
    Latency { min: u64, max: Option<u64> },
    Probabilistic { threshold: u64, salt: String },
    Ottl(Vec<Expr>),
}

/// Compiles the policy at key `at` (`policies[i]`); errors name the policy too.
fn compile_policy(at: &str, p: &PolicyConfig) -> Result<(String, Policy), InvalidConfig> {
    let invalid = |field: &str, reason: String| {
        let key = if field.is_empty() {
            at.to_owned()
        } else {
            format!("{at}.{field}")
        };
        InvalidConfig::new(key, format!("{reason} (policy {:?})", p.name))
    };
    let missing = |block: &str| invalid("", format!("policy type {block} needs a `{block}` table"));
    let policy = match p.kind {
        PolicyType::AlwaysSample => Policy::Always,
        PolicyType::StatusCode => {
            let c = p
                .status_code
                .as_ref()
                .ok_or_else(|| missing("status_code"))?;
            let codes = c
                .status_codes
                .iter()
                .map(|s| match s.as_str() {
                    "UNSET" => Ok(0),
                    "OK" => Ok(1),
                    "ERROR" => Ok(2),
                    other => Err(invalid(
                        "status_code.status_codes",
                        format!("status code {other:?}: use ERROR, OK or UNSET"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if codes.is_empty() {
                return Err(invalid("status_code.status_codes", "is empty".into()));
            }
            Policy::Status(codes)
        }
        PolicyType::Latency => {
            let c = p.latency.as_ref().ok_or_else(|| missing("latency"))?;
            if c.upper_threshold_ms != 0 && c.upper_threshold_ms <= c.threshold_ms {
                return Err(invalid(
                    "latency.upper_threshold_ms",
                    "must be above threshold_ms".into(),
                ));
            }
            Policy::Latency {
                min: c.threshold_ms * 1_000_000,
                max: (c.upper_threshold_ms != 0).then_some(c.upper_threshold_ms * 1_000_000),
            }
        }
        PolicyType::Probabilistic => {
            let c = p
                .probabilistic
                .as_ref()
                .ok_or_else(|| missing("probabilistic"))?;
            if !(0.0..=100.0).contains(&c.sampling_percentage) {
                return Err(invalid(
                    "probabilistic.sampling_percentage",
                    "must be between 0 and 100".into(),
                ));
            }
            Policy::Probabilistic {
                threshold: (c.sampling_percentage / 100.0 * u64::MAX as f64) as u64,
                salt: c.hash_salt.clone(),
            }
        }
        PolicyType::OttlCondition => {
            let c = p
                .ottl_condition
                .as_ref()
                .ok_or_else(|| missing("ottl_condition"))?;
            let exprs = c
                .span
                .iter()
                .enumerate()
                .map(|(i, src)| {
                    ottl::parse_condition(ContextKind::Span, src).map_err(|e| {
                        invalid(
                            &format!("ottl_condition.span[{i}]"),
                            format!("{src:?}: {e}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if exprs.is_empty() {
                return Err(invalid("ottl_condition.span", "is empty".into()));
            }
            Policy::Ottl(exprs)
        }
    };
    Ok((p.name.clone(), policy))
}

impl Config {
    fn compile(&self) -> Result<Vec<(String, Policy)>, InvalidConfig> {
        if self.policies.is_empty() {
            return Err(InvalidConfig::new("policies", "give at least one policy"));
        }
        if self.num_traces == 0 {
            return Err(InvalidConfig::new("num_traces", "must be more than 0"));
        }
        if self.decision_wait.get().is_zero() {
            return Err(InvalidConfig::new("decision_wait", "must be more than 0"));
        }
        self.policies
            .iter()
            .enumerate()
            .map(|(i, p)| compile_policy(&format!("policies[{i}]"), p))
            .collect()
    }

    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.compile().map(|_| ())
    }
}

type TraceId = [u8; 16];

struct Pending {
    first_seen: Instant,
    fragments: Vec<ResourceSpans>,
    spans: u32,
}

#[derive(Default)]
struct State {
    pending: HashMap<TraceId, Pending>,
    /// Pending trace ids in arrival order (may hold ids decided early; skipped then).
    arrival: VecDeque<TraceId>,
    /// Recent decisions, for spans that arrive late.
    decided: HashMap<TraceId, bool>,
    decided_order: VecDeque<TraceId>,
}

pub struct TailSampler {
    policies: Vec<(String, Policy)>,
    wait: Duration,
    num_traces: usize,
    state: Mutex<State>,
    ctx: Context,
}

impl TailSampler {
    fn remember(&self, state: &mut State, id: TraceId, sampled: bool) {
        if state.decided.insert(id, sampled).is_none() {
            state.decided_order.push_back(id);
        }
        while state.decided_order.len() > self.num_traces {
            if let Some(old) = state.decided_order.pop_front() {
                state.decided.remove(&old);
            }
        }
    }

    /// Decides one trace: the request to hand on when it is kept.
    fn decide(&self, id: &TraceId, trace: Pending) -> Option<Request> {
        let mut request = Request::Traces(ExportTraceServiceRequest {
            resource_spans: trace.fragments,
        });
        let policy = self
            .policies
            .iter()
            .find(|(_, p)| self.matches(p, id, &mut request));
        let decision = if policy.is_some() {
            "sampled"
        } else {
            "not_sampled"
        };
        metrics::counter!("sluice_processor_tail_sampling_traces_total",
            "component_id" => self.ctx.component_id.to_string(), "pipeline" => self.ctx.pipeline.to_string(),
            "decision" => decision, "policy" => policy.map(|(n, _)| n.clone()).unwrap_or_default())
        .increment(1);
        match policy {
            Some(_) => Some(request),
            None => {
                self.ctx
                    .dropped(Signal::Traces, "not_sampled", u64::from(trace.spans));
                None
            }
        }
    }

    fn matches(&self, policy: &Policy, id: &TraceId, request: &mut Request) -> bool {
        let Request::Traces(r) = request else {
            return false;
        };
        let spans = || {
            r.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
        };
        match policy {
            Policy::Always => true,
            Policy::Status(codes) => {
                spans().any(|s| codes.contains(&s.status.as_ref().map(|st| st.code).unwrap_or(0)))
            }
            Policy::Latency { min, max } => {
                let start = spans().map(|s| s.start_time_unix_nano).min().unwrap_or(0);
                let end = spans().map(|s| s.end_time_unix_nano).max().unwrap_or(0);
                let took = end.saturating_sub(start);
                took >= *min && max.is_none_or(|m| took < m)
            }
            Policy::Probabilistic { threshold, salt } => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                salt.hash(&mut h);
                id.hash(&mut h);
                h.finish() < *threshold
            }
            Policy::Ottl(exprs) => {
                let mut any = false;
                ottl::for_each(request, ContextKind::Span, |t| {
                    any = any || exprs.iter().any(|e| ottl::truthy(e, t));
                });
                any
            }
        }
    }

    /// Decides every trace whose wait is over (all of them with `all`) and hands the kept
    /// ones on.
    fn decide_due(&self, all: bool) -> Vec<Item> {
        let now = Instant::now();
        let mut kept = Vec::new();
        let mut state = self.state.lock();
        while let Some(id) = state.arrival.front().copied() {
            let Some(trace) = state.pending.get(&id) else {
                state.arrival.pop_front();
                continue;
            };
            if !all && now.duration_since(trace.first_seen) < self.wait {
                break;
            }
            state.arrival.pop_front();
            if let Some(trace) = state.pending.remove(&id) {
                let request = self.decide(&id, trace);
                self.remember(&mut state, id, request.is_some());
                kept.extend(request.map(into_item));
            }
        }
        self.held_gauge(&state);
        kept
    }

    fn held_gauge(&self, state: &State) {
        metrics::gauge!("sluice_processor_tail_sampling_traces_held",
            "component_id" => self.ctx.component_id.to_string(), "pipeline" => self.ctx.pipeline.to_string())
        .set(state.pending.len() as f64);
    }

    async fn hand_on(&self, items: Vec<Item>) {
        for item in items {
            let n = u64::from(item.count);
            if let Err(refusal) = self.ctx.downstream.send(item).await {
                tracing::warn!(processor = %self.ctx.component_id, pipeline = %self.ctx.pipeline,
                    error = %refusal, spans = n, "a sampled trace could not be spooled; it is dropped");
                self.ctx.dropped(Signal::Traces, "downstream_refused", n);
            }
        }
    }
}

fn into_item(request: Request) -> Item {
    let count = request.count();
    Item::new(Signal::Traces, request.encode(), count)
}

/// Spans grouped by trace id, each group with its resource and scope.
fn split_by_trace(request: &mut Request) -> Vec<(TraceId, ResourceSpans, u32)> {
    let Request::Traces(r) = request else {
        return Vec::new();
    };
    let mut out: Vec<(TraceId, ResourceSpans, u32)> = Vec::new();
    for rs in std::mem::take(&mut r.resource_spans) {
        let mut by_trace: Vec<(TraceId, ResourceSpans, u32)> = Vec::new();
        for ss in rs.scope_spans {
            for span in ss.spans {
                // Receivers refuse ids that are not 16 bytes; an empty one groups on its own.
                let id: TraceId = span.trace_id.as_slice().try_into().unwrap_or([0; 16]);
                let slot = match by_trace.iter().position(|(t, _, _)| *t == id) {
                    Some(i) => i,
                    None => {
                        by_trace.push((
                            id,
                            ResourceSpans {
                                resource: rs.resource.clone(),
                                scope_spans: Vec::new(),
                                schema_url: rs.schema_url.clone(),
                            },
                            0,
                        ));
                        by_trace.len() - 1
                    }
                };
                let (_, frag, n) = &mut by_trace[slot];
                let same_scope = frag
                    .scope_spans
                    .last()
                    .is_some_and(|last| last.scope == ss.scope && last.schema_url == ss.schema_url);
                if !same_scope {
                    frag.scope_spans.push(ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    });
                }
                if let Some(last) = frag.scope_spans.last_mut() {
                    last.spans.push(span);
                }
                *n += 1;
            }
        }
        out.extend(by_trace);
    }
    out
}

impl RequestProcessor for TailSampler {
    fn applies_to(&self, signal: Signal) -> bool {
        signal == Signal::Traces
    }

    fn process(&self, request: &mut Request) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut early = Vec::new();
        let mut late_kept = Vec::new();
        {
            let mut state = self.state.lock();
            for (id, fragment, spans) in split_by_trace(request) {
                match state.decided.get(&id) {
                    Some(true) => {
                        late_kept.push(fragment);
                        continue;
                    }
                    Some(false) => {
                        self.ctx
                            .dropped(Signal::Traces, "not_sampled", u64::from(spans));
                        continue;
                    }
                    None => {}
                }
                if let Some(p) = state.pending.get_mut(&id) {
                    p.fragments.push(fragment);
                    p.spans += spans;
                    continue;
                }
                // Bounded memory: decide the oldest pending traces early to make room.
                while state.pending.len() >= self.num_traces {
                    let Some(old) = state.arrival.pop_front() else {
                        break;
                    };
                    if let Some(trace) = state.pending.remove(&old) {
                        let kept = self.decide(&old, trace);
                        self.remember(&mut state, old, kept.is_some());
                        early.extend(kept);
                    }
                }
                state.pending.insert(
                    id,
                    Pending {
                        first_seen: now,
                        fragments: vec![fragment],
                        spans,
                    },
                );
                state.arrival.push_back(id);
            }
            self.held_gauge(&state);
        }
        // What is already decided goes on with this item; the rest waits for its decision.
        let Request::Traces(r) = request else {
            return Ok(());
        };
        r.resource_spans.extend(late_kept);
        for kept in early {
            if let Request::Traces(k) = kept {
                r.resource_spans.extend(k.resource_spans);
            }
        }
        Ok(())
    }

    fn flush(&self) {
        for item in self.decide_due(true) {
            // Spooling happens inside `send`; its future only waits for durability, which the
            // spool's close provides.
            drop(self.ctx.downstream.send(item));
        }
    }
}

pub fn build(config: &Config, ctx: Context) -> Result<Stage, BuildError> {
    let wait = config.decision_wait.get();
    let sampler = Arc::new(TailSampler {
        policies: config.compile()?,
        wait,
        num_traces: config.num_traces,
        state: Mutex::new(State::default()),
        ctx,
    });
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime {
        processor: TYPE_NAME,
    })?;
    let weak: Weak<TailSampler> = Arc::downgrade(&sampler);
    let tick = (wait / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    runtime.spawn(async move {
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // The pipeline is gone (stop, reload): so is this task.
            let Some(sampler) = weak.upgrade() else {
                return;
            };
            let kept = sampler.decide_due(false);
            sampler.hand_on(kept).await;
        }
    });
    Ok(Stage::Request(sampler))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{Span, Status};
    use sluice_core::Consumer;

    /// Collects what the sampler hands on.
    #[derive(Default)]
    struct Sink(Mutex<Vec<Item>>);

    impl Consumer for Sink {
        fn consume(&self, item: Item) -> futures::future::BoxFuture<'static, Result<(), Refusal>> {
            self.0.lock().push(item);
            Box::pin(std::future::ready(Ok(())))
        }
        fn accepts(&self, _: Signal) -> bool {
            true
        }
    }

    fn span(trace: u8, name: &str, code: i32, start_ms: u64, end_ms: u64) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![trace; 8],
            name: name.into(),
            start_time_unix_nano: start_ms * 1_000_000,
            end_time_unix_nano: end_ms * 1_000_000,
            status: Some(Status {
                code,
                message: String::new(),
            }),
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> Request {
        Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn sampler(extra: &str) -> (Arc<dyn RequestProcessor>, Arc<Sink>) {
        let cfg: Config = toml::from_str(&format!(
            r#"
            {extra}
            [[policies]]
            name = "errors"
            type = "status_code"
            status_code = {{ status_codes = ["ERROR"] }}
            [[policies]]
            name = "slow"
            type = "latency"
            latency = {{ threshold_ms = 1000 }}
            [[policies]]
            name = "checkout"
            type = "ottl_condition"
            ottl_condition = {{ span = ['name == "checkout"'] }}
            "#
        ))
        .unwrap();
        let ctx = Context::new("processors.ts", "p");
        let sink = Arc::new(Sink::default());
        ctx.downstream.set(sink.clone());
        let Stage::Request(p) = build(&cfg, ctx).unwrap() else {
            panic!("tail sampling works on decoded requests")
        };
        (p, sink)
    }

    fn kept_traces(sink: &Sink) -> Vec<u8> {
        let mut ids: Vec<u8> = sink
            .0
            .lock()
            .iter()
            .flat_map(|item| {
                let Ok(Request::Traces(r)) = Request::decode(Signal::Traces, &item.payload) else {
                    panic!("a trace request")
                };
                r.resource_spans
                    .into_iter()
                    .flat_map(|rs| rs.scope_spans)
                    .flat_map(|ss| ss.spans)
                    .map(|s| s.trace_id[0])
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    #[tokio::test]
    async fn keeps_errors_slow_and_matching_traces_whole() {
        let (p, sink) = sampler("decision_wait = \"50ms\"");
        // Trace 1: an error in its second request. Trace 2: fast and fine. Trace 3: slow.
        // Trace 4: matches the OTTL policy.
        let mut a = request(vec![
            span(1, "a", 1, 0, 10),
            span(2, "b", 1, 0, 10),
            span(3, "c", 0, 0, 500),
        ]);
        p.process(&mut a).unwrap();
        assert_eq!(a.count(), 0, "everything is held back");
        let mut b = request(vec![
            span(1, "d", 2, 5, 8),
            span(3, "e", 0, 400, 1200),
            span(4, "checkout", 0, 0, 1),
        ]);
        p.process(&mut b).unwrap();
        // Decisions come once decision_wait has passed; wait for them (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        while kept_traces(&sink).len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(kept_traces(&sink), vec![1, 3, 4]);
        let spans: u32 = sink.0.lock().iter().map(|i| i.count).sum();
        assert_eq!(spans, 5, "both spans of traces 1 and 3, one of trace 4");

        // A late span follows its trace's decision.
        let mut late = request(vec![span(1, "late", 0, 0, 1), span(2, "late", 0, 0, 1)]);
        p.process(&mut late).unwrap();
        assert_eq!(late.count(), 1, "trace 1 was kept, trace 2 was not");
    }

    #[tokio::test]
    async fn num_traces_bounds_memory_by_deciding_early() {
        let (p, _sink) = sampler("decision_wait = \"1h\"\nnum_traces = 2");
        let mut r = request(vec![span(1, "x", 2, 0, 1), span(2, "x", 0, 0, 1)]);
        p.process(&mut r).unwrap();
        assert_eq!(r.count(), 0);
        // A third trace makes room by deciding trace 1 (an error: kept, handed on in line).
        let mut r = request(vec![span(3, "x", 0, 0, 1)]);
        p.process(&mut r).unwrap();
        assert_eq!(r.count(), 1);
        p.flush();
    }

    #[test]
    fn config_errors() {
        let bad = |t: &str| toml::from_str::<Config>(t).unwrap().validate().unwrap_err();
        assert_eq!(bad("policies = []").key, "policies");
        let e = bad("[[policies]]\nname = \"x\"\ntype = \"latency\"");
        assert_eq!(e.key, "policies[0]");
        assert!(e.reason.contains("needs a `latency` table"), "{e}");
        let e = bad(
            "[[policies]]\nname = \"x\"\ntype = \"status_code\"\nstatus_code = { status_codes = [\"BAD\"] }",
        );
        assert_eq!(e.key, "policies[0].status_code.status_codes");
        assert!(e.reason.contains("use ERROR, OK or UNSET"), "{e}");
        assert!(e.reason.ends_with("(policy \"x\")"), "{e}");
    }
}
