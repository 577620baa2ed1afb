//! A small client for mcp-grafana over MCP streamable HTTP (protocol 2025-11-25), used as an
//! optional extra investigation source.
//!
//! `initialize` → `notifications/initialized` → `tools/call`, echoing `Mcp-Session-Id` and
//! `MCP-Protocol-Version`; a reply may be JSON or an SSE stream; a 404 means the session
//! expired and the call is retried once on a new one. No `Origin` header is sent.

use serde_json::{Value, json};
use sluice_http_client::body::read_body;
use sluice_http_client::sse::{SseParser, is_event_stream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// Cap on one reply body (JSON or the whole event stream).
const MAX_REPLY_BYTES: usize = 4 << 20;

pub struct McpClient {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    prometheus_uid: String,
    session: tokio::sync::Mutex<Option<String>>,
    next_id: AtomicU64,
    timeout: Duration,
}

enum CallError {
    SessionExpired,
    Other(String),
}

impl McpClient {
    /// A client whose every request ends within `timeout` (the watcher's `source_timeout`).
    pub fn new(
        url: &str,
        token: Option<String>,
        prometheus_uid: &str,
        timeout: Duration,
    ) -> anyhow::Result<McpClient> {
        Ok(McpClient {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| anyhow::anyhow!("mcp_url: building the HTTP client: {e}"))?,
            url: url.to_owned(),
            token,
            prometheus_uid: prometheus_uid.to_owned(),
            session: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
            timeout,
        })
    }

    /// A failed request, saying so when it was the timeout (reqwest's message does not).
    fn failed(&self, step: &str, e: reqwest::Error) -> String {
        if e.is_timeout() {
            format!(
                "mcp {step}: timed out (no answer within {:?})",
                self.timeout
            )
        } else {
            format!("mcp {step}: {e}")
        }
    }

    fn request(&self, session: Option<&str>) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json");
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = session {
            r = r
                .header("Mcp-Session-Id", s)
                .header("MCP-Protocol-Version", PROTOCOL_VERSION);
        }
        r
    }

    async fn open_session(&self) -> Result<Option<String>, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let init = json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "sluice-watcher", "version": env!("CARGO_PKG_VERSION")}}});
        let resp = self
            .request(None)
            .json(&init)
            .send()
            .await
            .map_err(|e| self.failed("initialize", e))?;
        if !resp.status().is_success() {
            return Err(format!("mcp initialize: HTTP {}", resp.status()));
        }
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let reply = read_reply(resp, id).await?;
        if let Some(e) = reply.get("error") {
            return Err(format!("mcp initialize: {e}"));
        }
        let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        let r = self
            .request(session.as_deref())
            .json(&note)
            .send()
            .await
            .map_err(|e| self.failed("initialized", e))?;
        if !r.status().is_success() {
            return Err(format!("mcp initialized: HTTP {}", r.status()));
        }
        Ok(session)
    }

    async fn call_once(
        &self,
        session: Option<&str>,
        method: &str,
        params: &Value,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        let resp = self
            .request(session)
            .json(&msg)
            .send()
            .await
            .map_err(|e| CallError::Other(self.failed(method, e)))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(CallError::SessionExpired);
        }
        if !resp.status().is_success() {
            return Err(CallError::Other(format!(
                "mcp {method}: HTTP {}",
                resp.status()
            )));
        }
        let reply = read_reply(resp, id).await.map_err(CallError::Other)?;
        if let Some(e) = reply.get("error") {
            return Err(CallError::Other(format!("mcp {method}: {e}")));
        }
        Ok(reply["result"].clone())
    }

    /// One JSON-RPC call, re-initializing once if the session expired.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let mut guard = self.session.lock().await;
        if guard.is_none() {
            *guard = Some(self.open_session().await?.unwrap_or_default());
        }
        let s = guard.clone().filter(|s| !s.is_empty());
        match self.call_once(s.as_deref(), method, &params).await {
            Ok(v) => Ok(v),
            Err(CallError::SessionExpired) => {
                let fresh = self.open_session().await?.unwrap_or_default();
                *guard = Some(fresh.clone());
                let s = Some(fresh).filter(|s| !s.is_empty());
                match self.call_once(s.as_deref(), method, &params).await {
                    Ok(v) => Ok(v),
                    Err(CallError::SessionExpired) => Err(format!("mcp {method}: session refused")),
                    Err(CallError::Other(e)) => Err(e),
                }
            }
            Err(CallError::Other(e)) => Err(e),
        }
    }

    /// `query_prometheus` (instant, now); returns the tool's text content.
    pub async fn query_prometheus(&self, expr: &str) -> Result<String, String> {
        let r = self
            .call(
                "tools/call",
                json!({"name":"query_prometheus","arguments":{
                    "datasourceUid": self.prometheus_uid, "expr": expr,
                    "queryType": "instant", "endTime": "now"}}),
            )
            .await?;
        let text = r["content"]
            .as_array()
            .and_then(|c| c.iter().find_map(|x| x["text"].as_str()))
            .unwrap_or_default()
            .to_owned();
        if r["isError"].as_bool() == Some(true) {
            return Err(format!("query_prometheus: {text}"));
        }
        Ok(text)
    }
}

/// The JSON-RPC response with `id`, from a JSON body or an SSE stream.
async fn read_reply(resp: reqwest::Response, id: u64) -> Result<Value, String> {
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_event_stream);
    let body = read_body(resp, MAX_REPLY_BYTES)
        .await
        .map_err(|e| format!("mcp: {e}"))?;
    if !is_sse {
        return serde_json::from_slice(&body).map_err(|e| format!("mcp: invalid JSON: {e}"));
    }
    let mut events = Vec::new();
    SseParser::with_limits(MAX_REPLY_BYTES, MAX_REPLY_BYTES).feed(&body, &mut events);
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find(|v| v["id"].as_u64() == Some(id))
        .ok_or_else(|| "mcp: no response in the event stream".into())
}
