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

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use parking_lot::Mutex;
use prost::Message;
use sluice_core::Signal;
use sluice_otlp::grpc::RawCodec;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};

const TRACES_METHOD: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS_METHOD: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const LOGS_METHOD: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

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

/// A decoded `Export*ServiceRequest`.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Payload {
    fn decode_protobuf(signal: Signal, body: &[u8]) -> Result<Payload, String> {
        let r = match signal {
            Signal::Traces => ExportTraceServiceRequest::decode(body).map(Payload::Traces),
            Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(Payload::Metrics),
            Signal::Logs => ExportLogsServiceRequest::decode(body).map(Payload::Logs),
        };
        r.map_err(|e| format!("unmarshalling request: {e}"))
    }

    fn decode_json(signal: Signal, body: &[u8]) -> Result<Payload, String> {
        let r = match signal {
            Signal::Traces => serde_json::from_slice(body).map(Payload::Traces),
            Signal::Metrics => serde_json::from_slice(body).map(Payload::Metrics),
            Signal::Logs => serde_json::from_slice(body).map(Payload::Logs),
        };
        r.map_err(|e| format!("unmarshalling JSON request: {e}"))
    }

    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
        }
    }

    /// Spans, data points or log records.
    pub fn item_count(&self) -> usize {
        match self {
            Payload::Traces(r) => spans_of(r).count(),
            Payload::Metrics(r) => metrics_of(r).map(data_point_count).sum(),
            Payload::Logs(r) => log_records_of(r).count(),
        }
    }
}

fn spans_of(r: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    r.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
}

fn metrics_of(r: &ExportMetricsServiceRequest) -> impl Iterator<Item = &Metric> {
    r.resource_metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics.iter().flat_map(|sm| sm.metrics.iter()))
}

fn log_records_of(r: &ExportLogsServiceRequest) -> impl Iterator<Item = &LogRecord> {
    r.resource_logs
        .iter()
        .flat_map(|rl| rl.scope_logs.iter().flat_map(|sl| sl.log_records.iter()))
}

/// Data points in one metric, counted as the Collector does.
pub fn data_point_count(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(e)) => e.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Minimum delay the server asks for on an error: HTTP `Retry-After`, gRPC `RetryInfo`.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryAfter {
    /// `Retry-After: <n>` / `RetryInfo{retry_delay: n s}`.
    Seconds(u64),
    /// `RetryInfo` with this exact delay; over HTTP rounded up to whole seconds.
    Delay(Duration),
    /// `Retry-After: <IMF-fixdate>`; over gRPC the time until then.
    HttpDate(SystemTime),
}

impl RetryAfter {
    fn delay(&self) -> Duration {
        match self {
            RetryAfter::Seconds(s) => Duration::from_secs(*s),
            RetryAfter::Delay(d) => *d,
            RetryAfter::HttpDate(t) => t.duration_since(SystemTime::now()).unwrap_or_default(),
        }
    }

    fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::Delay(d) => {
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                secs.to_string()
            }
            RetryAfter::HttpDate(t) => httpdate::fmt_http_date(*t),
        }
    }
}

/// An error answer; each transport uses its own half.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub grpc_code: Code,
    pub http_status: u16,
    pub message: String,
    pub retry_after: Option<RetryAfter>,
}

/// What the server answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// OK / HTTP 200 with an empty response: the data is stored.
    Success,
    /// OK / HTTP 200 with `partial_success{rejected_*, error_message}`. The data is stored
    /// (the server cannot tell which items it "rejected").
    PartialSuccess { rejected: i64, message: String },
    /// An error status; nothing is stored.
    Error(ErrorReply),
}

impl Outcome {
    /// A gRPC error; over HTTP the status follows the OTLP specification ("OTLP/HTTP Response").
    pub fn grpc(code: Code, message: impl Into<String>) -> Outcome {
        Outcome::Error(ErrorReply {
            grpc_code: code,
            http_status: http_status_for(code),
            message: message.into(),
            retry_after: None,
        })
    }

    /// An HTTP error; over gRPC the closest code is used (429 → RESOURCE_EXHAUSTED,
    /// 502/503/504 → UNAVAILABLE, 400 → INVALID_ARGUMENT, ...).
    pub fn http(status: u16, message: impl Into<String>) -> Outcome {
        Outcome::Error(ErrorReply {
            grpc_code: grpc_code_for(status),
            http_status: status,
            message: message.into(),
            retry_after: None,
        })
    }

    pub fn partial(rejected: i64, message: impl Into<String>) -> Outcome {
        Outcome::PartialSuccess {
            rejected,
            message: message.into(),
        }
    }

    /// Adds `Retry-After` / `RetryInfo` to an error (no effect on success).
    pub fn retry_after(mut self, retry_after: RetryAfter) -> Outcome {
        if let Outcome::Error(e) = &mut self {
            e.retry_after = Some(retry_after);
        }
        self
    }

    fn stores(&self) -> bool {
        !matches!(self, Outcome::Error(_))
    }
}

fn http_status_for(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => 503,
        Code::ResourceExhausted => 429,
        Code::InvalidArgument => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::Unimplemented => 404,
        _ => 500,
    }
}

fn grpc_code_for(status: u16) -> Code {
    match status {
        200..=299 => Code::Ok,
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        413 | 429 => Code::ResourceExhausted,
        502..=504 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// A scripted answer: `outcome` (after `delay`) for the next `times` requests, or forever.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub outcome: Outcome,
    pub delay: Duration,
    /// `None`: applies to every later request (behaviours queued after it never run).
    pub times: Option<u32>,
}

impl Behavior {
    /// `outcome` for the next `n` requests.
    pub fn next(n: u32, outcome: Outcome) -> Behavior {
        Behavior {
            outcome,
            delay: Duration::ZERO,
            times: Some(n),
        }
    }

    /// `outcome` for the next request only.
    pub fn once(outcome: Outcome) -> Behavior {
        Behavior::next(1, outcome)
    }

    /// `outcome` for every request from now on.
    pub fn always(outcome: Outcome) -> Behavior {
        Behavior {
            outcome,
            delay: Duration::ZERO,
            times: None,
        }
    }

    /// Waits this long before answering (the request is recorded only if the answer is sent).
    pub fn with_delay(mut self, delay: Duration) -> Behavior {
        self.delay = delay;
        self
    }
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

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

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

fn has_zero_id(payload: &Payload) -> bool {
    let zero = |id: &[u8]| id.iter().all(|&b| b == 0);
    match payload {
        Payload::Traces(r) => spans_of(r).any(|s| zero(&s.span_id) || zero(&s.trace_id)),
        _ => false,
    }
}

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
    /// are not recorded. Idempotent.
    pub async fn stop(&self) {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            let _ = running.stop.send(true);
            for task in running.loops {
                let _ = task.await;
            }
        }
    }

    /// Listens again on the same ports (after [`stop`](Self::stop)); recorded data and the
    /// behaviour script are kept. Panics if a port was taken meanwhile.
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

    fn stored<T>(&self, f: impl Fn(&Payload) -> Vec<T>) -> Vec<T> {
        self.shared
            .state
            .lock()
            .requests
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| f(&r.payload))
            .collect()
    }

    /// Stored `ResourceSpans`, in arrival order.
    pub fn resource_spans(&self) -> Vec<ResourceSpans> {
        self.stored(|p| match p {
            Payload::Traces(r) => r.resource_spans.clone(),
            _ => Vec::new(),
        })
    }

    /// Stored spans, flattened, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.stored(|p| match p {
            Payload::Traces(r) => spans_of(r).cloned().collect(),
            _ => Vec::new(),
        })
    }

    pub fn span_count(&self) -> usize {
        self.count(Signal::Traces)
    }

    pub fn resource_metrics(&self) -> Vec<ResourceMetrics> {
        self.stored(|p| match p {
            Payload::Metrics(r) => r.resource_metrics.clone(),
            _ => Vec::new(),
        })
    }

    /// Stored metrics, flattened.
    pub fn metrics(&self) -> Vec<Metric> {
        self.stored(|p| match p {
            Payload::Metrics(r) => metrics_of(r).cloned().collect(),
            _ => Vec::new(),
        })
    }

    /// Stored metric data points.
    pub fn metric_points(&self) -> usize {
        self.count(Signal::Metrics)
    }

    pub fn resource_logs(&self) -> Vec<ResourceLogs> {
        self.stored(|p| match p {
            Payload::Logs(r) => r.resource_logs.clone(),
            _ => Vec::new(),
        })
    }

    /// Stored log records, flattened.
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.stored(|p| match p {
            Payload::Logs(r) => log_records_of(r).cloned().collect(),
            _ => Vec::new(),
        })
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

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Lets restart() take the port back while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs hyper's per-stream tasks so that they end when the server stops.
#[derive(Clone)]
struct StoppableExecutor(watch::Receiver<bool>);

impl<F> hyper::rt::Executor<F> for StoppableExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let stop = self.0.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = stopped(stop) => {}
            }
        });
    }
}

async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(stop.clone()) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(
                        stream,
                        transport,
                        shared.clone(),
                        stop.clone(),
                    ));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Dropping a connection's task closes its socket: clients see the outage at once.
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    transport: Transport,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(stream);
    let exec = StoppableExecutor(stop);
    match transport {
        Transport::Grpc => {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle_grpc(shared, req).await) }
            });
            let _ = hyper::server::conn::http2::Builder::new(exec)
                .serve_connection(io, service)
                .await;
        }
        Transport::Http => {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle_http(shared, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(exec)
                .serve_connection(io, service)
                .await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------------

async fn handle_grpc(
    shared: Arc<Shared>,
    req: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let signal = match req.uri().path() {
        TRACES_METHOD => Signal::Traces,
        METRICS_METHOD => Signal::Metrics,
        LOGS_METHOD => Signal::Logs,
        other => {
            let message = format!("unknown method {other}");
            shared.record_invalid(InvalidRequest {
                transport: Transport::Grpc,
                signal: None,
                status: Code::Unimplemented as u16,
                message: message.clone(),
            });
            return Status::unimplemented(message).into_http();
        }
    };
    let max = shared.options.grpc_max_message_size;
    let mut grpc = tonic::server::Grpc::new(RawCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
    grpc.unary(ExportService { shared, signal }, req).await
}

struct ExportService {
    shared: Arc<Shared>,
    signal: Signal,
}

impl tonic::server::UnaryService<Bytes> for ExportService {
    type Response = Bytes;
    type Future = futures::future::BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let shared = self.shared.clone();
        let signal = self.signal;
        Box::pin(async move {
            let headers = request.metadata().clone().into_headers();
            let body = request.into_inner();
            let payload = match Payload::decode_protobuf(signal, &body) {
                Ok(p) => p,
                Err(message) => {
                    // gRPC-Go answers an unmarshalling failure with INTERNAL.
                    shared.record_invalid(InvalidRequest {
                        transport: Transport::Grpc,
                        signal: Some(signal),
                        status: Code::Internal as u16,
                        message: message.clone(),
                    });
                    return Err(Status::internal(format!("grpc: error {message}")));
                }
            };
            let (outcome, delay) = shared.outcome_for(&payload);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let encoding = headers
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok())
                .filter(|e| *e != "identity")
                .map(str::to_owned);
            let answer = match &outcome {
                Outcome::Success => Ok(tonic::Response::new(success_response(signal, None))),
                Outcome::PartialSuccess { rejected, message } => Ok(tonic::Response::new(
                    success_response(signal, Some((*rejected, message.clone()))),
                )),
                Outcome::Error(e) => Err(grpc_error(e)),
            };
            shared.record(ReceivedRequest {
                transport: Transport::Grpc,
                signal,
                headers,
                encoding,
                body_len: body.len(),
                payload,
                outcome,
            });
            answer
        })
    }
}

fn grpc_error(e: &ErrorReply) -> Status {
    match &e.retry_after {
        None => Status::new(e.grpc_code, e.message.clone()),
        Some(retry_after) => {
            let details = RpcStatus {
                code: e.grpc_code as i32,
                message: e.message.clone(),
                details: vec![retry_info_any(retry_after.delay())],
            };
            Status::with_details(
                e.grpc_code,
                e.message.clone(),
                Bytes::from(details.encode_to_vec()),
            )
        }
    }
}

/// Encoded `Export*ServiceResponse`, with a partial success when given.
fn success_response(signal: Signal, partial: Option<(i64, String)>) -> Bytes {
    let bytes = match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: partial.map(|(rejected_spans, error_message)| {
                ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                }
            }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: partial.map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: partial.map(|(rejected_log_records, error_message)| {
                ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }
            }),
        }
        .encode_to_vec(),
    };
    Bytes::from(bytes)
}

use sluice_otlp::rpc::{RETRY_INFO_TYPE_URL as RETRY_INFO_TYPE, RetryInfo, Status as RpcStatus};

fn retry_info_any(delay: Duration) -> prost_types::Any {
    let info = RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    prost_types::Any {
        type_url: RETRY_INFO_TYPE.into(),
        value: info.encode_to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyType {
    Protobuf,
    Json,
}

impl BodyType {
    fn content_type(self) -> &'static str {
        match self {
            BodyType::Protobuf => PROTOBUF,
            BodyType::Json => JSON,
        }
    }
}

type HttpResponse = http::Response<Full<Bytes>>;

fn plain(status: StatusCode, text: &str) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An error answer in the request's encoding, as the Collector writes it.
fn status_response(
    body_type: BodyType,
    status: StatusCode,
    code: Code,
    message: &str,
    retry_after: Option<&RetryAfter>,
) -> HttpResponse {
    let body = match body_type {
        BodyType::Protobuf => RpcStatus {
            code: code as i32,
            message: message.to_owned(),
            details: retry_after
                .map(|r| vec![retry_info_any(r.delay())])
                .unwrap_or_default(),
        }
        .encode_to_vec(),
        BodyType::Json => {
            let mut value = serde_json::json!({ "code": code as i32, "message": message });
            if let Some(r) = retry_after {
                value["details"] = serde_json::json!([{
                    "@type": RETRY_INFO_TYPE,
                    "retryDelay": format!("{}s", r.delay().as_secs_f64()),
                }]);
            }
            value.to_string().into_bytes()
        }
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(body_type.content_type()),
    );
    if let Some(r) = retry_after
        && let Ok(v) = HeaderValue::from_str(&r.header_value())
    {
        response.headers_mut().insert(RETRY_AFTER, v);
    }
    response
}

async fn handle_http(shared: Arc<Shared>, req: http::Request<Incoming>) -> HttpResponse {
    let signal = match req.uri().path() {
        "/v1/traces" => Signal::Traces,
        "/v1/metrics" => Signal::Metrics,
        "/v1/logs" => Signal::Logs,
        _ => return plain(StatusCode::NOT_FOUND, "404 page not found"),
    };
    let invalid = |status: StatusCode, message: String| InvalidRequest {
        transport: Transport::Http,
        signal: Some(signal),
        status: status.as_u16(),
        message,
    };
    if req.method() != Method::POST {
        let msg = format!("{} method not allowed, supported: [POST]", req.method());
        shared.record_invalid(invalid(StatusCode::METHOD_NOT_ALLOWED, msg.clone()));
        return plain(StatusCode::METHOD_NOT_ALLOWED, &msg);
    }
    let media_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let body_type = match media_type.as_str() {
        PROTOBUF => BodyType::Protobuf,
        JSON => BodyType::Json,
        other => {
            let msg = format!("{other:?} is not a supported content type");
            shared.record_invalid(invalid(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg.clone()));
            return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg);
        }
    };
    let fail = |status: StatusCode, code: Code, message: String| {
        shared.record_invalid(invalid(status, message.clone()));
        status_response(body_type, status, code, &message, None)
    };
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "identity");
    let headers = req.headers().clone();
    let max = shared.options.http_max_body_size;
    let wire = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::ResourceExhausted,
                format!("body larger than {max} bytes"),
            );
        }
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                format!("reading body: {e}"),
            );
        }
    };
    let body = match encoding.as_deref() {
        None => wire,
        Some("gzip") => {
            let mut out = Vec::new();
            let read = flate2::read::GzDecoder::new(&wire[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out);
            match read {
                Ok(n) if n > max => {
                    return fail(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Code::ResourceExhausted,
                        format!("decompressed body larger than {max} bytes"),
                    );
                }
                Ok(_) => Bytes::from(out),
                Err(e) => {
                    return fail(
                        StatusCode::BAD_REQUEST,
                        Code::InvalidArgument,
                        format!("invalid gzip body: {e}"),
                    );
                }
            }
        }
        Some(other) => {
            return fail(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                format!("unsupported Content-Encoding {other:?}"),
            );
        }
    };
    let decoded = match body_type {
        BodyType::Protobuf => Payload::decode_protobuf(signal, &body),
        BodyType::Json => Payload::decode_json(signal, &body),
    };
    let payload = match decoded {
        Ok(p) => p,
        Err(message) => return fail(StatusCode::BAD_REQUEST, Code::InvalidArgument, message),
    };
    let (outcome, delay) = shared.outcome_for(&payload);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = match &outcome {
        Outcome::Success => success_http(body_type, signal, None),
        Outcome::PartialSuccess { rejected, message } => {
            success_http(body_type, signal, Some((*rejected, message.clone())))
        }
        Outcome::Error(e) => status_response(
            body_type,
            StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.grpc_code,
            &e.message,
            e.retry_after.as_ref(),
        ),
    };
    shared.record(ReceivedRequest {
        transport: Transport::Http,
        signal,
        headers,
        encoding,
        body_len: body.len(),
        payload,
        outcome,
    });
    response
}

fn success_http(
    body_type: BodyType,
    signal: Signal,
    partial: Option<(i64, String)>,
) -> HttpResponse {
    let has_partial = partial.is_some();
    let protobuf = success_response(signal, partial);
    let body = match body_type {
        BodyType::Protobuf => protobuf,
        BodyType::Json if !has_partial => Bytes::from_static(b"{}"),
        BodyType::Json => {
            let json = match signal {
                Signal::Traces => ExportTraceServiceResponse::decode(protobuf)
                    .ok()
                    .and_then(|r| serde_json::to_vec(&r).ok()),
                Signal::Metrics => ExportMetricsServiceResponse::decode(protobuf)
                    .ok()
                    .and_then(|r| serde_json::to_vec(&r).ok()),
                Signal::Logs => ExportLogsServiceResponse::decode(protobuf)
                    .ok()
                    .and_then(|r| serde_json::to_vec(&r).ok()),
            };
            Bytes::from(json.unwrap_or_else(|| b"{}".to_vec()))
        }
    };
    let mut response = http::Response::new(Full::new(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(body_type.content_type()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

    fn traces(n: usize) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..n)
                        .map(|i| Span {
                            trace_id: vec![1; 16],
                            span_id: vec![i as u8 + 1; 8],
                            name: format!("span-{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// Raw HTTP/1.1 request over a TCP stream, to test the server without any client library.
    async fn raw_http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{head}\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let status = head[9..12].parse().unwrap();
        (status, head, response[split + 4..].to_vec())
    }

    #[tokio::test]
    async fn http_protobuf_gzip_and_json_are_decoded() {
        let server = OtlpTestServer::start().await;
        let body = traces(3).encode_to_vec();
        let (status, head, resp) = raw_http(
            server.http_addr(),
            "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nX-Scope-OrgID: t1",
            &body,
        )
        .await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_lowercase()
                .contains("content-type: application/x-protobuf")
        );
        assert_eq!(
            ExportTraceServiceResponse::decode(&resp[..]).unwrap(),
            ExportTraceServiceResponse::default()
        );
        let (status, ..) = raw_http(
            server.http_addr(),
            "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf; charset=x\r\nContent-Encoding: gzip",
            &gzip(&body),
        )
        .await;
        assert_eq!(status, 200);
        let json = serde_json::to_vec(&traces(2)).unwrap();
        let (status, head, resp) = raw_http(
            server.http_addr(),
            "POST /v1/traces HTTP/1.1\r\nContent-Type: application/json",
            &json,
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            head.to_lowercase()
                .contains("content-type: application/json")
        );
        assert_eq!(resp, b"{}");
        assert_eq!(server.span_count(), 8);
        let requests = server.requests();
        assert_eq!(requests[0].tenant(), Some("t1"));
        assert_eq!(requests[0].encoding, None);
        assert_eq!(requests[1].encoding.as_deref(), Some("gzip"));
        assert_eq!(requests[2].payload, Payload::Traces(traces(2)));
        assert_eq!(server.spans()[0].span_id, vec![1; 8]);
    }

    #[tokio::test]
    async fn http_refuses_like_a_collector() {
        let server = OtlpTestServer::start().await;
        let addr = server.http_addr();
        let pb = "Content-Type: application/x-protobuf";
        let cases: [(String, Vec<u8>, u16); 6] = [
            (format!("GET /v1/traces HTTP/1.1\r\n{pb}"), vec![], 405),
            (format!("POST /v1/nothing HTTP/1.1\r\n{pb}"), vec![], 404),
            (
                "POST /v1/traces HTTP/1.1\r\nContent-Type: text/plain".into(),
                vec![],
                415,
            ),
            (
                format!("POST /v1/traces HTTP/1.1\r\n{pb}"),
                vec![0xff, 0xff, 0xff],
                400,
            ),
            (
                format!("POST /v1/traces HTTP/1.1\r\n{pb}\r\nContent-Encoding: gzip"),
                b"not gzip".to_vec(),
                400,
            ),
            (
                format!("POST /v1/traces HTTP/1.1\r\n{pb}\r\nContent-Encoding: br"),
                vec![],
                400,
            ),
        ];
        for (head, body, want) in cases {
            let (status, ..) = raw_http(addr, &head, &body).await;
            assert_eq!(status, want, "{head}");
        }
        // A 400 carries a google.rpc.Status in the request's encoding.
        let (_, _, body) = raw_http(
            addr,
            &format!("POST /v1/logs HTTP/1.1\r\n{pb}"),
            &[0x0a, 0x05, 0x01],
        )
        .await;
        let status = RpcStatus::decode(&body[..]).unwrap();
        assert_eq!(status.code, Code::InvalidArgument as i32);
        assert!(
            status.message.contains("unmarshalling"),
            "{}",
            status.message
        );
        assert_eq!(server.request_count(), 0);
        // Every refusal but the 404 (no signal) is recorded.
        assert_eq!(server.invalid_requests().len(), 6);
    }

    #[tokio::test]
    async fn http_scripted_errors_and_partial_success() {
        let server = OtlpTestServer::start().await;
        let date = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        server.respond_with(Behavior::once(
            Outcome::http(429, "slow down").retry_after(RetryAfter::Seconds(5)),
        ));
        server.respond_with(Behavior::once(
            Outcome::http(503, "later").retry_after(RetryAfter::HttpDate(date)),
        ));
        server.respond_with(Behavior::once(Outcome::partial(2, "too old")));
        let body = traces(3).encode_to_vec();
        let head = "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf";
        let (status, h, resp) = raw_http(server.http_addr(), head, &body).await;
        assert_eq!(status, 429);
        assert!(h.to_lowercase().contains("retry-after: 5"), "{h}");
        let st = RpcStatus::decode(&resp[..]).unwrap();
        assert_eq!(st.message, "slow down");
        assert_eq!(st.details[0].type_url, RETRY_INFO_TYPE);
        let (status, h, _) = raw_http(server.http_addr(), head, &body).await;
        assert_eq!(status, 503);
        assert!(h.contains("Sun, 06 Nov 1994 08:49:37 GMT"), "{h}");
        let (status, _, resp) = raw_http(server.http_addr(), head, &body).await;
        assert_eq!(status, 200);
        let partial = ExportTraceServiceResponse::decode(&resp[..])
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(partial.rejected_spans, 2);
        // Failed requests are recorded but not stored.
        assert_eq!(server.request_count(), 3);
        assert_eq!(server.span_count(), 3);
        let (status, ..) = raw_http(server.http_addr(), head, &body).await;
        assert_eq!(status, 200);
    }

    #[test]
    fn behaviours_run_in_order() {
        let shared = Shared {
            state: Mutex::new(State::default()),
            changes: watch::channel(0).0,
            options: ServerOptions::default(),
        };
        shared
            .state
            .lock()
            .script
            .push_back(Behavior::next(2, Outcome::http(503, "a")));
        shared
            .state
            .lock()
            .script
            .push_back(Behavior::once(Outcome::partial(1, "b")));
        assert_eq!(shared.next_behavior().0, Outcome::http(503, "a"));
        assert_eq!(shared.next_behavior().0, Outcome::http(503, "a"));
        assert_eq!(shared.next_behavior().0, Outcome::partial(1, "b"));
        assert_eq!(shared.next_behavior().0, Outcome::Success);
    }

    #[tokio::test]
    async fn grpc_unknown_method_and_bad_body() {
        let server = OtlpTestServer::start().await;
        let channel = tonic::transport::Endpoint::from_shared(server.grpc_endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let call = |path: &'static str, body: &'static [u8]| {
            let mut grpc = grpc.clone();
            async move {
                grpc.ready().await.unwrap();
                grpc.unary::<Bytes, Bytes, _>(
                    tonic::Request::new(Bytes::from_static(body)),
                    http::uri::PathAndQuery::from_static(path),
                    RawCodec,
                )
                .await
            }
        };
        let err = call(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
            b"",
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        let err = call(TRACES_METHOD, b"\x0a\x05\x01").await.unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        let ok = call(LOGS_METHOD, b"").await.unwrap().into_inner();
        assert_eq!(
            ExportLogsServiceResponse::decode(ok).unwrap(),
            ExportLogsServiceResponse::default()
        );
        assert_eq!(server.invalid_requests().len(), 2);
        assert_eq!(server.request_count(), 1);
        assert_eq!(server.requests()[0].transport, Transport::Grpc);
    }

    #[tokio::test]
    async fn stop_refuses_connections_and_restart_reuses_ports() {
        let server = OtlpTestServer::start().await;
        let (grpc, http) = (server.grpc_addr(), server.http_addr());
        // An idle open connection must be cut by stop().
        let mut idle = TcpStream::connect(http).await.unwrap();
        server.stop().await;
        assert!(TcpStream::connect(grpc).await.is_err());
        assert!(TcpStream::connect(http).await.is_err());
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf))
            .await
            .expect("idle connection closed");
        assert!(matches!(read, Ok(0) | Err(_)));
        server.restart().await;
        assert_eq!(server.grpc_addr(), grpc);
        let (status, ..) = raw_http(
            http,
            "POST /v1/metrics HTTP/1.1\r\nContent-Type: application/x-protobuf",
            &[],
        )
        .await;
        assert_eq!(status, 200);
        assert!(server.wait_for_requests(1, Duration::from_secs(1)).await);
        assert!(!server.wait_for_spans(1, Duration::from_millis(50)).await);
    }
}
