//! The AWF simulator over HTTP, and the receiver against it (discovery and push): every
//! event the simulator generated is counted exactly once.

mod common;

use common::{counter_total, duplicated_span_ids, histogram_count, start, wait_until};
use futures::StreamExt;
use serde_json::{Value, json};
use sluice_awf_sim::{SimConfig, SimHandle, start_simulator};
use sluice_http_client::sse::SseParser;
use sluice_receiver_awf::event::{EventKind, WorkflowEvent};
use sluice_receiver_awf::{Config, build};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn sim_config() -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

/// Reads an execution's SSE stream to its end: (sse id, event) pairs.
async fn read_stream(
    base: &str,
    id: &str,
    last_event_id: Option<&str>,
) -> Vec<(String, WorkflowEvent)> {
    let mut req = reqwest::Client::new().get(format!("{base}/executions/{id}/events"));
    if let Some(l) = last_event_id {
        req = req.header("Last-Event-ID", l);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    let mut dispatched = Vec::new();
    let mut body = resp.bytes_stream();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = body.next().await {
            parser.feed(&chunk.unwrap(), &mut dispatched);
        }
    })
    .await;
    assert!(read.is_ok(), "stream of {id} did not end");
    for d in dispatched {
        out.push((
            d.last_event_id.clone(),
            WorkflowEvent::from_json(&d.data).unwrap(),
        ));
    }
    out
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn start_execution(base: &str, workflow: &str) -> String {
    let (s, v) = call(
        reqwest::Method::POST,
        format!("{base}/executions"),
        Some(json!({"workflow_id": workflow})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["execution_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn simulator_api_streams_and_controls() {
    let sim = start_simulator(SimConfig {
        events_per_second: 0.0,
        speed: 200.0,
        ..sim_config()
    })
    .await
    .unwrap();
    let base = sim.base_url();

    let id = start_execution(&base, "data-summary").await;
    let (s, listing) = call(reqwest::Method::GET, format!("{base}/executions"), None).await;
    assert_eq!(s, 200);
    assert!(
        listing["executions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == json!(id))
    );

    let events = read_stream(&base, &id, None).await;
    assert_eq!(events.first().unwrap().1.kind, EventKind::WorkflowStarted);
    assert!(events.last().unwrap().1.kind.is_terminal());
    for (i, (sse_id, e)) in events.iter().enumerate() {
        assert_eq!(sse_id, &(i + 1).to_string());
        assert_eq!(e.id.as_deref(), Some(&*format!("{id}:{}", i + 1)));
    }
    // Last-Event-ID resumes after the given event.
    let resumed = read_stream(&base, &id, Some("3")).await;
    assert_eq!(resumed.len(), events.len() - 3);
    assert_eq!(resumed[0].0, "4");
    let (s, _) = call(
        reqwest::Method::GET,
        format!("{base}/executions/nope/events"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, x) = call(
        reqwest::Method::GET,
        format!("{base}/executions/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (s, x["status"].clone()),
        (200, json!(events.last().unwrap().1.status.clone().unwrap()))
    );

    // Faults switch on and off at runtime.
    let url = format!("{base}/sim/faults");
    let (s, v) = call(
        reqwest::Method::POST,
        url.clone(),
        Some(json!({"kind":"agent_failing","agent_id":"writer","probability":1.0})),
    )
    .await;
    assert_eq!((s, v["name"].clone()), (201, json!("agent_failing:writer")));
    let (s, _) = call(
        reqwest::Method::POST,
        url.clone(),
        Some(json!({"kind":"meteor_strike"})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = call(
        reqwest::Method::POST,
        url.clone(),
        Some(json!({"kind":"agent_failing","agent_id":"nobody"})),
    )
    .await;
    assert_eq!(s, 400);
    let (_, v) = call(reqwest::Method::GET, url.clone(), None).await;
    assert_eq!(v["faults"][0]["agent_id"], json!("writer"));

    // The fault shows in the next execution...
    let failing = start_execution(&base, "data-summary").await;
    let ev = read_stream(&base, &failing, None).await;
    let writer_failures = ev
        .iter()
        .filter(|(_, e)| {
            e.kind == EventKind::AgentInvoked
                && e.agent_id.as_deref() == Some("writer")
                && e.error.is_some()
        })
        .count();
    assert_eq!(writer_failures, 3);
    assert!(ev.iter().any(|(_, e)| e.kind == EventKind::StepFallback));

    // ...and a remediation (disable the agent) really stops it.
    let (s, _) = call(
        reqwest::Method::POST,
        format!("{base}/agents/writer/disable"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let healed = start_execution(&base, "data-summary").await;
    let ev = read_stream(&base, &healed, None).await;
    assert!(
        !ev.iter()
            .any(|(_, e)| e.agent_id.as_deref() == Some("writer")
                && e.kind == EventKind::AgentInvoked)
    );
    assert!(
        ev.iter()
            .any(|(_, e)| e.agent_id.as_deref() == Some("writer-lite"))
    );

    // The other control endpoints.
    let (s, v) = call(
        reqwest::Method::POST,
        format!("{base}/steps/plan/timeout"),
        None,
    )
    .await;
    assert_eq!((s, v["timeout_ms"].clone()), (200, json!(45000.0)));
    let (s, _) = call(
        reqwest::Method::POST,
        format!("{base}/steps/nope/timeout"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = call(
        reqwest::Method::POST,
        format!("{base}/workers/scale"),
        Some(json!({"workers": 16})),
    )
    .await;
    assert_eq!((s, v["workers"].clone()), (200, json!(16)));
    let r = reqwest::Client::new()
        .post(format!("{base}/workers/scale"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (s, v) = call(
        reqwest::Method::POST,
        format!("{base}/agents/researcher/fallback"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["fallback_agent_id"].clone()),
        (200, json!("researcher-backup"))
    );
    let (s, v) = call(
        reqwest::Method::POST,
        format!("{base}/executions/{failing}/restart"),
        None,
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(v["restarted_from"], json!(failing));
    let (s, _) = call(
        reqwest::Method::POST,
        format!("{base}/executions/{failing}/steps/summarize/retry"),
        None,
    )
    .await;
    assert_eq!(s, 202);
    let (s, _) = call(
        reqwest::Method::DELETE,
        format!("{base}/sim/faults/agent_failing:writer"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        reqwest::Method::DELETE,
        format!("{base}/sim/faults/agent_failing:writer"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (_, v) = call(reqwest::Method::GET, format!("{base}/sim/actions"), None).await;
    let actions: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "add_fault",
            "disable_agent",
            "increase_timeout",
            "scale_workers",
            "switch_fallback",
            "restart_workflow",
            "retry_step",
            "remove_fault"
        ]
    );
    let (_, st) = call(reqwest::Method::GET, format!("{base}/sim/state"), None).await;
    assert_eq!(st["disabled_agents"], json!(["writer"]));
    sim.stop().await.unwrap();
}

/// Every event of every execution the simulator ran, read back from its streams.
async fn all_events(sim: &SimHandle) -> Vec<WorkflowEvent> {
    let base = sim.base_url();
    let (_, listing) = call(
        reqwest::Method::GET,
        format!("{base}/executions?limit=10000"),
        None,
    )
    .await;
    let mut out = Vec::new();
    for x in listing["executions"].as_array().unwrap() {
        let id = x["id"].as_str().unwrap();
        out.extend(
            read_stream(&base, id, None)
                .await
                .into_iter()
                .map(|(_, e)| e),
        );
    }
    out
}

struct Expected {
    executions: usize,
    completed: f64,
    input_tokens: f64,
    output_tokens: f64,
    step_ends: u64,
    retries: f64,
    fallbacks: f64,
    spans: usize,
}

fn expected(events: &[WorkflowEvent]) -> Expected {
    let of = |k: EventKind| events.iter().filter(|e| e.kind == k).count();
    let tokens = |f: fn(&sluice_receiver_awf::event::TokenUsage) -> u64| {
        events
            .iter()
            .filter(|e| e.kind == EventKind::AgentInvoked)
            .filter_map(|e| e.tokens())
            .map(|t| f(&t) as f64)
            .sum::<f64>()
    };
    let executions = of(EventKind::WorkflowStarted);
    let step_ends = (of(EventKind::StepCompleted) + of(EventKind::StepFailed)) as u64;
    Expected {
        executions,
        completed: of(EventKind::WorkflowCompleted) as f64,
        input_tokens: tokens(|t| t.input_tokens),
        output_tokens: tokens(|t| t.output_tokens),
        step_ends,
        retries: of(EventKind::StepRetried) as f64,
        fallbacks: of(EventKind::StepFallback) as f64,
        spans: executions + step_ends as usize + of(EventKind::AgentInvoked),
    }
}

async fn check_against_sim(sim: &SimHandle, consumer: &common::TestConsumer) {
    let events = all_events(sim).await;
    let want = expected(&events);
    let m = consumer.last_metrics();
    assert_eq!(
        counter_total(&m, "awf_workflow_total", &[]),
        want.executions as f64
    );
    assert_eq!(
        counter_total(&m, "awf_workflow_total", &[("status", "completed")]),
        want.completed
    );
    assert_eq!(
        counter_total(&m, "awf_tokens_total", &[("direction", "input")]),
        want.input_tokens
    );
    assert_eq!(
        counter_total(&m, "awf_tokens_total", &[("direction", "output")]),
        want.output_tokens
    );
    assert_eq!(histogram_count(&m, "awf_step_duration_ms"), want.step_ends);
    assert_eq!(counter_total(&m, "awf_retry_total", &[]), want.retries);
    assert_eq!(counter_total(&m, "awf_fallback_total", &[]), want.fallbacks);
    let spans = consumer.spans();
    assert!(
        duplicated_span_ids(&spans).is_empty(),
        "{:?}",
        duplicated_span_ids(&spans)
    );
    assert_eq!(spans.len(), want.spans);
    assert_eq!(
        consumer.logs().len(),
        events.len(),
        "one log record per event"
    );
}

#[tokio::test]
async fn receiver_discovers_and_follows_simulated_executions() {
    let sim = start_simulator(SimConfig {
        events_per_second: 150.0,
        speed: 4.0,
        max_executions: Some(20),
        ..sim_config()
    })
    .await
    .unwrap();
    let cfg: Config = toml::from_str(&format!(
        r#"
        discovery = {{ url = "{}/executions", interval = "100ms" }}
        metrics_interval = "100ms"
        reconnect_delay = "50ms"
        "#,
        sim.base_url()
    ))
    .unwrap();
    let running = start(Box::new(build(&cfg, "receivers.awf").unwrap()));
    let consumer = Arc::clone(&running.consumer);
    let all_ended = wait_until(Duration::from_secs(60), || {
        counter_total(&consumer.last_metrics(), "awf_workflow_total", &[]) >= 20.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let consumer = running.shutdown().await;
    assert!(all_ended, "not every execution was seen to its end");
    check_against_sim(&sim, &consumer).await;
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn simulator_pushes_to_the_receiver_through_backpressure() {
    let cfg: Config = toml::from_str(
        r#"
        push = { endpoint = "127.0.0.1:0" }
        metrics_interval = "100ms"
        "#,
    )
    .unwrap();
    let rx = build(&cfg, "receivers.awf").unwrap();
    let push_url = format!("http://{}/v1/awf/events", rx.push_addr().unwrap());
    let running = start(Box::new(rx));
    // The pipeline is full for the first few requests: the simulator must retry them.
    running.consumer.refuse_next.store(3, Ordering::SeqCst);
    let sim = start_simulator(SimConfig {
        events_per_second: 2000.0,
        speed: 100.0,
        max_executions: Some(60),
        push_url: Some(push_url),
        push_batch: 100,
        ..sim_config()
    })
    .await
    .unwrap();
    let consumer = Arc::clone(&running.consumer);
    let all_ended = wait_until(Duration::from_secs(60), || {
        counter_total(&consumer.last_metrics(), "awf_workflow_total", &[]) >= 60.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let consumer = running.shutdown().await;
    assert!(all_ended, "not every pushed execution arrived");
    assert_eq!(consumer.refused.load(Ordering::SeqCst), 3);
    check_against_sim(&sim, &consumer).await;
    sim.stop().await.unwrap();
}

/// Throughput of simulator → push → receiver → (null) pipeline. Run with
/// `cargo test -p sluice-receiver-awf --release --test sim -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_simulator_to_receiver() {
    let cfg: Config =
        toml::from_str("push = { endpoint = \"127.0.0.1:0\" }\nmetrics_interval = \"1s\"").unwrap();
    let rx = build(&cfg, "receivers.awf").unwrap();
    let push_url = format!("http://{}/v1/awf/events", rx.push_addr().unwrap());
    let running = start(Box::new(rx));
    let target = 12_000.0;
    let sim = start_simulator(SimConfig {
        events_per_second: target,
        speed: 20.0,
        workers: 64,
        push_url: Some(push_url),
        push_batch: 1000,
        ..sim_config()
    })
    .await
    .unwrap();
    let base = sim.base_url();
    let state = || async {
        let (_, st) = call(reqwest::Method::GET, format!("{base}/sim/state"), None).await;
        st
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s0 = state().await["stats"]["events"].as_u64().unwrap();
    let logs0 = running.consumer.logs().len();
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s1 = state().await;
    let logs1 = running.consumer.logs().len();
    let secs = t0.elapsed().as_secs_f64();
    let generated = (s1["stats"]["events"].as_u64().unwrap() - s0) as f64 / secs;
    let received = (logs1 - logs0) as f64 / secs;
    println!(
        "generated {generated:.0} events/s, received {received:.0} events/s (target {target}); state {s1}"
    );
    sim.stop().await.unwrap();
    running.shutdown().await;
    assert!(
        generated >= 10_000.0,
        "simulator below 10k events/s: {generated:.0}"
    );
    assert!(
        received >= 10_000.0,
        "receiver below 10k events/s: {received:.0}"
    );
}
