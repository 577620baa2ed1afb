//! Throughput of each in-line processor on a 512-span trace request (8 attributes a span) and
//! a 1000-record log request, as the pipeline runs it: from the receiver's protobuf bytes
//! through decode, the processor and encode (`Chain::process`). `decode_encode_only` is the
//! floor every decoding processor pays; `memory_limiter` works on the bytes and pays none.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice_core::{Item, Processor, Signal};
use sluice_processors::Chain;
use std::hint::black_box;

const SPANS: usize = 512;
const RECORDS: usize = 1000;

/// A processor config of `benches/processors/` (shared with `delivered.py --processor`): its
/// `type` and the rest of its `[processors.under_test]` table.
fn config(file: &str) -> (String, toml::Value) {
    let path = format!("{}/processors/{file}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("bench processor config");
    let mut doc: toml::Table = toml::from_str(&text).expect("bench processor config parses");
    let mut body = doc
        .remove("processors")
        .and_then(|p| p.as_table().and_then(|t| t.get("under_test")).cloned())
        .and_then(|t| t.as_table().cloned())
        .expect("[processors.under_test]");
    let kind = body
        .remove("type")
        .and_then(|t| t.as_str().map(str::to_owned))
        .expect("type");
    (kind, toml::Value::Table(body))
}

fn chain(file: &str) -> Chain {
    let (kind, body) = config(file);
    let ctx = Context::new(&format!("processors.{kind}"), "bench");
    use sluice_processors::*;
    let built = match kind.as_str() {
        "attributes" => attributes::build(&body.try_into().expect("config"), ctx.clone()),
        "resource" => resource::build(&body.try_into().expect("config"), ctx.clone()),
        "filter" => filter::build(&body.try_into().expect("config"), ctx.clone()),
        "redaction" => redaction::build(&body.try_into().expect("config"), ctx.clone()),
        "transform" => transform::build(&body.try_into().expect("config"), ctx.clone()),
        "tail_sampling" => tail_sampling::build(&body.try_into().expect("config"), ctx.clone()),
        "memory_limiter" => memory_limiter::build(&body.try_into().expect("config"), ctx.clone()),
        other => panic!("unknown processor {other}"),
    };
    Chain::new(vec![(built.expect("bench processor builds"), ctx)])
}

fn bench(c: &mut Criterion) {
    // Tail sampling decides on the runtime's timer.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();

    let traces = Bytes::from(sluice_benches::traces_request(SPANS, 8, 3).encode_to_vec());
    let mut g = c.benchmark_group("processors_traces");
    g.throughput(Throughput::Elements(SPANS as u64));
    for (name, file) in [
        ("decode_encode_only", "decode_encode_only"),
        ("attributes", "attributes"),
        ("resource", "resource"),
        ("filter", "filter"),
        ("redaction", "redaction"),
        ("transform", "transform"),
        ("tail_sampling_intake", "tail_sampling"),
        ("memory_limiter", "memory_limiter"),
    ] {
        let chain = chain(file);
        g.bench_function(name, |b| {
            b.iter(|| {
                let item = Item::new(Signal::Traces, traces.clone(), SPANS as u32);
                black_box(chain.process(item).expect("processed"))
            })
        });
    }
    g.finish();

    let logs = Bytes::from(sluice_benches::logs_request(RECORDS).encode_to_vec());
    let mut g = c.benchmark_group("processors_logs");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for name in ["filter", "redaction", "transform"] {
        let chain = chain(name);
        g.bench_function(name, |b| {
            b.iter(|| {
                let item = Item::new(Signal::Logs, logs.clone(), RECORDS as u32);
                black_box(chain.process(item).expect("processed"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
