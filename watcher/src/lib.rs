//! The watcher: alert webhooks → investigation → remediation or human approval (`docs/watcher.md`).
//!
//! It is a processor on Sluice's ingest path (it sees the live stream through a bounded,
//! indexed window) with its HTTP surface on the collector's admin server. See
//! `docs/watcher.md` for configuration, the catalogue format and the safety model.
//!
//! * [`config`] — the `type = "watcher"` settings.
//! * [`alert`], [`auth`] — webhook payloads and authentication.
//! * [`window`] — the processor and the live-stream window.
//! * [`investigate`], [`backends`], [`mcp`] — the checks and the query clients.
//! * [`catalogue`], [`rules`], [`llm`], [`exec`] — what may be done and how it is chosen.
//! * [`engine`], [`store`] — the incident state machine, journal, approvals and audit log.

pub mod alert;
pub mod auth;
pub mod backends;
pub mod config;
mod engine;
pub mod exec;
pub mod finding;
mod http;
pub mod investigate;
pub mod live_window;
pub mod llm;
pub mod mcp;
pub mod notify;
pub mod remediation_catalogue;
pub mod rules;
pub mod selftel;
pub mod stats;
pub mod store;
pub mod template;

pub use config::Config;
pub use engine::IntakeSummary;

use anyhow::Context;
use engine::{Shared, State};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The `type` of this processor in the config file.
pub const TYPE_NAME: &str = "watcher";

/// A running watcher.
pub struct Watcher {
    shared: Arc<Shared>,
    processor: Arc<live_window::WatcherProcessor>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Watcher {
    /// Validates `config`, replays the journal under `storage_dir` (which this watcher owns),
    /// resumes unfinished incidents and starts the window decoder and the approval-expiry
    /// timer. `emit` receives the watcher's own spans and logs.
    pub async fn start(
        config: &Config,
        component_id: &str,
        storage_dir: &Path,
        emit: Option<Arc<dyn sluice_core::Consumer>>,
    ) -> anyhow::Result<Watcher> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
        let catalogue_def = config
            .load_catalogue()
            .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
        let catalogue = remediation_catalogue::CompiledCatalogue::compile(&catalogue_def)
            .map_err(|e| anyhow::anyhow!("{component_id}: {}", e.under("catalogue")))?;
        let rules = rules::RuleSet::compile(&config.rules, &catalogue_def)
            .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
        let rate_limits: HashMap<String, remediation_catalogue::RateLimit> = catalogue_def
            .scripts
            .keys()
            .map(|name| (name.clone(), config.rate_limit_for(name, &catalogue_def)))
            .collect();
        let component: Arc<str> = Arc::from(component_id);
        let now = alert::now_ms();
        let ttl = i64::try_from(config.dedup_ttl.get().as_millis()).unwrap_or(i64::MAX);
        let (journal, replayed) = store::Journal::open(storage_dir, now, ttl)
            .with_context(|| format!("{component_id}: journal in {}", storage_dir.display()))?;
        if replayed.skipped_lines > 0 {
            tracing::warn!(
                lines = replayed.skipped_lines,
                "watcher: skipped unreadable journal lines (a torn write from a crash)"
            );
        }
        let audit = store::Audit::open(storage_dir)
            .with_context(|| format!("{component_id}: audit log in {}", storage_dir.display()))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        let window = Arc::new(live_window::Window::new(
            config.window.max_events,
            config.window.max_age.get(),
        ));
        let mcp = match &config.mcp_url {
            Some(u) => Some(Arc::new(
                mcp::McpClient::new(
                    u,
                    config.mcp_token.clone(),
                    &config.mcp_prometheus_uid,
                    config.source_timeout.get(),
                )
                .map_err(|e| anyhow::anyhow!("mcp_url: building the HTTP client: {e}"))?,
            )),
            None => None,
        };
        let investigator = investigate::Investigator {
            backends: backends::Backends {
                http: http.clone(),
                prometheus: config.prometheus_url.clone(),
                loki: config.loki_url.clone(),
                tempo: config.tempo_url.clone(),
                tenant: config.tenant_id.clone(),
            },
            mcp,
            window: window.clone(),
            budget: config.investigation_budget.get(),
            source_timeout: config.source_timeout.get(),
            lookback: config.lookback.get(),
        };
        let grafana = match (&config.grafana_url, &config.grafana_token) {
            (Some(url), Some(token)) => Some(notify::Grafana {
                http: http.clone(),
                url: url.clone(),
                token: token.clone(),
            }),
            _ => None,
        };
        let mut by_key = HashMap::new();
        for (id, i) in &replayed.incidents {
            by_key.insert(i.key.clone(), id.clone());
        }
        let kill_switch = replayed
            .kill_switch
            .as_ref()
            .map(|(engaged, _, _)| *engaged)
            .unwrap_or(false)
            || config.kill_switch;
        let shared = Arc::new(Shared {
            cfg: config.clone(),
            component_id: component.clone(),
            catalogue,
            rate_limits,
            rules,
            investigator,
            executor: exec::Executor::new()?,
            journal,
            audit,
            selftel: selftel::SelfTelemetry::new(emit, &config.service_name, component.clone()),
            grafana,
            http,
            intake_auth: auth::IntakeAuth::new(config)?,
            approver_auth: auth::ApproverAuth::new(&config.approvers),
            window: window.clone(),
            state: Mutex::new(State {
                incidents: replayed.incidents,
                by_key,
                approvals: replayed.approvals,
                kill_switch,
                runs: HashMap::new(),
            }),
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_incidents)),
            tasks: Mutex::new(Vec::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            refusal_audits: Mutex::new((0, 0)),
        });
        let (tx, rx) = tokio::sync::mpsc::channel(config.window.queue);
        let wstats = Arc::new(live_window::WindowStats::default());
        let processor = Arc::new(live_window::WatcherProcessor {
            component_id: component.clone(),
            tx,
            stats: wstats.clone(),
        });
        let mut background = vec![tokio::spawn(live_window::run_decoder(rx, window, wstats))];
        let expiry = shared.clone();
        let tick = config
            .approval_expiry
            .get()
            .div_f64(20.0)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        background.push(tokio::spawn(async move {
            let mut last_housekeeping = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(tick).await;
                expiry.expire_due().await;
                if last_housekeeping.elapsed() >= Duration::from_secs(60) {
                    last_housekeeping = tokio::time::Instant::now();
                    expiry.housekeeping().await;
                }
            }
        }));
        // Approvals that expired while the watcher was down are settled before anything else.
        shared.expire_due().await;
        shared.resume().await;
        Ok(Watcher {
            shared,
            processor,
            background: Mutex::new(background),
        })
    }

    /// The ingest-path processor: never blocks, never refuses, never changes an item.
    pub fn processor(&self) -> Arc<dyn sluice_core::Processor> {
        self.processor.clone()
    }

    /// Every HTTP route of the watcher (webhooks, approvals, incidents).
    pub fn router(&self) -> axum::Router {
        http::router(self.shared.clone())
    }

    /// Stops all work. Unfinished incidents stay in the journal and resume at the next start;
    /// an action cut off mid-flight is recorded as interrupted and not repeated.
    pub async fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let all: Vec<_> = std::mem::take(&mut *self.shared.tasks.lock());
        // A short grace period lets steps that are about to finish write their records (no
        // new action starts while stopping); the rest is cut and resumes at the next start.
        let grace = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut tasks = Vec::new();
        let mut expired = false;
        for mut t in all {
            if !expired {
                match tokio::time::timeout_at(grace, &mut t).await {
                    Ok(_) => continue,
                    Err(_) => expired = true,
                }
            }
            tasks.push(t);
        }
        let background: Vec<_> = std::mem::take(&mut *self.background.lock());
        for t in tasks.iter().chain(background.iter()) {
            t.abort();
        }
        for t in tasks.into_iter().chain(background) {
            let _ = t.await;
        }
    }

    /// Where the audit log is written.
    pub fn audit_path(&self) -> std::path::PathBuf {
        self.shared.audit.path().to_owned()
    }
}
