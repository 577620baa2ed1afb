//! The receiver end to end over real sockets: the push endpoint's statuses, and SSE streams
//! cut mid-event and reconnected without losing or duplicating spans or counts.

mod common;

use common::{counter_total, duplicated_span_ids, histogram_count, start, wait_until};
use serde_json::{Value, json};
use sluice_receiver_awf::{Config, build};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A complete execution: start, `steps` steps each with one invocation (100 in / 10 out
/// tokens, $0.25), end: `2 + 3·steps` events.
fn execution(exec: &str, steps: usize) -> Vec<Value> {
    let mut out = vec![json!({"id": format!("{exec}:0"), "type":"workflow.started",
        "workflow_id":"wf","execution_id":exec,"input":{"secret":"x"}})];
    for s in 0..steps {
        let step = format!("step-{s}");
        let base = json!({"execution_id":exec,"step_id":step,"agent_id":"agent-a","attempt":1});
        let with = |id: usize, ty: &str, extra: Value| {
            let mut v = base.clone();
            v["id"] = json!(format!("{exec}:{s}:{id}"));
            v["type"] = json!(ty);
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            v
        };
        out.push(with(
            1,
            "workflow.step.started",
            json!({"framework":"langgraph","provider":"openai"}),
        ));
        out.push(with(
            2,
            "agent.invoked",
            json!({"metrics":{"execution_time_ms":5,
            "token_usage":{"input_tokens":100,"output_tokens":10},"cost_usd":0.25}}),
        ));
        out.push(with(
            3,
            "workflow.step.completed",
            json!({"metrics":{"execution_time_ms":7}}),
        ));
    }
    out.push(json!({"id": format!("{exec}:end"), "type":"workflow.completed","workflow_id":"wf","execution_id":exec}));
    out
}

fn push_config() -> Config {
    toml::from_str(
        r#"
        push = { endpoint = "127.0.0.1:0" }
        metrics_interval = "50ms"
        "#,
    )
    .unwrap()
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: String,
) -> (u16, Option<String>, Value) {
    let r = client
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

#[tokio::test]
async fn push_endpoint_statuses_and_exactly_once() {
    let rx = build(&push_config(), "receivers.awf").unwrap();
    let addr = rx.push_addr().unwrap();
    let running = start(Box::new(rx));
    let url = format!("http://{addr}/v1/awf/events");
    let client = reqwest::Client::new();
    let events = execution("ex-push", 2);
    let body = serde_json::to_string(&events).unwrap();

    // Malformed input: 400 with a message, and the server keeps serving.
    let (s, _, b) = post(&client, &url, "application/json", "{".into()).await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("invalid JSON"), "{b}");
    let (s, _, b) = post(
        &client,
        &url,
        "application/json",
        r#"[{"type":"a"},{"no":1}]"#.into(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("event 1"), "{b}");
    let (s, _, _) = post(&client, &url, "text/plain", body.clone()).await;
    assert_eq!(s, 415);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(
        running.consumer.items.lock().is_empty(),
        "nothing delivered from bad requests"
    );

    // Pipeline full: 429 + Retry-After, and nothing counted.
    running.consumer.refuse_next.store(1, Ordering::SeqCst);
    let (s, retry_after, _) = post(&client, &url, "application/json", body.clone()).await;
    assert_eq!(s, 429);
    assert_eq!(retry_after.as_deref(), Some("1"));

    // The client retries: accepted, converted in full (not mistaken for a duplicate).
    let (s, _, b) = post(&client, &url, "application/json", body.clone()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["accepted"], json!(8));
    assert_eq!(b["duplicates"], json!(0));

    // A replay is acknowledged and changes nothing.
    let (s, _, b) = post(&client, &url, "application/json", body.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(b["duplicates"], json!(8));

    // A single event (not an array) and NDJSON work too.
    let single = json!({"type":"workflow.started","execution_id":"ex-single","workflow_id":"wf"});
    let (s, _, _) = post(&client, &url, "application/json", single.to_string()).await;
    assert_eq!(s, 200);
    let nd = format!(
        "{}\n{}\n",
        json!({"type":"workflow.step.started","execution_id":"ex-single","step_id":"a"}),
        json!({"type":"workflow.step.completed","execution_id":"ex-single","step_id":"a"})
    );
    let (s, _, _) = post(&client, &url, "application/x-ndjson", nd).await;
    assert_eq!(s, 200);

    let consumer = Arc::clone(&running.consumer);
    assert!(
        wait_until(Duration::from_secs(5), || {
            counter_total(&consumer.last_metrics(), "awf_workflow_total", &[]) == 1.0
        })
        .await
    );
    let consumer = running.shutdown().await;
    let spans = consumer.spans();
    // ex-push: workflow + 2 steps + 2 invocations; ex-single: 1 step.
    assert_eq!(
        spans.len(),
        6,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(duplicated_span_ids(&spans).is_empty());
    assert_eq!(consumer.logs().len(), 8 + 3);
    let m = consumer.last_metrics();
    assert_eq!(
        counter_total(&m, "awf_tokens_total", &[("direction", "input")]),
        200.0
    );
    assert_eq!(
        counter_total(&m, "awf_workflow_total", &[("status", "completed")]),
        1.0
    );
    assert_eq!(histogram_count(&m, "awf_step_duration_ms"), 3);
    // Inputs are redacted by default before anything leaves.
    assert!(
        consumer
            .logs()
            .iter()
            .all(|l| l.attributes.iter().all(|a| !a.key.starts_with("input.")))
    );
}

#[tokio::test]
async fn push_requires_the_configured_token() {
    let cfg: Config =
        toml::from_str(r#"push = { endpoint = "127.0.0.1:0", bearer_token = "s3cret" }"#).unwrap();
    let rx = build(&cfg, "receivers.awf").unwrap();
    let url = format!("http://{}/v1/awf/events", rx.push_addr().unwrap());
    let running = start(Box::new(rx));
    let client = reqwest::Client::new();
    let body = json!({"type":"workflow.started","execution_id":"e"}).to_string();
    let r = client.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .post(&url)
        .bearer_auth("s3cret")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    running.shutdown().await;
}

#[tokio::test]
async fn push_body_over_the_limit_is_413() {
    let cfg: Config =
        toml::from_str("push = { endpoint = \"127.0.0.1:0\" }\nmax_event_size = \"2KiB\"").unwrap();
    let rx = build(&cfg, "receivers.awf").unwrap();
    let url = format!("http://{}/v1/awf/events", rx.push_addr().unwrap());
    let running = start(Box::new(rx));
    let big = json!({"type":"x","execution_id":"e","blob":"a".repeat(4096)}).to_string();
    let r = reqwest::Client::new()
        .post(&url)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    running.shutdown().await;
}

#[test]
fn build_reports_port_clashes_with_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg: Config = toml::from_str(&format!(
        "push = {{ endpoint = \"{}\" }}",
        taken.local_addr().unwrap()
    ))
    .unwrap();
    let err = build(&cfg, "receivers.awf").unwrap_err().to_string();
    assert!(err.contains("push.endpoint"), "{err}");
}

/// How the test SSE server ends its first connection.
#[derive(Clone, Copy, PartialEq)]
enum Cut {
    /// Close-delimited body ends mid-event (clean EOF).
    EofMidEvent,
    /// Chunked body aborted mid-chunk (a read error).
    AbortMidChunk,
}

/// Serves `events` as SSE. The first connection sends the first `cut_after` events, then
/// half of the next one, and is cut. Later connections resume after `Last-Event-ID` when
/// `honour_last_event_id`, else replay everything (like AWF's own endpoint without ids).
/// Returns the address and the `Last-Event-ID` header of each connection.
async fn sse_server(
    events: Vec<Value>,
    cut_after: usize,
    cut: Cut,
    with_ids: bool,
    honour_last_event_id: bool,
) -> (
    std::net::SocketAddr,
    Arc<parking_lot::Mutex<Vec<Option<String>>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut conn_no = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            conn_no += 1;
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).to_string();
            let last_id = text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("last-event-id")
                    .then(|| v.trim().to_owned())
            });
            seen2.lock().push(last_id.clone());
            let from = match (&last_id, honour_last_event_id) {
                (Some(id), true) => id.parse::<usize>().unwrap() + 1,
                _ => 0,
            };
            let frame = |i: usize| {
                let data = serde_json::to_string(&events[i]).unwrap();
                if with_ids {
                    // CRLF line ends and a comment exercise the parser on the way.
                    format!("id: {i}\r\n: keep-alive comment\r\ndata: {data}\r\n\r\n")
                } else {
                    format!("data: {data}\n\n")
                }
            };
            let chunked = cut == Cut::AbortMidChunk;
            let head = if chunked {
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            };
            let mut body = String::new();
            if conn_no == 1 {
                body.push_str("retry: 50\n\n");
            }
            let end = if conn_no == 1 {
                cut_after
            } else {
                events.len()
            };
            for i in from..end {
                body.push_str(&frame(i));
            }
            let mut tail = String::new();
            if conn_no == 1 {
                let next = frame(cut_after);
                tail = next[..next.len() / 2].to_owned();
            }
            let _ = sock.write_all(head.as_bytes()).await;
            if chunked {
                let payload = format!("{body}{tail}");
                // Announce more bytes than are sent, then drop the connection.
                let _ = sock
                    .write_all(format!("{:x}\r\n{payload}", payload.len() + 100).as_bytes())
                    .await;
            } else {
                let _ = sock.write_all(format!("{body}{tail}").as_bytes()).await;
            }
            let _ = sock.flush().await;
            drop(sock);
        }
    });
    (addr, seen)
}

async fn run_cut_stream(cut: Cut, with_ids: bool, honour: bool, refuse: u32) {
    let mut events = execution("ex-1", 5);
    if !with_ids {
        for e in &mut events {
            e.as_object_mut().unwrap().remove("id");
        }
    }
    let total = events.len();
    let cut_after = 7; // inside step 1 (events 0..=6 complete)
    let (addr, seen) = sse_server(events, cut_after, cut, with_ids, honour).await;
    let cfg: Config = toml::from_str(&format!(
        r#"
        streams = ["http://{addr}/executions/ex-1/events"]
        reconnect_delay = "20ms"
        metrics_interval = "50ms"
        idle_timeout = "5s"
        "#
    ))
    .unwrap();
    let running = start(Box::new(build(&cfg, "receivers.awf").unwrap()));
    running.consumer.refuse_next.store(refuse, Ordering::SeqCst);
    let consumer = Arc::clone(&running.consumer);
    let done = wait_until(Duration::from_secs(10), || {
        let m = consumer.last_metrics();
        counter_total(&m, "awf_workflow_total", &[]) >= 1.0
            && counter_total(&m, "awf_tokens_total", &[]) >= 5.0 * 110.0
    })
    .await;
    // Give a wrongly re-delivering receiver the chance to show it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let consumer = running.shutdown().await;
    assert!(done, "stream not fully delivered");

    let spans = consumer.spans();
    assert!(
        duplicated_span_ids(&spans).is_empty(),
        "duplicates: {:?}",
        duplicated_span_ids(&spans)
    );
    assert_eq!(spans.len(), 1 + 5 + 5, "workflow + 5 steps + 5 invocations");
    let m = consumer.last_metrics();
    assert_eq!(
        counter_total(&m, "awf_tokens_total", &[("direction", "input")]),
        500.0
    );
    assert_eq!(
        counter_total(&m, "awf_tokens_total", &[("direction", "output")]),
        50.0
    );
    assert!((counter_total(&m, "awf_cost_usd_total", &[]) - 1.25).abs() < 1e-9);
    assert_eq!(
        counter_total(&m, "awf_workflow_total", &[("workflow_id", "wf")]),
        1.0
    );
    assert_eq!(histogram_count(&m, "awf_step_duration_ms"), 5);
    let logs = consumer.logs();
    assert_eq!(logs.len(), total, "one log record per event, none twice");
    let seen = seen.lock().clone();
    assert!(seen.len() >= 2, "the receiver reconnected: {seen:?}");
    assert_eq!(seen[0], None, "no Last-Event-ID on the first connection");
    if with_ids {
        assert_eq!(
            seen[1].as_deref(),
            Some(&*(cut_after - 1).to_string()),
            "resumes after the last complete event"
        );
    }
    if refuse > 0 {
        assert_eq!(consumer.refused.load(Ordering::SeqCst), u64::from(refuse));
    }
}

#[tokio::test]
async fn sse_cut_mid_event_resumes_with_last_event_id() {
    run_cut_stream(Cut::EofMidEvent, true, true, 0).await;
}

#[tokio::test]
async fn sse_aborted_chunk_resumes_with_last_event_id() {
    run_cut_stream(Cut::AbortMidChunk, true, true, 0).await;
}

#[tokio::test]
async fn sse_full_replay_without_ids_is_deduplicated() {
    // AWF's own endpoint sends no ids and replays from the start on reconnect.
    run_cut_stream(Cut::EofMidEvent, false, false, 0).await;
}

#[tokio::test]
async fn sse_replay_ignoring_last_event_id_is_deduplicated() {
    run_cut_stream(Cut::AbortMidChunk, true, false, 0).await;
}

#[tokio::test]
async fn sse_events_survive_a_full_pipeline() {
    // The first five deliveries are refused: retried, not lost, not duplicated.
    run_cut_stream(Cut::EofMidEvent, true, true, 5).await;
}

#[tokio::test]
async fn sse_stream_goes_on_after_a_permanent_refusal() {
    let events = execution("ex-inv", 3);
    let (addr, _) = sse_server(events, 4, Cut::EofMidEvent, true, true).await;
    let cfg: Config = toml::from_str(&format!(
        "streams = [\"http://{addr}/executions/ex-inv/events\"]\nreconnect_delay = \"20ms\"\nmetrics_interval = \"50ms\""
    ))
    .unwrap();
    let running = start(Box::new(build(&cfg, "receivers.awf").unwrap()));
    running.consumer.invalid_next.store(1, Ordering::SeqCst);
    let consumer = Arc::clone(&running.consumer);
    let done = wait_until(Duration::from_secs(10), || {
        counter_total(&consumer.last_metrics(), "awf_workflow_total", &[]) >= 1.0
    })
    .await;
    let consumer = running.shutdown().await;
    assert!(done, "the stream stopped after an Invalid refusal");
    assert_eq!(consumer.refused.load(Ordering::SeqCst), 1);
    // The refused item is dropped for good; everything after it arrives once.
    assert!(duplicated_span_ids(&consumer.spans()).is_empty());
    assert_eq!(
        counter_total(
            &consumer.last_metrics(),
            "awf_tokens_total",
            &[("direction", "input")]
        ),
        300.0
    );
}

#[tokio::test]
async fn sse_non_event_stream_is_not_parsed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let hits2 = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            hits2.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let body = "data: {\"type\":\"workflow.started\",\"execution_id\":\"x\"}\n\n";
            let _ = sock
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    let cfg: Config = toml::from_str(&format!(
        "streams = [\"http://{addr}/executions/x/events\"]\nreconnect_delay = \"10ms\"\nmax_reconnect_delay = \"20ms\""
    ))
    .unwrap();
    let running = start(Box::new(build(&cfg, "receivers.awf").unwrap()));
    assert!(
        wait_until(Duration::from_secs(5), || hits.load(Ordering::SeqCst) >= 3).await,
        "keeps retrying with backoff"
    );
    let consumer = running.shutdown().await;
    assert!(consumer.spans().is_empty() && consumer.logs().is_empty());
}
