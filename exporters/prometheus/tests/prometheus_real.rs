//! Against the real Prometheus server (Debian's `prometheus` package): what the exporter sends
//! is stored under the exact names, labels and values PromQL users expect.
//!
//! Needs the `prometheus` binary (`apt-get install -y prometheus`); fails with instructions
//! when it is missing.

mod support;

use sluice_core::{Batch, Exporter, Item, SendOutcome, Signal};
use sluice_exporter_prometheus::remote_write::Protocol;
use sluice_exporter_prometheus::{Config, ProtocolVersion, RemoteWriteExporter, build};
use sluice_testkit::prometheus::{PrometheusServer, VectorSample};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use support::otlp::*;

const STEP_MS: u64 = 15_000;
const POINTS: u64 = 12;

/// Whole seconds, so query times line up with sample times.
fn now_ms() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    ms - ms % 1000
}

fn config(url: String) -> Config {
    let mut c = Config::new(url);
    c.send_native_histograms = true;
    c.external_labels.insert("cluster".into(), "it".into());
    c
}

/// Sends every request of the batch concurrently, as the pipeline does, resending a request
/// once after a protocol fallback. Returns the final outcome of each request.
async fn deliver(exporter: &Arc<RemoteWriteExporter>, batch: &Batch) -> Vec<SendOutcome> {
    let mut tasks = tokio::task::JoinSet::new();
    for request in exporter.build_requests(batch) {
        let exporter = exporter.clone();
        tasks.spawn(async move {
            let mut outcome = exporter.send(&request).await;
            if matches!(
                &outcome,
                SendOutcome::Retryable {
                    reason: "protocol_fallback",
                    ..
                }
            ) {
                outcome = exporter.send(&request).await;
            }
            outcome
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.expect("send task"));
    }
    outcomes
}

#[track_caller]
fn assert_all_sent(outcomes: &[SendOutcome], prom: &PrometheusServer) {
    assert!(!outcomes.is_empty());
    for o in outcomes {
        assert_eq!(
            o,
            &SendOutcome::Sent,
            "prometheus log:\n{}",
            prom.log_tail()
        );
    }
}

fn resource() -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    vec![
        kv("service.name", "checkout"),
        kv("service.namespace", "shop"),
        kv("service.instance.id", "pod-1"),
        kv("host.name", "node-7"),
        kv("deployment.environment", "prod"),
    ]
}

/// The five instrument kinds at step `i` (cumulative values grow with `i`).
fn otlp_at(i: u64, time_ms: u64) -> Item {
    let t = time_ms * 1_000_000;
    let mut counter = int_number(
        t,
        (10 * (i + 1)) as i64,
        vec![
            kv("http.method", "GET"),
            kv_any(
                "http.status_code",
                opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(200),
            ),
        ],
    );
    if i == POINTS - 1 {
        counter.exemplars = vec![exemplar(t, 1.0, &[0x4b; 16], &[0x7a; 8], vec![])];
    }
    let fine = {
        let mut p = exp_point(
            t,
            10,
            0,
            (4000, &[i, i]),
            (0, &[]),
            3.0 * i as f64,
            vec![kv("res", "fine")],
        );
        p.count = 2 * i;
        p
    };
    let req = request(
        resource(),
        Some(scope("sluice.it", "1.2.3")),
        vec![
            sum(
                "http.server.requests",
                "{request}",
                CUMULATIVE,
                true,
                vec![counter],
            ),
            sum(
                "queue.depth",
                "{item}",
                CUMULATIVE,
                false,
                vec![number(t, (i % 3 + 1) as f64, vec![])],
            ),
            gauge(
                "process.cpu.utilization",
                "1",
                vec![number(t, 0.25 + i as f64 / 100.0, vec![])],
            ),
            histogram(
                "http.server.duration",
                "s",
                CUMULATIVE,
                vec![histogram_point(
                    t,
                    &[0.005, 0.1, 1.0],
                    &[i, 5 * i, 3 * i, i],
                    Some(0.5 * i as f64),
                    vec![],
                )],
            ),
            exp_histogram(
                "rpc.latency",
                "ms",
                CUMULATIVE,
                vec![
                    exp_point(
                        t,
                        3,
                        i,
                        (8, &[i, 2 * i, i]),
                        (0, &[]),
                        8.0 * i as f64,
                        vec![kv("res", "coarse")],
                    ),
                    fine,
                ],
            ),
        ],
    );
    item(&req)
}

fn one(result: &[VectorSample], what: &str) -> VectorSample {
    assert_eq!(result.len(), 1, "{what}: {result:?}");
    result[0].clone()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(sample: &VectorSample) -> f64 {
    sample
        .value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a float sample: {sample:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_updown_gauge_histograms_and_target_info_land_exactly() {
    let prom = PrometheusServer::start().await;
    let exporter = Arc::new(build(&config(prom.write_url()), "exporters.mimir").expect("build"));
    let end = now_ms();
    let start = end - (POINTS - 1) * STEP_MS;
    // Three batches in time order; inside each, the newest item comes first.
    for chunk in (0..POINTS).collect::<Vec<_>>().chunks(4) {
        let items = chunk
            .iter()
            .rev()
            .map(|&i| otlp_at(i, start + i * STEP_MS))
            .collect();
        let batch = Batch {
            signal: Signal::Metrics,
            tenant: None,
            items,
        };
        assert_all_sent(&deliver(&exporter, &batch).await, &prom);
    }
    let at = end as f64 / 1000.0;
    let common = [
        ("cluster", "it"),
        ("instance", "pod-1"),
        ("job", "shop/checkout"),
        ("otel_scope_name", "sluice.it"),
        ("otel_scope_version", "1.2.3"),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut l = labels(&common);
        l.extend(labels(extra));
        l
    };

    let counter = one(
        &prom.query("http_server_requests_total", at).await,
        "counter",
    );
    assert_eq!(
        counter.labels,
        with(&[
            ("__name__", "http_server_requests_total"),
            ("http_method", "GET"),
            ("http_status_code", "200"),
        ])
    );
    assert_eq!(counter.value.as_deref(), Some("120"));
    let rate = one(
        &prom.query("rate(http_server_requests_total[1m])", at).await,
        "rate",
    );
    assert!((value(&rate) - 10.0 / 15.0).abs() < 1e-9, "{rate:?}");

    let updown = one(&prom.query("queue_depth", at).await, "up-down counter");
    assert_eq!(updown.labels, with(&[("__name__", "queue_depth")]));
    assert_eq!(updown.value.as_deref(), Some("3"));

    let gauge = one(
        &prom.query("process_cpu_utilization_ratio", at).await,
        "gauge",
    );
    assert_eq!(
        gauge.labels,
        with(&[("__name__", "process_cpu_utilization_ratio")])
    );
    // Go and Rust both print the shortest round-trip decimal.
    assert_eq!(gauge.value, Some(format!("{}", 0.25 + 11.0 / 100.0)));

    let info = one(&prom.query("target_info", at).await, "target_info");
    assert_eq!(
        info.labels,
        labels(&[
            ("__name__", "target_info"),
            ("cluster", "it"),
            ("deployment_environment", "prod"),
            ("host_name", "node-7"),
            ("instance", "pod-1"),
            ("job", "shop/checkout"),
        ])
    );
    assert_eq!(info.value.as_deref(), Some("1"));

    let buckets = prom.query("http_server_duration_seconds_bucket", at).await;
    let by_le: BTreeMap<String, String> = buckets
        .iter()
        .map(|s| (s.labels["le"].clone(), s.value.clone().unwrap_or_default()))
        .collect();
    let expected: BTreeMap<String, String> =
        [("0.005", "11"), ("0.1", "66"), ("1", "99"), ("+Inf", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(by_le, expected);
    assert_eq!(
        one(
            &prom.query("http_server_duration_seconds_count", at).await,
            "count"
        )
        .value
        .as_deref(),
        Some("110")
    );
    assert_eq!(
        one(
            &prom.query("http_server_duration_seconds_sum", at).await,
            "sum"
        )
        .value
        .as_deref(),
        Some("5.5")
    );
    let p99 = one(
        &prom
            .query("histogram_quantile(0.99, sum by (le)(rate(http_server_duration_seconds_bucket[1m])))", at)
            .await,
        "p99",
    );
    // Rank 9.9 of 10 falls in the +Inf bucket: the answer is the highest finite bound.
    assert_eq!(value(&p99), 1.0);
    let p50 = one(
        &prom
            .query("histogram_quantile(0.5, sum by (le)(rate(http_server_duration_seconds_bucket[1m])))", at)
            .await,
        "p50",
    );
    assert!((value(&p50) - 0.081).abs() < 1e-9, "{p50:?}");

    // Native histograms (exponential in OTLP): counts and sums exact, quantile a number.
    let count = prom
        .query("histogram_count(rpc_latency_milliseconds)", at)
        .await;
    let by_res: BTreeMap<String, String> = count
        .iter()
        .map(|s| (s.labels["res"].clone(), s.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        by_res,
        [("coarse", "55"), ("fine", "22")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        "{count:?}"
    );
    let sum = one(
        &prom
            .query(
                "histogram_sum(rpc_latency_milliseconds{res=\"coarse\"})",
                at,
            )
            .await,
        "native sum",
    );
    assert_eq!(sum.value.as_deref(), Some("88"));
    let native_q = one(
        &prom
            .query(
                "histogram_quantile(0.5, rate(rpc_latency_milliseconds{res=\"coarse\"}[1m]))",
                at,
            )
            .await,
        "native quantile",
    );
    // Positive OTel buckets 8..10 at scale 3 are (2^(8/8), 2^(11/8)]; the zero bucket holds
    // a quarter: the median lies within the populated range.
    let q = value(&native_q);
    assert!(
        q.is_finite() && q > 0.0 && q <= 2f64.powf(11.0 / 8.0),
        "{native_q:?}"
    );
    let fine_q = one(
        &prom
            .query(
                "histogram_quantile(0.5, rate(rpc_latency_milliseconds{res=\"fine\"}[1m]))",
                at,
            )
            .await,
        "downscaled quantile",
    );
    // Scale 10 buckets 4000..4001 downscale to schema 8 bucket 1000: (2^(1000/256), 2^(1001/256)].
    let q = value(&fine_q);
    let (lo, hi) = (2f64.powf(1000.0 / 256.0), 2f64.powf(1001.0 / 256.0));
    assert!(
        q > lo * 0.999 && q <= hi * 1.001,
        "{fine_q:?} not in ({lo}, {hi}]"
    );

    // The exemplar kept its trace and span ids.
    let exemplars = prom
        .exemplars("http_server_requests_total", at - 300.0, at + 1.0)
        .await;
    let text = exemplars.to_string();
    assert!(
        text.contains(&"4b".repeat(16)) && text.contains(&"7a".repeat(8)),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_falls_back_to_v1_against_a_1_x_receiver() {
    let prom = PrometheusServer::start().await;
    let mut c = config(prom.write_url());
    c.protocol = ProtocolVersion::V2;
    let exporter = Arc::new(build(&c, "exporters.mimir").expect("build"));
    assert_eq!(exporter.protocol(), Protocol::V2);
    let end = now_ms();
    let items = vec![otlp_at(0, end - STEP_MS), otlp_at(1, end)];
    let batch = Batch {
        signal: Signal::Metrics,
        tenant: None,
        items,
    };
    let requests = exporter.build_requests(&batch);
    assert!(requests.iter().all(|r| r.protocol == Protocol::V2));

    let first = exporter.send(&requests[0]).await;
    if !prom.version.starts_with("2.") {
        // Prometheus 3.x speaks 2.0 itself: the exporter must stay on it.
        assert_eq!(first, SendOutcome::Sent, "{}", prom.log_tail());
        assert_eq!(exporter.protocol(), Protocol::V2);
        return;
    }
    // Prometheus 2.x decodes a 2.0 body as an empty 1.0 request and answers 204 without the
    // written-count headers: that is the signal to fall back.
    assert!(
        matches!(
            &first,
            SendOutcome::Retryable {
                reason: "protocol_fallback",
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(exporter.protocol(), Protocol::V1, "switched for good");
    for r in &requests {
        assert_eq!(
            exporter.send(r).await,
            SendOutcome::Sent,
            "{}",
            prom.log_tail()
        );
    }
    let at = end as f64 / 1000.0;
    let counter = one(
        &prom.query("http_server_requests_total", at).await,
        "counter",
    );
    assert_eq!(counter.value.as_deref(), Some("20"));
    // New batches are built as v1 from now on.
    let next = Batch {
        signal: Signal::Metrics,
        tenant: None,
        items: vec![otlp_at(2, end + 1000)],
    };
    assert!(
        exporter
            .build_requests(&next)
            .iter()
            .all(|r| r.protocol == Protocol::V1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_shards_and_shuffled_input_cause_no_out_of_order_rejections() {
    const SERIES: u64 = 300;
    const STEPS: u64 = 20;
    let prom = PrometheusServer::start().await;
    let mut c = Config::new(prom.write_url());
    c.shards = 16;
    let exporter = Arc::new(build(&c, "exporters.mimir").expect("build"));
    let end = now_ms();
    let start = end - (STEPS - 1) * 10_000;
    let point_item = |step: u64, ids: Vec<u64>| {
        let t = (start + step * 10_000) * 1_000_000;
        let points = ids
            .into_iter()
            .map(|id| {
                number(
                    t,
                    (step * 1000 + id) as f64,
                    vec![kv("id", &id.to_string())],
                )
            })
            .collect();
        let mut res = resource();
        res.push(kv("batch.step", &step.to_string()));
        item(&request(
            res,
            None,
            vec![gauge("ordering.gauge", "", points)],
        ))
    };
    for batch_steps in (0..STEPS).collect::<Vec<_>>().chunks(4) {
        let mut items = Vec::new();
        // Newest step first, and each step's series split over two items in scrambled order.
        for &step in batch_steps.iter().rev() {
            let mut ids: Vec<u64> = (0..SERIES)
                .map(|i| (i * 7919 + step * 31) % SERIES)
                .collect();
            let second = ids.split_off(SERIES as usize / 2);
            items.push(point_item(step, second));
            items.push(point_item(step, ids));
        }
        let batch = Batch {
            signal: Signal::Metrics,
            tenant: None,
            items,
        };
        let outcomes = deliver(&exporter, &batch).await;
        assert!(
            outcomes.len() > 8,
            "spread over many shards: {}",
            outcomes.len()
        );
        assert_all_sent(&outcomes, &prom);
    }
    let at = end as f64 / 1000.0;
    let counts = prom.query("count_over_time(ordering_gauge[5m])", at).await;
    assert_eq!(counts.len() as u64, SERIES);
    let ids: BTreeSet<String> = counts.iter().map(|s| s.labels["id"].clone()).collect();
    assert_eq!(ids.len() as u64, SERIES);
    for s in &counts {
        assert_eq!(s.value.as_deref(), Some("20"), "{s:?}");
    }
    let last = prom.query("ordering_gauge{id=\"7\"}", at).await;
    assert_eq!(one(&last, "last").value.as_deref(), Some("19007"));
    assert_eq!(
        prom.self_metric("prometheus_tsdb_out_of_order_samples_total")
            .await,
        Some(0.0),
        "Prometheus counted out-of-order samples"
    );
    // target_info changed its labels with every step (batch.step); none went back in time.
    let infos = prom.query("count_over_time(target_info[5m])", at).await;
    assert_eq!(infos.len() as u64, STEPS);

    // Control: an older sample for a known series IS refused by Prometheus, and classified.
    let mut res = resource();
    res.push(kv("batch.step", "0"));
    let really_stale = Batch {
        signal: Signal::Metrics,
        tenant: None,
        items: vec![item(&request(
            res,
            None,
            vec![gauge(
                "ordering.gauge",
                "",
                vec![number(
                    (start + 5_000) * 1_000_000,
                    1.0,
                    vec![kv("id", "7")],
                )],
            )],
        ))],
    };
    let mut config_no_info = Config::new(prom.write_url());
    config_no_info.include_target_info = false;
    let plain = Arc::new(build(&config_no_info, "exporters.control").expect("build"));
    let outcomes = deliver(&plain, &really_stale).await;
    assert!(
        matches!(
            &outcomes[..],
            [SendOutcome::Rejected {
                reason: "out_of_order",
                ..
            }]
        ),
        "{outcomes:?}"
    );
}
