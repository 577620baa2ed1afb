//! Shared test helpers: serving a watcher's router, building webhook payloads the way Grafana
//! and Alertmanager send them, and small recording servers (AWF control API, on-call pager,
//! Slack webhook, Grafana annotations, an OpenAI-compatible LLM).

#![allow(dead_code)]

pub mod loki_query;
pub mod pipeline;
pub mod prometheus;
pub mod tempo;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use http::{Method, StatusCode, Uri};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sluice_watcher::{Config, Watcher};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const HOOK_TOKEN: &str = "hook-token-123";
pub const HMAC_SECRET: &str = "grafana-hmac-secret";
pub const ALICE: &str = "alice-approver-token";
pub const BOB: &str = "bob-approver-token";

/// Serves `router` on an ephemeral loopback port.
pub async fn serve(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let h = tokio::spawn(async move {
        let _ = axum::serve(l, router).await;
    });
    (addr, h)
}

/// A watcher served over HTTP.
pub struct Harness {
    pub watcher: Watcher,
    api: Api,
    server: tokio::task::JoinHandle<()>,
}

/// HTTP access to a served watcher.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl std::ops::Deref for Harness {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Harness {
    pub async fn start(cfg: &Config, dir: &Path) -> Harness {
        let watcher = Watcher::start(cfg, "processors.watcher", dir, None)
            .await
            .expect("watcher starts");
        let (addr, server) = serve(watcher.router()).await;
        Harness {
            watcher,
            api: Api::attach(format!("http://{addr}")),
            server,
        }
    }

    pub async fn stop(self) {
        self.server.abort();
        self.watcher.stop().await;
    }

    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.watcher.audit_path()).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
            .collect()
    }
}

impl Api {
    pub fn attach(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs a webhook with a bearer token; returns (status, body).
    pub async fn post_alerts(&self, path: &str, payload: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(HOOK_TOKEN)
            .json(payload)
            .send()
            .await
            .expect("post");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("post");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn incident(&self, id: &str) -> Value {
        let (s, v) = self.get(&format!("/watcher/incidents/{id}"), ALICE).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Waits until the incident is in `stage` (e.g. "closed"); returns it.
    pub async fn wait_stage(&self, id: &str, stage: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.incident(id).await;
            if v["stage"] == stage {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "incident {id} not {stage} after {timeout:?}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn pending(&self) -> Vec<Value> {
        let (s, v) = self.get("/approvals/pending", ALICE).await;
        assert_eq!(s, StatusCode::OK);
        v["approvals"].as_array().cloned().unwrap_or_default()
    }

    pub async fn wait_pending(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.pending().await;
            if p.len() >= n {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "{n} pending approvals expected, got {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// One alert as Grafana puts it in `alerts[]`.
pub fn grafana_alert(
    status: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    starts_at: &str,
    fingerprint: &str,
) -> Value {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    json!({
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { starts_at },
        "generatorURL": "http://grafana:3000/alerting/grafana/abc/view",
        "fingerprint": fingerprint,
        "silenceURL": "http://grafana:3000/alerting/silence/new",
        "dashboardURL": "",
        "panelURL": "",
        "values": {"B": 12.0, "C": 1},
        "valueString": "[ var='B' labels={} value=12 ], [ var='C' labels={} value=1 ]",
        "orgId": 1
    })
}

/// Grafana's webhook body (`version: "1"`) around `alerts`.
pub fn grafana_payload(alerts: Vec<Value>) -> Value {
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    let alertname = alerts
        .first()
        .and_then(|a| a["labels"]["alertname"].as_str())
        .unwrap_or("")
        .to_owned();
    json!({
        "receiver": "sluice-watcher",
        "status": status,
        "orgId": 1,
        "alerts": alerts,
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname},
        "commonAnnotations": {},
        "externalURL": "http://grafana:3000/",
        "version": "1",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "title": format!("[{}] {alertname}", status.to_uppercase()),
        "state": if status == "firing" { "alerting" } else { "ok" },
        "message": "**Firing**"
    })
}

/// Alertmanager's webhook body (`version: "4"`).
pub fn alertmanager_payload(alerts: Vec<Value>) -> Value {
    let alerts: Vec<Value> = alerts
        .into_iter()
        .map(|a| {
            json!({"status": a["status"], "labels": a["labels"], "annotations": a["annotations"],
                   "startsAt": a["startsAt"], "endsAt": a["endsAt"],
                   "generatorURL": "http://prometheus:9090/graph", "fingerprint": a["fingerprint"]})
        })
        .collect();
    json!({"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
           "receiver": "watcher", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
           "externalURL": "http://alertmanager:9093", "notification_reason": "firing",
           "routeLabels": {}, "alerts": alerts})
}

pub fn rfc3339_now() -> String {
    sluice_watcher::alert::format_rfc3339_ms(sluice_watcher::alert::now_ms())
}

/// One request a recording server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    pub headers: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
pub struct Recorder {
    pub calls: Arc<Mutex<Vec<Recorded>>>,
    /// Status to answer with (default 200) and body.
    pub reply: Arc<Mutex<(u16, Value)>>,
    /// Delay before answering.
    pub delay: Arc<Mutex<Duration>>,
}

impl Recorder {
    pub fn calls(&self) -> Vec<Recorded> {
        self.calls.lock().clone()
    }

    pub fn set_reply(&self, status: u16, body: Value) {
        *self.reply.lock() = (status, body);
    }
}

async fn record(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    r.calls.lock().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
    });
    let d = *r.delay.lock();
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
    let (status, body) = r.reply.lock().clone();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(body),
    )
}

/// A server recording every request and answering `reply`.
pub async fn recorder() -> (String, Recorder) {
    let r = Recorder::default();
    r.set_reply(200, json!({"ok": true}));
    let app = Router::new().fallback(record).with_state(r.clone());
    let (addr, _h) = serve(app).await;
    (format!("http://{addr}"), r)
}

/// A Grafana stand-in for annotations: `GET /api/annotations?tags=…` (tags ANDed) and
/// `POST /api/annotations`, bearer-token protected.
#[derive(Clone, Default)]
pub struct FakeGrafana {
    pub annotations: Arc<Mutex<Vec<Value>>>,
    pub gets: Arc<Mutex<usize>>,
}

pub async fn fake_grafana(token: &'static str) -> (String, FakeGrafana) {
    let g = FakeGrafana::default();
    async fn list(
        State((g, token)): State<(FakeGrafana, &'static str)>,
        headers: http::HeaderMap,
        Query(q): Query<Vec<(String, String)>>,
    ) -> axum::response::Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {token}"))
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        *g.gets.lock() += 1;
        let want: Vec<&String> = q
            .iter()
            .filter(|(k, _)| k == "tags")
            .map(|(_, v)| v)
            .collect();
        let found: Vec<Value> = g
            .annotations
            .lock()
            .iter()
            .filter(|a| {
                want.iter().all(|t| {
                    a["tags"]
                        .as_array()
                        .is_some_and(|tags| tags.iter().any(|x| x == *t))
                })
            })
            .cloned()
            .collect();
        axum::Json(Value::Array(found)).into_response()
    }
    async fn create(
        State((g, token)): State<(FakeGrafana, &'static str)>,
        headers: http::HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> axum::response::Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {token}"))
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if body["text"].as_str().is_none() {
            return StatusCode::BAD_REQUEST.into_response();
        }
        let mut a = g.annotations.lock();
        let id = a.len() + 1;
        a.push(body);
        axum::Json(json!({"message": "Annotation added", "id": id})).into_response()
    }
    let app = Router::new()
        .route("/api/annotations", axum::routing::get(list).post(create))
        .with_state((g.clone(), token));
    let (addr, _h) = serve(app).await;
    (format!("http://{addr}"), g)
}

/// Polls `f` until it returns true.
pub async fn eventually(timeout: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The TOML of a watcher config used by the intake/safety tests (rules over the default
/// catalogue pointed at `awf_url`).
pub fn config_toml(awf_url: &str, extra: &str) -> String {
    format!(
        r#"
bearer_token = "{HOOK_TOKEN}"
basic_auth = {{ username = "grafana", password = "basic-pass" }}
hmac_secret = "{HMAC_SECRET}"
hmac_timestamp_header = "X-Grafana-Alerting-Timestamp"
replay_window = "5m"
approvers = [{{ name = "alice", token = "{ALICE}" }}, {{ name = "bob", token = "{BOB}" }}]
vars = {{ awf_url = "{awf_url}", oncall_url = "{awf_url}/oncall" }}
investigation_budget = "2s"
source_timeout = "500ms"
verification = {{ delay = "0s", interval = "100ms", timeout = "2s" }}
{extra}

[[rules]]
name = "agent failing: fall back"
labels = {{ alertname = "AwfAgentFailing" }}
actions = ["switch_fallback"]

[[rules]]
name = "agent misbehaving: disable"
labels = {{ alertname = "AwfAgentRunaway" }}
actions = ["disable_agent"]

[[rules]]
name = "saturated: scale"
labels = {{ alertname = "AwfWorkersSaturated" }}
actions = ["scale_workers"]
"#
    )
}

pub fn config(awf_url: &str, extra: &str) -> Config {
    let c: Config = toml::from_str(&config_toml(awf_url, extra)).expect("test config parses");
    c.validate().expect("test config validates");
    c
}
