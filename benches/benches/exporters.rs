//! Conversion + encoding costs of the exporters that translate: OTLP logs → Loki push request
//! (map, encode, snappy) and OTLP metrics → remote-write request (translate, encode, snappy).

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice_core::{Batch, Exporter, Item, Signal};
use std::hint::black_box;

fn batch(signal: Signal, payload: Vec<u8>, count: u32, copies: usize) -> Batch {
    let payload = Bytes::from(payload);
    Batch {
        signal,
        tenant: None,
        items: (0..copies)
            .map(|_| Item::new(signal, payload.clone(), count))
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("exporters");

    let loki_cfg: sluice_exporter_loki::Config =
        toml::from_str("url = \"http://127.0.0.1:3100/loki/api/v1/push\"").expect("loki config");
    let loki = sluice_exporter_loki::build(&loki_cfg, "exporters.loki").expect("loki exporter");
    let logs = batch(
        Signal::Logs,
        sluice_benches::logs_request(1000).encode_to_vec(),
        1000,
        4,
    );
    g.throughput(Throughput::Elements(4000));
    g.bench_function("loki_push_request_4000_entries", |b| {
        b.iter(|| black_box(loki.build_requests(black_box(&logs))))
    });
    // What `sluice loadgen --signal logs --spans-per-request 512` sends (8 string attributes,
    // a ~90-byte body): the shape of the delivered-throughput runs in RESULTS.md.
    let loadgen_logs = batch(
        Signal::Logs,
        sluice_loadgen::loadgen::build_logs_request(512, 8, 1).encode_to_vec(),
        512,
        4,
    );
    g.throughput(Throughput::Elements(2048));
    g.bench_function("loki_push_request_loadgen_2048_entries", |b| {
        b.iter(|| black_box(loki.build_requests(black_box(&loadgen_logs))))
    });

    let rw_cfg: sluice_exporter_prometheus::Config =
        toml::from_str("url = \"http://127.0.0.1:9090/api/v1/write\"").expect("rw config");
    let rw = sluice_exporter_prometheus::build(&rw_cfg, "exporters.mimir").expect("rw exporter");
    let metrics = batch(
        Signal::Metrics,
        sluice_benches::metrics_request(1000).encode_to_vec(),
        1000,
        2,
    );
    g.throughput(Throughput::Elements(2000));
    // The exporter's series cache is warm after the first iteration: the steady state of an
    // SDK exporting the same series every interval.
    g.bench_function("remote_write_request_2000_samples", |b| {
        b.iter(|| black_box(rw.build_requests(black_box(&metrics))))
    });
    // Every series seen for the first time (a new exporter per iteration).
    g.bench_function("remote_write_request_2000_samples_first_seen", |b| {
        b.iter_batched(
            || sluice_exporter_prometheus::build(&rw_cfg, "exporters.mimir").expect("rw exporter"),
            |rw| black_box(rw.build_requests(black_box(&metrics))),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
