//! Scripted answers: outcomes, their order, and `Retry-After` / `RetryInfo`.

use std::time::{Duration, SystemTime};
use tonic::Code;

/// Minimum delay the server asks for on an error: HTTP `Retry-After`, gRPC `RetryInfo`.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryAfter {
    /// `Retry-After: <n>` / `RetryInfo{retry_delay: n s}`.
    Seconds(u64),
    /// `RetryInfo` with this exact delay; over HTTP rounded up to whole seconds.
    Delay(Duration),
    /// `Retry-After: <IMF-fixdate>`; over gRPC the time until then.
    HttpDate(SystemTime),
}

impl RetryAfter {
    pub(super) fn delay(&self) -> Duration {
        match self {
            RetryAfter::Seconds(s) => Duration::from_secs(*s),
            RetryAfter::Delay(d) => *d,
            RetryAfter::HttpDate(t) => t.duration_since(SystemTime::now()).unwrap_or_default(),
        }
    }

    pub(super) fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::Delay(d) => {
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                secs.to_string()
            }
            RetryAfter::HttpDate(t) => httpdate::fmt_http_date(*t),
        }
    }
}

/// An error answer; each transport uses its own half.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub grpc_code: Code,
    pub http_status: u16,
    pub message: String,
    pub retry_after: Option<RetryAfter>,
}

/// What the server answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// OK / HTTP 200 with an empty response: the data is stored.
    Success,
    /// OK / HTTP 200 with `partial_success{rejected_*, error_message}`. The data is stored
    /// (the server cannot tell which items it "rejected").
    PartialSuccess { rejected: i64, message: String },
    /// An error status; nothing is stored.
    Error(ErrorReply),
}

impl Outcome {
    /// A gRPC error; over HTTP the status follows the OTLP specification ("OTLP/HTTP Response").
    pub fn grpc(code: Code, message: impl Into<String>) -> Outcome {
        Outcome::Error(ErrorReply {
            grpc_code: code,
            http_status: http_status_for(code),
            message: message.into(),
            retry_after: None,
        })
    }

    /// An HTTP error; over gRPC the closest code is used (429 → RESOURCE_EXHAUSTED,
    /// 502/503/504 → UNAVAILABLE, 400 → INVALID_ARGUMENT, ...).
    pub fn http(status: u16, message: impl Into<String>) -> Outcome {
        Outcome::Error(ErrorReply {
            grpc_code: grpc_code_for(status),
            http_status: status,
            message: message.into(),
            retry_after: None,
        })
    }

    pub fn partial(rejected: i64, message: impl Into<String>) -> Outcome {
        Outcome::PartialSuccess {
            rejected,
            message: message.into(),
        }
    }

    /// Adds `Retry-After` / `RetryInfo` to an error (no effect on success).
    pub fn retry_after(mut self, retry_after: RetryAfter) -> Outcome {
        if let Outcome::Error(e) = &mut self {
            e.retry_after = Some(retry_after);
        }
        self
    }

    pub(super) fn stores(&self) -> bool {
        !matches!(self, Outcome::Error(_))
    }
}

fn http_status_for(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => 503,
        Code::ResourceExhausted => 429,
        Code::InvalidArgument => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::Unimplemented => 404,
        _ => 500,
    }
}

fn grpc_code_for(status: u16) -> Code {
    match status {
        200..=299 => Code::Ok,
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        413 | 429 => Code::ResourceExhausted,
        502..=504 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// A scripted answer: `outcome` (after `delay`) for the next `times` requests, or forever.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub outcome: Outcome,
    pub delay: Duration,
    /// `None`: applies to every later request (behaviours queued after it never run).
    pub times: Option<u32>,
}

impl Behavior {
    /// `outcome` for the next `n` requests.
    pub fn next(n: u32, outcome: Outcome) -> Behavior {
        Behavior {
            outcome,
            delay: Duration::ZERO,
            times: Some(n),
        }
    }

    /// `outcome` for the next request only.
    pub fn once(outcome: Outcome) -> Behavior {
        Behavior::next(1, outcome)
    }

    /// `outcome` for every request from now on.
    pub fn always(outcome: Outcome) -> Behavior {
        Behavior {
            outcome,
            delay: Duration::ZERO,
            times: None,
        }
    }

    /// Waits this long before answering (the request is recorded only if the answer is sent).
    pub fn with_delay(mut self, delay: Duration) -> Behavior {
        self.delay = delay;
        self
    }
}
