//! Spool append throughput at each durability level, with concurrent appenders sharing group
//! commits, and the read path of a lagging exporter.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice_core::{ByteSize, Item, Signal};
use sluice_spool::{Fsync, Spool, SpoolConfig};
use std::time::{Duration, Instant};

const SPANS_PER_ITEM: usize = 512;
const APPENDERS: usize = 16;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = Bytes::from(sluice_benches::traces_request(SPANS_PER_ITEM, 8, 3).encode_to_vec());
    let mut g = c.benchmark_group("spool_append");
    g.throughput(Throughput::Elements(SPANS_PER_ITEM as u64));
    g.measurement_time(Duration::from_secs(8));
    for fsync in [Fsync::None, Fsync::Interval, Fsync::Always] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SpoolConfig {
            fsync,
            max_bytes: ByteSize::gib(64),
            ..Default::default()
        };
        let (spool, _) =
            Spool::open("bench", dir.path(), config, &["x".to_string()]).expect("open");
        let mut reader = spool.reader("x").expect("reader");
        g.bench_function(
            BenchmarkId::new("fsync", format!("{fsync:?}").to_lowercase()),
            |b| {
                b.iter_custom(|iters| {
                    let spool = spool.clone();
                    let payload = payload.clone();
                    let took = rt.block_on(async move {
                        let start = Instant::now();
                        let per = (iters as usize).div_ceil(APPENDERS);
                        let tasks: Vec<_> = (0..APPENDERS)
                            .map(|_| {
                                let spool = spool.clone();
                                let payload = payload.clone();
                                tokio::spawn(async move {
                                    for _ in 0..per {
                                        let item = Item::new(
                                            Signal::Traces,
                                            payload.clone(),
                                            SPANS_PER_ITEM as u32,
                                        );
                                        // A full queue is backpressure (with fsync = none the appenders can
                                        // outrun the writer): retry as a client would.
                                        loop {
                                            match spool.append(item.clone()) {
                                                Ok(ticket) => {
                                                    ticket.await.expect("durable");
                                                    break;
                                                }
                                                Err(_) => tokio::task::yield_now().await,
                                            }
                                        }
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("task");
                        }
                        start.elapsed()
                    });
                    // Keep the disk bounded: consume and commit what was written.
                    loop {
                        let got = reader.read(10_000, 1 << 30);
                        if got.is_empty() {
                            break;
                        }
                    }
                    reader.commit(reader.position());
                    took
                })
            },
        );
        spool.close();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
