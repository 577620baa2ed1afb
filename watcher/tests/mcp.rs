//! The optional mcp-grafana source against a server that behaves like mcp-go's streamable
//! HTTP transport: session id on `initialize`, 404 for an expired session (the client must
//! re-initialize), SSE-framed replies, `Origin` refused, bearer token required.

mod support;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::*;

#[derive(Default)]
struct Mcp {
    sessions: u32,
    current: Option<String>,
    /// Expire the session once, at the first tool call.
    expired_once: bool,
    calls: Vec<Value>,
}

async fn mcp(State(m): State<Arc<Mutex<Mcp>>>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.contains_key("origin") {
        return (StatusCode::FORBIDDEN, "forbidden: origin").into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer mcp-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut st = m.lock();
    let session = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
    match msg["method"].as_str() {
        Some("initialize") => {
            assert_eq!(msg["params"]["protocolVersion"], "2025-11-25");
            st.sessions += 1;
            let id = format!("mcp-session-{}", st.sessions);
            st.current = Some(id.clone());
            let mut r = axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
                "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                "serverInfo": {"name": "mcp-grafana", "version": "1.1.0"}}}))
            .into_response();
            r.headers_mut()
                .insert("mcp-session-id", id.parse().unwrap());
            r
        }
        _ if session.is_none() || session != st.current.as_deref() => {
            (StatusCode::NOT_FOUND, "Invalid session ID").into_response()
        }
        Some("notifications/initialized") => StatusCode::ACCEPTED.into_response(),
        Some("tools/call") => {
            assert_eq!(
                headers
                    .get("mcp-protocol-version")
                    .and_then(|v| v.to_str().ok()),
                Some("2025-11-25")
            );
            if !st.expired_once {
                st.expired_once = true;
                st.current = None;
                return (StatusCode::NOT_FOUND, "Session terminated").into_response();
            }
            st.calls.push(msg.clone());
            let text = json!({"data": {"resultType": "vector", "result": [
                {"metric": {"agent_id": "researcher"}, "value": [1, "7"]}]}})
            .to_string();
            let reply = json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
                "content": [{"type": "text", "text": text}], "isError": false}});
            // mcp-go switches to SSE when a notification precedes the reply.
            let sse = format!(
                "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\r\n\r\nevent: message\r\ndata: {reply}\r\n\r\n"
            );
            ([("content-type", "text/event-stream")], sse).into_response()
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[tokio::test]
async fn mcp_grafana_is_queried_with_session_handling() {
    let state = Arc::new(Mutex::new(Mcp::default()));
    let app = Router::new()
        .route("/mcp", axum::routing::post(mcp))
        .with_state(state.clone());
    let (addr, _h) = serve(app).await;
    let (awf, _rec) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "mcp_url = \"http://{addr}/mcp\"\nmcp_token = \"mcp-token\"\nmcp_prometheus_uid = \"prom-uid\""
    );
    let h = Harness::start(&config(&awf, &extra), dir.path()).await;
    let a = grafana_alert(
        "firing",
        &[("alertname", "AwfAgentFailing"), ("agent_id", "researcher")],
        &[(
            "watcher_query",
            "sum by (agent_id) (rate(failures[5m])) > 1",
        )],
        &rfc3339_now(),
        "fp-mcp",
    );
    let (_, v) = h
        .post_alerts("/webhooks/grafana-alerts", &grafana_payload(vec![a]))
        .await;
    let id = v["summary"]["incidents"][0].as_str().unwrap().to_owned();
    let inc = h.wait_stage(&id, "closed", Duration::from_secs(5)).await;
    let ev = inc["finding"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "mcp-grafana")
        .cloned()
        .unwrap_or_else(|| panic!("no mcp evidence: {inc:#}"));
    assert!(
        ev["result"][0].as_str().unwrap().contains("researcher"),
        "{ev}"
    );
    let (sessions, call) = {
        let st = state.lock();
        (st.sessions, st.calls[0].clone())
    };
    assert_eq!(sessions, 2, "re-initialized after the 404");
    assert_eq!(call["params"]["name"], "query_prometheus");
    assert_eq!(call["params"]["arguments"]["datasourceUid"], "prom-uid");
    assert_eq!(call["params"]["arguments"]["queryType"], "instant");
    let mcp_check = inc["finding"]["checked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "mcp-grafana")
        .cloned()
        .unwrap();
    assert_eq!(mcp_check["status"], "ok");
    h.stop().await;
}

/// `source_timeout` reaches the MCP client: a server that never answers costs one timeout,
/// reported as such, instead of holding the investigation.
#[tokio::test]
async fn mcp_client_gives_up_after_its_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            std::future::pending::<()>().await;
            StatusCode::OK
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = sluice_watcher::mcp::McpClient::new(
        &url,
        Some("mcp-token".into()),
        "prom",
        Duration::from_millis(200),
    )
    .unwrap();
    // The outer bound only keeps a broken build from hanging the suite.
    let result = tokio::time::timeout(Duration::from_secs(60), client.query_prometheus("up"))
        .await
        .expect("the client's own timeout must end the call");
    let err = result.unwrap_err().to_string();
    assert!(err.contains("mcp initialize: timed out"), "{err}");
}
