//! Accept loops under [`ConnectionLimits`]: [`serve_http`] runs hyper (HTTP/1.1 and h2) for
//! any service, [`Listener::incoming`] feeds tonic's server.

use crate::config::ConnectionLimits;
use crate::conn::{Conn, InFlight, ServerIo, Slot};
use crate::metrics::Labels;
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Refusals answered at once; past this, refused connections are just closed.
const MAX_REFUSALS_ANSWERING: usize = 64;
/// Time a refused client gets to send its request and read the refusal.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A bound listener with its limits and optional TLS.
pub struct Listener {
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    labels: Arc<Labels>,
    slots: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
}

impl Listener {
    /// Takes over a bound, non-blocking std listener (receivers bind at build time so an
    /// address clash fails at start).
    pub fn new(
        listener: std::net::TcpListener,
        limits: ConnectionLimits,
        tls: Option<tokio_rustls::TlsAcceptor>,
        labels: Arc<Labels>,
    ) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener {
            listener: tokio::net::TcpListener::from_std(listener)?,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS_ANSWERING)),
            limits,
            tls,
            labels,
        })
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection within the limit; connections over it are refused and counted
    /// (answered when `answer_refusals`).
    async fn accept(&self, answer_refusals: bool) -> (TcpStream, Slot) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(component_id = %self.labels.component_id, listener = self.labels.listener, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => return (stream, Slot::new(permit, self.labels.clone())),
                Err(_) => {
                    self.labels.refused("connection_limit");
                    tracing::debug!(component_id = %self.labels.component_id, listener = self.labels.listener, max_connections = self.limits.max_connections, "connection refused: limit reached");
                    if answer_refusals && let Ok(permit) = self.refusals.clone().try_acquire_owned()
                    {
                        let max = self.limits.max_connections;
                        tokio::spawn(async move {
                            refuse(stream, max).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
    }

    /// Wraps an accepted connection: idle timer, and the TLS handshake (bounded by
    /// `read_header_timeout`) when TLS is on. `None` when the handshake failed (counted).
    async fn establish(
        tls: Option<tokio_rustls::TlsAcceptor>,
        limits: ConnectionLimits,
        labels: Arc<Labels>,
        stream: TcpStream,
        slot: Slot,
        in_flight: InFlight,
    ) -> Option<ServerIo> {
        let conn = Conn::new(stream, limits.idle_timeout, in_flight, slot, labels.clone());
        let Some(acceptor) = tls else {
            return Some(ServerIo::Plain(conn));
        };
        match tokio::time::timeout(limits.read_header_timeout, acceptor.accept(conn)).await {
            Ok(Ok(tls)) => Some(ServerIo::Tls(Box::new(tls))),
            Ok(Err(e)) => {
                labels.refused("tls_handshake");
                tracing::debug!(component_id = %labels.component_id, listener = labels.listener, "TLS handshake failed: {e}");
                None
            }
            Err(_) => {
                labels.refused("tls_handshake_timeout");
                None
            }
        }
    }

    /// The connection stream for `tonic::transport::Server::serve_with_incoming_shutdown`.
    /// TLS handshakes run concurrently; the listener closes when the stream is dropped.
    pub fn incoming(self) -> impl futures::Stream<Item = io::Result<ServerIo>> + Send + 'static {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<ServerIo>>(64);
        tokio::spawn(async move {
            let listener = Arc::new(self);
            loop {
                let (stream, slot) = tokio::select! {
                    () = tx.closed() => break,
                    accepted = listener.accept(listener.tls.is_none()) => accepted,
                };
                let (tx, listener) = (tx.clone(), listener.clone());
                tokio::spawn(async move {
                    let established = Listener::establish(
                        listener.tls.clone(),
                        listener.limits,
                        listener.labels.clone(),
                        stream,
                        slot,
                        InFlight::default(),
                    )
                    .await;
                    if let Some(io) = established {
                        let _ = tx.send(Ok(io)).await;
                    }
                });
            }
        });
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}

/// Tells a client over the connection limit why: HTTP gets a 503, gRPC an `UNAVAILABLE`
/// status (both retryable), then the connection closes.
async fn refuse(stream: TcpStream, max_connections: usize) {
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        std::future::ready(Ok::<_, std::convert::Infallible>(refusal(
            &request,
            max_connections,
        )))
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_LINGER, connection).await;
}

fn refusal(
    request: &http::Request<Incoming>,
    max_connections: usize,
) -> http::Response<Full<Bytes>> {
    let message =
        format!("connection limit reached (max_connections = {max_connections}); retry later");
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let mut response = http::Response::new(Full::new(Bytes::new()));
    if !grpc {
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        *response.body_mut() = Full::new(Bytes::from(format!("{message}\n")));
    }
    let headers = response.headers_mut();
    if grpc {
        // A trailers-only gRPC answer: the status travels in the headers.
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            HeaderValue::from(tonic::Code::Unavailable as i32),
        );
        if let Ok(value) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", value);
        }
    } else {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(1));
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Counts a request in flight for as long as its response future runs.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    in_flight: InFlight,
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        let guard = self.in_flight.enter();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(guard);
            response
        })
    }
}

/// Serves `service` on `listener` (HTTP/1.1 and h2, TLS when configured) until `shutdown`
/// resolves, then stops accepting and lets in-flight requests finish within `grace`.
pub async fn serve_http<S, B>(
    listener: Listener,
    service: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listener.limits.read_header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let answer_refusals = listener.tls.is_none();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            (stream, slot) = listener.accept(answer_refusals) => {
                let in_flight = InFlight::default();
                let service = Tracked { inner: service.clone(), in_flight: in_flight.clone() };
                let (tls, limits, labels) = (listener.tls.clone(), listener.limits, listener.labels.clone());
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                connections.spawn(async move {
                    let Some(io) = Listener::establish(tls, limits, labels.clone(), stream, slot, in_flight).await else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(io), service);
                    if let Err(e) = watcher.watch(connection.into_owned()).await {
                        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                            labels.closed_for("header_timeout");
                        }
                        tracing::debug!(component_id = %labels.component_id, listener = labels.listener, "connection ended with an error: {e}");
                    }
                });
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace period; closing");
    }
    connections.abort_all();
}
