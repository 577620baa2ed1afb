//! The HTTP side: `POST /v1/{traces,metrics,logs}` in protobuf or JSON, answered as the
//! Collector answers.

use super::grpc::{retry_info_any, success_response};
use super::payload::Payload;
use super::script::{Outcome, RetryAfter};
use super::{InvalidRequest, JSON, PROTOBUF, ReceivedRequest, Shared, Transport};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use sluice_core::Signal;
use sluice_otlp::rpc::{RETRY_INFO_TYPE_URL, Status as RpcStatus};
use std::io::Read;
use std::sync::Arc;
use thiserror::Error;
use tonic::Code;

/// Why a request body could not be read; each maps to the Collector's status and code.
#[derive(Debug, Error)]
enum BodyError {
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading body: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
    #[error("decompressed body larger than {0} bytes")]
    DecompressedTooLarge(usize),
    #[error("invalid gzip body: {0}")]
    Gzip(std::io::Error),
    #[error("unsupported Content-Encoding {0:?}")]
    UnsupportedEncoding(String),
}

impl BodyError {
    fn status(&self) -> (StatusCode, Code) {
        match self {
            BodyError::TooLarge(_) | BodyError::DecompressedTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted)
            }
            _ => (StatusCode::BAD_REQUEST, Code::InvalidArgument),
        }
    }
}

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
                    "@type": RETRY_INFO_TYPE_URL,
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

/// The body, at most `max` bytes before and after its `Content-Encoding` (none or gzip).
async fn read_body(body: Incoming, encoding: Option<&str>, max: usize) -> Result<Bytes, BodyError> {
    let wire = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(BodyError::TooLarge(max));
        }
        Err(e) => return Err(BodyError::Read(e)),
    };
    match encoding {
        None => Ok(wire),
        Some("gzip") => {
            let mut out = Vec::new();
            let n = flate2::read::GzDecoder::new(&wire[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(BodyError::Gzip)?;
            if n > max {
                return Err(BodyError::DecompressedTooLarge(max));
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_owned())),
    }
}

pub(super) async fn handle_http(shared: Arc<Shared>, req: http::Request<Incoming>) -> HttpResponse {
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
    let body = match read_body(req.into_body(), encoding.as_deref(), max).await {
        Ok(b) => b,
        Err(e) => {
            let (status, code) = e.status();
            return fail(status, code, e.to_string());
        }
    };
    let decoded = match body_type {
        BodyType::Protobuf => Payload::decode_protobuf(signal, &body),
        BodyType::Json => Payload::decode_json(signal, &body),
    };
    let payload = match decoded {
        Ok(p) => p,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                e.to_string(),
            );
        }
    };
    let (outcome, delay) = shared.outcome_for(&payload);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = answer(body_type, signal, &outcome);
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

/// The answer to a decoded request, in its body type.
fn answer(body_type: BodyType, signal: Signal, outcome: &Outcome) -> HttpResponse {
    match outcome {
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
    }
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
