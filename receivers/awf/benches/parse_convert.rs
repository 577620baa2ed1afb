//! SSE parse + event decode + conversion throughput (events per second on one core).
//! `cargo bench -p sluice-receiver-awf --bench parse_convert`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_awf_sim::world::World;
use sluice_http_client::sse::SseParser;
use sluice_receiver_awf::convert::{ConvertConfig, Converter};
use sluice_receiver_awf::stream::decode_sse_event;
use std::hint::black_box;

/// A realistic SSE body: the simulator's events for `executions` executions.
fn sse_body(executions: usize) -> (Vec<u8>, usize) {
    let mut w = World::new(1, 64, 1000, executions + 1);
    for _ in 0..executions {
        let wf = w.pick_workflow();
        w.start_execution(
            wf,
            0.0,
            1_700_000_000_000_000_000,
            0,
            None,
            Default::default(),
        );
    }
    let mut body = Vec::new();
    let mut n = 0;
    let mut now = 0.0;
    while let Some(due) = w.next_due_ms() {
        now = f64::max(now, due as f64);
        for e in w.advance(
            now,
            1_700_000_000_000_000_000 + (now * 1e6) as u64,
            usize::MAX,
        ) {
            n += 1;
            body.extend_from_slice(format!("id: {n}\r\ndata: {}\r\n\r\n", e.json).as_bytes());
        }
    }
    (body, n)
}

fn bench(c: &mut Criterion) {
    let (body, events) = sse_body(200);
    let mut g = c.benchmark_group("awf");
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function("sse_parse", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            for chunk in body.chunks(4096) {
                p.feed(chunk, &mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("sse_parse_decode_convert_encode", |b| {
        b.iter(|| {
            let mut conv = Converter::new(ConvertConfig::default());
            let mut p = SseParser::new();
            let mut dispatched = Vec::new();
            let mut spans = 0;
            for chunk in body.chunks(4096) {
                p.feed(chunk, &mut dispatched);
                let events: Vec<_> = dispatched
                    .drain(..)
                    .filter_map(|d| decode_sse_event(&d, None).ok())
                    .flatten()
                    .collect();
                let pending = conv.convert(events, 1_700_000_000_000_000_000);
                spans += pending.traces_item().map_or(0, |i| i.count);
                black_box(pending.logs_item());
                conv.commit(pending, 1_700_000_000_000_000_000);
            }
            black_box(conv.metrics_item(1_700_000_000_000_000_000));
            spans
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
