//! Golden tests: OTLP in, the exact Prometheus series out, one rule of the OpenTelemetry
//! specification's Prometheus and OpenMetrics Compatibility each.
//!
//! Series are rendered one sample per line as `{labels in stored order} value @ms`, exemplars
//! as `{labels} # {exemplar labels} value @ms`; the stored label order is part of what is
//! checked (byte-sorted), the line order is not.

mod support;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use sluice_core::{Item, Signal};
use sluice_exporter_prometheus::remote_write::{MetricType, STALE_NAN_BITS, v1};
use sluice_exporter_prometheus::translate::{TranslateOptions, Translation, Translator};
use support::otlp::*;

/// 2023-11-14T22:13:20.123456789Z.
const T: u64 = 1_700_000_000_123_456_789;
const T_MS: i64 = 1_700_000_000_123;
const S: u64 = 1_000_000_000;

fn fmt_value(v: f64) -> String {
    if v.to_bits() == STALE_NAN_BITS {
        "StaleNaN".into()
    } else {
        format!("{v}")
    }
}

fn fmt_labels(labels: &[v1::Label]) -> String {
    labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

fn fmt_histogram(h: &v1::Histogram) -> String {
    let spans = |s: &[v1::BucketSpan]| {
        s.iter()
            .map(|s| format!("{}:{}", s.offset, s.length))
            .collect::<Vec<_>>()
            .join(",")
    };
    let count = match h.count {
        Some(v1::histogram::Count::CountInt(c)) => c.to_string(),
        Some(v1::histogram::Count::CountFloat(c)) => format!("{c}f"),
        None => "none".into(),
    };
    let zero = match h.zero_count {
        Some(v1::histogram::ZeroCount::ZeroCountInt(c)) => c.to_string(),
        Some(v1::histogram::ZeroCount::ZeroCountFloat(c)) => format!("{c}f"),
        None => "none".into(),
    };
    format!(
        "hist(schema={} count={count} sum={} zt={:e} zc={zero} pos=[{}]{:?} neg=[{}]{:?} reset={})",
        h.schema,
        fmt_value(h.sum),
        h.zero_threshold,
        spans(&h.positive_spans),
        h.positive_deltas,
        spans(&h.negative_spans),
        h.negative_deltas,
        h.reset_hint
    )
}

fn render(t: &Translation) -> Vec<String> {
    let mut lines = Vec::new();
    for s in &t.series {
        let labels = fmt_labels(&s.labels);
        for x in &s.samples {
            lines.push(format!(
                "{{{labels}}} {} @{}",
                fmt_value(x.value),
                x.timestamp
            ));
        }
        for h in &s.histograms {
            lines.push(format!(
                "{{{labels}}} {} @{}",
                fmt_histogram(&h.histogram),
                h.histogram.timestamp
            ));
        }
        for e in &s.exemplars {
            lines.push(format!(
                "{{{labels}}} # {{{}}} {} @{}",
                fmt_labels(&e.labels),
                fmt_value(e.value),
                e.timestamp
            ));
        }
    }
    lines.sort();
    lines
}

#[track_caller]
fn assert_golden(t: &Translation, expected: &str) {
    let actual = render(t);
    let mut want: Vec<String> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.replace("@T", &format!("@{T_MS}")))
        .collect();
    want.sort();
    assert_eq!(
        actual,
        want,
        "\n--- actual ---\n{}\n--- expected ---\n{}\n",
        actual.join("\n"),
        want.join("\n")
    );
}

fn translate_with(
    options: TranslateOptions,
    requests: &[&opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest],
) -> Translation {
    let items: Vec<Item> = requests.iter().map(|r| item(r)).collect();
    Translator::new(options).translate(&items, None)
}

fn translate(
    requests: &[&opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest],
) -> Translation {
    translate_with(TranslateOptions::default(), requests)
}

fn dropped(t: &Translation) -> Vec<(&'static str, u64)> {
    t.dropped.iter().map(|(k, v)| (*k, *v)).collect()
}

fn api() -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    vec![kv("service.name", "api")]
}

#[test]
fn metric_names_units_and_types() {
    let req = request(
        api(),
        None,
        vec![
            gauge("process.cpu.utilization", "1", vec![number(T, 0.5, vec![])]),
            sum(
                "system.network.io",
                "By",
                CUMULATIVE,
                true,
                vec![int_number(T, 42, vec![])],
            ),
            sum(
                "queue.size",
                "{item}",
                CUMULATIVE,
                false,
                vec![number(T, 7.0, vec![])],
            ),
            gauge("net.rx", "{packet}/s", vec![number(T, 3.0, vec![])]),
            gauge("größe.temp", "Cel", vec![number(T, 21.5, vec![])]),
            sum(
                "requests.total",
                "1",
                CUMULATIVE,
                true,
                vec![number(T, 9.0, vec![])],
            ),
            gauge("2xx", "", vec![number(T, 1.0, vec![])]),
            gauge("disk.io", "MiBy/s", vec![number(T, 2.0, vec![])]),
            gauge(
                "http.server.request.duration",
                "s",
                vec![number(T, 0.25, vec![])],
            ),
            gauge("日本語", "", vec![number(T, 1.0, vec![])]),
        ],
    );
    let t = translate(&[&req]);
    assert_golden(
        &t,
        r#"
        {__name__="process_cpu_utilization_ratio",job="api"} 0.5 @T
        {__name__="system_network_io_bytes_total",job="api"} 42 @T
        {__name__="queue_size",job="api"} 7 @T
        {__name__="net_rx_per_second",job="api"} 3 @T
        {__name__="gr_e_temp_celsius",job="api"} 21.5 @T
        {__name__="requests_total",job="api"} 9 @T
        {__name__="_2xx",job="api"} 1 @T
        {__name__="disk_io_mebibytes_per_second",job="api"} 2 @T
        {__name__="http_server_request_duration_seconds",job="api"} 0.25 @T
        "#,
    );
    assert_eq!(dropped(&t), vec![("invalid_metric_name", 1)]);
    let family = |name: &str| t.families.iter().find(|f| f.name == name).unwrap();
    assert_eq!(
        family("system_network_io_bytes_total").metric_type,
        MetricType::Counter
    );
    assert_eq!(family("system_network_io_bytes_total").unit, "bytes");
    assert_eq!(
        family("system_network_io_bytes_total").help,
        "system.network.io help"
    );
    assert_eq!(family("queue_size").metric_type, MetricType::Gauge);
    assert_eq!(family("queue_size").unit, "");
    assert_eq!(
        family("process_cpu_utilization_ratio").metric_type,
        MetricType::Gauge
    );
    assert_eq!(
        family("disk_io_mebibytes_per_second").unit,
        "mebibytes_per_second"
    );
}

#[test]
fn suffixes_can_be_turned_off() {
    let req = request(
        api(),
        None,
        vec![
            sum(
                "http.requests",
                "s",
                CUMULATIVE,
                true,
                vec![number(T, 1.0, vec![])],
            ),
            gauge("cpu.utilization", "1", vec![number(T, 0.5, vec![])]),
        ],
    );
    let options = TranslateOptions {
        add_metric_suffixes: false,
        ..Default::default()
    };
    assert_golden(
        &translate_with(options, &[&req]),
        r#"
        {__name__="http_requests",job="api"} 1 @T
        {__name__="cpu_utilization",job="api"} 0.5 @T
        "#,
    );
}

#[test]
fn labels_collisions_unicode_scope_job_instance_target_info_external() {
    let mut scope = scope("io.sluice", "1.0");
    scope.attributes = vec![kv("lib.kind", "auto")];
    let mut req = request(
        vec![
            kv("service.name", "checkout"),
            kv("service.namespace", "shop"),
            kv("service.instance.id", "pod-1"),
            kv("host.name", "node-7"),
            kv("k8s_pod.name", "q"),
            kv("k8s.pod.name", "p"),
        ],
        Some(scope),
        vec![gauge(
            "g",
            "",
            vec![number(
                T,
                1.0,
                vec![
                    kv("a_b", "2"),
                    kv("a.b", "1"),
                    kv("a/b", "3"),
                    kv("ключ", "dropped: nothing valid remains"),
                    kv("2cents", "y"),
                    kv("empty", ""),
                    kv("job", "from-attr"),
                    kv("Zone", "eu"),
                    kv("über", "ü"),
                    kv_any("http.status_code", Any::IntValue(200)),
                    kv_any("ratio", Any::DoubleValue(0.25)),
                    kv_any("flag", Any::BoolValue(true)),
                ],
            )],
        )],
    );
    req.resource_metrics[0].scope_metrics[0].schema_url =
        "https://opentelemetry.io/schemas/1.21.0".into();
    let options = TranslateOptions {
        external_labels: vec![
            ("Zone".into(), "ignored".into()),
            ("cluster".into(), "c1".into()),
        ],
        ..Default::default()
    };
    assert_golden(
        &translate_with(options, &[&req]),
        r#"
        {Zone="eu",__name__="g",_ber="ü",a_b="1;3;2",cluster="c1",flag="true",http_status_code="200",instance="pod-1",job="shop/checkout",key_2cents="y",otel_scope_lib_kind="auto",otel_scope_name="io.sluice",otel_scope_schema_url="https://opentelemetry.io/schemas/1.21.0",otel_scope_version="1.0",ratio="0.25"} 1 @T
        {Zone="ignored",__name__="target_info",cluster="c1",host_name="node-7",instance="pod-1",job="shop/checkout",k8s_pod_name="p;q"} 1 @T
        "#,
    );
}

#[test]
fn scope_labels_can_be_turned_off_and_resource_attributes_promoted() {
    let req = request(
        vec![
            kv("service.name", "api"),
            kv("k8s.namespace.name", "prod"),
            kv("host.name", "node-7"),
        ],
        Some(scope("io.sluice", "1.0")),
        vec![gauge(
            "g",
            "",
            vec![number(T, 1.0, vec![kv("host.name", "from-point")])],
        )],
    );
    let options = TranslateOptions {
        include_scope_labels: false,
        promote_resource_attributes: vec!["k8s.namespace.name".into(), "host.name".into()],
        ..Default::default()
    };
    // Promotion never overrides the point's own attribute; target_info keeps all of them.
    assert_golden(
        &translate_with(options, &[&req]),
        r#"
        {__name__="g",host_name="from-point",job="api",k8s_namespace_name="prod"} 1 @T
        {__name__="target_info",host_name="node-7",job="api",k8s_namespace_name="prod"} 1 @T
        "#,
    );
}

#[test]
fn target_info_needs_job_or_instance_and_other_attributes() {
    // Only identifying attributes: no target_info.
    let only_ids = request(
        vec![kv("service.name", "a"), kv("service.instance.id", "i")],
        None,
        vec![gauge("g", "", vec![number(T, 1.0, vec![])])],
    );
    // No service.name and no instance id: no job, no instance, no target_info.
    let anonymous = request(
        vec![kv("host.name", "h")],
        None,
        vec![gauge("h", "", vec![number(T, 1.0, vec![])])],
    );
    assert_golden(
        &translate(&[&only_ids, &anonymous]),
        r#"
        {__name__="g",instance="i",job="a"} 1 @T
        {__name__="h"} 1 @T
        "#,
    );
    let disabled = TranslateOptions {
        include_target_info: false,
        ..Default::default()
    };
    let with_host = request(
        vec![kv("service.name", "a"), kv("host.name", "h")],
        None,
        vec![gauge("g", "", vec![number(T, 1.0, vec![])])],
    );
    assert_golden(
        &translate_with(disabled, &[&with_host]),
        r#"{__name__="g",job="a"} 1 @T"#,
    );
}

#[test]
fn target_info_spans_the_resource_and_never_goes_back_in_time() {
    let at = |secs: u64| T + secs * S;
    let ms = |secs: i64| T_MS + secs * 1000;
    let resource = || vec![kv("service.name", "a"), kv("host.name", "h")];
    let translator = Translator::new(TranslateOptions::default());
    let first = request(
        resource(),
        None,
        vec![gauge(
            "g",
            "",
            vec![number(at(0), 1.0, vec![]), number(at(400), 2.0, vec![])],
        )],
    );
    let t = translator.translate(&[item(&first)], None);
    let info = t.series.iter().find(|s| s.name() == "target_info").unwrap();
    let stamps: Vec<i64> = info.samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(stamps, vec![ms(0), ms(150), ms(300), ms(400)]);

    // A later batch reporting earlier points must not send target_info behind what was sent.
    let late = request(
        resource(),
        None,
        vec![gauge("late", "", vec![number(at(100), 1.0, vec![])])],
    );
    let t = translator.translate(&[item(&late)], None);
    assert!(
        t.series.iter().all(|s| s.name() != "target_info"),
        "{:?}",
        render(&t)
    );
    let next = request(
        resource(),
        None,
        vec![gauge("g", "", vec![number(at(500), 3.0, vec![])])],
    );
    let t = translator.translate(&[item(&next)], None);
    let info = t.series.iter().find(|s| s.name() == "target_info").unwrap();
    assert_eq!(
        info.samples.iter().map(|s| s.timestamp).collect::<Vec<_>>(),
        vec![ms(500)]
    );
    // Another tenant is tracked on its own.
    let t = translator.translate(&[item(&late)], Some("other"));
    assert!(t.series.iter().any(|s| s.name() == "target_info"));
}

#[test]
fn explicit_histogram_buckets_le_and_exemplars() {
    let trace: Vec<u8> = (1..=16).collect();
    let span: Vec<u8> = (0xa1..=0xa8).collect();
    let mut point = histogram_point(
        T,
        &[-1.0, -0.0, 0.005, 1_000_000.0],
        &[1, 2, 3, 4, 5],
        Some(12.5),
        vec![kv("route", "/a")],
    );
    point.exemplars = vec![
        exemplar(T - S, 0.003, &trace, &span, vec![]),
        exemplar(T - S, 5e6, &trace, &[], vec![]),
        exemplar(T - S, -5.0, &[], &span, vec![]),
    ];
    let req = request(
        api(),
        None,
        vec![histogram("rpc.duration", "s", CUMULATIVE, vec![point])],
    );
    let t = translate(&[&req]);
    let tr = "0102030405060708090a0b0c0d0e0f10";
    let sp = "a1a2a3a4a5a6a7a8";
    let ex_ms = T_MS - 1000;
    assert_golden(
        &t,
        &format!(
            r#"
        {{__name__="rpc_duration_seconds_bucket",job="api",le="-1",route="/a"}} 1 @T
        {{__name__="rpc_duration_seconds_bucket",job="api",le="-0",route="/a"}} 3 @T
        {{__name__="rpc_duration_seconds_bucket",job="api",le="0.005",route="/a"}} 6 @T
        {{__name__="rpc_duration_seconds_bucket",job="api",le="1000000",route="/a"}} 10 @T
        {{__name__="rpc_duration_seconds_bucket",job="api",le="+Inf",route="/a"}} 15 @T
        {{__name__="rpc_duration_seconds_sum",job="api",route="/a"}} 12.5 @T
        {{__name__="rpc_duration_seconds_count",job="api",route="/a"}} 15 @T
        {{__name__="rpc_duration_seconds_bucket",job="api",le="0.005",route="/a"}} # {{span_id="{sp}",trace_id="{tr}"}} 0.003 @{ex_ms}
        {{__name__="rpc_duration_seconds_bucket",job="api",le="+Inf",route="/a"}} # {{trace_id="{tr}"}} 5000000 @{ex_ms}
        {{__name__="rpc_duration_seconds_bucket",job="api",le="-1",route="/a"}} # {{span_id="{sp}"}} -5 @{ex_ms}
        "#
        ),
    );
    let family = &t.families[t.series[0].family];
    assert_eq!(
        (family.name.as_str(), family.metric_type),
        ("rpc_duration_seconds", MetricType::Histogram)
    );
}

#[test]
fn histogram_without_sum_or_buckets() {
    let point = histogram_point(T, &[], &[], None, vec![]);
    let mut point = point;
    point.count = 4;
    let req = request(
        api(),
        None,
        vec![histogram("h", "", CUMULATIVE, vec![point])],
    );
    assert_golden(
        &translate(&[&req]),
        r#"
        {__name__="h_bucket",job="api",le="+Inf"} 4 @T
        {__name__="h_count",job="api"} 4 @T
        "#,
    );
}

#[test]
fn summaries_quantiles_sum_count() {
    let req = request(
        api(),
        None,
        vec![summary(
            "rpc.latency",
            "ms",
            vec![summary_point(
                T,
                10,
                55.5,
                &[(0.5, 4.0), (0.99, 9.5), (1.0, 10.0)],
                vec![],
            )],
        )],
    );
    let t = translate(&[&req]);
    assert_golden(
        &t,
        r#"
        {__name__="rpc_latency_milliseconds",job="api",quantile="0.5"} 4 @T
        {__name__="rpc_latency_milliseconds",job="api",quantile="0.99"} 9.5 @T
        {__name__="rpc_latency_milliseconds",job="api",quantile="1"} 10 @T
        {__name__="rpc_latency_milliseconds_sum",job="api"} 55.5 @T
        {__name__="rpc_latency_milliseconds_count",job="api"} 10 @T
        "#,
    );
    assert_eq!(t.families[0].metric_type, MetricType::Summary);
}

#[test]
fn no_recorded_value_marks_every_derived_series_stale() {
    let stale = |mut p: opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
        p.flags = 1;
        p
    };
    let mut hist = histogram_point(T, &[1.0], &[0, 0], None, vec![]);
    hist.flags = 1;
    let mut summ = summary_point(T, 0, 0.0, &[(0.5, 0.0)], vec![]);
    summ.flags = 1;
    let mut native = exp_point(T, 3, 0, (0, &[]), (0, &[]), 0.0, vec![]);
    native.flags = 1;
    let req = request(
        api(),
        None,
        vec![
            gauge("g", "", vec![stale(number(T, 5.0, vec![]))]),
            sum(
                "c",
                "",
                CUMULATIVE,
                true,
                vec![stale(number(T, 5.0, vec![]))],
            ),
            histogram("h", "", CUMULATIVE, vec![hist]),
            summary("s", "", vec![summ]),
            exp_histogram("n", "", CUMULATIVE, vec![native]),
        ],
    );
    let options = TranslateOptions {
        send_native_histograms: true,
        ..Default::default()
    };
    let t = translate_with(options, &[&req]);
    assert_golden(
        &t,
        r#"
        {__name__="g",job="api"} StaleNaN @T
        {__name__="c_total",job="api"} StaleNaN @T
        {__name__="h_bucket",job="api",le="1"} StaleNaN @T
        {__name__="h_bucket",job="api",le="+Inf"} StaleNaN @T
        {__name__="h_sum",job="api"} StaleNaN @T
        {__name__="h_count",job="api"} StaleNaN @T
        {__name__="s",job="api",quantile="0.5"} StaleNaN @T
        {__name__="s_sum",job="api"} StaleNaN @T
        {__name__="s_count",job="api"} StaleNaN @T
        {__name__="n",job="api"} hist(schema=3 count=0 sum=StaleNaN zt=1e-128 zc=0 pos=[][] neg=[][] reset=0) @T
        "#,
    );
    // Bit-exact, not just any NaN.
    let g = t.series.iter().find(|s| s.name() == "g").unwrap();
    assert_eq!(g.samples[0].value.to_bits(), 0x7ff0_0000_0000_0002);
}

#[test]
fn exponential_histograms_become_native_histograms() {
    let mut with_threshold = exp_point(T, 0, 0, (0, &[1]), (0, &[]), 1.0, vec![kv("k", "zt")]);
    with_threshold.zero_threshold = 0.001;
    let req = request(
        api(),
        None,
        vec![exp_histogram(
            "latency",
            "ms",
            CUMULATIVE,
            vec![
                // OTel bucket i → Prometheus index offset+i+1; gap of 3 opens a new span.
                exp_point(
                    T,
                    2,
                    1,
                    (-1, &[1, 0, 0, 0, 2]),
                    (0, &[3]),
                    42.0,
                    vec![kv("k", "basic")],
                ),
                // Scale 10 → 8: groups of 4 merge.
                exp_point(
                    T,
                    10,
                    0,
                    (0, &[1, 1, 1, 1, 1, 1, 1, 1]),
                    (0, &[]),
                    8.0,
                    vec![kv("k", "down")],
                ),
                // Scale 20 (OTel's finest) → 8 merges 4096 buckets: 1000>>12 = 0.
                exp_point(
                    T,
                    20,
                    0,
                    (1000, &[5]),
                    (-3000, &[2]),
                    1.0,
                    vec![kv("k", "fine")],
                ),
                exp_point(T, -5, 0, (0, &[1]), (0, &[]), 1.0, vec![kv("k", "coarse")]),
                with_threshold,
            ],
        )],
    );
    let options = TranslateOptions {
        send_native_histograms: true,
        ..Default::default()
    };
    let t = translate_with(options, &[&req]);
    // Negative side of "fine": OTel -3000 >> 12 = -1 → index 0.
    assert_golden(
        &t,
        r#"
        {__name__="latency_milliseconds",job="api",k="basic"} hist(schema=2 count=7 sum=42 zt=1e-128 zc=1 pos=[0:1,3:1][1, 1] neg=[1:1][3] reset=0) @T
        {__name__="latency_milliseconds",job="api",k="down"} hist(schema=8 count=8 sum=8 zt=1e-128 zc=0 pos=[1:2][4, 0] neg=[][] reset=0) @T
        {__name__="latency_milliseconds",job="api",k="fine"} hist(schema=8 count=7 sum=1 zt=1e-128 zc=0 pos=[1:1][5] neg=[0:1][2] reset=0) @T
        {__name__="latency_milliseconds",job="api",k="zt"} hist(schema=0 count=1 sum=1 zt=1e-3 zc=0 pos=[1:1][1] neg=[][] reset=0) @T
        "#,
    );
    assert_eq!(dropped(&t), vec![("native_histogram_scale_too_low", 1)]);
    assert_eq!(t.families[0].metric_type, MetricType::Histogram);

    // Off by default (as Alloy's send_native_histograms): dropped and counted.
    let t = translate(&[&req]);
    assert!(t.series.iter().all(|s| s.histograms.is_empty()));
    assert_eq!(dropped(&t), vec![("native_histograms_disabled", 5)]);
}

#[test]
fn delta_sums_are_dropped_by_default() {
    let req = request(
        api(),
        None,
        vec![
            sum(
                "d",
                "",
                DELTA,
                true,
                vec![number(T, 1.0, vec![]), number(T + S, 1.0, vec![])],
            ),
            sum("u", "", DELTA, false, vec![number(T, 1.0, vec![])]),
            histogram(
                "h",
                "",
                DELTA,
                vec![histogram_point(T, &[1.0], &[1, 1], Some(1.0), vec![])],
            ),
            sum("x", "", 0, true, vec![number(T, 1.0, vec![])]),
        ],
    );
    let t = translate(&[&req]);
    assert!(t.series.is_empty(), "{:?}", render(&t));
    assert_eq!(
        dropped(&t),
        vec![("delta_temporality", 4), ("unspecified_temporality", 1)]
    );
}

#[test]
fn monotonic_deltas_accumulate_when_enabled() {
    let options = TranslateOptions {
        convert_delta_to_cumulative: true,
        max_delta_series: 1,
        ..Default::default()
    };
    let translator = Translator::new(options);
    let delta = |time: u64, start: u64, value: f64| {
        let mut p = number(time, value, vec![]);
        p.start_time_unix_nano = start;
        p
    };
    let t1 = T;
    let t2 = T + 10 * S;
    let t3 = T + 20 * S;
    // Two items of one batch arrive in reverse time order: totals still grow in time order.
    let later = request(
        api(),
        None,
        vec![sum(
            "jobs.done",
            "{job}",
            DELTA,
            true,
            vec![delta(t2, t1, 3.0)],
        )],
    );
    let earlier = request(
        api(),
        None,
        vec![sum(
            "jobs.done",
            "{job}",
            DELTA,
            true,
            vec![delta(t1, T - 10 * S, 2.0)],
        )],
    );
    let t = translator.translate(&[item(&later), item(&earlier)], None);
    assert_golden(
        &t,
        &format!(
            r#"
            {{__name__="jobs_done_total",job="api"}} 2 @T
            {{__name__="jobs_done_total",job="api"}} 5 @{}
            "#,
            T_MS + 10_000
        ),
    );
    assert_eq!(t.families[0].metric_type, MetricType::Counter);
    assert_eq!(t.series[0].samples[1].start_timestamp, T_MS - 10_000);

    // Next batch: one new point, one that is not newer than the last applied, a second series
    // over the limit of 1, and a non-monotonic delta that is never converted.
    let next = request(
        api(),
        None,
        vec![
            sum(
                "jobs.done",
                "{job}",
                DELTA,
                true,
                vec![delta(t3, t2, 1.0), delta(t2, t1, 7.0)],
            ),
            sum("other", "", DELTA, true, vec![delta(t3, t2, 1.0)]),
            sum("updown", "", DELTA, false, vec![delta(t3, t2, 1.0)]),
        ],
    );
    let t = translator.translate(&[item(&next)], None);
    assert_golden(
        &t,
        &format!(
            r#"{{__name__="jobs_done_total",job="api"}} 6 @{}"#,
            T_MS + 20_000
        ),
    );
    assert_eq!(
        dropped(&t),
        vec![
            ("delta_out_of_order", 1),
            ("delta_series_limit", 1),
            ("delta_temporality", 1)
        ]
    );
    assert_eq!(translator.delta_series(), 1);

    // A tenant has totals of its own (and here hits the limit of 1).
    let t = translator.translate(&[item(&next)], Some("tenant-b"));
    assert!(
        dropped(&t).contains(&("delta_series_limit", 3)),
        "{:?}",
        dropped(&t)
    );
}

#[test]
fn samples_are_sorted_deduplicated_and_in_milliseconds() {
    let a = request(
        api(),
        None,
        vec![gauge(
            "g",
            "",
            vec![
                number(3 * S, 3.0, vec![]),
                number(1_500_999_999, 1.0, vec![]),
            ],
        )],
    );
    let b = request(
        api(),
        None,
        vec![gauge(
            "g",
            "",
            vec![
                number(2 * S, 2.0, vec![]),
                number(3 * S, 33.0, vec![]),
                number(0, 1.0, vec![]),
            ],
        )],
    );
    let mut no_value = number(T, 0.0, vec![]);
    no_value.value = None;
    let c = request(api(), None, vec![gauge("g", "", vec![no_value])]);
    let garbage = Item::new(
        Signal::Metrics,
        bytes::Bytes::from_static(b"\xff\xff\xff"),
        5,
    );
    let t = Translator::new(TranslateOptions::default())
        .translate(&[item(&a), item(&b), item(&c), garbage], None);
    // The later item wins a duplicate timestamp.
    assert_golden(
        &t,
        r#"
        {__name__="g",job="api"} 1 @1500
        {__name__="g",job="api"} 2 @2000
        {__name__="g",job="api"} 33 @3000
        "#,
    );
    let g = &t.series[0];
    let stamps: Vec<i64> = g.samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(stamps, vec![1500, 2000, 3000], "stored in time order");
    assert_eq!(
        dropped(&t),
        vec![
            ("decode_error", 5),
            ("missing_timestamp", 1),
            ("missing_value", 1)
        ]
    );
}

#[test]
fn exemplar_labels_ids_limits_and_collisions() {
    let trace: Vec<u8> = vec![0xab; 16];
    let span: Vec<u8> = vec![0xcd; 8];
    let mut point = number(T, 1.0, vec![]);
    let mut int_exemplar = exemplar(
        0,
        0.0,
        &trace,
        &span,
        vec![kv("user", "u1"), kv("trace_id", "attr loses")],
    );
    int_exemplar.value = Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsInt(7));
    point.exemplars = vec![
        int_exemplar,
        // IDs take 63 runes; these attributes would push the total past 128: all left out.
        exemplar(
            T,
            2.0,
            &trace,
            &span,
            vec![kv("a", &"x".repeat(70)), kv("b", "y")],
        ),
    ];
    let mut gauge_point = number(T, 1.0, vec![]);
    gauge_point.exemplars = vec![exemplar(T, 1.0, &trace, &span, vec![])];
    let req = request(
        api(),
        None,
        vec![
            sum("c", "", CUMULATIVE, true, vec![point]),
            gauge("g", "", vec![gauge_point]),
        ],
    );
    let t = translate(&[&req]);
    let tr = "ab".repeat(16);
    let sp = "cd".repeat(8);
    assert_golden(
        &t,
        &format!(
            r#"
            {{__name__="c_total",job="api"}} 1 @T
            {{__name__="c_total",job="api"}} # {{span_id="{sp}",trace_id="{tr}",user="u1"}} 7 @T
            {{__name__="c_total",job="api"}} # {{span_id="{sp}",trace_id="{tr}"}} 2 @T
            {{__name__="g",job="api"}} 1 @T
            "#
        ),
    );
    // Exemplars can be turned off.
    let off = TranslateOptions {
        send_exemplars: false,
        ..Default::default()
    };
    assert!(
        translate_with(off, &[&req])
            .series
            .iter()
            .all(|s| s.exemplars.is_empty())
    );
}

#[test]
fn external_labels_fill_gaps_only() {
    let req = request(
        vec![kv("service.name", "api")],
        None,
        vec![gauge(
            "g",
            "",
            vec![number(T, 1.0, vec![kv("cluster", "mine")])],
        )],
    );
    let options = TranslateOptions {
        external_labels: vec![
            ("cluster".into(), "ext".into()),
            ("region".into(), "eu".into()),
        ],
        ..Default::default()
    };
    assert_golden(
        &translate_with(options, &[&req]),
        r#"{__name__="g",cluster="mine",job="api",region="eu"} 1 @T"#,
    );
}
