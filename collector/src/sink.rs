//! `sluice sink`: an OTLP endpoint that accepts and counts everything, for benchmarks. It is the
//! real OTLP receiver with a consumer that drops items after counting them, so the work per
//! request (HTTP/2, validation) is what a real backend's front door does, and no more.

use futures::future::BoxFuture;
use sluice_core::{Consumer, Item, Receiver, ReceiverContext, Refusal, Signal};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct SinkArgs {
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:5317")]
    pub grpc: String,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:5318")]
    pub http: String,
    /// Print items/s at this interval.
    #[arg(long, default_value = "5s", value_parser = sluice_core::config::parse_duration)]
    pub report_every: Duration,
}

#[derive(Default)]
pub struct CountingConsumer {
    pub items: AtomicU64,
}

impl Consumer for CountingConsumer {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        self.items
            .fetch_add(u64::from(item.count), Ordering::Relaxed);
        Box::pin(std::future::ready(Ok(())))
    }
    fn accepts(&self, _: Signal) -> bool {
        true
    }
}

pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let text = format!(
        "[grpc]\nendpoint = \"{}\"\n[http]\nendpoint = \"{}\"\n",
        args.grpc, args.http
    );
    let config: sluice_receiver_otlp::Config = toml::from_str(&text)?;
    let receiver = sluice_receiver_otlp::build(&config, "sink")?;
    let counter = Arc::new(CountingConsumer::default());
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = ReceiverContext {
        component_id: Arc::from("sink"),
        consumer: counter.clone(),
        shutdown: stop_rx,
    };
    println!("sink listening on {:?}", receiver.listen_addrs());
    let server = tokio::spawn(Box::new(receiver).run(ctx));
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(args.report_every) => {
                let now = counter.items.load(Ordering::Relaxed);
                let rate = (now - last.1) as f64 / last.0.elapsed().as_secs_f64();
                println!("sink: {now} items total, {rate:.0} items/s");
                last = (Instant::now(), now);
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.abort();
    Ok(())
}
