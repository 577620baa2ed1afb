//! Discovery when an execution's SSE body ends before its terminal event: the receiver
//! reconnects (with `Last-Event-ID`, or replaying from the start de-duplicated when the stream
//! has no ids) and reads to the terminal event, also when the listing already says the
//! execution ended (docs/awf-events.md §2). Every event arrives exactly once, and the
//! premature ends, reconnects and given-up streams are counted.

mod common;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{
    counter_total, duplicated_span_ids, gauge_value, histogram_count, start_as, wait_until,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sluice_receiver_awf::{Config, build};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const STEPS: usize = 5;
/// `workflow.started`, three events per step, `workflow.completed`.
const EVENTS: usize = 2 + 3 * STEPS;

/// The recorder is process-global; each test reads its own `component_id`.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("recorder")
    })
}

/// A self-metric of one receiver, summed over its other labels.
fn self_metric(component_id: &str, name: &str, labels: &[&str]) -> f64 {
    let want = format!("component_id=\"{component_id}\"");
    recorder()
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| l.contains(&want) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A complete execution as AWF sends it (no `id` in the JSON; the SSE `id:` is the
/// position): `EVENTS` events, one invocation per step (100 in / 10 out tokens, $0.25).
fn execution(exec: &str, workflow: &str) -> Vec<Value> {
    let mut out =
        vec![json!({"type":"workflow.started","workflow_id":workflow,"execution_id":exec})];
    for s in 0..STEPS {
        let base = json!({"execution_id":exec,"workflow_id":workflow,"step_id":format!("step-{s}"),
            "agent_id":"agent-a","attempt":1});
        let with = |ty: &str, extra: Value| {
            let mut v = base.clone();
            v["type"] = json!(ty);
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            v
        };
        out.push(with("workflow.step.started", json!({"provider":"openai"})));
        out.push(with(
            "agent.invoked",
            json!({"metrics":{"execution_time_ms":5,
                "token_usage":{"input_tokens":100,"output_tokens":10},"cost_usd":0.25}}),
        ));
        out.push(with(
            "workflow.step.completed",
            json!({"metrics":{"execution_time_ms":7}}),
        ));
    }
    out.push(json!({"type":"workflow.completed","workflow_id":workflow,"execution_id":exec}));
    out
}

/// How the fake AWF serves one execution.
struct Exec {
    id: String,
    workflow: String,
    events: Vec<Value>,
    /// `id: n` lines (1-based, resuming after `Last-Event-ID`); without them every
    /// connection replays from the start, like AWF's own endpoint.
    with_ids: bool,
    /// Events the server has by the n-th connection (the last entry repeats): each body
    /// ends cleanly after them, before the terminal event until the last stage.
    stages: Vec<usize>,
    /// The listing says `completed` once this many connections were served.
    completed_after: usize,
    /// `Last-Event-ID` of each connection.
    conns: Vec<Option<String>>,
}

type Awf = Arc<Mutex<Vec<Exec>>>;

async fn listing(State(awf): State<Awf>) -> Response {
    let awf = awf.lock();
    let items: Vec<Value> = awf
        .iter()
        .map(|x| {
            let status = if x.conns.len() >= x.completed_after {
                "completed"
            } else {
                "running"
            };
            json!({"id": x.id, "workflow_id": x.workflow, "status": status})
        })
        .collect();
    axum::Json(json!({ "executions": items })).into_response()
}

async fn events(State(awf): State<Awf>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut awf = awf.lock();
    let Some(x) = awf.iter_mut().find(|x| x.id == id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let have = x.stages[x.conns.len().min(x.stages.len() - 1)];
    x.conns.push(last.clone());
    let from = match (&last, x.with_ids) {
        (Some(l), true) => l.parse::<usize>().expect("numeric Last-Event-ID"),
        _ => 0,
    };
    let mut body = String::from(": keep-alive\n\n");
    for (i, e) in x.events.iter().enumerate().take(have).skip(from) {
        if x.with_ids {
            body.push_str(&format!("id: {}\n", i + 1));
        }
        body.push_str(&format!("data: {e}\n\n"));
    }
    // A Content-Length body: it ends cleanly, like the server in issue 11.
    ([("content-type", "text/event-stream")], body).into_response()
}

async fn fake_awf(execs: Vec<Exec>) -> (String, Awf) {
    let awf: Awf = Arc::new(Mutex::new(execs));
    let app = Router::new()
        .route("/executions", get(listing))
        .route("/executions/{id}/events", get(events))
        .with_state(awf.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/executions"), awf)
}

fn exec(id: &str, with_ids: bool, stages: &[usize], completed_after: usize) -> Exec {
    let workflow = format!("wf-{id}");
    Exec {
        id: id.to_owned(),
        events: execution(id, &workflow),
        workflow,
        with_ids,
        stages: stages.to_vec(),
        completed_after,
        conns: Vec::new(),
    }
}

fn config(listing: &str, max_premature_ends: u32) -> Config {
    toml::from_str(&format!(
        r#"
        discovery = {{ url = "{listing}", interval = "20ms", max_premature_ends = {max_premature_ends} }}
        # Longer than several polls: the listing is read again during each gap.
        reconnect_delay = "150ms"
        metrics_interval = "50ms"
        idle_timeout = "5s"
        "#
    ))
    .unwrap()
}

/// Runs discovery against `execs` until every one of them completed; asserts each arrived
/// exactly once and returns the `Last-Event-ID`s each connection carried.
async fn run_to_completion(component_id: &str, execs: Vec<Exec>) -> Vec<Vec<Option<String>>> {
    let names: Vec<(String, String)> = execs
        .iter()
        .map(|x| (x.id.clone(), x.workflow.clone()))
        .collect();
    let (listing, awf) = fake_awf(execs).await;
    let running = start_as(
        Box::new(build(&config(&listing, 10), component_id).unwrap()),
        component_id,
    );
    let consumer = Arc::clone(&running.consumer);
    let done = wait_until(Duration::from_secs(15), || {
        let m = consumer.last_metrics();
        names
            .iter()
            .all(|(_, wf)| counter_total(&m, "awf_workflow_total", &[("workflow_id", wf)]) >= 1.0)
    })
    .await;
    // Give a receiver that re-delivers the chance to show it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let consumer = running.shutdown().await;
    let conns: Vec<Vec<Option<String>>> = awf.lock().iter().map(|x| x.conns.clone()).collect();
    assert!(
        done,
        "not every execution completed; connections: {conns:?}"
    );

    let spans = consumer.spans();
    assert!(
        duplicated_span_ids(&spans).is_empty(),
        "{:?}",
        duplicated_span_ids(&spans)
    );
    let logs = consumer.logs();
    let m = consumer.last_metrics();
    for (exec, wf) in &names {
        let of_exec = |attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
            attrs.iter().any(|kv| {
                kv.key == "execution_id"
                    && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) if s == exec)
            })
        };
        let spans: Vec<_> = spans.iter().filter(|s| of_exec(&s.attributes)).collect();
        assert_eq!(
            spans.iter().filter(|s| s.name == "awf.workflow").count(),
            1,
            "{exec}: one awf.workflow span"
        );
        assert_eq!(
            spans.len(),
            1 + 2 * STEPS,
            "{exec}: workflow + steps + invocations"
        );
        assert_eq!(
            logs.iter().filter(|l| of_exec(&l.attributes)).count(),
            EVENTS,
            "{exec}: one log record per event, none twice"
        );
        assert_eq!(
            counter_total(&m, "awf_workflow_total", &[("workflow_id", wf)]),
            1.0
        );
        assert_eq!(
            gauge_value(&m, "awf_active_executions", &[("workflow_id", wf)]),
            Some(0.0),
            "{exec} is no longer active"
        );
    }
    let n = names.len() as f64;
    assert_eq!(
        counter_total(&m, "awf_tokens_total", &[("direction", "input")]),
        n * 100.0 * STEPS as f64
    );
    assert_eq!(
        counter_total(&m, "awf_tokens_total", &[("direction", "output")]),
        n * 10.0 * STEPS as f64
    );
    assert!((counter_total(&m, "awf_cost_usd_total", &[]) - n * 0.25 * STEPS as f64).abs() < 1e-9);
    assert_eq!(
        histogram_count(&m, "awf_step_duration_ms"),
        (names.len() * STEPS) as u64
    );
    conns
}

#[tokio::test]
async fn premature_end_with_ids_resumes_after_last_event_id() {
    recorder();
    let id = "receivers.awf_ids";
    // Ends after id 6, then after id 11, then carries the tail; the listing says running
    // all along.
    let conns = run_to_completion(id, vec![exec("ex-0007", true, &[6, 11, EVENTS], 99)]).await;
    assert_eq!(
        conns[0],
        vec![None, Some("6".to_owned()), Some("11".to_owned())]
    );
    assert_eq!(
        self_metric(id, "sluice_awf_stream_premature_ends_total", &[]),
        2.0
    );
    assert_eq!(
        self_metric(id, "sluice_awf_stream_reconnects_total", &["after=\"eof\""]),
        2.0
    );
    assert_eq!(
        self_metric(id, "sluice_awf_streams_abandoned_total", &[]),
        0.0
    );
    assert_eq!(
        self_metric(id, "sluice_awf_events_duplicate_total", &[]),
        0.0
    );
}

#[tokio::test]
async fn premature_end_without_ids_replays_from_the_start_deduplicated() {
    recorder();
    let id = "receivers.awf_noids";
    let conns = run_to_completion(id, vec![exec("ex-0008", false, &[6, 11, EVENTS], 99)]).await;
    assert_eq!(conns[0], vec![None, None, None]);
    assert_eq!(
        self_metric(id, "sluice_awf_stream_premature_ends_total", &[]),
        2.0
    );
    // The replays: 6 events again on the second connection, 11 on the third.
    assert_eq!(
        self_metric(id, "sluice_awf_events_duplicate_total", &[]),
        17.0
    );
}

#[tokio::test]
async fn listing_flips_to_completed_during_the_gap() {
    recorder();
    let id = "receivers.awf_flip";
    // Both bodies end early; right after, the listing says `completed` (polled several times
    // before the reconnect), and the servers have the tails.
    let conns = run_to_completion(
        id,
        vec![
            exec("ex-a", true, &[6, EVENTS], 1),
            exec("ex-b", false, &[4, EVENTS], 1),
        ],
    )
    .await;
    assert_eq!(conns[0], vec![None, Some("6".to_owned())]);
    assert_eq!(conns[1], vec![None, None]);
    assert_eq!(
        self_metric(id, "sluice_awf_stream_premature_ends_total", &[]),
        2.0
    );
}

#[tokio::test]
async fn a_stream_that_never_brings_its_terminal_event_is_given_up() {
    recorder();
    let id = "receivers.awf_stuck";
    // The body always ends after id 6 and nothing new ever comes.
    let (listing, awf) = fake_awf(vec![exec("ex-stuck", true, &[6], 99)]).await;
    let running = start_as(Box::new(build(&config(&listing, 3), id).unwrap()), id);
    let given_up = wait_until(Duration::from_secs(10), || {
        self_metric(id, "sluice_awf_streams_abandoned_total", &[]) >= 1.0
    })
    .await;
    // The listing still says running: discovery must not take it up again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let consumer = running.shutdown().await;
    let conns = awf.lock()[0].conns.clone();
    assert!(given_up, "connections: {conns:?}");
    // The first connection brought events; then three ends in a row brought nothing.
    assert_eq!(conns.len(), 4, "{conns:?}");
    assert!(conns[1..].iter().all(|c| c.as_deref() == Some("6")));
    assert_eq!(
        self_metric(id, "sluice_awf_stream_premature_ends_total", &[]),
        4.0
    );
    assert_eq!(
        self_metric(id, "sluice_awf_stream_reconnects_total", &[]),
        3.0
    );
    assert_eq!(
        self_metric(
            id,
            "sluice_awf_streams_abandoned_total",
            &["reason=\"premature_ends\""]
        ),
        1.0
    );
    // What did arrive arrived once.
    assert_eq!(consumer.logs().len(), 6);
    assert!(duplicated_span_ids(&consumer.spans()).is_empty());
}
