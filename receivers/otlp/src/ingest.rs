//! What both transports share: checking a request, handing it to the pipeline, counting.

use bytes::Bytes;
use sluice_core::{Consumer, Item, Refusal, Signal, telemetry};
use sluice_otlp::WireError;
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

    /// Validates a protobuf request and delivers it; returns the items accepted.
    pub(crate) async fn protobuf(
        &self,
        signal: Signal,
        payload: Bytes,
        tenant: Option<Arc<str>>,
    ) -> Result<u32, Rejection> {
        self.check_accepts(signal)?;
        let checked = if payload.len() >= OFF_REACTOR_BYTES {
            let payload = payload.clone();
            tokio::task::spawn_blocking(move || sluice_otlp::validate(signal, &payload))
                .await
                .map_err(|e| Rejection::Malformed(format!("validation failed: {e}")))?
        } else {
            sluice_otlp::validate(signal, &payload)
        };
        let count = match checked {
            Ok(count) => count,
            Err(err) => {
                self.refused(Some(signal), "malformed");
                return Err(Rejection::malformed(err));
            }
        };
        self.deliver(signal, payload, count, tenant).await
    }

    /// Hands a validated protobuf request to the pipeline.
    pub(crate) async fn deliver(
        &self,
        signal: Signal,
        payload: Bytes,
        count: u32,
        tenant: Option<Arc<str>>,
    ) -> Result<u32, Rejection> {
        if count == 0 {
            // Nothing to store (an empty request, or resources without items): success.
            return Ok(0);
        }
        let item = Item::new(signal, payload, count).with_tenant(tenant);
        match self.consumer.consume(item).await {
            Ok(()) => {
                telemetry::receiver_accepted(&self.component_id, signal, u64::from(count));
                Ok(count)
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
