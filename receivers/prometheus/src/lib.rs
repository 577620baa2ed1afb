//! `prometheus_scrape` receiver (Alloy `prometheus.scrape`): scrapes Prometheus text and
//! OpenMetrics endpoints as Prometheus does — static targets and file service discovery,
//! `relabel_configs` / `metric_relabel_configs`, `honor_labels`, the report series (`up`,
//! `scrape_duration_seconds`, ...), staleness markers — and hands each scrape to the pipeline
//! as one OTLP item in the pass-through form (`sluice_core::prometheus`), so the remote-write
//! exporter sends exactly the scraped names, labels, values and timestamps.
//!
//! * [`parse`]: the two text formats.
//! * [`relabel`], [`target`]: relabeling and what a target's labels and URL are.
//! * [`file_sd`]: target files.
//! * [`scrape`]: one scrape → series, report series and stale markers.
//! * [`otlp`]: series → the OTLP item.

mod config;
pub mod file_sd;
pub mod otlp;
pub mod parse;
pub mod relabel;
pub mod scrape;
pub mod target;

pub use config::{Config, FileSdConfig, TargetGroup};

use file_sd::FileDiscovery;
use futures::future::BoxFuture;
use parse::Format;
use relabel::Rule;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use scrape::{Outcome, SeriesCache};
use sluice_core::retry::Backoff;
use sluice_core::telemetry::{receiver_accepted, receiver_refused, receiver_request};
use sluice_core::{Item, Receiver, ReceiverContext, ReceiverError, Refusal, Signal, reason};
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use target::{Skipped, Target};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TYPE_NAME: &str = "prometheus_scrape";

/// Scrapes done, per target.
pub const SCRAPES: &str = "sluice_prometheus_scrape_scrapes_total";
/// Scrapes that failed, per target and `reason` (`timeout`, `connect`, `transport`, an HTTP
/// status reason, `too_large`, `malformed`).
pub const FAILED_SCRAPES: &str = "sluice_prometheus_scrape_failed_scrapes_total";
/// Samples kept after `metric_relabel_configs`, per target.
pub const SAMPLES: &str = "sluice_prometheus_scrape_samples_total";
/// Samples left out, per target and `reason` (`duplicate`: a second sample of one series in
/// one scrape).
pub const DROPPED_SAMPLES: &str = "sluice_prometheus_scrape_dropped_samples_total";
/// Stale markers written, per target.
pub const STALE_MARKERS: &str = "sluice_prometheus_scrape_stale_markers_total";
/// Time a scrape took (request and parse), per target.
pub const DURATION: &str = "sluice_prometheus_scrape_duration_seconds";
/// Targets being scraped.
pub const TARGETS: &str = "sluice_prometheus_scrape_targets";
/// Discovered targets not scraped, by `reason` (`relabel_dropped`, `invalid_address`).
pub const SKIPPED_TARGETS: &str = "sluice_prometheus_scrape_skipped_targets_total";

/// Sent with every scrape, so targets can tell Sluice from Prometheus in their logs.
pub const USER_AGENT: &str = concat!("Sluice/", env!("CARGO_PKG_VERSION"));

/// What Prometheus 2 sends: OpenMetrics preferred, the text format as fallback.
const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

pub struct ScrapeReceiver {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    component_id: Arc<str>,
    job: String,
    client: reqwest::Client,
    target_rules: Vec<Rule>,
    metric_rules: Vec<Rule>,
    authorization: Option<reqwest::header::HeaderValue>,
}

/// `receivers.NAME` → `NAME`, the default `job_name`.
fn default_job(component_id: &str) -> &str {
    component_id
        .split_once('.')
        .map_or(component_id, |(_, name)| name)
}

pub fn build(config: &Config, component_id: &str) -> anyhow::Result<ScrapeReceiver> {
    let fail = |e: sluice_core::InvalidConfig| anyhow::anyhow!("{component_id}: {e}");
    config.validate().map_err(fail)?;
    let target_rules =
        relabel::compile(&config.relabel_configs).map_err(|e| fail(e.under("relabel_configs")))?;
    let metric_rules = relabel::compile(&config.metric_relabel_configs)
        .map_err(|e| fail(e.under("metric_relabel_configs")))?;
    let client = sluice_http_client::build_client(
        &config.tls,
        &sluice_http_client::ClientOptions {
            user_agent: Some(USER_AGENT),
            ..sluice_http_client::ClientOptions::with_timeout(config.scrape_timeout.get())
        },
    )
    .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    let authorization = sluice_http_client::authorization(
        config.basic_auth.as_ref(),
        config.bearer_token.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    Ok(ScrapeReceiver {
        shared: Arc::new(Shared {
            job: config
                .job_name
                .clone()
                .unwrap_or_else(|| default_job(component_id).to_owned()),
            config: config.clone(),
            component_id: component_id.into(),
            client,
            target_rules,
            metric_rules,
            authorization,
        }),
    })
}

impl Receiver for ScrapeReceiver {
    fn listen_addrs(&self) -> Vec<std::net::SocketAddr> {
        Vec::new()
    }

    fn run(self: Box<Self>, ctx: ReceiverContext) -> BoxFuture<'static, Result<(), ReceiverError>> {
        Box::pin(async move { serve(self.shared, ctx).await })
    }
}

struct RunningLoop {
    removed: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn now_ms() -> i64 {
    sluice_core::time::now().as_millisecond()
}

/// Keeps one scrape loop per discovered target until shutdown.
async fn serve(shared: Arc<Shared>, ctx: ReceiverContext) -> Result<(), ReceiverError> {
    let id = shared.component_id.clone();
    if !ctx.consumer.accepts(Signal::Metrics) {
        return Err(ReceiverError::new(
            id.to_string(),
            "no pipeline takes metrics from this receiver",
        ));
    }
    let mut discovery = (!shared.config.file_sd_configs.is_empty())
        .then(|| FileDiscovery::new(shared.config.file_sd_configs.clone(), &id));
    let mut file_groups: Vec<TargetGroup> = Vec::new();
    let mut running: HashMap<Target, RunningLoop> = HashMap::new();
    let mut first = true;
    loop {
        let changed = match discovery.as_mut() {
            Some(d) => match d.poll(Instant::now()) {
                Some(groups) => {
                    file_groups = groups;
                    true
                }
                None => false,
            },
            None => false,
        };
        if first || changed {
            first = false;
            let wanted = targets(&shared, &file_groups);
            running.retain(|target, l| {
                if wanted.contains(target) {
                    return true;
                }
                tracing::info!(component_id = %id, url = %target.url, "target removed");
                let _ = std::mem::replace(&mut l.removed, oneshot::channel().0).send(());
                false
            });
            for target in wanted {
                if running.contains_key(&target) {
                    continue;
                }
                tracing::info!(component_id = %id, url = %target.url, "target added");
                let (tx, rx) = oneshot::channel();
                let task =
                    tokio::spawn(scrape_loop(shared.clone(), ctx.clone(), target.clone(), rx));
                running.insert(target, RunningLoop { removed: tx, task });
            }
            metrics::gauge!(TARGETS, "component_id" => id.to_string()).set(running.len() as f64);
        }
        tokio::select! {
            _ = ctx.stopped() => break,
            _ = tokio::time::sleep(FileDiscovery::POLL), if discovery.is_some() => {}
        }
    }
    // Shutdown (or reload) writes no stale markers: the same targets are normally scraped
    // again at once, as Prometheus does on a restart.
    for (_, l) in running {
        let _ = l.task.await;
    }
    Ok(())
}

/// The targets of the static and discovered groups, after `relabel_configs`.
fn targets(shared: &Shared, file_groups: &[TargetGroup]) -> BTreeSet<Target> {
    let mut out = BTreeSet::new();
    for group in shared.config.static_configs.iter().chain(file_groups) {
        for address in &group.targets {
            match target::populate(
                &shared.config,
                &shared.job,
                &shared.target_rules,
                group,
                address,
            ) {
                Ok(t) => {
                    out.insert(t);
                }
                Err(skipped) => {
                    let reason = match &skipped {
                        Skipped::Dropped => "relabel_dropped",
                        Skipped::Invalid(why) => {
                            tracing::warn!(component_id = %shared.component_id, %address, %why, "target skipped");
                            "invalid_address"
                        }
                    };
                    metrics::counter!(SKIPPED_TARGETS, "component_id" => shared.component_id.to_string(), "reason" => reason)
                        .increment(1);
                }
            }
        }
    }
    out
}

/// Spreads targets over the interval (as Prometheus does), stable per target.
fn offset(target: &Target, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    target.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

async fn scrape_loop(
    shared: Arc<Shared>,
    ctx: ReceiverContext,
    target: Target,
    mut removed: oneshot::Receiver<()>,
) {
    let interval = shared.config.scrape_interval.get();
    let start = tokio::time::Instant::now() + offset(&target, interval);
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut cache = SeriesCache::default();
    let mut last_failure: Option<&'static str> = None;
    loop {
        tokio::select! {
            _ = ctx.stopped() => return,
            _ = &mut removed => {
                let points = cache.end(&target, now_ms());
                if !points.is_empty() {
                    let deadline = tokio::time::Instant::now() + interval;
                    deliver(&shared, &ctx, &target, &points, deadline).await;
                }
                return;
            }
            _ = ticker.tick() => {}
        }
        let timestamp_ms = now_ms();
        let started = Instant::now();
        let fetched = tokio::select! {
            _ = ctx.stopped() => return,
            fetched = fetch(&shared, &target) => fetched,
        };
        let took = started.elapsed();
        let labels = [
            ("component_id", shared.component_id.to_string()),
            ("target", target.instance().to_owned()),
        ];
        metrics::counter!(SCRAPES, &labels).increment(1);
        metrics::histogram!(DURATION, &labels).record(took.as_secs_f64());
        let outcome = match fetched {
            Ok(exposition) => {
                if last_failure.take().is_some() {
                    tracing::info!(component_id = %shared.component_id, url = %target.url, "target scraped again");
                }
                receiver_request(&shared.component_id, "scrape", "ok".into(), took);
                Outcome::Scraped(exposition)
            }
            Err((reason, message)) => {
                if last_failure != Some(reason) {
                    tracing::warn!(component_id = %shared.component_id, url = %target.url, reason, %message, "scrape failed");
                }
                last_failure = Some(reason);
                receiver_request(&shared.component_id, "scrape", reason.to_owned(), took);
                metrics::counter!(FAILED_SCRAPES, "component_id" => shared.component_id.to_string(), "target" => target.instance().to_owned(), "reason" => reason)
                    .increment(1);
                Outcome::Failed
            }
        };
        let report = cache.process(
            &target,
            outcome,
            timestamp_ms,
            took.as_secs_f64(),
            &scrape::SampleRules {
                honor_labels: shared.config.honor_labels,
                honor_timestamps: shared.config.honor_timestamps,
                metric_relabel: &shared.metric_rules,
            },
        );
        metrics::counter!(SAMPLES, &labels).increment(report.post_relabel);
        if report.duplicates > 0 {
            metrics::counter!(DROPPED_SAMPLES, "component_id" => shared.component_id.to_string(), "target" => target.instance().to_owned(), "reason" => "duplicate")
                .increment(report.duplicates);
        }
        if report.stale_markers > 0 {
            metrics::counter!(STALE_MARKERS, &labels).increment(report.stale_markers);
        }
        let deadline = ticker_deadline(&ticker);
        deliver(&shared, &ctx, &target, &report.points, deadline).await;
    }
}

/// When the next scrape is due: a scrape still refused then is given up.
fn ticker_deadline(ticker: &tokio::time::Interval) -> tokio::time::Instant {
    tokio::time::Instant::now() + ticker.period()
}

/// Fetches and parses one scrape; an error is a `reason` and a message.
async fn fetch(
    shared: &Shared,
    target: &Target,
) -> Result<parse::Exposition, (&'static str, String)> {
    let timeout = shared.config.scrape_timeout.get();
    let mut request = shared
        .client
        .get(&target.url)
        .header(ACCEPT, ACCEPT_HEADER)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        )
        .timeout(timeout);
    if let Some(auth) = &shared.authorization {
        request = request.header(reqwest::header::AUTHORIZATION, auth.clone());
    }
    let classify = |e: &reqwest::Error| {
        if e.is_timeout() {
            reason::TIMEOUT
        } else if e.is_connect() {
            reason::CONNECT
        } else {
            reason::TRANSPORT
        }
    };
    let response = request
        .send()
        .await
        .map_err(|e| (classify(&e), sluice_http_client::body::error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err((
            reason::for_http_status(status.as_u16()),
            format!("HTTP {status}"),
        ));
    }
    let format = Format::from_content_type(
        response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let limit = shared.config.body_size_limit.as_usize();
    let body = sluice_http_client::body::read_body(response, limit)
        .await
        .map_err(|e| match e {
            sluice_http_client::body::BodyError::TooLarge { .. } => {
                (reason::TOO_LARGE, e.to_string())
            }
            sluice_http_client::body::BodyError::Read(ref inner) => {
                let timed_out = inner
                    .downcast_ref::<reqwest::Error>()
                    .is_some_and(reqwest::Error::is_timeout);
                let reason = if timed_out {
                    reason::TIMEOUT
                } else {
                    reason::TRANSPORT
                };
                (reason, e.to_string())
            }
        })?;
    let text =
        std::str::from_utf8(&body).map_err(|e| (reason::MALFORMED, format!("not UTF-8: {e}")))?;
    parse::parse(text, format).map_err(|e| (reason::MALFORMED, e.to_string()))
}

/// Hands one scrape's points to the pipeline, retrying back-pressure until `deadline`.
async fn deliver(
    shared: &Shared,
    ctx: &ReceiverContext,
    target: &Target,
    points: &[scrape::Point],
    deadline: tokio::time::Instant,
) {
    if points.is_empty() {
        return;
    }
    let id = &shared.component_id;
    let (payload, count) = otlp::encode(
        points,
        target.label("job").unwrap_or(&shared.job),
        target.instance(),
    );
    let item = Item::new(Signal::Metrics, payload, count);
    let mut backoff = Backoff::new(&shared.config.retry);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        match ctx.consumer.consume(item.clone()).await {
            Ok(()) => {
                receiver_accepted(id, Signal::Metrics, u64::from(count));
                return;
            }
            Err(refusal) => {
                receiver_refused(
                    id,
                    Some(Signal::Metrics),
                    refusal.reason(),
                    u64::from(count),
                );
                let retry_after = match &refusal {
                    Refusal::Backpressure { retry_after, .. } => Some(*retry_after),
                    _ => None,
                };
                let wait = backoff.next_delay(retry_after);
                if !refusal.is_retryable() || tokio::time::Instant::now() + wait >= deadline {
                    tracing::warn!(component_id = %id, url = %target.url, %refusal, "scrape not delivered; dropped");
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config(extra: &str) -> Config {
        toml::from_str(&format!(
            "static_configs = [{{ targets = [\"127.0.0.1:1\"] }}]\n{extra}"
        ))
        .unwrap()
    }

    /// The request heads a test server saw.
    #[derive(Default)]
    struct Heads(std::sync::Mutex<Vec<String>>);

    impl Heads {
        fn push(&self, head: String) {
            if let Ok(mut v) = self.0.lock() {
                v.push(head);
            }
        }

        fn first(&self) -> String {
            self.0
                .lock()
                .map(|v| v.first().cloned().unwrap_or_default())
                .unwrap_or_default()
        }
    }

    /// An HTTP/1.1 server answering every request with `response`; returns its address and
    /// the request heads it saw.
    async fn server(response: String) -> (String, Arc<Heads>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heads = Arc::new(Heads::default());
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (addr, heads)
    }

    fn response(status: &str, content_type: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    async fn scrape(extra: &str, addr: &str) -> Result<parse::Exposition, (&'static str, String)> {
        let receiver = build(&config(extra), "receivers.scrape").unwrap();
        let target = Target {
            url: format!("http://{addr}/metrics"),
            labels: vec![("instance".into(), addr.into())],
        };
        fetch(&receiver.shared, &target).await
    }

    #[tokio::test]
    async fn negotiates_like_prometheus_and_parses_by_content_type() {
        let (addr, heads) = server(response(
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "# TYPE c counter\nc_total 2.0\n# EOF\n",
        ))
        .await;
        let exposition = scrape("", &addr).await.unwrap();
        assert_eq!(exposition.samples[0].name, "c_total");
        let head = heads.first().to_ascii_lowercase();
        assert!(
            head.contains(&format!("accept: {}", ACCEPT_HEADER.to_ascii_lowercase())),
            "{head}"
        );
        assert!(head.contains("user-agent: sluice/"), "{head}");
        assert!(
            head.contains("x-prometheus-scrape-timeout-seconds: 10"),
            "{head}"
        );

        // The same body as text/plain is a text exposition; `# EOF` is a comment there.
        let (addr, _) = server(response(
            "200 OK",
            "text/plain; version=0.0.4",
            "c_total 2\n",
        ))
        .await;
        assert_eq!(scrape("", &addr).await.unwrap().samples.len(), 1);
    }

    #[tokio::test]
    async fn failures_are_named_by_reason() {
        let (addr, _) = server(response("404 Not Found", "text/plain", "no")).await;
        assert_eq!(scrape("", &addr).await.unwrap_err().0, "not_found");
        let (addr, _) = server(response("503 Service Unavailable", "text/plain", "")).await;
        assert_eq!(scrape("", &addr).await.unwrap_err().0, "server_error");
        // OpenMetrics without `# EOF`, and a broken line: the whole scrape fails.
        let (addr, _) = server(response(
            "200 OK",
            "application/openmetrics-text",
            "c_total 1\n",
        ))
        .await;
        let (reason, message) = scrape("", &addr).await.unwrap_err();
        assert_eq!(reason, "malformed");
        assert!(message.contains("# EOF"), "{message}");
        let (addr, _) = server(response("200 OK", "text/plain", "ok 1\nbad{ 2\n")).await;
        let (reason, message) = scrape("", &addr).await.unwrap_err();
        assert_eq!(reason, "malformed");
        assert!(message.starts_with("line 2:"), "{message}");
        let big = format!("a 1\n{}", "# filler\n".repeat(300));
        let (addr, _) = server(response("200 OK", "text/plain", &big)).await;
        assert_eq!(
            scrape("body_size_limit = \"1KiB\"", &addr)
                .await
                .unwrap_err()
                .0,
            "too_large"
        );
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            scrape("", &format!("127.0.0.1:{port}"))
                .await
                .unwrap_err()
                .0,
            "connect"
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        for (text, key) in [
            ("static_configs = []", "static_configs"),
            (
                "static_configs = [{ targets = [\"http://h:1/x\"] }]",
                "static_configs[0].targets[0]",
            ),
            (
                "static_configs = [{ targets = [\"h:1\"], labels = { \"a-b\" = \"v\" } }]",
                "static_configs[0].labels.a-b",
            ),
            (
                "static_configs = [{ targets = [\"h:1\"] }]\nscrape_interval = \"5s\"\nscrape_timeout = \"10s\"",
                "scrape_timeout",
            ),
            (
                "file_sd_configs = [{ files = [\"/etc/*/x.json\"] }]",
                "file_sd_configs[0].files[0]",
            ),
            (
                "static_configs = [{ targets = [\"h:1\"] }]\nscheme = \"ftp\"",
                "scheme",
            ),
            (
                "static_configs = [{ targets = [\"h:1\"] }]\nmetrics_path = \"metrics\"",
                "metrics_path",
            ),
            (
                "static_configs = [{ targets = [\"h:1\"] }]\nrelabel_configs = [{ regex = \"(\", target_label = \"x\" }]",
                "relabel_configs[0].regex",
            ),
            (
                "static_configs = [{ targets = [\"h:1\"] }]\nscrape_intervall = \"1s\"",
                "scrape_intervall",
            ),
        ] {
            let c: Config = toml::from_str(text).unwrap();
            assert_eq!(c.validate().unwrap_err().key, key, "{text}");
        }
        assert_eq!(default_job("receivers.node"), "node");
        let b = build(&config("job_name = \"custom\""), "receivers.node").unwrap();
        assert_eq!(b.shared.job, "custom");
    }
}
