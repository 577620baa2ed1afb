//! The Loki exporter: batch → one push request per tenant and shard → one HTTP attempt per
//! `send`. A stream always lands in the shard chosen by the hash of its labels, and every
//! shard is one of the exporter's ordered lanes, so each stream's entries reach Loki in order
//! while shards send independently.

use crate::config::{Config, Encoding, validate_tenant};
use crate::mapping::{Mapper, MappingOptions, TenantStreams};
use crate::push;
use anyhow::Context;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sluice_core::telemetry::exporter_dropped;
use sluice_core::time::now_unix_nanos;
use sluice_core::{Batch, Exporter, SendOutcome, Signal, reason};
use sluice_http_client as http_client;
use std::sync::Arc;
use std::time::Duration;

/// Labels or lines changed to fit Loki's limits, by `reason` (the record itself is sent).
pub const LOKI_ADJUSTED: &str = "sluice_exporter_loki_adjusted_total";

const CONTENT_PROTOBUF: &str = "application/x-protobuf";
const CONTENT_JSON: &str = "application/json";
/// How much of an error body is kept as the outcome's message.
const MAX_ERROR_CHARS: usize = 4096;

/// One HTTP request to Loki.
#[derive(Debug, Clone)]
pub struct LokiRequest {
    /// `X-Scope-OrgID`; `None` sends no header.
    pub tenant: Option<Arc<str>>,
    pub body: Bytes,
    pub content_type: &'static str,
    /// Log entries (records) carried.
    pub entries: u64,
    /// The shard (ordered lane) of the streams carried.
    pub shard: usize,
}

pub struct LokiExporter {
    component_id: Arc<str>,
    encoding: Encoding,
    default_tenant: Option<Arc<str>>,
    opts: MappingOptions,
    url: reqwest::Url,
    headers: HeaderMap,
    client: reqwest::Client,
    shards: usize,
}

/// Builds the exporter from a validated config.
pub fn build(config: &Config, component_id: &str) -> anyhow::Result<LokiExporter> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("exporter {component_id}: {e}"))?;
    let url = reqwest::Url::parse(&config.url).context("url")?;
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).context("headers")?,
            HeaderValue::from_str(value).context("headers")?,
        );
    }
    http_client::insert_authorization(
        &mut headers,
        config.basic_auth.as_ref(),
        config.bearer_token.as_deref(),
    )?;
    let client = http_client::build_client(
        &config.tls,
        &http_client::ClientOptions {
            user_agent: Some(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
            ..http_client::ClientOptions::with_timeout(config.timeout.get())
        },
    )?;

    Ok(LokiExporter {
        component_id: component_id.into(),
        encoding: config.encoding,
        default_tenant: config.tenant_id.as_deref().map(Arc::from),
        opts: MappingOptions::from_config(config),
        url,
        headers,
        client,
        shards: config.shards,
    })
}

/// The shard of a stream: stable for the process's life (a fixed-seed hash of its labels).
fn stream_shard(label_string: &str, shards: usize) -> usize {
    use std::hash::BuildHasher;
    let hash = foldhash::fast::FixedState::with_seed(0x5eed).hash_one(label_string);
    (hash % shards as u64) as usize
}

impl LokiExporter {
    pub fn component_id(&self) -> &str {
        &self.component_id
    }

    fn dropped(&self, reason: &'static str, n: u64) {
        if n > 0 {
            exporter_dropped(&self.component_id, Signal::Logs, reason, n);
        }
    }

    /// The receiver's tenant, else the configured one.
    fn batch_tenant(&self, batch: &Batch) -> Option<Arc<str>> {
        batch
            .tenant
            .clone()
            .or_else(|| batch.items.iter().find_map(|i| i.tenant.clone()))
            .or_else(|| self.default_tenant.clone())
    }

    /// Maps a batch to streams per tenant without encoding them (tests, benchmarks).
    pub fn map_batch(&self, batch: &Batch) -> Vec<TenantStreams> {
        let mut mapper = Mapper::new(&self.opts, now_unix_nanos());
        for item in &batch.items {
            if crate::otlp::with_request(&item.payload, |req| mapper.add_request(req)).is_err() {
                self.dropped("decode_error", u64::from(item.count));
            }
        }
        let (tenants, report) = mapper.finish();
        for (reason, n) in report.dropped {
            self.dropped(reason, n);
        }
        for (reason, n) in report.adjusted {
            metrics::counter!(LOKI_ADJUSTED, "component_id" => self.component_id.to_string(), "reason" => reason)
                .increment(n);
        }
        tenants
    }

    /// The tenant's push requests, one per shard that has streams.
    fn encode_shards(&self, tenant: Option<Arc<str>>, group: TenantStreams) -> Vec<LokiRequest> {
        if self.shards <= 1 {
            return self.encode(tenant, group, 0).into_iter().collect();
        }
        let mut shards: Vec<TenantStreams> = (0..self.shards)
            .map(|_| TenantStreams {
                tenant: group.tenant.clone(),
                streams: Vec::new(),
            })
            .collect();
        for stream in group.streams {
            let shard = stream_shard(&stream.label_string, self.shards);
            if let Some(bucket) = shards.get_mut(shard) {
                bucket.streams.push(stream);
            }
        }
        shards
            .into_iter()
            .enumerate()
            .filter_map(|(shard, streams)| self.encode(tenant.clone(), streams, shard))
            .collect()
    }

    fn encode(
        &self,
        tenant: Option<Arc<str>>,
        group: TenantStreams,
        shard: usize,
    ) -> Option<LokiRequest> {
        let entries = group.entry_count();
        if entries == 0 {
            return None;
        }
        let encoded = match self.encoding {
            Encoding::Json => push::encode_json(&group.streams).map(|b| (b, CONTENT_JSON)),
            _ => push::encode_streams_protobuf(&group.streams).map(|b| (b, CONTENT_PROTOBUF)),
        };
        match encoded {
            Ok((body, content_type)) => Some(LokiRequest {
                tenant,
                body: Bytes::from(body),
                content_type,
                entries,
                shard,
            }),
            Err(e) => {
                tracing::warn!(component_id = %self.component_id, error = %e, "cannot encode Loki push request");
                self.dropped("encode_error", entries);
                None
            }
        }
    }

    fn otlp_request(&self, batch: &Batch) -> Vec<LokiRequest> {
        // Concatenated encodings of ExportLogsServiceRequest form one valid request.
        let mut body = Vec::with_capacity(batch.byte_size());
        for item in &batch.items {
            body.extend_from_slice(&item.payload);
        }
        let entries = batch.item_count();
        if entries == 0 && body.is_empty() {
            return Vec::new();
        }
        vec![LokiRequest {
            tenant: self.batch_tenant(batch),
            body: Bytes::from(body),
            content_type: CONTENT_PROTOBUF,
            entries,
            shard: 0,
        }]
    }
}

impl Exporter for LokiExporter {
    type Request = LokiRequest;

    /// Per-stream order matters to Loki (entries older than the stream's newest − 1 h are
    /// refused), so batches go out one after another.
    fn ordered(&self) -> bool {
        true
    }

    /// Mapping keeps nothing from one batch to the next: batches may convert concurrently.
    fn converts_in_order(&self) -> bool {
        false
    }

    fn lanes(&self) -> usize {
        self.shards
    }

    fn lane(&self, request: &LokiRequest) -> usize {
        request.shard
    }

    fn build_requests(&self, batch: &Batch) -> Vec<LokiRequest> {
        if batch.signal != Signal::Logs {
            exporter_dropped(
                &self.component_id,
                batch.signal,
                "unsupported_signal",
                batch.item_count(),
            );
            return Vec::new();
        }
        if self.encoding == Encoding::Otlp {
            return self.otlp_request(batch);
        }
        let default_tenant = self.batch_tenant(batch);
        let mut requests = Vec::new();
        for group in self.map_batch(batch) {
            let tenant = match &group.tenant {
                None => default_tenant.clone(),
                Some(t) => match validate_tenant(t) {
                    Ok(()) => Some(Arc::from(t.as_str())),
                    Err(e) => {
                        tracing::warn!(component_id = %self.component_id, tenant = %t, error = %e, "loki.tenant hint names an invalid tenant; dropping its records");
                        self.dropped("invalid_tenant", group.entry_count());
                        continue;
                    }
                },
            };
            requests.extend(self.encode_shards(tenant, group));
        }
        requests
    }

    fn request_items(&self, request: &LokiRequest) -> u64 {
        request.entries
    }

    async fn send(&self, request: &LokiRequest) -> SendOutcome {
        let mut rb = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, request.content_type)
            .body(request.body.clone());
        if let Some(t) = &request.tenant {
            rb = rb.header("X-Scope-OrgID", t.as_ref());
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return SendOutcome::Rejected {
                    reason: "invalid_request",
                    message: e.to_string(),
                };
            }
            Err(e) => {
                return SendOutcome::Retryable {
                    reason: if e.is_timeout() {
                        reason::TIMEOUT
                    } else if e.is_connect() {
                        reason::CONNECT
                    } else {
                        reason::TRANSPORT
                    },
                    retry_after: None,
                    message: http_client::body::error_chain(&e),
                };
            }
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) && status != 260 {
            return SendOutcome::Sent;
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(sluice_core::retry::parse_retry_after);
        let body = http_client::body::error_text(resp, MAX_ERROR_CHARS).await;
        classify_response(status, retry_after, &body)
    }
}

/// What a Loki response means. 2xx is success except 260, Loki's default status for a tenant
/// whose ingestion is blocked. 429, 408 and 5xx are retried; 400 means Loki may already have
/// stored the valid streams, so it is never retried.
pub fn classify_response(status: u16, retry_after: Option<Duration>, body: &str) -> SendOutcome {
    let message = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    match status {
        260 => SendOutcome::Rejected {
            reason: reason::INGESTION_BLOCKED,
            message,
        },
        200..=299 => SendOutcome::Sent,
        429 => SendOutcome::Retryable {
            reason: rate_limit_reason(body),
            retry_after,
            message,
        },
        408 | 500..=599 => SendOutcome::Retryable {
            reason: reason::for_http_status(status),
            retry_after,
            message,
        },
        400 => SendOutcome::Rejected {
            reason: bad_request_reason(body),
            message,
        },
        _ => SendOutcome::Rejected {
            reason: reason::for_http_status(status),
            message,
        },
    }
}

fn rate_limit_reason(body: &str) -> &'static str {
    let b = body.to_ascii_lowercase();
    if b.contains("per stream rate limit") {
        reason::PER_STREAM_RATE_LIMIT
    } else if b.contains("stream limit") {
        reason::SERIES_LIMIT
    } else {
        reason::RATE_LIMITED
    }
}

/// Loki's validation reasons (`pkg/validation/validate.go`) recognised in a 400 body, named
/// by the shared vocabulary (`sluice_core::reason`): a sample too old for Mimir and an entry
/// too old for Loki are both `too_old`.
pub fn bad_request_reason(body: &str) -> &'static str {
    let b = body.to_ascii_lowercase();
    const REASONS: [(&str, &str); 14] = [
        ("too far behind", reason::OUT_OF_ORDER),
        ("out of order", reason::OUT_OF_ORDER),
        ("timestamp too old", reason::TOO_OLD),
        ("greater_than_max_sample_age", reason::TOO_OLD),
        ("timestamp too new", reason::TOO_NEW),
        ("max entry size", reason::LINE_TOO_LONG),
        ("line_too_long", reason::LINE_TOO_LONG),
        ("label names; limit", reason::LABEL_LIMITS),
        ("label name too long", reason::LABEL_LIMITS),
        ("label value too long", reason::LABEL_LIMITS),
        ("duplicate label name", reason::INVALID_LABELS),
        ("error parsing labels", reason::INVALID_LABELS),
        ("at least one label", reason::INVALID_LABELS),
        ("structured metadata", reason::STRUCTURED_METADATA),
    ];
    REASONS
        .iter()
        .find(|(needle, _)| b.contains(needle))
        .map(|(_, reason)| *reason)
        .unwrap_or(if b.contains("rate limit") {
            reason::RATE_LIMITED
        } else if b.contains("stream limit") {
            reason::SERIES_LIMIT
        } else {
            reason::BAD_REQUEST
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify_response(204, None, ""), SendOutcome::Sent);
        assert_eq!(classify_response(200, None, ""), SendOutcome::Sent);
        assert!(matches!(
            classify_response(260, None, ""),
            SendOutcome::Rejected {
                reason: reason::INGESTION_BLOCKED,
                ..
            }
        ));
        assert_eq!(
            classify_response(
                429,
                Some(Duration::from_secs(3)),
                "Ingestion rate limit exceeded"
            ),
            SendOutcome::Retryable {
                reason: "rate_limited",
                retry_after: Some(Duration::from_secs(3)),
                message: "HTTP 429: Ingestion rate limit exceeded".into()
            }
        );
        assert!(matches!(
            classify_response(
                429,
                None,
                "Maximum active stream limit exceeded when trying"
            ),
            SendOutcome::Retryable {
                reason: "series_limit",
                ..
            }
        ));
        assert!(matches!(
            classify_response(503, None, ""),
            SendOutcome::Retryable {
                reason: "server_error",
                ..
            }
        ));
        assert!(matches!(
            classify_response(500, None, ""),
            SendOutcome::Retryable {
                reason: "server_error",
                ..
            }
        ));
        assert!(matches!(
            classify_response(401, None, "no org id"),
            SendOutcome::Rejected {
                reason: "unauthorized",
                ..
            }
        ));
        assert!(matches!(
            classify_response(413, None, ""),
            SendOutcome::Rejected {
                reason: "too_large",
                ..
            }
        ));
    }

    #[test]
    fn loki_400_bodies() {
        let cases = [
            (
                "entry with timestamp 2024-01-01 ignored, reason: 'entry too far behind, entry timestamp is: x, oldest acceptable timestamp is: y', user 'fake'",
                "out_of_order",
            ),
            (
                "entry for stream '{job=\"a\"}' has timestamp too old: 2020, oldest acceptable timestamp is: 2024",
                "too_old",
            ),
            (
                "entry for stream '{job=\"a\"}' has timestamp too new: 2099",
                "too_new",
            ),
            (
                "Max entry size '262144' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '300000' bytes",
                "line_too_long",
            ),
            (
                "entry for stream '{a=\"1\"}' has 16 label names; limit 15",
                "label_limits",
            ),
            (
                "Error parsing labels '{a=}' with error: parse error",
                "invalid_labels",
            ),
            ("something else", "bad_request"),
        ];
        for (body, reason) in cases {
            assert_eq!(bad_request_reason(body), reason, "{body}");
        }
    }
}
