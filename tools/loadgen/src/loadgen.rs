//! `sluice loadgen`: sends OTLP traces, metrics or logs over gRPC or HTTP at a given rate,
//! request size and concurrency, and reports accepted items/s, latency percentiles and errors.
//!
//! Requests are encoded once up front and sent as raw bytes, so the generator spends its CPU
//! on the network, not on protobuf encoding: on a shared 2-core box that matters.

use bytes::Bytes;
use hdrhistogram::Histogram;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
pub use sluice_otlp::grpc::RawCodec;
use sluice_otlp::grpc::{PreEncodedBody, pre_encoded_request};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args, Clone, Debug)]
pub struct LoadgenArgs {
    /// `http://127.0.0.1:4317` for gRPC, `http://127.0.0.1:4318` for HTTP.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    pub endpoint: String,
    #[arg(long, default_value = "grpc", value_parser = ["grpc", "http"])]
    pub protocol: String,
    /// What to send: spans, gauge data points (10 metrics × N/10 series each) or log records.
    #[arg(long, default_value = "traces", value_parser = ["traces", "metrics", "logs"])]
    pub signal: String,
    /// Target items (spans, data points, log records) per second over all connections; 0
    /// sends as fast as answers come back.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Items per request.
    #[arg(long, alias = "items-per-request", default_value_t = 500)]
    pub spans_per_request: usize,
    /// Requests in flight at once (one connection each).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = sluice_core::config::parse_duration)]
    pub duration: Duration,
    /// String attributes on each span or log record (~390 bytes/span with the default 8).
    #[arg(long, default_value_t = 8)]
    pub attributes: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What a run achieved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub protocol: String,
    pub seconds: f64,
    pub requests_ok: u64,
    pub spans_accepted: u64,
    pub spans_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
}

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn resource(seed: u64) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", "loadgen".into()),
            kv("service.instance.id", format!("lg-{seed}")),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "sluice-loadgen".into(),
        ..Default::default()
    })
}

/// Builds a realistic traces request: one resource, one scope, `spans` spans with attributes.
pub fn build_request(spans: usize, attributes: usize, seed: u64) -> ExportTraceServiceRequest {
    build_request_at(spans, attributes, seed, now_ns())
}

fn build_request_at(
    spans: usize,
    attributes: usize,
    seed: u64,
    now: u64,
) -> ExportTraceServiceRequest {
    let spans = (0..spans)
        .map(|i| {
            let n = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&n.to_be_bytes());
            trace_id[8..].copy_from_slice(&seed.to_be_bytes());
            // Never all zeros (seed 0, span 0): backends and intake validation refuse that.
            trace_id[0] |= 0x80;
            Span {
                trace_id: trace_id.to_vec(),
                span_id: n.wrapping_add(1).to_be_bytes().to_vec(),
                name: format!("awf.step {}", i % 17),
                kind: 2,
                start_time_unix_nano: now,
                end_time_unix_nano: now + 1_500_000,
                attributes: (0..attributes)
                    .map(|a| kv(&format!("attr.key{a}"), format!("value-{}-{a}", n % 1000)))
                    .collect(),
                status: Some(Status {
                    code: 1,
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(seed),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A metrics request of `points` gauge data points: 10 metrics, each with `points / 10`
/// series told apart by a `series` attribute (at least one metric, one point).
pub fn build_metrics_request(points: usize, seed: u64) -> ExportMetricsServiceRequest {
    build_metrics_request_at(points, seed, now_ns())
}

fn build_metrics_request_at(points: usize, seed: u64, now: u64) -> ExportMetricsServiceRequest {
    let per_metric = points.div_ceil(10).max(1);
    let metrics = (0..points.div_ceil(per_metric))
        .map(|m| Metric {
            name: format!("loadgen_gauge_{m}"),
            unit: "1".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..per_metric.min(points - m * per_metric))
                    .map(|p| NumberDataPoint {
                        attributes: vec![kv("series", format!("{seed}-{p}"))],
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsDouble((p * 7 + m) as f64)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(seed),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A logs request of `records` log records with a ~100-byte body and `attributes` attributes.
pub fn build_logs_request(
    records: usize,
    attributes: usize,
    seed: u64,
) -> ExportLogsServiceRequest {
    build_logs_request_at(records, attributes, seed, now_ns())
}

fn build_logs_request_at(
    records: usize,
    attributes: usize,
    seed: u64,
    now: u64,
) -> ExportLogsServiceRequest {
    let log_records = (0..records)
        .map(|i| LogRecord {
            time_unix_nano: now + i as u64,
            observed_time_unix_nano: now + i as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "step {} of workflow wf-{} finished in {} ms with status ok and nothing else to say",
                    i % 17,
                    seed,
                    i * 3 % 1000
                ))),
            }),
            attributes: (0..attributes)
                .map(|a| kv(&format!("attr.key{a}"), format!("value-{}-{a}", i % 1000)))
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(seed),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn signal_of(name: &str) -> sluice_core::Signal {
    match name {
        "metrics" => sluice_core::Signal::Metrics,
        "logs" => sluice_core::Signal::Logs,
        _ => sluice_core::Signal::Traces,
    }
}

/// Distinct request bodies cycled through (each its own resource and series).
const TEMPLATES: u64 = 64;

/// The timestamp templates are encoded with: its top 16 bits mark the spots to rewrite, the
/// low bits carry the offset a builder added (log records are `now + i`).
const STAMP_BASE: u64 = 0x5eed_0000_0000_0000;
const STAMP_MASK: u64 = 0xffff_0000_0000_0000;

/// One pre-encoded request whose fixed64 timestamps are rewritten for every send.
///
/// Re-sending identical bytes would make every copy of a metrics request the same samples
/// (same series, same millisecond), which remote-write backends keep once, so a benchmark
/// would count deduplication as loss. Rewriting 8-byte fields in a copy costs a memcpy, not
/// a protobuf encode.
pub struct Template {
    bytes: Bytes,
    /// Byte offsets of the timestamp fields, with what the builder added to the base.
    stamps: Vec<(usize, u64)>,
    /// Last base stamped (ns): every send moves at least one millisecond forward, so no two
    /// sends of this template share a millisecond.
    last: std::sync::atomic::AtomicU64,
}

impl Template {
    /// Finds the fixed64 fields (tag byte with wire type 1) that hold a value built from
    /// [`STAMP_BASE`].
    pub fn new(encoded: Vec<u8>) -> Template {
        let mut stamps = Vec::new();
        let mut at = 1;
        while at + 8 <= encoded.len() {
            let window: [u8; 8] = encoded[at..at + 8].try_into().unwrap_or_default();
            let value = u64::from_le_bytes(window);
            if value & STAMP_MASK == STAMP_BASE && encoded[at - 1] & 0x07 == 1 {
                stamps.push((at, value - STAMP_BASE));
                at += 8;
            } else {
                at += 1;
            }
        }
        Template {
            bytes: Bytes::from(encoded),
            stamps,
            last: Default::default(),
        }
    }

    /// A copy stamped with the current time (or 1 ms after the previous send, if later); the
    /// shared bytes when there is nothing to stamp.
    pub fn stamped(&self) -> Bytes {
        use std::sync::atomic::Ordering;
        if self.stamps.is_empty() {
            return self.bytes.clone();
        }
        let now = now_ns();
        let base = match self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1_000_000))
            }) {
            Ok(last) | Err(last) => now.max(last + 1_000_000),
        };
        let mut body = bytes::BytesMut::from(self.bytes.as_ref());
        for &(at, offset) in &self.stamps {
            body[at..at + 8].copy_from_slice(&(base + offset).to_le_bytes());
        }
        body.freeze()
    }
}

/// One request template of the signal asked for.
pub fn template(args: &LoadgenArgs, seed: u64) -> Template {
    let n = args.spans_per_request;
    let at = STAMP_BASE;
    Template::new(match signal_of(&args.signal) {
        // Spans are not deduplicated by time anywhere, so traces keep one fixed timestamp
        // and go out as shared bytes, without the copy.
        sluice_core::Signal::Traces => {
            build_request_at(n, args.attributes, seed, now_ns()).encode_to_vec()
        }
        sluice_core::Signal::Metrics => build_metrics_request_at(n, seed, at).encode_to_vec(),
        sluice_core::Signal::Logs => {
            build_logs_request_at(n, args.attributes, seed, at).encode_to_vec()
        }
    })
}

enum Client {
    Grpc(
        tonic::client::Grpc<PreEncodedBody<tonic::transport::Channel>>,
        sluice_core::Signal,
    ),
    Http(reqwest::Client, String),
}

/// Why a request failed; its text is the key the report counts errors under.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("connect: {0}")]
    GrpcConnect(tonic::transport::Error),
    #[error("grpc {0:?}")]
    GrpcStatus(tonic::Code),
    #[error("connect")]
    HttpConnect,
    #[error("http transport")]
    HttpTransport,
    #[error("http {0}")]
    HttpStatus(u16),
}

impl Client {
    async fn send(&mut self, body: Bytes) -> Result<(), SendError> {
        match self {
            Client::Grpc(g, signal) => {
                g.ready().await.map_err(SendError::GrpcConnect)?;
                let path = sluice_otlp::grpc::export_path(*signal);
                // Sent without tonic's copy into its encode buffer: the load generator
                // shares the box with what it measures.
                let request = pre_encoded_request(Default::default(), vec![body]);
                g.unary(request, path, RawCodec)
                    .await
                    .map(|_| ())
                    .map_err(|s| SendError::GrpcStatus(s.code()))
            }
            Client::Http(c, url) => {
                let resp = c
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        if e.is_connect() {
                            SendError::HttpConnect
                        } else {
                            SendError::HttpTransport
                        }
                    })?;
                let status = resp.status();
                let _ = resp.bytes().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(SendError::HttpStatus(status.as_u16()))
                }
            }
        }
    }
}

async fn connect(args: &LoadgenArgs) -> anyhow::Result<Client> {
    Ok(if args.protocol == "grpc" {
        let channel =
            tonic::transport::Endpoint::from_shared(args.endpoint.clone())?.connect_lazy();
        Client::Grpc(
            tonic::client::Grpc::new(PreEncodedBody(channel)).max_decoding_message_size(64 << 20),
            signal_of(&args.signal),
        )
    } else {
        let url = format!(
            "{}/v1/{}",
            args.endpoint.trim_end_matches('/'),
            signal_of(&args.signal).as_str()
        );
        Client::Http(
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?,
            url,
        )
    })
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<Report> {
    let templates: Arc<Vec<Template>> =
        Arc::new((0..TEMPLATES).map(|s| template(&args, s)).collect());
    let per_worker_interval = if args.rate == 0 {
        None
    } else {
        let requests_per_sec = args.rate as f64 / args.spans_per_request as f64;
        Some(Duration::from_secs_f64(
            args.concurrency as f64 / requests_per_sec,
        ))
    };
    let started = Instant::now();
    let end = started + args.duration;
    // A person watching a terminal gets a live line; scripts (`--json`, pipes) get only the
    // report, and no shared histogram slows the workers down.
    let live = (!args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| Arc::new(Live::new()));
    let ticker = live
        .clone()
        .map(|l| tokio::spawn(l.run(started, args.duration)));
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let mut client = connect(&args).await?;
        let templates = templates.clone();
        let spans = args.spans_per_request as u64;
        let live = live.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("static histogram bounds");
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut ok = 0u64;
            // Stagger workers so paced sends do not arrive in bursts.
            let mut next = Instant::now()
                + per_worker_interval
                    .map(|i| i.mul_f64(w as f64 / 8.0))
                    .unwrap_or_default();
            let mut i = w;
            while Instant::now() < end {
                if let Some(interval) = per_worker_interval {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                    next += interval;
                }
                let body = templates[i % templates.len()].stamped();
                i += 1;
                let t = Instant::now();
                match client.send(body).await {
                    Ok(()) => {
                        ok += 1;
                        let us = t.elapsed().as_micros().max(1) as u64;
                        let _ = hist.record(us);
                        if let Some(l) = &live {
                            l.ok(spans, us);
                        }
                    }
                    Err(e) => {
                        if let Some(l) = &live {
                            l.error();
                        }
                        *errors.entry(e.to_string()).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (ok * spans, ok, hist, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = BTreeMap::new();
    let (mut spans, mut requests) = (0u64, 0u64);
    for w in workers {
        let (s, r, h, e) = w.await?;
        spans += s;
        requests += r;
        hist.add(&h)?;
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    if let Some(t) = ticker {
        t.abort();
        // Clears the live line so the report starts on a clean line.
        eprint!("\r\x1b[K");
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        protocol: args.protocol.clone(),
        seconds,
        requests_ok: requests,
        spans_accepted: spans,
        spans_per_second: spans as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1000.0,
        errors,
    })
}

/// The live line's counters, shared by the workers.
struct Live {
    spans: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
    /// Latencies (µs) since the last tick.
    window: parking_lot::Mutex<Histogram<u64>>,
}

impl Live {
    fn new() -> Live {
        Live {
            spans: Default::default(),
            errors: Default::default(),
            window: parking_lot::Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 2).expect("static histogram bounds"),
            ),
        }
    }

    fn ok(&self, spans: u64, us: u64) {
        self.spans
            .fetch_add(spans, std::sync::atomic::Ordering::Relaxed);
        let _ = self.window.lock().record(us);
    }

    fn error(&self) {
        self.errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Rewrites one stderr line every second until aborted.
    async fn run(self: Arc<Self>, started: Instant, total: Duration) {
        use std::io::Write;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last = (Instant::now(), 0u64);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let spans = self.spans.load(std::sync::atomic::Ordering::Relaxed);
            let p99_ms = {
                let mut w = self.window.lock();
                let p = w.value_at_quantile(0.99) as f64 / 1000.0;
                w.reset();
                p
            };
            let rate = (spans - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, spans);
            let line = live_line(
                started.elapsed(),
                total,
                rate,
                p99_ms,
                spans,
                self.errors.load(std::sync::atomic::Ordering::Relaxed),
            );
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
        }
    }
}

/// `loadgen 3s/10s: 98.2k spans/s, p99 2.31 ms, 294000 spans, 0 errors`
fn live_line(
    elapsed: Duration,
    total: Duration,
    rate: f64,
    p99_ms: f64,
    spans: u64,
    errors: u64,
) -> String {
    let rate = if rate >= 1000.0 {
        format!("{:.1}k", rate / 1000.0)
    } else {
        format!("{rate:.0}")
    };
    format!(
        "loadgen {}s/{}s: {rate} spans/s, p99 {p99_ms:.2} ms, {spans} spans, {errors} errors",
        elapsed.as_secs(),
        total.as_secs()
    )
}

pub fn print(report: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
    } else {
        println!(
            "{}: {:.0} spans/s accepted ({} spans, {} requests in {:.1}s); latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; errors {:?}",
            report.protocol,
            report.spans_per_second,
            report.spans_accepted,
            report.requests_ok,
            report.seconds,
            report.p50_ms,
            report.p99_ms,
            report.p999_ms,
            report.max_ms,
            report.errors
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(signal: &str) -> LoadgenArgs {
        LoadgenArgs {
            endpoint: String::new(),
            protocol: "grpc".into(),
            signal: signal.into(),
            rate: 0,
            spans_per_request: 20,
            concurrency: 1,
            duration: Duration::from_secs(1),
            attributes: 2,
            json: false,
        }
    }

    #[test]
    fn metrics_template_stamps_every_point_a_millisecond_apart() {
        let template = template(&args("metrics"), 3);
        let times = |body: Bytes| -> Vec<u64> {
            let request = ExportMetricsServiceRequest::decode(body).expect("valid request");
            let mut times = Vec::new();
            for metric in &request.resource_metrics[0].scope_metrics[0].metrics {
                let Some(metric::Data::Gauge(gauge)) = &metric.data else {
                    panic!("gauge expected")
                };
                times.extend(gauge.data_points.iter().map(|p| p.time_unix_nano));
            }
            times
        };
        let (first, second) = (times(template.stamped()), times(template.stamped()));
        assert_eq!(first.len(), 20);
        assert!(first.iter().all(|t| *t == first[0]), "{first:?}");
        assert!(second.iter().all(|t| *t == second[0]), "{second:?}");
        assert!(second[0] >= first[0] + 1_000_000, "{first:?} {second:?}");
        let now = now_ns();
        assert!(first[0] <= now && first[0] > now - 60_000_000_000);
    }

    #[test]
    fn traces_and_logs_templates_keep_the_builders_offsets() {
        let traces = template(&args("traces"), 1);
        assert!(traces.stamps.is_empty(), "traces are sent as built");
        let spans = ExportTraceServiceRequest::decode(traces.stamped()).expect("valid request");
        for span in &spans.resource_spans[0].scope_spans[0].spans {
            assert_eq!(
                span.end_time_unix_nano - span.start_time_unix_nano,
                1_500_000
            );
            assert!(span.start_time_unix_nano & STAMP_MASK != STAMP_BASE);
        }
        let logs = ExportLogsServiceRequest::decode(template(&args("logs"), 1).stamped())
            .expect("valid request");
        let records = &logs.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 20);
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.time_unix_nano - records[0].time_unix_nano, i as u64);
            assert_eq!(record.observed_time_unix_nano, record.time_unix_nano);
        }
    }

    #[test]
    fn live_line_shows_progress_rate_p99_and_errors() {
        let line = live_line(
            Duration::from_millis(3400),
            Duration::from_secs(10),
            98_230.0,
            2.314,
            294_000,
            2,
        );
        assert_eq!(
            line,
            "loadgen 3s/10s: 98.2k spans/s, p99 2.31 ms, 294000 spans, 2 errors"
        );
        assert!(
            live_line(Duration::ZERO, Duration::from_secs(5), 512.4, 0.5, 10, 0)
                .contains(" 512 spans/s,")
        );
    }
}
