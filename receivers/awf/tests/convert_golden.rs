//! Golden conversion tests: an event sequence → the exact spans (ids, parents, attributes,
//! status), metric points and log records it must produce, and exactly-once behaviour under
//! replays, refusals and timeouts.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::{Span, status};
use prost::Message;
use serde_json::{Value, json};
use sluice_core::Signal;
use sluice_receiver_awf::aggregate::AwfMetric;
use sluice_receiver_awf::convert::{ConvertConfig, Converter, Pending};
use sluice_receiver_awf::event::WorkflowEvent;
use sluice_receiver_awf::ids;
use sluice_receiver_awf::redact::{RedactionMode, Redactor};
use std::time::Duration;

const T0: u64 = 1_735_732_800_000_000_000; // 2025-01-01T12:00:00Z
const MS: u64 = 1_000_000;

fn ts(offset_ms: u64) -> String {
    sluice_core::time::format_rfc3339(sluice_core::time::from_unix_nanos(T0 + offset_ms * MS), 6)
}

fn ev(v: Value) -> WorkflowEvent {
    WorkflowEvent::from_value(v).expect("valid event")
}

/// A workflow with a successful step, a failed-then-retried step that falls back to another
/// agent, and an unknown event type.
fn golden_events() -> Vec<WorkflowEvent> {
    vec![
        ev(
            json!({"id":"1","type":"workflow.started","timestamp":ts(0),"workflow_id":"wf-report",
            "execution_id":"ex-1","input":{"question":"secret"}}),
        ),
        ev(
            json!({"id":"2","type":"workflow.step.started","timestamp":ts(10),"execution_id":"ex-1",
            "step_id":"plan","agent_id":"planner","framework":"langgraph","provider":"anthropic","attempt":1}),
        ),
        ev(
            json!({"id":"3","type":"agent.invoked","timestamp":ts(1000),"execution_id":"ex-1",
            "step_id":"plan","agent_id":"planner","provider":"anthropic","attempt":1,"model":"claude",
            "metrics":{"execution_time_ms":900,"token_usage":{"input_tokens":100,"output_tokens":50},"cost_usd":0.01}}),
        ),
        ev(
            json!({"id":"4","type":"workflow.step.completed","timestamp":ts(1010),"execution_id":"ex-1",
            "step_id":"plan","agent_id":"planner","attempt":1,"status":"completed",
            "metrics":{"execution_time_ms":1000,"retry_count":0}}),
        ),
        ev(
            json!({"id":"5","type":"workflow.step.started","timestamp":ts(1100),"execution_id":"ex-1",
            "step_id":"search","agent_id":"searcher","framework":"crewai","provider":"openai","attempt":1}),
        ),
        ev(
            json!({"id":"6","type":"workflow.step.failed","timestamp":ts(1500),"execution_id":"ex-1",
            "step_id":"search","agent_id":"searcher","attempt":1,"status":"failed",
            "error":{"type":"RateLimitError","message":"rate limited"}}),
        ),
        ev(
            json!({"id":"7","type":"workflow.step.retried","timestamp":ts(1600),"execution_id":"ex-1",
            "step_id":"search","agent_id":"searcher","attempt":2,"metrics":{"retry_count":1}}),
        ),
        ev(
            json!({"id":"8","type":"workflow.step.started","timestamp":ts(1700),"execution_id":"ex-1",
            "step_id":"search","agent_id":"searcher","framework":"crewai","provider":"openai","attempt":2}),
        ),
        ev(
            json!({"id":"9","type":"workflow.step.fallback","timestamp":ts(2000),"execution_id":"ex-1",
            "step_id":"search","agent_id":"searcher","fallback_agent_id":"backup-searcher","attempt":2}),
        ),
        ev(
            json!({"id":"10","type":"agent.invoked","timestamp":ts(2500),"execution_id":"ex-1",
            "step_id":"search","agent_id":"backup-searcher","provider":"mistral","attempt":2,
            "metrics":{"execution_time_ms":400,"token_usage":{"input_tokens":200,"output_tokens":20},"cost_usd":0.002}}),
        ),
        ev(
            json!({"id":"11","type":"workflow.step.completed","timestamp":ts(2600),"execution_id":"ex-1",
            "step_id":"search","agent_id":"backup-searcher","attempt":2,"status":"completed",
            "metrics":{"execution_time_ms":900,"retry_count":1}}),
        ),
        ev(
            json!({"id":"12","type":"workflow.checkpoint","timestamp":ts(2700),"execution_id":"ex-1",
            "checkpoint":{"size_bytes":512}}),
        ),
        ev(
            json!({"id":"13","type":"workflow.completed","timestamp":ts(3000),"workflow_id":"wf-report",
            "execution_id":"ex-1","status":"completed","output":{"report":"secret"},
            "metrics":{"execution_time_ms":3000}}),
        ),
    ]
}

fn converter() -> Converter {
    Converter::new(ConvertConfig {
        service_name: "awf-test".into(),
        redactor: Redactor::new(RedactionMode::Drop, &[], false, ""),
        ..Default::default()
    })
}

fn spans(p: &Pending) -> Vec<Span> {
    let Some(item) = p.traces_item() else {
        return Vec::new();
    };
    assert_eq!(item.signal, Signal::Traces);
    let req = ExportTraceServiceRequest::decode(item.payload).expect("valid OTLP traces");
    let rs = &req.resource_spans[0];
    assert!(attr(&rs.resource.as_ref().unwrap().attributes, "service.name").is_some());
    let out: Vec<Span> = rs
        .scope_spans
        .iter()
        .flat_map(|s| s.spans.clone())
        .collect();
    assert_eq!(item.count as usize, out.len());
    out
}

fn logs(p: &Pending) -> Vec<LogRecord> {
    let Some(item) = p.logs_item() else {
        return Vec::new();
    };
    let req = ExportLogsServiceRequest::decode(item.payload).expect("valid OTLP logs");
    let out: Vec<LogRecord> = req.resource_logs[0]
        .scope_logs
        .iter()
        .flat_map(|s| s.log_records.clone())
        .collect();
    assert_eq!(item.count as usize, out.len());
    out
}

fn metrics(c: &mut Converter) -> Vec<Metric> {
    let Some(item) = c.metrics_item(T0 + 10_000 * MS) else {
        return Vec::new();
    };
    let req = ExportMetricsServiceRequest::decode(item.payload).expect("valid OTLP metrics");
    req.resource_metrics[0].scope_metrics[0].metrics.clone()
}

#[derive(Debug, PartialEq)]
enum A {
    S(String),
    I(i64),
    D(f64),
}

fn s(v: &str) -> A {
    A::S(v.to_owned())
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<A> {
    let kv = attrs.iter().find(|k| k.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(v) => Some(A::S(v.clone())),
        any_value::Value::IntValue(v) => Some(A::I(*v)),
        any_value::Value::DoubleValue(v) => Some(A::D(*v)),
        other => Some(A::S(format!("{other:?}"))),
    }
}

fn find<'a>(spans: &'a [Span], name: &str, key: &str, value: A) -> &'a Span {
    spans
        .iter()
        .find(|sp| sp.name == name && attr(&sp.attributes, key) == Some(value_ref(&value)))
        .unwrap_or_else(|| panic!("no {name} span with {key}={value:?}"))
}

fn value_ref(a: &A) -> A {
    match a {
        A::S(v) => A::S(v.clone()),
        A::I(v) => A::I(*v),
        A::D(v) => A::D(*v),
    }
}

/// Points of a counter as (labels, value).
fn counter(metrics: &[Metric], name: &str) -> Vec<(Vec<String>, f64)> {
    let m = metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no {name}"));
    let Some(metric::Data::Sum(sum)) = &m.data else {
        panic!("{name} must be a sum")
    };
    assert!(sum.is_monotonic, "{name} must be monotonic");
    assert_eq!(sum.aggregation_temporality, 2, "{name} must be cumulative");
    let mut out: Vec<(Vec<String>, f64)> = sum
        .data_points
        .iter()
        .map(|p| {
            let labels = p
                .attributes
                .iter()
                .map(|kv| format!("{}={:?}", kv.key, attr(&p.attributes, &kv.key).unwrap()))
                .collect();
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                Some(number_data_point::Value::AsDouble(d)) => d,
                None => f64::NAN,
            };
            (labels, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn labels(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={:?}", A::S((*v).to_owned())))
        .collect()
}

#[test]
fn golden_spans() {
    let mut c = converter();
    let p = c.convert(golden_events(), T0 + 5_000 * MS);
    assert_eq!(p.stats.events, 13);
    assert_eq!(p.stats.duplicates, 0);
    let spans = spans(&p);
    assert_eq!(
        spans.len(),
        6,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );

    let trace = ids::trace_id("ex-1").to_vec();
    assert!(
        spans.iter().all(|s| s.trace_id == trace),
        "one trace per execution"
    );

    let wf = find(&spans, "awf.workflow", "execution_id", s("ex-1"));
    assert_eq!(wf.span_id, ids::workflow_span_id("ex-1").to_vec());
    assert!(wf.parent_span_id.is_empty());
    assert_eq!(attr(&wf.attributes, "workflow_id"), Some(s("wf-report")));
    assert_eq!(attr(&wf.attributes, "status"), Some(s("completed")));
    assert_eq!(
        (wf.start_time_unix_nano, wf.end_time_unix_nano),
        (T0, T0 + 3000 * MS)
    );
    assert_eq!(
        wf.status.as_ref().unwrap().code,
        status::StatusCode::Ok as i32
    );
    // Redacted by default: workflow inputs and outputs never leave.
    assert!(
        wf.attributes
            .iter()
            .all(|k| !["input", "output"].contains(&k.key.split('.').next().unwrap_or(""))),
        "inputs/outputs are redacted by default"
    );
    assert_eq!(attr(&wf.attributes, "service.name"), None);

    let plan = find(&spans, "awf.step", "step_id", s("plan"));
    assert_eq!(plan.span_id, ids::step_span_id("ex-1", "plan", 1).to_vec());
    assert_eq!(plan.parent_span_id, wf.span_id);
    assert_eq!(attr(&plan.attributes, "agent_id"), Some(s("planner")));
    assert_eq!(attr(&plan.attributes, "framework"), Some(s("langgraph")));
    assert_eq!(attr(&plan.attributes, "attempt"), Some(A::I(1)));
    assert_eq!(
        (plan.start_time_unix_nano, plan.end_time_unix_nano),
        (T0 + 10 * MS, T0 + 1010 * MS)
    );

    let planner = find(&spans, "awf.agent.invoke", "agent_id", s("planner"));
    assert_eq!(planner.parent_span_id, plan.span_id);
    assert_eq!(attr(&planner.attributes, "input_tokens"), Some(A::I(100)));
    assert_eq!(attr(&planner.attributes, "output_tokens"), Some(A::I(50)));
    assert_eq!(attr(&planner.attributes, "cost_usd"), Some(A::D(0.01)));
    assert_eq!(
        attr(&planner.attributes, "model"),
        Some(s("claude")),
        "extra fields kept"
    );
    // No start event for an invocation: its start is end − execution_time_ms.
    assert_eq!(planner.start_time_unix_nano, T0 + 100 * MS);
    assert_eq!(planner.end_time_unix_nano, T0 + 1000 * MS);

    let search1 = spans
        .iter()
        .find(|sp| sp.span_id == ids::step_span_id("ex-1", "search", 1).to_vec())
        .expect("search attempt 1");
    assert_eq!(attr(&search1.attributes, "agent_id"), Some(s("searcher")));
    assert_eq!(
        search1.span_id,
        ids::step_span_id("ex-1", "search", 1).to_vec()
    );
    let st = search1.status.as_ref().unwrap();
    assert_eq!(st.code, status::StatusCode::Error as i32);
    assert_eq!(st.message, "rate limited");
    assert_eq!(
        attr(&search1.attributes, "error.type"),
        Some(s("RateLimitError"))
    );
    assert!(search1.events.iter().any(|e| e.name == "exception"));

    let search2 = spans
        .iter()
        .find(|sp| sp.span_id == ids::step_span_id("ex-1", "search", 2).to_vec())
        .expect("search attempt 2");
    assert_eq!(search2.parent_span_id, wf.span_id);
    assert_eq!(
        search2.status.as_ref().unwrap().code,
        status::StatusCode::Ok as i32
    );
    assert_eq!(
        attr(&search2.attributes, "agent_id"),
        Some(s("backup-searcher"))
    );
    let fb = search2
        .events
        .iter()
        .find(|e| e.name == "awf.fallback")
        .expect("fallback span event");
    assert_eq!(
        attr(&fb.attributes, "fallback_agent_id"),
        Some(s("backup-searcher"))
    );
    assert_eq!(fb.time_unix_nano, T0 + 2000 * MS);

    let backup = find(&spans, "awf.agent.invoke", "agent_id", s("backup-searcher"));
    assert_eq!(backup.parent_span_id, search2.span_id);
    assert_eq!(
        backup.span_id,
        ids::agent_span_id("ex-1", "search", 2, "backup-searcher", "").to_vec()
    );
}

#[test]
fn golden_metrics() {
    let mut c = converter();
    let p = c.convert(golden_events(), T0 + 5_000 * MS);
    assert!(metrics(&mut c).is_empty(), "nothing counts before commit");
    c.commit(p, T0 + 5_000 * MS);
    let m = metrics(&mut c);

    for metric in &m {
        let attrs: Vec<&KeyValue> = match &metric.data {
            Some(metric::Data::Sum(s)) => {
                s.data_points.iter().flat_map(|p| &p.attributes).collect()
            }
            Some(metric::Data::Histogram(h)) => {
                h.data_points.iter().flat_map(|p| &p.attributes).collect()
            }
            Some(metric::Data::Gauge(g)) => {
                g.data_points.iter().flat_map(|p| &p.attributes).collect()
            }
            _ => Vec::new(),
        };
        assert!(
            attrs.iter().all(|kv| kv.key != "execution_id"),
            "{} must not have an execution_id label",
            metric.name
        );
        assert!(
            metric.unit.is_empty(),
            "unit stays empty so no suffix is appended"
        );
    }

    assert_eq!(
        counter(&m, "awf_tokens_total"),
        vec![
            (
                labels(&[("agent_id", "backup-searcher"), ("direction", "input")]),
                200.0
            ),
            (
                labels(&[("agent_id", "backup-searcher"), ("direction", "output")]),
                20.0
            ),
            (
                labels(&[("agent_id", "planner"), ("direction", "input")]),
                100.0
            ),
            (
                labels(&[("agent_id", "planner"), ("direction", "output")]),
                50.0
            ),
        ]
    );
    assert_eq!(
        counter(&m, "awf_cost_usd_total"),
        vec![
            (
                labels(&[("agent_id", "backup-searcher"), ("provider", "mistral")]),
                0.002
            ),
            (
                labels(&[("agent_id", "planner"), ("provider", "anthropic")]),
                0.01
            ),
        ]
    );
    assert_eq!(
        counter(&m, "awf_workflow_total"),
        vec![(
            labels(&[("workflow_id", "wf-report"), ("status", "completed")]),
            1.0
        )]
    );
    assert_eq!(
        counter(&m, "awf_retry_total"),
        vec![(
            labels(&[("step_id", "search"), ("agent_id", "searcher")]),
            1.0
        )]
    );
    assert_eq!(
        counter(&m, "awf_fallback_total"),
        vec![(labels(&[("step_id", "search")]), 1.0)]
    );

    let h = m.iter().find(|m| m.name == "awf_step_duration_ms").unwrap();
    let Some(metric::Data::Histogram(h)) = &h.data else {
        panic!("histogram expected")
    };
    assert_eq!(h.aggregation_temporality, 2);
    let mut points: Vec<(Vec<String>, u64, f64)> = h
        .data_points
        .iter()
        .map(|p| {
            let l = ["step_id", "agent_id", "status"]
                .iter()
                .map(|k| match attr(&p.attributes, k) {
                    Some(A::S(v)) => v,
                    other => panic!("{k}: {other:?}"),
                })
                .collect();
            (l, p.count, p.sum.unwrap())
        })
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        points,
        vec![
            (
                vec!["plan".into(), "planner".into(), "completed".into()],
                1,
                1000.0
            ),
            (
                vec![
                    "search".into(),
                    "backup-searcher".into(),
                    "completed".into()
                ],
                1,
                900.0
            ),
            // No execution_time_ms on the failure: end − start = 1500 − 1100 ms.
            (
                vec!["search".into(), "searcher".into(), "failed".into()],
                1,
                400.0
            ),
        ]
    );
    // Exemplars link a bucket to its trace and execution.
    let ex = &h.data_points[0].exemplars[0];
    assert_eq!(ex.trace_id, ids::trace_id("ex-1").to_vec());
    assert_eq!(
        attr(&ex.filtered_attributes, "execution_id"),
        Some(s("ex-1"))
    );

    // The execution ended: the gauge says 0 for its workflow (it was never seen active at a
    // snapshot, so it may also be absent).
    if let Some(g) = m.iter().find(|m| m.name == "awf_active_executions") {
        let Some(metric::Data::Gauge(g)) = &g.data else {
            panic!()
        };
        assert!(
            g.data_points
                .iter()
                .all(|p| p.value == Some(number_data_point::Value::AsInt(0)))
        );
    }
}

#[test]
fn golden_logs() {
    let mut c = converter();
    let p = c.convert(golden_events(), T0 + 5_000 * MS);
    let logs = logs(&p);
    assert_eq!(logs.len(), 13, "one log record per event");
    let trace = ids::trace_id("ex-1").to_vec();
    for l in &logs {
        assert_eq!(l.trace_id, trace);
        assert_eq!(l.span_id.len(), 8);
        assert_eq!(attr(&l.attributes, "execution_id"), Some(s("ex-1")));
        assert!(
            l.attributes
                .iter()
                .all(|k| !["input", "output"].contains(&k.key.split('.').next().unwrap_or(""))),
            "inputs/outputs are redacted by default"
        );
    }
    let by_type = |t: &str| {
        logs.iter()
            .find(|l| l.event_name == t)
            .unwrap_or_else(|| panic!("{t}"))
    };
    let failed = by_type("workflow.step.failed");
    assert_eq!(failed.severity_number, 17);
    assert_eq!(failed.severity_text, "ERROR");
    assert_eq!(
        failed.span_id,
        ids::step_span_id("ex-1", "search", 1).to_vec()
    );
    assert_eq!(by_type("workflow.step.retried").severity_number, 13);
    assert_eq!(by_type("workflow.step.fallback").severity_number, 13);
    assert_eq!(by_type("workflow.started").severity_number, 9);
    assert_eq!(
        by_type("workflow.started").span_id,
        ids::workflow_span_id("ex-1").to_vec()
    );
    assert_eq!(
        by_type("agent.invoked").span_id,
        ids::agent_span_id("ex-1", "plan", 1, "planner", "").to_vec()
    );
    let unknown = by_type("workflow.checkpoint");
    assert_eq!(
        attr(&unknown.attributes, "checkpoint.size_bytes"),
        Some(A::I(512))
    );
    assert_eq!(unknown.time_unix_nano, T0 + 2700 * MS);
    assert_eq!(unknown.observed_time_unix_nano, T0 + 5000 * MS);
}

#[test]
fn replays_produce_nothing_new() {
    let mut c = converter();
    let p = c.convert(golden_events(), T0);
    c.commit(p, T0);
    let before = metrics(&mut c);

    // Same events again (a reconnect replaying from the start).
    let p = c.convert(golden_events(), T0);
    assert_eq!(p.stats.duplicates, 13);
    assert!(p.spans.is_empty() && p.logs.is_empty());
    c.commit(p, T0);

    // Same events with new ids (an emitter that re-numbers): no span and no count twice.
    let renumbered: Vec<WorkflowEvent> = golden_events()
        .into_iter()
        .map(|mut e| {
            e.id = e.id.map(|id| format!("again-{id}"));
            e
        })
        .collect();
    let p = c.convert(renumbered, T0);
    assert_eq!(p.stats.duplicates, 0);
    assert!(
        p.spans.is_empty(),
        "spans re-emitted: {:?}",
        p.spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(p.metric_updates().is_empty(), "{:?}", p.metric_updates());
    c.commit(p, T0);
    assert_eq!(metrics(&mut c), before);
}

#[test]
fn id_less_events_are_deduplicated_by_content() {
    let mut c = converter();
    let strip = || {
        golden_events()
            .into_iter()
            .map(|mut e| {
                e.id = None;
                e
            })
            .collect::<Vec<_>>()
    };
    let p = c.convert(strip(), T0);
    assert_eq!(p.spans.len(), 6);
    c.commit(p, T0);
    let p = c.convert(strip(), T0);
    assert_eq!(p.stats.duplicates, 13);
    assert!(p.is_empty());
}

#[test]
fn abandoned_conversion_is_redone_and_counted_once() {
    let mut c = converter();
    let first = c.convert(golden_events(), T0);
    let first_spans = spans(&first);
    c.abandon(first);
    let second = c.convert(golden_events(), T0);
    assert_eq!(
        second.stats.duplicates, 0,
        "a refused push must be converted again"
    );
    let mut a: Vec<Vec<u8>> = first_spans.iter().map(|s| s.span_id.clone()).collect();
    let mut b: Vec<Vec<u8>> = spans(&second).iter().map(|s| s.span_id.clone()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Start times survive the abandon (the open step/execution state was put back).
    let wf = spans(&second)
        .into_iter()
        .find(|s| s.name == "awf.workflow")
        .unwrap();
    assert_eq!(wf.start_time_unix_nano, T0);
    c.commit(second, T0);
    assert_eq!(
        c.aggregator()
            .counter_value(AwfMetric::Workflows, &["wf-report", "completed"]),
        Some(1.0)
    );
    assert_eq!(
        c.aggregator()
            .counter_value(AwfMetric::Tokens, &["planner", "input"]),
        Some(100.0)
    );
}

#[test]
fn concurrent_conversions_do_not_both_emit() {
    let mut c = converter();
    let a = c.convert(golden_events(), T0);
    let b = c.convert(golden_events(), T0);
    assert_eq!(
        b.stats.duplicates, 13,
        "events claimed by an in-flight conversion"
    );
    c.commit(a, T0);
    c.commit(b, T0);
    assert_eq!(
        c.aggregator()
            .counter_value(AwfMetric::Retries, &["search", "searcher"]),
        Some(1.0)
    );
}

#[test]
fn open_step_times_out_and_late_end_is_not_reemitted() {
    let mut c = Converter::new(ConvertConfig {
        step_timeout: Duration::from_secs(30),
        ..Default::default()
    });
    let received = T0;
    let p = c.convert(
        vec![
            ev(json!({"id":"a","type":"workflow.started","timestamp":ts(0),"workflow_id":"w","execution_id":"ex-t"})),
            ev(json!({"id":"b","type":"workflow.step.started","timestamp":ts(0),"execution_id":"ex-t",
                "step_id":"slow","agent_id":"sloth","attempt":1})),
        ],
        received,
    );
    assert!(p.spans.is_empty());
    c.commit(p, received);
    assert!(c.expire(received + 29 * 1_000 * MS).is_empty(), "not yet");
    let p = c.expire(received + 30 * 1_000 * MS);
    assert_eq!(p.stats.timed_out_steps, 1);
    let sp = spans(&p);
    assert_eq!(sp.len(), 1);
    assert_eq!(sp[0].span_id, ids::step_span_id("ex-t", "slow", 1).to_vec());
    assert_eq!(
        sp[0].status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );
    assert!(
        sp[0]
            .status
            .as_ref()
            .unwrap()
            .message
            .contains("step_timeout")
    );
    assert_eq!(
        sp[0].end_time_unix_nano - sp[0].start_time_unix_nano,
        30_000 * MS
    );
    c.commit(p, received);
    // The real end arrives late: logged, but the span and its duration are not emitted twice.
    let p = c.convert(
        vec![ev(
            json!({"id":"c","type":"workflow.step.completed","timestamp":ts(45_000),
            "execution_id":"ex-t","step_id":"slow","agent_id":"sloth","attempt":1}),
        )],
        received + 45_000 * MS,
    );
    assert!(p.spans.is_empty());
    assert_eq!(p.logs.len(), 1);
    assert_eq!(p.stats.replayed, 1);
    c.commit(p, received);
    let m = metrics(&mut c);
    let h = m.iter().find(|m| m.name == "awf_step_duration_ms").unwrap();
    let Some(metric::Data::Histogram(h)) = &h.data else {
        panic!()
    };
    assert_eq!(h.data_points.len(), 1);
    assert_eq!(
        attr(&h.data_points[0].attributes, "status"),
        Some(s("timeout"))
    );
}

#[test]
fn abandoned_execution_times_out() {
    let mut c = Converter::new(ConvertConfig {
        execution_timeout: Duration::from_secs(60),
        ..Default::default()
    });
    let p = c.convert(
        vec![ev(json!({"id":"a","type":"workflow.started","timestamp":ts(0),"workflow_id":"w","execution_id":"ex-z"}))],
        T0,
    );
    c.commit(p, T0);
    let p = c.expire(T0 + 60_000 * MS);
    assert_eq!(p.stats.timed_out_executions, 1);
    let sp = spans(&p);
    assert_eq!(sp[0].name, "awf.workflow");
    assert_eq!(
        sp[0].status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );
    c.commit(p, T0);
    assert_eq!(c.open_executions(), 0);
    assert_eq!(
        c.aggregator()
            .counter_value(AwfMetric::Workflows, &["w", "timeout"]),
        Some(1.0)
    );
}

#[test]
fn active_executions_gauge() {
    let mut c = converter();
    let start = |x: &str| {
        ev(json!({"id":x,"type":"workflow.started","workflow_id":"wf-a","execution_id":x}))
    };
    let p = c.convert(vec![start("e1"), start("e2")], T0);
    c.commit(p, T0);
    let gauge = |c: &mut Converter| {
        let m = metrics(c);
        let g = m
            .iter()
            .find(|m| m.name == "awf_active_executions")
            .expect("gauge");
        let Some(metric::Data::Gauge(g)) = &g.data else {
            panic!()
        };
        assert_eq!(
            attr(&g.data_points[0].attributes, "workflow_id"),
            Some(s("wf-a"))
        );
        g.data_points[0].value
    };
    assert_eq!(gauge(&mut c), Some(number_data_point::Value::AsInt(2)));
    let p = c.convert(
        vec![ev(
            json!({"id":"x","type":"workflow.failed","execution_id":"e1","error":"boom"}),
        )],
        T0,
    );
    c.commit(p, T0);
    assert_eq!(gauge(&mut c), Some(number_data_point::Value::AsInt(1)));
    assert_eq!(
        c.aggregator()
            .counter_value(AwfMetric::Workflows, &["wf-a", "failed"]),
        Some(1.0)
    );
    let p = c.convert(
        vec![ev(
            json!({"id":"y","type":"workflow.completed","execution_id":"e2"}),
        )],
        T0,
    );
    c.commit(p, T0);
    assert_eq!(gauge(&mut c), Some(number_data_point::Value::AsInt(0)));
}

#[test]
fn step_end_without_invocations_counts_its_own_tokens() {
    let mut c = converter();
    let p = c.convert(
        vec![
            ev(json!({"id":"1","type":"workflow.step.started","execution_id":"e","step_id":"s","agent_id":"a","provider":"p"})),
            ev(json!({"id":"2","type":"workflow.step.completed","execution_id":"e","step_id":"s","agent_id":"a",
                "metrics":{"token_usage":{"input_tokens":7,"output_tokens":3},"cost_usd":0.5}})),
        ],
        T0,
    );
    c.commit(p, T0);
    assert_eq!(
        c.aggregator()
            .counter_value(AwfMetric::Tokens, &["a", "input"]),
        Some(7.0)
    );
    assert_eq!(
        c.aggregator().counter_value(AwfMetric::Cost, &["a", "p"]),
        Some(0.5)
    );
}

#[test]
fn retried_attempts_without_explicit_numbers() {
    let mut c = converter();
    let p = c.convert(
        vec![
            ev(json!({"id":"1","type":"workflow.step.started","execution_id":"e","step_id":"s","agent_id":"a"})),
            ev(json!({"id":"2","type":"workflow.step.failed","execution_id":"e","step_id":"s","error":"x"})),
            ev(json!({"id":"3","type":"workflow.step.retried","execution_id":"e","step_id":"s"})),
            ev(json!({"id":"4","type":"workflow.step.started","execution_id":"e","step_id":"s","agent_id":"a"})),
            ev(json!({"id":"5","type":"workflow.step.completed","execution_id":"e","step_id":"s"})),
            // A third start with neither attempt nor retry event is still a new attempt.
            ev(json!({"id":"6","type":"workflow.step.started","execution_id":"e","step_id":"s","agent_id":"a"})),
            ev(json!({"id":"7","type":"workflow.step.completed","execution_id":"e","step_id":"s"})),
        ],
        T0,
    );
    let mut ids_seen: Vec<Vec<u8>> = p.spans.iter().map(|s| s.span_id.clone()).collect();
    ids_seen.sort();
    let mut expected: Vec<Vec<u8>> = (1..=3)
        .map(|a| ids::step_span_id("e", "s", a).to_vec())
        .collect();
    expected.sort();
    assert_eq!(ids_seen, expected);
}

#[test]
fn events_without_execution_are_logged_only() {
    let mut c = converter();
    let p = c.convert(
        vec![ev(
            json!({"type":"agent.invoked","agent_id":"a","metrics":{"cost_usd":1.0}}),
        )],
        T0,
    );
    assert_eq!(p.stats.uncorrelated, 1);
    assert!(p.spans.is_empty() && p.metric_updates().is_empty());
    let l = logs(&p);
    assert_eq!(l.len(), 1);
    assert!(l[0].trace_id.is_empty());
}
