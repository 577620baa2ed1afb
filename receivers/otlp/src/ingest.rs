//! What both transports share: checking a request, handing it to the pipeline, counting.

use bytes::Bytes;
use sluice_core::{Consumer, Item, Refusal, Signal, telemetry};
use sluice_http_server::{AuthRefusal, Authenticator};
use sluice_otlp::{Checked, Rules, WireError};
use std::sync::Arc;

/// Bodies at least this large are checked/converted on the blocking pool, so one big request
/// does not stall every other connection on the reactor thread.
pub(crate) const OFF_REACTOR_BYTES: usize = 256 * 1024;

/// Why a request was not accepted.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// Not valid OTLP: HTTP 400 / `INVALID_ARGUMENT`.
    Malformed(String),
    /// Over a size limit: HTTP 413 / `RESOURCE_EXHAUSTED` without `RetryInfo` (not retryable).
    TooLarge(String),
    /// The pipeline refused it.
    Refused(Refusal),
    /// Missing or wrong credentials: HTTP 401 / `UNAUTHENTICATED`.
    Unauthenticated(AuthRefusal),
}

impl Rejection {
    pub(crate) fn malformed(err: WireError) -> Rejection {
        Rejection::Malformed(err.to_string())
    }
}

/// The running receiver's view of the pipeline, shared by every request.
pub(crate) struct Ingest {
    pub component_id: Arc<str>,
    pub consumer: Arc<dyn Consumer>,
    /// Intake rules; `None` when validation is off.
    pub rules: Option<Rules>,
    /// Credentials clients must present; `None` when `auth` is not configured.
    pub auth: Option<Authenticator>,
}

impl Ingest {
    /// Checks the request's credentials for `tenant` (the tenant header's value), counting a
    /// refusal by its reason.
    pub(crate) fn authenticate(
        &self,
        signal: Signal,
        headers: &http::HeaderMap,
        tenant: Option<&str>,
    ) -> Result<(), Rejection> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        auth.check(headers, tenant).map_err(|refusal| {
            self.refused(Some(signal), refusal.reason());
            Rejection::Unauthenticated(refusal)
        })
    }
}

/// A checked request: what to deliver and what the rules refused.
#[derive(Debug)]
pub(crate) struct Screened {
    /// The request to deliver: the body as received when nothing was refused (no copy), else
    /// its re-encoding without the refused items.
    pub payload: Bytes,
    /// Items in `payload`.
    pub count: u32,
    /// The rules' verdict when they refused something.
    pub refused: Option<(Checked, String)>,
}

/// What the client is told on success: OTLP `partial_success` when items were refused.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    pub rejected: u64,
    pub message: String,
}

/// Checks a protobuf request: the wire format always, the intake rules when `rules` is set.
/// `known_count` is the item count when the body was already walked (converted JSON).
/// CPU work only; callers run big bodies off the reactor.
pub(crate) fn screen(
    signal: Signal,
    payload: Bytes,
    rules: Option<&Rules>,
    known_count: Option<u32>,
) -> Result<Screened, WireError> {
    let Some(rules) = rules else {
        let count = match known_count {
            Some(count) => count,
            None => sluice_otlp::validate(signal, &payload)?,
        };
        return Ok(Screened {
            payload,
            count,
            refused: None,
        });
    };
    let checked = sluice_otlp::check(signal, &payload, rules)?;
    let Some(first) = checked.first.filter(|_| checked.rejected > 0) else {
        return Ok(Screened {
            payload,
            count: checked.items,
            refused: None,
        });
    };
    // Cold path: something was refused; copy out the rest.
    let message = first.describe(signal, &payload, rules);
    let message = match checked.rejected {
        1 => message,
        n => format!(
            "{n} {} refused; first: {message}",
            signal.unit().replace('_', " ")
        ),
    };
    let kept = if checked.rejected < checked.items {
        Bytes::from(sluice_otlp::filter(signal, &payload, &checked)?)
    } else {
        Bytes::new()
    };
    Ok(Screened {
        payload: kept,
        count: checked.items - checked.rejected,
        refused: Some((checked, message)),
    })
}

impl Ingest {
    /// Counts a request refused before its items could be counted.
    pub(crate) fn refused(&self, signal: Option<Signal>, reason: &'static str) {
        telemetry::receiver_refused(&self.component_id, signal, reason, 1);
    }

    /// Refuses up front when no pipeline takes `signal`, before any work on the body.
    pub(crate) fn check_accepts(&self, signal: Signal) -> Result<(), Rejection> {
        if self.consumer.accepts(signal) {
            return Ok(());
        }
        let refusal = Refusal::NoPipeline(signal);
        self.refused(Some(signal), refusal.reason());
        Err(Rejection::Refused(refusal))
    }

    /// Validates a protobuf request and delivers it.
    pub(crate) async fn protobuf(
        &self,
        signal: Signal,
        payload: Bytes,
        tenant: Option<Arc<str>>,
    ) -> Result<Accepted, Rejection> {
        self.check_accepts(signal)?;
        let rules = self.rules;
        let checked = if payload.len() >= OFF_REACTOR_BYTES {
            tokio::task::spawn_blocking(move || screen(signal, payload, rules.as_ref(), None))
                .await
                .map_err(|e| Rejection::Malformed(format!("validation failed: {e}")))?
        } else {
            screen(signal, payload, rules.as_ref(), None)
        };
        let screened = match checked {
            Ok(screened) => screened,
            Err(err) => {
                self.refused(Some(signal), "malformed");
                return Err(Rejection::malformed(err));
            }
        };
        self.deliver(signal, screened, tenant).await
    }

    /// Counts what the rules refused and hands the rest of a checked request to the pipeline.
    /// A request whose every item was refused is refused as a whole (400 / INVALID_ARGUMENT).
    pub(crate) async fn deliver(
        &self,
        signal: Signal,
        screened: Screened,
        tenant: Option<Arc<str>>,
    ) -> Result<Accepted, Rejection> {
        let Screened {
            payload,
            count,
            refused,
        } = screened;
        let accepted = match refused {
            None => Accepted::default(),
            Some((checked, message)) => {
                for (reason, n) in checked.reasons() {
                    telemetry::receiver_refused(
                        &self.component_id,
                        Some(signal),
                        reason.as_str(),
                        u64::from(n),
                    );
                }
                tracing::debug!(component_id = %self.component_id, %signal, rejected = checked.rejected, %message, "intake validation refused items");
                if count == 0 {
                    return Err(Rejection::Malformed(message));
                }
                Accepted {
                    rejected: u64::from(checked.rejected),
                    message,
                }
            }
        };
        if count == 0 {
            // Nothing to store (an empty request, or resources without items): success.
            return Ok(accepted);
        }
        let item = Item::new(signal, payload, count).with_tenant(tenant);
        match self.consumer.consume(item).await {
            Ok(()) => {
                telemetry::receiver_accepted(&self.component_id, signal, u64::from(count));
                Ok(accepted)
            }
            Err(refusal) => {
                telemetry::receiver_refused(
                    &self.component_id,
                    Some(signal),
                    refusal.reason(),
                    u64::from(count),
                );
                tracing::debug!(component_id = %self.component_id, %signal, count, %refusal, "refused");
                Err(Rejection::Refused(refusal))
            }
        }
    }
}

/// The tenant named by a header value: trimmed, non-empty, visible ASCII.
pub(crate) fn tenant_from(value: Option<&[u8]>) -> Option<Arc<str>> {
    let text = std::str::from_utf8(value?).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    Some(Arc::from(text))
}

/// Maps the three OTLP paths (HTTP path or gRPC method) to their signal.
pub(crate) fn http_signal(path: &str) -> Option<Signal> {
    match path {
        "/v1/traces" => Some(Signal::Traces),
        "/v1/metrics" => Some(Signal::Metrics),
        "/v1/logs" => Some(Signal::Logs),
        _ => None,
    }
}

pub(crate) fn grpc_signal(path: &str) -> Option<Signal> {
    match path {
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => Some(Signal::Traces),
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => Some(Signal::Metrics),
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => Some(Signal::Logs),
        _ => None,
    }
}
