//! Kafka exporter (`type = "kafka"`): every request is one Kafka record whose value is an OTLP
//! `Export*ServiceRequest` in protobuf — the OpenTelemetry Collector's `otlp_proto` encoding,
//! so Collector and Sluice producers and consumers can share topics.
//!
//! Records go to one topic per signal, keyed by trace id (traces) or by resource (metrics,
//! logs) so that related data shares a partition. The producer is idempotent with
//! `acks=all`, and a request counts as sent only once the broker acknowledged it, so the
//! pipeline's spool cursor never moves past data Kafka does not hold.

mod config;
pub mod partition;

pub use config::{Compression, Config, Partitioning};
pub use sluice_kafka::Topics;

use bytes::Bytes;
use partition::KeyedPayload;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_core::telemetry::exporter_dropped;
use sluice_core::{Batch, Exporter, Item, SendOutcome, Signal, reason};
use sluice_kafka::{ClientReports, ReportingContext};
use std::sync::Arc;
use std::time::Duration;

pub const TYPE_NAME: &str = "kafka";
pub const SIGNALS: &[Signal] = &Signal::ALL;

/// Record header carrying the batch's tenant, restored by the Kafka receiver.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// One Kafka record.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaRecord {
    pub signal: Signal,
    pub topic: Arc<str>,
    pub tenant: Option<Arc<str>>,
    pub key: Option<Bytes>,
    /// An encoded `Export*ServiceRequest`.
    pub payload: Bytes,
    pub items: u64,
}

pub struct KafkaExporter {
    component_id: Arc<str>,
    producer: FutureProducer<ReportingContext>,
    reports: Arc<ClientReports>,
    topics: [Arc<str>; 3],
    partitioning: Partitioning,
    max_message_bytes: usize,
    /// How long a send waits for room in the producer's local queue.
    queue_wait: Duration,
}

/// The librdkafka producer config: the client settings plus what the delivery guarantee rests on.
pub fn producer_config(config: &Config) -> rdkafka::ClientConfig {
    let mut client = config.client.client_config();
    // Record batches may exceed one record; leave room for their framing.
    let batch_limit = config.max_message_bytes.get().saturating_add(64 * 1024);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", config.compression.as_str())
        .set("linger.ms", config.linger.get().as_millis().to_string())
        .set(
            "message.timeout.ms",
            config.timeout.get().as_millis().to_string(),
        )
        .set("message.max.bytes", batch_limit.to_string())
        // The Java client's partitioner: a key maps to the same partition from any producer
        // that uses it.
        .set("partitioner", "murmur2_random");
    client
}

/// Builds the exporter and its producer (which connects lazily: brokers that are down do not
/// fail the build).
pub fn build(config: &Config, component_id: &str) -> anyhow::Result<KafkaExporter> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    let reports = Arc::new(ClientReports::new(component_id));
    let producer = producer_config(config)
        .create_with_context(ReportingContext(reports.clone()))
        .map_err(|e| anyhow::anyhow!("{component_id}: cannot create the Kafka producer: {e}"))?;
    Ok(KafkaExporter {
        component_id: component_id.into(),
        producer,
        reports,
        topics: Signal::ALL.map(|s| Arc::from(config.topics.get(s))),
        partitioning: config.partition.clone(),
        max_message_bytes: config.max_message_bytes.as_usize(),
        queue_wait: config.timeout.get(),
    })
}

impl KafkaExporter {
    fn topic(&self, signal: Signal) -> Arc<str> {
        self.topics[usize::from(signal.as_u8() - 1)].clone()
    }

    fn records(&self, signal: Signal, items: &[&Item]) -> Vec<KeyedPayload> {
        let keyed = if !self.partitioning.keyed(signal) {
            Ok(partition::unkeyed(
                items.iter().copied(),
                self.max_message_bytes,
            ))
        } else if signal == Signal::Traces {
            partition::by_trace_id(items.iter().copied())
        } else {
            partition::by_resource(signal, items.iter().copied())
        };
        match keyed {
            Ok(records) => partition::fit(signal, records, self.max_message_bytes),
            Err(error) => {
                // Receivers validated these payloads, so this is a spool or version mismatch;
                // ship them unkeyed rather than lose them.
                tracing::warn!(component_id = %self.component_id, %error, "payload does not decode; sent without a partition key");
                partition::fit(
                    signal,
                    partition::unkeyed(items.iter().copied(), self.max_message_bytes),
                    self.max_message_bytes,
                )
            }
        }
    }
}

/// What a failed produce means for the pipeline.
pub fn classify(error: &KafkaError) -> SendOutcome {
    let message = error.to_string();
    let Some(code) = error.rdkafka_error_code() else {
        return SendOutcome::Retryable {
            reason: "kafka_error",
            retry_after: None,
            message,
        };
    };
    let rejected = |reason| SendOutcome::Rejected {
        reason,
        message: message.clone(),
    };
    let retryable = |reason| SendOutcome::Retryable {
        reason,
        retry_after: None,
        message: message.clone(),
    };
    match code {
        RDKafkaErrorCode::MessageSizeTooLarge
        | RDKafkaErrorCode::InvalidMessageSize
        | RDKafkaErrorCode::MessageBatchTooLarge => rejected("message_too_large"),
        RDKafkaErrorCode::InvalidMessage | RDKafkaErrorCode::InvalidRecord => {
            rejected("invalid_record")
        }
        RDKafkaErrorCode::QueueFull => SendOutcome::Retryable {
            reason: "queue_full",
            retry_after: Some(Duration::from_millis(100)),
            message,
        },
        RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut => {
            retryable(reason::TIMEOUT)
        }
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
            retryable("unknown_topic")
        }
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => retryable(reason::FORBIDDEN),
        RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::Authentication => {
            retryable(reason::UNAUTHORIZED)
        }
        _ => retryable("kafka_error"),
    }
}

/// A record that timed out says why when the client met an error meanwhile: librdkafka keeps
/// records queued while a broker refuses the login or the TLS handshake, so they only time out.
pub fn explain_timeout(
    outcome: SendOutcome,
    reports: &ClientReports,
    within: Duration,
) -> SendOutcome {
    match outcome {
        SendOutcome::Retryable {
            reason: reason::TIMEOUT,
            retry_after,
            message,
        } => match reports.recent_error(within) {
            Some((cause, detail)) => SendOutcome::Retryable {
                reason: cause,
                retry_after,
                message: format!("{message}; the Kafka client reports: {detail}"),
            },
            None => SendOutcome::Retryable {
                reason: reason::TIMEOUT,
                retry_after,
                message,
            },
        },
        other => other,
    }
}

impl Exporter for KafkaExporter {
    type Request = KafkaRecord;

    fn build_requests(&self, batch: &Batch) -> Vec<KafkaRecord> {
        let (matching, foreign): (Vec<&Item>, Vec<&Item>) =
            batch.items.iter().partition(|i| i.signal == batch.signal);
        let foreign_items: u64 = foreign.iter().map(|i| u64::from(i.count)).sum();
        if foreign_items > 0 {
            exporter_dropped(
                &self.component_id,
                batch.signal,
                "signal_mismatch",
                foreign_items,
            );
        }
        let topic = self.topic(batch.signal);
        self.records(batch.signal, &matching)
            .into_iter()
            .map(|r| KafkaRecord {
                signal: batch.signal,
                topic: topic.clone(),
                tenant: batch.tenant.clone(),
                key: r.key,
                payload: r.payload,
                items: r.items,
            })
            .collect()
    }

    fn request_items(&self, request: &KafkaRecord) -> u64 {
        request.items
    }

    fn split(&self, request: &KafkaRecord) -> Option<(KafkaRecord, KafkaRecord)> {
        let (first, second) = sluice_otlp::split(request.signal, &request.payload)?;
        let first_items = u64::from(sluice_otlp::count_items(request.signal, &first));
        let half = |payload: Vec<u8>, items| KafkaRecord {
            payload: Bytes::from(payload),
            items,
            ..request.clone()
        };
        Some((
            half(first, first_items),
            half(second, request.items.saturating_sub(first_items)),
        ))
    }

    fn dead_letter_payload(&self, request: &KafkaRecord) -> Option<Bytes> {
        Some(request.payload.clone())
    }

    async fn send(&self, request: &KafkaRecord) -> SendOutcome {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&request.topic).payload(&request.payload[..]);
        if let Some(key) = &request.key {
            record = record.key(&key[..]);
        }
        if let Some(tenant) = &request.tenant {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: TENANT_HEADER,
                value: Some(tenant.as_bytes()),
            }));
        }
        match self.producer.send(record, self.queue_wait).await {
            Ok(_) => {
                self.reports.clear_error();
                SendOutcome::Sent
            }
            Err((error, _)) => {
                // librdkafka repeats an identical connection error only every 30 s or so, and
                // the record waited up to twice the timeout (queue, then delivery).
                let window = self.queue_wait * 2 + Duration::from_secs(60);
                explain_timeout(classify(&error), &self.reports, window)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(&format!("brokers = [\"127.0.0.1:9092\"]\n{extra}")).unwrap()
    }

    #[test]
    fn defaults_are_the_collectors_topics_and_a_safe_producer() {
        let c = config("");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.topics.get(Signal::Traces), "otlp_spans");
        assert_eq!(c.topics.get(Signal::Metrics), "otlp_metrics");
        assert_eq!(c.topics.get(Signal::Logs), "otlp_logs");
        let p = producer_config(&c);
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("compression.type"), Some("zstd"));
    }

    #[test]
    fn bad_keys_are_named() {
        for (extra, key) in [
            ("topic = \"x\"", "topic"),
            ("topics = { traces = \"a b\" }", "topics.traces"),
            ("max_message_bytes = \"10B\"", "max_message_bytes"),
            ("timeout = \"10ms\"", "timeout"),
        ] {
            let err = config(extra).validate().unwrap_err();
            assert_eq!(err.key, key, "{extra}: {err}");
        }
        assert!(toml::from_str::<Config>("brokers = [\"k:1\"]\ncompression = \"brotli\"").is_err());
    }

    #[test]
    fn a_timeout_names_the_client_error_met_meanwhile() {
        let timed_out = || {
            classify(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            ))
        };
        let reports = ClientReports::new("exporters.kafka");
        let window = Duration::from_secs(10);
        assert!(matches!(
            explain_timeout(timed_out(), &reports, window),
            SendOutcome::Retryable {
                reason: reason::TIMEOUT,
                ..
            }
        ));
        reports.error(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid credentials",
        );
        match explain_timeout(timed_out(), &reports, window) {
            SendOutcome::Retryable {
                reason: reason::UNAUTHORIZED,
                message,
                ..
            } => assert!(message.contains("invalid credentials"), "{message}"),
            other => panic!("{other:?}"),
        }
        // An error older than the window explains nothing.
        assert!(matches!(
            explain_timeout(timed_out(), &reports, Duration::ZERO),
            SendOutcome::Retryable {
                reason: reason::TIMEOUT,
                ..
            }
        ));
    }

    #[test]
    fn size_and_corruption_refusals_are_final_the_rest_retried() {
        let final_ = classify(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge,
        ));
        assert!(matches!(
            final_,
            SendOutcome::Rejected {
                reason: "message_too_large",
                ..
            }
        ));
        let retry = classify(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        ));
        assert!(matches!(
            retry,
            SendOutcome::Retryable {
                reason: "timeout",
                ..
            }
        ));
        let retry = classify(&KafkaError::MessageProduction(
            RDKafkaErrorCode::BrokerTransportFailure,
        ));
        assert!(matches!(
            retry,
            SendOutcome::Retryable {
                reason: "kafka_error",
                ..
            }
        ));
    }
}
