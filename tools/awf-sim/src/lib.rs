//! The AWF simulator behind `sluice awf-sim`: a stand-in for AWF's API for demos, tests and
//! benchmarks (API in `docs/awf-events.md` §4).
//!
//! It generates seeded, realistic workflow executions (several agents, frameworks and
//! providers; tokens, cost, latencies; failures, retries, fallbacks) at a controlled rate,
//! serves the executions listing and per-execution SSE streams (honouring `Last-Event-ID`),
//! optionally pushes every event to a push endpoint, and takes fault scenarios and the AWF
//! control endpoints a remediation calls — which really change what it generates.

pub mod deployment;
mod pusher;
mod server;
pub mod world;

use anyhow::Context;
use parking_lot::Mutex;
use sluice_core::InvalidConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use world::World;

/// Simulator settings.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Address of the simulated AWF API. Default `127.0.0.1:8000`.
    pub listen: SocketAddr,
    /// Seed of every random choice. Default `42`.
    pub seed: u64,
    /// Target event rate; new executions start at the rate that produces it. `0` starts
    /// none (executions are then started with `POST /executions`). Default `50`.
    pub events_per_second: f64,
    /// Simulated time runs this many times faster than real time: latencies are divided by
    /// it (`execution_time_ms` still reports the simulated figure). Default `1`.
    pub speed: f64,
    /// Stop starting executions after this many. Default: no limit.
    pub max_executions: Option<u64>,
    /// Also `POST` every event (JSON arrays) to this URL, e.g.
    /// `http://127.0.0.1:4320/v1/awf/events`. Default: off.
    pub push_url: Option<String>,
    /// Events per push request. Default `500`.
    pub push_batch: usize,
    /// Sent as `Authorization: Bearer` with pushes. Default: none.
    pub push_token: Option<String>,
    /// Initial workers (`POST /workers/scale` changes it). Default `8`.
    pub workers: u32,
    /// Concurrent executions per worker; beyond that executions queue. Default `50`.
    pub worker_capacity: u32,
    /// Finished executions kept for the listing and stream replays. Default `2000`.
    pub retain_executions: usize,
    /// SSE keep-alive comment period. Default 15 s.
    #[serde(with = "secs")]
    pub keepalive: Duration,
    /// Share of agent invocations that reject their input (`InputError`): not retried, the
    /// execution fails at once. Default `0.0025` (about 1 % of executions). `0` leaves the
    /// injected faults as the only way an execution fails for good.
    pub input_error_rate: f64,
}

mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = sluice_core::DurationStr::deserialize(d)?;
        Ok(s.get())
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            seed: 42,
            events_per_second: 50.0,
            speed: 1.0,
            max_executions: None,
            push_url: None,
            push_batch: 500,
            push_token: None,
            workers: 8,
            worker_capacity: 50,
            retain_executions: 2000,
            keepalive: Duration::from_secs(15),
            input_error_rate: world::DEFAULT_INPUT_ERROR_RATE,
        }
    }
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !(self.events_per_second.is_finite() && self.events_per_second >= 0.0) {
            return Err(InvalidConfig::new(
                "events_per_second",
                "must be a number >= 0",
            ));
        }
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(InvalidConfig::new("speed", "must be a number > 0"));
        }
        if !(0.0..=1.0).contains(&self.input_error_rate) {
            return Err(InvalidConfig::new(
                "input_error_rate",
                "must be a number from 0 to 1",
            ));
        }
        if self.push_batch == 0 {
            return Err(InvalidConfig::new("push_batch", "must be greater than 0"));
        }
        if let Some(u) = &self.push_url
            && reqwest::Url::parse(u).is_err()
        {
            return Err(InvalidConfig::new(
                "push_url",
                format!("{u:?} is not a URL"),
            ));
        }
        if self.workers == 0 || self.worker_capacity == 0 {
            return Err(InvalidConfig::new(
                "workers",
                "workers and worker_capacity must be greater than 0",
            ));
        }
        if self.keepalive.is_zero() {
            return Err(InvalidConfig::new("keepalive", "must be greater than 0"));
        }
        Ok(())
    }
}

/// State shared by the generator, the HTTP API and the pusher.
pub(crate) struct Sim {
    pub world: Mutex<World>,
    pub cfg: SimConfig,
    started: Instant,
    started_unix_ns: u64,
    pub push_tx: Option<mpsc::Sender<Arc<str>>>,
    pub push_dropped: std::sync::atomic::AtomicU64,
    /// Control actions taken, for `GET /sim/actions`.
    pub actions: Mutex<std::collections::VecDeque<serde_json::Value>>,
}

impl Sim {
    /// Virtual milliseconds since start (`speed` × wall time).
    pub fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0 * self.cfg.speed
    }

    /// Wall-clock Unix nanoseconds (event timestamps).
    pub fn now_unix_ns(&self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.started_unix_ns.saturating_add(elapsed)
    }
}

/// A simulator started with [`start_simulator`].
pub struct SimHandle {
    /// Where the simulated AWF API listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl SimHandle {
    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the simulator and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("simulator task")?
    }
}

/// Runs the simulator on `cfg.listen` until `shutdown` resolves (its output is ignored, so
/// `tokio::signal::ctrl_c()` works as is).
pub async fn run_simulator(cfg: SimConfig, shutdown: impl Future) -> anyhow::Result<()> {
    cfg.validate()?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("awf-sim: cannot listen on {}", cfg.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "AWF simulator listening");
    serve(cfg, listener, shutdown).await
}

/// Starts the simulator in the background (use `listen = 127.0.0.1:0` in tests) and returns
/// its bound address.
pub async fn start_simulator(cfg: SimConfig) -> anyhow::Result<SimHandle> {
    cfg.validate()?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("awf-sim: cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(serve(cfg, listener, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Ok(SimHandle { addr, stop, task })
}

async fn serve(
    cfg: SimConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (push_tx, push_rx) = match &cfg.push_url {
        Some(_) => {
            let (tx, rx) = mpsc::channel(200_000);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let mut world = World::new(
        cfg.seed,
        cfg.workers,
        cfg.worker_capacity,
        cfg.retain_executions,
    );
    world.input_error_rate = cfg.input_error_rate;
    let sim = Arc::new(Sim {
        world: Mutex::new(world),
        started: Instant::now(),
        started_unix_ns: sluice_core::time::now_unix_nanos(),
        push_tx,
        push_dropped: Default::default(),
        actions: Default::default(),
        cfg,
    });
    let generator = tokio::spawn(generate(sim.clone(), stop_rx.clone()));
    let pusher = match (push_rx, sim.cfg.push_url.clone()) {
        (Some(rx), Some(url)) => Some(tokio::spawn(pusher::run(
            sim.clone(),
            rx,
            url,
            stop_rx.clone(),
        ))),
        _ => None,
    };
    let app = server::router(sim.clone(), stop_rx.clone());
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|s| *s).await;
            })
            .await
    });
    let _ = shutdown.await;
    let _ = stop_tx.send(true);
    let _ = generator.await;
    if let Some(p) = pusher {
        let _ = p.await;
    }
    // Open SSE streams end when they see the stop signal; do not wait forever for clients.
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(r)) => r.context("awf-sim server")?,
        Ok(Err(e)) => return Err(anyhow::anyhow!("awf-sim server task: {e}")),
        Err(_) => {}
    }
    Ok(())
}

/// Starts executions at the rate that yields `events_per_second` and runs every due action,
/// never emitting faster than the rate (token bucket).
async fn generate(sim: Arc<Sim>, mut stop: watch::Receiver<bool>) {
    let rate = sim.cfg.events_per_second;
    let tick = Duration::from_millis(5);
    let mut last = Instant::now();
    let mut tokens: f64 = 0.0;
    let mut starts: f64 = 0.0;
    let burst = (rate * 0.05).max(1.0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        // With rate 0 only explicitly started executions run, unthrottled.
        tokens = if rate > 0.0 {
            (tokens + rate * dt).min(burst)
        } else {
            f64::MAX
        };
        let (now_ms, now_ns) = (sim.now_ms(), sim.now_unix_ns());
        let emitted = {
            let mut w = sim.world.lock();
            if rate > 0.0 {
                let per_exec = observed_events_per_execution(&w);
                starts += dt * rate / per_exec;
                while starts >= 1.0 {
                    starts -= 1.0;
                    if sim
                        .cfg
                        .max_executions
                        .is_some_and(|max| w.stats.executions_started >= max)
                    {
                        starts = 0.0;
                        break;
                    }
                    let wf = w.pick_workflow();
                    let _ = w.start_execution(wf, now_ms, now_ns, 0, None, Default::default());
                }
            }
            let budget = tokens.min(1e9) as usize;
            w.advance(now_ms, now_ns, budget)
        };
        if rate > 0.0 {
            tokens -= emitted.len() as f64;
        }
        if emitted.is_empty() {
            continue;
        }
        let mut touched: Vec<&str> = emitted.iter().map(|e| e.execution_id.as_str()).collect();
        touched.dedup();
        {
            let w = sim.world.lock();
            for id in touched {
                if let Some(log) = w.log(id) {
                    log.notify.notify_waiters();
                }
            }
        }
        if let Some(tx) = &sim.push_tx {
            for e in emitted {
                if tx.try_send(e.json).is_err() {
                    sim.push_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
}

/// Events per finished execution so far (retries and fallbacks make it vary), or the
/// deployment's estimate before enough executions finished.
fn observed_events_per_execution(w: &World) -> f64 {
    let finished = w.stats.executions_completed + w.stats.executions_failed;
    let estimate = w.deployment.mean_events_per_execution();
    if finished < 20 {
        return estimate;
    }
    let running_share = w.running() as f64 * estimate / 2.0;
    ((w.stats.events as f64 - running_share) / finished as f64)
        .clamp(estimate / 2.0, estimate * 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_simulator_stops_on_shutdown_and_accepts_ctrl_c() {
        let cfg = SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        // Any future works as the shutdown signal, whatever its output.
        drop(run_simulator(cfg.clone(), tokio::signal::ctrl_c()));
        let done = tokio::time::timeout(
            Duration::from_secs(10),
            run_simulator(cfg, tokio::time::sleep(Duration::from_millis(100))),
        )
        .await;
        assert!(matches!(done, Ok(Ok(()))), "{done:?}");
    }

    #[test]
    fn config_parses_and_validates() {
        let c: SimConfig = toml::from_str(
            "listen = \"0.0.0.0:8000\"\nevents_per_second = 10000\nkeepalive = \"5s\"\npush_url = \"http://127.0.0.1:4320/v1/awf/events\"",
        )
        .unwrap();
        assert_eq!(c.keepalive, Duration::from_secs(5));
        assert!(c.validate().is_ok());
        let bad = SimConfig {
            speed: 0.0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "speed");
        let bad = SimConfig {
            input_error_rate: 1.5,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "input_error_rate");
        assert!(toml::from_str::<SimConfig>("typo = 1").is_err());
    }
}
