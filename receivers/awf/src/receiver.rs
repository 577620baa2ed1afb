//! The `type = "awf"` receiver: follows AWF SSE streams (fixed and discovered), serves the
//! push endpoint, and delivers the converted traces, logs and metrics to its pipelines.

use crate::config::default_max_premature_ends;
pub use crate::config::{Config, DiscoveryConfig, PushConfig, TlsConfig};
use crate::convert::Converter;
use crate::deliver::Shared;
use crate::stream::{StreamEnd, StreamKind, StreamSettings, follow};
use crate::{discovery, push};
use anyhow::Context;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_core::{Receiver, ReceiverContext, ReceiverError, Signal};
use sluice_http_client as http_client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The `type` of this receiver in `[receivers.<name>]`.
pub const TYPE_NAME: &str = "awf";

/// How long push requests may take to finish after shutdown is requested.
const PUSH_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Signals this receiver produces.
pub const SIGNALS: &[Signal] = &[Signal::Traces, Signal::Metrics, Signal::Logs];

/// A built AWF receiver: its push listener (if any) is bound, its HTTP client ready.
pub struct AwfReceiver {
    config: Config,
    push_listener: Option<std::net::TcpListener>,
    push_addr: Option<SocketAddr>,
    push_tls: Option<tokio_rustls::TlsAcceptor>,
    client: reqwest::Client,
    settings: Arc<StreamSettings>,
}

impl std::fmt::Debug for AwfReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwfReceiver")
            .field("push_addr", &self.push_addr)
            .field("streams", &self.config.streams)
            .finish_non_exhaustive()
    }
}

/// Builds the receiver: validates `config`, binds the push listener, prepares the client.
pub fn build(config: &Config, component_id: &str) -> anyhow::Result<AwfReceiver> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    let (push_listener, push_addr) = match &config.push {
        Some(p) => {
            let listener = std::net::TcpListener::bind(&p.endpoint).with_context(|| {
                format!(
                    "{component_id}: push.endpoint: cannot listen on {}",
                    p.endpoint
                )
            })?;
            listener
                .set_nonblocking(true)
                .context("push.endpoint: cannot make the listener non-blocking")?;
            let addr = listener.local_addr()?;
            (Some(listener), Some(addr))
        }
        None => (None, None),
    };
    // Certificates are read at start, so a bad file fails here, naming its key.
    let push_tls = config
        .push
        .as_ref()
        .and_then(|p| p.tls.as_ref())
        .map(|t| sluice_http_server::tls::acceptor(t, "push.", &[b"h2", b"http/1.1"]))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{component_id}: {e:#}"))?;
    let mut headers = HeaderMap::new();
    for (k, v) in &config.headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).with_context(|| format!("headers: {k:?}"))?;
        let value = HeaderValue::from_str(v).with_context(|| format!("headers: value of {k:?}"))?;
        headers.insert(name, value);
    }
    http_client::insert_authorization(&mut headers, None, config.bearer_token.as_deref())
        .context("bearer_token: invalid")?;
    // No request deadline: SSE responses stream for as long as the execution runs; the
    // idle timeout bounds a silent stream instead.
    let client = http_client::build_client(
        &config.tls,
        &http_client::ClientOptions {
            timeout: None,
            connect_timeout: config.connect_timeout.get(),
            user_agent: Some(concat!("sluice-awf/", env!("CARGO_PKG_VERSION"))),
        },
    )?;
    let settings = Arc::new(StreamSettings {
        headers,
        idle_timeout: config.idle_timeout.get(),
        reconnect_delay: config.reconnect_delay.get(),
        max_reconnect_delay: config.max_reconnect_delay.get(),
        max_event_bytes: config.max_event_size.as_usize(),
        max_premature_ends: config
            .discovery
            .as_ref()
            .map_or_else(default_max_premature_ends, |d| d.max_premature_ends),
    });
    Ok(AwfReceiver {
        config: config.clone(),
        push_listener,
        push_addr,
        push_tls,
        client,
        settings,
    })
}

impl AwfReceiver {
    /// The bound push address (useful with port 0).
    pub fn push_addr(&self) -> Option<SocketAddr> {
        self.push_addr
    }

    async fn serve(self, ctx: ReceiverContext) -> Result<(), ReceiverError> {
        let converter = Converter::new(self.config.convert_config());
        let tenant = self.config.tenant.as_deref().map(Arc::from);
        let shared = Arc::new(Shared::new(ctx.clone(), converter, tenant));
        let mut tasks: JoinSet<()> = JoinSet::new();

        if let (Some(listener), Some(push_cfg)) = (self.push_listener, &self.config.push) {
            let listener = sluice_http_server::Listener::new(
                listener,
                push_cfg.limits(),
                self.push_tls,
                sluice_http_server::Labels::new(&ctx.component_id, "push"),
            )
            .map_err(|e| ReceiverError::new("push.endpoint", e))?;
            let app = push::router(
                shared.clone(),
                push_cfg,
                self.config.max_event_size.as_usize(),
            );
            let stop = shared.clone();
            tasks.spawn(sluice_http_server::serve_http(
                listener,
                sluice_http_server::TowerToHyperService::new(app),
                async move { stop.ctx.stopped().await },
                PUSH_SHUTDOWN_GRACE,
            ));
        }
        for url in &self.config.streams {
            let (shared, client, settings, url) = (
                shared.clone(),
                self.client.clone(),
                self.settings.clone(),
                url.clone(),
            );
            tasks.spawn(async move {
                let mut last_id = String::new();
                let end = follow(
                    &shared,
                    &client,
                    &settings,
                    &url,
                    &StreamKind::Fixed,
                    &mut last_id,
                )
                .await;
                if end != StreamEnd::Stopped {
                    tracing::info!(url, ?end, "stopped following AWF event stream");
                }
            });
        }
        if let Some(d) = &self.config.discovery {
            tasks.spawn(discovery::run(
                shared.clone(),
                self.client.clone(),
                self.settings.clone(),
                d.clone(),
            ));
        }
        // Timers: step/execution timeouts and the periodic cumulative metrics.
        let timers = shared.clone();
        let metrics_every = self.config.metrics_interval.get();
        let expire_every = (self.config.step_timeout.get() / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        tasks.spawn(async move {
            let mut metrics_tick = tokio::time::interval(metrics_every);
            let mut expire_tick = tokio::time::interval(expire_every);
            metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            expire_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = metrics_tick.tick() => timers.flush_metrics().await,
                    _ = expire_tick.tick() => timers.expire().await,
                    _ = timers.ctx.stopped() => break,
                }
            }
        });

        ctx.stopped().await;
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
        // Last totals, so a clean shutdown loses no count.
        shared.flush_metrics().await;
        Ok(())
    }
}

impl Receiver for AwfReceiver {
    fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.push_addr.into_iter().collect()
    }

    fn run(self: Box<Self>, ctx: ReceiverContext) -> BoxFuture<'static, Result<(), ReceiverError>> {
        Box::pin((*self).serve(ctx))
    }
}
