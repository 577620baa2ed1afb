//! In-process pipeline throughput: router → spool → shared exporter driver (batching, retry
//! bookkeeping, cursor commits) → an exporter that only counts. Measures Sluice's own overhead
//! per span with no network in the way.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice::pipeline::{DriverSettings, PipelineIngest, Router, run_driver};
use sluice_core::retry::RetryConfig;
use sluice_core::{Batch, ByteSize, Consumer, Exporter, Item, SendOutcome, Signal};
use sluice_spool::{Fsync, Spool, SpoolConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SPANS_PER_ITEM: usize = 512;

/// Concatenates a batch like the OTLP exporter does, then counts it as sent.
struct CountingExporter {
    spans: AtomicU64,
}

impl Exporter for CountingExporter {
    type Request = (Bytes, u64);
    fn build_requests(&self, batch: &Batch) -> Vec<(Bytes, u64)> {
        let mut body = Vec::with_capacity(batch.byte_size());
        for i in &batch.items {
            body.extend_from_slice(&i.payload);
        }
        vec![(Bytes::from(body), batch.item_count())]
    }
    fn request_items(&self, r: &(Bytes, u64)) -> u64 {
        r.1
    }
    async fn send(&self, r: &(Bytes, u64)) -> SendOutcome {
        self.spans.fetch_add(r.1, Ordering::Relaxed);
        SendOutcome::Sent
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = Bytes::from(sluice_benches::traces_request(SPANS_PER_ITEM, 8, 4).encode_to_vec());
    let mut g = c.benchmark_group("pipeline_inprocess");
    g.throughput(Throughput::Elements(SPANS_PER_ITEM as u64));
    g.measurement_time(Duration::from_secs(8));
    // The passthrough, and the same with an attributes processor in line: the difference is
    // what the processor costs the delivered throughput (compare `processors_traces`).
    let attributes = || {
        let body: toml::Value = toml::from_str(
            "[[actions]]\nkey = \"deployment.environment\"\nvalue = \"prod\"\naction = \"upsert\"",
        )
        .expect("config");
        let ctx = sluice_processors::Context::new("processors.attributes", "bench");
        let stage =
            sluice_processors::attributes::build(&body.try_into().expect("config"), ctx.clone())
                .expect("builds");
        Arc::new(sluice_processors::Chain::new(vec![(stage, ctx)]))
    };
    for (fsync, processors) in [
        (Fsync::None, None),
        (Fsync::Always, None),
        (Fsync::Always, Some(attributes())),
    ] {
        let name = match &processors {
            None => format!("traces_passthrough_fsync_{fsync:?}").to_lowercase(),
            Some(_) => format!("traces_attributes_fsync_{fsync:?}").to_lowercase(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SpoolConfig {
            fsync,
            max_bytes: ByteSize::gib(64),
            ..Default::default()
        };
        let (spool, _) =
            Spool::open("bench", dir.path(), config, &["count".to_string()]).expect("open");
        let exporter = Arc::new(CountingExporter {
            spans: AtomicU64::new(0),
        });
        let settings = DriverSettings {
            component_id: Arc::from("exporters.count"),
            pipeline: Arc::from("bench"),
            batch: sluice_core::batch::BatchConfig {
                send_batch_size: 8192,
                send_batch_max_size: 16384,
                ..Default::default()
            },
            retry: RetryConfig::default(),
            dead_letter: None,
        };
        let reader = spool.reader("count").expect("reader");
        let _guard = rt.enter();
        rt.spawn(run_driver(exporter.clone(), reader, settings));
        let ingest = Arc::new(PipelineIngest {
            name: Arc::from("bench"),
            processors,
            spool: spool.clone(),
        });
        let router: Arc<dyn Consumer> = Arc::new(Router::new(vec![(Signal::Traces, ingest)]));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let router = router.clone();
                let payload = payload.clone();
                let exporter = exporter.clone();
                rt.block_on(async move {
                    const SENDERS: usize = 16;
                    let per = (iters as usize).div_ceil(SENDERS);
                    // Done when the exporter has counted every span sent in this round.
                    let target = exporter.spans.load(Ordering::Relaxed)
                        + (per * SENDERS * SPANS_PER_ITEM) as u64;
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..SENDERS)
                        .map(|_| {
                            let router = router.clone();
                            let payload = payload.clone();
                            tokio::spawn(async move {
                                for _ in 0..per {
                                    router
                                        .consume(Item::new(
                                            Signal::Traces,
                                            payload.clone(),
                                            SPANS_PER_ITEM as u32,
                                        ))
                                        .await
                                        .expect("accepted");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                    while exporter.spans.load(Ordering::Relaxed) < target {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
