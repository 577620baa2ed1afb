//! OTLP/gRPC transport: unary `Export` calls with the payload bytes passed through untouched.

use super::config::{Compression, Config};
use super::{OtlpRequest, partial_success_outcome, request_headers, tls};
use bytes::Bytes;
use sluice_core::{SendOutcome, reason};
use sluice_otlp::grpc::{PreEncodedBody, RawCodec, pre_encoded_request};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_types::StatusExt;

pub(super) struct GrpcSender {
    component_id: Arc<str>,
    /// One lazily connected channel per configured connection, used in turn.
    channels: Vec<PreEncodedBody<Channel>>,
    next_channel: AtomicUsize,
    gzip: bool,
    timeout: Duration,
    headers: ::http::HeaderMap,
}

impl GrpcSender {
    pub(super) fn new(
        config: &Config,
        headers: ::http::HeaderMap,
        component_id: Arc<str>,
    ) -> anyhow::Result<GrpcSender> {
        // The lazy channel spawns its worker immediately, which needs a runtime.
        if tokio::runtime::Handle::try_current().is_err() {
            anyhow::bail!("the gRPC OTLP exporter must be built inside a Tokio runtime");
        }
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| anyhow::anyhow!("endpoint {:?}: {e}", config.endpoint))?
            .connect_timeout(config.timeout.get())
            .tcp_nodelay(true)
            // Notice dead connections (a restarted backend) without waiting for a request.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if config.endpoint.starts_with("https://") {
            let tls_settings = config.tls.clone().unwrap_or_default();
            let mut client_tls = ClientTlsConfig::new();
            if let Some(name) = &tls_settings.server_name {
                client_tls = client_tls.domain_name(name.clone());
            }
            if let Some(id) = tls::load_identity(&tls_settings)? {
                client_tls = client_tls.identity(Identity::from_pem(id.cert_pem, id.key_pem));
            }
            // tonic passes `domain_name` to the verifier itself, so no name override here.
            endpoint = endpoint
                .tls_config_with_verifier(client_tls, tls::verifier(&tls_settings, false)?)
                .map_err(|e| anyhow::anyhow!("tls: {e}"))?;
        }
        Ok(GrpcSender {
            component_id,
            channels: (0..config.connections)
                .map(|_| PreEncodedBody(endpoint.clone().connect_lazy()))
                .collect(),
            next_channel: AtomicUsize::new(0),
            gzip: config.compression == Compression::Gzip,
            timeout: config.timeout.get(),
            headers,
        })
    }

    pub(super) async fn send(&self, request: &OtlpRequest) -> SendOutcome {
        let headers = match request_headers(&self.headers, request.tenant.as_deref()) {
            Ok(h) => h,
            Err(outcome) => return outcome,
        };
        let turn = self.next_channel.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        let mut grpc = tonic::client::Grpc::new(self.channels[turn].clone());
        if self.gzip {
            grpc = grpc
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        if let Err(e) = grpc.ready().await {
            return SendOutcome::Retryable {
                reason: reason::CONNECT,
                retry_after: None,
                message: format!("gRPC channel not ready: {e}"),
            };
        }
        let metadata = MetadataMap::from_headers(headers);
        let mut call = if self.gzip {
            // Compressing builds a new buffer anyway: tonic's codec path does it.
            tonic::Request::from_parts(metadata, Default::default(), request.body())
        } else {
            pre_encoded_request(metadata, request.parts.clone())
        };
        // Sent as `grpc-timeout` so the server can give up when we do.
        call.set_timeout(self.timeout);
        match grpc
            .unary::<Bytes, Bytes, _>(
                call,
                sluice_otlp::grpc::export_path(request.signal),
                RawCodec,
            )
            .await
        {
            Ok(response) => {
                partial_success_outcome(&self.component_id, request.signal, response.get_ref())
            }
            Err(status) => classify_status(&status),
        }
    }
}

/// The shared `reason` label of a gRPC code: the HTTP status class it corresponds to.
fn code_reason(code: Code) -> &'static str {
    match code {
        Code::DeadlineExceeded => reason::TIMEOUT,
        Code::ResourceExhausted => reason::RATE_LIMITED,
        Code::Unavailable | Code::Internal | Code::Unknown | Code::DataLoss | Code::Aborted => {
            reason::SERVER_ERROR
        }
        Code::InvalidArgument => reason::BAD_REQUEST,
        Code::Unauthenticated => reason::UNAUTHORIZED,
        Code::PermissionDenied => reason::FORBIDDEN,
        Code::NotFound | Code::Unimplemented => reason::NOT_FOUND,
        Code::Ok
        | Code::Cancelled
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange => reason::CLIENT_ERROR,
    }
}

/// True when the status was made by the client (connection, TLS, HTTP/2 failure) rather than
/// sent by the server: tonic keeps the underlying error as the status' source.
fn local_failure(status: &Status) -> Option<&'static str> {
    let mut source = std::error::Error::source(status);
    let mut reason = None;
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return Some(reason::CONNECT);
        }
        // The channel enforces the `grpc-timeout` we set on the call.
        if err.is::<tonic::TimeoutExpired>() {
            return Some(reason::TIMEOUT);
        }
        reason = Some(reason::TRANSPORT);
        source = err.source();
    }
    reason
}

/// OTLP/gRPC retry rules (OTLP specification, "OTLP/gRPC Response" and "Failures"): the listed transient codes are retried,
/// `RESOURCE_EXHAUSTED` only when the server sent `RetryInfo`, every other code is final.
pub(super) fn classify_status(status: &Status) -> SendOutcome {
    let message = if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        status.message().to_owned()
    };
    if let Some(reason) = local_failure(status) {
        return SendOutcome::Retryable {
            reason,
            retry_after: None,
            message,
        };
    }
    let retry_info = status.get_details_retry_info();
    let retry_after = retry_info.as_ref().and_then(|r| r.retry_delay);
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => retry_info.is_some(),
        _ => false,
    };
    let reason = code_reason(status.code());
    if retryable {
        SendOutcome::Retryable {
            reason,
            retry_after,
            message,
        }
    } else {
        SendOutcome::Rejected { reason, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn retryable_codes() {
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(
                matches!(
                    classify_status(&Status::new(code, "x")),
                    SendOutcome::Retryable {
                        retry_after: None,
                        ..
                    }
                ),
                "{code:?}"
            );
        }
        for code in [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Internal,
            Code::Unimplemented,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
        ] {
            assert!(
                matches!(
                    classify_status(&Status::new(code, "x")),
                    SendOutcome::Rejected { .. }
                ),
                "{code:?}"
            );
        }
    }

    #[test]
    fn resource_exhausted_with_retry_info() {
        let status = Status::with_error_details(
            Code::ResourceExhausted,
            "RATE_LIMITED",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(5))),
        );
        assert_eq!(
            classify_status(&status),
            SendOutcome::Retryable {
                reason: "rate_limited",
                retry_after: Some(Duration::from_secs(5)),
                message: "RATE_LIMITED".into()
            }
        );
    }
}
