//! `sluice sink`: an OTLP endpoint that accepts and counts everything, for benchmarks. It is the
//! real OTLP receiver with a consumer that drops items after counting them, so the work per
//! request (HTTP/2, validation) is what a real backend's front door does, and no more.
//!
//! With `--push ADDR` it also takes Prometheus remote-write (`POST /api/v1/write`, 1.0 and 2.0)
//! and Loki push (`POST /loki/api/v1/push`, snappy protobuf; `POST /otlp/v1/logs`, Loki's
//! native OTLP endpoint, uncompressed protobuf), walking every field of each body and counting
//! samples and log entries.

use futures::future::BoxFuture;
use sluice_core::{Consumer, Item, Receiver, ReceiverContext, Refusal, Signal};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args, Clone, Debug)]
pub struct SinkArgs {
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:5317")]
    pub grpc: String,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:5318")]
    pub http: String,
    /// Print items/s at this interval.
    #[arg(long, default_value = "5s", value_parser = sluice_core::config::parse_duration)]
    pub report_every: Duration,
    /// Decode log records and report how long after their own timestamp they arrived
    /// (event-to-export latency, when the producer stamps events as it makes them).
    #[arg(long)]
    pub log_latency: bool,
    /// Print each report as one JSON line (`{"unix_ms":…,"items":…}`), for scripts that
    /// measure what arrived over time.
    #[arg(long)]
    pub json: bool,
    /// Also listen here for remote-write and Loki push requests.
    #[arg(long)]
    pub push: Option<String>,
}

pub struct CountingConsumer {
    pub items: AtomicU64,
    /// Milliseconds between a log record's timestamp and its arrival, when measured.
    latency_ms: Option<parking_lot::Mutex<hdrhistogram::Histogram<u64>>>,
}

impl CountingConsumer {
    fn record_latency(&self, item: &Item) {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use prost::Message;
        let (Some(hist), Signal::Logs) = (&self.latency_ms, item.signal) else {
            return;
        };
        let Ok(req) = ExportLogsServiceRequest::decode(item.payload.as_ref()) else {
            return;
        };
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut hist = hist.lock();
        let records = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records);
        for r in records {
            let at = if r.time_unix_nano > 0 {
                r.time_unix_nano
            } else {
                r.observed_time_unix_nano
            };
            let _ = hist.record(now_ns.saturating_sub(at) / 1_000_000);
        }
    }
}

impl Consumer for CountingConsumer {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        self.items
            .fetch_add(u64::from(item.count), Ordering::Relaxed);
        self.record_latency(&item);
        Box::pin(std::future::ready(Ok(())))
    }
    fn accepts(&self, _: Signal) -> bool {
        true
    }
}

pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let text = format!(
        "[grpc]\nendpoint = \"{}\"\n[http]\nendpoint = \"{}\"\n",
        args.grpc, args.http
    );
    let config: sluice_receiver_otlp::Config = toml::from_str(&text)?;
    let receiver = sluice_receiver_otlp::build(&config, "sink")?;
    let latency_ms = match args.log_latency {
        true => Some(parking_lot::Mutex::new(hdrhistogram::Histogram::new(3)?)),
        false => None,
    };
    let counter = Arc::new(CountingConsumer {
        items: AtomicU64::new(0),
        latency_ms,
    });
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = ReceiverContext {
        component_id: Arc::from("sink"),
        consumer: counter.clone(),
        shutdown: stop_rx,
    };
    println!("sink listening on {:?}", receiver.listen_addrs());
    let server = tokio::spawn(Box::new(receiver).run(ctx));
    let push_server = match &args.push {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("sink taking remote-write and Loki push on {addr}");
            let app = push_routes(counter.clone());
            Some(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ))
        }
        None => None,
    };
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(args.report_every) => {
                let now = counter.items.load(Ordering::Relaxed);
                let rate = (now - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), now);
                match &counter.latency_ms {
                    _ if args.json => {
                        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
                        println!("{{\"unix_ms\":{unix_ms},\"items\":{now}}}");
                    }
                    Some(h) => {
                        let mut h = h.lock();
                        println!(
                            "sink: {now} items total, {rate:.0} items/s; log latency p50 {} ms, p99 {} ms, max {} ms over {} records",
                            h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max(), h.len()
                        );
                        h.reset();
                    }
                    None => println!("sink: {now} items total, {rate:.0} items/s"),
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.abort();
    if let Some(s) = push_server {
        s.abort();
    }
    Ok(())
}

fn push_routes(counter: Arc<CountingConsumer>) -> axum::Router {
    use axum::routing::post;
    let rw = counter.clone();
    let otlp = counter.clone();
    axum::Router::new()
        .route(
            "/api/v1/write",
            post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let counter = rw.clone();
                async move {
                    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
                    count_push(&counter, remote_write_samples(content_type, &body))
                }
            }),
        )
        .route(
            "/loki/api/v1/push",
            post(move |body: bytes::Bytes| {
                let counter = counter.clone();
                async move { count_push(&counter, loki_entries(&body)) }
            }),
        )
        .route(
            "/otlp/v1/logs",
            post(move |body: bytes::Bytes| {
                let counter = otlp.clone();
                async move { count_push(&counter, otlp_log_records(&body)) }
            }),
        )
        // Exporters send up to several MiB per request; axum's default cap is 2 MB.
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
}

/// Why a pushed body could not be counted.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum MalformedPush {
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("protobuf: {0}")]
    Varint(#[from] prost::DecodeError),
    #[error("field {0} is not length-delimited")]
    NotLengthDelimited(u32),
    #[error("truncated field")]
    Truncated,
    #[error("field number out of range")]
    FieldNumber,
    #[error("length out of range")]
    Length,
    #[error("unsupported wire type {0}")]
    WireType(u64),
}

fn count_push(
    counter: &CountingConsumer,
    counted: Result<u64, MalformedPush>,
) -> axum::http::StatusCode {
    match counted {
        Ok(n) => {
            counter.items.fetch_add(n, Ordering::Relaxed);
            axum::http::StatusCode::NO_CONTENT
        }
        Err(e) => {
            eprintln!("sink: refused a push: {e}");
            axum::http::StatusCode::BAD_REQUEST
        }
    }
}

fn unsnappy(body: &[u8]) -> Result<Vec<u8>, MalformedPush> {
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}

/// Samples (and histogram samples) in a remote-write body, by the version its content type names.
///
/// Counts by walking the protobuf instead of decoding it into messages: the sink shares the
/// box with the collector it measures, so it must cost little per item. The walk still checks
/// the framing of every field it passes, so a malformed body is refused.
pub fn remote_write_samples(content_type: Option<&str>, body: &[u8]) -> Result<u64, MalformedPush> {
    let raw = unsnappy(body)?;
    let v2 = content_type.is_some_and(|v| v.contains("io.prometheus.write.v2.Request"));
    // v1 `WriteRequest.timeseries` = 1 with `samples` = 2, `histograms` = 4;
    // v2 `Request.timeseries` = 5 with `samples` = 2, `histograms` = 3.
    if v2 {
        count_nested(&raw, 5, &[2, 3])
    } else {
        count_nested(&raw, 1, &[2, 4])
    }
}

/// Entries in a Loki push body (`PushRequest.streams` = 1, `StreamAdapter.entries` = 2).
pub fn loki_entries(body: &[u8]) -> Result<u64, MalformedPush> {
    count_nested(&unsnappy(body)?, 1, &[2])
}

/// Log records in an OTLP `ExportLogsServiceRequest` (`resource_logs` = 1, `scope_logs` = 2,
/// `log_records` = 2), as Loki's `/otlp/v1/logs` takes it.
pub fn otlp_log_records(body: &[u8]) -> Result<u64, MalformedPush> {
    let mut total = 0;
    for field in Fields(body) {
        if let (1, value) = field? {
            let resource_logs = value.ok_or(MalformedPush::NotLengthDelimited(1))?;
            total += count_nested(resource_logs, 2, &[2])?;
        }
    }
    Ok(total)
}

/// Occurrences of the `inner` fields inside every `outer` field of a message.
fn count_nested(message: &[u8], outer: u32, inner: &[u32]) -> Result<u64, MalformedPush> {
    let mut total = 0;
    for field in Fields(message) {
        let (number, value) = field?;
        if number == outer {
            let Some(nested) = value else {
                return Err(MalformedPush::NotLengthDelimited(outer));
            };
            for field in Fields(nested) {
                let (number, _) = field?;
                total += u64::from(inner.contains(&number));
            }
        }
    }
    Ok(total)
}

/// The fields of one protobuf message: number and, for length-delimited ones, the bytes.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Option<&'a [u8]>), MalformedPush>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.read_field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, MalformedPush> {
        Ok(prost::encoding::decode_varint(&mut self.0)?)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MalformedPush> {
        if n > self.0.len() {
            return Err(MalformedPush::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn read_field(&mut self) -> Result<(u32, Option<&'a [u8]>), MalformedPush> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| MalformedPush::FieldNumber)?;
        match key & 7 {
            0 => self.varint().map(|_| (number, None)),
            1 => self.take(8).map(|_| (number, None)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| MalformedPush::Length)?;
                self.take(len).map(|bytes| (number, Some(bytes)))
            }
            5 => self.take(4).map(|_| (number, None)),
            wire => Err(MalformedPush::WireType(wire)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use sluice_exporter_loki::push::{EntryAdapter, PushRequest, StreamAdapter};
    use sluice_exporter_prometheus::remote_write::{v1, v2};

    fn snappy(message: &impl Message) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&message.encode_to_vec())
            .expect("compressible")
    }

    fn v1_series(samples: usize) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: vec![v1::Label {
                name: "__name__".into(),
                value: "up".into(),
            }],
            samples: (0..samples)
                .map(|i| v1::Sample {
                    value: 1.0,
                    timestamp: i as i64,
                })
                .collect(),
            exemplars: vec![],
            histograms: vec![v1::Histogram::default()],
        }
    }

    #[test]
    fn counts_remote_write_samples_of_both_versions_and_refuses_broken_bodies() {
        let request = v1::WriteRequest {
            timeseries: vec![v1_series(3), v1_series(5)],
            metadata: vec![],
        };
        // 8 float samples and one histogram sample per series.
        assert_eq!(remote_write_samples(None, &snappy(&request)), Ok(10));

        let request = v2::Request {
            symbols: vec!["".into(), "__name__".into(), "up".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample::default(); 7],
                ..Default::default()
            }],
        };
        let v2 = Some("application/x-protobuf;proto=io.prometheus.write.v2.Request");
        assert_eq!(remote_write_samples(v2, &snappy(&request)), Ok(7));

        let mut truncated = request.encode_to_vec();
        truncated.truncate(truncated.len() - 3);
        let body = snap::raw::Encoder::new()
            .compress_vec(&truncated)
            .expect("compressible");
        assert!(remote_write_samples(v2, &body).is_err());
        assert!(remote_write_samples(v2, b"not snappy").is_err());
    }

    #[test]
    fn counts_loki_entries() {
        let stream = |n: usize| StreamAdapter {
            labels: "{job=\"a\"}".into(),
            entries: (0..n)
                .map(|i| EntryAdapter {
                    timestamp: None,
                    line: format!("line {i}"),
                    structured_metadata: vec![],
                })
                .collect(),
        };
        let request = PushRequest {
            streams: vec![stream(4), stream(0), stream(9)],
        };
        assert_eq!(loki_entries(&snappy(&request)), Ok(13));
    }

    #[test]
    fn counts_otlp_log_records() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let scope = |n: usize| ScopeLogs {
            log_records: vec![LogRecord::default(); n],
            ..Default::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    scope_logs: vec![scope(3), scope(0)],
                    ..Default::default()
                },
                ResourceLogs {
                    scope_logs: vec![scope(5)],
                    ..Default::default()
                },
            ],
        };
        let body = request.encode_to_vec();
        assert_eq!(otlp_log_records(&body), Ok(8));
        assert!(otlp_log_records(&body[..body.len() - 1]).is_err());
    }
}
