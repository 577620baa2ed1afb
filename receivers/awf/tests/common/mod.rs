//! Shared test helpers: a recording consumer that can refuse on demand, and OTLP decoding.
#![allow(dead_code)]

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message;
use sluice_core::{Consumer, Item, ReceiverContext, Refusal, Signal};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Records accepted items; refuses the next `refuse_next` calls with backpressure.
#[derive(Default)]
pub struct TestConsumer {
    pub items: Mutex<Vec<Item>>,
    pub refuse_next: AtomicU32,
    /// Refuse the next N calls as `Invalid` (a processor rejecting the data for good).
    pub invalid_next: AtomicU32,
    pub refused: AtomicU64,
}

impl Consumer for TestConsumer {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        let refuse = self
            .refuse_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let invalid = !refuse
            && self
                .invalid_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        let result = if invalid {
            self.refused.fetch_add(1, Ordering::SeqCst);
            Err(Refusal::Invalid("test processor refused it".into()))
        } else if refuse {
            self.refused.fetch_add(1, Ordering::SeqCst);
            Err(Refusal::Backpressure {
                reason: "test_full",
                retry_after: Duration::from_millis(10),
            })
        } else {
            self.items.lock().push(item);
            Ok(())
        };
        Box::pin(futures::future::ready(result))
    }

    fn accepts(&self, _signal: Signal) -> bool {
        true
    }
}

impl TestConsumer {
    pub fn spans(&self) -> Vec<Span> {
        self.items
            .lock()
            .iter()
            .filter(|i| i.signal == Signal::Traces)
            .flat_map(|i| {
                let req = ExportTraceServiceRequest::decode(i.payload.clone()).expect("traces");
                req.resource_spans
                    .into_iter()
                    .flat_map(|r| r.scope_spans)
                    .flat_map(|s| s.spans)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn logs(&self) -> Vec<LogRecord> {
        self.items
            .lock()
            .iter()
            .filter(|i| i.signal == Signal::Logs)
            .flat_map(|i| {
                let req = ExportLogsServiceRequest::decode(i.payload.clone()).expect("logs");
                req.resource_logs
                    .into_iter()
                    .flat_map(|r| r.scope_logs)
                    .flat_map(|s| s.log_records)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The last metrics item's metrics (cumulative: the latest carries the totals).
    pub fn last_metrics(&self) -> Vec<Metric> {
        self.items
            .lock()
            .iter()
            .rev()
            .find(|i| i.signal == Signal::Metrics)
            .map(|i| {
                let req = ExportMetricsServiceRequest::decode(i.payload.clone()).expect("metrics");
                req.resource_metrics
                    .into_iter()
                    .flat_map(|r| r.scope_metrics)
                    .flat_map(|s| s.metrics)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Sum of a counter's points whose labels include all of `labels`.
pub fn counter_total(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(m) = metrics.iter().find(|m| m.name == name) else {
        return 0.0;
    };
    let Some(metric::Data::Sum(sum)) = &m.data else {
        panic!("{name} is not a sum");
    };
    sum.data_points
        .iter()
        .filter(|p| {
            labels.iter().all(|(k, v)| {
                p.attributes.iter().any(|kv| {
                    kv.key == *k
                        && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(any_value::Value::StringValue(s)) if s == v)
                })
            })
        })
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            Some(number_data_point::Value::AsDouble(d)) => d,
            None => 0.0,
        })
        .sum()
}

/// A gauge's value for the series whose labels include all of `labels`.
pub fn gauge_value(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let m = metrics.iter().find(|m| m.name == name)?;
    let Some(metric::Data::Gauge(g)) = &m.data else {
        panic!("{name} is not a gauge");
    };
    g.data_points
        .iter()
        .find(|p| {
            labels.iter().all(|(k, v)| {
                p.attributes.iter().any(|kv| {
                    kv.key == *k
                        && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(any_value::Value::StringValue(s)) if s == v)
                })
            })
        })
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            Some(number_data_point::Value::AsDouble(d)) => d,
            None => 0.0,
        })
}

/// Total count of a histogram across its series.
pub fn histogram_count(metrics: &[Metric], name: &str) -> u64 {
    let Some(m) = metrics.iter().find(|m| m.name == name) else {
        return 0;
    };
    let Some(metric::Data::Histogram(h)) = &m.data else {
        panic!("{name} is not a histogram");
    };
    h.data_points.iter().map(|p| p.count).sum()
}

/// Span ids delivered more than once.
pub fn duplicated_span_ids(spans: &[Span]) -> Vec<String> {
    let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
    for s in spans {
        *seen.entry(s.span_id.clone()).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, n)| format!("{} x{n}", hex::encode(id)))
        .collect()
}

pub struct Running {
    pub consumer: Arc<TestConsumer>,
    pub stop: watch::Sender<bool>,
    pub handle: tokio::task::JoinHandle<Result<(), sluice_core::ReceiverError>>,
}

impl Running {
    pub async fn shutdown(self) -> Arc<TestConsumer> {
        let _ = self.stop.send(true);
        let r = tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("receiver stops in time")
            .expect("receiver task");
        r.expect("receiver ran cleanly");
        self.consumer
    }
}

/// Runs a receiver with a fresh test consumer.
pub fn start(receiver: Box<dyn sluice_core::Receiver>) -> Running {
    start_as(receiver, "receivers.awf")
}

/// Runs a receiver with a fresh test consumer under its own `component_id` (which keeps its
/// self-metrics apart from other tests').
pub fn start_as(receiver: Box<dyn sluice_core::Receiver>, component_id: &str) -> Running {
    let consumer = Arc::new(TestConsumer::default());
    let (stop, shutdown) = watch::channel(false);
    let ctx = ReceiverContext {
        component_id: Arc::from(component_id),
        consumer: consumer.clone(),
        shutdown,
    };
    let handle = tokio::spawn(receiver.run(ctx));
    Running {
        consumer,
        stop,
        handle,
    }
}

/// Polls `cond` until true or `timeout`.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
