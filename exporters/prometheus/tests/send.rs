//! What `send` puts on the wire and what each answer means, against a strict fake receiver
//! that decodes like Prometheus/Mimir (snappy block, protobuf by content type) and answers
//! from a script; plus the drop counters of `build_requests`.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use sluice_core::retry::{Backoff, RetryConfig};
use sluice_core::{Batch, DurationStr, Exporter, Item, SendOutcome, Signal};
use sluice_exporter_prometheus::remote_write::{Protocol, decode_snappy, v1, v2};
use sluice_exporter_prometheus::{BasicAuth, Config, ProtocolVersion, build};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use support::otlp::*;

const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

#[derive(Debug, Clone)]
struct Received {
    content_type: String,
    version: String,
    user_agent: String,
    tenant: Option<String>,
    authorization: Option<String>,
    extra: Option<String>,
    v1: Option<v1::WriteRequest>,
    v2: Option<v2::Request>,
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct Fake {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn write(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    if header(&headers, "content-encoding").as_deref() != Some("snappy") {
        return (StatusCode::BAD_REQUEST, "missing Content-Encoding: snappy").into_response();
    }
    let content_type = header(&headers, "content-type").unwrap_or_default();
    let is_v2 = content_type == V2_CONTENT_TYPE;
    let (v1, v2) = if is_v2 {
        match decode_snappy::<v2::Request>(&body) {
            Ok(r) => (None, Some(r)),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    } else {
        match decode_snappy::<v1::WriteRequest>(&body) {
            Ok(r) => (Some(r), None),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    };
    let samples: usize = v1
        .iter()
        .flat_map(|r| &r.timeseries)
        .map(|t| t.samples.len())
        .chain(
            v2.iter()
                .flat_map(|r| &r.timeseries)
                .map(|t| t.samples.len()),
        )
        .sum();
    fake.received.lock().push(Received {
        content_type,
        version: header(&headers, "x-prometheus-remote-write-version").unwrap_or_default(),
        user_agent: header(&headers, "user-agent").unwrap_or_default(),
        tenant: header(&headers, "x-scope-orgid"),
        authorization: header(&headers, "authorization"),
        extra: header(&headers, "x-extra"),
        v1,
        v2,
    });
    let next = fake.script.lock().pop_front();
    let Some(r) = next else {
        // A well-behaved receiver: 2.0 ones report what they wrote.
        let mut response = StatusCode::NO_CONTENT.into_response();
        if is_v2 {
            response.headers_mut().insert(
                "X-Prometheus-Remote-Write-Samples-Written",
                samples.to_string().parse().expect("header value"),
            );
        }
        return response;
    };
    tokio::time::sleep(r.delay).await;
    let mut response = (StatusCode::from_u16(r.status).expect("status"), r.body).into_response();
    for (name, value) in r.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

async fn start_fake(script: Vec<Reply>) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    fake.script.lock().extend(script);
    let app = axum::Router::new()
        .route("/api/v1/push", axum::routing::post(write))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/api/v1/push"), fake)
}

const T: u64 = 1_700_000_000_000_000_000;

fn metrics_batch(tenant: Option<&str>) -> Batch {
    let req = request(
        vec![kv("service.name", "svc")],
        None,
        vec![gauge(
            "temperature",
            "Cel",
            vec![number(T, 21.5, vec![kv("room", "a")])],
        )],
    );
    Batch {
        signal: Signal::Metrics,
        tenant: tenant.map(Arc::from),
        items: vec![item(&req)],
    }
}

#[tokio::test]
async fn headers_tenant_auth_and_body() {
    let (url, fake) = start_fake(vec![]).await;
    let mut c = Config::new(url.clone());
    c.tenant_id = Some("from-config".into());
    c.basic_auth = Some(BasicAuth {
        username: "u".into(),
        password: "p".into(),
    });
    c.headers.insert("X-Extra".into(), "1".into());
    let exporter = build(&c, "exporters.test").expect("build");
    for tenant in [None, Some("from-batch")] {
        let requests = exporter.build_requests(&metrics_batch(tenant));
        assert_eq!(requests.len(), 1);
        assert_eq!(exporter.send(&requests[0]).await, SendOutcome::Sent);
    }
    let received = fake.received.lock().clone();
    assert_eq!(received.len(), 2);
    let r = &received[0];
    assert_eq!(r.content_type, "application/x-protobuf");
    assert_eq!(r.version, "0.1.0");
    assert!(r.user_agent.starts_with("Sluice/"), "{}", r.user_agent);
    assert_eq!(r.authorization.as_deref(), Some("Basic dTpw"));
    assert_eq!(r.extra.as_deref(), Some("1"));
    assert_eq!(r.tenant.as_deref(), Some("from-config"));
    assert_eq!(received[1].tenant.as_deref(), Some("from-batch"));
    let wr = r.v1.as_ref().expect("v1 body");
    let labels: Vec<(&str, &str)> = wr.timeseries[0]
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("__name__", "temperature_celsius"),
            ("job", "svc"),
            ("room", "a")
        ]
    );
    assert_eq!(
        wr.timeseries[0].samples,
        vec![v1::Sample {
            value: 21.5,
            timestamp: 1_700_000_000_000
        }]
    );
    assert_eq!(wr.metadata[0].metric_family_name, "temperature_celsius");
    assert_eq!(wr.metadata[0].unit, "celsius");

    let mut bearer = Config::new(url);
    bearer.bearer_token = Some("tok".into());
    let exporter = build(&bearer, "exporters.test").expect("build");
    let requests = exporter.build_requests(&metrics_batch(None));
    assert_eq!(exporter.send(&requests[0]).await, SendOutcome::Sent);
    let last = fake.received.lock().last().cloned().expect("received");
    assert_eq!(last.authorization.as_deref(), Some("Bearer tok"));
    assert_eq!(last.tenant, None, "no tenant anywhere: no X-Scope-OrgID");
}

#[tokio::test]
async fn answers_500_then_429_with_retry_after_then_400() {
    let mut too_many = reply(429, "ingestion rate limit (10000) exceeded");
    too_many.headers.push(("Retry-After", "7".into()));
    let (url, fake) = start_fake(vec![
        reply(500, "boom"),
        too_many,
        reply(400, "out of order sample"),
    ])
    .await;
    let exporter = build(&Config::new(url), "exporters.test").expect("build");
    let request = exporter.build_requests(&metrics_batch(None)).remove(0);

    // The pipeline's loop: retry with backoff (floored by Retry-After) until final.
    let retry = RetryConfig {
        initial_interval: DurationStr::from_millis(100),
        randomization_factor: 0.0,
        ..Default::default()
    };
    let mut backoff = Backoff::new(&retry);
    let mut outcomes = Vec::new();
    let mut waits = Vec::new();
    loop {
        let outcome = exporter.send(&request).await;
        let retry_after = match &outcome {
            SendOutcome::Retryable { retry_after, .. } => *retry_after,
            _ => {
                outcomes.push(outcome);
                break;
            }
        };
        waits.push(backoff.next_delay(retry_after));
        outcomes.push(outcome);
    }
    assert_eq!(
        outcomes,
        vec![
            SendOutcome::Retryable {
                reason: "server_error",
                retry_after: None,
                message: "HTTP 500: boom".into()
            },
            SendOutcome::Retryable {
                reason: "rate_limited",
                retry_after: Some(Duration::from_secs(7)),
                message: "HTTP 429: ingestion rate limit (10000) exceeded".into()
            },
            SendOutcome::Rejected {
                reason: "out_of_order",
                message: "HTTP 400: out of order sample".into()
            },
        ]
    );
    assert_eq!(
        waits,
        vec![Duration::from_millis(100), Duration::from_secs(7)]
    );
    assert_eq!(fake.received.lock().len(), 3, "the 400 was not retried");
}

#[tokio::test]
async fn other_answers_and_http_date_retry_after() {
    let mut unavailable = reply(503, "");
    let later = std::time::SystemTime::now() + Duration::from_secs(30);
    unavailable
        .headers
        .push(("Retry-After", httpdate::fmt_http_date(later)));
    let (url, _fake) = start_fake(vec![
        unavailable,
        reply(401, "no"),
        reply(413, "too big"),
        reply(400, &"x".repeat(100_000)),
        reply(200, ""),
    ])
    .await;
    let exporter = build(&Config::new(url), "exporters.test").expect("build");
    let request = exporter.build_requests(&metrics_batch(None)).remove(0);
    match exporter.send(&request).await {
        SendOutcome::Retryable {
            reason: "server_error",
            retry_after: Some(d),
            ..
        } => assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        exporter.send(&request).await,
        SendOutcome::Rejected {
            reason: "unauthorized",
            ..
        }
    ));
    assert!(matches!(
        exporter.send(&request).await,
        SendOutcome::Rejected {
            reason: "too_large",
            ..
        }
    ));
    match exporter.send(&request).await {
        SendOutcome::Rejected {
            reason: "bad_request",
            message,
        } => assert!(
            message.len() <= 1100,
            "error bodies are capped: {}",
            message.len()
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(exporter.send(&request).await, SendOutcome::Sent);
}

#[tokio::test]
async fn network_errors_and_timeouts_are_retryable() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/push", closed.local_addr().unwrap());
    drop(closed);
    let exporter = build(&Config::new(url), "exporters.test").expect("build");
    let request = exporter.build_requests(&metrics_batch(None)).remove(0);
    assert!(matches!(
        exporter.send(&request).await,
        SendOutcome::Retryable {
            reason: "connect",
            ..
        }
    ));

    let mut slow = reply(204, "");
    slow.delay = Duration::from_secs(3);
    let (url, _fake) = start_fake(vec![slow]).await;
    let mut c = Config::new(url);
    c.timeout = DurationStr::from_millis(300);
    let exporter = build(&c, "exporters.test").expect("build");
    let request = exporter.build_requests(&metrics_batch(None)).remove(0);
    let started = std::time::Instant::now();
    let outcome = exporter.send(&request).await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Retryable {
                reason: "timeout",
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn v2_speaks_2_0_and_falls_back_for_good_on_415() {
    // A 2.0 receiver: stays on 2.0.
    let (url, fake) = start_fake(vec![]).await;
    let mut c = Config::new(url);
    c.protocol = ProtocolVersion::V2;
    let exporter = build(&c, "exporters.test").expect("build");
    let request = exporter.build_requests(&metrics_batch(None)).remove(0);
    assert_eq!(exporter.send(&request).await, SendOutcome::Sent);
    assert_eq!(exporter.protocol(), Protocol::V2);
    let r = fake.received.lock()[0].clone();
    assert_eq!(r.content_type, V2_CONTENT_TYPE);
    assert_eq!(r.version, "2.0.0");
    let req = r.v2.expect("v2 body");
    assert_eq!(req.symbols[0], "");
    assert!(req.symbols.contains(&"temperature_celsius".to_string()));

    // A 1.x receiver that knows it: 415. One retryable outcome, then 1.0 for good.
    let (url, fake) = start_fake(vec![reply(415, "unsupported")]).await;
    let mut c = Config::new(url);
    c.protocol = ProtocolVersion::V2;
    let exporter = build(&c, "exporters.test").expect("build");
    let request = exporter.build_requests(&metrics_batch(None)).remove(0);
    assert!(matches!(
        exporter.send(&request).await,
        SendOutcome::Retryable {
            reason: "protocol_fallback",
            ..
        }
    ));
    assert_eq!(exporter.send(&request).await, SendOutcome::Sent);
    let received = fake.received.lock().clone();
    assert_eq!(received[1].content_type, "application/x-protobuf");
    assert_eq!(received[1].version, "0.1.0");
    let wr = received[1].v1.as_ref().expect("resent as v1");
    assert_eq!(wr.timeseries.len(), 1);
    assert_eq!(wr.metadata.len(), 1);
    assert_eq!(exporter.protocol(), Protocol::V1);
}

/// A `metrics` recorder that remembers counter totals by rendered key.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<BTreeMap<String, u64>>>);

struct CaptureCounter {
    key: String,
    totals: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl metrics::CounterFn for CaptureCounter {
    fn increment(&self, value: u64) {
        *self.totals.lock().entry(self.key.clone()).or_insert(0) += value;
    }
    fn absolute(&self, value: u64) {
        self.totals.lock().insert(self.key.clone(), value);
    }
}

impl metrics::Recorder for Capture {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        metrics::Counter::from_arc(Arc::new(CaptureCounter {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            totals: self.0.clone(),
        }))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn translation_drops_are_counted_with_reasons() {
    let exporter = build(
        &Config::new("http://127.0.0.1:9/api/v1/push"),
        "exporters.mimir",
    )
    .expect("build");
    let req = request(
        vec![kv("service.name", "svc")],
        None,
        vec![
            exp_histogram(
                "lat",
                "s",
                CUMULATIVE,
                vec![exp_point(T, 2, 0, (0, &[1]), (0, &[]), 1.0, vec![])],
            ),
            sum(
                "d",
                "",
                DELTA,
                true,
                vec![number(T, 1.0, vec![]), number(T + 1, 1.0, vec![])],
            ),
            gauge("ok", "", vec![number(T, 1.0, vec![])]),
        ],
    );
    let batch = Batch {
        signal: Signal::Metrics,
        tenant: None,
        items: vec![
            item(&req),
            Item::new(Signal::Metrics, bytes::Bytes::from_static(b"\x0a\xff"), 3),
        ],
    };
    let capture = Capture::default();
    let requests = metrics::with_local_recorder(&capture, || exporter.build_requests(&batch));
    assert_eq!(requests.len(), 1, "the gauge still goes out");
    let totals = capture.0.lock().clone();
    let key = |reason: &str| {
        format!(
            "sluice_exporter_dropped_items_total{{component_id=exporters.mimir,reason={reason},signal=metrics}}"
        )
    };
    let expected: BTreeMap<String, u64> = [
        (key("native_histograms_disabled"), 1),
        (key("delta_temporality"), 2),
        (key("decode_error"), 3),
    ]
    .into_iter()
    .collect();
    assert_eq!(totals, expected);
}
