//! The simulated system: executions as state machines over a virtual clock, the faults that
//! make them fail, and the controls a remediation uses to make them succeed again.
//!
//! The world is deterministic for a seed and a sequence of `advance` calls: tests drive it
//! with a virtual clock, the server with the wall clock.

use crate::deployment::{Agent, Deployment, Step};
use parking_lot::RwLock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sluice_receiver_awf::event::{EventError, EventKind, TaskMetrics, TokenUsage, WorkflowEvent};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Default chance that an invocation fails for good (bad input): no retry, no fallback, the
/// workflow fails. About 1 % of executions, so success-rate SLOs have something to show.
pub const DEFAULT_INPUT_ERROR_RATE: f64 = 0.0025;
const NON_RETRYABLE: &str = "InputError";

/// A fault scenario, switchable at runtime (`POST /sim/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// Invocations of `agent_id` fail with `probability` (default 0.9).
    AgentFailing {
        agent_id: String,
        #[serde(default = "default_probability")]
        probability: f64,
    },
    /// Step `step_id` gets slower: its latency is multiplied by `factor` and `added_ms` is
    /// added. With neither given, `added_ms` is 1.2 × the step's configured timeout, so it
    /// times out until the timeout is raised by 50 % (`POST /steps/{id}/timeout`).
    LatencySpike {
        step_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        factor: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        added_ms: Option<f64>,
    },
    /// Output tokens and cost of `agent_id` are multiplied by `factor` (default 5).
    CostSurge {
        agent_id: String,
        #[serde(default = "default_surge")]
        factor: f64,
    },
    /// Every invocation on `provider` hangs until the step timeout.
    ProviderTimeout { provider: String },
}

fn default_probability() -> f64 {
    0.9
}
fn default_surge() -> f64 {
    5.0
}

impl FaultKind {
    /// `kind:target`, the default name.
    pub fn default_name(&self) -> String {
        match self {
            FaultKind::AgentFailing { agent_id, .. } => format!("agent_failing:{agent_id}"),
            FaultKind::LatencySpike { step_id, .. } => format!("latency_spike:{step_id}"),
            FaultKind::CostSurge { agent_id, .. } => format!("cost_surge:{agent_id}"),
            FaultKind::ProviderTimeout { provider } => format!("provider_timeout:{provider}"),
        }
    }
}

/// Events of one execution as served over SSE (1-based ids), shared with stream readers.
#[derive(Debug, Default)]
pub struct ExecLog {
    pub events: RwLock<Vec<Arc<str>>>,
    pub finished: AtomicBool,
    pub notify: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

impl ExecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Queued => "queued",
            ExecStatus::Running => "running",
            ExecStatus::Completed => "completed",
            ExecStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    StepStart,
    Invoke,
    Done,
}

#[derive(Debug, Clone)]
struct Outcome {
    latency_ms: f64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    error: Option<(&'static str, String)>,
}

#[derive(Debug, Clone)]
struct Exec {
    id: String,
    workflow: usize,
    status: ExecStatus,
    input: Value,
    origin: Map<String, Value>,
    step_idx: usize,
    /// Attempt number of the current step (1-based, across retries and fallback).
    attempt: u32,
    /// Failed attempts on the current agent.
    tries_on_agent: u32,
    agent: Option<String>,
    on_fallback: bool,
    phase: Phase,
    started_ms: f64,
    created_unix_ns: u64,
    outcome: Option<Outcome>,
}

/// Counters of what the simulator did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimStats {
    pub events: u64,
    pub executions_started: u64,
    pub executions_completed: u64,
    pub executions_failed: u64,
    pub starts_skipped: u64,
    pub invocations: u64,
    pub invocation_failures: u64,
    pub retries: u64,
    pub fallbacks: u64,
}

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlError {
    NotFound(String),
    Conflict(String),
    Invalid(String),
}

/// The whole simulated deployment.
pub struct World {
    rng: StdRng,
    pub deployment: Deployment,
    faults: BTreeMap<String, FaultKind>,
    disabled: BTreeSet<String>,
    routes: BTreeMap<String, String>,
    timeouts_ms: BTreeMap<String, f64>,
    pub workers: u32,
    pub worker_capacity: u32,
    execs: HashMap<String, Exec>,
    logs: HashMap<String, Arc<ExecLog>>,
    finished: VecDeque<String>,
    queued: VecDeque<String>,
    /// (due virtual ms, tie-break sequence, execution)
    heap: BinaryHeap<Reverse<(u64, u64, String)>>,
    seq: u64,
    next_exec: u64,
    prefix: String,
    retain: usize,
    /// Chance that an invocation rejects its input (see [`DEFAULT_INPUT_ERROR_RATE`]).
    pub input_error_rate: f64,
    pub stats: SimStats,
}

/// An event of one execution, produced by [`World::advance`].
pub struct Emitted {
    pub execution_id: String,
    pub json: Arc<str>,
}

impl World {
    pub fn new(seed: u64, workers: u32, worker_capacity: u32, retain: usize) -> World {
        World {
            rng: StdRng::seed_from_u64(seed),
            deployment: Deployment::default(),
            faults: BTreeMap::new(),
            disabled: BTreeSet::new(),
            routes: BTreeMap::new(),
            timeouts_ms: BTreeMap::new(),
            workers: workers.max(1),
            worker_capacity: worker_capacity.max(1),
            execs: HashMap::new(),
            logs: HashMap::new(),
            finished: VecDeque::new(),
            queued: VecDeque::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            next_exec: 0,
            prefix: format!("{:04x}", seed & 0xffff),
            retain: retain.max(1),
            input_error_rate: DEFAULT_INPUT_ERROR_RATE,
            stats: SimStats::default(),
        }
    }

    fn capacity(&self) -> usize {
        (self.workers as usize).saturating_mul(self.worker_capacity as usize)
    }

    pub fn running(&self) -> usize {
        self.execs
            .values()
            .filter(|e| e.status == ExecStatus::Running)
            .count()
    }

    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// The stream of `id`, if retained.
    pub fn log(&self, id: &str) -> Option<Arc<ExecLog>> {
        self.logs.get(id).cloned()
    }

    /// Picks a workflow by weight.
    pub fn pick_workflow(&mut self) -> usize {
        let total: f64 = self.deployment.workflows.iter().map(|w| w.weight).sum();
        let mut x = self.rng.random::<f64>() * total;
        for (i, w) in self.deployment.workflows.iter().enumerate() {
            if x < w.weight {
                return i;
            }
            x -= w.weight;
        }
        0
    }

    /// Starts (or queues) a new execution of workflow `wf` at virtual time `now_ms`.
    /// Returns its id, or None when both the workers and the queue are full.
    pub fn start_execution(
        &mut self,
        wf: usize,
        now_ms: f64,
        now_unix_ns: u64,
        from_step: usize,
        input: Option<Value>,
        origin: Map<String, Value>,
    ) -> Option<String> {
        let capacity = self.capacity();
        let running = self.running();
        if running >= capacity && self.queued.len() >= capacity {
            self.stats.starts_skipped += 1;
            return None;
        }
        self.next_exec += 1;
        let id = format!("ex-{}-{:07}", self.prefix, self.next_exec);
        let input = input.unwrap_or_else(|| {
            json!({"request_id": format!("req-{}", self.rng.random::<u32>()), "priority": if self.rng.random::<f64>() < 0.2 { "high" } else { "normal" }})
        });
        let status = if running < capacity {
            ExecStatus::Running
        } else {
            ExecStatus::Queued
        };
        self.execs.insert(
            id.clone(),
            Exec {
                id: id.clone(),
                workflow: wf,
                status,
                input,
                origin,
                step_idx: from_step,
                attempt: 1,
                tries_on_agent: 0,
                agent: None,
                on_fallback: false,
                phase: Phase::Start,
                started_ms: now_ms,
                created_unix_ns: now_unix_ns,
                outcome: None,
            },
        );
        self.logs.insert(id.clone(), Arc::new(ExecLog::default()));
        self.stats.executions_started += 1;
        if status == ExecStatus::Running {
            self.schedule(&id, now_ms);
        } else {
            self.queued.push_back(id.clone());
        }
        Some(id)
    }

    fn schedule(&mut self, id: &str, due_ms: f64) {
        self.seq += 1;
        self.heap
            .push(Reverse((due_ms.max(0.0) as u64, self.seq, id.to_owned())));
    }

    /// Virtual time of the next due action.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Runs every action due at `now_ms`, up to `budget` events. Events are appended to the
    /// executions' logs and returned.
    pub fn advance(&mut self, now_ms: f64, now_unix_ns: u64, budget: usize) -> Vec<Emitted> {
        let mut out = Vec::new();
        while out.len() < budget {
            match self.heap.peek() {
                Some(Reverse((due, _, _))) if (*due as f64) <= now_ms => {}
                _ => break,
            }
            let Some(Reverse((_, _, id))) = self.heap.pop() else {
                break;
            };
            self.step_exec(&id, now_ms, now_unix_ns, &mut out);
        }
        out
    }

    fn step_exec(&mut self, id: &str, now_ms: f64, now_ns: u64, out: &mut Vec<Emitted>) {
        // Taken out while it is worked on, put back by `store`.
        let Some(mut ex) = self.execs.remove(id) else {
            return;
        };
        if ex.status != ExecStatus::Running {
            self.execs.insert(ex.id.clone(), ex);
            return;
        }
        let step = self
            .deployment
            .workflows
            .get(ex.workflow)
            .and_then(|w| w.steps.get(ex.step_idx))
            .copied();
        let next_due = match ex.phase {
            Phase::Start => {
                let mut e = self.event(&ex, EventKind::WorkflowStarted, now_ns);
                e.status = Some("running".into());
                e.attributes.insert("input".into(), ex.input.clone());
                e.attributes.extend(ex.origin.clone());
                self.emit(&ex, e, out);
                ex.phase = Phase::StepStart;
                Some(now_ms + 5.0)
            }
            Phase::StepStart => {
                let Some(step) = step else {
                    self.finish(&mut ex, None, now_ms, now_ns, out);
                    return self.store(ex, None, now_ms);
                };
                let wanted = ex.agent.clone().unwrap_or_else(|| step.agent.to_owned());
                match self.route(&wanted) {
                    None => {
                        // Disabled with no fallback: AWF skips the step.
                        let mut e =
                            self.step_event(&ex, EventKind::StepStarted, step.id, &wanted, now_ns);
                        e.status = Some("running".into());
                        self.emit(&ex, e, out);
                        let mut e = self.step_event(
                            &ex,
                            EventKind::StepCompleted,
                            step.id,
                            &wanted,
                            now_ns,
                        );
                        e.status = Some("skipped".into());
                        e.metrics = Some(TaskMetrics {
                            execution_time_ms: Some(0.0),
                            retry_count: Some(ex.attempt - 1),
                            ..Default::default()
                        });
                        self.emit(&ex, e, out);
                        self.next_step(&mut ex);
                        Some(now_ms + 5.0)
                    }
                    Some(agent) => {
                        let agent = agent.clone();
                        ex.agent = Some(agent.id.to_owned());
                        let mut e =
                            self.step_event(&ex, EventKind::StepStarted, step.id, agent.id, now_ns);
                        e.framework = Some(agent.framework.into());
                        e.provider = Some(agent.provider.into());
                        e.status = Some("running".into());
                        e.attributes.insert("model".into(), json!(agent.model));
                        self.emit(&ex, e, out);
                        let outcome = self.outcome(step.id, step.timeout_ms, &agent);
                        let latency = outcome.latency_ms;
                        ex.outcome = Some(outcome);
                        ex.phase = Phase::Invoke;
                        Some(now_ms + latency)
                    }
                }
            }
            Phase::Invoke => {
                let (Some(step), Some(agent_id), Some(o)) =
                    (step, ex.agent.clone(), ex.outcome.take())
                else {
                    ex.phase = Phase::StepStart;
                    return self.store(ex, Some(now_ms), now_ms);
                };
                let agent = self.deployment.agent(&agent_id).cloned();
                let (framework, provider, model) = agent
                    .as_ref()
                    .map(|a| (a.framework, a.provider, a.model))
                    .unwrap_or(("unknown", "unknown", "unknown"));
                self.stats.invocations += 1;
                let error = o.error.clone().map(|(kind, message)| EventError {
                    message,
                    kind: Some(kind.to_owned()),
                });
                let mut e =
                    self.step_event(&ex, EventKind::AgentInvoked, step.id, &agent_id, now_ns);
                e.framework = Some(framework.into());
                e.provider = Some(provider.into());
                e.status = Some(
                    if error.is_some() {
                        "failed"
                    } else {
                        "completed"
                    }
                    .into(),
                );
                e.error.clone_from(&error);
                e.metrics = Some(TaskMetrics {
                    execution_time_ms: Some(round1(o.latency_ms)),
                    token_usage: Some(TokenUsage {
                        input_tokens: o.input_tokens,
                        output_tokens: o.output_tokens,
                    }),
                    cost_usd: Some(o.cost_usd),
                    retry_count: None,
                });
                e.attributes.insert("model".into(), json!(model));
                self.emit(&ex, e, out);
                let overhead = 3.0 + self.rng.random::<f64>() * 7.0;
                let kind = if error.is_some() {
                    EventKind::StepFailed
                } else {
                    EventKind::StepCompleted
                };
                let mut e = self.step_event(
                    &ex,
                    kind,
                    step.id,
                    &agent_id,
                    now_ns + (overhead * 1e6) as u64,
                );
                e.framework = Some(framework.into());
                e.provider = Some(provider.into());
                e.status = Some(
                    if error.is_some() {
                        "failed"
                    } else {
                        "completed"
                    }
                    .into(),
                );
                e.error.clone_from(&error);
                e.metrics = Some(TaskMetrics {
                    execution_time_ms: Some(round1(o.latency_ms + overhead)),
                    retry_count: Some(ex.attempt - 1),
                    ..Default::default()
                });
                self.emit(&ex, e, out);
                match error {
                    None => {
                        self.next_step(&mut ex);
                        Some(now_ms + overhead)
                    }
                    Some(err) => {
                        self.stats.invocation_failures += 1;
                        self.after_failure(&mut ex, &step, &agent_id, err, now_ms, now_ns, out)
                    }
                }
            }
            Phase::Done => None,
        };
        self.store(ex, next_due, now_ms);
    }

    #[allow(clippy::too_many_arguments)]
    fn after_failure(
        &mut self,
        ex: &mut Exec,
        step: &Step,
        agent_id: &str,
        err: EventError,
        now_ms: f64,
        now_ns: u64,
        out: &mut Vec<Emitted>,
    ) -> Option<f64> {
        ex.tries_on_agent += 1;
        if err.kind.as_deref() == Some(NON_RETRYABLE) {
            let msg = format!("step {} failed: {}", step.id, err.message);
            self.finish(
                ex,
                Some(EventError {
                    message: msg,
                    kind: err.kind,
                }),
                now_ms,
                now_ns,
                out,
            );
            return None;
        }
        if ex.tries_on_agent <= step.retries {
            self.stats.retries += 1;
            ex.attempt += 1;
            let mut e = self.step_event(ex, EventKind::StepRetried, step.id, agent_id, now_ns);
            e.metrics = Some(TaskMetrics {
                retry_count: Some(ex.attempt - 1),
                ..Default::default()
            });
            e.error = Some(err);
            self.emit(ex, e, out);
            ex.phase = Phase::StepStart;
            return Some(now_ms + 100.0 * f64::from(ex.tries_on_agent));
        }
        let fallback = self
            .deployment
            .agent(agent_id)
            .and_then(|a| a.fallback)
            .filter(|f| !self.disabled.contains(*f))
            .map(str::to_owned);
        if let (false, Some(fb)) = (ex.on_fallback, fallback) {
            self.stats.fallbacks += 1;
            ex.attempt += 1;
            let mut e = self.step_event(ex, EventKind::StepFallback, step.id, agent_id, now_ns);
            e.fallback_agent_id = Some(fb.clone());
            e.error = Some(err);
            self.emit(ex, e, out);
            ex.on_fallback = true;
            ex.tries_on_agent = 0;
            ex.agent = Some(fb);
            ex.phase = Phase::StepStart;
            return Some(now_ms + 10.0);
        }
        let msg = format!("step {} failed: {}", step.id, err.message);
        self.finish(
            ex,
            Some(EventError {
                message: msg,
                kind: err.kind,
            }),
            now_ms,
            now_ns,
            out,
        );
        None
    }

    fn next_step(&mut self, ex: &mut Exec) {
        ex.step_idx += 1;
        ex.attempt = 1;
        ex.tries_on_agent = 0;
        ex.agent = None;
        ex.on_fallback = false;
        ex.phase = Phase::StepStart;
    }

    fn finish(
        &mut self,
        ex: &mut Exec,
        error: Option<EventError>,
        now_ms: f64,
        now_ns: u64,
        out: &mut Vec<Emitted>,
    ) {
        let kind = if error.is_some() {
            EventKind::WorkflowFailed
        } else {
            EventKind::WorkflowCompleted
        };
        let mut e = self.event(ex, kind, now_ns);
        e.status = Some(
            if error.is_some() {
                "failed"
            } else {
                "completed"
            }
            .into(),
        );
        e.error = error.clone();
        e.metrics = Some(TaskMetrics {
            execution_time_ms: Some(round1(now_ms - ex.started_ms)),
            ..Default::default()
        });
        if error.is_none() {
            e.attributes.insert(
                "output".into(),
                json!({"summary": format!("result of {}", ex.id)}),
            );
        }
        self.emit(ex, e, out);
        ex.phase = Phase::Done;
        ex.status = if error.is_some() {
            self.stats.executions_failed += 1;
            ExecStatus::Failed
        } else {
            self.stats.executions_completed += 1;
            ExecStatus::Completed
        };
        if let Some(log) = self.logs.get(&ex.id) {
            log.finished.store(true, Ordering::SeqCst);
            log.notify.notify_waiters();
        }
        self.finished.push_back(ex.id.clone());
        while self.finished.len() > self.retain {
            if let Some(old) = self.finished.pop_front() {
                self.execs.remove(&old);
                self.logs.remove(&old);
            }
        }
    }

    fn store(&mut self, ex: Exec, next_due: Option<f64>, now_ms: f64) {
        let id = ex.id.clone();
        let done = ex.status != ExecStatus::Running;
        // An execution evicted from the retained window while being finished stays gone.
        if self.logs.contains_key(&id) {
            self.execs.insert(id.clone(), ex);
        }
        match next_due {
            Some(due) if !done => self.schedule(&id, due),
            _ => {}
        }
        if done {
            self.admit_queued(now_ms);
        }
    }

    /// Moves queued executions onto free workers.
    fn admit_queued(&mut self, now_ms: f64) {
        while self.running() < self.capacity() {
            let Some(id) = self.queued.pop_front() else {
                break;
            };
            if let Some(e) = self.execs.get_mut(&id) {
                e.status = ExecStatus::Running;
                e.started_ms = now_ms;
                self.schedule(&id, now_ms);
            }
        }
    }

    /// The agent that actually runs for `wanted`, following switches and disables.
    fn route(&self, wanted: &str) -> Option<&Agent> {
        let mut id = wanted.to_owned();
        for _ in 0..8 {
            if let Some(to) = self.routes.get(&id) {
                id.clone_from(to);
                continue;
            }
            if self.disabled.contains(&id) {
                id = self.deployment.agent(&id)?.fallback?.to_owned();
                continue;
            }
            return self.deployment.agent(&id);
        }
        None
    }

    fn step_timeout(&self, step_id: &str, default_ms: f64) -> f64 {
        self.timeouts_ms.get(step_id).copied().unwrap_or(default_ms)
    }

    fn outcome(&mut self, step_id: &str, default_timeout_ms: f64, agent: &Agent) -> Outcome {
        let mut latency = agent.latency_ms * lognormal(&mut self.rng, 0.35);
        for f in self.faults.values() {
            if let FaultKind::LatencySpike {
                step_id: s,
                factor,
                added_ms,
            } = f
                && s == step_id
            {
                latency *= factor.unwrap_or(1.0).max(0.0);
                let default_add = if factor.is_none() {
                    1.2 * default_timeout_ms
                } else {
                    0.0
                };
                latency += added_ms.unwrap_or(default_add).max(0.0);
            }
        }
        let timeout = self.step_timeout(step_id, default_timeout_ms);
        let mut error: Option<(&'static str, String)> = None;
        let provider_down = self.faults.values().any(
            |f| matches!(f, FaultKind::ProviderTimeout { provider } if provider == agent.provider),
        );
        let failing = self.faults.values().find_map(|f| match f {
            FaultKind::AgentFailing {
                agent_id,
                probability,
            } if agent_id == agent.id => Some(*probability),
            _ => None,
        });
        if provider_down {
            latency = timeout;
            error = Some((
                "ProviderTimeout",
                format!("{} did not answer within {timeout:.0} ms", agent.provider),
            ));
        } else if latency > timeout {
            latency = timeout;
            error = Some((
                "StepTimeout",
                format!("step {step_id} timed out after {timeout:.0} ms"),
            ));
        } else if failing.is_some_and(|p| self.rng.random::<f64>() < p) {
            error = Some((
                "AgentError",
                format!("agent {} returned an error", agent.id),
            ));
        } else if self.rng.random::<f64>() < self.input_error_rate {
            error = Some((
                NON_RETRYABLE,
                "input rejected by the agent (not retryable)".to_owned(),
            ));
        } else if self.rng.random::<f64>() < agent.failure_rate {
            let transient = [
                ("RateLimitError", "429 Too Many Requests from provider"),
                ("ToolError", "tool call returned malformed output"),
                ("ValidationError", "agent output failed schema validation"),
            ];
            let (k, m) = transient[self.rng.random_range(0..transient.len())];
            error = Some((k, m.to_owned()));
        }
        let mut input = agent.input_tokens * self.rng.random_range(0.6..1.4);
        let mut output = agent.output_tokens * self.rng.random_range(0.5..1.5);
        if error.is_some() {
            output *= 0.2;
        }
        if provider_down {
            input = 0.0;
            output = 0.0;
        }
        let surge: f64 = self
            .faults
            .values()
            .filter_map(|f| match f {
                FaultKind::CostSurge { agent_id, factor } if agent_id == agent.id => Some(*factor),
                _ => None,
            })
            .product();
        output *= surge;
        let cost = (input * agent.price_in + output * agent.price_out) / 1e6;
        Outcome {
            latency_ms: latency.max(1.0),
            input_tokens: input.round() as u64,
            output_tokens: output.round() as u64,
            cost_usd: (cost * 1e6).round() / 1e6,
            error,
        }
    }

    fn event(&self, ex: &Exec, kind: EventKind, now_ns: u64) -> WorkflowEvent {
        let wf = self
            .deployment
            .workflows
            .get(ex.workflow)
            .map(|w| w.id)
            .unwrap_or("unknown");
        let mut e = WorkflowEvent::new(kind, ex.id.clone());
        e.workflow_id = Some(wf.to_owned());
        e.timestamp = Some(now_ns.max(ex.created_unix_ns));
        e
    }

    fn step_event(
        &self,
        ex: &Exec,
        kind: EventKind,
        step: &str,
        agent: &str,
        now_ns: u64,
    ) -> WorkflowEvent {
        let mut e = self.event(ex, kind, now_ns);
        e.step_id = Some(step.to_owned());
        e.agent_id = Some(agent.to_owned());
        e.attempt = Some(ex.attempt);
        e
    }

    fn emit(&mut self, ex: &Exec, mut e: WorkflowEvent, out: &mut Vec<Emitted>) {
        let Some(log) = self.logs.get(&ex.id) else {
            return;
        };
        let mut events = log.events.write();
        let n = events.len() + 1;
        e.id = Some(format!("{}:{n}", ex.id));
        let json: Arc<str> = Arc::from(e.to_value().to_string());
        events.push(json.clone());
        self.stats.events += 1;
        out.push(Emitted {
            execution_id: ex.id.clone(),
            json,
        });
    }

    // ---- controls (the AWF endpoints a remediation calls) ----

    pub fn add_fault(
        &mut self,
        name: Option<String>,
        kind: FaultKind,
    ) -> Result<String, ControlError> {
        match &kind {
            FaultKind::AgentFailing {
                agent_id,
                probability,
            } => {
                self.known_agent(agent_id)?;
                if !(0.0..=1.0).contains(probability) {
                    return Err(ControlError::Invalid(
                        "probability must be within 0..=1".into(),
                    ));
                }
            }
            FaultKind::CostSurge { agent_id, factor } => {
                self.known_agent(agent_id)?;
                if !(factor.is_finite() && *factor >= 0.0) {
                    return Err(ControlError::Invalid("factor must be a number >= 0".into()));
                }
            }
            FaultKind::LatencySpike {
                step_id,
                factor,
                added_ms,
            } => {
                if !self.deployment.has_step(step_id) {
                    return Err(ControlError::Invalid(format!("unknown step {step_id:?}")));
                }
                let ok = |v: &Option<f64>| v.is_none_or(|v| v.is_finite() && v >= 0.0);
                if !ok(factor) || !ok(added_ms) {
                    return Err(ControlError::Invalid(
                        "factor and added_ms must be numbers >= 0".into(),
                    ));
                }
            }
            FaultKind::ProviderTimeout { provider } => {
                if !self.deployment.has_provider(provider) {
                    return Err(ControlError::Invalid(format!(
                        "unknown provider {provider:?}"
                    )));
                }
            }
        }
        let name = name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| kind.default_name());
        self.faults.insert(name.clone(), kind);
        Ok(name)
    }

    pub fn remove_fault(&mut self, name: &str) -> bool {
        self.faults.remove(name).is_some()
    }

    pub fn faults(&self) -> &BTreeMap<String, FaultKind> {
        &self.faults
    }

    fn known_agent(&self, id: &str) -> Result<(), ControlError> {
        if self.deployment.agent(id).is_none() {
            return Err(ControlError::Invalid(format!("unknown agent {id:?}")));
        }
        Ok(())
    }

    /// `POST /agents/{id}/disable`.
    pub fn disable_agent(&mut self, id: &str) -> Result<(), ControlError> {
        if self.deployment.agent(id).is_none() {
            return Err(ControlError::NotFound(format!("unknown agent {id:?}")));
        }
        self.disabled.insert(id.to_owned());
        Ok(())
    }

    /// `POST /agents/{id}/enable`.
    pub fn enable_agent(&mut self, id: &str) -> Result<(), ControlError> {
        if self.deployment.agent(id).is_none() {
            return Err(ControlError::NotFound(format!("unknown agent {id:?}")));
        }
        self.disabled.remove(id);
        Ok(())
    }

    /// `POST /agents/{id}/fallback`: from now on `id`'s work goes to `to` (default: its
    /// configured fallback). Returns the agent switched to.
    pub fn switch_fallback(&mut self, id: &str, to: Option<&str>) -> Result<String, ControlError> {
        let agent = self
            .deployment
            .agent(id)
            .ok_or_else(|| ControlError::NotFound(format!("unknown agent {id:?}")))?;
        let target = match to {
            Some(t) => t.to_owned(),
            None => agent
                .fallback
                .ok_or_else(|| ControlError::Conflict(format!("agent {id:?} has no fallback")))?
                .to_owned(),
        };
        if target == id || self.deployment.agent(&target).is_none() {
            return Err(ControlError::Invalid(format!(
                "cannot fall back from {id:?} to {target:?}"
            )));
        }
        self.routes.insert(id.to_owned(), target.clone());
        Ok(target)
    }

    /// `DELETE /agents/{id}/fallback`.
    pub fn clear_fallback(&mut self, id: &str) -> bool {
        self.routes.remove(id).is_some()
    }

    /// `POST /steps/{id}/timeout`: multiply (default ×1.5) or set the step's timeout.
    pub fn increase_timeout(
        &mut self,
        step_id: &str,
        factor: Option<f64>,
        timeout_ms: Option<f64>,
    ) -> Result<f64, ControlError> {
        let default = self
            .deployment
            .workflows
            .iter()
            .flat_map(|w| &w.steps)
            .find(|s| s.id == step_id)
            .map(|s| s.timeout_ms)
            .ok_or_else(|| ControlError::NotFound(format!("unknown step {step_id:?}")))?;
        let current = self.step_timeout(step_id, default);
        let new = match (timeout_ms, factor) {
            (Some(t), _) => t,
            (None, f) => current * f.unwrap_or(1.5),
        };
        if !(new.is_finite() && new > 0.0 && new <= 86_400_000.0) {
            return Err(ControlError::Invalid(
                "the timeout must be within (0, 24h]".into(),
            ));
        }
        self.timeouts_ms.insert(step_id.to_owned(), new);
        Ok(new)
    }

    /// `POST /workers/scale`: absolute `workers` or relative `delta` (default +2).
    pub fn scale_workers(
        &mut self,
        workers: Option<u32>,
        delta: Option<i64>,
        now_ms: f64,
    ) -> Result<u32, ControlError> {
        let new = match (workers, delta) {
            (Some(w), _) => i64::from(w),
            (None, d) => i64::from(self.workers) + d.unwrap_or(2),
        };
        if !(1..=4096).contains(&new) {
            return Err(ControlError::Invalid(
                "workers must be within 1..=4096".into(),
            ));
        }
        self.workers = new as u32;
        self.admit_queued(now_ms);
        Ok(self.workers)
    }

    /// `POST /executions/{id}/restart`: a new execution of the same workflow and input.
    pub fn restart(&mut self, id: &str, now_ms: f64, now_ns: u64) -> Result<String, ControlError> {
        let ex = self
            .execs
            .get(id)
            .ok_or_else(|| ControlError::NotFound(format!("unknown execution {id:?}")))?;
        let (wf, input) = (ex.workflow, ex.input.clone());
        let mut origin = Map::new();
        origin.insert("restarted_from".into(), json!(id));
        self.start_execution(wf, now_ms, now_ns, 0, Some(input), origin)
            .ok_or_else(|| ControlError::Conflict("no worker or queue capacity".into()))
    }

    /// `POST /executions/{id}/steps/{step}/retry`: a failed execution is resumed as a new
    /// execution starting at `step` (its earlier steps' results are reused).
    pub fn retry_step(
        &mut self,
        id: &str,
        step: &str,
        now_ms: f64,
        now_ns: u64,
    ) -> Result<String, ControlError> {
        let ex = self
            .execs
            .get(id)
            .ok_or_else(|| ControlError::NotFound(format!("unknown execution {id:?}")))?;
        if matches!(ex.status, ExecStatus::Running | ExecStatus::Queued) {
            return Err(ControlError::Conflict(format!(
                "execution {id:?} is still {}",
                ex.status.as_str()
            )));
        }
        let wf = ex.workflow;
        let idx = self
            .deployment
            .workflows
            .get(wf)
            .and_then(|w| w.steps.iter().position(|s| s.id == step))
            .ok_or_else(|| {
                ControlError::NotFound(format!("execution {id:?} has no step {step:?}"))
            })?;
        let input = ex.input.clone();
        let mut origin = Map::new();
        origin.insert("resumed_from".into(), json!(id));
        origin.insert("from_step".into(), json!(step));
        self.start_execution(wf, now_ms, now_ns, idx, Some(input), origin)
            .ok_or_else(|| ControlError::Conflict("no worker or queue capacity".into()))
    }

    /// Executions for the listing: running and queued first, then the most recent finished.
    pub fn listing(&self, limit: usize, status: Option<&str>) -> Vec<Value> {
        let mut items: Vec<&Exec> = self
            .execs
            .values()
            .filter(|e| status.is_none_or(|s| e.status.as_str() == s))
            .collect();
        items.sort_by(|a, b| {
            let active = |e: &Exec| matches!(e.status, ExecStatus::Running | ExecStatus::Queued);
            active(b)
                .cmp(&active(a))
                .then(b.created_unix_ns.cmp(&a.created_unix_ns))
                .then(a.id.cmp(&b.id))
        });
        items
            .into_iter()
            .take(limit)
            .map(|e| self.describe(e))
            .collect()
    }

    pub fn describe_execution(&self, id: &str) -> Option<Value> {
        self.execs.get(id).map(|e| self.describe(e))
    }

    fn describe(&self, e: &Exec) -> Value {
        let wf = self
            .deployment
            .workflows
            .get(e.workflow)
            .map(|w| w.id)
            .unwrap_or("unknown");
        let events = self
            .logs
            .get(&e.id)
            .map(|l| l.events.read().len())
            .unwrap_or(0);
        json!({
            "id": e.id,
            "workflow_id": wf,
            "status": e.status.as_str(),
            "created_at": sluice_core::time::format_rfc3339(
                sluice_core::time::from_unix_nanos(e.created_unix_ns),
                6,
            ),
            "events_url": format!("/executions/{}/events", e.id),
            "event_count": events,
        })
    }

    /// Controls, faults and counters, for `GET /sim/state`.
    pub fn state(&self) -> Value {
        json!({
            "workers": self.workers,
            "worker_capacity": self.worker_capacity,
            "running": self.running(),
            "queued": self.queued.len(),
            "disabled_agents": self.disabled,
            "fallback_routes": self.routes,
            "step_timeouts_ms": self.timeouts_ms,
            "faults": self.faults,
            "stats": self.stats,
        })
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// exp(N(0, σ)) with Box–Muller; median 1.
fn lognormal(rng: &mut StdRng, sigma: f64) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (sigma * z).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_735_732_800_000_000_000;

    struct Driver {
        w: World,
        now_ms: f64,
        events: Vec<WorkflowEvent>,
    }

    impl Driver {
        fn new(seed: u64) -> Driver {
            Driver {
                w: World::new(seed, 4, 100, 10_000),
                now_ms: 0.0,
                events: Vec::new(),
            }
        }

        fn start(&mut self, workflow: &str) -> String {
            let (wf, _) = self.w.deployment.workflow(workflow).unwrap();
            let (ms, ns) = (self.now_ms, self.ns());
            self.w
                .start_execution(wf, ms, ns, 0, None, Map::new())
                .unwrap()
        }

        fn ns(&self) -> u64 {
            T0 + (self.now_ms * 1e6) as u64
        }

        /// Advances virtual time until nothing is scheduled.
        fn run(&mut self) {
            while let Some(due) = self.w.next_due_ms() {
                self.now_ms = self.now_ms.max(due as f64);
                let ns = self.ns();
                for e in self.w.advance(self.now_ms, ns, usize::MAX) {
                    self.events
                        .push(WorkflowEvent::from_json(&e.json).expect("valid event"));
                }
            }
        }

        fn take(&mut self) -> Vec<WorkflowEvent> {
            std::mem::take(&mut self.events)
        }
    }

    fn count(events: &[WorkflowEvent], kind: EventKind, agent: Option<&str>) -> usize {
        events
            .iter()
            .filter(|e| e.kind == kind && agent.is_none_or(|a| e.agent_id.as_deref() == Some(a)))
            .count()
    }

    fn failed_invocations(events: &[WorkflowEvent], agent: &str) -> usize {
        events
            .iter()
            .filter(|e| {
                e.kind == EventKind::AgentInvoked
                    && e.agent_id.as_deref() == Some(agent)
                    && e.error.is_some()
            })
            .count()
    }

    #[test]
    fn input_error_rate_sets_how_often_an_execution_fails_for_good() {
        let input_errors = |rate: f64| {
            let mut d = Driver::new(7);
            d.w.input_error_rate = rate;
            for _ in 0..200 {
                d.start("support-triage");
            }
            d.run();
            d.take()
                .iter()
                .filter(|e| {
                    e.kind == EventKind::WorkflowFailed
                        && e.error.as_ref().and_then(|x| x.kind.as_deref()) == Some(NON_RETRYABLE)
                })
                .count()
        };
        assert_eq!(input_errors(0.0), 0);
        assert_eq!(
            input_errors(1.0),
            200,
            "the first invocation rejects its input"
        );
    }

    #[test]
    fn executions_are_complete_and_well_formed() {
        let mut d = Driver::new(1);
        for _ in 0..50 {
            let wf = d.w.pick_workflow();
            let (ms, ns) = (d.now_ms, d.ns());
            d.w.start_execution(wf, ms, ns, 0, None, Map::new());
        }
        d.run();
        let ev = d.take();
        assert_eq!(count(&ev, EventKind::WorkflowStarted, None), 50);
        let ended = count(&ev, EventKind::WorkflowCompleted, None)
            + count(&ev, EventKind::WorkflowFailed, None);
        assert_eq!(ended, 50);
        // Every invocation reports tokens, cost and a latency; every event an id and a time.
        for e in &ev {
            assert!(e.id.is_some() && e.timestamp.is_some() && e.execution_id.is_some());
            if e.kind == EventKind::AgentInvoked {
                assert!(e.tokens().is_some() && e.cost_usd().is_some());
                assert!(e.execution_time_ms().unwrap() > 0.0);
                assert!(e.provider.is_some() && e.framework.is_some());
            }
        }
        let agents: BTreeSet<_> = ev.iter().filter_map(|e| e.agent_id.clone()).collect();
        assert!(agents.len() >= 5, "{agents:?}");
        assert_eq!(d.w.stats.executions_started, 50);
        assert_eq!(d.w.running(), 0);
    }

    #[test]
    fn same_seed_same_events() {
        let run = |seed| {
            let mut d = Driver::new(seed);
            for _ in 0..10 {
                d.start("research-report");
            }
            d.run();
            d.take()
                .into_iter()
                .map(|e| e.to_value().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn failing_agent_falls_back_and_disabling_it_stops_the_failures() {
        let mut d = Driver::new(3);
        d.w.add_fault(
            None,
            FaultKind::AgentFailing {
                agent_id: "researcher".into(),
                probability: 1.0,
            },
        )
        .unwrap();
        for _ in 0..10 {
            d.start("research-report");
        }
        d.run();
        let ev = d.take();
        // 3 attempts on researcher (1 + 2 retries), then the fallback agent.
        assert_eq!(failed_invocations(&ev, "researcher"), 30);
        assert!(count(&ev, EventKind::StepRetried, Some("researcher")) >= 20);
        assert_eq!(count(&ev, EventKind::StepFallback, Some("researcher")), 10);
        assert!(count(&ev, EventKind::AgentInvoked, Some("researcher-backup")) >= 10);

        // Remediation: disable the failing agent. Its work goes straight to the fallback.
        d.w.disable_agent("researcher").unwrap();
        for _ in 0..10 {
            d.start("research-report");
        }
        d.run();
        let ev = d.take();
        assert_eq!(count(&ev, EventKind::AgentInvoked, Some("researcher")), 0);
        assert_eq!(count(&ev, EventKind::StepFallback, Some("researcher")), 0);
        assert_eq!(failed_invocations(&ev, "researcher"), 0);
        assert!(count(&ev, EventKind::AgentInvoked, Some("researcher-backup")) >= 10);
        assert_eq!(count(&ev, EventKind::WorkflowStarted, None), 10);
    }

    #[test]
    fn switching_to_the_fallback_agent_stops_the_failures() {
        let mut d = Driver::new(4);
        d.w.add_fault(
            None,
            FaultKind::AgentFailing {
                agent_id: "writer".into(),
                probability: 1.0,
            },
        )
        .unwrap();
        assert_eq!(d.w.switch_fallback("writer", None).unwrap(), "writer-lite");
        for _ in 0..10 {
            d.start("research-report");
        }
        d.run();
        let ev = d.take();
        assert_eq!(count(&ev, EventKind::AgentInvoked, Some("writer")), 0);
        assert!(count(&ev, EventKind::AgentInvoked, Some("writer-lite")) >= 10);
        // And back.
        assert!(d.w.clear_fallback("writer"));
        d.start("research-report");
        d.run();
        assert_eq!(failed_invocations(&d.take(), "writer"), 3);
    }

    #[test]
    fn latency_spike_times_out_until_the_timeout_is_raised() {
        let mut d = Driver::new(5);
        d.w.add_fault(
            None,
            FaultKind::LatencySpike {
                step_id: "plan".into(),
                factor: None,
                added_ms: None,
            },
        )
        .unwrap();
        for _ in 0..5 {
            d.start("research-report");
        }
        d.run();
        let ev = d.take();
        let timeouts = ev
            .iter()
            .filter(|e| {
                e.kind == EventKind::StepFailed
                    && e.error.as_ref().and_then(|x| x.kind.as_deref()) == Some("StepTimeout")
            })
            .count();
        assert_eq!(
            timeouts,
            5 * 6,
            "3 attempts on planner + 3 on planner-lite, all time out"
        );
        assert_eq!(count(&ev, EventKind::WorkflowFailed, None), 5);

        assert_eq!(d.w.increase_timeout("plan", None, None).unwrap(), 45_000.0);
        for _ in 0..5 {
            d.start("research-report");
        }
        d.run();
        let ev = d.take();
        assert!(
            ev.iter()
                .all(|e| e.error.as_ref().and_then(|x| x.kind.as_deref()) != Some("StepTimeout"))
        );
    }

    #[test]
    fn provider_timeout_and_cost_surge() {
        let mut d = Driver::new(6);
        d.w.add_fault(
            None,
            FaultKind::ProviderTimeout {
                provider: "google".into(),
            },
        )
        .unwrap();
        d.start("support-triage"); // classify runs on google, no fallback
        d.run();
        let ev = d.take();
        assert_eq!(count(&ev, EventKind::WorkflowFailed, None), 1);
        assert!(
            ev.iter().any(
                |e| e.error.as_ref().and_then(|x| x.kind.as_deref()) == Some("ProviderTimeout")
            )
        );
        assert!(d.w.remove_fault("provider_timeout:google"));

        let cost = |d: &mut Driver| {
            d.start("data-summary");
            d.run();
            d.take()
                .iter()
                .filter(|e| {
                    e.kind == EventKind::AgentInvoked && e.agent_id.as_deref() == Some("writer")
                })
                .filter_map(|e| e.cost_usd())
                .sum::<f64>()
        };
        let normal: f64 = (0..10).map(|_| cost(&mut d)).sum();
        d.w.add_fault(
            None,
            FaultKind::CostSurge {
                agent_id: "writer".into(),
                factor: 5.0,
            },
        )
        .unwrap();
        let surged: f64 = (0..10).map(|_| cost(&mut d)).sum();
        assert!(surged > normal * 2.5, "{surged} vs {normal}");
    }

    #[test]
    fn restart_retry_step_and_scale() {
        let mut d = Driver::new(9);
        d.w.add_fault(
            None,
            FaultKind::ProviderTimeout {
                provider: "google".into(),
            },
        )
        .unwrap();
        let failed = d.start("support-triage");
        let (ms, ns) = (d.now_ms, d.ns());
        assert!(matches!(
            d.w.retry_step(&failed, "classify", ms, ns),
            Err(ControlError::Conflict(_))
        ));
        d.run();
        d.take();
        d.w.remove_fault("provider_timeout:google");
        let (ms, ns) = (d.now_ms, d.ns());
        let resumed = d.w.retry_step(&failed, "retrieve", ms, ns).unwrap();
        let restarted = d.w.restart(&failed, ms, ns).unwrap();
        assert!(matches!(
            d.w.retry_step(&failed, "nope", ms, ns),
            Err(ControlError::NotFound(_))
        ));
        assert!(matches!(
            d.w.restart("ex-unknown", ms, ns),
            Err(ControlError::NotFound(_))
        ));
        d.run();
        let ev = d.take();
        let started = |id: &str| {
            ev.iter()
                .find(|e| {
                    e.kind == EventKind::WorkflowStarted && e.execution_id.as_deref() == Some(id)
                })
                .unwrap()
                .clone()
        };
        assert_eq!(started(&resumed).attributes["resumed_from"], json!(failed));
        assert_eq!(started(&resumed).attributes["from_step"], json!("retrieve"));
        assert_eq!(
            started(&restarted).attributes["restarted_from"],
            json!(failed)
        );
        // The resumed execution skips the steps before `retrieve`.
        assert!(
            !ev.iter()
                .any(|e| e.execution_id.as_deref() == Some(&*resumed)
                    && e.step_id.as_deref() == Some("classify"))
        );

        // Workers: with capacity 1, a second execution queues until scaled.
        let mut d = Driver::new(10);
        d.w.workers = 1;
        d.w.worker_capacity = 1;
        d.start("data-summary");
        let queued = d.start("data-summary");
        assert_eq!(d.w.queued(), 1);
        assert_eq!(
            d.w.describe_execution(&queued).unwrap()["status"],
            json!("queued")
        );
        assert_eq!(d.w.scale_workers(None, None, 0.0).unwrap(), 3);
        assert_eq!(d.w.queued(), 0);
        assert!(d.w.scale_workers(Some(0), None, 0.0).is_err());
        d.run();
        assert_eq!(count(&d.take(), EventKind::WorkflowStarted, None), 2);
    }

    #[test]
    fn unknown_targets_are_refused() {
        let mut w = World::new(1, 1, 1, 10);
        assert!(
            w.add_fault(
                None,
                FaultKind::AgentFailing {
                    agent_id: "nope".into(),
                    probability: 0.5
                }
            )
            .is_err()
        );
        assert!(
            w.add_fault(
                None,
                FaultKind::AgentFailing {
                    agent_id: "writer".into(),
                    probability: 2.0
                }
            )
            .is_err()
        );
        assert!(
            w.add_fault(
                None,
                FaultKind::ProviderTimeout {
                    provider: "nope".into()
                }
            )
            .is_err()
        );
        assert!(
            w.add_fault(
                None,
                FaultKind::LatencySpike {
                    step_id: "nope".into(),
                    factor: None,
                    added_ms: None
                }
            )
            .is_err()
        );
        assert!(matches!(
            w.disable_agent("nope"),
            Err(ControlError::NotFound(_))
        ));
        assert!(matches!(
            w.switch_fallback("classifier", None),
            Err(ControlError::Conflict(_))
        ));
        assert!(matches!(
            w.increase_timeout("nope", None, None),
            Err(ControlError::NotFound(_))
        ));
        assert!(matches!(
            w.increase_timeout("plan", Some(-1.0), None),
            Err(ControlError::Invalid(_))
        ));
    }
}
