//! A small Tempo stand-in: takes OTLP/HTTP protobuf traces on `POST /v1/traces` and answers
//! Tempo's query API the way the watcher uses it: `GET /api/traces/<hex id>` (v1 JSON with
//! `batches`, ids and times as Tempo prints them) and `GET /api/search?tags=k=v&limit=`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use parking_lot::Mutex;
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Spans kept at most (oldest dropped).
const MAX_SPANS: usize = 300_000;

#[derive(Clone)]
struct StoredSpan {
    trace_id: String,
    span_id: String,
    service: String,
    name: String,
    start_ns: u64,
    end_ns: u64,
    status_code: i32,
    status_message: String,
    attrs: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
pub struct TempoTestServer {
    spans: Arc<Mutex<std::collections::VecDeque<StoredSpan>>>,
    pub lookups: Arc<Mutex<usize>>,
}

fn s(v: &opentelemetry_proto::tonic::common::v1::AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(x)) => x.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        _ => String::new(),
    }
}

async fn ingest(State(t): State<TempoTestServer>, body: Bytes) -> Response {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "bad protobuf").into_response();
    };
    let mut spans = t.spans.lock();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .map(s)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for sp in ss.spans {
                spans.push_back(StoredSpan {
                    trace_id: hex::encode(&sp.trace_id),
                    span_id: hex::encode(&sp.span_id),
                    service: service.clone(),
                    name: sp.name,
                    start_ns: sp.start_time_unix_nano,
                    end_ns: sp.end_time_unix_nano,
                    status_code: sp.status.as_ref().map(|s| s.code).unwrap_or(0),
                    status_message: sp.status.map(|s| s.message).unwrap_or_default(),
                    attrs: sp
                        .attributes
                        .iter()
                        .filter_map(|kv| Some((kv.key.clone(), s(kv.value.as_ref()?))))
                        .collect(),
                });
                if spans.len() > MAX_SPANS {
                    spans.pop_front();
                }
            }
        }
    }
    StatusCode::OK.into_response()
}

async fn trace(State(t): State<TempoTestServer>, Path(id): Path<String>) -> Response {
    *t.lookups.lock() += 1;
    let id = id.to_ascii_lowercase();
    let found: Vec<StoredSpan> = t
        .spans
        .lock()
        .iter()
        .filter(|s| s.trace_id == id)
        .cloned()
        .collect();
    if found.is_empty() {
        return (StatusCode::NOT_FOUND, "trace not found").into_response();
    }
    let mut by_service: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for sp in found {
        by_service.entry(sp.service.clone()).or_default().push(json!({
            "traceId": sp.trace_id, "spanId": sp.span_id, "name": sp.name,
            "startTimeUnixNano": sp.start_ns.to_string(), "endTimeUnixNano": sp.end_ns.to_string(),
            "attributes": sp.attrs.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
            "status": if sp.status_code == 2 { json!({"code": 2, "message": sp.status_message}) } else { json!({}) },
        }));
    }
    let batches: Vec<Value> = by_service
        .into_iter()
        .map(|(svc, spans)| {
            json!({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                   "scopeSpans": [{"scope": {"name": "awf"}, "spans": spans}]})
        })
        .collect();
    axum::Json(json!({ "batches": batches })).into_response()
}

async fn search(
    State(t): State<TempoTestServer>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let want: Vec<(String, String)> = q
        .get("tags")
        .map(|tags| {
            tags.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut seen = Vec::new();
    for sp in t.spans.lock().iter().rev() {
        if want.iter().all(|(k, v)| sp.attrs.get(k) == Some(v))
            && !seen
                .iter()
                .any(|x: &Value| x["traceID"] == sp.trace_id.as_str())
        {
            seen.push(
                json!({"traceID": sp.trace_id, "rootServiceName": sp.service,
                "startTimeUnixNano": sp.start_ns.to_string(),
                "durationMs": sp.end_ns.saturating_sub(sp.start_ns) / 1_000_000}),
            );
            if seen.len() >= limit {
                break;
            }
        }
    }
    axum::Json(json!({ "traces": seen })).into_response()
}

impl TempoTestServer {
    pub async fn start() -> (String, TempoTestServer) {
        let t = TempoTestServer::default();
        let app = Router::new()
            .route("/v1/traces", axum::routing::post(ingest))
            .route("/api/traces/{id}", axum::routing::get(trace))
            .route("/api/search", axum::routing::get(search))
            .with_state(t.clone());
        let (addr, _h) = super::serve(app).await;
        (format!("http://{addr}"), t)
    }
}
