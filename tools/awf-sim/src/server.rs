//! The simulated AWF HTTP API: executions listing, per-execution SSE streams, fault
//! switches and the control endpoints a remediation calls.

use super::Sim;
use super::world::{ControlError, ExecLog, FaultKind};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
struct AppState {
    sim: Arc<Sim>,
    stop: watch::Receiver<bool>,
}

pub(crate) fn router(sim: Arc<Sim>, stop: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/executions", get(list_executions).post(create_execution))
        .route("/executions/{id}", get(get_execution))
        .route("/executions/{id}/events", get(stream_events))
        .route("/executions/{id}/restart", post(restart))
        .route("/executions/{id}/steps/{step}/retry", post(retry_step))
        .route(
            "/agents/{id}/fallback",
            post(switch_fallback).delete(clear_fallback),
        )
        .route("/agents/{id}/disable", post(disable_agent))
        .route("/agents/{id}/enable", post(enable_agent))
        .route("/steps/{id}/timeout", post(increase_timeout))
        .route("/workers/scale", post(scale_workers))
        .route("/sim/faults", get(list_faults).post(add_fault))
        .route("/sim/faults/{name}", delete(remove_fault))
        .route("/sim/state", get(state))
        .route("/sim/catalog", get(catalog))
        .route("/sim/actions", get(actions))
        .with_state(AppState { sim, stop })
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, json!({ "error": message.into() }))
}

fn control_error(e: ControlError) -> Response {
    match e {
        ControlError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        ControlError::Conflict(m) => error(StatusCode::CONFLICT, m),
        ControlError::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
    }
}

/// An optional JSON body: empty means the defaults.
fn optional_body<T: for<'de> Deserialize<'de> + Default>(
    body: &Bytes,
) -> Result<T, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
}

/// Remembers a control action for `GET /sim/actions`.
fn record(sim: &Sim, action: &str, detail: Value) {
    let mut a = sim.actions.lock();
    a.push_back(json!({
        "at": sluice_core::time::format_rfc3339(sluice_core::time::from_unix_nanos(sim.now_unix_ns()), 6),
        "action": action,
        "detail": detail,
    }));
    while a.len() > 1000 {
        a.pop_front();
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

async fn list_executions(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let items = s.sim.world.lock().listing(limit, q.status.as_deref());
    json_response(StatusCode::OK, json!({ "executions": items }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    workflow_id: Option<String>,
}

async fn create_execution(State(s): State<AppState>, body: Bytes) -> Response {
    let b: CreateBody = match optional_body(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let (now_ms, now_ns) = (s.sim.now_ms(), s.sim.now_unix_ns());
    let mut w = s.sim.world.lock();
    let wf = match &b.workflow_id {
        Some(id) => match w.deployment.workflow(id) {
            Some((i, _)) => i,
            None => return error(StatusCode::NOT_FOUND, format!("unknown workflow {id:?}")),
        },
        None => w.pick_workflow(),
    };
    match w.start_execution(wf, now_ms, now_ns, 0, None, Default::default()) {
        Some(id) => json_response(StatusCode::CREATED, json!({ "execution_id": id })),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no worker or queue capacity",
        ),
    }
}

async fn get_execution(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.sim.world.lock().describe_execution(&id) {
        Some(v) => json_response(StatusCode::OK, v),
        None => error(StatusCode::NOT_FOUND, format!("unknown execution {id:?}")),
    }
}

/// `GET /executions/{id}/events`: every event after `Last-Event-ID` (1-based sequence), then
/// new ones as they happen; the stream ends after the terminal event.
async fn stream_events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(log) = s.sim.world.lock().log(&id) else {
        return error(StatusCode::NOT_FOUND, format!("unknown execution {id:?}"));
    };
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let keepalive = s.sim.cfg.keepalive;
    let stream = futures::stream::unfold(
        (log, from, s.stop.clone(), false),
        move |(log, cursor, mut stop, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = {
                    // Registered before looking, so an append in between is not missed.
                    let notified = log.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let finished = log.finished.load(std::sync::atomic::Ordering::SeqCst);
                    let (chunk, next) = frame_events(&log, cursor);
                    if !chunk.is_empty() {
                        let ended = finished && next >= log.events.read().len();
                        Next::Data(chunk, next, ended)
                    } else if finished {
                        Next::End
                    } else {
                        tokio::select! {
                            _ = &mut notified => Next::Again,
                            _ = tokio::time::sleep(keepalive) => Next::KeepAlive,
                            _ = stop.wait_for(|s| *s) => Next::End,
                        }
                    }
                };
                match next {
                    Next::Data(chunk, next, ended) => {
                        return Some((
                            Ok::<Bytes, std::convert::Infallible>(Bytes::from(chunk)),
                            (log, next, stop, ended),
                        ));
                    }
                    Next::KeepAlive => {
                        return Some((
                            Ok(Bytes::from_static(b": keep-alive\n\n")),
                            (log, cursor, stop, false),
                        ));
                    }
                    Next::End => return None,
                    Next::Again => {}
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot build the response",
            )
        })
}

enum Next {
    Data(String, usize, bool),
    KeepAlive,
    End,
    Again,
}

/// SSE frames for the events after `cursor`; returns the text and the new cursor.
fn frame_events(log: &ExecLog, cursor: usize) -> (String, usize) {
    let events = log.events.read();
    let Some(new) = events.get(cursor..) else {
        return (String::new(), cursor);
    };
    let mut out = String::new();
    for (i, e) in new.iter().enumerate() {
        out.push_str("id: ");
        out.push_str(&(cursor + i + 1).to_string());
        out.push_str("\ndata: ");
        out.push_str(e);
        out.push_str("\n\n");
    }
    (out, cursor + new.len())
}

async fn restart(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let (now_ms, now_ns) = (s.sim.now_ms(), s.sim.now_unix_ns());
    let result = s.sim.world.lock().restart(&id, now_ms, now_ns);
    match result {
        Ok(new) => {
            record(
                &s.sim,
                "restart_workflow",
                json!({"execution_id": id, "new_execution_id": new}),
            );
            json_response(
                StatusCode::ACCEPTED,
                json!({ "execution_id": new, "restarted_from": id }),
            )
        }
        Err(e) => control_error(e),
    }
}

async fn retry_step(
    State(s): State<AppState>,
    Path((id, step)): Path<(String, String)>,
) -> Response {
    let (now_ms, now_ns) = (s.sim.now_ms(), s.sim.now_unix_ns());
    let result = s.sim.world.lock().retry_step(&id, &step, now_ms, now_ns);
    match result {
        Ok(new) => {
            record(
                &s.sim,
                "retry_step",
                json!({"execution_id": id, "step_id": step, "new_execution_id": new}),
            );
            json_response(
                StatusCode::ACCEPTED,
                json!({ "execution_id": new, "resumed_from": id, "from_step": step }),
            )
        }
        Err(e) => control_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FallbackBody {
    fallback_agent_id: Option<String>,
}

async fn switch_fallback(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let b: FallbackBody = match optional_body(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let result = s
        .sim
        .world
        .lock()
        .switch_fallback(&id, b.fallback_agent_id.as_deref());
    match result {
        Ok(to) => {
            record(
                &s.sim,
                "switch_fallback",
                json!({"agent_id": id, "fallback_agent_id": to}),
            );
            json_response(
                StatusCode::OK,
                json!({ "agent_id": id, "fallback_agent_id": to }),
            )
        }
        Err(e) => control_error(e),
    }
}

async fn clear_fallback(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if s.sim.world.lock().clear_fallback(&id) {
        record(&s.sim, "clear_fallback", json!({"agent_id": id}));
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("agent {id:?} has no fallback switch"),
        )
    }
}

async fn disable_agent(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let result = s.sim.world.lock().disable_agent(&id);
    match result {
        Ok(()) => {
            record(&s.sim, "disable_agent", json!({"agent_id": id}));
            json_response(StatusCode::OK, json!({ "agent_id": id, "disabled": true }))
        }
        Err(e) => control_error(e),
    }
}

async fn enable_agent(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let result = s.sim.world.lock().enable_agent(&id);
    match result {
        Ok(()) => {
            record(&s.sim, "enable_agent", json!({"agent_id": id}));
            json_response(StatusCode::OK, json!({ "agent_id": id, "disabled": false }))
        }
        Err(e) => control_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimeoutBody {
    factor: Option<f64>,
    timeout_ms: Option<f64>,
}

async fn increase_timeout(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let b: TimeoutBody = match optional_body(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let result = s
        .sim
        .world
        .lock()
        .increase_timeout(&id, b.factor, b.timeout_ms);
    match result {
        Ok(ms) => {
            record(
                &s.sim,
                "increase_timeout",
                json!({"step_id": id, "timeout_ms": ms}),
            );
            json_response(StatusCode::OK, json!({ "step_id": id, "timeout_ms": ms }))
        }
        Err(e) => control_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    workers: Option<u32>,
    delta: Option<i64>,
}

async fn scale_workers(State(s): State<AppState>, body: Bytes) -> Response {
    let b: ScaleBody = match optional_body(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let now_ms = s.sim.now_ms();
    let result = s.sim.world.lock().scale_workers(b.workers, b.delta, now_ms);
    match result {
        Ok(n) => {
            record(&s.sim, "scale_workers", json!({"workers": n}));
            json_response(StatusCode::OK, json!({ "workers": n }))
        }
        Err(e) => control_error(e),
    }
}

async fn list_faults(State(s): State<AppState>) -> Response {
    let faults = s.sim.world.lock().faults().clone();
    let list: Vec<Value> = faults
        .into_iter()
        .map(|(name, kind)| {
            let mut v = serde_json::to_value(kind).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert("name".into(), json!(name));
            }
            v
        })
        .collect();
    json_response(StatusCode::OK, json!({ "faults": list }))
}

async fn add_fault(State(s): State<AppState>, body: Bytes) -> Response {
    let mut value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let name = value
        .as_object_mut()
        .and_then(|o| o.remove("name"))
        .and_then(|v| v.as_str().map(str::to_owned));
    let kind: FaultKind = match serde_json::from_value(value) {
        Ok(k) => k,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{e}; kinds: agent_failing{{agent_id, probability}}, latency_spike{{step_id, factor}}, cost_surge{{agent_id, factor}}, provider_timeout{{provider}}"
                ),
            );
        }
    };
    let result = s.sim.world.lock().add_fault(name, kind.clone());
    match result {
        Ok(name) => {
            record(&s.sim, "add_fault", json!({"name": name, "fault": kind}));
            json_response(StatusCode::CREATED, json!({ "name": name }))
        }
        Err(e) => control_error(e),
    }
}

async fn remove_fault(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    if s.sim.world.lock().remove_fault(&name) {
        record(&s.sim, "remove_fault", json!({"name": name}));
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no fault named {name:?}"))
    }
}

async fn state(State(s): State<AppState>) -> Response {
    let mut v = s.sim.world.lock().state();
    if let Value::Object(o) = &mut v {
        o.insert(
            "push_dropped".into(),
            json!(
                s.sim
                    .push_dropped
                    .load(std::sync::atomic::Ordering::Relaxed)
            ),
        );
    }
    json_response(StatusCode::OK, v)
}

async fn catalog(State(s): State<AppState>) -> Response {
    let c = serde_json::to_value(&s.sim.world.lock().deployment).unwrap_or(Value::Null);
    json_response(StatusCode::OK, c)
}

async fn actions(State(s): State<AppState>) -> Response {
    let a: Vec<Value> = s.sim.actions.lock().iter().cloned().collect();
    json_response(StatusCode::OK, json!({ "actions": a }))
}
