//! The JSON API under `/api/v1/` and the web UI at `/` (docs/api.md). Both read what the
//! process already has: the running config, the self-metrics (`/metrics`), and the watcher's
//! own routes, which `/api/v1/incidents` and `/api/v1/approvals` forward to with their
//! authentication unchanged.

use crate::app::App;
use crate::config::Config;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far back rates look at most; older samples are dropped.
const RATE_HISTORY: Duration = Duration::from_secs(30);
/// Rates need two samples at least this far apart.
const RATE_MIN_WINDOW: Duration = Duration::from_millis(900);

pub struct ApiState {
    app: Arc<App>,
    samples: Mutex<VecDeque<(Instant, Arc<Metrics>)>>,
    started: Instant,
}

pub fn router(app: Arc<App>) -> Router {
    let state = Arc::new(ApiState {
        app,
        samples: Mutex::new(VecDeque::new()),
        started: Instant::now(),
    });
    Router::new()
        .route("/", get(ui_index))
        .route("/ui/app.js", get(ui_js))
        .route("/ui/style.css", get(ui_css))
        .route("/api/v1/status", get(status))
        .route("/api/v1/components", get(components))
        .route("/api/v1/config", get(running_config))
        .route("/api/v1/incidents", get(forward_to_watcher))
        .route("/api/v1/incidents/{id}", get(forward_to_watcher))
        .route("/api/v1/approvals/pending", get(forward_to_watcher))
        .route("/api/v1/approvals/{id}", get(forward_to_watcher))
        .route(
            "/api/v1/approvals/{id}/approve",
            axum::routing::post(forward_to_watcher),
        )
        .route(
            "/api/v1/approvals/{id}/reject",
            axum::routing::post(forward_to_watcher),
        )
        .with_state(state)
}

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // The UI loads nothing from elsewhere (no CDN); the policy makes that a guarantee.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn ui_index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn ui_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn ui_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

async fn status(State(s): State<Arc<ApiState>>) -> Response {
    let unhealthy = s.app.unhealthy().await;
    let config = s.app.running().await;
    json_response(
        StatusCode::OK,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": s.app.is_ready(),
            "healthy": unhealthy.is_empty(),
            "unhealthy": unhealthy,
            "uptime_seconds": s.started.elapsed().as_secs(),
            "config_source": config.map(|(c, _)| c.source.display().to_string()),
        }),
    )
}

async fn components(State(s): State<Arc<ApiState>>) -> Response {
    let Some((config, listen)) = s.app.running().await else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no configuration is running (starting or reloading)"}),
        );
    };
    let now = Arc::new(Metrics::parse(&s.app.render_metrics()));
    let previous = s.sample(now.clone());
    let unhealthy = s.app.unhealthy().await;
    json_response(
        StatusCode::OK,
        graph(&config, &listen, &now, previous.as_ref(), &unhealthy),
    )
}

impl ApiState {
    /// Records `now` and returns the newest earlier sample old enough to compute rates from.
    fn sample(&self, now: Arc<Metrics>) -> Option<(Duration, Arc<Metrics>)> {
        let t = Instant::now();
        let mut samples = self.samples.lock();
        while samples
            .front()
            .is_some_and(|(at, _)| t.duration_since(*at) > RATE_HISTORY)
        {
            samples.pop_front();
        }
        let previous = samples
            .iter()
            .rev()
            .find(|(at, _)| t.duration_since(*at) >= RATE_MIN_WINDOW)
            .map(|(at, m)| (t.duration_since(*at), m.clone()));
        // One sample per window is enough; many browsers polling must not grow the history.
        if samples
            .back()
            .is_none_or(|(at, _)| t.duration_since(*at) >= RATE_MIN_WINDOW)
        {
            samples.push_back((t, now));
        }
        previous
    }
}

async fn running_config(State(s): State<Arc<ApiState>>) -> Response {
    let Some((config, _)) = s.app.running().await else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no configuration is running (starting or reloading)"}),
        );
    };
    match masked_config(&config) {
        Ok((toml_text, value)) => json_response(
            StatusCode::OK,
            json!({
                "source": config.source.display().to_string(),
                "format": if is_alloy(&config) { "alloy (shown as its TOML equivalent)" } else { "toml" },
                "toml": toml_text,
                "config": value,
            }),
        ),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

/// `/api/v1/incidents[/{id}]` → `/watcher/incidents[/{id}]`, `/api/v1/approvals/...` →
/// `/approvals/...`: the watcher answers, with its own approver-token check (docs/watcher.md).
async fn forward_to_watcher(State(s): State<Arc<ApiState>>, mut request: Request) -> Response {
    use tower::ServiceExt;
    let path = request.uri().path();
    let target = if let Some(rest) = path.strip_prefix("/api/v1/incidents") {
        format!("/watcher/incidents{rest}")
    } else if let Some(rest) = path.strip_prefix("/api/v1") {
        rest.to_owned()
    } else {
        return json_response(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    };
    let target = match request.uri().query() {
        Some(q) => format!("{target}?{q}"),
        None => target,
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return json_response(StatusCode::BAD_REQUEST, json!({"error": "bad path"}));
    };
    *request.uri_mut() = uri;
    // The outer route's matched path and parameters must not leak into the watcher's routing.
    let (mut parts, body) = request.into_parts();
    parts.extensions = http::Extensions::new();
    let request = Request::from_parts(parts, body);
    let Some(routes) = s.app.component_routes() else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "no watcher is running (add a processor of type \"watcher\")"}),
        );
    };
    match routes.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

// ---------------------------------------------------------------------------------------------
// Self-metrics, read back from the Prometheus text the process renders for `/metrics`.

#[derive(Debug, Default)]
pub struct Metrics {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Reads the Prometheus text exposition format (counters and gauges; histogram series are
    /// kept too but not used). Lines that do not parse are skipped.
    pub fn parse(text: &str) -> Metrics {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Metrics { series }
    }

    /// Sum of `name` over series whose labels include every `(key, value)` of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|(_, v)| v).sum()
    }

    /// Sums of `name` grouped by the value of `label`, over series matching `filter`.
    pub fn by(&self, name: &str, label: &str, filter: &[(&str, &str)]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (labels, v) in self.matching(name, filter) {
            let key = labels.get(label).cloned().unwrap_or_default();
            *out.entry(key).or_insert(0.0) += v;
        }
        out
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&str, &str)],
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.series
            .iter()
            .filter(move |(n, labels, _)| {
                n == name
                    && filter
                        .iter()
                        .all(|(k, v)| labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, labels, v)| (labels, *v))
    }
}

fn parse_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (name_and_labels, value) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}').filter(|c| *c > open)?;
            (
                (&line[..open], Some(&line[open + 1..close])),
                &line[close + 1..],
            )
        }
        None => {
            let (n, v) = line.split_once(' ')?;
            ((n, None), v)
        }
    };
    let value = value.split_whitespace().next()?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let mut labels = BTreeMap::new();
    if let Some(mut rest) = name_and_labels.1 {
        // label="value" pairs; values escape `\`, `"` and newlines (Prometheus exposition
        // format, "Text format details").
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if rest.is_empty() {
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut val = String::new();
            let mut chars = after.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => val.push('\n'),
                        Some((_, other)) => val.push(other),
                        None => return None,
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => val.push(c),
                }
            }
            let end = end?;
            labels.insert(key.trim().to_owned(), val);
            rest = &after[end + 1..];
        }
    }
    Some((name_and_labels.0.trim().to_owned(), labels, value))
}

// ---------------------------------------------------------------------------------------------
// The component graph.

fn counts(m: &BTreeMap<String, f64>) -> Value {
    let mut out = Map::new();
    for (k, v) in m {
        out.insert(k.clone(), json!(*v as u64));
    }
    Value::Object(out)
}

/// Per-second change of `f(metrics)` between the previous sample and now; `None` without one.
fn rate(
    now: &Metrics,
    previous: Option<&(Duration, Arc<Metrics>)>,
    f: impl Fn(&Metrics) -> f64,
) -> Value {
    match previous {
        Some((dt, before)) if dt.as_secs_f64() > 0.0 => {
            // A counter that went down was reset (reload); report 0 rather than a negative rate.
            let per_s = ((f(now) - f(before)) / dt.as_secs_f64()).max(0.0);
            json!((per_s * 10.0).round() / 10.0)
        }
        _ => Value::Null,
    }
}

/// Component types as written in the file (`type = "..."`), read from the masked TOML.
fn component_types(config: &Config) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    let Ok((_, Value::Object(root))) = masked_config(config) else {
        return types;
    };
    for kind in ["receivers", "processors", "exporters"] {
        if let Some(Value::Object(section)) = root.get(kind) {
            for (name, body) in section {
                if let Some(t) = body.get("type").and_then(Value::as_str) {
                    types.insert(format!("{kind}.{name}"), t.to_owned());
                }
            }
        }
    }
    types
}

fn graph(
    config: &Config,
    listen: &[SocketAddr],
    now: &Metrics,
    previous: Option<&(Duration, Arc<Metrics>)>,
    unhealthy: &[String],
) -> Value {
    let types = component_types(config);
    let type_of = |id: &str| types.get(id).cloned().unwrap_or_default();
    let used_in = |pred: &dyn Fn(&crate::config::PipelineConfig) -> bool| -> Vec<String> {
        config
            .pipelines
            .iter()
            .filter(|p| pred(p))
            .map(|p| p.name.clone())
            .collect()
    };

    let mut receivers = Vec::new();
    for name in config.receivers.keys() {
        let id = format!("receivers.{name}");
        let f = [("component_id", id.as_str())];
        let pipelines = used_in(&|p| p.receivers.contains(name));
        let health = if pipelines.is_empty() {
            "not_started"
        } else if unhealthy.contains(&id) {
            "down"
        } else {
            "up"
        };
        let accepted = now.by(sluice_core::telemetry::RECEIVER_ACCEPTED, "signal", &f);
        receivers.push(json!({
            "id": id,
            "name": name,
            "type": type_of(&id),
            "pipelines": pipelines,
            "health": health,
            "accepted_items": counts(&accepted),
            "accepted_total": accepted.values().sum::<f64>() as u64,
            "refused_items": counts(&now.by(sluice_core::telemetry::RECEIVER_REFUSED, "reason", &f)),
            "accepted_per_second": rate(now, previous, |m| m.sum(sluice_core::telemetry::RECEIVER_ACCEPTED, &f)),
        }));
    }

    let mut processors = Vec::new();
    for name in config.processors.keys() {
        let id = format!("processors.{name}");
        let f = [("component_id", id.as_str())];
        let mut p = json!({
            "id": id,
            "name": name,
            "type": type_of(&id),
            "pipelines": used_in(&|p| p.processors.contains(name)),
            "dropped_items": counts(&now.by(sluice_core::telemetry::PROCESSOR_DROPPED, "reason", &f)),
            "refused_items": counts(&now.by(sluice_processors::REFUSED, "reason", &f)),
            "incoming_total": now.sum(sluice_processors::INCOMING, &f) as u64,
            "outgoing_total": now.sum(sluice_processors::OUTGOING, &f) as u64,
        });
        if type_of(&id) == "watcher" {
            p["watcher"] = json!({
                "incidents_closed": counts(&now.by("sluice_watcher_incidents_total", "outcome", &f)),
                "actions": counts(&now.by("sluice_watcher_actions_total", "outcome", &f)),
                "approvals_pending": now.sum("sluice_watcher_approvals_pending", &f) as u64,
                "alerts_received": now.sum("sluice_watcher_alerts_received_total", &f) as u64,
            });
        }
        processors.push(p);
    }

    let mut pipelines = Vec::new();
    for p in &config.pipelines {
        let f = [("pipeline", p.name.as_str())];
        pipelines.push(json!({
            "id": format!("pipelines.{}", p.name),
            "name": p.name,
            "signals": p.signals.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "receivers": p.receivers,
            "processors": p.processors,
            "exporters": p.exporters,
            "spool": {
                "bytes": now.sum("sluice_spool_bytes", &f) as u64,
                "segments": now.sum("sluice_spool_segments", &f) as u64,
                "appended_items": now.sum("sluice_spool_appended_items_total", &f) as u64,
                "dropped_items": counts(&now.by("sluice_spool_dropped_items_total", "reason", &f)),
                "appended_per_second": rate(now, previous, |m| m.sum("sluice_spool_appended_items_total", &f)),
            },
        }));
    }

    let mut exporters = Vec::new();
    for name in config.exporters.keys() {
        let id = format!("exporters.{name}");
        let f = [("component_id", id.as_str())];
        let names = used_in(&|p| p.exporters.contains(name));
        let per_pipeline: Vec<Value> = names
            .iter()
            .map(|pipeline| {
                let f = [("component_id", id.as_str()), ("pipeline", pipeline.as_str())];
                let replay_total = now.sum("sluice_spool_replay_total_records", &f) as u64;
                // What earlier runs left for this exporter (crate::replay); null when nothing.
                let replay = (replay_total > 0).then(|| json!({
                    "total_records": replay_total,
                    "remaining_records": now.sum("sluice_spool_replay_remaining_records", &f) as u64,
                    "total_bytes": now.sum("sluice_spool_replay_total_bytes", &f) as u64,
                    "remaining_bytes": now.sum("sluice_spool_replay_remaining_bytes", &f) as u64,
                }));
                json!({
                    "pipeline": pipeline,
                    "queue_depth_records": now.sum("sluice_exporter_queue_depth_records", &f) as u64,
                    "lag_seconds": now.sum("sluice_exporter_oldest_undelivered_age_seconds", &f),
                    "spool_bytes": now.sum("sluice_spool_bytes", &[("pipeline", pipeline.as_str())]) as u64,
                    "replay": replay,
                })
            })
            .collect();
        let sent = now.by(sluice_core::telemetry::EXPORTER_SENT, "signal", &f);
        exporters.push(json!({
            "id": id,
            "name": name,
            "type": type_of(&id),
            "pipelines": names,
            "sent_items": counts(&sent),
            "sent_total": sent.values().sum::<f64>() as u64,
            "dropped_items": counts(&now.by(sluice_core::telemetry::EXPORTER_DROPPED, "reason", &f)),
            "retries": now.sum(sluice_core::telemetry::EXPORTER_RETRIES, &f) as u64,
            "sent_per_second": rate(now, previous, |m| m.sum(sluice_core::telemetry::EXPORTER_SENT, &f)),
            "queues": per_pipeline,
        }));
    }

    // Edges in data-flow order: receiver → first processor → ... → pipeline spool → exporter.
    let mut edges = Vec::new();
    for p in &config.pipelines {
        let spool = format!("pipelines.{}", p.name);
        let chain: Vec<String> = p
            .processors
            .iter()
            .map(|n| format!("processors.{n}"))
            .chain(std::iter::once(spool.clone()))
            .collect();
        for r in &p.receivers {
            edges.push(json!([format!("receivers.{r}"), chain[0]]));
        }
        for w in chain.windows(2) {
            edges.push(json!([w[0], w[1]]));
        }
        for e in &p.exporters {
            edges.push(json!([spool, format!("exporters.{e}")]));
        }
    }
    edges.dedup();

    json!({
        "rate_window_seconds": previous.map(|(dt, _)| (dt.as_secs_f64() * 10.0).round() / 10.0),
        "listen": listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "receivers": receivers,
        "processors": processors,
        "pipelines": pipelines,
        "exporters": exporters,
        "edges": edges,
    })
}

// ---------------------------------------------------------------------------------------------
// The running config, secrets masked.

pub const MASK: &str = "<secret>";

fn is_alloy(config: &Config) -> bool {
    sluice_alloy::is_alloy(&config.source, &config.text)
}

fn masked_config(config: &Config) -> Result<(String, Value), MaskError> {
    masked(&config.source, &config.text)
}

/// A config file as TOML and JSON with every secret replaced by [`MASK`]: values of keys that
/// name a credential, every value under `headers`, and passwords in URLs. Alloy files are shown
/// as their TOML equivalent.
pub fn masked(source: &std::path::Path, text: &str) -> Result<(String, Value), MaskError> {
    let toml_text = if sluice_alloy::is_alloy(source, text) {
        crate::alloy::convert(source, text, &|v| std::env::var(v).ok())?.toml
    } else {
        text.to_owned()
    };
    let mut table: toml::Table =
        toml::from_str(&toml_text).map_err(|e| MaskError::Parse(e.message().to_owned()))?;
    for (k, v) in table.iter_mut() {
        mask(k, v, false);
    }
    let text = toml::to_string(&table)?;
    let json = serde_json::to_value(&table)?;
    Ok((text, json))
}

/// Why a config could not be shown masked.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error(transparent)]
    Alloy(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Parse(String),
    #[error(transparent)]
    Toml(#[from] toml::ser::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "password",
        "secret",
        "authorization",
        "api_key",
        "apikey",
        "credential",
        "private_key",
        // A Slack-style incoming-webhook URL is itself the credential.
        "approval_webhook",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn mask(key: &str, v: &mut toml::Value, under_headers: bool) {
    let secret = under_headers || is_secret_key(key);
    match v {
        toml::Value::String(s) => {
            if secret {
                *s = MASK.to_owned();
            } else {
                mask_url_password(s);
            }
        }
        toml::Value::Table(t) => {
            let headers = under_headers || key.eq_ignore_ascii_case("headers");
            for (k, v) in t.iter_mut() {
                if secret {
                    mask(k, v, true);
                } else {
                    mask(k, v, headers);
                }
            }
        }
        toml::Value::Array(a) => {
            for v in a.iter_mut() {
                mask(key, v, under_headers);
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host/...` → `scheme://user:<secret>@host/...`.
fn mask_url_password(s: &mut String) {
    let Some(scheme_end) = s.find("://") else {
        return;
    };
    let authority_start = scheme_end + 3;
    let authority_end = s[authority_start..]
        .find(['/', '?', '#'])
        .map(|i| authority_start + i)
        .unwrap_or(s.len());
    let Some(at) = s[authority_start..authority_end].rfind('@') else {
        return;
    };
    let userinfo = &s[authority_start..authority_start + at];
    if let Some(colon) = userinfo.find(':') {
        let start = authority_start + colon + 1;
        let end = authority_start + at;
        s.replace_range(start..end, MASK);
    }
}

// ---------------------------------------------------------------------------------------------
// The startup banner.

/// What `sluice run` prints once started: where the UI is and what listens where.
pub fn banner(config: &Config, admin: SocketAddr, storage: &std::path::Path) -> String {
    let ui = format!("http://{admin}/");
    let mut lines = vec![
        format!(
            "Sluice {} is running {}",
            env!("CARGO_PKG_VERSION"),
            config.source.display()
        ),
        format!("  UI            {ui}   (JSON API under {ui}api/v1/, metrics at {ui}metrics)"),
    ];
    for (name, r) in &config.receivers {
        if !config.pipelines.iter().any(|p| p.receivers.contains(name)) {
            continue;
        }
        let addrs: Vec<String> = r
            .listen_addrs()
            .into_iter()
            .map(|(field, addr)| format!("{addr} ({field})"))
            .collect();
        let what = if addrs.is_empty() {
            "pulls from its sources".to_owned()
        } else {
            addrs.join(", ")
        };
        lines.push(format!("  receiver      {name}: {what}"));
    }
    for service in config.services.values() {
        lines.push(format!("  {}", service.describe()));
    }
    for (name, p) in &config.processors {
        if p.watcher().is_some() {
            lines.push(format!(
                "  watcher       {name}: alerts to {ui}webhooks/grafana-alerts; approvals in the UI ({ui}#watcher)"
            ));
        }
    }
    let exporters: Vec<&str> = config.exporters.keys().map(String::as_str).collect();
    lines.push(format!("  exporters     {}", exporters.join(", ")));
    lines.push(format!("  storage       {}", storage.display()));
    lines.push(
        "  A summary line follows every 10 s; per-batch lines need --log.level=debug.".to_owned(),
    );
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// The summary line `sluice run` logs every 10 s.

/// Totals for the periodic summary line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub received: f64,
    pub spans_out: f64,
    pub metrics_out: f64,
    pub logs_out: f64,
    pub dropped: f64,
    pub incidents: f64,
    pub actions: f64,
    pub approvals_pending: f64,
}

impl Totals {
    pub fn from_metrics(m: &Metrics) -> Totals {
        use sluice_core::telemetry as t;
        Totals {
            received: m.sum(t::RECEIVER_ACCEPTED, &[]),
            spans_out: m.sum(t::EXPORTER_SENT, &[("signal", "traces")]),
            metrics_out: m.sum(t::EXPORTER_SENT, &[("signal", "metrics")]),
            logs_out: m.sum(t::EXPORTER_SENT, &[("signal", "logs")]),
            dropped: m.sum(t::EXPORTER_DROPPED, &[])
                + m.sum(t::PROCESSOR_DROPPED, &[])
                + m.sum("sluice_spool_dropped_items_total", &[]),
            incidents: m.sum("sluice_watcher_incidents_total", &[]),
            actions: m.sum("sluice_watcher_actions_total", &[]),
            approvals_pending: m.sum("sluice_watcher_approvals_pending", &[]),
        }
    }

    /// One line: what happened since `before` and the totals so far.
    pub fn line(&self, before: &Totals, every: Duration) -> String {
        let d = |now: f64, then: f64| (now - then).max(0.0) as u64;
        format!(
            "last {}s: {} events in; out {} spans, {} metric points, {} log records; {} dropped; \
             watcher: {} incidents closed, {} actions, {} approvals pending (totals: {} in, {} out)",
            every.as_secs(),
            d(self.received, before.received),
            d(self.spans_out, before.spans_out),
            d(self.metrics_out, before.metrics_out),
            d(self.logs_out, before.logs_out),
            d(self.dropped, before.dropped),
            d(self.incidents, before.incidents),
            d(self.actions, before.actions),
            self.approvals_pending as u64,
            self.received as u64,
            (self.spans_out + self.metrics_out + self.logs_out) as u64,
        )
    }
}

/// Logs [`Totals::line`] every `every` until the process ends.
pub fn spawn_summary(app: Arc<App>, every: Duration) {
    tokio::spawn(async move {
        let mut before = Totals::from_metrics(&Metrics::parse(&app.render_metrics()));
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = Totals::from_metrics(&Metrics::parse(&app.render_metrics()));
            tracing::info!("{}", now.line(&before, every));
            before = now;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_lines_parse_with_escaped_labels() {
        let m = Metrics::parse(
            "# TYPE x counter\n\
             x{component_id=\"receivers.a\",signal=\"traces\"} 5\n\
             x{component_id=\"receivers.a\",signal=\"logs\"} 2\n\
             x{component_id=\"receivers.b\\\"q\\\\,z\",signal=\"logs\"} 7\n\
             y 3.5\n\
             broken{a=\"1 2\n\
             reversed}x{ 1\n",
        );
        assert_eq!(m.sum("x", &[("component_id", "receivers.a")]), 7.0);
        assert_eq!(m.sum("x", &[("component_id", "receivers.b\"q\\,z")]), 7.0);
        assert_eq!(m.sum("y", &[]), 3.5);
        let by = m.by("x", "signal", &[]);
        assert_eq!(by.get("logs"), Some(&9.0));
        assert_eq!(m.sum("broken", &[]), 0.0);
        assert_eq!(m.series.len(), 4);
    }

    #[test]
    fn secrets_are_masked_by_key_header_and_url() {
        let text = r#"
[receivers.awf]
type = "awf"
bearer_token = "t0ps3cret"
headers = { "X-Scope-OrgID" = "tenant-secret-value" }
[exporters.mimir]
type = "prometheus_remote_write"
endpoint = "https://user:hunter22@mimir.example/api/v1/push"
[processors.watcher]
type = "watcher"
approvers = [{ name = "dev", token = "dev-approver-token" }]
basic_auth = { username = "grafana", password = "pa55word" }
approval_webhook = "https://hooks.slack.com/services/T/B/X"
"#;
        let (toml_text, json) = masked(std::path::Path::new("x.toml"), text).expect("masks");
        for secret in [
            "t0ps3cret",
            "tenant-secret-value",
            "hunter22",
            "dev-approver-token",
            "pa55word",
            "hooks.slack.com",
        ] {
            assert!(!toml_text.contains(secret), "{secret} leaked: {toml_text}");
            assert!(!json.to_string().contains(secret), "{secret} leaked");
        }
        assert_eq!(json["processors"]["watcher"]["approvers"][0]["name"], "dev");
        assert_eq!(
            json["exporters"]["mimir"]["endpoint"],
            "https://user:<secret>@mimir.example/api/v1/push"
        );
        assert_eq!(
            json["processors"]["watcher"]["basic_auth"]["username"],
            "grafana"
        );
        assert_eq!(json["receivers"]["awf"]["type"], "awf");
    }

    #[test]
    fn summary_line_reports_the_interval_and_totals() {
        let before = Totals {
            received: 100.0,
            spans_out: 10.0,
            ..Default::default()
        };
        let now = Totals {
            received: 250.0,
            spans_out: 40.0,
            metrics_out: 5.0,
            logs_out: 7.0,
            approvals_pending: 1.0,
            ..Default::default()
        };
        let line = now.line(&before, Duration::from_secs(10));
        assert!(
            line.starts_with(
                "last 10s: 150 events in; out 30 spans, 5 metric points, 7 log records"
            ),
            "{line}"
        );
        assert!(line.contains("1 approvals pending"), "{line}");
        assert!(line.contains("totals: 250 in, 52 out"), "{line}");
    }
}
