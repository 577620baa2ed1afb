//! OTLP/gRPC: the three `Export` methods served by tonic with a codec that hands over the raw
//! request bytes, so the hot path never decodes protobuf.

use crate::ingest::{Ingest, Rejection, grpc_signal, tenant_from};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::HeaderValue;
use sluice_core::{Refusal, telemetry};
use sluice_otlp::grpc::RawCodec;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The tower service tonic's server runs: routes by method path, runs tonic's unary machinery
/// (framing, gzip, size limit) and answers with the mapped status.
#[derive(Clone)]
pub(crate) struct GrpcService {
    pub ingest: Arc<Ingest>,
    /// gRPC metadata key (lowercase) holding the tenant.
    pub tenant_key: Option<http::HeaderName>,
    pub max_recv_msg_size: usize,
}

impl tower::Service<http::Request<Body>> for GrpcService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.serve(request).await) })
    }
}

impl GrpcService {
    async fn serve(self, request: http::Request<Body>) -> http::Response<Body> {
        let started = Instant::now();
        let ingest = self.ingest.clone();
        let Some(signal) = grpc_signal(request.uri().path()) else {
            let status = Status::unimplemented(format!(
                "unknown method {}; this is an OTLP receiver",
                request.uri().path()
            ));
            self.record(status.code(), started);
            return status.into_http();
        };

        if self.ingest.auth.is_some() {
            let tenant = self
                .tenant_key
                .as_ref()
                .and_then(|key| tenant_from(request.headers().get(key).map(|v| v.as_bytes())));
            if let Err(rejection) =
                self.ingest
                    .authenticate(signal, request.headers(), tenant.as_deref())
            {
                let status = status_for(rejection);
                self.record(status.code(), started);
                return status.into_http();
            }
        }

        // tonic answers some failures (size limit, bad compression, truncated frames) itself,
        // without calling the handler; this tells them apart for counting.
        let handled = Arc::new(AtomicBool::new(false));
        let handler = {
            let handled = handled.clone();
            let tenant_key = self.tenant_key.clone();
            let ingest = ingest.clone();
            tower::service_fn(move |request: tonic::Request<Bytes>| {
                handled.store(true, Ordering::Relaxed);
                let ingest = ingest.clone();
                let tenant = tenant_key.as_ref().and_then(|key| {
                    tenant_from(request.metadata().get(key.as_str()).map(|v| v.as_bytes()))
                });
                async move {
                    match ingest.protobuf(signal, request.into_inner(), tenant).await {
                        Ok(accepted) => Ok(tonic::Response::new(sluice_otlp::export_response(
                            signal,
                            accepted.rejected,
                            &accepted.message,
                            false,
                        ))),
                        Err(rejection) => Err(status_for(rejection)),
                    }
                }
            })
        };
        let mut grpc = tonic::server::Grpc::new(RawCodec)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(self.max_recv_msg_size)
            .max_encoding_message_size(usize::MAX);
        let mut response = grpc.unary(handler, request).await;

        // An error status travels in the response headers; success in the trailers.
        let code = response
            .headers()
            .get(Status::GRPC_STATUS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(Code::from)
            .unwrap_or(Code::Ok);
        let code = if handled.load(Ordering::Relaxed) {
            code
        } else {
            self.tonic_refusal(signal, code, &mut response)
        };
        self.record(code, started);
        response
    }

    /// Counts a request tonic refused before our handler ran, and makes "too large" final:
    /// tonic says OUT_OF_RANGE, which OTLP clients retry; OTLP wants RESOURCE_EXHAUSTED
    /// without RetryInfo.
    fn tonic_refusal(
        &self,
        signal: sluice_core::Signal,
        code: Code,
        response: &mut http::Response<Body>,
    ) -> Code {
        let reason = match code {
            Code::OutOfRange | Code::ResourceExhausted => sluice_core::reason::TOO_LARGE,
            Code::Unimplemented => "unsupported_encoding",
            _ => "malformed",
        };
        self.ingest.refused(Some(signal), reason);
        if code == Code::OutOfRange {
            response.headers_mut().insert(
                Status::GRPC_STATUS,
                HeaderValue::from(Code::ResourceExhausted as i32),
            );
            return Code::ResourceExhausted;
        }
        code
    }

    fn record(&self, code: Code, started: Instant) {
        telemetry::receiver_request(
            &self.ingest.component_id,
            "grpc",
            code_name(code).to_owned(),
            started.elapsed(),
        );
    }
}

/// The gRPC status for a refused request (OTLP spec and the collector's mapping).
pub(crate) fn status_for(rejection: Rejection) -> Status {
    match rejection {
        Rejection::Malformed(message) => Status::invalid_argument(message),
        Rejection::TooLarge(message) => Status::resource_exhausted(message),
        Rejection::Refused(refusal) => match &refusal {
            Refusal::Backpressure { retry_after, .. } => Status::with_error_details(
                Code::ResourceExhausted,
                refusal.to_string(),
                ErrorDetails::with_retry_info(Some(*retry_after)),
            ),
            Refusal::Unavailable { .. } => Status::unavailable(refusal.to_string()),
            Refusal::NoPipeline(_) => Status::unimplemented(refusal.to_string()),
            Refusal::Invalid(_) => Status::invalid_argument(refusal.to_string()),
        },
        Rejection::Unauthenticated(refusal) => Status::unauthenticated(refusal.message()),
    }
}

/// Canonical upper-case code names, the `status` label of request metrics.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
