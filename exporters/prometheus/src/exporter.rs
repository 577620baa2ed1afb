//! The remote-write exporter: batch → translated series → one request per shard → HTTP.
//!
//! Per-series order: a series always lands in the shard chosen by the hash of its label set,
//! each batch yields at most one request per shard, and every shard is one of the exporter's
//! ordered lanes, so the pipeline sends a shard's request of the next batch only once the
//! shard's request of this one is final. Shards do not wait for each other.

use crate::config::Config;
use crate::remote_write::{self, Protocol};
use crate::translate::{Family, Series, Translator};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sluice_core::{Batch, Exporter, SendOutcome, Signal, reason, telemetry};
use sluice_http_client as http_client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Most characters of an error response kept for the log message.
const MAX_ERROR_CHARS: usize = 1024;

const WRITTEN_HEADERS: [&str; 3] = [
    "x-prometheus-remote-write-samples-written",
    "x-prometheus-remote-write-histograms-written",
    "x-prometheus-remote-write-exemplars-written",
];

/// One shard's share of a batch, encoded and compressed, ready to send (and to resend).
#[derive(Debug)]
pub struct RemoteWriteRequest {
    pub shard: usize,
    pub tenant: Option<Arc<str>>,
    /// The message `body` holds.
    pub protocol: Protocol,
    pub body: Bytes,
    /// Float and native histogram samples carried.
    pub samples: u64,
    pub series: usize,
    /// For a v2 request: the series, so it can be re-encoded as v1 after a downgrade.
    v2_fallback: Option<(Vec<Series>, Arc<Vec<Family>>)>,
    v1_body: OnceLock<Bytes>,
}

impl RemoteWriteRequest {
    /// The body to send under `protocol`, encoding the v1 form once if the exporter has
    /// fallen back since this request was built.
    fn body_for(&self, protocol: Protocol, with_metadata: bool) -> (Protocol, Bytes) {
        match (self.protocol, protocol, &self.v2_fallback) {
            (Protocol::V2, Protocol::V1, Some((series, families))) => {
                let body = self.v1_body.get_or_init(|| {
                    remote_write::compress(&remote_write::encode_v1(
                        series,
                        families,
                        with_metadata,
                    ))
                });
                (Protocol::V1, body.clone())
            }
            _ => (self.protocol, self.body.clone()),
        }
    }
}

pub struct RemoteWriteExporter {
    component_id: Arc<str>,
    client: reqwest::Client,
    url: reqwest::Url,
    /// Configured headers, authorization and user agent.
    headers: HeaderMap,
    tenant_id: Option<Arc<str>>,
    shards: usize,
    send_metadata: bool,
    configured: Protocol,
    /// Set for good once a receiver showed it does not speak 2.0.
    fell_back_to_v1: AtomicBool,
    translator: Translator,
}

impl std::fmt::Debug for RemoteWriteExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteExporter")
            .field("component_id", &self.component_id)
            .field("url", &self.url.as_str())
            .field("shards", &self.shards)
            .field("protocol", &self.protocol())
            .finish_non_exhaustive()
    }
}

fn build_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    http_client::build_client(
        &config.tls,
        &http_client::ClientOptions::with_timeout(config.timeout.0),
    )
}

fn static_headers(config: &Config) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    http_client::insert_authorization(
        &mut headers,
        config.basic_auth.as_ref(),
        config.bearer_token.as_deref(),
    )?;
    headers.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(concat!("Sluice/", env!("CARGO_PKG_VERSION"))),
    );
    Ok(headers)
}

/// Builds the exporter for `[exporters.<name>]`; `component_id` labels its metrics.
pub fn build(config: &Config, component_id: &str) -> anyhow::Result<RemoteWriteExporter> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    let url = reqwest::Url::parse(&config.url)?;
    Ok(RemoteWriteExporter {
        component_id: component_id.into(),
        client: build_client(config)?,
        url,
        headers: static_headers(config)?,
        tenant_id: config.tenant_id.as_deref().map(Arc::from),
        shards: config.shards,
        send_metadata: config.send_metadata,
        configured: config.protocol.protocol(),
        fell_back_to_v1: AtomicBool::new(false),
        translator: Translator::new(config.translate_options()),
    })
}

/// The `reason` of a refused request, from its status and the backend's message (Mimir error
/// ids and Prometheus' texts).
pub fn rejection_reason(status: StatusCode, body: &str) -> &'static str {
    let b = body.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| b.contains(n));
    match status.as_u16() {
        400 | 422 => {
            if has(&["out of order", "out-of-order"]) {
                reason::OUT_OF_ORDER
            } else if has(&["too old", "too-old", "out of bounds", "out-of-bounds"]) {
                reason::TOO_OLD
            } else if has(&["too far in the future", "too-far-in-future"]) {
                reason::TOO_NEW
            } else if has(&[
                "duplicate sample",
                "duplicate-timestamp",
                "duplicate timestamp",
            ]) {
                reason::DUPLICATE_TIMESTAMP
            } else if has(&[
                "max-label-names",
                "label-name-too-long",
                "label-value-too-long",
                "label name too long",
                "label value too long",
                "too many labels",
                "max-native-histogram-buckets",
            ]) {
                reason::LABEL_LIMITS
            } else if has(&["series limit", "max-series", "per-user series"]) {
                reason::SERIES_LIMIT
            } else if has(&[
                "invalid label",
                "invalid metric name",
                "metric-name-invalid",
                "missing-metric-name",
                "labels-not-sorted",
                "duplicate-label",
                "duplicate label",
                "label-invalid",
            ]) {
                reason::INVALID_LABELS
            } else {
                reason::BAD_REQUEST
            }
        }
        other => reason::for_http_status(other),
    }
}

impl RemoteWriteExporter {
    /// The protocol requests are built with now.
    pub fn protocol(&self) -> Protocol {
        if self.fell_back_to_v1.load(Ordering::Relaxed) {
            Protocol::V1
        } else {
            self.configured
        }
    }

    pub fn translator(&self) -> &Translator {
        &self.translator
    }

    fn fall_back_to_v1(&self, why: &str) -> SendOutcome {
        if !self.fell_back_to_v1.swap(true, Ordering::Relaxed) {
            tracing::error!(
                component_id = %self.component_id,
                url = %self.url,
                "remote-write 2.0 is not supported by the receiver ({why}); switching to remote-write 1.0 for good. Set protocol = \"v1\" to silence this."
            );
        }
        SendOutcome::Retryable {
            reason: "protocol_fallback",
            retry_after: Some(Duration::ZERO),
            message: format!("receiver does not speak remote-write 2.0 ({why}); resending as 1.0"),
        }
    }

    fn encode(
        &self,
        shard: usize,
        tenant: &Option<Arc<str>>,
        series: Vec<Series>,
        families: &Arc<Vec<Family>>,
    ) -> RemoteWriteRequest {
        let samples = series.iter().map(Series::sample_count).sum();
        let count = series.len();
        let protocol = self.protocol();
        let (body, v2_fallback) = match protocol {
            Protocol::V1 => {
                let raw = remote_write::encode_v1(&series, families, self.send_metadata);
                (remote_write::compress(&raw), None)
            }
            Protocol::V2 => {
                let request = remote_write::request_v2(&series, families);
                (
                    remote_write::encode_snappy(&request),
                    Some((series, families.clone())),
                )
            }
        };
        RemoteWriteRequest {
            shard,
            tenant: tenant.clone(),
            protocol,
            body,
            samples,
            series: count,
            v2_fallback,
            v1_body: OnceLock::new(),
        }
    }
}

impl Exporter for RemoteWriteExporter {
    type Request = RemoteWriteRequest;

    fn ordered(&self) -> bool {
        true
    }

    fn lanes(&self) -> usize {
        self.shards
    }

    fn lane(&self, request: &RemoteWriteRequest) -> usize {
        request.shard
    }

    fn build_requests(&self, batch: &Batch) -> Vec<RemoteWriteRequest> {
        if batch.signal != Signal::Metrics {
            telemetry::exporter_dropped(
                &self.component_id,
                batch.signal,
                "unsupported_signal",
                batch.item_count(),
            );
            return Vec::new();
        }
        let tenant = batch.tenant.clone().or_else(|| self.tenant_id.clone());
        let translation = self.translator.translate(&batch.items, tenant.as_deref());
        for (reason, n) in &translation.dropped {
            telemetry::exporter_dropped(&self.component_id, Signal::Metrics, reason, *n);
        }
        let mut shards: Vec<Vec<Series>> = (0..self.shards).map(|_| Vec::new()).collect();
        for series in translation.series {
            let shard = (series.hash % self.shards as u64) as usize;
            if let Some(bucket) = shards.get_mut(shard) {
                bucket.push(series);
            }
        }
        let families = Arc::new(translation.families);
        shards
            .into_iter()
            .enumerate()
            .filter(|(_, series)| !series.is_empty())
            .map(|(shard, series)| self.encode(shard, &tenant, series, &families))
            .collect()
    }

    fn request_items(&self, request: &RemoteWriteRequest) -> u64 {
        request.samples
    }

    async fn send(&self, request: &RemoteWriteRequest) -> SendOutcome {
        let (protocol, body) = request.body_for(self.protocol(), self.send_metadata);
        let mut call = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, protocol.content_type())
            .header(
                "X-Prometheus-Remote-Write-Version",
                protocol.version_header(),
            );
        if let Some(tenant) = request.tenant.as_deref() {
            call = call.header("X-Scope-OrgID", tenant);
        }
        let response = match call.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message.push_str(": ");
                    message.push_str(&s.to_string());
                    source = s.source();
                }
                return SendOutcome::Retryable {
                    reason: if e.is_timeout() {
                        reason::TIMEOUT
                    } else if e.is_connect() {
                        reason::CONNECT
                    } else {
                        reason::TRANSPORT
                    },
                    retry_after: None,
                    message,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            if protocol == Protocol::V2
                && !WRITTEN_HEADERS
                    .iter()
                    .any(|h| response.headers().contains_key(*h))
            {
                return self
                    .fall_back_to_v1("2xx without X-Prometheus-Remote-Write-*-Written headers");
            }
            return SendOutcome::Sent;
        }
        if protocol == Protocol::V2 && status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return self.fall_back_to_v1("HTTP 415");
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(sluice_core::retry::parse_retry_after);
            let text = http_client::body::error_text(response, MAX_ERROR_CHARS).await;
            return SendOutcome::Retryable {
                reason: reason::for_http_status(status.as_u16()),
                retry_after,
                message: format!("HTTP {}: {text}", status.as_u16()),
            };
        }
        let text = http_client::body::error_text(response, MAX_ERROR_CHARS).await;
        SendOutcome::Rejected {
            reason: rejection_reason(status, &text),
            message: format!("HTTP {}: {text}", status.as_u16()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_reasons() {
        let r =
            |status: u16, body: &str| rejection_reason(StatusCode::from_u16(status).unwrap(), body);
        assert_eq!(r(400, "out of order sample"), "out_of_order");
        assert_eq!(
            r(
                400,
                "the sample has been rejected because another sample with a more recent timestamp has already been ingested and out-of-order samples are not allowed (err-mimir-sample-out-of-order)"
            ),
            "out_of_order"
        );
        assert_eq!(r(400, "err-mimir-sample-timestamp-too-old"), "too_old");
        assert_eq!(r(400, "out of bounds"), "too_old");
        assert_eq!(
            r(
                400,
                "received a series whose label value length exceeds the limit (err-mimir-label-value-too-long)"
            ),
            "label_limits"
        );
        assert_eq!(
            r(400, "err-mimir-max-label-names-per-series"),
            "label_limits"
        );
        assert_eq!(
            r(400, "duplicate sample for timestamp"),
            "duplicate_timestamp"
        );
        assert_eq!(r(400, "snappy: corrupt input"), "bad_request");
        assert_eq!(r(401, ""), "unauthorized");
        assert_eq!(r(404, "404 page not found"), "not_found");
        assert_eq!(r(409, ""), "client_error");
    }
}
