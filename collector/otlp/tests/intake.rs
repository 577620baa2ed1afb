//! Intake rules: `check` refuses exactly the items backends refuse, `filter` re-encodes the
//! request without them, and the all-valid verdict matches `validate`.

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, exemplar, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sluice_otlp::{Reason, Rules, Signal, WireErrorKind, check, filter, validate};
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn span(n: u8) -> Span {
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: format!("span-{n}"),
        start_time_unix_nano: now_ns(),
        end_time_unix_nano: now_ns(),
        ..Default::default()
    }
}

fn traces(groups: Vec<Vec<Span>>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|spans| ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

fn span_names(buf: &[u8]) -> Vec<String> {
    let req = ExportTraceServiceRequest::decode(buf).unwrap();
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn valid_spans_pass_untouched() {
    let buf = traces(vec![vec![span(1), span(2)], vec![span(3)]]);
    let checked = check(Signal::Traces, &buf, &Rules::default()).unwrap();
    assert_eq!(checked.items, 3);
    assert_eq!(checked.rejected, 0);
    assert_eq!(checked.first, None);
    assert_eq!(validate(Signal::Traces, &buf).unwrap(), 3);
}

#[test]
fn zero_and_missing_ids_refuse_only_their_span() {
    let mut zero_span = span(2);
    zero_span.span_id = vec![0; 8];
    let mut no_trace = span(4);
    no_trace.trace_id.clear();
    let mut root = span(5);
    root.parent_span_id = vec![0; 8]; // a zero parent is a root span, not an error
    let buf = traces(vec![
        vec![span(1), zero_span, span(3)],
        vec![no_trace],
        vec![root],
    ]);
    let rules = Rules::default();
    let checked = check(Signal::Traces, &buf, &rules).unwrap();
    assert_eq!((checked.items, checked.rejected), (5, 2));
    let first = checked.first.unwrap();
    assert_eq!(first.reason(), Reason::InvalidSpanId);
    assert_eq!(
        first.describe(Signal::Traces, &buf, &rules),
        "span 1 refused: span_id is all zeros"
    );
    let reasons: Vec<_> = checked.reasons().collect();
    assert_eq!(
        reasons,
        vec![(Reason::InvalidTraceId, 1), (Reason::InvalidSpanId, 1)]
    );

    let kept = filter(Signal::Traces, &buf, &checked).unwrap();
    assert_eq!(span_names(&kept), ["span-1", "span-3", "span-5"]);
    let again = check(Signal::Traces, &kept, &rules).unwrap();
    assert_eq!((again.items, again.rejected), (3, 0));
}

#[test]
fn future_timestamps_are_refused() {
    let mut late = span(2);
    late.end_time_unix_nano = now_ns() + 3_600_000_000_000;
    let buf = traces(vec![vec![span(1), late]]);
    let rules = Rules::default();
    let checked = check(Signal::Traces, &buf, &rules).unwrap();
    assert_eq!(checked.rejected, 1);
    let first = checked.first.unwrap();
    assert_eq!(first.reason(), Reason::FutureTimestamp);
    let text = first.describe(Signal::Traces, &buf, &rules);
    assert!(
        text.starts_with("span 1 refused: end_time_unix_nano "),
        "{text}"
    );
}

#[test]
fn wrong_id_lengths_stay_wire_errors() {
    let mut short = span(1);
    short.span_id = vec![1; 4];
    let buf = traces(vec![vec![short]]);
    let err = check(Signal::Traces, &buf, &Rules::default()).unwrap_err();
    assert!(
        matches!(err.kind(), WireErrorKind::IdLength { .. }),
        "{err}"
    );
}

#[test]
fn log_ids_are_optional_but_never_zero() {
    let record = |trace_id: Vec<u8>, body: &str| LogRecord {
        trace_id,
        time_unix_nano: now_ns(),
        event_name: body.into(),
        ..Default::default()
    };
    let buf = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(vec![], "no ids"),
                    record(vec![0; 16], "zero trace"),
                    record(vec![7; 16], "good"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let checked = check(Signal::Logs, &buf, &Rules::default()).unwrap();
    assert_eq!((checked.items, checked.rejected), (3, 1));
    assert_eq!(checked.first.unwrap().reason(), Reason::InvalidTraceId);
    let kept =
        ExportLogsServiceRequest::decode(filter(Signal::Logs, &buf, &checked).unwrap().as_slice())
            .unwrap();
    let names: Vec<_> = kept.resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .map(|r| r.event_name.as_str())
        .collect();
    assert_eq!(names, ["no ids", "good"]);
}

fn point(key: &str, exemplar_span: Option<Vec<u8>>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![KeyValue {
            key: key.into(),
            ..Default::default()
        }],
        time_unix_nano: now_ns(),
        value: Some(number_data_point::Value::AsInt(1)),
        exemplars: exemplar_span
            .map(|span_id| Exemplar {
                span_id,
                trace_id: vec![3; 16],
                value: Some(exemplar::Value::AsInt(1)),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

#[test]
fn metric_and_label_names_prometheus_refuses() {
    let buf = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    gauge("...", vec![point("a", None), point("b", None)]),
                    gauge(
                        "http.requests",
                        vec![
                            point("http.method", None),
                            point("___", None),
                            point("ok", Some(vec![0; 8])),
                            point("ok", Some(vec![9; 8])),
                        ],
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let checked = check(Signal::Metrics, &buf, &Rules::default()).unwrap();
    assert_eq!((checked.items, checked.rejected), (6, 4));
    assert_eq!(checked.first.unwrap().reason(), Reason::InvalidMetricName);
    let reasons: Vec<_> = checked.reasons().collect();
    assert_eq!(
        reasons,
        vec![
            (Reason::InvalidSpanId, 1),
            (Reason::InvalidMetricName, 2),
            (Reason::InvalidLabelName, 1)
        ]
    );
    let kept = filter(Signal::Metrics, &buf, &checked).unwrap();
    let again = check(Signal::Metrics, &kept, &Rules::default()).unwrap();
    assert_eq!((again.items, again.rejected), (2, 0));
    let decoded = ExportMetricsServiceRequest::decode(kept.as_slice()).unwrap();
    let metrics = &decoded.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].name, "http.requests");
}

mod requests;

use proptest::prelude::*;

proptest! {
    /// On random requests (random ids, some all zeros, random timestamps): `check` agrees with
    /// `validate` on the wire verdict and the count, and `filter` keeps exactly the accepted
    /// items, which then all pass.
    #[test]
    fn filter_keeps_exactly_the_accepted_items(
        (signal, buf, count) in prop_oneof![
            requests::trace_request()
                .prop_map(|r| (Signal::Traces, r.encode_to_vec(), requests::trace_count(&r))),
            requests::metrics_request()
                .prop_map(|r| (Signal::Metrics, r.encode_to_vec(), requests::metrics_count(&r))),
            requests::logs_request()
                .prop_map(|r| (Signal::Logs, r.encode_to_vec(), requests::logs_count(&r))),
        ]
    ) {
        let rules = Rules::default();
        let checked = check(signal, &buf, &rules).unwrap();
        prop_assert_eq!(checked.items, count);
        prop_assert_eq!(checked.items, validate(signal, &buf).unwrap());
        let kept = filter(signal, &buf, &checked).unwrap();
        let again = check(signal, &kept, &rules).unwrap();
        prop_assert_eq!(again.rejected, 0);
        prop_assert_eq!(again.items, checked.items - checked.rejected);
    }
}

/// Splits `buf` recursively down to single items; returns the span names of each leaf.
fn split_to_leaves(buf: &[u8], leaves: &mut Vec<Vec<String>>, depth: u32) {
    assert!(depth <= 8, "split does not converge");
    match sluice_otlp::split(Signal::Traces, buf) {
        None => leaves.push(span_names(buf)),
        Some((a, b)) => {
            let (na, nb) = (
                validate(Signal::Traces, &a).unwrap(),
                validate(Signal::Traces, &b).unwrap(),
            );
            assert!(na >= 1 && nb >= 1);
            assert_eq!(na + nb, validate(Signal::Traces, buf).unwrap());
            // Halves are balanced to within one child's items.
            split_to_leaves(&a, leaves, depth + 1);
            split_to_leaves(&b, leaves, depth + 1);
        }
    }
}

#[test]
fn split_halves_down_to_single_items_keeping_every_item() {
    // Concatenated requests (as the exporter batches them): several resources, one with many.
    let mut buf = traces(vec![(1..=9).map(span).collect()]);
    buf.extend(traces(vec![
        vec![span(10)],
        vec![],
        vec![span(11), span(12)],
    ]));
    let mut leaves = Vec::new();
    split_to_leaves(&buf, &mut leaves, 0);
    assert_eq!(leaves.len(), 12);
    assert!(leaves.iter().all(|l| l.len() == 1));
    let mut names: Vec<String> = leaves.concat();
    names.sort_by_key(|n| n[5..].parse::<u32>().unwrap());
    let want: Vec<String> = (1..=12).map(|n| format!("span-{n}")).collect();
    assert_eq!(names, want);
    // Resources survive the split.
    assert_eq!(
        sluice_otlp::split(Signal::Traces, &traces(vec![vec![span(1)]])),
        None
    );
}
