//! Starting and stopping a whole configuration: services, shared stages, receivers, pipelines
//! (spools), exporter drivers. Which component has which shape is the registry's knowledge
//! (`crate::registry`); nothing here names a component.

use crate::config::Config;
use crate::pipeline::{DriverSettings, PipelineIngest, Router};
use crate::registry::{RunningService, SharedStage};
use sluice_core::{Receiver, ReceiverContext, Signal};
use sluice_spool::Spool;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Topology {
    receiver_stop: watch::Sender<bool>,
    receivers: Vec<(String, JoinHandle<Result<(), sluice_core::ReceiverError>>)>,
    spools: Vec<Spool>,
    drivers: Vec<(String, JoinHandle<()>)>,
    /// Reporters of start-up replay progress (crate::replay), one per pipeline with a backlog.
    replays: Vec<JoinHandle<()>>,
    pub listen_addrs: Vec<SocketAddr>,
    services: Vec<(String, RunningService)>,
    shared_stages: Vec<SharedStage>,
    /// Each pipeline's ingest side, by name, for dead-letter replay.
    pipelines: BTreeMap<String, Arc<PipelineIngest>>,
}

impl Topology {
    /// Binds every receiver first (so a port clash fails before anything else starts), then
    /// opens spools (replaying what a previous run left), starts exporters and receivers.
    pub async fn start(config: &Config, storage: &Path) -> anyhow::Result<Topology> {
        let mut built: BTreeMap<String, Box<dyn Receiver>> = BTreeMap::new();
        for (name, rc) in &config.receivers {
            if !config.pipelines.iter().any(|p| p.receivers.contains(name)) {
                tracing::warn!(
                    receiver = name,
                    "receiver is not used by any pipeline; not starting it"
                );
                continue;
            }
            let mut r = rc
                .build(&format!("receivers.{name}"))
                .map_err(|e| anyhow::anyhow!("receivers.{name}: {e:#}"))?;
            r.use_storage(&storage.join("receivers").join(name))
                .map_err(|e| anyhow::anyhow!("receivers.{name}: {e}"))?;
            built.insert(name.clone(), r);
        }

        // Services first: receivers may connect to them.
        let mut services = Vec::new();
        for (section, service) in &config.services {
            let running = service
                .start()
                .await
                .map_err(|e| anyhow::anyhow!("{section}: {e:#}"))?;
            services.push((section.clone(), running));
        }

        // Shared stages start before the pipelines they sit in; their own telemetry is routed
        // once those pipelines exist.
        let mut shared_stages = BTreeMap::new();
        for (name, pc) in &config.processors {
            if !config.pipelines.iter().any(|p| p.processors.contains(name)) {
                continue;
            }
            if let Some(stage) = pc.start_shared(name, storage).await? {
                shared_stages.insert(name.clone(), stage);
            }
        }

        let mut spools = Vec::new();
        let mut pipelines = BTreeMap::new();
        let dead_letter_dir = storage.join(crate::dead_letter::DIR);
        let dead_letter = Arc::new(
            crate::dead_letter::DeadLetterStore::open(
                &dead_letter_dir,
                crate::dead_letter::DEFAULT_MAX_BYTES,
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the dead-letter store at {}: {e}",
                    dead_letter_dir.display()
                )
            })?,
        );
        let mut drivers = Vec::new();
        let mut replays = Vec::new();
        let mut routes: BTreeMap<String, Vec<(Signal, Arc<PipelineIngest>)>> = BTreeMap::new();
        for p in &config.pipelines {
            let dir = storage.join("pipelines").join(&p.name);
            // Damage is logged by the spool, the backlog by crate::replay.
            let (spool, _) =
                Spool::open(&p.name, &dir, p.spool.clone(), &p.exporters).map_err(|e| {
                    anyhow::anyhow!(
                        "pipeline {}: cannot open spool at {}: {e}",
                        p.name,
                        dir.display()
                    )
                })?;
            let mut stages = Vec::new();
            let mut batch = sluice_core::batch::BatchConfig::default();
            for name in &p.processors {
                let Some(pc) = config.processors.get(name) else {
                    continue;
                };
                if let Some(b) = pc.driver_batching() {
                    batch = b.clone();
                }
                let component_id = format!("processors.{name}");
                let ctx = sluice_processors::Context::new(&component_id, &p.name);
                if let Some(shared) = shared_stages.get(name) {
                    stages.push((shared.stage(), ctx));
                } else if let Some(stage) = pc
                    .build(ctx.clone())
                    .map_err(|e| anyhow::anyhow!("{component_id}: {e:#}"))?
                {
                    stages.push((stage, ctx));
                }
            }
            // No stages, no chain: the passthrough keeps the receiver's bytes untouched.
            let processors =
                (!stages.is_empty()).then(|| Arc::new(sluice_processors::Chain::new(stages)));
            for name in &p.exporters {
                let Some(ec) = config.exporters.get(name) else {
                    continue;
                };
                let Some(reader) = spool.reader(name) else {
                    continue;
                };
                let settings = DriverSettings {
                    component_id: Arc::from(format!("exporters.{name}")),
                    pipeline: Arc::from(p.name.as_str()),
                    batch: batch.clone(),
                    retry: ec.retry(),
                    dead_letter: Some(dead_letter.clone()),
                };
                let handle = ec
                    .start(reader, settings)
                    .map_err(|e| anyhow::anyhow!("exporters.{name}: {e:#}"))?;
                drivers.push((format!("exporters.{name}@{}", p.name), handle));
            }
            replays.extend(crate::replay::spawn(spool.clone(), &p.name, &p.exporters));
            let ingest = Arc::new(PipelineIngest {
                name: Arc::from(p.name.as_str()),
                processors,
                spool: spool.clone(),
            });
            ingest.connect_downstreams();
            pipelines.insert(p.name.clone(), ingest.clone());
            for r in &p.receivers {
                for s in &p.signals {
                    routes
                        .entry(r.clone())
                        .or_default()
                        .push((*s, ingest.clone()));
                }
            }
            for name in &p.processors {
                if let Some(shared) = shared_stages.get_mut(name) {
                    shared.feed(&p.signals, &ingest);
                }
            }
            spools.push(spool);
        }

        let (receiver_stop, stop_rx) = watch::channel(false);
        let mut receivers = Vec::new();
        let mut listen_addrs = Vec::new();
        for (name, r) in built {
            listen_addrs.extend(r.listen_addrs());
            let ctx = ReceiverContext {
                component_id: Arc::from(format!("receivers.{name}")),
                consumer: Arc::new(Router::new(routes.remove(&name).unwrap_or_default())),
                shutdown: stop_rx.clone(),
            };
            receivers.push((name, tokio::spawn(r.run(ctx))));
        }
        let shared_stages = shared_stages
            .into_values()
            .map(|mut shared| {
                shared.connect();
                shared
            })
            .collect();
        Ok(Topology {
            pipelines,
            services,
            shared_stages,
            receiver_stop,
            receivers,
            spools,
            drivers,
            replays,
            listen_addrs,
        })
    }

    /// Hands `item` to pipeline `name` as a receiver would (its processors, then its spool), for
    /// dead-letter replay. `None` if there is no such pipeline; otherwise resolves once the item
    /// is durable.
    pub fn replay(
        &self,
        name: &str,
        item: sluice_core::Item,
    ) -> Option<futures::future::BoxFuture<'static, Result<(), sluice_core::Refusal>>> {
        let pipeline = self.pipelines.get(name)?;
        Some(match pipeline.ingest(item) {
            Ok(Some(ticket)) => Box::pin(ticket),
            Ok(None) => Box::pin(std::future::ready(Ok(()))),
            Err(refusal) => Box::pin(std::future::ready(Err(refusal))),
        })
    }

    /// Stops intake, then lets exporters deliver what they can until `deadline`. Whatever is
    /// not delivered by then stays in the spool for the next start; nothing is dropped.
    pub async fn stop(self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        for shared in &self.shared_stages {
            shared.stop().await;
        }
        for (section, service) in self.services {
            if let Err(e) = service.stop().await {
                tracing::warn!(service = section, error = %e, "service did not stop cleanly");
            }
        }
        let _ = self.receiver_stop.send(true);
        for (name, handle) in self.receivers {
            match tokio::time::timeout_at(until, handle).await {
                Ok(Ok(Err(e))) => {
                    tracing::warn!(receiver = name, error = %e, "receiver stopped with an error")
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(receiver = name, "receiver did not stop before the deadline")
                }
            }
        }
        for pipeline in self.pipelines.values() {
            pipeline.flush();
        }
        for spool in &self.spools {
            spool.close();
        }
        let mut left = 0;
        for (name, mut handle) in self.drivers {
            if tokio::time::timeout_at(until, &mut handle).await.is_err() {
                handle.abort();
                left += 1;
                tracing::info!(
                    exporter = name,
                    "drain deadline reached; undelivered data stays in the spool"
                );
            }
        }
        if left == 0 {
            tracing::info!("all exporters drained");
        }
        for replay in self.replays {
            replay.abort();
        }
    }

    /// HTTP routes the shared stages serve on the admin server.
    pub fn http_routes(&self) -> Option<axum::Router> {
        self.shared_stages
            .iter()
            .map(SharedStage::http_routes)
            .reduce(|a, b| a.merge(b))
    }

    /// True while every receiver task is running.
    pub fn healthy(&self) -> Vec<String> {
        self.receivers
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(n, _)| format!("receivers.{n}"))
            .collect()
    }
}
