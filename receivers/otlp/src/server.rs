//! Accept loops for both servers: serve until the pipeline says stop, then stop accepting and
//! let in-flight requests finish (bounded by a grace period).

use crate::grpc::GrpcService;
use crate::http_server::HttpHandler;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use sluice_core::ReceiverContext;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How long in-flight requests may take to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A client must send its request headers within this time (Alloy's `read_header_timeout`).
const READ_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn serve_grpc(
    listener: std::net::TcpListener,
    service: GrpcService,
    ctx: ReceiverContext,
) -> Result<(), String> {
    let addr = listener.local_addr().ok();
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("gRPC listener {addr:?}: {e}"))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        // Alloy's server keepalive: ping idle connections every 2h, drop them after 20s.
        .http2_keepalive_interval(Some(Duration::from_secs(2 * 3600)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .serve_with_incoming_shutdown(service, incoming, ctx.stopped());
    let grace = async {
        ctx.stopped().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(|e| format!("gRPC server on {addr:?}: {e}")),
        () = grace => {
            tracing::warn!(component_id = %ctx.component_id, "gRPC requests still running after the shutdown grace period; closing");
            Ok(())
        }
    }
}

pub(crate) async fn serve_http(
    listener: std::net::TcpListener,
    handler: Arc<HttpHandler>,
    ctx: ReceiverContext,
) -> Result<(), String> {
    let addr = listener.local_addr().ok();
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("HTTP listener {addr:?}: {e}"))?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_HEADER_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    let service = hyper::service::service_fn(move |request| handler.clone().handle(request));
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("OTLP/HTTP connection ended with an error: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(component_id = %ctx.component_id, "OTLP/HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(component_id = %ctx.component_id, "OTLP/HTTP requests still running after the shutdown grace period; closing");
    }
    connections.abort_all();
    Ok(())
}
