//! The watcher's HTTP routes (mounted on the collector's admin server).
//!
//! * `POST /webhooks/grafana-alerts`, `POST /webhooks/alertmanager` — webhook auth (bearer,
//!   basic or HMAC); 401 and nothing processed without it; 2xx only once durably queued.
//! * Approver token (`Authorization: Bearer`) on everything else: `GET /approvals/pending`,
//!   `GET /approvals/{id}`, `POST /approvals/{id}/approve`, `POST /approvals/{id}/reject`,
//!   `GET /watcher/incidents`, `GET /watcher/incidents/{id}`, `GET /watcher/status`,
//!   `POST /watcher/kill-switch`.

use crate::alert::{AlertSource, WebhookPayload};
use crate::engine::Shared;
use crate::stats;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/webhooks/grafana-alerts", post(grafana_webhook))
        .route("/webhooks/alertmanager", post(alertmanager_webhook))
        .route("/approvals/pending", get(pending))
        .route("/approvals/{id}", get(get_approval))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/reject", post(reject))
        .route("/watcher/incidents", get(incidents))
        .route("/watcher/incidents/{id}", get(incident))
        .route("/watcher/status", get(status))
        .route("/watcher/kill-switch", post(kill_switch))
        .with_state(shared)
}

fn answer(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn unauthorized(realm: &str) -> Response {
    let mut r = answer(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
    if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"")) {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    r
}

async fn grafana_webhook(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    webhook(s, AlertSource::Grafana, headers, body).await
}

async fn alertmanager_webhook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    webhook(s, AlertSource::Alertmanager, headers, body).await
}

async fn webhook(s: Arc<Shared>, source: AlertSource, headers: HeaderMap, body: Body) -> Response {
    let limit = s.cfg.max_body_size.as_usize();
    let Ok(raw) = axum::body::to_bytes(body, limit).await else {
        stats::webhook_refused(&s.component_id, "too_large");
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("body larger than {limit} bytes")}),
        );
    };
    let now_s = crate::alert::now_ms() / 1000;
    if let Err(e) = s.intake_auth.check(&headers, &raw, now_s) {
        stats::webhook_refused(&s.component_id, e.reason());
        if s.audit_refusal_allowed() {
            s.audit
                .log(
                    "webhook_refused",
                    None,
                    json!({"source": source.as_str(), "reason": e.reason()}),
                )
                .await;
        }
        return unauthorized("sluice-watcher-webhook");
    }
    let payload = match WebhookPayload::from_json(&raw) {
        Ok(p) => p,
        Err(e) => {
            stats::webhook_refused(&s.component_id, "malformed");
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("not a Grafana/Alertmanager webhook payload: {e}")}),
            );
        }
    };
    if payload.truncated_alerts.is_some_and(|n| n > 0) {
        tracing::warn!(
            truncated = payload.truncated_alerts,
            "watcher: the sender truncated alerts (raise max_alerts on the contact point)"
        );
    }
    match s.intake(source, payload).await {
        Ok(summary) => answer(
            StatusCode::OK,
            json!({"status": "queued", "summary": summary}),
        ),
        // 5xx: Alertmanager retries it; Grafana redelivers at the next group_interval.
        Err(e) => {
            stats::webhook_refused(&s.component_id, "not_durable");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            )
        }
    }
}

macro_rules! approver {
    ($s:expr, $headers:expr) => {
        match $s.approver_auth.identify(&$headers) {
            Some(name) => name,
            None => return unauthorized("sluice-watcher-approvals"),
        }
    };
}

async fn pending(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let _who = approver!(s, headers);
    answer(StatusCode::OK, json!({"approvals": s.pending_approvals()}))
}

async fn get_approval(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let _who = approver!(s, headers);
    match s.approval(&id) {
        Some(a) => answer(StatusCode::OK, json!(a)),
        None => answer(StatusCode::NOT_FOUND, json!({"error": "no such approval"})),
    }
}

#[derive(Deserialize, Default)]
struct DecisionBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Deserialize, Default)]
struct DecisionQuery {
    #[serde(default)]
    reason: Option<String>,
}

/// The optional JSON body of approve/reject (empty is fine).
fn decision_body(raw: &[u8]) -> Result<DecisionBody, Box<Response>> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecisionBody::default());
    }
    serde_json::from_slice(raw).map_err(|e| {
        Box::new(answer(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("invalid JSON body: {e}")}),
        ))
    })
}

async fn approve(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let who = approver!(s, headers);
    let b = match decision_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match s.approve(&id, &who, b.comment.or(b.reason)).await {
        Ok(a) => answer(StatusCode::OK, json!(a)),
        Err((code, msg)) => answer(code, json!({"error": msg})),
    }
}

async fn reject(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DecisionQuery>,
    body: axum::body::Bytes,
) -> Response {
    let who = approver!(s, headers);
    let b = match decision_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match s
        .reject(&id, &who, b.reason.or(q.reason).or(b.comment))
        .await
    {
        Ok(a) => answer(StatusCode::OK, json!(a)),
        Err((code, msg)) => answer(code, json!({"error": msg})),
    }
}

#[derive(Deserialize)]
struct IncidentQuery {
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn incidents(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<IncidentQuery>,
) -> Response {
    let _who = approver!(s, headers);
    let mut list: Vec<crate::store::Incident> = {
        let st = s.state.lock();
        st.incidents
            .values()
            .filter(|i| q.stage.as_deref().is_none_or(|w| i.stage.as_str() == w))
            .map(crate::store::Incident::redacted)
            .collect()
    };
    list.sort_by_key(|i| std::cmp::Reverse(i.received_at_ms));
    list.truncate(q.limit.unwrap_or(100).min(1000));
    answer(StatusCode::OK, json!({"incidents": list}))
}

async fn incident(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let _who = approver!(s, headers);
    let found = s.state.lock().incidents.get(&id).map(|i| i.redacted());
    match found {
        Some(i) => answer(StatusCode::OK, json!(i)),
        None => answer(StatusCode::NOT_FOUND, json!({"error": "no such incident"})),
    }
}

async fn status(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let _who = approver!(s, headers);
    let st = s.state.lock();
    let mut by_stage = std::collections::BTreeMap::<&str, usize>::new();
    for i in st.incidents.values() {
        *by_stage.entry(i.stage.as_str()).or_default() += 1;
    }
    answer(
        StatusCode::OK,
        json!({
            "kill_switch": st.kill_switch,
            "dry_run": s.cfg.dry_run,
            "incidents": by_stage,
            "pending_approvals": st.approvals.values()
                .filter(|a| a.state == crate::store::ApprovalState::Pending).count(),
            "window_observations": s.window.len(),
            "scripts": s.catalogue.scripts.keys().collect::<Vec<_>>(),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillSwitchBody {
    engaged: bool,
}

async fn kill_switch(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = approver!(s, headers);
    let b: KillSwitchBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("expected {{\"engaged\": true|false}}: {e}")}),
            );
        }
    };
    match s.set_kill_switch(b.engaged, &who).await {
        Ok(()) => answer(StatusCode::OK, json!({"kill_switch": b.engaged, "by": who})),
        Err(e) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": format!("cannot record it: {e}")}),
        ),
    }
}
