//! Metrics of the pass-through scope (`sluice_core::prometheus::PASSTHROUGH_SCOPE`, what the
//! `prometheus_scrape` receiver produces) leave the translator exactly as they came: names
//! without suffixes or sanitising, attributes as labels, no scope labels, no target_info;
//! stale points as the stale NaN.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_core::prometheus::{PASSTHROUGH_SCOPE, TYPE_METADATA_KEY};
use sluice_core::{Item, Signal};
use sluice_exporter_prometheus::remote_write::{MetricType, STALE_NAN_BITS};
use sluice_exporter_prometheus::translate::{TranslateOptions, Translator};

const T_MS: u64 = 1_700_000_000_123;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn point(labels: &[(&str, &str)], value: f64, flags: u32) -> NumberDataPoint {
    NumberDataPoint {
        attributes: labels.iter().map(|(k, v)| kv(k, v)).collect(),
        time_unix_nano: T_MS * 1_000_000,
        flags,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn metric(name: &str, kind: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: "s".into(),
        metadata: vec![kv(TYPE_METADATA_KEY, kind)],
        data: Some(data),
        ..Default::default()
    }
}

#[test]
fn passthrough_scope_keeps_names_labels_values_and_timestamps() {
    let labels = [
        ("job", "node"),
        ("instance", "h:9100"),
        ("cpu", "0"),
        ("mode", "idle"),
    ];
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "node"),
                    kv("service.instance.id", "h:9100"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: PASSTHROUGH_SCOPE.into(),
                    ..Default::default()
                }),
                metrics: vec![
                    // A counter already named `_seconds_total` with unit `s`: the OTLP rules
                    // would not add anything here, but a counter without `_total` shows it.
                    metric(
                        "node_cpu_seconds_total",
                        "counter",
                        Data::Sum(Sum {
                            data_points: vec![point(&labels, 1234.5, 0)],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "legacy_counter",
                        "counter",
                        Data::Sum(Sum {
                            data_points: vec![point(&[("job", "node")], 7.0, 0)],
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "rpc:latency__seconds_bucket",
                        "histogram",
                        Data::Gauge(Gauge {
                            data_points: vec![
                                point(&[("job", "node"), ("le", "0.25")], 3.0, 0),
                                point(&[("job", "node"), ("le", "+Inf")], 0.0, 1),
                            ],
                        }),
                    ),
                    metric(
                        "bad-name",
                        "gauge",
                        Data::Gauge(Gauge {
                            data_points: vec![point(&[], 1.0, 0)],
                        }),
                    ),
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let item = Item::new(Signal::Metrics, request.encode_to_vec().into(), 5);
    let out = Translator::new(TranslateOptions {
        external_labels: vec![
            ("cluster".into(), "c1".into()),
            ("job".into(), "ignored".into()),
        ],
        ..TranslateOptions::default()
    })
    .translate(&[item], None);

    let mut rendered: Vec<String> = out
        .series
        .iter()
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            let sample = &s.samples[0];
            let value = if sample.value.to_bits() == STALE_NAN_BITS {
                "StaleNaN".to_string()
            } else {
                sample.value.to_string()
            };
            format!("{{{}}} {value} @{}", labels.join(","), sample.timestamp)
        })
        .collect();
    rendered.sort();
    assert_eq!(
        rendered,
        [
            "{__name__=legacy_counter,cluster=c1,job=node} 7 @1700000000123",
            "{__name__=node_cpu_seconds_total,cluster=c1,cpu=0,instance=h:9100,job=node,mode=idle} 1234.5 @1700000000123",
            "{__name__=rpc:latency__seconds_bucket,cluster=c1,job=node,le=+Inf} StaleNaN @1700000000123",
            "{__name__=rpc:latency__seconds_bucket,cluster=c1,job=node,le=0.25} 3 @1700000000123",
        ]
    );
    assert_eq!(out.dropped.get("invalid_metric_name"), Some(&1));
    let family = |name: &str| {
        out.families
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.metric_type)
    };
    assert_eq!(family("rpc:latency__seconds"), Some(MetricType::Histogram));
    assert_eq!(family("legacy_counter"), Some(MetricType::Counter));
    assert!(family("target_info").is_none());
}
