//! The AWF `WorkflowEvent` model (see `docs/awf-events.md` for the JSON schema).
//!
//! Parsing is lenient by design: AWF may add fields or event types at any time and Sluice must
//! keep working, so only two things make an event malformed — it is not a JSON object, or it
//! has no string `type`. Everything else that is not understood is kept in
//! [`WorkflowEvent::attributes`] and travels on as span/log attributes.

use crate::time;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// The `type` of an event. Unknown types are kept verbatim in [`EventKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    WorkflowStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCancelled,
    StepStarted,
    StepCompleted,
    StepFailed,
    StepRetried,
    StepFallback,
    AgentInvoked,
    Other(String),
}

impl EventKind {
    pub fn parse(s: &str) -> EventKind {
        match s {
            "workflow.started" => EventKind::WorkflowStarted,
            "workflow.completed" => EventKind::WorkflowCompleted,
            "workflow.failed" => EventKind::WorkflowFailed,
            "workflow.cancelled" => EventKind::WorkflowCancelled,
            "workflow.step.started" => EventKind::StepStarted,
            "workflow.step.completed" => EventKind::StepCompleted,
            "workflow.step.failed" => EventKind::StepFailed,
            "workflow.step.retried" => EventKind::StepRetried,
            "workflow.step.fallback" => EventKind::StepFallback,
            "agent.invoked" => EventKind::AgentInvoked,
            other => EventKind::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            EventKind::WorkflowStarted => "workflow.started",
            EventKind::WorkflowCompleted => "workflow.completed",
            EventKind::WorkflowFailed => "workflow.failed",
            EventKind::WorkflowCancelled => "workflow.cancelled",
            EventKind::StepStarted => "workflow.step.started",
            EventKind::StepCompleted => "workflow.step.completed",
            EventKind::StepFailed => "workflow.step.failed",
            EventKind::StepRetried => "workflow.step.retried",
            EventKind::StepFallback => "workflow.step.fallback",
            EventKind::AgentInvoked => "agent.invoked",
            EventKind::Other(s) => s,
        }
    }

    /// The last event of an execution: its stream can be closed after it.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::WorkflowCompleted | EventKind::WorkflowFailed | EventKind::WorkflowCancelled
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Token counts of one task (AWF `TokenUsage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// AWF `TaskMetrics`. Every field is optional on the wire.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TaskMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_time_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_usage: Option<TokenUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
}

impl TaskMetrics {
    fn is_empty(&self) -> bool {
        *self == TaskMetrics::default()
    }
}

/// An error carried by a failed event: a string, or an object with a message and a type.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EventError {
    pub message: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One AWF workflow event.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowEvent {
    /// Event id, unique within its execution (AWF `id`, or `event_id`).
    pub id: Option<String>,
    pub kind: EventKind,
    /// When the event happened, Unix nanoseconds.
    pub timestamp: Option<u64>,
    /// When the work this event ends began (`started_at`), Unix nanoseconds.
    pub started_at: Option<u64>,
    pub workflow_id: Option<String>,
    pub execution_id: Option<String>,
    pub step_id: Option<String>,
    pub agent_id: Option<String>,
    pub framework: Option<String>,
    pub provider: Option<String>,
    pub status: Option<String>,
    pub error: Option<EventError>,
    /// 1-based attempt of the step this event belongs to (for `workflow.step.retried`: the
    /// attempt about to start).
    pub attempt: Option<u32>,
    /// The agent a `workflow.step.fallback` switches to.
    pub fallback_agent_id: Option<String>,
    pub metrics: Option<TaskMetrics>,
    /// Every field not listed above (including `data`, `input`, `output`), kept as sent.
    pub attributes: Map<String, Value>,
}

/// Why an event could not be understood at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventParseError {
    NotAnObject,
    MissingType,
    Json(String),
}

impl fmt::Display for EventParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventParseError::NotAnObject => f.write_str("an event must be a JSON object"),
            EventParseError::MissingType => {
                f.write_str("an event needs a string \"type\" (e.g. \"workflow.started\")")
            }
            EventParseError::Json(e) => write!(f, "invalid JSON: {e}"),
        }
    }
}

impl std::error::Error for EventParseError {}

/// Known keys, in the order they are taken out of the object.
const KNOWN_KEYS: &[&str] = &[
    "id",
    "event_id",
    "type",
    "event_type",
    "timestamp",
    "started_at",
    "workflow_id",
    "execution_id",
    "step_id",
    "agent_id",
    "framework",
    "provider",
    "status",
    "error",
    "attempt",
    "fallback_agent_id",
    "metrics",
    "task_metrics",
];

/// Keys of `TaskMetrics` also accepted at the top level of an event or of its `data`.
const METRIC_KEYS: &[&str] = &[
    "execution_time_ms",
    "token_usage",
    "cost_usd",
    "retry_count",
];

impl WorkflowEvent {
    /// A minimal event of `kind` for `execution_id`; fill in the rest with struct update syntax.
    pub fn new(kind: EventKind, execution_id: impl Into<String>) -> WorkflowEvent {
        WorkflowEvent {
            id: None,
            kind,
            timestamp: None,
            started_at: None,
            workflow_id: None,
            execution_id: Some(execution_id.into()),
            step_id: None,
            agent_id: None,
            framework: None,
            provider: None,
            status: None,
            error: None,
            attempt: None,
            fallback_agent_id: None,
            metrics: None,
            attributes: Map::new(),
        }
    }

    /// Parses one event from JSON text.
    pub fn from_json(text: &str) -> Result<WorkflowEvent, EventParseError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventParseError::Json(e.to_string()))?;
        WorkflowEvent::from_value(value)
    }

    /// Builds an event from a parsed JSON value. Known fields may also sit inside a `data` (or
    /// `payload`) object — the shape of many event emitters — and are lifted out of it.
    pub fn from_value(value: Value) -> Result<WorkflowEvent, EventParseError> {
        let Value::Object(mut obj) = value else {
            return Err(EventParseError::NotAnObject);
        };
        lift_from_nested(&mut obj, "data");
        lift_from_nested(&mut obj, "payload");

        let kind =
            match take_string(&mut obj, "type").or_else(|| take_string(&mut obj, "event_type")) {
                Some(t) if !t.is_empty() => EventKind::parse(&t),
                _ => return Err(EventParseError::MissingType),
            };
        let id = take_string(&mut obj, "id").or_else(|| take_string(&mut obj, "event_id"));
        let timestamp = take_timestamp(&mut obj, "timestamp");
        let started_at = take_timestamp(&mut obj, "started_at");
        let workflow_id = take_string(&mut obj, "workflow_id");
        let execution_id = take_string(&mut obj, "execution_id");
        let step_id = take_string(&mut obj, "step_id");
        let agent_id = take_string(&mut obj, "agent_id");
        let framework = take_string(&mut obj, "framework");
        let provider = take_string(&mut obj, "provider");
        let status = take_string(&mut obj, "status");
        let error = take_error(&mut obj);
        let attempt = take_u64(&mut obj, "attempt").and_then(|a| u32::try_from(a).ok());
        let fallback_agent_id = take_string(&mut obj, "fallback_agent_id");
        let metrics = take_metrics(&mut obj);

        Ok(WorkflowEvent {
            id,
            kind,
            timestamp,
            started_at,
            workflow_id,
            execution_id,
            step_id,
            agent_id,
            framework,
            provider,
            status,
            error,
            attempt,
            fallback_agent_id,
            metrics,
            attributes: obj,
        })
    }

    /// The canonical JSON form (the schema in `docs/awf-events.md`).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        let mut put_str = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                obj.insert(k.to_owned(), Value::String(v.clone()));
            }
        };
        put_str("id", &self.id);
        put_str("workflow_id", &self.workflow_id);
        put_str("execution_id", &self.execution_id);
        put_str("step_id", &self.step_id);
        put_str("agent_id", &self.agent_id);
        put_str("framework", &self.framework);
        put_str("provider", &self.provider);
        put_str("status", &self.status);
        put_str("fallback_agent_id", &self.fallback_agent_id);
        obj.insert("type".into(), Value::String(self.kind.as_str().to_owned()));
        if let Some(t) = self.timestamp {
            obj.insert("timestamp".into(), Value::String(time::format_rfc3339(t)));
        }
        if let Some(t) = self.started_at {
            obj.insert("started_at".into(), Value::String(time::format_rfc3339(t)));
        }
        if let Some(a) = self.attempt {
            obj.insert("attempt".into(), Value::from(a));
        }
        if let Some(e) = &self.error {
            obj.insert(
                "error".into(),
                serde_json::to_value(e).unwrap_or(Value::Null),
            );
        }
        if let Some(m) = &self.metrics {
            obj.insert(
                "metrics".into(),
                serde_json::to_value(m).unwrap_or(Value::Null),
            );
        }
        for (k, v) in &self.attributes {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(obj)
    }

    /// True when the event reports a failure (failed type, `error`, or a failure status).
    pub fn is_failure(&self) -> bool {
        matches!(self.kind, EventKind::WorkflowFailed | EventKind::StepFailed)
            || self.error.is_some()
            || self
                .status
                .as_deref()
                .is_some_and(|s| matches!(s, "failed" | "error" | "timeout" | "timed_out"))
    }

    pub fn execution_time_ms(&self) -> Option<f64> {
        self.metrics.as_ref().and_then(|m| m.execution_time_ms)
    }

    pub fn tokens(&self) -> Option<TokenUsage> {
        self.metrics.as_ref().and_then(|m| m.token_usage)
    }

    pub fn cost_usd(&self) -> Option<f64> {
        self.metrics.as_ref().and_then(|m| m.cost_usd)
    }
}

impl Serialize for WorkflowEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for WorkflowEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        WorkflowEvent::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// Parses a request body or SSE `data`: one event object or an array of them.
pub fn parse_events(text: &str) -> Result<Vec<WorkflowEvent>, EventParseError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| EventParseError::Json(e.to_string()))?;
    parse_event_values(value)
}

/// Like [`parse_events`] on an already parsed value. All-or-nothing: one bad element fails it.
pub fn parse_event_values(value: Value) -> Result<Vec<WorkflowEvent>, EventParseError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                WorkflowEvent::from_value(v).map_err(|e| match e {
                    EventParseError::Json(m) => EventParseError::Json(format!("event {i}: {m}")),
                    other => EventParseError::Json(format!("event {i}: {other}")),
                })
            })
            .collect(),
        other => WorkflowEvent::from_value(other).map(|e| vec![e]),
    }
}

/// Moves known keys out of a nested `data` object to the top level (top level wins); what is
/// left of the nested object stays where it was.
fn lift_from_nested(obj: &mut Map<String, Value>, key: &str) {
    let Some(Value::Object(nested)) = obj.get_mut(key) else {
        return;
    };
    let mut lifted = Vec::new();
    for k in KNOWN_KEYS.iter().chain(METRIC_KEYS) {
        if let Some(v) = nested.remove(*k) {
            lifted.push(((*k).to_owned(), v));
        }
    }
    let now_empty = nested.is_empty();
    for (k, v) in lifted {
        obj.entry(k).or_insert(v);
    }
    if now_empty {
        obj.remove(key);
    }
}

/// Takes a string-like field. Numbers and booleans become their text; other shapes are left in
/// place (so they end up as attributes) and read as absent.
fn take_string(obj: &mut Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
        Value::Null => {
            obj.remove(key);
            return None;
        }
        _ => return None,
    }
    match obj.remove(key)? {
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn value_f64(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    f.is_finite().then_some(f)
}

fn take_u64(obj: &mut Map<String, Value>, key: &str) -> Option<u64> {
    let v = value_u64(obj.get(key)?)?;
    obj.remove(key);
    Some(v)
}

fn take_f64(obj: &mut Map<String, Value>, key: &str) -> Option<f64> {
    let v = value_f64(obj.get(key)?)?;
    obj.remove(key);
    Some(v)
}

fn take_timestamp(obj: &mut Map<String, Value>, key: &str) -> Option<u64> {
    let t = match obj.get(key)? {
        Value::String(s) => time::parse_rfc3339(s).or_else(|| {
            s.trim()
                .parse::<f64>()
                .ok()
                .and_then(time::from_epoch_number)
        }),
        Value::Number(n) => n.as_f64().and_then(time::from_epoch_number),
        _ => None,
    }?;
    obj.remove(key);
    Some(t)
}

fn take_error(obj: &mut Map<String, Value>) -> Option<EventError> {
    let err = match obj.get("error")? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(EventError {
            message: s.clone(),
            kind: None,
        }),
        Value::Object(o) => {
            let text = |k: &str| match o.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(v @ Value::Number(_)) => Some(v.to_string()),
                _ => None,
            };
            Some(EventError {
                message: text("message")
                    .or_else(|| text("msg"))
                    .or_else(|| text("detail"))
                    .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
                kind: text("type")
                    .or_else(|| text("kind"))
                    .or_else(|| text("code")),
            })
        }
        other => Some(EventError {
            message: other.to_string(),
            kind: None,
        }),
    };
    obj.remove("error");
    err
}

fn take_tokens(v: &Value) -> Option<TokenUsage> {
    let Value::Object(o) = v else {
        return None;
    };
    let first = |keys: &[&str]| keys.iter().find_map(|k| o.get(*k).and_then(value_u64));
    let input = first(&["input_tokens", "prompt_tokens", "input", "in"]);
    let output = first(&["output_tokens", "completion_tokens", "output", "out"]);
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(TokenUsage {
        input_tokens: input.unwrap_or(0),
        output_tokens: output.unwrap_or(0),
    })
}

/// `metrics` / `task_metrics` object, plus TaskMetrics keys found at the top level.
fn take_metrics(obj: &mut Map<String, Value>) -> Option<TaskMetrics> {
    let mut m = TaskMetrics::default();
    for key in ["metrics", "task_metrics"] {
        // A non-object `metrics` is not TaskMetrics; it stays as an attribute.
        if !matches!(obj.get(key), Some(Value::Object(_))) {
            continue;
        }
        if let Some(Value::Object(mut nested)) = obj.remove(key) {
            fill_metrics(&mut m, &mut nested);
            if !nested.is_empty() {
                // Unknown metric keys are kept as attributes under the same object name.
                obj.insert(key.to_owned(), Value::Object(nested));
            }
        }
    }
    fill_metrics(&mut m, obj);
    (!m.is_empty()).then_some(m)
}

fn fill_metrics(m: &mut TaskMetrics, obj: &mut Map<String, Value>) {
    if m.execution_time_ms.is_none() {
        m.execution_time_ms = take_f64(obj, "execution_time_ms").filter(|v| *v >= 0.0);
    }
    if m.cost_usd.is_none() {
        m.cost_usd = take_f64(obj, "cost_usd").filter(|v| *v >= 0.0);
    }
    if m.retry_count.is_none() {
        m.retry_count = take_u64(obj, "retry_count").and_then(|v| u32::try_from(v).ok());
    }
    if m.token_usage.is_none() {
        if let Some(t) = obj.get("token_usage").and_then(take_tokens) {
            obj.remove("token_usage");
            m.token_usage = Some(t);
        } else {
            let input = take_u64(obj, "input_tokens");
            let output = take_u64(obj, "output_tokens");
            if input.is_some() || output.is_some() {
                m.token_usage = Some(TokenUsage {
                    input_tokens: input.unwrap_or(0),
                    output_tokens: output.unwrap_or(0),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_event_parses() {
        let e = WorkflowEvent::from_value(json!({
            "id": "ev-1",
            "type": "workflow.step.completed",
            "timestamp": "2025-01-01T00:00:01Z",
            "workflow_id": "wf",
            "execution_id": "ex-1",
            "step_id": "plan",
            "agent_id": "planner",
            "framework": "langgraph",
            "provider": "anthropic",
            "status": "completed",
            "attempt": 2,
            "metrics": {
                "execution_time_ms": 1200,
                "token_usage": {"input_tokens": 100, "output_tokens": 50},
                "cost_usd": 0.0125,
                "retry_count": 1
            },
            "model": "claude-sonnet"
        }))
        .unwrap();
        assert_eq!(e.kind, EventKind::StepCompleted);
        assert_eq!(e.id.as_deref(), Some("ev-1"));
        assert_eq!(e.timestamp, Some(1_735_689_601_000_000_000));
        assert_eq!(e.attempt, Some(2));
        let m = e.metrics.as_ref().unwrap();
        assert_eq!(m.execution_time_ms, Some(1200.0));
        assert_eq!(
            m.token_usage,
            Some(TokenUsage {
                input_tokens: 100,
                output_tokens: 50
            })
        );
        assert_eq!(m.cost_usd, Some(0.0125));
        assert_eq!(m.retry_count, Some(1));
        assert_eq!(e.attributes.get("model"), Some(&json!("claude-sonnet")));
        assert_eq!(e.attributes.len(), 1);
    }

    #[test]
    fn unknown_type_and_extra_fields_are_kept() {
        let e = WorkflowEvent::from_json(
            r#"{"type":"workflow.paused","execution_id":7,"weird":{"a":[1,2]},"step_id":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Other("workflow.paused".into()));
        assert_eq!(e.execution_id.as_deref(), Some("7"));
        assert_eq!(e.step_id, None);
        assert_eq!(e.attributes.get("step_id"), Some(&json!({"x":1})));
        assert_eq!(e.attributes.get("weird"), Some(&json!({"a":[1,2]})));
    }

    #[test]
    fn fields_inside_data_are_lifted() {
        let e = WorkflowEvent::from_json(
            r#"{"type":"agent.invoked","execution_id":"e","data":{"agent_id":"a","prompt_tokens":3,
                "token_usage":{"prompt_tokens":10,"completion_tokens":4},"cost_usd":"0.5","note":"x"}}"#,
        )
        .unwrap();
        assert_eq!(e.agent_id.as_deref(), Some("a"));
        assert_eq!(
            e.tokens(),
            Some(TokenUsage {
                input_tokens: 10,
                output_tokens: 4
            })
        );
        assert_eq!(e.cost_usd(), Some(0.5));
        assert_eq!(
            e.attributes.get("data"),
            Some(&json!({"note":"x","prompt_tokens":3}))
        );
    }

    #[test]
    fn errors_in_any_shape() {
        let e = WorkflowEvent::from_json(
            r#"{"type":"workflow.step.failed","error":{"type":"TimeoutError","message":"slow"}}"#,
        )
        .unwrap();
        assert_eq!(
            e.error,
            Some(EventError {
                message: "slow".into(),
                kind: Some("TimeoutError".into())
            })
        );
        assert!(e.is_failure());
        let e = WorkflowEvent::from_json(r#"{"type":"x","error":"boom"}"#).unwrap();
        assert_eq!(e.error.unwrap().message, "boom");
        let e = WorkflowEvent::from_json(r#"{"type":"x","error":null}"#).unwrap();
        assert!(e.error.is_none() && !e.is_failure());
    }

    #[test]
    fn malformed_events() {
        assert_eq!(
            WorkflowEvent::from_json("[1]").unwrap_err(),
            EventParseError::NotAnObject
        );
        assert_eq!(
            WorkflowEvent::from_json(r#"{"execution_id":"e"}"#).unwrap_err(),
            EventParseError::MissingType
        );
        assert_eq!(
            WorkflowEvent::from_json(r#"{"type":""}"#).unwrap_err(),
            EventParseError::MissingType
        );
        assert!(matches!(
            WorkflowEvent::from_json("{").unwrap_err(),
            EventParseError::Json(_)
        ));
        assert!(parse_events(r#"[{"type":"a"},{"nope":1}]"#).is_err());
        assert_eq!(
            parse_events(r#"[{"type":"a"},{"type":"b"}]"#)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn canonical_form_round_trips() {
        let e = WorkflowEvent::from_json(
            r#"{"id":"1","type":"workflow.step.failed","timestamp":1735689600.5,"execution_id":"e",
                "step_id":"s","attempt":1,"error":"bad","metrics":{"execution_time_ms":5,"retry_count":0},
                "extra":true}"#,
        )
        .unwrap();
        let text = serde_json::to_string(&e).unwrap();
        let back: WorkflowEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
    }
}
