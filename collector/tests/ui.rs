//! The JSON API (`/api/v1/`, docs/api.md) against the running binary, and the web UI at `/`
//! driven in real headless Chromium over the DevTools protocol.
//!
//! Screenshots go to `target/ui-screenshots/`; with `SLUICE_UPDATE_SCREENSHOTS=1` they are also
//! copied to `docs/` (the README shows them).

mod support;

use base64::Engine;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Sluice, free_port, write_config};

const HOOK: &str = "hook-secret-value";
const ALICE: &str = "alice-approver-token";

fn config(grpc: u16, sim: u16, awf_control: u16) -> String {
    format!(
        r#"
[awf_simulator]
listen = "127.0.0.1:{sim}"
events_per_second = 20

[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"

[receivers.awf]
type = "awf"
[receivers.awf.discovery]
url = "http://127.0.0.1:{sim}/executions"
interval = "1s"

[processors.watcher]
type = "watcher"
bearer_token = "{HOOK}"
approvers = [{{ name = "alice", token = "{ALICE}" }}]
investigation_budget = "1s"
source_timeout = "200ms"
vars = {{ awf_url = "http://127.0.0.1:{awf_control}" }}

[[processors.watcher.rules]]
name = "agent misbehaving: disable"
labels = {{ alertname = "AwfAgentRunaway" }}
actions = ["disable_agent"]

[processors.batch]
type = "batch"

[exporters.debug]
type = "debug"

[[pipelines]]
name = "all"
signals = ["traces", "metrics", "logs"]
receivers = ["otlp", "awf"]
processors = ["watcher", "batch"]
exporters = ["debug"]
"#
    )
}

fn alert(fingerprint: &str) -> String {
    json!({
        "receiver": "sluice", "status": "firing", "orgId": 1, "version": "1",
        "groupKey": "{}:{alertname=\"AwfAgentRunaway\"}", "groupLabels": {"alertname": "AwfAgentRunaway"},
        "commonLabels": {"alertname": "AwfAgentRunaway", "agent_id": "coder"}, "commonAnnotations": {},
        "externalURL": "http://grafana:3000/", "truncatedAlerts": 0, "state": "alerting",
        "title": "t", "message": "m",
        "alerts": [{"status": "firing", "labels": {"alertname": "AwfAgentRunaway", "agent_id": "coder"},
            "annotations": {}, "startsAt": "2026-11-22T05:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": fingerprint, "silenceURL": "", "dashboardURL": "",
            "panelURL": "", "values": {"B": 0.4}, "valueString": ""}]
    })
    .to_string()
}

async fn start(dir: &Path) -> (Sluice, u16) {
    let grpc = free_port();
    let path = write_config(dir, "ui.toml", &config(grpc, free_port(), free_port()));
    (Sluice::start(&path, &dir.join("data")).await, grpc)
}

async fn send_traces(grpc: u16, requests: u64) {
    let mut client = support::TraceClient::new(&format!("http://127.0.0.1:{grpc}"));
    for seed in 0..requests {
        let body =
            prost::Message::encode_to_vec(&sluice_loadgen::loadgen::build_request(50, 1, seed));
        client.send(body.into()).await.expect("accepted");
    }
}

async fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_alert(sluice: &Sluice, fingerprint: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/grafana-alerts", sluice.admin))
        .bearer_auth(HOOK)
        .header("content-type", "application/json")
        .body(alert(fingerprint))
        .send()
        .await
        .expect("webhook");
    assert!(r.status().is_success(), "{}", r.status());
}

/// Waits for the watcher to ask for approval of the incident's action; returns its id.
async fn wait_pending(sluice: &Sluice) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = get_json(
            &format!("{}/api/v1/approvals/pending", sluice.admin),
            Some(ALICE),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        if let Some(id) = v["approvals"][0]["id"].as_str() {
            return id.to_owned();
        }
        assert!(Instant::now() < deadline, "no approval requested: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_reports_graph_counters_rates_masked_config_and_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let (sluice, grpc) = start(dir.path()).await;
    let api = format!("{}/api/v1", sluice.admin);

    let (status, s) = get_json(&format!("{api}/status"), None).await;
    assert_eq!(status, 200);
    assert_eq!(s["ready"], true);
    assert_eq!(s["healthy"], true);

    // The graph as configured, in data-flow order.
    let (status, g) = get_json(&format!("{api}/components"), None).await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(find(&g["receivers"], "receivers.otlp")["type"], "otlp");
    assert_eq!(find(&g["receivers"], "receivers.otlp")["health"], "up");
    assert_eq!(
        find(&g["processors"], "processors.watcher")["type"],
        "watcher"
    );
    let edges = g["edges"].as_array().unwrap();
    for edge in [
        json!(["receivers.otlp", "processors.watcher"]),
        json!(["processors.watcher", "processors.batch"]),
        json!(["processors.batch", "pipelines.all"]),
        json!(["pipelines.all", "exporters.debug"]),
    ] {
        assert!(edges.contains(&edge), "{edge} missing from {edges:?}");
    }

    // Counters follow the data and rates appear once two samples exist.
    send_traces(grpc, 20).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let g = loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (_, g) = get_json(&format!("{api}/components"), None).await;
        let sent = find(&g["exporters"], "exporters.debug")["sent_items"]["traces"]
            .as_u64()
            .unwrap_or(0);
        if sent >= 1000 && g["rate_window_seconds"].is_number() {
            break g;
        }
        assert!(Instant::now() < deadline, "traces never delivered: {g}");
    };
    let otlp = find(&g["receivers"], "receivers.otlp");
    assert_eq!(otlp["accepted_items"]["traces"], 1000);
    assert!(otlp["accepted_per_second"].is_number(), "{otlp}");
    let debug = find(&g["exporters"], "exporters.debug");
    assert!(debug["sent_per_second"].is_number(), "{debug}");
    let queue = &debug["queues"][0];
    assert_eq!(queue["pipeline"], "all");
    assert!(queue["lag_seconds"].is_number() && queue["spool_bytes"].as_u64() > Some(0));
    let pipeline = find(&g["pipelines"], "pipelines.all");
    assert!(pipeline["spool"]["appended_items"].as_u64() >= Some(1000));

    // The running config, secrets masked.
    let (status, c) = get_json(&format!("{api}/config"), None).await;
    assert_eq!(status, 200);
    let shown = c.to_string();
    assert!(!shown.contains(HOOK) && !shown.contains(ALICE), "{shown}");
    assert_eq!(
        c["config"]["processors"]["watcher"]["bearer_token"],
        "<secret>"
    );
    assert_eq!(
        c["config"]["processors"]["watcher"]["approvers"][0]["name"],
        "alice"
    );
    assert!(
        c["toml"]
            .as_str()
            .unwrap()
            .contains("[receivers.otlp.grpc]")
    );

    // Incidents and approvals are the watcher's own, with its approver-token check.
    assert_eq!(get_json(&format!("{api}/incidents"), None).await.0, 401);
    assert_eq!(
        get_json(&format!("{api}/approvals/pending"), Some("wrong-token-123"))
            .await
            .0,
        401
    );
    post_alert(&sluice, "00000000000000a1").await;
    let approval = wait_pending(&sluice).await;
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{api}/approvals/{approval}/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let (_, a) = get_json(&format!("{api}/approvals/{approval}"), Some(ALICE)).await;
    assert_eq!(
        a["state"], "pending",
        "an unauthenticated approve changed {a}"
    );
    let rejected = http
        .post(format!("{api}/approvals/{approval}/reject"))
        .bearer_auth(ALICE)
        .json(&json!({"reason": "not now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status().as_u16(), 200);
    let (_, a) = get_json(&format!("{api}/approvals/{approval}"), Some(ALICE)).await;
    assert_eq!(a["state"], "rejected");
    assert_eq!(a["decided_by"], "alice");
    let (status, list) = get_json(&format!("{api}/incidents"), Some(ALICE)).await;
    assert_eq!(status, 200);
    let incident = &list["incidents"][0];
    assert_eq!(incident["alert"]["fingerprint"], "00000000000000a1");
    assert!(incident["finding"].is_object(), "{incident}");
    let id = incident["id"].as_str().unwrap();
    let (status, one) = get_json(&format!("{api}/incidents/{id}"), Some(ALICE)).await;
    assert_eq!((status, &one["id"]), (200, &incident["id"]));
    assert_eq!(
        get_json(&format!("{api}/approvals/no-such-id"), Some(ALICE))
            .await
            .0,
        404
    );

    // The UI's assets are served from the binary.
    let index = reqwest::get(format!("{}/", sluice.admin)).await.unwrap();
    assert_eq!(index.status().as_u16(), 200);
    let csp = index.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(index.text().await.unwrap().contains("/ui/app.js"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_a_banner_and_a_summary_line_not_per_batch_lines() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let path = write_config(
        dir.path(),
        "ui.toml",
        &config(grpc, free_port(), free_port()),
    );
    let out = dir.path().join("stdout.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&path)
        .arg(format!(
            "--server.http.listen-addr=127.0.0.1:{}",
            free_port()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("last 10s:");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    // The banner is printed once the pipelines run.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("storage")
    {
        assert!(Instant::now() < deadline, "no banner within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send_traces(grpc, 5).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.is_finished() {
        assert!(Instant::now() < deadline, "no summary line within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join().unwrap().join("\n");
    let summary = log.lines().last().unwrap();
    assert!(summary.contains("events in; out"), "{summary}");
    assert!(summary.contains("spans"), "{summary}");
    assert!(
        !log.contains("debug exporter:"),
        "per-batch lines at info:\n{log}"
    );
    let banner = std::fs::read_to_string(&out).unwrap();
    assert!(
        banner.contains("  UI            http://127.0.0.1:"),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("127.0.0.1:{grpc} (grpc.endpoint)")),
        "{banner}"
    );
    assert!(banner.contains("webhooks/grafana-alerts"), "{banner}");
}

// ---- headless Chromium over the DevTools protocol --------------------------------------------

const CHROMIUM_HINT: &str = "Install it with `apt-get update && apt-get install -y chromium` \
     (Debian), or point CHROMIUM_BIN at a Chromium binary.";

fn chromium_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("CHROMIUM_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("this test needs headless Chromium, which was not found on PATH. {CHROMIUM_HINT}");
}

struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and connects to its one page.
    async fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1400,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting Chromium: {e}. {CHROMIUM_HINT}"));
        // Chromium announces its DevTools endpoint on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("Chromium did not announce its DevTools endpoint");
        let host = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        let page_ws = loop {
            let (_, list) = get_json(&format!("http://{host}/json/list"), None).await;
            if let Some(url) = list.as_array().and_then(|l| {
                l.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            }) {
                break url.to_owned();
            }
            assert!(Instant::now() < deadline, "no page target: {list}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (ws, _) = tungstenite::connect(page_ws.as_str()).expect("DevTools websocket");
        Browser {
            child,
            ws,
            next_id: 0,
            _profile: profile,
        }
    }

    /// One DevTools command; events received meanwhile are skipped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let m = self.ws.read().expect("DevTools message");
            let tungstenite::Message::Text(text) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy.
    async fn wait_for(&mut self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.eval(expression);
            if !(v.is_null() || v == false || v == 0 || v == "") {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.eval("document.body.innerText.slice(0, 3000)");
                panic!(
                    "timed out waiting for {what}; the page shows:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Types into the focused element as a user would.
    fn type_into(&mut self, selector: &str, text: &str) {
        self.eval(&format!("document.querySelector({selector:?}).focus()"));
        self.call("Input.insertText", json!({"text": text}));
    }

    fn screenshot(&mut self, name: &str) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}: empty screenshot"
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = root.join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
        if std::env::var_os("SLUICE_UPDATE_SCREENSHOTS").is_some() {
            std::fs::write(root.join("docs").join(name), &png).unwrap();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_in_chromium_shows_the_graph_live_numbers_config_and_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let (sluice, grpc) = start(dir.path()).await;
    let mut b = Browser::launch().await;

    // Page loads and draws the configured graph.
    b.goto(&format!("{}/", sluice.admin));
    b.wait_for(
        "document.querySelectorAll('#graph svg g.node').length >= 5",
        "the component graph",
    )
    .await;
    let ids =
        b.eval("[...document.querySelectorAll('#graph g.node')].map(n => n.dataset.id).join(' ')");
    for id in [
        "receivers.otlp",
        "receivers.awf",
        "processors.watcher",
        "processors.batch",
        "pipelines.all",
        "exporters.debug",
    ] {
        assert!(ids.as_str().unwrap().contains(id), "{id} not drawn: {ids}");
    }
    assert!(
        b.eval("document.querySelectorAll('#graph path.edge').length")
            .as_u64()
            >= Some(5)
    );
    assert_eq!(
        b.eval("document.getElementById('health').textContent"),
        "healthy"
    );

    // Numbers move under load: the OTLP receiver's count, as the page shows it, follows.
    let before =
        b.eval("Number(document.querySelector('[data-id=\"receivers.otlp\"]').dataset.total)");
    assert_eq!(before, 0);
    send_traces(grpc, 40).await;
    b.wait_for(
        "Number(document.querySelector('[data-id=\"receivers.otlp\"]').dataset.total) >= 2000",
        "the receiver count to reach 2000 on the page",
    )
    .await;
    // Keep traffic flowing so the rates on the screenshot are live ones.
    send_traces(grpc, 20).await;
    b.wait_for(
        "/[0-9.]+k?\\/s in/.test(document.querySelector('[data-id=\"receivers.otlp\"]').textContent)",
        "a live rate on the receiver",
    )
    .await;
    b.screenshot("ui-pipeline.png");

    // The running config, secrets masked.
    b.goto(&format!("{}/#config", sluice.admin));
    let text = b
        .wait_for(
            "(t => t.includes('[receivers.otlp') && t)(document.getElementById('config-text').textContent)",
            "the config text",
        )
        .await;
    let text = text.as_str().unwrap();
    assert!(text.contains("<secret>"), "{text}");
    assert!(!text.contains(HOOK) && !text.contains(ALICE), "{text}");
    b.screenshot("ui-config.png");

    // An incident waiting for approval.
    post_alert(&sluice, "00000000000000b2").await;
    let approval = wait_pending(&sluice).await;
    b.goto(&format!("{}/#watcher", sluice.admin));
    b.wait_for(
        "!document.getElementById('tab-watcher').hidden",
        "the watcher tab",
    )
    .await;

    // A wrong token is refused, and an approve the page sends without a token too.
    b.type_into("#token", "not-an-approver-token");
    b.eval("document.querySelector('#token-form button[type=submit]').click()");
    b.wait_for(
        "document.getElementById('token-status').textContent.includes('401')",
        "the refusal of a wrong token",
    )
    .await;
    assert_eq!(
        b.eval("document.querySelectorAll('[data-approval]').length"),
        0
    );
    let status = b.eval(&format!(
        "fetch('/api/v1/approvals/{approval}/approve', {{method: 'POST'}}).then(r => r.status)"
    ));
    assert_eq!(status, 401);

    // The approver's token shows the approval; approving it in the page runs it.
    b.type_into("#token", ALICE);
    b.eval("document.querySelector('#token-form button[type=submit]').click()");
    b.wait_for(
        &format!("document.querySelector('[data-approval=\"{approval}\"] button.approve')"),
        "the pending approval",
    )
    .await;
    b.wait_for(
        "document.querySelectorAll('[data-incident]').length",
        "the incident list",
    )
    .await;
    b.eval("document.querySelector('[data-incident]').open = true");
    b.screenshot("ui-watcher.png");
    b.eval(&format!(
        "document.querySelector('[data-approval=\"{approval}\"] button.approve').click()"
    ));
    b.wait_for(
        "document.getElementById('token-status').textContent.startsWith('Approved')",
        "the approval confirmation",
    )
    .await;
    let (_, a) = get_json(
        &format!("{}/api/v1/approvals/{approval}", sluice.admin),
        Some(ALICE),
    )
    .await;
    assert_eq!(a["state"], "approved", "{a}");
    assert_eq!(a["decided_by"], "alice");
}
