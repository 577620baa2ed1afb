//! The running process: the current configuration and topology, readiness, reloads, shutdown.

use crate::config::{self, Config};
use crate::topology::Topology;
use metrics_exporter_prometheus::PrometheusHandle;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// Why a dead-letter replay was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("not running")]
    NotRunning,
    #[error("no pipeline {0:?} in the running config")]
    NoPipeline(String),
    #[error("{0}")]
    Refused(sluice_core::Refusal),
}

/// Why a reload did not take effect (the previous config keeps running where it can).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("new config could not start: {0:#}; restored the previous one")]
    Start(anyhow::Error),
}

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    /// The default shipped inside the binary (`configs/dev.toml`), for `sluice run` with no file.
    Embedded {
        name: &'static str,
        text: &'static str,
    },
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, config::ConfigError> {
        match self {
            ConfigSource::File(p) => config::load_file(p),
            ConfigSource::Embedded { name, text } => {
                config::parse(Path::new(name), text, &|v| std::env::var(v).ok())
            }
        }
    }
}

pub struct App {
    source: ConfigSource,
    storage: PathBuf,
    /// How long a stop may take to deliver what is spooled before leaving it for the next start.
    pub shutdown_timeout: Duration,
    current: Mutex<Option<(Config, Topology)>>,
    ready: AtomicBool,
    metrics: Option<PrometheusHandle>,
    /// Routes the running components serve on the admin server (the watcher's).
    routes: parking_lot::RwLock<Option<axum::Router>>,
    /// Bearer token `/-/reload` and the API's writes need; `None` leaves them open.
    admin_token: Option<Vec<u8>>,
}

impl App {
    pub fn new(
        source: ConfigSource,
        storage: PathBuf,
        shutdown_timeout: Duration,
        metrics: Option<PrometheusHandle>,
    ) -> App {
        App {
            source,
            storage,
            shutdown_timeout,
            current: Mutex::new(None),
            ready: AtomicBool::new(false),
            metrics,
            routes: parking_lot::RwLock::new(None),
            admin_token: None,
        }
    }

    /// Requires `token` (as `Authorization: Bearer`) for reloads and the API's writes.
    pub fn with_admin_token(mut self, token: Option<String>) -> App {
        self.admin_token = token.map(String::into_bytes);
        self
    }

    pub fn has_admin_token(&self) -> bool {
        self.admin_token.is_some()
    }

    /// Checks a request's bearer token against the admin token, in constant time.
    /// `Err` is the refusal reason.
    pub fn check_admin_token(&self, headers: &axum::http::HeaderMap) -> Result<(), &'static str> {
        use subtle::ConstantTimeEq;
        let Some(expected) = &self.admin_token else {
            return Ok(());
        };
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .and_then(|v| {
                let (scheme, token) = v.split_at(v.iter().position(|b| *b == b' ')?);
                scheme
                    .eq_ignore_ascii_case(b"bearer")
                    .then(|| token.trim_ascii())
            });
        match presented {
            None => Err("auth_missing"),
            Some(token) if bool::from(token.ct_eq(expected)) => Ok(()),
            Some(_) => Err("auth_invalid"),
        }
    }

    /// Hands `item` to the running pipeline `name` (dead-letter replay). `Err` names why not.
    pub async fn replay(&self, name: &str, item: sluice_core::Item) -> Result<(), ReplayError> {
        let ticket = match self.current.lock().await.as_ref() {
            Some((_, topology)) => topology.replay(name, item),
            None => return Err(ReplayError::NotRunning),
        };
        match ticket {
            Some(ticket) => ticket.await.map_err(ReplayError::Refused),
            None => Err(ReplayError::NoPipeline(name.to_owned())),
        }
    }

    /// The `--storage.path` directory (spools, dead-letter store).
    pub fn storage(&self) -> &std::path::Path {
        &self.storage
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Loads the configuration and starts it. An error here ends the process.
    pub async fn start(&self) -> anyhow::Result<()> {
        let config = self.source.load().map_err(|e| {
            record_load(false);
            anyhow::anyhow!("{e}")
        })?;
        let topology = Topology::start(&config, &self.storage).await?;
        record_load(true);
        tracing::info!(config = %config.source.display(), listeners = ?topology.listen_addrs, "sluice started");
        *self.routes.write() = topology.http_routes();
        *self.current.lock().await = Some((config, topology));
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Swaps in the configuration as it is now on disk. A bad file keeps the old one running.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let new = match self.source.load() {
            Ok(c) => c,
            Err(e) => {
                record_load(false);
                tracing::error!(error = %e, "reload refused; keeping the running config");
                return Err(e.into());
            }
        };
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(c, _)| c.text == new.text) {
            record_load(true);
            return Ok(());
        }
        self.ready.store(false, Ordering::Release);
        *self.routes.write() = None;
        let old = current.take();
        let old_config = old.as_ref().map(|(c, _)| c.clone());
        if let Some((_, topology)) = old {
            // Undelivered data stays in the spools and the new topology picks it up.
            topology.stop(Duration::from_secs(5)).await;
        }
        match Topology::start(&new, &self.storage).await {
            Ok(t) => {
                *self.routes.write() = t.http_routes();
                *current = Some((new, t));
                self.ready.store(true, Ordering::Release);
                record_load(true);
                tracing::info!("config reloaded");
                Ok(())
            }
            Err(e) => {
                record_load(false);
                let e = ReloadError::Start(e);
                tracing::error!("{e}");
                if let Some(c) = old_config {
                    match Topology::start(&c, &self.storage).await {
                        Ok(t) => {
                            *self.routes.write() = t.http_routes();
                            *current = Some((c, t));
                            self.ready.store(true, Ordering::Release);
                        }
                        Err(e2) => {
                            tracing::error!(error = %e2, "previous config could not be restarted either")
                        }
                    }
                }
                Err(e)
            }
        }
    }

    pub async fn unhealthy(&self) -> Vec<String> {
        match self.current.lock().await.as_ref() {
            Some((_, t)) => t.healthy(),
            None => vec!["pipeline".to_string()],
        }
    }

    /// The running configuration and the addresses its receivers listen on (for the API).
    pub async fn running(&self) -> Option<(Config, Vec<std::net::SocketAddr>)> {
        let current = self.current.lock().await;
        current
            .as_ref()
            .map(|(c, t)| (c.clone(), t.listen_addrs.clone()))
    }

    /// The component routes currently served (none while a reload swaps topologies).
    pub fn component_routes(&self) -> Option<axum::Router> {
        self.routes.read().clone()
    }

    pub fn render_metrics(&self) -> String {
        self.metrics
            .as_ref()
            .map(|h| h.render())
            .unwrap_or_default()
    }

    /// Stops intake and drains within `shutdown_timeout`.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Release);
        if let Some((_, t)) = self.current.lock().await.take() {
            t.stop(self.shutdown_timeout).await;
        }
    }
}

fn record_load(ok: bool) {
    metrics::gauge!("sluice_config_last_load_successful").set(if ok { 1.0 } else { 0.0 });
    if ok {
        let now = sluice_core::time::now().as_duration().as_secs_f64();
        metrics::gauge!("sluice_config_last_load_success_timestamp_seconds").set(now);
    } else {
        metrics::counter!("sluice_config_load_failures_total").increment(1);
    }
}
