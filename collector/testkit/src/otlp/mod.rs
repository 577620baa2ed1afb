//! OTLP test backend (gRPC + HTTP) that decodes and records what it receives.
//!
//! [`OtlpTestServer`] listens on two ephemeral 127.0.0.1 ports and behaves like an OpenTelemetry
//! Collector / Tempo receiver:
//! * gRPC: the three `Export` methods, gzip accepted, messages up to 4 MiB (gRPC-Go's default,
//!   which Tempo's 4317 receiver keeps), undecodable bodies → `INTERNAL`, unknown methods →
//!   `UNIMPLEMENTED`, errors carry `RetryInfo` in `grpc-status-details-bin`.
//! * HTTP: `POST /v1/{traces,metrics,logs}`, `application/x-protobuf` or `application/json`
//!   (answered in the same type), `Content-Encoding: gzip`, other methods 405, other types 415,
//!   oversized 413, undecodable 400; errors carry a `google.rpc.Status` body and `Retry-After`.
//!
//! Answers are scripted with [`OtlpTestServer::respond_with`]; [`OtlpTestServer::stop`] and
//! [`OtlpTestServer::restart`] simulate an outage on the same ports.

//!
//! Modules: `payload` (decoded requests), `script` (scripted answers), `serve` (listeners),
//! `grpc` and `http` (each transport's decoding and answers).

mod grpc;
mod http;
mod payload;
mod script;
mod serve;
#[cfg(test)]
mod tests;

pub use payload::{DecodeError, Payload, data_point_count};
pub use script::{Behavior, ErrorReply, Outcome, RetryAfter};

use ::http::HeaderMap;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use parking_lot::Mutex;
use payload::{has_zero_id, log_records_of, metrics_of, spans_of};
use serve::{accept_loop, bind, hold};
use sluice_core::Signal;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Code;

const TRACES_METHOD: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS_METHOD: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const LOGS_METHOD: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// Limits of the server, as a real backend has them.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest decompressed gRPC message. Default 4 MiB (gRPC-Go's, and Tempo's on 4317).
    pub grpc_max_message_size: usize,
    /// Largest HTTP body, before and after decompression. Default 64 MiB (spec recommendation).
    pub http_max_body_size: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            grpc_max_message_size: 4 * 1024 * 1024,
            http_max_body_size: 64 * 1024 * 1024,
        }
    }
}

/// The transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

/// One decoded request and what it was answered.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub transport: Transport,
    pub signal: Signal,
    /// HTTP headers, or gRPC metadata (which travels as HTTP/2 headers).
    pub headers: HeaderMap,
    /// Content encoding the client used (`gzip`), from `Content-Encoding` or `grpc-encoding`.
    pub encoding: Option<String>,
    /// Size of the decompressed body.
    pub body_len: usize,
    pub payload: Payload,
    pub outcome: Outcome,
}

impl ReceivedRequest {
    /// A header (or metadata) value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Scope-OrgID`.
    pub fn tenant(&self) -> Option<&str> {
        self.header("x-scope-orgid")
    }

    /// Whether the data was stored (success or partial success).
    pub fn accepted(&self) -> bool {
        self.outcome.stores()
    }
}

/// A request the server could not decode (answered 400 / 413 / 415 / INTERNAL ...).
#[derive(Debug, Clone)]
pub struct InvalidRequest {
    pub transport: Transport,
    pub signal: Option<Signal>,
    pub status: u16,
    pub message: String,
}

#[derive(Default)]
struct State {
    requests: Vec<ReceivedRequest>,
    invalid: Vec<InvalidRequest>,
    script: VecDeque<Behavior>,
    /// Refuse, as Tempo does, any traces request holding a span with an empty or all-zero
    /// trace or span id (the whole request, with `InvalidArgument`).
    refuse_zero_ids: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped after every recorded request; waiters watch it.
    changes: watch::Sender<u64>,
    options: ServerOptions,
}

/// Tempo's answer to a request holding a span it cannot index (the whole request is refused).
pub const TEMPO_ZERO_ID_MESSAGE: &str = "span ids must be 64 bit and not all zero";
impl Shared {
    /// The answer to `payload`: Tempo's refusal of zero ids when enabled, else the script.
    fn outcome_for(&self, payload: &Payload) -> (Outcome, Duration) {
        if self.state.lock().refuse_zero_ids && has_zero_id(payload) {
            return (
                Outcome::grpc(Code::InvalidArgument, TEMPO_ZERO_ID_MESSAGE),
                Duration::ZERO,
            );
        }
        self.next_behavior()
    }

    fn next_behavior(&self) -> (Outcome, Duration) {
        let mut state = self.state.lock();
        let Some(front) = state.script.front_mut() else {
            return (Outcome::Success, Duration::ZERO);
        };
        let picked = (front.outcome.clone(), front.delay);
        if let Some(n) = front.times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.script.pop_front();
            }
        }
        picked
    }

    fn record(&self, request: ReceivedRequest) {
        self.state.lock().requests.push(request);
        self.changes.send_modify(|v| *v += 1);
    }

    fn record_invalid(&self, invalid: InvalidRequest) {
        self.state.lock().invalid.push(invalid);
        self.changes.send_modify(|v| *v += 1);
    }
}

struct Running {
    stop: watch::Sender<bool>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

/// A protocol-faithful OTLP backend on 127.0.0.1 (see the module docs).
pub struct OtlpTestServer {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    running: tokio::sync::Mutex<Option<Running>>,
    /// While stopped: the ports, held without listening (see `serve::hold`).
    held: Mutex<Vec<tokio::net::TcpSocket>>,
}

impl OtlpTestServer {
    /// Starts with default limits. Panics if 127.0.0.1 has no free port (a test cannot go on).
    pub async fn start() -> OtlpTestServer {
        match Self::start_with(ServerOptions::default()).await {
            Ok(server) => server,
            Err(e) => panic!("OtlpTestServer cannot start: {e:#}"),
        }
    }

    pub async fn start_with(options: ServerOptions) -> anyhow::Result<OtlpTestServer> {
        let grpc = bind("127.0.0.1:0".parse()?)?;
        let http = bind("127.0.0.1:0".parse()?)?;
        let server = OtlpTestServer {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changes: watch::channel(0).0,
                options,
            }),
            grpc_addr: grpc.local_addr()?,
            http_addr: http.local_addr()?,
            running: tokio::sync::Mutex::new(None),
            held: Mutex::new(Vec::new()),
        };
        *server.running.lock().await = Some(server.serve(grpc, http));
        Ok(server)
    }

    fn serve(&self, grpc: TcpListener, http: TcpListener) -> Running {
        let (stop, stopped) = watch::channel(false);
        let loops = vec![
            tokio::spawn(accept_loop(
                grpc,
                Transport::Grpc,
                self.shared.clone(),
                stopped.clone(),
            )),
            tokio::spawn(accept_loop(
                http,
                Transport::Http,
                self.shared.clone(),
                stopped,
            )),
        ];
        Running { stop, loops }
    }

    /// `http://127.0.0.1:<port>` of the gRPC listener (an exporter `endpoint`).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:<port>` of the HTTP listener (base URL; `/v1/...` is appended).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Closes both listeners and every open connection; requests in progress get no answer and
    /// are not recorded. The ports stay reserved for [`restart`](Self::restart): connecting
    /// is refused meanwhile. Idempotent.
    pub async fn stop(&self) {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            // Held before the listeners close, so the ports are never free.
            match (hold(self.grpc_addr), hold(self.http_addr)) {
                (Ok(grpc), Ok(http)) => *self.held.lock() = vec![grpc, http],
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("OtlpTestServer cannot hold its ports while stopped: {e}")
                }
            }
            let _ = running.stop.send(true);
            for task in running.loops {
                let _ = task.await;
            }
        }
    }

    /// Listens again on the same ports (after [`stop`](Self::stop)); recorded data and the
    /// behaviour script are kept. Panics if a port was taken meanwhile (only possible when
    /// `stop` could not hold it, which it logs).
    pub async fn restart(&self) {
        if let Err(e) = self.try_restart().await {
            panic!("OtlpTestServer cannot restart: {e:#}");
        }
    }

    pub async fn try_restart(&self) -> anyhow::Result<()> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let grpc = bind(self.grpc_addr)?;
        let http = bind(self.http_addr)?;
        *running = Some(self.serve(grpc, http));
        self.held.lock().clear();
        Ok(())
    }

    pub async fn is_running(&self) -> bool {
        self.running.lock().await.is_some()
    }

    /// Queues a scripted answer. Behaviours run in order; when none is left, requests succeed.
    pub fn respond_with(&self, behavior: Behavior) {
        if behavior.times == Some(0) {
            return;
        }
        self.shared.state.lock().script.push_back(behavior);
    }

    /// Drops every queued behaviour: requests succeed from now on.
    /// Refuse (or stop refusing), as Tempo does, every traces request holding a span whose
    /// trace or span id is empty or all zeros: `InvalidArgument` / HTTP 400 for the whole
    /// request, nothing stored.
    pub fn refuse_zero_ids(&self, on: bool) {
        self.shared.state.lock().refuse_zero_ids = on;
    }

    pub fn clear_behaviors(&self) {
        self.shared.state.lock().script.clear();
    }

    /// Forgets every recorded request.
    pub fn clear(&self) {
        let mut state = self.shared.state.lock();
        state.requests.clear();
        state.invalid.clear();
    }

    /// Every decoded request in arrival order, including those answered with an error.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.state.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.state.lock().requests.len()
    }

    /// Requests that could not be decoded.
    pub fn invalid_requests(&self) -> Vec<InvalidRequest> {
        self.shared.state.lock().invalid.clone()
    }

    /// Per request, the value of `name` (None where absent).
    pub fn header_values(&self, name: &str) -> Vec<Option<String>> {
        self.shared
            .state
            .lock()
            .requests
            .iter()
            .map(|r| r.header(name).map(str::to_owned))
            .collect()
    }

    /// What `f` takes from each stored request (`None`: not of its signal).
    fn stored<T>(&self, f: impl Fn(&Payload) -> Option<Vec<T>>) -> Vec<T> {
        self.shared
            .state
            .lock()
            .requests
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| f(&r.payload).unwrap_or_default())
            .collect()
    }

    /// Stored `ResourceSpans`, in arrival order.
    pub fn resource_spans(&self) -> Vec<ResourceSpans> {
        self.stored(|p| p.traces().map(|r| r.resource_spans.clone()))
    }

    /// Stored spans, flattened, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.stored(|p| p.traces().map(|r| spans_of(r).cloned().collect()))
    }

    pub fn span_count(&self) -> usize {
        self.count(Signal::Traces)
    }

    pub fn resource_metrics(&self) -> Vec<ResourceMetrics> {
        self.stored(|p| p.metrics().map(|r| r.resource_metrics.clone()))
    }

    /// Stored metrics, flattened.
    pub fn metrics(&self) -> Vec<Metric> {
        self.stored(|p| p.metrics().map(|r| metrics_of(r).cloned().collect()))
    }

    /// Stored metric data points.
    pub fn metric_points(&self) -> usize {
        self.count(Signal::Metrics)
    }

    pub fn resource_logs(&self) -> Vec<ResourceLogs> {
        self.stored(|p| p.logs().map(|r| r.resource_logs.clone()))
    }

    /// Stored log records, flattened.
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.stored(|p| p.logs().map(|r| log_records_of(r).cloned().collect()))
    }

    pub fn log_record_count(&self) -> usize {
        self.count(Signal::Logs)
    }

    fn count(&self, signal: Signal) -> usize {
        self.shared
            .state
            .lock()
            .requests
            .iter()
            .filter(|r| r.accepted() && r.signal == signal)
            .map(|r| r.payload.item_count())
            .sum()
    }

    /// Waits until `condition` holds (checked after every recorded request) or `timeout`
    /// passes; returns whether it holds.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&OtlpTestServer) -> bool,
    ) -> bool {
        let mut changes = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return condition(self),
            }
        }
    }

    /// Waits for at least `n` stored spans.
    pub async fn wait_for_spans(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.span_count() >= n).await
    }

    /// Waits for at least `n` stored metric data points.
    pub async fn wait_for_metric_points(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.metric_points() >= n).await
    }

    /// Waits for at least `n` stored log records.
    pub async fn wait_for_log_records(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.log_record_count() >= n)
            .await
    }

    /// Waits for at least `n` decoded requests (whatever they were answered).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.request_count() >= n).await
    }
}

impl Drop for OtlpTestServer {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.try_lock()
            && let Some(running) = running.take()
        {
            let _ = running.stop.send(true);
        }
    }
}
