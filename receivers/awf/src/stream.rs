//! Following one SSE stream: connect, parse, deliver, reconnect (WHATWG §9.2.3–9.2.4).
//!
//! * `Accept: text/event-stream`, `Cache-Control: no-cache`, `Last-Event-ID` when non-empty.
//! * Only `200` with MIME essence `text/event-stream` opens a stream; `204` means stop.
//! * After a network error, an idle timeout or the end of the body: wait the reconnection
//!   time (the server's `retry:`, else `reconnect_delay`), doubled per consecutive failure up
//!   to `max_reconnect_delay`, then reconnect with `Last-Event-ID`. A discovered execution's
//!   body that ends before its terminal event is such an end too, bounded by
//!   `max_premature_ends` consecutive ends without a new event.
//! * Events are delivered before the next chunk is read, and `Last-Event-ID` only advances
//!   past events the pipeline accepted.

use crate::deliver::{
    Mode, STREAM_CONNECTIONS, STREAM_PREMATURE_ENDS, STREAM_RECONNECTS, STREAMS_ABANDONED,
    STREAMS_ACTIVE, Shared,
};
use crate::event::{EventParseError, WorkflowEvent, parse_event_values};
use futures::StreamExt;
use http::HeaderMap;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use sluice_core::DurationStr;
use sluice_core::retry::{Backoff, RetryConfig};
use sluice_http_client::sse::{SseEvent, SseParser, is_event_stream};
use std::collections::HashSet;
use std::time::Duration;

/// Connection settings shared by all streams of a receiver.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Auth and extra headers.
    pub headers: HeaderMap,
    pub idle_timeout: Duration,
    pub reconnect_delay: Duration,
    pub max_reconnect_delay: Duration,
    pub max_event_bytes: usize,
    /// Consecutive premature ends without a new event before a discovered stream is given up.
    pub max_premature_ends: u32,
}

/// Which stream this is, which decides when following it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKind {
    /// A configured URL, followed until 204, or until it ends after all its executions ended.
    Fixed,
    /// One execution's stream found by discovery, followed until its terminal event.
    Discovered { execution_id: String },
}

/// Why following a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The execution's terminal event was delivered (for a fixed stream: every execution seen
    /// on it ended and the server closed the stream).
    Finished,
    /// The server answered 204, or 404/410 for a discovered execution.
    Gone(u16),
    /// A discovered stream's body ended before the terminal event `max_premature_ends` times
    /// in a row without a new event; following it was given up.
    Abandoned,
    /// The receiver is shutting down.
    Stopped,
}

enum Conn {
    Terminal,
    Eof,
    Failed(&'static str),
    Status(u16),
    Stopped,
}

/// Follows `url`, resuming after `last_event_id` (updated in place as events are delivered).
pub async fn follow(
    shared: &Shared,
    client: &reqwest::Client,
    settings: &StreamSettings,
    url: &str,
    kind: &StreamKind,
    last_event_id: &mut String,
) -> StreamEnd {
    let mut retry_ms: Option<u64> = None;
    let mut backoff = reconnect_backoff(settings, None);
    let mut executions = ExecutionTracker::default();
    // Consecutive premature ends that brought no new event.
    let mut fruitless_ends: u32 = 0;
    let discovered = matches!(kind, StreamKind::Discovered { .. });
    let id = shared.component_id().to_owned();
    loop {
        if shared.is_stopping() {
            return StreamEnd::Stopped;
        }
        let mut got = Got::default();
        let conn = connect_once(
            shared,
            client,
            settings,
            url,
            kind,
            last_event_id,
            &mut retry_ms,
            &mut got,
            &mut executions,
        )
        .await;
        let outcome = match &conn {
            Conn::Terminal => "finished",
            Conn::Eof => "eof",
            Conn::Failed(reason) => reason,
            Conn::Status(_) => "http_status",
            Conn::Stopped => "stopped",
        };
        metrics::counter!(STREAM_CONNECTIONS, "component_id" => id.clone(), "outcome" => outcome)
            .increment(1);
        match conn {
            Conn::Terminal => return StreamEnd::Finished,
            Conn::Stopped => return StreamEnd::Stopped,
            Conn::Status(204) => return StreamEnd::Gone(204),
            Conn::Status(s @ (404 | 410)) if discovered => return StreamEnd::Gone(s),
            Conn::Eof if !discovered && executions.all_ended() => return StreamEnd::Finished,
            Conn::Eof if discovered => {
                // The body ended before the execution's terminal event: its tail is still to
                // come, whatever the listing says by now (docs/awf-events.md §2).
                metrics::counter!(STREAM_PREMATURE_ENDS, "component_id" => id.clone()).increment(1);
                fruitless_ends = if got.fresh > 0 {
                    0
                } else {
                    fruitless_ends.saturating_add(1)
                };
                if fruitless_ends >= settings.max_premature_ends {
                    metrics::counter!(STREAMS_ABANDONED, "component_id" => id.clone(), "reason" => "premature_ends")
                        .increment(1);
                    tracing::warn!(
                        url,
                        ends = fruitless_ends,
                        "AWF event stream keeps ending before its terminal event without new events; giving up on it"
                    );
                    return StreamEnd::Abandoned;
                }
            }
            Conn::Status(s) => {
                tracing::warn!(url, status = s, "AWF event stream refused; will retry");
            }
            Conn::Failed(reason) => {
                tracing::debug!(url, reason, "AWF event stream interrupted; reconnecting");
            }
            Conn::Eof => {}
        }
        if got.fresh > 0 {
            backoff.reset();
        }
        if got.retry_changed {
            // The server's `retry:` is the reconnection time (WHATWG HTML §9.2.3).
            backoff = reconnect_backoff(settings, retry_ms);
        }
        let delay = backoff.next_delay(None);
        metrics::counter!(STREAM_RECONNECTS, "component_id" => id.clone(), "after" => outcome)
            .increment(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.ctx.stopped() => return StreamEnd::Stopped,
        }
    }
}

/// The reconnect backoff: the server's `retry:` (else `reconnect_delay`), doubled per
/// consecutive failure up to `max_reconnect_delay`, with ±20 % jitter so that many streams
/// cut at once do not reconnect in step.
fn reconnect_backoff(settings: &StreamSettings, retry_ms: Option<u64>) -> Backoff {
    let first = retry_ms
        .map(Duration::from_millis)
        .unwrap_or(settings.reconnect_delay)
        .max(Duration::from_millis(1));
    Backoff::new(&RetryConfig {
        initial_interval: DurationStr(first),
        max_interval: DurationStr(settings.max_reconnect_delay.max(first)),
        multiplier: 2.0,
        randomization_factor: 0.2,
        max_age: None,
    })
}

/// What one connection delivered.
#[derive(Default)]
struct Got {
    /// Events the pipeline accepted that were not seen before (a replay brings none).
    fresh: u64,
    /// The server sent a new `retry:` value.
    retry_changed: bool,
}

/// Executions seen on a stream and whether each has ended.
#[derive(Default)]
struct ExecutionTracker {
    open: HashSet<String>,
    ended: usize,
}

impl ExecutionTracker {
    fn observe(&mut self, e: &WorkflowEvent) {
        let Some(x) = &e.execution_id else { return };
        if e.kind.is_terminal() {
            self.open.remove(x);
            self.ended = self.ended.saturating_add(1);
        } else if self.open.len() < 100_000 {
            self.open.insert(x.clone());
        }
    }

    fn all_ended(&self) -> bool {
        self.ended > 0 && self.open.is_empty()
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect_once(
    shared: &Shared,
    client: &reqwest::Client,
    settings: &StreamSettings,
    url: &str,
    kind: &StreamKind,
    last_event_id: &mut String,
    retry_ms: &mut Option<u64>,
    got: &mut Got,
    executions: &mut ExecutionTracker,
) -> Conn {
    let mut req = client
        .get(url)
        .headers(settings.headers.clone())
        .header(ACCEPT, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache");
    if !last_event_id.is_empty()
        && let Ok(v) = HeaderValue::from_str(last_event_id)
    {
        req = req.header("Last-Event-ID", v);
    }
    let resp = tokio::select! {
        r = req.send() => r,
        _ = shared.ctx.stopped() => return Conn::Stopped,
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(url, error = %e, "connecting to AWF event stream failed");
            return Conn::Failed(if e.is_timeout() {
                "connect_timeout"
            } else {
                "connect_error"
            });
        }
    };
    if resp.status().as_u16() != 200 {
        return Conn::Status(resp.status().as_u16());
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_event_stream(content_type) {
        tracing::warn!(
            url,
            content_type,
            "AWF endpoint did not answer with text/event-stream"
        );
        return Conn::Failed("not_event_stream");
    }

    let _active = ActiveGuard::new(shared.component_id());
    let own_execution = match kind {
        StreamKind::Discovered { execution_id } => Some(execution_id.as_str()),
        StreamKind::Fixed => None,
    };
    let default_execution = own_execution
        .map(str::to_owned)
        .or_else(|| execution_id_from_url(url));
    let mut parser = SseParser::with_limits(settings.max_event_bytes, settings.max_event_bytes)
        .with_last_event_id(last_event_id);
    let mut body = resp.bytes_stream();
    let mut dispatched: Vec<SseEvent> = Vec::new();
    let mut oversized_seen = 0;
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(settings.idle_timeout, body.next()) => n,
            _ = shared.ctx.stopped() => return Conn::Stopped,
        };
        let chunk = match next {
            Err(_) => return Conn::Failed("idle_timeout"),
            Ok(None) => return Conn::Eof,
            Ok(Some(Err(e))) => {
                tracing::debug!(url, error = %e, "AWF event stream read failed");
                return Conn::Failed("read_error");
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        parser.feed(&chunk, &mut dispatched);
        if parser.oversized() > oversized_seen {
            shared.count_dropped("oversized", parser.oversized() - oversized_seen);
            oversized_seen = parser.oversized();
        }
        let mut events = Vec::with_capacity(dispatched.len());
        for sse in dispatched.drain(..) {
            match decode_sse_event(&sse, default_execution.as_deref()) {
                Ok(evs) => events.extend(evs),
                Err(e) => {
                    shared.count_dropped("malformed", 1);
                    tracing::debug!(url, error = %e, "skipping malformed AWF event");
                }
            }
        }
        let mut terminal = false;
        for e in &events {
            executions.observe(e);
            if e.kind.is_terminal()
                && own_execution.is_some()
                && e.execution_id.as_deref() == own_execution
            {
                terminal = true;
            }
        }
        let Ok(stats) = shared.ingest(events, "sse", Mode::UntilAccepted).await else {
            // Only possible while stopping: the events were not accepted, so the last event
            // id stays where it was and a later run resumes before them.
            return Conn::Stopped;
        };
        got.fresh += stats.events.saturating_sub(stats.duplicates);
        parser.last_event_id().clone_into(last_event_id);
        if parser.retry_ms().is_some() && parser.retry_ms() != *retry_ms {
            *retry_ms = parser.retry_ms();
            got.retry_changed = true;
        }
        if terminal {
            return Conn::Terminal;
        }
    }
}

/// Decodes one SSE event's data: a JSON event or an array of events. When the JSON has no
/// `type`, the SSE `event:` name is used; keep-alive events and empty data are skipped.
pub fn decode_sse_event(
    sse: &SseEvent,
    default_execution: Option<&str>,
) -> Result<Vec<WorkflowEvent>, EventParseError> {
    if sse.data.trim().is_empty()
        || matches!(
            sse.event_type.as_str(),
            "ping" | "heartbeat" | "keepalive" | "keep-alive"
        )
    {
        return Ok(Vec::new());
    }
    let mut value: Value =
        serde_json::from_str(&sse.data).map_err(|e| EventParseError::Json(e.to_string()))?;
    if sse.event_type != "message" {
        let fill = |v: &mut Value| {
            if let Value::Object(o) = v {
                o.entry("type")
                    .or_insert_with(|| Value::String(sse.event_type.clone()));
            }
        };
        match &mut value {
            Value::Array(items) => items.iter_mut().for_each(fill),
            other => fill(other),
        }
    }
    let mut events = parse_event_values(value)?;
    if let Some(x) = default_execution {
        for e in &mut events {
            if e.execution_id.is_none() {
                e.execution_id = Some(x.to_owned());
            }
        }
    }
    Ok(events)
}

/// `.../executions/{id}/events` → `id` (percent-decoded), for streams whose events omit it.
pub fn execution_id_from_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let segments: Vec<&str> = parsed.path_segments()?.collect();
    let pos = segments.iter().rposition(|s| *s == "events")?;
    let id = segments.get(pos.checked_sub(1)?)?;
    let before = segments.get(pos.checked_sub(2)?)?;
    if *before != "executions" || id.is_empty() {
        return None;
    }
    Some(percent_decode(id))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts an open stream in `sluice_awf_streams_active` for as long as it lives.
struct ActiveGuard(String);

impl ActiveGuard {
    fn new(component_id: &str) -> ActiveGuard {
        metrics::gauge!(STREAMS_ACTIVE, "component_id" => component_id.to_owned()).increment(1.0);
        ActiveGuard(component_id.to_owned())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        metrics::gauge!(STREAMS_ACTIVE, "component_id" => self.0.clone()).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(event_type: &str, data: &str) -> SseEvent {
        SseEvent {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: String::new(),
        }
    }

    #[test]
    fn execution_id_from_stream_url() {
        assert_eq!(
            execution_id_from_url("http://awf:8000/executions/ex-1/events").as_deref(),
            Some("ex-1")
        );
        assert_eq!(
            execution_id_from_url("http://awf/api/executions/a%20b/events?x=1").as_deref(),
            Some("a b")
        );
        assert_eq!(execution_id_from_url("http://awf/events"), None);
        assert_eq!(execution_id_from_url("http://awf/firehose/x/events"), None);
        assert_eq!(execution_id_from_url("not a url"), None);
    }

    #[test]
    fn decodes_sse_events() {
        let evs = decode_sse_event(
            &sse("message", r#"{"type":"workflow.started"}"#),
            Some("ex"),
        )
        .unwrap();
        assert_eq!(evs[0].execution_id.as_deref(), Some("ex"));
        let evs =
            decode_sse_event(&sse("workflow.step.started", r#"{"step_id":"s"}"#), None).unwrap();
        assert_eq!(evs[0].kind.as_str(), "workflow.step.started");
        let evs =
            decode_sse_event(&sse("message", r#"[{"type":"a"},{"type":"b"}]"#), None).unwrap();
        assert_eq!(evs.len(), 2);
        assert!(
            decode_sse_event(&sse("ping", "{}"), None)
                .unwrap()
                .is_empty()
        );
        assert!(
            decode_sse_event(&sse("message", "  "), None)
                .unwrap()
                .is_empty()
        );
        assert!(decode_sse_event(&sse("message", "not json"), None).is_err());
        assert!(decode_sse_event(&sse("message", r#"{"no":"type"}"#), None).is_err());
    }
}
