//! The `reason` label values every component uses on its refused / retried / dropped counters,
//! defined once so that one failure has one name whichever exporter or receiver meets it and
//! a dashboard can sum across them. `docs/metrics.md` lists them with their meaning.
//!
//! Exporters name a backend's answer by what it means, not by its wire form: HTTP 503 and gRPC
//! `UNAVAILABLE` are both [`SERVER_ERROR`]; [`for_http_status`] and the OTLP exporter's gRPC
//! mapping are the only places a status becomes a reason.

// Sending: the transport.
/// The request's deadline passed (client timeout, HTTP 408, gRPC `DEADLINE_EXCEEDED`).
pub const TIMEOUT: &str = "timeout";
/// No connection could be made (refused, DNS, TLS handshake, gRPC channel not ready).
pub const CONNECT: &str = "connect";
/// The connection failed during the request.
pub const TRANSPORT: &str = "transport";

// Sending: the backend's answer.
/// HTTP 429, gRPC `RESOURCE_EXHAUSTED`.
pub const RATE_LIMITED: &str = "rate_limited";
/// HTTP 5xx, gRPC `UNAVAILABLE`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS`, `ABORTED`.
pub const SERVER_ERROR: &str = "server_error";
/// HTTP 400 / 422 with no more specific cause, gRPC `INVALID_ARGUMENT`.
pub const BAD_REQUEST: &str = "bad_request";
/// HTTP 401, gRPC `UNAUTHENTICATED`; a receiver's refused credentials.
pub const UNAUTHORIZED: &str = "unauthorized";
/// HTTP 403, gRPC `PERMISSION_DENIED`.
pub const FORBIDDEN: &str = "forbidden";
/// HTTP 404, gRPC `NOT_FOUND` / `UNIMPLEMENTED`.
pub const NOT_FOUND: &str = "not_found";
/// HTTP 413; a receiver's body over its limit.
pub const TOO_LARGE: &str = "too_large";
/// HTTP 415; a receiver's unsupported `Content-Type`.
pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
/// Any other HTTP 4xx, any other gRPC code.
pub const CLIENT_ERROR: &str = "client_error";
/// An HTTP status outside 2xx/4xx/5xx.
pub const UNEXPECTED_STATUS: &str = "unexpected_status";

// Sending: a backend's refusal of some of the data, by cause (Mimir, Loki).
/// A sample / entry older than the series' or stream's latest one.
pub const OUT_OF_ORDER: &str = "out_of_order";
/// A sample / entry older than the backend accepts.
pub const TOO_OLD: &str = "too_old";
/// A sample / entry too far in the future.
pub const TOO_NEW: &str = "too_new";
/// A second value for the same series and timestamp.
pub const DUPLICATE_TIMESTAMP: &str = "duplicate_timestamp";
/// Too many labels, or a label name / value too long.
pub const LABEL_LIMITS: &str = "label_limits";
/// Malformed, duplicated or missing labels / metric name.
pub const INVALID_LABELS: &str = "invalid_labels";
/// The tenant's series (Mimir) or stream (Loki) limit.
pub const SERIES_LIMIT: &str = "series_limit";
/// A Loki line over its maximum size.
pub const LINE_TOO_LONG: &str = "line_too_long";
/// Loki's structured metadata over its limits.
pub const STRUCTURED_METADATA: &str = "structured_metadata";
/// Loki's per-stream rate limit (429).
pub const PER_STREAM_RATE_LIMIT: &str = "per_stream_rate_limit";
/// Loki's status 260: the tenant's ingestion is blocked.
pub const INGESTION_BLOCKED: &str = "ingestion_blocked";
/// The backend accepted the request but refused some items (OTLP partial success).
pub const PARTIAL_SUCCESS: &str = "partial_success";

// Receiving.
/// A body or exposition that does not decode (OTLP receivers, a scrape that does not parse).
pub const MALFORMED: &str = "malformed";

/// The reason for a non-2xx HTTP answer that carries no more specific cause.
pub fn for_http_status(status: u16) -> &'static str {
    match status {
        400 | 422 => BAD_REQUEST,
        401 => UNAUTHORIZED,
        403 => FORBIDDEN,
        404 => NOT_FOUND,
        408 => TIMEOUT,
        413 => TOO_LARGE,
        415 => UNSUPPORTED_MEDIA_TYPE,
        429 => RATE_LIMITED,
        400..=499 => CLIENT_ERROR,
        500..=599 => SERVER_ERROR,
        _ => UNEXPECTED_STATUS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_per_status_class() {
        assert_eq!(for_http_status(503), SERVER_ERROR);
        assert_eq!(for_http_status(500), SERVER_ERROR);
        assert_eq!(for_http_status(504), SERVER_ERROR);
        assert_eq!(for_http_status(429), RATE_LIMITED);
        assert_eq!(for_http_status(400), BAD_REQUEST);
        assert_eq!(for_http_status(401), UNAUTHORIZED);
        assert_eq!(for_http_status(403), FORBIDDEN);
        assert_eq!(for_http_status(413), TOO_LARGE);
        assert_eq!(for_http_status(409), CLIENT_ERROR);
        assert_eq!(for_http_status(302), UNEXPECTED_STATUS);
    }
}
