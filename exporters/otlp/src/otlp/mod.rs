//! OTLP exporter (`type = "otlp"`): forwards items to Tempo or any OTLP backend over gRPC or
//! HTTP/protobuf without decoding them.
//!
//! Items already hold encoded `Export*ServiceRequest`s, and concatenating encodings of one
//! message type yields one valid message holding all of them, so a request body is just the
//! items' payloads back to back (split to respect `max_request_size`). Responses are classified
//! per the OTLP spec: see [`grpc::classify_status`] and [`http::classify_response`].

mod config;
mod grpc;
mod http;
mod tls;

pub use config::{Compression, Config, Protocol, TlsConfig};

use bytes::{Bytes, BytesMut};
use sluice_core::telemetry::exporter_dropped;
use sluice_core::{Batch, Exporter, Item, SendOutcome, Signal};
use std::sync::Arc;
use std::time::Duration;

pub const TYPE_NAME: &str = "otlp";
pub const SIGNALS: &[Signal] = &Signal::ALL;

/// One request: the payloads of consecutive items of a batch, sent back to back.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpRequest {
    pub signal: Signal,
    /// Sent as `X-Scope-OrgID`, replacing a static header of that name.
    pub tenant: Option<Arc<str>>,
    /// The uncompressed `Export*ServiceRequest` encoding, as the items' payloads: kept apart
    /// so that gRPC sends them without joining them into one buffer first.
    pub parts: Vec<Bytes>,
    /// Spans, data points or log records in the request.
    pub items: u64,
}

impl OtlpRequest {
    /// Encoded length of the whole request message.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The request message in one buffer (a copy unless it has a single part).
    pub fn body(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [only] => only.clone(),
            many => {
                let mut body = BytesMut::with_capacity(self.len());
                for part in many {
                    body.extend_from_slice(part);
                }
                body.freeze()
            }
        }
    }
}

enum Transport {
    Grpc(grpc::GrpcSender),
    Http(http::HttpSender),
}

pub struct OtlpExporter {
    component_id: Arc<str>,
    max_request_size: usize,
    timeout: Duration,
    transport: Transport,
}

/// Builds the exporter and its client (which connects lazily, so a backend that is down does
/// not fail the build). gRPC needs to be built inside a Tokio runtime.
pub fn build(config: &Config, component_id: &str) -> anyhow::Result<OtlpExporter> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    let headers = static_headers(config)?;
    let id: Arc<str> = component_id.into();
    let transport = match config.protocol {
        Protocol::Grpc => Transport::Grpc(grpc::GrpcSender::new(config, headers, id.clone())?),
        Protocol::Http => Transport::Http(http::HttpSender::new(config, headers, id.clone())?),
    };
    Ok(OtlpExporter {
        component_id: id,
        max_request_size: config.max_request_size.as_usize(),
        timeout: config.timeout.get(),
        transport,
    })
}

fn static_headers(config: &Config) -> anyhow::Result<::http::HeaderMap> {
    let mut map = ::http::HeaderMap::new();
    for (name, value) in &config.headers {
        let name = ::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| anyhow::anyhow!("headers: {name:?} is not a valid header name"))?;
        let value = ::http::HeaderValue::from_str(value)
            .map_err(|_| anyhow::anyhow!("headers.{name}: invalid header value"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// The headers of one request: static ones plus the batch's tenant.
fn request_headers(
    statics: &::http::HeaderMap,
    tenant: Option<&str>,
) -> Result<::http::HeaderMap, SendOutcome> {
    let mut headers = statics.clone();
    if let Some(tenant) = tenant {
        let value = ::http::HeaderValue::from_str(tenant).map_err(|_| SendOutcome::Rejected {
            reason: "invalid_tenant",
            message: format!("tenant {tenant:?} cannot be sent as X-Scope-OrgID"),
        })?;
        headers.insert("x-scope-orgid", value);
    }
    Ok(headers)
}

/// Groups consecutive payloads into requests of at most `cap` bytes; a payload larger than
/// `cap` on its own becomes a request of its own. Returns (parts, item count) pairs in item
/// order.
fn group_payloads<'a>(items: impl Iterator<Item = &'a Item>, cap: usize) -> Vec<(Vec<Bytes>, u64)> {
    let mut out = Vec::new();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let mut count = 0u64;
    for item in items {
        let item_len = item.payload.len();
        if !parts.is_empty() && len.saturating_add(item_len) > cap {
            out.push((std::mem::take(&mut parts), count));
            len = 0;
            count = 0;
        }
        parts.push(item.payload.clone());
        len += item_len;
        count += u64::from(item.count);
    }
    if !parts.is_empty() {
        out.push((parts, count));
    }
    out
}

impl OtlpExporter {
    fn timed_out(&self) -> SendOutcome {
        SendOutcome::Retryable {
            reason: sluice_core::reason::TIMEOUT,
            retry_after: None,
            message: format!("no answer within {:?}", self.timeout),
        }
    }
}

impl Exporter for OtlpExporter {
    type Request = OtlpRequest;

    fn build_requests(&self, batch: &Batch) -> Vec<OtlpRequest> {
        let (matching, foreign): (Vec<&Item>, Vec<&Item>) =
            batch.items.iter().partition(|i| i.signal == batch.signal);
        // Concatenating payloads of another signal would corrupt the request; the pipeline
        // never builds such batches, but count it rather than send garbage.
        for item in foreign {
            exporter_dropped(
                &self.component_id,
                item.signal,
                "signal_mismatch",
                u64::from(item.count),
            );
        }
        group_payloads(matching.into_iter(), self.max_request_size)
            .into_iter()
            .map(|(parts, items)| OtlpRequest {
                signal: batch.signal,
                tenant: batch.tenant.clone(),
                parts,
                items,
            })
            // An empty body carries nothing; there is no point in sending it.
            .filter(|request| !request.is_empty() || request.items > 0)
            .collect()
    }

    fn request_items(&self, request: &OtlpRequest) -> u64 {
        request.items
    }

    /// Tempo refuses a whole request for one bad span (`InvalidArgument`); halves of the
    /// concatenated `Export*ServiceRequest` let the pipeline find it. OTLP has no order to keep.
    fn split(&self, request: &OtlpRequest) -> Option<(OtlpRequest, OtlpRequest)> {
        let (a, b) = sluice_otlp::split(request.signal, &request.body())?;
        let half = |body: Vec<u8>| OtlpRequest {
            signal: request.signal,
            tenant: request.tenant.clone(),
            items: u64::from(sluice_otlp::count_items(request.signal, &body)),
            parts: vec![Bytes::from(body)],
        };
        Some((half(a), half(b)))
    }

    fn dead_letter_payload(&self, request: &OtlpRequest) -> Option<Bytes> {
        Some(request.body())
    }

    async fn send(&self, request: &OtlpRequest) -> SendOutcome {
        let attempt = async {
            match &self.transport {
                Transport::Grpc(sender) => sender.send(request).await,
                Transport::Http(sender) => sender.send(request).await,
            }
        };
        // The pipeline counts and logs partial successes and refusals; nothing to add here.
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| self.timed_out())
    }
}

/// Reads `partial_success` from an `Export*ServiceResponse` body. A message with zero rejected
/// items is a warning from the backend: logged, and the request counts as sent.
fn partial_success_outcome(component_id: &str, signal: Signal, body: &[u8]) -> SendOutcome {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
        trace::v1::ExportTraceServiceResponse,
    };
    use prost::Message;
    let decoded = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body).map(|r| {
            r.partial_success
                .map(|p| (p.rejected_spans, p.error_message))
        }),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body).map(|r| {
            r.partial_success
                .map(|p| (p.rejected_data_points, p.error_message))
        }),
        Signal::Logs => ExportLogsServiceResponse::decode(body).map(|r| {
            r.partial_success
                .map(|p| (p.rejected_log_records, p.error_message))
        }),
    };
    match decoded {
        Ok(Some((rejected, message))) if rejected > 0 => SendOutcome::PartiallyRejected {
            rejected: rejected.unsigned_abs(),
            message,
        },
        Ok(Some((_, message))) if !message.is_empty() => {
            tracing::warn!(component_id, %signal, "backend warning: {message}");
            SendOutcome::Sent
        }
        Ok(_) => SendOutcome::Sent,
        Err(e) => {
            // The backend said OK; the data is in. An unreadable body does not change that.
            tracing::debug!(component_id, %signal, "undecodable success response: {e}");
            SendOutcome::Sent
        }
    }
}

impl sluice_core::ComponentConfig for Config {
    fn retry(&self) -> sluice_core::retry::RetryConfig {
        self.retry.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(len: usize, count: u32) -> Item {
        Item::new(Signal::Traces, Bytes::from(vec![b'x'; len]), count)
    }

    #[test]
    fn grouping_respects_cap_and_keeps_order() {
        let items = [item(4, 1), item(4, 2), item(4, 3), item(20, 4), item(1, 5)];
        let len = |parts: &[Bytes]| parts.iter().map(Bytes::len).sum::<usize>();
        let groups = group_payloads(items.iter(), 10);
        let shape: Vec<(usize, u64)> = groups.iter().map(|(p, c)| (len(p), *c)).collect();
        assert_eq!(shape, vec![(8, 3), (4, 3), (20, 4), (1, 5)]);
        let all = group_payloads(items.iter(), 1000);
        assert_eq!(all.len(), 1);
        assert_eq!(len(&all[0].0), 33);
        assert_eq!(all[0].1, 15);
        assert!(group_payloads([].iter(), 10).is_empty());
    }

    #[test]
    fn payloads_are_not_copied_into_requests() {
        let items = [item(8, 1), item(8, 2)];
        let groups = group_payloads(items.iter(), 100);
        assert_eq!(groups[0].0[0].as_ptr(), items[0].payload.as_ptr());
        assert_eq!(groups[0].0[1].as_ptr(), items[1].payload.as_ptr());
    }

    #[test]
    fn a_request_joins_its_parts_only_when_asked() {
        let request = OtlpRequest {
            signal: Signal::Traces,
            tenant: None,
            parts: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")],
            items: 2,
        };
        assert_eq!(request.len(), 4);
        assert_eq!(request.body(), Bytes::from_static(b"abcd"));
        let single = OtlpRequest {
            parts: vec![Bytes::from_static(b"xyz")],
            ..request
        };
        assert_eq!(single.body().as_ptr(), single.parts[0].as_ptr());
    }

    #[test]
    fn tenant_replaces_static_header() {
        let mut statics = ::http::HeaderMap::new();
        statics.insert("x-scope-orgid", "static".parse().unwrap());
        statics.insert("authorization", "Bearer x".parse().unwrap());
        let h = request_headers(&statics, Some("tenant-b")).unwrap();
        assert_eq!(h.get_all("x-scope-orgid").iter().count(), 1);
        assert_eq!(h["x-scope-orgid"], "tenant-b");
        assert_eq!(h["authorization"], "Bearer x");
        assert_eq!(
            request_headers(&statics, None).unwrap()["x-scope-orgid"],
            "static"
        );
        assert!(matches!(
            request_headers(&statics, Some("bad\ntenant")),
            Err(SendOutcome::Rejected {
                reason: "invalid_tenant",
                ..
            })
        ));
    }

    #[test]
    fn partial_success_parsing() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        use prost::Message;
        let body = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            partial_success_outcome("c", Signal::Traces, &body),
            SendOutcome::PartiallyRejected {
                rejected: 3,
                message: "too old".into()
            }
        );
        let warning = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 0,
                error_message: "slow down".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            partial_success_outcome("c", Signal::Traces, &warning),
            SendOutcome::Sent
        );
        assert_eq!(
            partial_success_outcome("c", Signal::Traces, b""),
            SendOutcome::Sent
        );
        assert_eq!(
            partial_success_outcome("c", Signal::Traces, b"\xff\xff"),
            SendOutcome::Sent
        );
    }
}
