//! Spool append throughput at each durability level, with concurrent appenders sharing group
//! commits, and the read path of a lagging exporter.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice_core::{ByteSize, Item, Signal};
use sluice_spool::{Fsync, Spool, SpoolConfig};
use std::hint::black_box;
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

/// What an exporter pays per record to read from the memory tail (a reference-counted copy)
/// against reading back from the segment files (a read, a checksum and a decompression): the
/// difference is what an exporter that fell behind the memory windows spends on top of one
/// that keeps up (docs/spool.md, "Read path").
fn bench_read(c: &mut Criterion) {
    const RECORDS: usize = 200;
    const LINES: usize = 512;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // What `sluice loadgen --signal logs --spans-per-request 512` sends.
    let payload =
        Bytes::from(sluice_loadgen::loadgen::build_logs_request(LINES, 8, 1).encode_to_vec());
    let mut g = c.benchmark_group("spool_read");
    g.throughput(Throughput::Elements((RECORDS * LINES) as u64));
    for (source, memory_bytes) in [("memory", ByteSize::mib(256)), ("disk", ByteSize(0))] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SpoolConfig {
            fsync: Fsync::None,
            memory_bytes,
            ..Default::default()
        };
        let (spool, _) =
            Spool::open("bench", dir.path(), config, &["x".to_string()]).expect("open");
        rt.block_on(async {
            for _ in 0..RECORDS {
                let item = Item::new(Signal::Logs, payload.clone(), LINES as u32);
                spool
                    .append(item)
                    .expect("accepted")
                    .await
                    .expect("durable");
            }
        });
        while spool.published() < RECORDS as u64 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Nothing is appended while reading, so nothing leaves the memory tail: each new reader
        // (no commit, so it starts at the first record) reads the same records again.
        g.bench_function(BenchmarkId::new("loadgen_512_lines", source), |b| {
            b.iter(|| {
                let mut reader = spool.reader("x").expect("reader");
                let mut read = 0;
                while read < RECORDS {
                    read += reader.read_items(4096, 1 << 30).len();
                }
                black_box(read)
            })
        });
        spool.close();
    }
    g.finish();
}

criterion_group!(benches, bench, bench_read);
criterion_main!(benches);
