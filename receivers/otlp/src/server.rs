//! Accept loops for both servers, on the shared listener machinery (connection limit,
//! header-read and idle timeouts, TLS): serve until the pipeline says stop, then stop
//! accepting and let in-flight requests finish (bounded by a grace period).

use crate::grpc::GrpcService;
use crate::http_server::HttpHandler;
use sluice_core::{ReceiverContext, ReceiverError};
use sluice_http_server::{ConnectionLimits, Listener};
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight requests may take to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// The largest HTTP/2 DATA frame clients may send (RFC 9113 section 4.2 allows up to 2^24 - 1;
/// the default is 16 KiB). A typical export request (tens to hundreds of KiB) then arrives in
/// one frame instead of a dozen, less frame handling on both ends; the delivered-traces A/B
/// was within the box's noise (ahead in 5 of 7 rounds, `benches/RESULTS.md`, session 7). A
/// frame is still bounded by the flow-control window.
const MAX_FRAME_SIZE: u32 = 1 << 20;
/// A keepalive ping unanswered this long means the client is gone (Alloy's server default).
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) async fn serve_grpc(
    listener: Listener,
    limits: ConnectionLimits,
    service: GrpcService,
    ctx: ReceiverContext,
) -> Result<(), ReceiverError> {
    let addr = listener.local_addr().ok();
    let server = tonic::transport::Server::builder()
        // Pinging at half the idle timeout keeps live clients' connections (they answer each
        // ping) and lets the idle timer close dead and half-open ones.
        .http2_keepalive_interval(Some(limits.idle_timeout / 2))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_frame_size(Some(MAX_FRAME_SIZE))
        .serve_with_incoming_shutdown(service, listener.incoming(), ctx.stopped());
    let grace = async {
        ctx.stopped().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(|e| {
            let on = addr.map(|a| format!(" on {a}")).unwrap_or_default();
            ReceiverError::new(format!("gRPC server{on}"), e)
        }),
        () = grace => {
            tracing::warn!(component_id = %ctx.component_id, "gRPC requests still running after the shutdown grace period; closing");
            Ok(())
        }
    }
}

pub(crate) async fn serve_http(
    listener: Listener,
    handler: Arc<HttpHandler>,
    ctx: ReceiverContext,
) -> Result<(), ReceiverError> {
    let service = hyper::service::service_fn(move |request| handler.clone().handle(request));
    sluice_http_server::serve_http(listener, service, ctx.stopped(), SHUTDOWN_GRACE).await;
    Ok(())
}
