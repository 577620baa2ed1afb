//! The bytes the exporter builds: snappy block + protobuf decoded back (as a receiver does),
//! sharding, label rules of the wire, and the RW2 symbols table.

mod support;

use prost::Message;
use sluice_core::{Batch, Exporter, Item, Signal};
use sluice_exporter_prometheus::remote_write::{self, MetricType, Protocol, decode_snappy, v1, v2};
use sluice_exporter_prometheus::translate::{Family, NativePoint, Series};
use sluice_exporter_prometheus::{Config, ProtocolVersion, RemoteWriteRequest, build};
use std::collections::{BTreeMap, BTreeSet};
use support::otlp::*;

const T: u64 = 1_700_000_000_000_000_000;
const S: u64 = 1_000_000_000;

fn batch_items(series: usize, points: u64) -> Vec<Item> {
    let mut items = Vec::new();
    // Newest item first: the exporter must still send each series in time order.
    for p in (0..points).rev() {
        let t = T + p * S;
        let req = request(
            vec![kv("service.name", "wire"), kv("host.name", "h1")],
            Some(scope("wire.test", "0.1")),
            vec![
                sum(
                    "requests",
                    "{request}",
                    CUMULATIVE,
                    true,
                    (0..series)
                        .map(|i| number(t, (p * 10) as f64, vec![kv("id", &i.to_string())]))
                        .collect(),
                ),
                histogram(
                    "latency",
                    "s",
                    CUMULATIVE,
                    vec![histogram_point(
                        t,
                        &[0.1, 1.0],
                        &[p, p, p],
                        Some(p as f64),
                        vec![],
                    )],
                ),
            ],
        );
        items.push(item(&req));
    }
    items
}

fn batch(items: Vec<Item>) -> Batch {
    Batch {
        signal: Signal::Metrics,
        tenant: None,
        items,
    }
}

fn exporter(
    protocol: ProtocolVersion,
    shards: usize,
) -> sluice_exporter_prometheus::RemoteWriteExporter {
    let mut config = Config::new("http://127.0.0.1:9/api/v1/write");
    config.protocol = protocol;
    config.shards = shards;
    build(&config, "exporters.test").expect("valid config")
}

fn decode_v1(r: &RemoteWriteRequest) -> v1::WriteRequest {
    assert_eq!(r.protocol, Protocol::V1);
    decode_snappy(&r.body).expect("snappy block + WriteRequest")
}

fn label_key(labels: &[v1::Label]) -> String {
    labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

#[track_caller]
fn assert_wire_labels(labels: &[v1::Label]) {
    assert!(labels.iter().any(|l| l.name == "__name__"), "{labels:?}");
    assert!(labels.iter().all(|l| !l.value.is_empty()), "{labels:?}");
    assert!(
        labels
            .windows(2)
            .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes()),
        "labels must be byte-sorted and unique: {labels:?}"
    );
}

#[test]
fn v1_round_trip_shards_each_series_once_in_time_order() {
    let exp = exporter(ProtocolVersion::V1, 4);
    let requests = exp.build_requests(&batch(batch_items(50, 5)));
    assert!(
        !requests.is_empty() && requests.len() <= 4,
        "{}",
        requests.len()
    );
    let shards: BTreeSet<usize> = requests.iter().map(|r| r.shard).collect();
    assert_eq!(
        shards.len(),
        requests.len(),
        "at most one request per shard"
    );

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut total_samples = 0u64;
    for r in &requests {
        let wr = decode_v1(r);
        assert_eq!(r.series, wr.timeseries.len());
        let request_samples: usize = wr.timeseries.iter().map(|t| t.samples.len()).sum();
        assert_eq!(exp.request_items(r), request_samples as u64);
        total_samples += request_samples as u64;
        let families: BTreeSet<&str> = wr
            .metadata
            .iter()
            .map(|m| m.metric_family_name.as_str())
            .collect();
        for ts in &wr.timeseries {
            assert_wire_labels(&ts.labels);
            assert!(
                ts.samples
                    .windows(2)
                    .all(|w| w[0].timestamp < w[1].timestamp),
                "samples in time order: {:?}",
                ts.samples
            );
            let previous = seen.insert(label_key(&ts.labels), r.shard);
            assert!(
                previous.is_none(),
                "series in two requests: {:?}",
                ts.labels
            );
            let name = ts.labels.iter().find(|l| l.name == "__name__").unwrap();
            let family = ["requests_total", "latency_seconds", "target_info"]
                .into_iter()
                .find(|f| name.value.starts_with(f))
                .unwrap();
            assert!(
                families.contains(family),
                "metadata for {family} in {families:?}"
            );
        }
    }
    // 50 counters + 3 buckets + sum + count, 5 points each; target_info once per resource
    // (each item holds the resource at one timestamp).
    assert_eq!(seen.len(), 50 + 5 + 1);
    assert_eq!(total_samples, 55 * 5 + 5);

    // The same series go to the same shard in the next batch.
    let again = exp.build_requests(&batch(batch_items(50, 5)));
    for r in &again {
        for ts in decode_v1(r).timeseries {
            assert_eq!(seen.get(&label_key(&ts.labels)), Some(&r.shard));
        }
    }

    let metadata: Vec<v1::MetricMetadata> = requests
        .iter()
        .flat_map(|r| decode_v1(r).metadata)
        .collect();
    let latency = metadata
        .iter()
        .find(|m| m.metric_family_name == "latency_seconds")
        .expect("histogram metadata");
    assert_eq!(latency.r#type, MetricType::Histogram as i32);
    assert_eq!(latency.unit, "seconds");
    assert_eq!(latency.help, "latency help");
    let counter = metadata
        .iter()
        .find(|m| m.metric_family_name == "requests_total")
        .expect("counter metadata");
    assert_eq!(counter.r#type, MetricType::Counter as i32);
}

#[test]
fn one_shard_gets_everything() {
    let exp = exporter(ProtocolVersion::V1, 1);
    let requests = exp.build_requests(&batch(batch_items(10, 2)));
    assert_eq!(requests.len(), 1);
    assert_eq!(decode_v1(&requests[0]).timeseries.len(), 10 + 5 + 1);
}

#[test]
fn other_signals_and_empty_batches_build_nothing() {
    let exp = exporter(ProtocolVersion::V1, 4);
    let logs = Batch {
        signal: Signal::Logs,
        tenant: None,
        items: vec![Item::new(Signal::Logs, bytes::Bytes::new(), 1)],
    };
    assert!(exp.build_requests(&logs).is_empty());
    assert!(exp.build_requests(&batch(vec![])).is_empty());
}

fn resolve(symbols: &[String], refs: &[u32]) -> Vec<v1::Label> {
    refs.chunks(2)
        .map(|p| v1::Label {
            name: symbols[p[0] as usize].clone(),
            value: symbols[p[1] as usize].clone(),
        })
        .collect()
}

#[test]
fn v2_round_trip_symbols_metadata_start_timestamps() {
    let exp = exporter(ProtocolVersion::V2, 2);
    let v1_view = exporter(ProtocolVersion::V1, 2);
    let items = batch_items(3, 2);
    let v2_requests = exp.build_requests(&batch(items.clone()));
    let v1_requests = v1_view.build_requests(&batch(items));

    let mut v1_series: BTreeMap<String, Vec<v1::Sample>> = BTreeMap::new();
    for r in &v1_requests {
        for ts in decode_v1(r).timeseries {
            v1_series.insert(label_key(&ts.labels), ts.samples);
        }
    }
    let mut v2_series: BTreeMap<String, Vec<v1::Sample>> = BTreeMap::new();
    for r in &v2_requests {
        assert_eq!(r.protocol, Protocol::V2);
        let req: v2::Request = decode_snappy(&r.body).expect("v2 Request");
        assert_eq!(req.symbols.first().map(String::as_str), Some(""));
        let unique: BTreeSet<&String> = req.symbols.iter().collect();
        assert_eq!(unique.len(), req.symbols.len(), "each symbol once");
        for ts in &req.timeseries {
            let labels = resolve(&req.symbols, &ts.labels_refs);
            assert_wire_labels(&labels);
            let name = labels
                .iter()
                .find(|l| l.name == "__name__")
                .unwrap()
                .value
                .clone();
            let meta = ts.metadata.expect("per-series metadata");
            let expected_type = if name == "requests_total" {
                MetricType::Counter
            } else if name == "target_info" {
                MetricType::Gauge
            } else {
                MetricType::Histogram
            };
            assert_eq!(meta.r#type, expected_type as i32, "{name}");
            if name == "requests_total" {
                assert_eq!(req.symbols[meta.help_ref as usize], "requests help");
                assert_eq!(meta.unit_ref, 0, "`{{request}}` has no unit");
                assert!(
                    ts.samples.iter().all(|s| s.start_timestamp == 1000),
                    "{:?}",
                    ts.samples
                );
            }
            v2_series.insert(
                label_key(&labels),
                ts.samples
                    .iter()
                    .map(|s| v1::Sample {
                        value: s.value,
                        timestamp: s.timestamp,
                    })
                    .collect(),
            );
        }
    }
    assert_eq!(v1_series, v2_series, "both versions carry the same data");
}

/// The message prost would encode for `series`: the reference the direct encoder is held to.
fn v1_message(series: &[Series], families: &[Family], with_metadata: bool) -> v1::WriteRequest {
    let mut used: Vec<usize> = series.iter().map(|s| s.family).collect();
    used.sort_unstable();
    used.dedup();
    v1::WriteRequest {
        timeseries: series
            .iter()
            .map(|s| v1::TimeSeries {
                labels: s.labels.to_vec(),
                samples: s
                    .samples
                    .iter()
                    .map(|x| v1::Sample {
                        value: x.value,
                        timestamp: x.timestamp,
                    })
                    .collect(),
                exemplars: s.exemplars.clone(),
                histograms: s.histograms.iter().map(|h| h.histogram.clone()).collect(),
            })
            .collect(),
        metadata: if with_metadata {
            used.iter()
                .map(|&i| v1::MetricMetadata {
                    r#type: families[i].metric_type as i32,
                    metric_family_name: families[i].name.clone(),
                    help: families[i].help.clone(),
                    unit: families[i].unit.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

#[test]
fn direct_v1_encoding_is_byte_for_byte_what_prost_encodes() {
    let label = |name: &str, value: &str| v1::Label {
        name: name.into(),
        value: value.into(),
    };
    let sample = |value: f64, timestamp: i64| v2::Sample {
        value,
        timestamp,
        start_timestamp: 0,
    };
    let series = vec![
        Series {
            labels: vec![label("__name__", "up"), label("job", "a/b")].into(),
            hash: 0,
            family: 1,
            // Zero and negative zero are left out by prost, NaN (stale) and negative
            // timestamps are not; a timestamp of 0 is left out too.
            samples: vec![
                sample(1.0, 5),
                sample(0.0, 6),
                sample(-0.0, 7),
                sample(remote_write::stale_nan(), -1),
                sample(2.5, 0),
                sample(f64::INFINITY, 1_700_000_000_000),
            ],
            histograms: vec![],
            exemplars: vec![v1::Exemplar {
                labels: vec![label("trace_id", "ab")],
                value: 0.5,
                timestamp: 6,
            }],
        },
        Series {
            labels: vec![label("__name__", "latency"), label("le", "+Inf")].into(),
            hash: 1,
            family: 0,
            samples: vec![],
            histograms: vec![NativePoint {
                histogram: v1::Histogram {
                    count: Some(v1::histogram::Count::CountInt(3)),
                    schema: -1,
                    positive_deltas: vec![1, -1],
                    timestamp: 9,
                    ..Default::default()
                },
                start_timestamp: 0,
            }],
            exemplars: vec![],
        },
        Series {
            labels: vec![label("__name__", "ünïcode"), label("v", &"x".repeat(300))].into(),
            hash: 2,
            family: 1,
            samples: vec![sample(3.0, 11)],
            histograms: vec![],
            exemplars: vec![],
        },
    ];
    let families = vec![
        Family {
            name: "latency".into(),
            metric_type: MetricType::Histogram,
            help: String::new(),
            unit: "seconds".into(),
        },
        Family {
            name: "up".into(),
            metric_type: MetricType::Gauge,
            help: "h".into(),
            unit: String::new(),
        },
    ];
    for with_metadata in [false, true] {
        let direct = remote_write::encode_v1(&series, &families, with_metadata);
        let reference = v1_message(&series, &families, with_metadata);
        assert_eq!(
            direct,
            reference.encode_to_vec(),
            "metadata {with_metadata}"
        );
        let back: v1::WriteRequest =
            decode_snappy(&remote_write::compress(&direct)).expect("decodes");
        assert_eq!(back.timeseries.len(), 3);
        assert_eq!(back.metadata.len(), if with_metadata { 2 } else { 0 });
    }
    assert!(remote_write::encode_v1(&[], &families, true).is_empty());
}
