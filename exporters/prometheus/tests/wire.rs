//! The bytes the exporter builds: snappy block + protobuf decoded back (as a receiver does),
//! sharding, label rules of the wire, and the RW2 symbols table.

mod support;

use sluice_core::{Batch, Exporter, Item, Signal};
use sluice_exporter_prometheus::remote_write::{self, MetricType, Protocol, decode_snappy, v1, v2};
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

#[test]
fn hand_built_v1_request_matches_protobuf_field_numbers() {
    // Field-level check with prost's own decoder for a single known series.
    let series = sluice_exporter_prometheus::translate::Series {
        labels: vec![v1::Label {
            name: "__name__".into(),
            value: "up".into(),
        }],
        hash: 0,
        family: 0,
        samples: vec![v2::Sample {
            value: 1.0,
            timestamp: 5,
            start_timestamp: 0,
        }],
        histograms: vec![],
        exemplars: vec![],
    };
    let families = vec![sluice_exporter_prometheus::translate::Family {
        name: "up".into(),
        metric_type: MetricType::Gauge,
        help: "h".into(),
        unit: String::new(),
    }];
    let wr = remote_write::write_request_v1(vec![series], &families, true);
    let body = remote_write::encode_snappy(&wr);
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    // timeseries = field 1 (0x0a), metadata = field 3 (0x1a).
    assert_eq!(raw[0], 0x0a);
    assert!(raw.contains(&0x1a));
    let back: v1::WriteRequest = decode_snappy(&body).unwrap();
    assert_eq!(back, wr);
    assert_eq!(back.metadata[0].r#type, 2);
}
