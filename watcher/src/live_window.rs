//! The live-stream window: what the watcher saw of the pipeline recently.
//!
//! The processor only clones each item (a `Bytes` clone) into a bounded channel; a background
//! task decodes spans and log records into small observations and keeps the newest
//! `max_events` of them (none older than `max_age`), indexed by `execution_id`, `trace_id`,
//! `agent_id`, `step_id`, `provider`, `workflow_id` and service. Metrics are not decoded: Prometheus answers
//! metric questions.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use parking_lot::Mutex;
use prost::Message;
use serde::Serialize;
use sluice_core::{Item, Processor, Refusal, Signal};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, mpsc};

/// Extra attributes kept per observation, at most, and their longest value.
const MAX_EXTRA: usize = 16;
const MAX_VALUE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    ExecutionId,
    TraceId,
    AgentId,
    StepId,
    Provider,
    WorkflowId,
    Service,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObsKind {
    Span,
    Log,
}

/// One span or log record, reduced to what investigations use.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Obs {
    #[serde(skip)]
    pub seq: u64,
    pub kind: Option<ObsKind>,
    /// Event time (span end, record time), Unix ms.
    pub time_ms: i64,
    /// When the watcher saw it, Unix ms (eviction order).
    #[serde(skip)]
    pub seen_ms: i64,
    /// Span name, or the log record's `event_type`.
    pub name: String,
    pub service: Option<String>,
    pub execution_id: Option<String>,
    pub trace_id: Option<String>,
    pub agent_id: Option<String>,
    pub step_id: Option<String>,
    pub provider: Option<String>,
    pub workflow_id: Option<String>,
    pub status: Option<String>,
    pub error: bool,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub duration_ms: Option<f64>,
    pub cost_usd: Option<f64>,
    pub output_tokens: Option<i64>,
    pub body: Option<String>,
    pub extra: Vec<(String, String)>,
}

impl Obs {
    pub fn dim(&self, d: Dim) -> Option<&str> {
        match d {
            Dim::ExecutionId => self.execution_id.as_deref(),
            Dim::TraceId => self.trace_id.as_deref(),
            Dim::AgentId => self.agent_id.as_deref(),
            Dim::StepId => self.step_id.as_deref(),
            Dim::Provider => self.provider.as_deref(),
            Dim::WorkflowId => self.workflow_id.as_deref(),
            Dim::Service => self.service.as_deref(),
        }
    }

    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

const DIMS: [Dim; 7] = [
    Dim::ExecutionId,
    Dim::TraceId,
    Dim::AgentId,
    Dim::StepId,
    Dim::Provider,
    Dim::WorkflowId,
    Dim::Service,
];

struct Inner {
    items: VecDeque<Arc<Obs>>,
    /// Sequence number of `items[0]`.
    first_seq: u64,
    next_seq: u64,
    index: HashMap<(Dim, String), VecDeque<u64>>,
}

/// The bounded, indexed window.
pub struct Window {
    inner: Mutex<Inner>,
    max_events: usize,
    max_age_ms: i64,
    /// Woken whenever observations are added.
    pub changed: Notify,
}

impl Window {
    pub fn new(max_events: usize, max_age: std::time::Duration) -> Window {
        Window {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                first_seq: 0,
                next_seq: 0,
                index: HashMap::new(),
            }),
            max_events: max_events.max(1),
            max_age_ms: i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX),
            changed: Notify::new(),
        }
    }

    pub fn insert(&self, batch: Vec<Obs>, now_ms: i64) {
        if batch.is_empty() {
            return;
        }
        {
            let mut g = self.inner.lock();
            let inner = &mut *g;
            for mut o in batch {
                o.seq = inner.next_seq;
                o.seen_ms = now_ms;
                inner.next_seq += 1;
                for d in DIMS {
                    if let Some(v) = o.dim(d) {
                        inner
                            .index
                            .entry((d, v.to_owned()))
                            .or_default()
                            .push_back(o.seq);
                    }
                }
                inner.items.push_back(Arc::new(o));
            }
            self.evict(inner, now_ms);
        }
        self.changed.notify_waiters();
    }

    fn evict(&self, inner: &mut Inner, now_ms: i64) {
        let oldest = now_ms.saturating_sub(self.max_age_ms);
        while let Some(front) = inner.items.front() {
            if inner.items.len() <= self.max_events && front.seen_ms >= oldest {
                break;
            }
            let Some(o) = inner.items.pop_front() else {
                break;
            };
            inner.first_seq = o.seq + 1;
            for d in DIMS {
                if let Some(v) = o.dim(d) {
                    let key = (d, v.to_owned());
                    if let Some(q) = inner.index.get_mut(&key) {
                        // Sequences are increasing, so the evicted one is at the front.
                        while q.front().is_some_and(|s| *s <= o.seq) {
                            q.pop_front();
                        }
                        if q.is_empty() {
                            inner.index.remove(&key);
                        }
                    }
                }
            }
        }
    }

    /// Observations with `dim == value` seen at or after `since_ms` (oldest first), at most
    /// `limit` (the newest ones).
    pub fn by(&self, dim: Dim, value: &str, since_ms: i64, limit: usize) -> Vec<Arc<Obs>> {
        let g = self.inner.lock();
        let Some(seqs) = g.index.get(&(dim, value.to_owned())) else {
            return Vec::new();
        };
        let mut out: Vec<Arc<Obs>> = seqs
            .iter()
            .rev()
            .filter_map(|s| {
                let i = usize::try_from(s.checked_sub(g.first_seq)?).ok()?;
                g.items.get(i).cloned()
            })
            .take_while(|o| o.time_ms >= since_ms || o.seen_ms >= since_ms)
            .take(limit)
            .collect();
        out.reverse();
        out
    }

    pub fn len(&self) -> usize {
        self.inner.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counts of what the window could not observe.
#[derive(Default)]
pub struct WindowStats {
    pub busy: AtomicU64,
    pub undecodable: AtomicU64,
}

/// The ingest-path processor: hands a clone of every item to the window and passes the item
/// on unchanged. It never blocks and never refuses.
pub struct WatcherProcessor {
    pub(crate) component_id: Arc<str>,
    pub(crate) tx: mpsc::Sender<Item>,
    pub(crate) stats: Arc<WindowStats>,
}

impl Processor for WatcherProcessor {
    fn process(&self, item: Item) -> Result<Option<Item>, Refusal> {
        if item.signal != Signal::Metrics
            && let Err(e) = self.tx.try_send(item.clone())
        {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "watcher_busy",
                mpsc::error::TrySendError::Closed(_) => "watcher_stopped",
            };
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            // Only the observation is lost; the item itself goes on.
            sluice_core::telemetry::processor_dropped(
                &self.component_id,
                reason,
                u64::from(item.count),
            );
        }
        Ok(Some(item))
    }
}

/// Decodes items from the channel into the window until the channel closes.
pub async fn run_decoder(
    mut rx: mpsc::Receiver<Item>,
    window: Arc<Window>,
    stats: Arc<WindowStats>,
) {
    while let Some(item) = rx.recv().await {
        let obs = decode(item.signal, &item.payload);
        match obs {
            Some(o) => window.insert(o, crate::alert::now_ms()),
            None => {
                stats.undecodable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Observations in one OTLP payload (`None` if it does not decode).
pub fn decode(signal: Signal, payload: &Bytes) -> Option<Vec<Obs>> {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(payload.clone())
            .ok()
            .map(|r| spans(&r)),
        Signal::Logs => ExportLogsServiceRequest::decode(payload.clone())
            .ok()
            .map(|r| logs(&r)),
        Signal::Metrics => Some(Vec::new()),
    }
}

fn value_string(v: &AnyValue) -> Option<String> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn value_f64(v: &AnyValue) -> Option<f64> {
    match v.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i as f64),
        any_value::Value::DoubleValue(d) => Some(*d),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn short(mut s: String) -> String {
    if s.len() > MAX_VALUE {
        let mut cut = MAX_VALUE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Fills the known fields of `o` from attributes; the rest go to `extra`.
fn apply_attrs(o: &mut Obs, attrs: &[KeyValue]) {
    for kv in attrs {
        let Some(v) = kv.value.as_ref() else {
            continue;
        };
        match kv.key.as_str() {
            "execution_id" => o.execution_id = value_string(v).map(short),
            "agent_id" => o.agent_id = value_string(v).map(short),
            "step_id" => o.step_id = value_string(v).map(short),
            "provider" => o.provider = value_string(v).map(short),
            "workflow_id" => o.workflow_id = value_string(v).map(short),
            "status" => o.status = value_string(v).map(short),
            "error.type" => o.error_type = value_string(v).map(short),
            "error.message" => o.error_message = value_string(v).map(short),
            "event_type" => {
                if let Some(s) = value_string(v) {
                    o.name = short(s);
                }
            }
            "execution_time_ms" => o.duration_ms = value_f64(v),
            "cost_usd" => o.cost_usd = value_f64(v),
            "output_tokens" => o.output_tokens = value_f64(v).map(|f| f as i64),
            key => {
                if o.extra.len() < MAX_EXTRA
                    && let Some(s) = value_string(v)
                {
                    o.extra.push((short(key.to_owned()), short(s)));
                }
            }
        }
    }
}

fn service_of(attrs: &[KeyValue]) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(value_string)
        .map(short)
}

fn ns_to_ms(ns: u64) -> i64 {
    if ns == 0 {
        crate::alert::now_ms()
    } else {
        i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
    }
}

fn hex_id(b: &[u8]) -> Option<String> {
    (!b.is_empty() && b.iter().any(|x| *x != 0)).then(|| hex::encode(b))
}

fn spans(r: &ExportTraceServiceRequest) -> Vec<Obs> {
    let mut out = Vec::new();
    for rs in &r.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|res| service_of(&res.attributes));
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let mut o = Obs {
                    kind: Some(ObsKind::Span),
                    time_ms: ns_to_ms(s.end_time_unix_nano),
                    name: short(s.name.clone()),
                    service: service.clone(),
                    trace_id: hex_id(&s.trace_id),
                    ..Default::default()
                };
                apply_attrs(&mut o, &s.attributes);
                if o.duration_ms.is_none() && s.end_time_unix_nano >= s.start_time_unix_nano {
                    o.duration_ms =
                        Some((s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6);
                }
                if let Some(st) = &s.status
                    && st.code == 2
                {
                    o.error = true;
                    if o.error_message.is_none() && !st.message.is_empty() {
                        o.error_message = Some(short(st.message.clone()));
                    }
                }
                out.push(o);
            }
        }
    }
    out
}

fn logs(r: &ExportLogsServiceRequest) -> Vec<Obs> {
    let mut out = Vec::new();
    for rl in &r.resource_logs {
        let service = rl
            .resource
            .as_ref()
            .and_then(|res| service_of(&res.attributes));
        for sl in &rl.scope_logs {
            for l in &sl.log_records {
                let t = if l.time_unix_nano != 0 {
                    l.time_unix_nano
                } else {
                    l.observed_time_unix_nano
                };
                let mut o = Obs {
                    kind: Some(ObsKind::Log),
                    time_ms: ns_to_ms(t),
                    name: short(l.event_name.clone()),
                    service: service.clone(),
                    trace_id: hex_id(&l.trace_id),
                    error: l.severity_number >= 17,
                    body: l.body.as_ref().and_then(value_string).map(short),
                    ..Default::default()
                };
                apply_attrs(&mut o, &l.attributes);
                out.push(o);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(agent: &str, exec: &str) -> Obs {
        Obs {
            agent_id: Some(agent.into()),
            execution_id: Some(exec.into()),
            time_ms: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn bounded_and_indexed() {
        let w = Window::new(3, std::time::Duration::from_secs(60));
        w.insert(vec![obs("a", "e1"), obs("b", "e1"), obs("a", "e2")], 1000);
        assert_eq!(w.by(Dim::AgentId, "a", 0, 10).len(), 2);
        assert_eq!(w.by(Dim::ExecutionId, "e1", 0, 10).len(), 2);
        w.insert(vec![obs("c", "e3"), obs("c", "e3")], 1000);
        assert_eq!(w.len(), 3);
        // The two oldest ("a"/e1, "b"/e1) are gone, and so are their index entries.
        assert_eq!(w.by(Dim::ExecutionId, "e1", 0, 10).len(), 0);
        assert_eq!(w.by(Dim::AgentId, "a", 0, 10).len(), 1);
        assert_eq!(w.by(Dim::AgentId, "c", 0, 1).len(), 1);
        // Age eviction.
        w.insert(vec![obs("d", "e4")], 1000 + 61_000);
        assert_eq!(w.len(), 1);
        assert!(w.by(Dim::AgentId, "c", 0, 10).is_empty());
    }

    #[test]
    fn processor_passes_items_and_counts_busy() {
        let (tx, mut rx) = mpsc::channel(1);
        let stats = Arc::new(WindowStats::default());
        let p = WatcherProcessor {
            component_id: "processors.watcher".into(),
            tx,
            stats: stats.clone(),
        };
        let item = Item::new(Signal::Logs, Bytes::from_static(b"x"), 1);
        assert_eq!(p.process(item.clone()).unwrap(), Some(item.clone()));
        assert_eq!(p.process(item.clone()).unwrap(), Some(item.clone()));
        assert_eq!(stats.busy.load(Ordering::Relaxed), 1);
        assert!(rx.try_recv().is_ok());
        // Garbage does not decode; nothing panics.
        assert!(decode(Signal::Logs, &Bytes::from_static(b"\xff\xff\xff")).is_none());
    }
}
