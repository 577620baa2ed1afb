//! OTLP/HTTP transport (protobuf bodies): `POST {endpoint}/v1/{traces,metrics,logs}`.

use super::config::{Compression, Config};
use super::{OtlpRequest, partial_success_outcome, request_headers, tls};
use ::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use ::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use sluice_core::retry::parse_retry_after;
use sluice_core::{SendOutcome, Signal, reason};
use sluice_http_client::body::{BodyError, read_body, shorten};
use std::io::{Read as _, Write as _};
use std::sync::Arc;

const PROTOBUF: &str = "application/x-protobuf";
/// Responses are small (empty, a partial success or a status); more is not worth reading.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Error messages longer than this are cut in logs and outcomes.
const MAX_MESSAGE_CHARS: usize = 1024;

pub(super) struct HttpSender {
    component_id: Arc<str>,
    client: reqwest::Client,
    urls: [String; 3],
    gzip: bool,
    headers: HeaderMap,
}

impl HttpSender {
    pub(super) fn new(
        config: &Config,
        headers: HeaderMap,
        component_id: Arc<str>,
    ) -> anyhow::Result<HttpSender> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout.get())
            .timeout(config.timeout.get())
            // A redirected POST may turn into a GET; a backend that moved is a config error.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
        if let Some(tls_settings) = &config.tls {
            builder = builder.use_preconfigured_tls(tls::http_client_config(tls_settings)?);
        }
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        let base = config.endpoint.trim_end_matches('/');
        let url = |signal: Signal| format!("{base}/v1/{}", signal.as_str());
        Ok(HttpSender {
            component_id,
            client,
            urls: [url(Signal::Traces), url(Signal::Metrics), url(Signal::Logs)],
            gzip: config.compression == Compression::Gzip,
            headers,
        })
    }

    fn url(&self, signal: Signal) -> &str {
        match signal {
            Signal::Traces => &self.urls[0],
            Signal::Metrics => &self.urls[1],
            Signal::Logs => &self.urls[2],
        }
    }

    pub(super) async fn send(&self, request: &OtlpRequest) -> SendOutcome {
        let mut headers = match request_headers(&self.headers, request.tenant.as_deref()) {
            Ok(h) => h,
            Err(outcome) => return outcome,
        };
        headers.insert(CONTENT_TYPE, ::http::HeaderValue::from_static(PROTOBUF));
        let body = if self.gzip {
            headers.insert(CONTENT_ENCODING, ::http::HeaderValue::from_static("gzip"));
            gzip(&request.body())
        } else {
            request.body()
        };
        let response = match self
            .client
            .post(self.url(request.signal))
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return transport_failure(&e),
        };
        let status = response.status();
        let response_headers = response.headers().clone();
        let body = match read_body(response, MAX_RESPONSE_BYTES).await {
            Ok(b) => b,
            // The status line is what decides; an unreadable body only loses detail.
            Err(e) if status.is_success() => {
                tracing::debug!(component_id = %self.component_id, "response body lost: {e}");
                Bytes::new()
            }
            // The status still decides; the message says why there is no detail.
            Err(e @ BodyError::TooLarge { .. }) => Bytes::from(e.to_string()),
            Err(BodyError::Read(e)) => {
                return match e.downcast_ref::<reqwest::Error>() {
                    Some(e) => transport_failure(e),
                    None => SendOutcome::Retryable {
                        reason: "transport",
                        retry_after: None,
                        message: e.to_string(),
                    },
                };
            }
        };
        classify_response(
            &self.component_id,
            request.signal,
            status,
            &response_headers,
            &body,
        )
    }
}

fn gzip(body: &[u8]) -> Bytes {
    // Fast level: the backend link is rarely the bottleneck, the collector's cores often are.
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    Bytes::from(enc.finish().unwrap_or_default())
}

fn transport_failure(e: &reqwest::Error) -> SendOutcome {
    let reason = if e.is_timeout() {
        reason::TIMEOUT
    } else if e.is_connect() {
        reason::CONNECT
    } else {
        reason::TRANSPORT
    };
    // reqwest's top-level message is generic; the cause says what happened.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    SendOutcome::Retryable {
        reason,
        retry_after: None,
        message,
    }
}

fn status_reason(status: StatusCode) -> &'static str {
    reason::for_http_status(status.as_u16())
}

/// Maps an OTLP/HTTP response to an outcome (OTLP specification, "OTLP/HTTP Response" and "Failures"): 2xx is success (with a
/// possible partial success in the body), 429/502/503/504 are retried honouring `Retry-After`,
/// everything else — 500 included — is final.
pub(super) fn classify_response(
    component_id: &str,
    signal: Signal,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> SendOutcome {
    let body = match decompress_if_gzip(headers, body) {
        Some(b) => b,
        None => body.to_vec(),
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if status.is_success() {
        if content_type.contains("json") {
            return json_partial_success(signal, &body);
        }
        return partial_success_outcome(component_id, signal, &body);
    }
    let reason = status_reason(status);
    let message = error_message(status, content_type, &body);
    match status.as_u16() {
        429 | 502 | 503 | 504 => SendOutcome::Retryable {
            reason,
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
            message,
        },
        _ => SendOutcome::Rejected { reason, message },
    }
}

fn decompress_if_gzip(headers: &HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    let encoding = headers.get(CONTENT_ENCODING)?.to_str().ok()?;
    if !encoding.trim().eq_ignore_ascii_case("gzip") {
        return None;
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    if out.len() > MAX_RESPONSE_BYTES {
        // Said, not cut: a prefix would decode as a different response.
        return Some(
            format!("gzip response body larger than {MAX_RESPONSE_BYTES} bytes").into_bytes(),
        );
    }
    Some(out)
}

fn json_partial_success(signal: Signal, body: &[u8]) -> SendOutcome {
    let partial = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("partialSuccess").cloned());
    let Some(partial) = partial else {
        return SendOutcome::Sent;
    };
    let key = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    // int64 is a string in OTLP/JSON, but decoders accept numbers too.
    let rejected = match partial.get(key) {
        Some(serde_json::Value::String(s)) => s.parse::<u64>().unwrap_or(0),
        Some(v) => v.as_u64().unwrap_or(0),
        None => 0,
    };
    let message = partial
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_owned();
    if rejected > 0 {
        SendOutcome::PartiallyRejected { rejected, message }
    } else {
        SendOutcome::Sent
    }
}

/// The backend's explanation: the `google.rpc.Status` message when the body is one, else the
/// body as text, else the status line.
fn error_message(status: StatusCode, content_type: &str, body: &[u8]) -> String {
    use prost::Message;
    let from_status = if content_type.contains("json") {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
    } else if content_type.contains("protobuf") || content_type.is_empty() {
        tonic_types::Status::decode(body).ok().map(|s| s.message)
    } else {
        None
    };
    let text = match from_status {
        Some(m) if !m.trim().is_empty() => m,
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        text
    };
    shorten(&text, MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::time::Duration;

    fn classify(status: u16, headers: &[(&str, &str)], body: &[u8]) -> SendOutcome {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                ::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        classify_response(
            "c",
            Signal::Traces,
            StatusCode::from_u16(status).unwrap(),
            &map,
            body,
        )
    }

    #[test]
    fn retryable_statuses_honour_retry_after() {
        for (code, expected) in [
            (429, "rate_limited"),
            (502, "server_error"),
            (503, "server_error"),
            (504, "server_error"),
        ] {
            match classify(code, &[("retry-after", "7")], b"") {
                SendOutcome::Retryable {
                    retry_after,
                    reason,
                    ..
                } => {
                    assert_eq!(retry_after, Some(Duration::from_secs(7)));
                    assert_eq!(reason, expected);
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(matches!(
            classify(503, &[], b""),
            SendOutcome::Retryable {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn final_statuses() {
        for code in [400, 401, 403, 404, 408, 413, 500, 501, 505, 302] {
            assert!(
                matches!(classify(code, &[], b""), SendOutcome::Rejected { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn messages_from_status_json_or_text() {
        let status = tonic_types::Status {
            code: 3,
            message: "span has no trace id".into(),
            details: vec![],
        };
        let pb = status.encode_to_vec();
        assert_eq!(
            classify(400, &[("content-type", PROTOBUF)], &pb),
            SendOutcome::Rejected {
                reason: "bad_request",
                message: "span has no trace id".into()
            }
        );
        assert_eq!(
            classify(
                400,
                &[("content-type", "application/json")],
                br#"{"code":3,"message":"bad json"}"#
            ),
            SendOutcome::Rejected {
                reason: "bad_request",
                message: "bad json".into()
            }
        );
        assert_eq!(
            classify(500, &[("content-type", "text/plain")], b" boom \n"),
            SendOutcome::Rejected {
                reason: "server_error",
                message: "boom".into()
            }
        );
        assert_eq!(
            classify(404, &[], b""),
            SendOutcome::Rejected {
                reason: "not_found",
                message: "Not Found".into()
            }
        );
        let long = "x".repeat(5000);
        match classify(400, &[("content-type", "text/plain")], long.as_bytes()) {
            SendOutcome::Rejected { message, .. } => assert!(message.len() < 1100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_partial_success_forms() {
        assert_eq!(
            classify(
                200,
                &[("content-type", "application/json")],
                br#"{"partialSuccess":{"rejectedSpans":"4","errorMessage":"late"}}"#
            ),
            SendOutcome::PartiallyRejected {
                rejected: 4,
                message: "late".into()
            }
        );
        assert_eq!(
            classify(200, &[("content-type", "application/json")], b"{}"),
            SendOutcome::Sent
        );
    }

    #[test]
    fn gzip_round_trip() {
        let data = b"hello hello hello hello".repeat(50);
        let zipped = gzip(&data);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(decompress_if_gzip(&headers, &zipped).unwrap(), data);
        let bomb = gzip(&vec![0u8; MAX_RESPONSE_BYTES + 1]);
        assert_eq!(
            decompress_if_gzip(&headers, &bomb).unwrap(),
            format!("gzip response body larger than {MAX_RESPONSE_BYTES} bytes").into_bytes()
        );
    }
}
