//! The series cache must change nothing but the cost: a translator whose cache is warm yields
//! exactly what a new one does, for inputs whose label sets differ only by their context
//! (resource, scope, metric name) or by what sanitising merges.

use super::{
    MAX_CACHED_CONTEXT_BYTES, MAX_CACHED_CONTEXTS, MAX_CACHED_SERIES_BYTES, SeriesCache,
    SeriesLabels, TranslateOptions, Translation, Translator,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_core::{Item, Signal};

const T: u64 = 1_700_000_000_000_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn point(attributes: Vec<KeyValue>, at: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: T - 60_000_000_000,
        time_unix_nano: at,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// Points whose attribute bytes repeat across resources, scopes, names and kinds.
fn points(at: u64) -> Vec<NumberDataPoint> {
    let mut stale = point(vec![kv("k", s("stale"))], at, 0.0);
    stale.flags = 1;
    let mut no_value = point(vec![kv("k", s("none"))], at, 0.0);
    no_value.value = None;
    let mut with_exemplar = point(vec![kv("k", s("ex"))], at, 4.0);
    with_exemplar.exemplars = vec![Exemplar {
        time_unix_nano: at,
        span_id: vec![1; 8],
        value: Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(4.0)),
        ..Default::default()
    }];
    vec![
        point(vec![kv("k", s("v"))], at, 1.0),
        point(vec![], at, 2.0),
        // Sanitising merges these two keys into one label.
        point(vec![kv("a.b", s("1")), kv("a_b", s("2"))], at, 3.0),
        point(vec![kv("a_b", s("2")), kv("a.b", s("1"))], at, 3.5),
        // Attributes that become `job`/`instance`/scope labels are overridden by them.
        point(
            vec![kv("job", s("mine")), kv("otel_scope_name", s("x"))],
            at,
            5.0,
        ),
        point(
            vec![
                kv("n", Value::IntValue(7)),
                kv("b", Value::BoolValue(true)),
                kv(
                    "arr",
                    Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(s("x")),
                        }],
                    }),
                ),
            ],
            at,
            6.0,
        ),
        point(vec![kv("empty", s(""))], at, 7.0),
        stale,
        no_value,
        with_exemplar,
        point(vec![kv("k", s("v"))], 0, 8.0),
    ]
}

fn metrics(at: u64) -> Vec<Metric> {
    // Every other minute the points come in reverse order: the metric-level entries miss, the
    // series entries still hit.
    let points = |at: u64| {
        let mut points = points(at);
        if (at - T) / 60_000_000_000 % 2 == 1 {
            points.reverse();
        }
        points
    };
    let sum = |name: &str, temporality: i32, monotonic: bool| Metric {
        name: name.into(),
        unit: "s".into(),
        data: Some(Data::Sum(Sum {
            data_points: points(at),
            aggregation_temporality: temporality,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    };
    vec![
        Metric {
            name: "g".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points(at),
            })),
            ..Default::default()
        },
        // Same points, other name: other series.
        Metric {
            name: "g2".into(),
            unit: "By".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points(at),
            })),
            ..Default::default()
        },
        sum("c", 2, true),
        sum("ud", 2, false),
        sum("d", 1, true),
    ]
}

fn resource(name: Option<&str>, extra: &str) -> Option<Resource> {
    let mut attributes = vec![
        kv("service.namespace", s("ns")),
        kv("service.instance.id", s("i-1")),
        kv("region", s(extra)),
    ];
    if let Some(name) = name {
        attributes.push(kv("service.name", s(name)));
    }
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn request(at: u64) -> ExportMetricsServiceRequest {
    let scope = |name: &str, version: &str, schema_url: &str| ScopeMetrics {
        scope: Some(InstrumentationScope {
            name: name.into(),
            version: version.into(),
            attributes: vec![kv("lib", s(name))],
            ..Default::default()
        }),
        metrics: metrics(at),
        schema_url: schema_url.into(),
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![
            ResourceMetrics {
                resource: resource(Some("a"), "eu"),
                scope_metrics: vec![
                    scope("s1", "1", ""),
                    scope("s1", "2", ""),
                    scope("s2", "", "u"),
                ],
                schema_url: String::new(),
            },
            // Same attributes everywhere but the service name, then the promoted region.
            ResourceMetrics {
                resource: resource(Some("b"), "eu"),
                scope_metrics: vec![scope("s1", "1", "")],
                schema_url: String::new(),
            },
            ResourceMetrics {
                resource: resource(Some("b"), "us"),
                scope_metrics: vec![scope("s1", "1", "")],
                schema_url: String::new(),
            },
            ResourceMetrics {
                resource: resource(None, "eu"),
                scope_metrics: vec![scope("s1", "1", "")],
                schema_url: String::new(),
            },
        ],
    }
}

fn item(request: &ExportMetricsServiceRequest) -> Item {
    Item::new(Signal::Metrics, request.encode_to_vec().into(), 1)
}

/// Everything a translation says, in a comparable form.
fn summary(t: &Translation) -> String {
    let mut series: Vec<String> = t.series.iter().map(|s| format!("{s:?}")).collect();
    series.sort();
    format!("{series:#?}\n{:?}\n{:?}", t.families, t.dropped)
}

#[test]
fn a_warm_cache_translates_exactly_as_a_cold_one() {
    let options = [
        TranslateOptions::default(),
        TranslateOptions {
            promote_resource_attributes: vec!["region".into()],
            external_labels: vec![("cluster".into(), "c1".into()), ("k".into(), "ext".into())],
            convert_delta_to_cumulative: true,
            ..Default::default()
        },
        TranslateOptions {
            include_scope_labels: false,
            add_metric_suffixes: false,
            send_exemplars: false,
            ..Default::default()
        },
    ];
    for options in options {
        let warm = Translator::new(options.clone());
        // Both see the same batches, so their delta and `target_info` state moves on the same
        // way; the cold one forgets its cache before every batch.
        let cold = Translator::new(options.clone());
        for minute in 0..4u64 {
            let at = T + minute * 60_000_000_000;
            let items = [item(&request(at)), item(&request(at + 1_000_000))];
            let from_warm = warm.translate(&items, Some("tenant"));
            cold.state.lock().cache = SeriesCache::default();
            let from_cold = cold.translate(&items, Some("tenant"));
            assert!(!from_cold.series.is_empty());
            let (warm_text, cold_text) = (summary(&from_warm), summary(&from_cold));
            let only = |a: &str, b: &str| -> Vec<String> {
                a.lines()
                    .filter(|l| !b.contains(*l))
                    .map(str::to_owned)
                    .collect()
            };
            assert!(
                warm_text == cold_text,
                "{options:?} minute {minute}\nonly warm: {:#?}\nonly cold: {:#?}",
                only(&warm_text, &cold_text),
                only(&cold_text, &warm_text)
            );
            if minute > 0 {
                assert!(!warm.state.lock().cache.series.is_empty());
            }
        }
    }
}

#[test]
fn a_full_cache_starts_over_and_still_translates_exactly() {
    let translator = Translator::new(TranslateOptions::default());
    let items = [item(&request(T))];
    let before = summary(&translator.translate(&items, None));
    {
        let mut state = translator.state.lock();
        for i in 0..MAX_CACHED_CONTEXTS as u32 {
            state.cache.context(&i.to_le_bytes());
        }
        assert!(
            state.cache.series.is_empty(),
            "a full context table clears the series"
        );
    }
    let fresh = Translator::new(TranslateOptions::default());
    let _ = fresh.translate(&items, None);
    // Same state history on both (one batch at T), so the second batch must match.
    let next = [item(&request(T + 60_000_000_000))];
    assert_eq!(
        summary(&translator.translate(&next, None)),
        summary(&fresh.translate(&next, None))
    );
    assert!(!before.is_empty());
}

#[test]
fn a_point_whose_attributes_do_not_decode_is_dropped_alone() {
    use super::raw;
    let good = kv("k", s("v")).encode_to_vec();
    // A `KeyValue` whose key claims more bytes than there are.
    let bad = vec![0x0a, 0x7f, b'k'];
    let point = |attribute: Vec<u8>, value: f64| raw::NumberDataPoint {
        attributes: vec![attribute.into()],
        time_unix_nano: T,
        value: Some(raw::Value::AsDouble(value)),
        ..Default::default()
    };
    let metric = raw::Metric {
        name: "g".into(),
        data: Some(raw::Data::Gauge(raw::Gauge {
            data_points: vec![point(good, 1.0), point(bad, 2.0)],
        })),
        ..Default::default()
    };
    let request = raw::Request {
        resource_metrics: vec![raw::ResourceMetrics {
            resource: resource(Some("a"), "eu"),
            scope_metrics: vec![raw::ScopeMetrics {
                scope: None,
                metrics: vec![metric.encode_to_vec().into()],
                schema_url: String::new(),
            }],
        }],
    };
    let translator = Translator::new(TranslateOptions::default());
    for _ in 0..2 {
        let item = Item::new(Signal::Metrics, request.encode_to_vec().into(), 2);
        let t = translator.translate(&[item], None);
        assert_eq!(t.dropped.get("decode_error"), Some(&1));
        let gauges: Vec<_> = t.series.iter().filter(|s| s.name() == "g").collect();
        assert_eq!(gauges.len(), 1);
        assert_eq!(gauges[0].samples[0].value, 1.0);
    }
}

#[test]
fn large_keys_keep_the_cache_within_its_byte_bounds() {
    let mut cache = SeriesCache::default();
    let labels = SeriesLabels::new(Vec::new());
    // 1 MiB attribute values: without the byte bound, 100,000 of them would be kept.
    let big = |i: u32| [i.to_le_bytes().as_slice(), &vec![b'x'; 1 << 20]].concat();
    for i in 0..100 {
        cache.insert(&big(i), labels.clone(), 0);
        assert!(cache.series_bytes <= MAX_CACHED_SERIES_BYTES);
    }
    assert!(cache.series.len() < 100, "the cache started over");
    assert!(cache.get(&big(99)).is_some(), "the newest entry is kept");
    for i in 0..20 {
        cache.context(&big(i));
        assert!(cache.context_bytes <= MAX_CACHED_CONTEXT_BYTES);
    }
    assert!(cache.contexts.len() < 20);
}
