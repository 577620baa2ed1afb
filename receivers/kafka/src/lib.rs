//! Kafka receiver (`type = "kafka"`): a consumer-group member reading OTLP protobuf records
//! (the OpenTelemetry Collector's `otlp_proto` encoding) from one topic per signal.
//!
//! **Offsets follow durability.** librdkafka commits only offsets the receiver *stored*, and a
//! record's offset is stored only once the pipeline answered that the record is durable in
//! the spool (in partition order). A crash or `kill -9` therefore loses nothing: the records
//! after the last commit are read again, by this gateway after a restart or by another one
//! after a rebalance. Those duplicates are bounded by `commit_interval` plus `max_in_flight`.
//!
//! A record that is not OTLP is counted (`reason="not_otlp"`) and its offset stored, so a
//! poison record never stops a partition.

mod config;

pub use config::{Config, InitialOffset};
pub use sluice_kafka::Topics;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use sluice_core::retry::Backoff;
use sluice_core::telemetry::{receiver_accepted, receiver_refused};
use sluice_core::{Consumer, Item, Receiver, ReceiverContext, ReceiverError, Refusal, Signal};
use sluice_kafka::ClientReports;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TYPE_NAME: &str = "kafka";

/// Records behind the partition's end that are not yet durable in the spool, per partition.
pub const LAG: &str = "sluice_kafka_receiver_lag_records";
/// Records this gateway spooled whose offset it could not store (their partition moved to
/// another member meanwhile): they will be read again, so they are duplicates downstream.
pub const DUPLICATES: &str = "sluice_kafka_receiver_duplicate_records_total";
/// Partitions assigned to or revoked from this member.
pub const REBALANCES: &str = "sluice_kafka_receiver_rebalances_total";
/// Offset commits that failed (retried by the next commit).
pub const COMMIT_FAILURES: &str = "sluice_kafka_receiver_commit_failures_total";

/// Record header with the tenant, as the Kafka exporter writes it.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

pub struct KafkaReceiver {
    config: Config,
    component_id: Arc<str>,
}

pub fn build(config: &Config, component_id: &str) -> anyhow::Result<KafkaReceiver> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    // Creating the client checks every property now, so a typo fails at start.
    consumer_config(config)
        .create::<BaseConsumer>()
        .map_err(|e| anyhow::anyhow!("{component_id}: invalid Kafka consumer settings: {e}"))?;
    Ok(KafkaReceiver {
        config: config.clone(),
        component_id: component_id.into(),
    })
}

/// The librdkafka consumer config: offsets are stored by the receiver, committed by librdkafka.
pub fn consumer_config(config: &Config) -> rdkafka::ClientConfig {
    let mut client = config.client.client_config();
    let initial = match config.initial_offset {
        InitialOffset::Latest => "latest",
        InitialOffset::Earliest => "earliest",
    };
    client
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.commit.interval.ms",
            config.commit_interval.get().as_millis().to_string(),
        )
        .set("auto.offset.reset", initial)
        .set(
            "session.timeout.ms",
            config.session_timeout.get().as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout.get().as_millis() / 3)
                .max(100)
                .to_string(),
        )
        .set(
            "statistics.interval.ms",
            config.lag_interval.get().as_millis().to_string(),
        );
    client
}

/// Reports lag from librdkafka's statistics, counts rebalances and failed commits, and passes
/// client errors and log lines to the shared [`ClientReports`].
struct GroupContext {
    component_id: Arc<str>,
    reports: ClientReports,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.reports.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, detail: &str) {
        self.reports.error(&error, detail);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, p) in stats.partitions {
                // -1 is librdkafka's internal "unassigned" partition; lag -1 means unknown.
                if partition < 0 || p.consumer_lag_stored < 0 {
                    continue;
                }
                metrics::gauge!(LAG, "component_id" => self.component_id.to_string(), "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag_stored as f64);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (kind, count) = match rebalance {
            Rebalance::Assign(tpl) => ("assign", tpl.count()),
            Rebalance::Revoke(tpl) => ("revoke", tpl.count()),
            Rebalance::Error(error) => {
                tracing::warn!(component_id = %self.component_id, %error, "rebalance failed");
                ("error", 0)
            }
        };
        tracing::info!(component_id = %self.component_id, kind, partitions = count, "consumer group rebalance");
        metrics::counter!(REBALANCES, "component_id" => self.component_id.to_string(), "kind" => kind)
            .increment(1);
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            // "No offset" just means nothing new was stored since the last commit.
            if !matches!(
                error.rdkafka_error_code(),
                Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
            ) {
                tracing::warn!(component_id = %self.component_id, %error, "offset commit failed");
                metrics::counter!(COMMIT_FAILURES, "component_id" => self.component_id.to_string())
                    .increment(1);
            }
        }
    }
}

/// Where one record ended up.
enum Fate {
    /// Durable in the spool: store its offset.
    Spooled,
    /// Counted and skipped for good (not OTLP, refused as invalid): store its offset too.
    Skipped,
    /// Shutdown while the pipeline still refused it: leave its offset, it will be read again.
    Abandoned,
}

struct Position {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

impl Receiver for KafkaReceiver {
    fn listen_addrs(&self) -> Vec<std::net::SocketAddr> {
        Vec::new()
    }

    fn run(self: Box<Self>, ctx: ReceiverContext) -> BoxFuture<'static, Result<(), ReceiverError>> {
        Box::pin(async move { self.serve(ctx).await })
    }
}

impl KafkaReceiver {
    async fn serve(self, ctx: ReceiverContext) -> Result<(), ReceiverError> {
        let id = self.component_id.clone();
        let signal_of = |topic: &str| {
            Signal::ALL
                .into_iter()
                .find(|s| self.config.topics.get(*s) == topic)
        };
        let topics: Vec<&str> = Signal::ALL
            .into_iter()
            .filter(|s| ctx.consumer.accepts(*s))
            .map(|s| self.config.topics.get(s))
            .collect();
        if topics.is_empty() {
            return Err(ReceiverError::new(
                id.to_string(),
                "no pipeline takes any signal from this receiver",
            ));
        }
        let consumer: StreamConsumer<GroupContext> = consumer_config(&self.config)
            .create_with_context(GroupContext {
                component_id: id.clone(),
                reports: ClientReports::new(&id),
            })
            .map_err(|e| ReceiverError::new(format!("{id}: creating the Kafka consumer"), e))?;
        consumer
            .subscribe(&topics)
            .map_err(|e| ReceiverError::new(format!("{id}: subscribing to {topics:?}"), e))?;
        tracing::info!(component_id = %id, ?topics, group = %self.config.group_id, "kafka receiver subscribed");

        let mut in_flight: FuturesOrdered<BoxFuture<'static, (Position, Fate)>> =
            FuturesOrdered::new();
        let mut stopping = false;
        while !stopping {
            tokio::select! {
                _ = ctx.stopped() => stopping = true,
                Some((position, fate)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.settle(&consumer, position, fate);
                }
                message = consumer.recv(), if in_flight.len() < self.config.max_in_flight => {
                    let message = match message {
                        Ok(message) => message,
                        Err(error) => {
                            // Broker down, login refused...: the client context logged and
                            // counted it already (with librdkafka's explanation); librdkafka
                            // keeps reconnecting by itself.
                            tracing::debug!(component_id = %id, %error, "kafka consume error");
                            continue;
                        }
                    };
                    let position = Position {
                        topic: message.topic().into(),
                        partition: message.partition(),
                        offset: message.offset(),
                    };
                    let tenant = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key.eq_ignore_ascii_case(TENANT_HEADER))
                            .and_then(|h| h.value)
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .filter(|v| !v.is_empty())
                            .map(Arc::<str>::from)
                    });
                    let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
                    let fate = match signal_of(message.topic()) {
                        Some(signal) => self.admit(&ctx, signal, tenant, payload),
                        None => Box::pin(async { Fate::Skipped }),
                    };
                    in_flight.push_back(Box::pin(async move { (position, fate.await) }));
                }
            }
        }
        // Records already spooled get their offsets stored so the final commit covers them.
        let drain = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(drain);
        loop {
            tokio::select! {
                _ = &mut drain => break,
                next = in_flight.next() => match next {
                    Some((position, fate)) => self.settle(&consumer, position, fate),
                    None => break,
                },
            }
        }
        drop(in_flight);
        // Closing the consumer commits the stored offsets and leaves the group, so the others
        // take over its partitions at once instead of after the session timeout.
        tokio::task::spawn_blocking(move || drop(consumer))
            .await
            .map_err(|e| ReceiverError::new(format!("{id}: closing the consumer"), e))?;
        Ok(())
    }

    /// Checks one record and starts delivering it to the pipeline.
    fn admit(
        &self,
        ctx: &ReceiverContext,
        signal: Signal,
        tenant: Option<Arc<str>>,
        payload: Bytes,
    ) -> BoxFuture<'static, Fate> {
        let id = self.component_id.clone();
        if payload.is_empty() {
            receiver_refused(&id, Some(signal), "empty_record", 1);
            return Box::pin(async { Fate::Skipped });
        }
        let count = match sluice_otlp::validate(signal, &payload) {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(component_id = %id, %signal, %error, "record is not OTLP; skipped");
                receiver_refused(&id, Some(signal), "not_otlp", 1);
                return Box::pin(async { Fate::Skipped });
            }
        };
        let item = Item::new(signal, payload, count).with_tenant(tenant);
        let consumer = ctx.consumer.clone();
        let mut shutdown = ctx.shutdown.clone();
        let retry = self.config.retry.clone();
        Box::pin(async move {
            let mut backoff = Backoff::new(&retry);
            let started = Instant::now();
            loop {
                match deliver(&*consumer, item.clone()).await {
                    Ok(()) => {
                        receiver_accepted(&id, signal, u64::from(count));
                        sluice_core::telemetry::receiver_request(
                            &id,
                            "kafka",
                            "ok".into(),
                            started.elapsed(),
                        );
                        return Fate::Spooled;
                    }
                    Err(refusal) if refusal.is_retryable() => {
                        receiver_refused(&id, Some(signal), refusal.reason(), u64::from(count));
                        let retry_after = match &refusal {
                            Refusal::Backpressure { retry_after, .. } => Some(*retry_after),
                            _ => None,
                        };
                        let delay = backoff.next_delay(retry_after);
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = shutdown.wait_for(|stop| *stop) => return Fate::Abandoned,
                        }
                    }
                    Err(refusal) => {
                        tracing::warn!(component_id = %id, %signal, %refusal, "record refused; skipped");
                        receiver_refused(&id, Some(signal), refusal.reason(), u64::from(count));
                        return Fate::Skipped;
                    }
                }
            }
        })
    }

    /// Stores the offset of a record that is durable or skipped for good.
    fn settle(&self, consumer: &StreamConsumer<GroupContext>, position: Position, fate: Fate) {
        if matches!(fate, Fate::Abandoned) {
            return;
        }
        if let Err(error) =
            consumer.store_offset(&position.topic, position.partition, position.offset)
        {
            // The partition was revoked meanwhile; its next owner reads the record again.
            tracing::debug!(component_id = %self.component_id, %error, topic = %position.topic, partition = position.partition, "offset not stored");
            if matches!(fate, Fate::Spooled) {
                metrics::counter!(DUPLICATES, "component_id" => self.component_id.to_string(), "reason" => "revoked")
                    .increment(1);
            }
        }
    }
}

async fn deliver(consumer: &dyn Consumer, item: Item) -> Result<(), Refusal> {
    consumer.consume(item).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(&format!("brokers = [\"127.0.0.1:9092\"]\n{extra}")).unwrap()
    }

    #[test]
    fn offsets_are_stored_by_the_receiver_and_committed_by_librdkafka() {
        let c = config("group_id = \"gw\"\ninitial_offset = \"earliest\"");
        assert_eq!(c.validate(), Ok(()));
        let k = consumer_config(&c);
        assert_eq!(k.get("group.id"), Some("gw"));
        assert_eq!(k.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(k.get("enable.auto.commit"), Some("true"));
        assert_eq!(k.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.topics.get(Signal::Traces), "otlp_spans");
        assert!(build(&c, "receivers.kafka").is_ok());
    }

    #[test]
    fn bad_keys_are_named() {
        for (extra, key) in [
            ("group = \"x\"", "group"),
            ("group_id = \"\"", "group_id"),
            ("max_in_flight = 0", "max_in_flight"),
            ("session_timeout = \"10ms\"", "session_timeout"),
            ("topics = { traces = \"not a topic!\" }", "topics.traces"),
            (
                "properties = { \"enable.auto.offset.store\" = \"true\" }",
                "properties",
            ),
        ] {
            let err = config(extra).validate().unwrap_err();
            assert_eq!(err.key, key, "{extra}: {err}");
        }
        // A librdkafka property that does not exist fails at build, naming the component.
        let bad = config("properties = { \"no.such.property\" = \"1\" }");
        let err = build(&bad, "receivers.kafka").err().unwrap().to_string();
        assert!(
            err.starts_with("receivers.kafka: invalid Kafka consumer settings"),
            "{err}"
        );
    }
}
