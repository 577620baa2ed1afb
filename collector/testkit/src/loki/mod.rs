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

//!
//! Modules: [`wire`] (the push messages), `service` (HTTP, tenants), `decode` (encodings,
//! protobuf and JSON pushes), `otlp` (OTLP logs to streams), `ingest` (Loki's validation and
//! storage), [`labels`] (the label-set string parser).

mod decode;
mod ingest;
pub mod labels;
mod otlp;
mod service;
pub mod wire;

pub use decode::{DecodeError, decode_push};
pub use ingest::Refused;
pub use labels::{LabelSyntaxError, parse_labels};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use parking_lot::Mutex;
use service::serve;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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
