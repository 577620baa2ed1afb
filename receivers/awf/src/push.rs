//! The push endpoint: AWF nodes `POST` events (one JSON object, an array, or NDJSON) to
//! their Sluice sidecar. The answer follows the pipeline: 200 once delivered, 400 for
//! malformed input (with a message), 401 without the configured token, 413 for a body over
//! `max_event_size`, 429 + `Retry-After` when the pipeline is full, 503 when it is
//! unavailable.

use crate::config::PushConfig;
use crate::deliver::{Mode, Shared};
use crate::event::{EventParseError, WorkflowEvent, parse_event_values};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use sluice_core::{Refusal, telemetry};
use sluice_http_server::Authenticator;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a push request keeps retrying the rest of its conversion after part of it was
/// accepted (answering 429 then would make the client resend the accepted part).
const PARTIAL_RETRY: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct PushState {
    shared: Arc<Shared>,
    auth: Option<Arc<Authenticator>>,
}

/// The push router, with its body limit.
pub fn router(shared: Arc<Shared>, cfg: &PushConfig, max_body_bytes: usize) -> Router {
    let state = PushState {
        shared,
        auth: cfg.auth().map(|auth| Arc::new(Authenticator::new(&auth))),
    };
    Router::new()
        .route(&cfg.path, axum::routing::post(handle))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn handle(State(state): State<PushState>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let response = answer(&state, &headers, body).await;
    telemetry::receiver_request(
        state.shared.component_id(),
        "awf_push",
        response.status().as_u16().to_string(),
        started.elapsed(),
    );
    response
}

async fn answer(state: &PushState, headers: &HeaderMap, body: Bytes) -> Response {
    let shared = &state.shared;
    if let Some(auth) = &state.auth
        && let Err(refusal) = auth.check(headers, None)
    {
        telemetry::receiver_refused(shared.component_id(), None, refusal.reason(), 1);
        return error(StatusCode::UNAUTHORIZED, refusal.message());
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let ndjson = content_type.contains("ndjson") || content_type.contains("jsonlines");
    if !content_type.contains("json") {
        telemetry::receiver_refused(
            shared.component_id(),
            None,
            sluice_core::reason::UNSUPPORTED_MEDIA_TYPE,
            1,
        );
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json (one event or an array) or application/x-ndjson",
        );
    }
    let events = match parse_body(&body, ndjson) {
        Ok(e) => e,
        Err(e) => {
            telemetry::receiver_refused(shared.component_id(), None, "malformed", 1);
            shared.count_dropped("malformed", 1);
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let total = events.len();
    match shared
        .ingest(
            events,
            "push",
            Mode::Push {
                max_wait: PARTIAL_RETRY,
            },
        )
        .await
    {
        Ok(stats) => (
            StatusCode::OK,
            axum::Json(json!({
                "accepted": total as u64 - stats.duplicates,
                "duplicates": stats.duplicates,
            })),
        )
            .into_response(),
        Err(refusal) => refusal_response(&refusal),
    }
}

/// The events of a push body: one JSON event or array, or (`ndjson`) one per line.
pub fn parse_body(body: &[u8], ndjson: bool) -> Result<Vec<WorkflowEvent>, EventParseError> {
    if !ndjson {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| EventParseError::Json(e.to_string()))?;
        return parse_event_values(value);
    }
    let mut out = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| EventParseError::Json(format!("line {}: {e}", i + 1)))?;
        out.extend(
            parse_event_values(value)
                .map_err(|e| EventParseError::Json(format!("line {}: {e}", i + 1)))?,
        );
    }
    Ok(out)
}

/// Maps a pipeline refusal to the HTTP answer (brief: 429 + Retry-After, 503, 404, 400).
pub fn refusal_response(refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::Backpressure { .. } => StatusCode::TOO_MANY_REQUESTS,
        Refusal::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::NoPipeline(_) => StatusCode::NOT_FOUND,
        Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    let mut response = error(status, &refusal.to_string());
    if let Refusal::Backpressure { retry_after, .. } = refusal {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            response.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(parse_body(br#"{"type":"a"}"#, false).unwrap().len(), 1);
        assert_eq!(
            parse_body(br#"[{"type":"a"},{"type":"b"}]"#, false)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            parse_body(b"{\"type\":\"a\"}\n\n{\"type\":\"b\"}\n", true)
                .unwrap()
                .len(),
            2
        );
        let err = parse_body(b"{\"type\":\"a\"}\n{oops\n", true).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_body(b"", false).is_err());
        assert!(parse_body(b"[1]", false).is_err());
    }

    #[test]
    fn refusals_map_to_statuses() {
        let r = refusal_response(&Refusal::Backpressure {
            reason: "spool_full",
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get(RETRY_AFTER).unwrap(), "2");
        let r = refusal_response(&Refusal::Unavailable {
            reason: "stopping",
            message: "bye".into(),
        });
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            refusal_response(&Refusal::NoPipeline(sluice_core::Signal::Logs)).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            refusal_response(&Refusal::Invalid("x".into())).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
