//! OTLP ingest costs: the validating walker (the passthrough hot path) against a full prost
//! decode, prost encode, batching by concatenation, and OTLP/JSON conversion.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sluice_core::Signal;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("otlp_traces");
    for spans in [512usize, 4096] {
        let req = sluice_benches::traces_request(spans, 8, 1);
        let bytes = Bytes::from(req.encode_to_vec());
        g.throughput(Throughput::Elements(spans as u64));
        g.bench_with_input(
            BenchmarkId::new("validate_walker", spans),
            &bytes,
            |b, bytes| {
                b.iter(|| sluice_otlp::validate(Signal::Traces, black_box(bytes)).expect("valid"))
            },
        );
        g.bench_with_input(
            BenchmarkId::new("prost_decode", spans),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    ExportTraceServiceRequest::decode(black_box(bytes.as_ref())).expect("valid")
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("prost_encode", spans), &req, |b, req| {
            b.iter(|| black_box(req).encode_to_vec())
        });
        let parts: Vec<Bytes> = (0..8).map(|_| bytes.clone()).collect();
        g.throughput(Throughput::Elements(spans as u64 * 8));
        g.bench_with_input(
            BenchmarkId::new("batch_concat_8", spans),
            &parts,
            |b, parts| {
                b.iter(|| {
                    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                    for p in parts {
                        out.extend_from_slice(p);
                    }
                    black_box(out)
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("otlp_json");
    let req = sluice_benches::traces_request(512, 8, 2);
    let proto = req.encode_to_vec();
    let json = sluice_otlp::protobuf_to_json(Signal::Traces, &proto).expect("json");
    g.throughput(Throughput::Elements(512));
    g.bench_function("json_to_protobuf_512", |b| {
        b.iter(|| {
            sluice_otlp::json_to_protobuf(Signal::Traces, black_box(json.as_bytes()))
                .expect("valid")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
