//! A miniature Sluice for the scenario suite: the AWF simulator pushes its events to the real
//! AWF receiver component; what the receiver emits passes the watcher's processor (the live
//! window) and goes out through the real Prometheus remote-write exporter (to the real
//! Prometheus), to the testkit Loki — through the real Loki exporter's push API mapping (the
//! shipped configs' choice) or to Loki's native OTLP endpoint — and to the Tempo stand-in.

use futures::future::BoxFuture;
use sluice_awf_sim::{SimConfig, SimHandle, start_simulator};
use sluice_core::{
    Batch, Consumer, Exporter, Item, Processor, ReceiverContext, Refusal, SendOutcome, Signal,
};
use sluice_exporter_loki::LokiExporter;
use sluice_exporter_prometheus::RemoteWriteExporter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

/// The watcher's processor, installed once the watcher has started (items pass unchanged
/// before that).
#[derive(Default)]
pub struct ProcessorSlot(std::sync::OnceLock<Arc<dyn Processor>>);

impl ProcessorSlot {
    pub fn set(&self, p: Arc<dyn Processor>) {
        let _ = self.0.set(p);
    }
}

impl Processor for ProcessorSlot {
    fn process(&self, item: Item) -> Result<Option<Item>, Refusal> {
        match self.0.get() {
            Some(p) => p.process(item),
            None => Ok(Some(item)),
        }
    }
}

/// How logs reach Loki.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LokiPath {
    /// The Loki exporter's default: streams and JSON lines, `POST /loki/api/v1/push`.
    Push,
    /// The records unchanged to `/otlp/v1/logs`; Loki maps them itself.
    NativeOtlp,
}

pub struct Pipe {
    pub processor: ProcessorSlot,
    pub remote_write: Arc<RemoteWriteExporter>,
    pub loki_push: Arc<LokiExporter>,
    pub loki_path: LokiPath,
    pub http: reqwest::Client,
    pub loki_otlp: String,
    pub tempo_otlp: String,
    pub failures: Arc<AtomicU64>,
}

impl Consumer for Pipe {
    fn consume(&self, item: Item) -> BoxFuture<'static, Result<(), Refusal>> {
        let item = match self.processor.process(item) {
            Ok(Some(i)) => i,
            Ok(None) => return Box::pin(async { Ok(()) }),
            Err(r) => return Box::pin(async move { Err(r) }),
        };
        let rw = self.remote_write.clone();
        let loki_push = self.loki_push.clone();
        let push_logs = self.loki_path == LokiPath::Push;
        let http = self.http.clone();
        let (loki, tempo) = (self.loki_otlp.clone(), self.tempo_otlp.clone());
        let failures = self.failures.clone();
        Box::pin(async move {
            let ok = match item.signal {
                Signal::Metrics => export(&*rw, item).await,
                Signal::Logs if push_logs => export(&*loki_push, item).await,
                Signal::Logs | Signal::Traces => {
                    let url = if item.signal == Signal::Logs {
                        loki
                    } else {
                        tempo
                    };
                    http.post(url)
                        .header("content-type", "application/x-protobuf")
                        .body(item.payload.clone())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            };
            if !ok {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    }

    fn accepts(&self, _signal: Signal) -> bool {
        true
    }
}

/// One item through a real exporter, retried once; whether every request was sent.
async fn export<E: Exporter>(exporter: &E, item: Item) -> bool {
    let batch = Batch {
        signal: item.signal,
        tenant: None,
        items: vec![item],
    };
    let mut all = true;
    for req in exporter.build_requests(&batch) {
        let mut o = exporter.send(&req).await;
        if matches!(o, SendOutcome::Retryable { .. }) {
            o = exporter.send(&req).await;
        }
        all &= o == SendOutcome::Sent;
    }
    all
}

/// One simulated AWF deployment feeding the backends through the watcher's processor.
pub struct Deployment {
    pub sim: Option<SimHandle>,
    pub base: String,
    pub service: String,
    stop: watch::Sender<bool>,
    receiver: tokio::task::JoinHandle<Result<(), sluice_core::ReceiverError>>,
    pub failures: Arc<AtomicU64>,
}

pub struct Backends {
    pub prometheus_write: String,
    pub loki_push: String,
    pub loki_otlp: String,
    pub tempo_otlp: String,
}

impl Pipe {
    pub fn new(b: &Backends, loki_path: LokiPath) -> Arc<Pipe> {
        let rw_cfg = sluice_exporter_prometheus::Config::new(b.prometheus_write.clone());
        let loki_cfg: sluice_exporter_loki::Config =
            toml::from_str(&format!("url = \"{}\"", b.loki_push)).expect("loki config");
        Arc::new(Pipe {
            processor: ProcessorSlot::default(),
            remote_write: Arc::new(
                sluice_exporter_prometheus::build(&rw_cfg, "exporters.prometheus")
                    .expect("exporter"),
            ),
            loki_push: Arc::new(
                sluice_exporter_loki::build(&loki_cfg, "exporters.loki").expect("exporter"),
            ),
            loki_path,
            http: reqwest::Client::new(),
            loki_otlp: b.loki_otlp.clone(),
            tempo_otlp: b.tempo_otlp.clone(),
            failures: Arc::new(AtomicU64::new(0)),
        })
    }
}

impl Deployment {
    pub async fn start(service: &str, sim_cfg: SimConfig, pipe: Arc<Pipe>) -> Deployment {
        let receiver_cfg: sluice_receiver_awf::Config = toml::from_str(&format!(
            "push = {{ endpoint = \"127.0.0.1:0\" }}\nmetrics_interval = \"250ms\"\nservice_name = \"{service}\"\n"
        ))
        .expect("receiver config");
        let receiver =
            sluice_receiver_awf::build(&receiver_cfg, "receivers.awf").expect("receiver");
        let push = sluice_core::Receiver::listen_addrs(&receiver)[0];
        let failures = pipe.failures.clone();
        let (stop, shutdown) = watch::channel(false);
        let ctx = ReceiverContext {
            component_id: "receivers.awf".into(),
            consumer: pipe.clone(),
            shutdown,
        };
        let receiver = tokio::spawn(sluice_core::Receiver::run(Box::new(receiver), ctx));
        let sim = start_simulator(SimConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            push_url: Some(format!("http://{push}/v1/awf/events")),
            push_batch: 25,
            ..sim_cfg
        })
        .await
        .expect("simulator");
        Deployment {
            base: sim.base_url(),
            sim: Some(sim),
            service: service.to_owned(),
            stop,
            receiver,
            failures,
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.sim.take() {
            let _ = s.stop().await;
        }
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.receiver).await;
        self.receiver.abort();
    }
}
