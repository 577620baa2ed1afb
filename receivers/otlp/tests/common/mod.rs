//! Test harness: a recording consumer, a receiver started on 127.0.0.1:0, sample requests and
//! a raw gRPC client that can send bytes a generated client never would.
#![allow(dead_code)] // each test binary uses a different part

use bytes::Bytes;
use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_core::{Consumer, Item, Receiver, ReceiverContext, Refusal, Signal};
use sluice_otlp::grpc::RawCodec;
use sluice_receiver_otlp::{Config, build};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Records what it accepts; refuses with a scripted refusal when one is set.
pub struct TestConsumer {
    items: Mutex<Vec<Item>>,
    refusal: Mutex<Option<Refusal>>,
    accepts: Vec<Signal>,
    /// How long `consume` takes, to have requests in flight.
    delay: Mutex<Duration>,
    /// Signalled each time `consume` starts.
    pub started: tokio::sync::Notify,
}

impl TestConsumer {
    pub fn new() -> Arc<TestConsumer> {
        Self::accepting(&Signal::ALL)
    }

    pub fn accepting(signals: &[Signal]) -> Arc<TestConsumer> {
        Arc::new(TestConsumer {
            items: Mutex::new(Vec::new()),
            refusal: Mutex::new(None),
            accepts: signals.to_vec(),
            delay: Mutex::new(Duration::ZERO),
            started: tokio::sync::Notify::new(),
        })
    }

    pub fn delay_by(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn refuse_with(&self, refusal: Option<Refusal>) {
        *self.refusal.lock().unwrap() = refusal;
    }

    pub fn take(&self) -> Vec<Item> {
        std::mem::take(&mut *self.items.lock().unwrap())
    }
}

impl Consumer for TestConsumer {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        self.started.notify_one();
        let refusal = self.refusal.lock().unwrap().clone();
        let result = match refusal {
            Some(refusal) => Err(refusal),
            None => {
                self.items.lock().unwrap().push(item);
                Ok(())
            }
        };
        let delay = *self.delay.lock().unwrap();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            result
        })
    }

    fn accepts(&self, signal: Signal) -> bool {
        self.accepts.contains(&signal)
    }
}

pub fn backpressure(secs: u64) -> Refusal {
    Refusal::Backpressure {
        reason: "spool_full",
        retry_after: Duration::from_secs(secs),
    }
}

pub fn unavailable() -> Refusal {
    Refusal::Unavailable {
        reason: "stopping",
        message: "shutting down".into(),
    }
}

/// A receiver running on loopback ports.
pub struct Running {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub consumer: Arc<TestConsumer>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), sluice_core::ReceiverError>>,
}

impl Running {
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Requests shutdown without waiting.
    pub fn request_stop(&self) {
        self.stop.send(true).unwrap();
    }

    /// Requests shutdown and waits for `run` to return.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("receiver did not stop within 10s")
            .expect("receiver task panicked");
        if let Err(e) = result {
            panic!("receiver stopped with an error: {e}");
        }
    }
}

/// Starts a receiver with both servers on 127.0.0.1:0, tenant header `X-Scope-OrgID`, and the
/// given extra keys for the `[grpc]` and `[http]` tables.
pub async fn start_with(
    consumer: Arc<TestConsumer>,
    grpc_extra: &str,
    http_extra: &str,
) -> Running {
    let text = format!(
        "tenant_header = \"X-Scope-OrgID\"\n[grpc]\nendpoint = \"127.0.0.1:0\"\n{grpc_extra}\n[http]\nendpoint = \"127.0.0.1:0\"\n{http_extra}\n"
    );
    let config: Config = toml::from_str(&text).unwrap();
    let receiver = build(&config, "receivers.otlp").unwrap();
    let grpc = receiver.grpc_addr().unwrap();
    let http = receiver.http_addr().unwrap();
    assert_eq!(receiver.listen_addrs(), vec![grpc, http]);
    assert_ne!(grpc.port(), 0);
    let (stop, shutdown) = watch::channel(false);
    let ctx = ReceiverContext {
        component_id: Arc::from("receivers.otlp"),
        consumer: consumer.clone(),
        shutdown,
    };
    let task = tokio::spawn(Box::new(receiver).run(ctx));
    Running {
        grpc,
        http,
        consumer,
        stop,
        task,
    }
}

/// Starts a receiver from a whole config text (both servers on 127.0.0.1:0) under
/// `component_id`, so tests reading metrics do not see each other's series.
pub async fn start_config(consumer: Arc<TestConsumer>, component_id: &str, text: &str) -> Running {
    let config: Config = toml::from_str(text).unwrap();
    let receiver = build(&config, component_id).unwrap();
    let grpc = receiver.grpc_addr().unwrap();
    let http = receiver.http_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let ctx = ReceiverContext {
        component_id: Arc::from(component_id),
        consumer: consumer.clone(),
        shutdown,
    };
    let task = tokio::spawn(Box::new(receiver).run(ctx));
    Running {
        grpc,
        http,
        consumer,
        stop,
        task,
    }
}

pub async fn start(consumer: Arc<TestConsumer>) -> Running {
    start_with(consumer, "", "").await
}

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![attr("service.name", service)],
        ..Default::default()
    })
}

/// `spans` spans with distinct ids.
pub fn traces(spans: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("checkout"),
            scope_spans: vec![ScopeSpans {
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: vec![0xab; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("op-{i}"),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_500_000_000,
                        attributes: vec![attr("http.route", "/cart")],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One point of every kind: 2 gauge + 1 sum + 1 histogram + 1 exponential + 1 summary = 6.
pub fn metrics() -> ExportMetricsServiceRequest {
    let number = |v: f64| NumberDataPoint {
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let metric = |name: &str, data| Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("api"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(
                        "temperature",
                        metric::Data::Gauge(Gauge {
                            data_points: vec![number(20.5), number(21.0)],
                        }),
                    ),
                    metric(
                        "requests",
                        metric::Data::Sum(Sum {
                            data_points: vec![number(7.0)],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "latency",
                        metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                count: 3,
                                bucket_counts: vec![1, 2],
                                explicit_bounds: vec![10.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        }),
                    ),
                    metric(
                        "size",
                        metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint::default()],
                            aggregation_temporality: 2,
                        }),
                    ),
                    metric(
                        "rpc",
                        metric::Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint::default()],
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn logs(records: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("worker"),
            scope_logs: vec![ScopeLogs {
                log_records: (0..records)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// gzip of `size` zero bytes, compressed in chunks so the test never holds `size` bytes.
pub fn gzip_zeros(size: usize) -> Vec<u8> {
    use std::io::Write;
    let chunk = vec![0u8; 1024 * 1024];
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        encoder.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    encoder.finish().unwrap()
}

pub const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// One unary call with a raw body on `path`, optionally gzip-compressed by tonic.
pub async fn raw_grpc_call(
    url: &str,
    path: &'static str,
    body: Bytes,
    gzip: bool,
) -> Result<Bytes, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    if gzip {
        client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    client.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(path);
    client
        .unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|r| r.into_inner())
}
