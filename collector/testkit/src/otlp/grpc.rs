//! The gRPC side: the three `Export` methods over tonic's server machinery.

use super::payload::Payload;
use super::script::{ErrorReply, Outcome};
use super::{
    InvalidRequest, LOGS_METHOD, METRICS_METHOD, ReceivedRequest, Shared, TRACES_METHOD, Transport,
};
use bytes::Bytes;
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use sluice_core::Signal;
use sluice_otlp::grpc::RawCodec;
use sluice_otlp::rpc::{RETRY_INFO_TYPE_URL, RetryInfo, Status as RpcStatus};
use std::sync::Arc;
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};

pub(super) async fn handle_grpc(
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
                Err(e) => {
                    let message = e.to_string();
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
pub(super) fn success_response(signal: Signal, partial: Option<(i64, String)>) -> Bytes {
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

pub(super) fn retry_info_any(delay: Duration) -> prost_types::Any {
    let info = RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    prost_types::Any {
        type_url: RETRY_INFO_TYPE_URL.into(),
        value: info.encode_to_vec(),
    }
}
