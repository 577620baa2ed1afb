//! Starting and stopping a whole configuration: receivers, pipelines (spools), exporter drivers.

use crate::config::Config;
use crate::pipeline::{DriverSettings, LateConsumer, PipelineIngest, Router};
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
    simulator: Option<crate::awf_sim::SimHandle>,
    watchers: Vec<sluice_watcher::Watcher>,
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

        // The simulator and the watcher are started here rather than through the registry's
        // per-pipeline `build`: the simulator is no pipeline component (a stand-in AWF server
        // with no consumer, its own `[awf_simulator]` section, started before the receivers
        // that connect to it), and the watcher is one instance shared by every pipeline that
        // lists it (one incident state, HTTP routes on the admin server, its own telemetry fed
        // back into those pipelines), where a registered processor is one stage per pipeline.
        let simulator = match &config.awf_simulator {
            Some(sim) => Some(
                crate::awf_sim::start_simulator(sim.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("awf_simulator: {e:#}"))?,
            ),
            None => None,
        };
        if let Some(sim) = &simulator {
            tracing::info!(url = %sim.base_url(), "AWF simulator running");
        }

        // Watchers start before the pipelines they sit in; their own telemetry is routed once
        // those pipelines exist.
        let mut watchers = BTreeMap::new();
        for (name, pc) in &config.processors {
            let Some(wc) = pc.watcher() else { continue };
            if !config.pipelines.iter().any(|p| p.processors.contains(name)) {
                continue;
            }
            let emit = Arc::new(LateConsumer::default());
            let dir = storage.join("watcher").join(name);
            let component_id = format!("processors.{name}");
            let watcher =
                sluice_watcher::Watcher::start(wc, &component_id, &dir, Some(emit.clone()))
                    .await
                    .map_err(|e| anyhow::anyhow!("{component_id}: {e:#}"))?;
            watchers.insert(name.clone(), (watcher, emit, Vec::new()));
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
                if let Some(b) = pc.batch_settings() {
                    batch = b.clone();
                }
                let component_id = format!("processors.{name}");
                let ctx = sluice_processors::Context::new(&component_id, &p.name);
                if let Some((watcher, _, _)) = watchers.get(name) {
                    stages.push((sluice_processors::Stage::Item(watcher.processor()), ctx));
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
                if let Some((_, _, own_routes)) = watchers.get_mut(name) {
                    own_routes.extend(p.signals.iter().map(|s| (*s, ingest.clone())));
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
        let watchers = watchers
            .into_values()
            .map(|(watcher, emit, own_routes)| {
                emit.set(Arc::new(Router::new(own_routes)));
                watcher
            })
            .collect();
        Ok(Topology {
            pipelines,
            simulator,
            watchers,
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
        for w in &self.watchers {
            w.stop().await;
        }
        if let Some(sim) = self.simulator
            && let Err(e) = sim.stop().await
        {
            tracing::warn!(error = %e, "AWF simulator did not stop cleanly");
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

    /// HTTP routes components serve on the admin server (the watcher's webhooks and approvals).
    pub fn http_routes(&self) -> Option<axum::Router> {
        self.watchers
            .iter()
            .map(|w| w.router())
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
