//! OTLP/HTTP: `POST /v1/{traces,metrics,logs}` with protobuf or JSON bodies, identity, gzip or
//! deflate, answered like the OpenTelemetry Collector does (status codes, bodies in the
//! request's encoding, `Retry-After`).

use crate::decompress::{ContentEncoding, DecompressError, decompress};
use crate::ingest::{
    Accepted, Ingest, OFF_REACTOR_BYTES, Rejection, Screened, http_signal, screen, tenant_from,
};
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use sluice_core::{Refusal, Signal, telemetry};
use sluice_otlp::Rules;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Minimum wait suggested to clients when the pipeline is unavailable (stopping, storage
/// failing); they back off further on their own.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

// google.rpc.Code values carried in error bodies.
const CODE_INVALID_ARGUMENT: i32 = 3;
const CODE_RESOURCE_EXHAUSTED: i32 = 8;
const CODE_UNIMPLEMENTED: i32 = 12;
const CODE_UNAVAILABLE: i32 = 14;
const CODE_UNAUTHENTICATED: i32 = 16;

/// The two body encodings OTLP/HTTP defines; replies use the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn from_headers(headers: &HeaderMap) -> Option<Format> {
        let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        // Media-type parameters (`; charset=utf-8`) are ignored.
        let media_type = value.split(';').next()?.trim();
        if media_type.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Format::Protobuf)
        } else if media_type.eq_ignore_ascii_case("application/json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        })
    }

    fn is_json(self) -> bool {
        self == Format::Json
    }
}

pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// Answers OTLP/HTTP requests; one per server, shared by all connections.
pub(crate) struct HttpHandler {
    pub ingest: Arc<Ingest>,
    pub tenant_header: Option<HeaderName>,
    pub max_request_body_size: usize,
    pub max_decompressed_size: usize,
    /// Bounds concurrent off-reactor decodes, so decompression memory stays within
    /// `permits × max_decompressed_size` however many bombs arrive at once.
    pub decode_slots: Arc<tokio::sync::Semaphore>,
}

/// Concurrent decodes allowed: one per core (they are CPU-bound), at least 2.
pub(crate) fn decode_slots() -> Arc<tokio::sync::Semaphore> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(tokio::sync::Semaphore::new(cores.max(2)))
}

impl HttpHandler {
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<HttpResponse, Infallible> {
        let started = Instant::now();
        let response = self.route(request).await;
        telemetry::receiver_request(
            &self.ingest.component_id,
            "http",
            response.status().as_u16().to_string(),
            started.elapsed(),
        );
        Ok(response)
    }

    async fn route(&self, request: Request<Incoming>) -> HttpResponse {
        let Some(signal) = http_signal(request.uri().path()) else {
            return plain(StatusCode::NOT_FOUND, "404 page not found");
        };
        if request.method() != Method::POST {
            self.ingest.refused(Some(signal), "method_not_allowed");
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 method not allowed, supported: [POST]",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let Some(format) = Format::from_headers(request.headers()) else {
            self.ingest
                .refused(Some(signal), sluice_core::reason::UNSUPPORTED_MEDIA_TYPE);
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "415 unsupported media type, supported: [application/json, application/x-protobuf]",
            );
        };
        if self.ingest.auth.is_some() {
            let tenant = self
                .tenant_header
                .as_ref()
                .and_then(|name| tenant_from(request.headers().get(name).map(|v| v.as_bytes())));
            if let Err(rejection) =
                self.ingest
                    .authenticate(signal, request.headers(), tenant.as_deref())
            {
                return error_response(format, rejection);
            }
        }
        match self.receive(signal, format, request).await {
            Ok(accepted) => {
                let body = sluice_otlp::export_response(
                    signal,
                    accepted.rejected,
                    &accepted.message,
                    format.is_json(),
                );
                respond(StatusCode::OK, format, body)
            }
            Err(rejection) => error_response(format, rejection),
        }
    }

    async fn receive(
        &self,
        signal: Signal,
        format: Format,
        request: Request<Incoming>,
    ) -> Result<Accepted, Rejection> {
        self.ingest.check_accepts(signal)?;
        let headers = request.headers();
        let encoding_header = headers.get(CONTENT_ENCODING).map(|v| v.to_str());
        let encoding = match encoding_header {
            None => Some(ContentEncoding::Identity),
            Some(Ok(value)) => ContentEncoding::parse(Some(value)),
            Some(Err(_)) => None,
        };
        let Some(encoding) = encoding else {
            self.ingest.refused(Some(signal), "unsupported_encoding");
            return Err(Rejection::Malformed(format!(
                "unsupported Content-Encoding {:?}; supported: gzip, deflate, identity",
                headers.get(CONTENT_ENCODING)
            )));
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_request_body_size as u64) {
            self.ingest
                .refused(Some(signal), sluice_core::reason::TOO_LARGE);
            return Err(self.body_too_large());
        }
        let tenant = self
            .tenant_header
            .as_ref()
            .and_then(|name| tenant_from(headers.get(name).map(|v| v.as_bytes())));

        let body = match Limited::new(request.into_body(), self.max_request_body_size)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
                self.ingest
                    .refused(Some(signal), sluice_core::reason::TOO_LARGE);
                return Err(self.body_too_large());
            }
            Err(err) => {
                self.ingest.refused(Some(signal), "read_error");
                return Err(Rejection::Malformed(format!(
                    "cannot read the request body: {err}"
                )));
            }
        };
        if body.is_empty() {
            return Ok(Accepted::default());
        }

        let cap = self.max_decompressed_size;
        // Any compressed body may inflate to the cap (a few KiB can hold 64 MiB of zeros).
        let decoded = if encoding != ContentEncoding::Identity || body.len() >= OFF_REACTOR_BYTES {
            // The semaphore is never closed, so acquiring only waits.
            let _slot = self.decode_slots.acquire().await.ok();
            let rules = self.ingest.rules;
            tokio::task::spawn_blocking(move || {
                decode(signal, format, encoding, body, cap, rules.as_ref())
            })
            .await
            .unwrap_or_else(|e| {
                Err((
                    "internal",
                    Rejection::Malformed(format!("decoding failed: {e}")),
                ))
            })
        } else {
            decode(
                signal,
                format,
                encoding,
                body,
                cap,
                self.ingest.rules.as_ref(),
            )
        };
        let screened = decoded.map_err(|(reason, rejection)| {
            self.ingest.refused(Some(signal), reason);
            rejection
        })?;
        self.ingest.deliver(signal, screened, tenant).await
    }

    fn body_too_large(&self) -> Rejection {
        Rejection::TooLarge(format!(
            "request body is over max_request_body_size ({} bytes)",
            self.max_request_body_size
        ))
    }
}

/// Decompresses and checks (protobuf) or converts (JSON) a body: CPU work, no I/O.
fn decode(
    signal: Signal,
    format: Format,
    encoding: ContentEncoding,
    body: Bytes,
    cap: usize,
    rules: Option<&Rules>,
) -> Result<Screened, (&'static str, Rejection)> {
    let raw = decompress(encoding, body, cap).map_err(|err| match err {
        DecompressError::TooLarge { cap } => (
            sluice_core::reason::TOO_LARGE,
            Rejection::TooLarge(format!(
                "request body is over max_decompressed_size ({cap} bytes) after decompression"
            )),
        ),
        DecompressError::Corrupt(e) => (
            "malformed",
            Rejection::Malformed(format!("cannot decompress the {encoding:?} body: {e}")),
        ),
    })?;
    let malformed = |err| ("malformed", Rejection::malformed(err));
    if raw.is_empty() {
        return Ok(Screened {
            payload: raw,
            count: 0,
            refused: None,
        });
    }
    match format {
        Format::Protobuf => screen(signal, raw, rules, None).map_err(malformed),
        Format::Json => {
            let (payload, count) =
                sluice_otlp::json_to_protobuf(signal, &raw).map_err(malformed)?;
            screen(signal, payload, rules, Some(count)).map_err(malformed)
        }
    }
}

fn error_response(format: Format, rejection: Rejection) -> HttpResponse {
    let json = format.is_json();
    let (status, code, message, retry_after) = match rejection {
        Rejection::Malformed(message) => (
            StatusCode::BAD_REQUEST,
            CODE_INVALID_ARGUMENT,
            message,
            None,
        ),
        Rejection::TooLarge(message) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            CODE_RESOURCE_EXHAUSTED,
            message,
            None,
        ),
        Rejection::Refused(refusal) => {
            let message = refusal.to_string();
            match refusal {
                Refusal::Backpressure { retry_after, .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    CODE_RESOURCE_EXHAUSTED,
                    message,
                    Some(retry_after),
                ),
                Refusal::Unavailable { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    CODE_UNAVAILABLE,
                    message,
                    Some(UNAVAILABLE_RETRY_AFTER),
                ),
                Refusal::NoPipeline(_) => {
                    (StatusCode::NOT_FOUND, CODE_UNIMPLEMENTED, message, None)
                }
                Refusal::Invalid(_) => (
                    StatusCode::BAD_REQUEST,
                    CODE_INVALID_ARGUMENT,
                    message,
                    None,
                ),
            }
        }
        Rejection::Unauthenticated(refusal) => (
            StatusCode::UNAUTHORIZED,
            CODE_UNAUTHENTICATED,
            refusal.message().to_owned(),
            None,
        ),
    };
    let body = sluice_otlp::status_body(code, &message, retry_after, json);
    let mut response = respond(status, format, body);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sluice\", Basic realm=\"sluice\""),
        );
    }
    if let Some(delay) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(delay)));
    }
    response
}

/// Whole seconds for `Retry-After`, rounded up and at least 1 (0 would mean "retry now").
fn retry_after_secs(delay: Duration) -> u64 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    secs.max(1)
}

fn respond(status: StatusCode, format: Format, body: Bytes) -> HttpResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, format.content_type());
    response
}

fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::from_millis(3001)), 4);
    }

    #[test]
    fn content_types_ignore_parameters_and_case() {
        let headers = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            h
        };
        assert_eq!(
            Format::from_headers(&headers("application/json; charset=utf-8")),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_headers(&headers("Application/X-Protobuf")),
            Some(Format::Protobuf)
        );
        assert_eq!(Format::from_headers(&headers("text/plain")), None);
        assert_eq!(Format::from_headers(&HeaderMap::new()), None);
    }
}
