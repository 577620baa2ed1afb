//! Loki test backend that decodes pushes exactly as Loki's distributor does and records the
//! streams it would store.
//!
//! [`LokiTestServer`] listens on an ephemeral 127.0.0.1 port:
//! * `POST /loki/api/v1/push`: protobuf `logproto.PushRequest` (any content type but
//!   `application/json`) whose body is **always** snappy-block compressed, or the JSON form
//!   (timestamps must be strings). `Content-Encoding` may be empty, `snappy` (ignored), `gzip`
//!   or `deflate`; anything else is 400. The messages are decoded with this file's own prost
//!   structs, written from Loki's `push.proto` field numbers.
//! * `POST /otlp/v1/logs`: Loki 3's native OTLP ingestion (protobuf or JSON, optional gzip),
//!   mapped to streams as Loki does (index labels from a fixed resource-attribute list, the
//!   rest as structured metadata); the decoded requests are also kept for pass-through checks.
//! * `X-Scope-OrgID` is required (401 `no org id`) unless auth is disabled, then the tenant is
//!   `fake`.
//! * Validation per stream as in Loki: label-string syntax and names, at most 15 label names
//!   (`service_name` not counted), name/value lengths, line size, sample age, and the
//!   out-of-order window (an entry older than the stream's newest − 1 h is refused as
//!   `too_far_behind`). Refused streams/entries make the answer 400 with Loki's message
//!   while the valid ones are stored — exactly what makes a Loki 400 unsafe to retry.
//!
//! Answers can be scripted ([`LokiTestServer::respond_with`]), and the server can be stopped
//! and restarted on the same port.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use parking_lot::Mutex;
use prost::Message;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// Loki's wire messages (`pkg/push/push.proto`), independent of the exporter's copy.
pub mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
        /// Loki-internal; clients leave it empty.
        #[prost(string, tag = "2")]
        pub format: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        /// Loki-internal.
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<prost_types::Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
        /// Query path only.
        #[prost(message, repeated, tag = "4")]
        pub parsed: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// Loki's per-tenant limits and switches that the server enforces.
#[derive(Debug, Clone)]
pub struct LokiServerOptions {
    /// `auth_enabled`: require `X-Scope-OrgID` (401 `no org id`). Off: every push is tenant
    /// `fake`.
    pub auth_enabled: bool,
    /// `max_line_size`; 0 disables.
    pub max_line_size: usize,
    /// `max_label_names_per_series` (`service_name` not counted).
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// `max_chunk_age / 2`: how far behind a stream's newest entry an entry may be.
    pub out_of_order_window: Duration,
    /// `reject_old_samples_max_age` (None: `reject_old_samples: false`).
    pub reject_old_samples_max_age: Option<Duration>,
    /// `creation_grace_period`: how far in the future an entry may be.
    pub creation_grace_period: Option<Duration>,
    /// Largest accepted body after decompression.
    pub max_body_size: usize,
}

impl Default for LokiServerOptions {
    fn default() -> Self {
        LokiServerOptions {
            auth_enabled: true,
            max_line_size: 256 * 1024,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            out_of_order_window: Duration::from_secs(3600),
            reject_old_samples_max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            creation_grace_period: Some(Duration::from_secs(600)),
            max_body_size: 100 << 20,
        }
    }
}

/// An answer the server gives instead of processing a push.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedResponse {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

impl ScriptedResponse {
    /// 429 as Loki's rate limiter answers, with an optional `Retry-After`.
    pub fn too_many_requests(retry_after: Option<&str>) -> Self {
        ScriptedResponse {
            status: 429,
            body: "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while \
                   attempting to ingest '1' lines totaling '10' bytes, reduce log volume or \
                   contact your Loki administrator to see if the limit can be increased"
                .into(),
            retry_after: retry_after.map(str::to_owned),
        }
    }
    pub fn server_error(status: u16) -> Self {
        ScriptedResponse {
            status,
            body: "internal server error".into(),
            retry_after: None,
        }
    }
    pub fn bad_request(body: &str) -> Self {
        ScriptedResponse {
            status: 400,
            body: body.into(),
            retry_after: None,
        }
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiEntry {
    pub timestamp_ns: i64,
    pub line: String,
    /// In the order sent.
    pub structured_metadata: Vec<(String, String)>,
}

impl LokiEntry {
    pub fn metadata(&self, name: &str) -> Option<&str> {
        self.structured_metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One stored stream: its parsed labels and entries in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiStream {
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    pub entries: Vec<LokiEntry>,
}

impl LokiStream {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
    pub fn lines(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.line.as_str()).collect()
    }
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRecord {
    pub path: String,
    pub tenant: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    /// The response body (Loki's error text).
    pub response: String,
    /// Entries stored from this request.
    pub stored_entries: usize,
}

struct StoredStream {
    labels: BTreeMap<String, String>,
    entries: Vec<LokiEntry>,
    newest_ns: i64,
    seen: HashSet<(i64, String)>,
}

#[derive(Default)]
struct State {
    /// tenant → canonical label string → stream.
    tenants: BTreeMap<String, BTreeMap<String, StoredStream>>,
    script: VecDeque<ScriptedResponse>,
    pushes: Vec<PushRecord>,
    otlp_requests: Vec<ExportLogsServiceRequest>,
}

struct Shared {
    options: Mutex<LokiServerOptions>,
    state: Mutex<State>,
    changed: Notify,
}

/// A Loki stand-in for tests. See the module docs for what it checks.
pub struct LokiTestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl LokiTestServer {
    /// Starts with Loki's default limits and auth enabled.
    pub async fn start() -> LokiTestServer {
        Self::start_with(LokiServerOptions::default()).await
    }

    pub async fn start_with(options: LokiServerOptions) -> LokiTestServer {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            options: Mutex::new(options),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        LokiTestServer {
            addr,
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/loki/api/v1/push`
    pub fn push_url(&self) -> String {
        format!("http://{}/loki/api/v1/push", self.addr)
    }

    /// `http://127.0.0.1:PORT/otlp/v1/logs`
    pub fn otlp_url(&self) -> String {
        format!("http://{}/otlp/v1/logs", self.addr)
    }

    /// Changes the enforced limits from now on.
    pub fn set_options(&self, options: LokiServerOptions) {
        *self.shared.options.lock() = options;
    }

    /// Answers the next `times` requests with `response` instead of processing them.
    pub fn respond_with(&self, response: ScriptedResponse, times: usize) {
        let mut state = self.shared.state.lock();
        state.script.extend(std::iter::repeat_n(response, times));
    }

    /// Closes the listener and every open connection (clients see connection errors).
    pub async fn stop(&self) {
        let task = self.task.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port, keeping what was stored.
    pub async fn restart(&self) {
        self.stop().await;
        let mut last_err = None;
        for _ in 0..50 {
            match bind(self.addr) {
                Ok(listener) => {
                    *self.task.lock() = Some(tokio::spawn(serve(listener, self.shared.clone())));
                    return;
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        panic!("cannot rebind {}: {last_err:?}", self.addr);
    }

    /// Streams stored for `tenant`, sorted by labels.
    pub fn streams(&self, tenant: &str) -> Vec<LokiStream> {
        let state = self.shared.state.lock();
        state
            .tenants
            .get(tenant)
            .map(|streams| {
                streams
                    .values()
                    .map(|s| LokiStream {
                        tenant: tenant.to_owned(),
                        labels: s.labels.clone(),
                        entries: s.entries.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tenants that have stored streams.
    pub fn tenants(&self) -> Vec<String> {
        self.shared.state.lock().tenants.keys().cloned().collect()
    }

    /// Entries of every stream (any tenant) whose labels include all of `labels`, by time.
    pub fn entries_for(&self, labels: &[(&str, &str)]) -> Vec<LokiEntry> {
        let state = self.shared.state.lock();
        let mut out: Vec<LokiEntry> = state
            .tenants
            .values()
            .flat_map(|streams| streams.values())
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .flat_map(|s| s.entries.iter().cloned())
            .collect();
        out.sort_by_key(|e| e.timestamp_ns);
        out
    }

    pub fn total_entries(&self) -> usize {
        total_entries(&self.shared.state.lock())
    }

    /// Every request answered so far (including scripted answers).
    pub fn pushes(&self) -> Vec<PushRecord> {
        self.shared.state.lock().pushes.clone()
    }

    /// Requests received on `/otlp/v1/logs`, decoded.
    pub fn otlp_requests(&self) -> Vec<ExportLogsServiceRequest> {
        self.shared.state.lock().otlp_requests.clone()
    }

    /// Waits until at least `n` entries are stored; false on timeout.
    pub async fn wait_for_entries(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| total_entries(s) >= n).await
    }

    /// Waits until at least `n` requests were answered; false on timeout.
    pub async fn wait_for_pushes(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.pushes.len() >= n).await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.shared.state.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.shared.state.lock());
            }
        }
    }
}

impl Drop for LokiTestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

fn total_entries(state: &State) -> usize {
    state
        .tenants
        .values()
        .flat_map(|s| s.values())
        .map(|s| s.entries.len())
        .sum()
}

/// Accepts connections; dropping this future (abort) drops every connection with it.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn reply(status: u16, body: &str, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(ra) = retry_after.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        resp.headers_mut().insert(RETRY_AFTER, ra);
    }
    resp
}

fn header(req: &Request<Incoming>, name: impl http::header::AsHeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

enum Endpoint {
    Push,
    Otlp,
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let endpoint = match path.as_str() {
        "/loki/api/v1/push" => Endpoint::Push,
        "/otlp/v1/logs" => Endpoint::Otlp,
        "/ready" => return reply(200, "ready", None),
        _ => return reply(404, "404 page not found", None),
    };
    if req.method() != Method::POST {
        return reply(405, "method not allowed", None);
    }
    let mut record = PushRecord {
        path,
        tenant: header(&req, "x-scope-orgid"),
        content_type: header(&req, CONTENT_TYPE),
        content_encoding: header(&req, CONTENT_ENCODING),
        authorization: header(&req, http::header::AUTHORIZATION),
        status: 0,
        response: String::new(),
        stored_entries: 0,
    };
    let options = shared.options.lock().clone();
    let body = match Limited::new(req.into_body(), options.max_body_size)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return finish(shared, record, 413, "request body too large", None),
    };

    let scripted = shared.state.lock().script.pop_front();
    if let Some(s) = scripted {
        return finish(shared, record, s.status, &s.body, s.retry_after.as_deref());
    }

    let tenant = if options.auth_enabled {
        match record.tenant.as_deref().map(str::trim) {
            None | Some("") => return finish(shared, record, 401, "no org id", None),
            Some(t) if t.contains('|') => {
                return finish(shared, record, 400, "multiple org IDs present", None);
            }
            Some(t) if !valid_tenant(t) => {
                let msg = format!("tenant ID '{t}' is invalid");
                return finish(shared, record, 400, &msg, None);
            }
            Some(t) => t.to_owned(),
        }
    } else {
        "fake".to_owned()
    };

    let body = match decompress(
        record.content_encoding.as_deref(),
        &body,
        options.max_body_size,
        matches!(endpoint, Endpoint::Otlp),
    ) {
        Ok(b) => b,
        Err(msg) => return finish(shared, record, 400, &msg, None),
    };
    let media_type = record
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();

    let streams = match endpoint {
        Endpoint::Push => {
            if media_type == "application/json" {
                decode_json_push(&body)
            } else {
                decode_protobuf_push(&body, options.max_body_size)
            }
        }
        Endpoint::Otlp => {
            let decoded = match media_type.as_str() {
                "application/x-protobuf" => {
                    ExportLogsServiceRequest::decode(body.as_slice()).map_err(|e| e.to_string())
                }
                "application/json" => serde_json::from_slice::<ExportLogsServiceRequest>(&body)
                    .map_err(|e| e.to_string()),
                other => Err(format!("unsupported content type: {other:?}")),
            };
            decoded.map(|req| {
                let streams = otlp_to_streams(&req);
                shared.state.lock().otlp_requests.push(req);
                streams
            })
        }
    };
    let streams = match streams {
        Ok(s) => s,
        Err(msg) => return finish(shared, record, 400, &msg, None),
    };

    let (stored, errors) = {
        let mut state = shared.state.lock();
        store(&mut state, &options, &tenant, streams)
    };
    record.stored_entries = stored;
    if errors.is_empty() {
        finish(shared, record, 204, "", None)
    } else {
        finish(shared, record, 400, &errors.join("\n"), None)
    }
}

fn finish(
    shared: &Shared,
    mut record: PushRecord,
    status: u16,
    body: &str,
    retry_after: Option<&str>,
) -> Response<Full<Bytes>> {
    record.status = status;
    record.response = body.to_owned();
    shared.state.lock().pushes.push(record);
    shared.changed.notify_waiters();
    reply(status, body, retry_after)
}

/// Loki's `tenant.ValidTenantID`.
fn valid_tenant(t: &str) -> bool {
    t.len() <= 150
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c))
}

fn decompress(
    encoding: Option<&str>,
    body: &[u8],
    max: usize,
    otlp: bool,
) -> Result<Vec<u8>, String> {
    let read_capped = |mut r: Box<dyn Read + '_>| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        r.by_ref()
            .take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("decompressing the body: {e}"))?;
        if out.len() > max {
            return Err("decompressed body too large".into());
        }
        Ok(out)
    };
    match encoding.map(str::trim).unwrap_or("") {
        "" => Ok(body.to_vec()),
        // Push bodies are snappy regardless; the header is informational.
        "snappy" if !otlp => Ok(body.to_vec()),
        "gzip" => read_capped(Box::new(flate2::read::GzDecoder::new(body))),
        "deflate" if !otlp => read_capped(Box::new(flate2::read::DeflateDecoder::new(body))),
        other => Err(format!("Content-Encoding {other:?} not supported")),
    }
}

/// A stream as received, before validation.
struct IncomingStream {
    /// Either a label string to parse, or labels already split (JSON form, OTLP).
    labels: IncomingLabels,
    entries: Vec<LokiEntry>,
}

enum IncomingLabels {
    Text(String),
    Parsed(Vec<(String, String)>),
}

fn decode_protobuf_push(body: &[u8], max: usize) -> Result<Vec<IncomingStream>, String> {
    let len = snap::raw::decompress_len(body).map_err(|e| format!("snappy: {e}"))?;
    if len > max {
        return Err(format!("message size too large: {len} > {max}"));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    let req = wire::PushRequest::decode(raw.as_slice()).map_err(|e| format!("proto: {e}"))?;
    Ok(req
        .streams
        .into_iter()
        .map(|s| IncomingStream {
            labels: IncomingLabels::Text(s.labels),
            entries: s
                .entries
                .into_iter()
                .map(|e| LokiEntry {
                    timestamp_ns: e.timestamp.map(timestamp_ns).unwrap_or(i64::MIN),
                    line: e.line,
                    structured_metadata: e
                        .structured_metadata
                        .into_iter()
                        .map(|p| (p.name, p.value))
                        .collect(),
                })
                .collect(),
        })
        .collect())
}

fn timestamp_ns(ts: prost_types::Timestamp) -> i64 {
    let ns = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

fn decode_json_push(body: &[u8]) -> Result<Vec<IncomingStream>, String> {
    use serde_json::Value as J;
    let root: J = serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))?;
    let streams = root
        .get("streams")
        .and_then(J::as_array)
        .ok_or("JSON: `streams` must be an array")?;
    let string_map = |v: &J, what: &str| -> Result<Vec<(String, String)>, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("JSON: {what} must be an object"))?;
        obj.iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_owned()))
                    .ok_or_else(|| format!("JSON: {what}.{k} must be a string"))
            })
            .collect()
    };
    let mut out = Vec::new();
    for s in streams {
        let labels = string_map(s.get("stream").unwrap_or(&J::Null), "stream")?;
        let values = s
            .get("values")
            .and_then(J::as_array)
            .ok_or("JSON: `values` must be an array")?;
        let mut entries = Vec::new();
        for v in values {
            let parts = v
                .as_array()
                .filter(|a| a.len() == 2 || a.len() == 3)
                .ok_or(
                    "JSON: each value must be [\"<ns>\", \"<line>\"] or with a metadata object",
                )?;
            let ts = parts[0]
                .as_str()
                .ok_or("JSON: the timestamp must be a string of nanoseconds")?
                .parse::<i64>()
                .map_err(|e| format!("JSON: invalid timestamp: {e}"))?;
            let line = parts[1].as_str().ok_or("JSON: the line must be a string")?;
            let structured_metadata = match parts.get(2) {
                Some(md) => string_map(md, "structured metadata")?,
                None => Vec::new(),
            };
            entries.push(LokiEntry {
                timestamp_ns: ts,
                line: line.to_owned(),
                structured_metadata,
            });
        }
        out.push(IncomingStream {
            labels: IncomingLabels::Parsed(labels),
            entries,
        });
    }
    Ok(out)
}

/// Resource attributes Loki 3 indexes as labels by default (`.` → `_`).
const OTLP_INDEX_LABELS: [&str; 17] = [
    "cloud.availability_zone",
    "cloud.region",
    "container.name",
    "deployment.environment.name",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.daemonset.name",
    "k8s.deployment.name",
    "k8s.job.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "service.instance.id",
    "service.name",
    "service.namespace",
];

fn otlp_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A plain text form of an OTLP value (Loki's `AsString`).
fn otlp_text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(f)) => f.to_string(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| otlp_text(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| format!("{}:{}", kv.key, otlp_text(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        _ => String::new(),
    }
}

/// Loki 3's native OTLP mapping (`pkg/loghttp/push/otlp.go`), simplified to what tests use.
fn otlp_to_streams(req: &ExportLogsServiceRequest) -> Vec<IncomingStream> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let attrs: &[KeyValue] = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let mut labels = Vec::new();
        let mut res_md = Vec::new();
        for kv in attrs {
            let value = otlp_text(kv.value.as_ref());
            if OTLP_INDEX_LABELS.contains(&kv.key.as_str()) {
                labels.push((otlp_name(&kv.key), value));
            } else {
                res_md.push((otlp_name(&kv.key), value));
            }
        }
        if !labels.iter().any(|(n, _)| n == "service_name") {
            labels.push(("service_name".into(), "unknown_service".into()));
        }
        let mut entries = Vec::new();
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let mut md = res_md.clone();
                if let Some(scope) = &sl.scope {
                    if !scope.name.is_empty() {
                        md.push(("scope_name".into(), scope.name.clone()));
                    }
                    if !scope.version.is_empty() {
                        md.push(("scope_version".into(), scope.version.clone()));
                    }
                }
                for kv in &r.attributes {
                    md.push((otlp_name(&kv.key), otlp_text(kv.value.as_ref())));
                }
                if !r.severity_text.is_empty() {
                    md.push(("severity_text".into(), r.severity_text.clone()));
                }
                if r.severity_number != 0 {
                    md.push(("severity_number".into(), r.severity_number.to_string()));
                }
                if !r.trace_id.is_empty() {
                    md.push(("trace_id".into(), hex::encode(&r.trace_id)));
                }
                if !r.span_id.is_empty() {
                    md.push(("span_id".into(), hex::encode(&r.span_id)));
                }
                md.retain(|(_, v)| !v.is_empty());
                let ts = if r.time_unix_nano != 0 {
                    r.time_unix_nano
                } else if r.observed_time_unix_nano != 0 {
                    r.observed_time_unix_nano
                } else {
                    now_ns() as u64
                };
                entries.push(LokiEntry {
                    timestamp_ns: i64::try_from(ts).unwrap_or(i64::MAX),
                    line: otlp_text(r.body.as_ref()),
                    structured_metadata: md,
                });
            }
        }
        out.push(IncomingStream {
            labels: IncomingLabels::Parsed(labels),
            entries,
        });
    }
    out
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Validates and stores streams as Loki's distributor + ingester do. Returns the number of
/// stored entries and the error messages (non-empty → 400).
fn store(
    state: &mut State,
    options: &LokiServerOptions,
    tenant: &str,
    streams: Vec<IncomingStream>,
) -> (usize, Vec<String>) {
    let now = now_ns();
    let mut errors = Vec::new();
    let mut stored = 0;
    for s in streams {
        let (text, parsed) = match s.labels {
            IncomingLabels::Text(t) => {
                let parsed = parse_labels(&t);
                (t, parsed)
            }
            IncomingLabels::Parsed(pairs) => {
                let text = render_labels(&pairs);
                let parsed = pairs
                    .iter()
                    .find(|(n, _)| !valid_label_name(n))
                    .map(|(n, _)| Err(format!("invalid label name {n:?}")))
                    .unwrap_or(Ok(pairs));
                (text, parsed)
            }
        };
        let pairs = match parsed {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("Error parsing labels '{text}' with error: {e}"));
                continue;
            }
        };
        let labels = match validate_labels(options, &text, pairs) {
            Ok(l) => l,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let key = render_labels(
            &labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>(),
        );
        let stream = state
            .tenants
            .entry(tenant.to_owned())
            .or_default()
            .entry(key.clone())
            .or_insert_with(|| StoredStream {
                labels,
                entries: Vec::new(),
                newest_ns: i64::MIN,
                seen: HashSet::new(),
            });
        for e in s.entries {
            if options.max_line_size > 0 && e.line.len() > options.max_line_size {
                errors.push(format!(
                    "Max entry size '{}' bytes exceeded for stream '{key}' while adding an \
                     entry with length '{}' bytes",
                    options.max_line_size,
                    e.line.len()
                ));
                continue;
            }
            if let Some(max_age) = options.reject_old_samples_max_age {
                let oldest =
                    now.saturating_sub(i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX));
                if e.timestamp_ns < oldest {
                    errors.push(format!(
                        "entry for stream '{key}' has timestamp too old: {}, oldest acceptable \
                         timestamp is: {oldest}",
                        e.timestamp_ns
                    ));
                    continue;
                }
            }
            if let Some(grace) = options.creation_grace_period {
                let newest =
                    now.saturating_add(i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX));
                if e.timestamp_ns > newest {
                    errors.push(format!(
                        "entry for stream '{key}' has timestamp too new: {}",
                        e.timestamp_ns
                    ));
                    continue;
                }
            }
            let window = i64::try_from(options.out_of_order_window.as_nanos()).unwrap_or(i64::MAX);
            let cutoff = stream.newest_ns.saturating_sub(window);
            if e.timestamp_ns < cutoff {
                errors.push(format!(
                    "entry with timestamp {} ignored, reason: 'entry too far behind, entry \
                     timestamp is: {}, oldest acceptable timestamp is: {cutoff}', user '{tenant}', \
                     for stream: {key}",
                    e.timestamp_ns, e.timestamp_ns
                ));
                continue;
            }
            // Loki silently drops an exact duplicate (same time, same line).
            if !stream.seen.insert((e.timestamp_ns, e.line.clone())) {
                continue;
            }
            stream.newest_ns = stream.newest_ns.max(e.timestamp_ns);
            stream.entries.push(e);
            stored += 1;
        }
    }
    (stored, errors)
}

/// Loki's label validation (`validation.Validator.ValidateLabels`), after empty values are
/// removed as `syntax.ParseLabels` does.
fn validate_labels(
    options: &LokiServerOptions,
    text: &str,
    pairs: Vec<(String, String)>,
) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for (name, value) in pairs {
        if value.is_empty() {
            continue;
        }
        if labels.contains_key(&name) {
            return Err(format!(
                "stream '{text}' has duplicate label name: '{name}'"
            ));
        }
        labels.insert(name, value);
    }
    if labels.is_empty() {
        return Err("error at least one label pair is required per stream".into());
    }
    let counted = labels.len() - usize::from(labels.contains_key("service_name"));
    if counted > options.max_label_names_per_series {
        return Err(format!(
            "entry for stream '{text}' has {counted} label names; limit {}",
            options.max_label_names_per_series
        ));
    }
    for (name, value) in &labels {
        if name.len() > options.max_label_name_length {
            return Err(format!("stream '{text}' has label name too long: '{name}'"));
        }
        if value.len() > options.max_label_value_length {
            return Err(format!(
                "stream '{text}' has label value too long: '{value}'"
            ));
        }
    }
    Ok(labels)
}

fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Canonical rendering used as the stream key (sorted by name).
fn render_labels(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    let inner: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Parses a Prometheus label-set string (`{a="b", c='d', e=`raw`}`) as PromQL's
/// `ParseMetric` does: Go string escapes in quoted values, no raw newline in them, an optional
/// trailing comma, names `[a-zA-Z_][a-zA-Z0-9_]*`, nothing after the closing brace.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    p.ws();
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let name = p.name()?;
        p.ws();
        if !p.eat(b'=') {
            return Err(format!(
                "unexpected character at {} (only = matchers)",
                p.pos
            ));
        }
        if p.peek() == Some(b'~') {
            return Err("unexpected =~ in a stream's labels".into());
        }
        p.ws();
        let value = p.string()?;
        out.push((name, value));
        p.ws();
        if p.eat(b',') {
            continue;
        }
        p.ws();
        p.expect(b'}')?;
        break;
    }
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!("unexpected trailing input at {}", p.pos));
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at {}, found {:?}",
                c as char,
                self.pos,
                self.peek().map(|b| b as char)
            ))
        }
    }
    fn name(&mut self) -> Result<String, String> {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
            self.pos += 1;
        }
        let name = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default();
        if !valid_label_name(name) {
            return Err(format!("invalid label name at {start}"));
        }
        Ok(name.to_owned())
    }
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'' | b'`')) => q,
            _ => return Err(format!("expected a quoted string at {}", self.pos)),
        };
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            let c = self.peek().ok_or("unterminated quoted string")?;
            self.pos += 1;
            if c == quote {
                break;
            }
            if quote == b'`' {
                bytes.push(c);
                continue;
            }
            match c {
                b'\n' => return Err("unterminated quoted string (newline)".into()),
                b'\\' => self.escape(quote, &mut bytes)?,
                c => bytes.push(c),
            }
        }
        String::from_utf8(bytes).map_err(|_| "invalid UTF-8 in a label value".into())
    }
    fn digits(&mut self, n: usize, radix: u32) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self
                .peek()
                .and_then(|b| (b as char).to_digit(radix))
                .ok_or("invalid escape sequence")?;
            self.pos += 1;
            v = v * radix + d;
        }
        Ok(v)
    }
    /// Go's `strconv.Unquote` escapes.
    fn escape(&mut self, quote: u8, out: &mut Vec<u8>) -> Result<(), String> {
        let c = self.peek().ok_or("unterminated escape")?;
        self.pos += 1;
        let simple = match c {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            b'\\' => Some(b'\\'),
            q if q == quote => Some(q),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        match c {
            b'x' => out.push(self.digits(2, 16)? as u8),
            b'0'..=b'7' => {
                self.pos -= 1;
                let v = self.digits(3, 8)?;
                out.push(u8::try_from(v).map_err(|_| "octal escape out of range")?);
            }
            b'u' | b'U' => {
                let cp = self.digits(if c == b'u' { 4 } else { 8 }, 16)?;
                let ch = char::from_u32(cp).ok_or("invalid unicode escape")?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(format!("unknown escape sequence \\{}", c as char)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_strings_parse_like_promql() {
        assert_eq!(
            parse_labels(r#"{job="api", level="ERROR"}"#).unwrap(),
            vec![
                ("job".into(), "api".into()),
                ("level".into(), "ERROR".into())
            ]
        );
        assert_eq!(
            parse_labels("{a=\"x\\\"y\\\\z\\n\\u00e9\",b='q',c=`r\\aw`,}").unwrap(),
            vec![
                ("a".into(), "x\"y\\z\né".into()),
                ("b".into(), "q".into()),
                ("c".into(), "r\\aw".into())
            ]
        );
        for bad in [
            "job=\"x\"",
            "{job=\"x\"",
            "{0job=\"x\"}",
            "{job=~\"x\"}",
            "{job=\"a\nb\"}",
            "{job=\"x\"} extra",
            "{job=\"\\q\"}",
            "{job=x}",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad:?}");
        }
    }
}
