//! `validate` against prost: same verdict on valid and truncated requests, never more lenient on
//! corrupted ones, the same item counts, and precise errors.

mod requests;

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use requests::{
    any_value, logs_count, logs_request, metrics_count, metrics_request, trace_count, trace_request,
};
use sluice_otlp::{Signal, WireErrorKind, count_items, validate};

/// A random valid request of any signal: (signal, encoding, item count from the decoded form).
fn any_request() -> impl Strategy<Value = (Signal, Vec<u8>, u32)> {
    prop_oneof![
        trace_request().prop_map(|r| (Signal::Traces, r.encode_to_vec(), trace_count(&r))),
        metrics_request().prop_map(|r| (Signal::Metrics, r.encode_to_vec(), metrics_count(&r))),
        logs_request().prop_map(|r| (Signal::Logs, r.encode_to_vec(), logs_count(&r))),
    ]
}

fn any_signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        Just(Signal::Traces),
        Just(Signal::Metrics),
        Just(Signal::Logs)
    ]
}

/// prost's verdict on `buf` and, when it decodes, the item count of the decoded request.
fn prost_decode(signal: Signal, buf: &[u8]) -> Option<u32> {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(buf)
            .ok()
            .map(|r| trace_count(&r)),
        Signal::Metrics => ExportMetricsServiceRequest::decode(buf)
            .ok()
            .map(|r| metrics_count(&r)),
        Signal::Logs => ExportLogsServiceRequest::decode(buf)
            .ok()
            .map(|r| logs_count(&r)),
    }
}

fn key(field: u32, wire: u8) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(field << 3 | u32::from(wire)), &mut out);
    out
}

fn len_field(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = key(field, 2);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_requests_pass_with_the_decoded_count((signal, buf, count) in any_request()) {
        prop_assert_eq!(validate(signal, &buf), Ok(count));
        prop_assert_eq!(prost_decode(signal, &buf), Some(count));
    }

    #[test]
    fn truncations_get_the_same_verdict_as_prost(
        (signal, buf, _) in any_request(),
        cut in any::<Index>(),
    ) {
        let cut = cut.index(buf.len() + 1);
        let prefix = &buf[..cut];
        let ours = validate(signal, prefix);
        let theirs = prost_decode(signal, prefix);
        // Truncating cannot produce a wrong-length id, so the verdicts must agree exactly.
        prop_assert_eq!(ours.is_ok(), theirs.is_some(), "cut at {}: {:?}", cut, ours);
        if let (Ok(ours), Some(theirs)) = (ours, theirs) {
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn corruption_prost_refuses_is_refused(
        (signal, mut buf, _) in any_request(),
        flips in proptest::collection::vec((any::<Index>(), 1u8..=255), 1..4),
    ) {
        prop_assume!(!buf.is_empty());
        for (at, mask) in flips {
            let i = at.index(buf.len());
            buf[i] ^= mask;
        }
        let ours = validate(signal, &buf);
        if prost_decode(signal, &buf).is_none() {
            prop_assert!(ours.is_err(), "prost refused but validate accepted {:?}", ours);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_are_no_more_lenient(
        signal in any_signal(),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let ours = validate(signal, &bytes);
        if prost_decode(signal, &bytes).is_none() {
            prop_assert!(ours.is_err());
        }
    }

    #[test]
    fn unknown_fields_are_skipped((signal, buf, count) in any_request(), field in 20u32..100_000, value in any::<u64>()) {
        let mut extended = buf.clone();
        // One unknown field of each wire type, including a (deprecated) group.
        extended.extend(key(field, 0));
        prost::encoding::encode_varint(value, &mut extended);
        extended.extend(key(field, 1));
        extended.extend(value.to_le_bytes());
        extended.extend(key(field, 5));
        extended.extend(&value.to_le_bytes()[..4]);
        extended.extend(len_field(field, &value.to_be_bytes()));
        extended.extend(key(field, 3));
        extended.extend(key(field + 1, 0));
        extended.push(1);
        extended.extend(key(field, 4));
        prop_assert_eq!(validate(signal, &extended), Ok(count));
        prop_assert_eq!(prost_decode(signal, &extended), Some(count));
    }

    #[test]
    fn concatenated_requests_add_up(
        (a, b) in (trace_request(), trace_request()),
    ) {
        let mut buf = a.encode_to_vec();
        buf.extend(b.encode_to_vec());
        prop_assert_eq!(validate(Signal::Traces, &buf), Ok(trace_count(&a) + trace_count(&b)));
    }

    #[test]
    fn deep_any_values_match_prost(value in any_value()) {
        let req = logs_with_body(value);
        let buf = req.encode_to_vec();
        prop_assert_eq!(validate(Signal::Logs, &buf), Ok(1));
    }
}

fn logs_with_body(body: AnyValue) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(body),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn one_span(span: Span) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn empty_request_is_valid_and_empty() {
    for signal in Signal::ALL {
        assert_eq!(validate(signal, &[]), Ok(0));
    }
}

#[test]
fn every_point_kind_is_counted() {
    let number = || NumberDataPoint::default();
    let metric = |data| Metric {
        name: "m".into(),
        data: Some(data),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(metric::Data::Gauge(Gauge {
                        data_points: vec![number()],
                    })),
                    metric(metric::Data::Sum(Sum {
                        data_points: vec![number(), number()],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    metric(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint::default(); 3],
                        aggregation_temporality: 2,
                    })),
                    metric(metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![ExponentialHistogramDataPoint::default(); 4],
                        aggregation_temporality: 1,
                    })),
                    metric(metric::Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint::default(); 5],
                    })),
                    Metric::default(),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let buf = req.encode_to_vec();
    assert_eq!(validate(Signal::Metrics, &buf), Ok(15));
    assert_eq!(count_items(Signal::Metrics, &buf), 15);
    // The same bytes read as another signal are not that signal's items.
    assert_eq!(count_items(Signal::Traces, &buf), 0);
}

#[test]
fn wrong_trace_id_length_names_the_field() {
    let buf = one_span(Span {
        trace_id: vec![1; 5],
        span_id: vec![2; 8],
        ..Default::default()
    })
    .encode_to_vec();
    let err = validate(Signal::Traces, &buf).unwrap_err();
    assert_eq!(
        err.kind(),
        &WireErrorKind::IdLength {
            expected: 16,
            found: 5
        }
    );
    assert_eq!(err.path(), "resource_spans.scope_spans.spans.trace_id");
    // 3 nested length prefixes of 2 bytes each, then the trace_id key and length.
    assert_eq!(err.offset(), Some(8));
    let text = err.to_string();
    assert!(
        text.starts_with(
            "ExportTraceServiceRequest.resource_spans.scope_spans.spans.trace_id: id must be 16 bytes"
        ),
        "{text}"
    );
    assert!(text.ends_with("(at byte 8)"), "{text}");
}

#[test]
fn wrong_span_id_length_is_refused_everywhere() {
    let span = |span_id: Vec<u8>, parent: Vec<u8>| {
        one_span(Span {
            span_id,
            parent_span_id: parent,
            ..Default::default()
        })
        .encode_to_vec()
    };
    assert_eq!(validate(Signal::Traces, &span(vec![], vec![])), Ok(1));
    assert_eq!(
        validate(Signal::Traces, &span(vec![1; 8], vec![2; 8])),
        Ok(1)
    );
    let err = validate(Signal::Traces, &span(vec![1; 8], vec![2; 16])).unwrap_err();
    assert_eq!(
        err.path(),
        "resource_spans.scope_spans.spans.parent_span_id"
    );
    let err = validate(Signal::Traces, &span(vec![1; 7], vec![])).unwrap_err();
    assert_eq!(err.path(), "resource_spans.scope_spans.spans.span_id");

    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    span_id: vec![1; 4],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let err = validate(Signal::Logs, &logs.encode_to_vec()).unwrap_err();
    assert_eq!(err.path(), "resource_logs.scope_logs.log_records.span_id");
}

#[test]
fn invalid_utf8_is_refused_like_prost() {
    // ExportTraceServiceRequest{resource_spans{scope_spans{spans{name: 0xff 0xfe}}}}
    let span = len_field(5, &[0xff, 0xfe]);
    let buf = len_field(1, &len_field(2, &len_field(2, &span)));
    assert!(ExportTraceServiceRequest::decode(buf.as_slice()).is_err());
    let err = validate(Signal::Traces, &buf).unwrap_err();
    assert_eq!(err.kind(), &WireErrorKind::InvalidUtf8);
    assert_eq!(err.path(), "resource_spans.scope_spans.spans.name");
}

#[test]
fn wrong_wire_type_for_a_known_field_is_refused() {
    // Span.kind (varint) sent as length-delimited.
    let span = len_field(6, b"x");
    let buf = len_field(1, &len_field(2, &len_field(2, &span)));
    assert!(ExportTraceServiceRequest::decode(buf.as_slice()).is_err());
    let err = validate(Signal::Traces, &buf).unwrap_err();
    assert_eq!(
        err.kind(),
        &WireErrorKind::WireType {
            expected: "varint",
            found: 2
        }
    );
    assert_eq!(err.path(), "resource_spans.scope_spans.spans.kind");
}

#[test]
fn repeated_scalars_are_accepted_packed_and_unpacked() {
    // HistogramDataPoint.bucket_counts (fixed64) one value per field instead of packed.
    let mut point = key(6, 1);
    point.extend(7u64.to_le_bytes());
    point.extend(key(6, 1));
    point.extend(9u64.to_le_bytes());
    let hist = len_field(1, &point);
    let metric = len_field(9, &hist);
    let buf = len_field(1, &len_field(2, &len_field(2, &metric)));
    let decoded = ExportMetricsServiceRequest::decode(buf.as_slice()).unwrap();
    assert_eq!(metrics_count(&decoded), 1);
    assert_eq!(validate(Signal::Metrics, &buf), Ok(1));

    // Packed with a length that is not a multiple of 8.
    let point = len_field(6, &[0; 12]);
    let metric = len_field(9, &len_field(1, &point));
    let buf = len_field(1, &len_field(2, &len_field(2, &metric)));
    assert!(ExportMetricsServiceRequest::decode(buf.as_slice()).is_err());
    let err = validate(Signal::Metrics, &buf).unwrap_err();
    assert_eq!(err.kind(), &WireErrorKind::PackedLength(12));
    assert_eq!(
        err.path(),
        "resource_metrics.scope_metrics.metrics.histogram.data_points.bucket_counts"
    );
}

#[test]
fn nesting_is_limited() {
    let mut value = AnyValue {
        value: Some(any_value::Value::IntValue(1)),
    };
    for _ in 0..200 {
        value = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    let buf = logs_with_body(value).encode_to_vec();
    assert!(ExportLogsServiceRequest::decode(buf.as_slice()).is_err());
    let err = validate(Signal::Logs, &buf).unwrap_err();
    assert_eq!(err.kind(), &WireErrorKind::TooDeep);
}

#[test]
fn invalid_keys_and_stray_end_groups_are_refused() {
    for bad in [
        vec![0x00, 0x00],             // field number 0
        vec![0x0e],                   // wire type 6
        vec![0x0f],                   // wire type 7
        vec![0xfc, 0x01],             // end group with nothing open
        vec![0x0a, 0x05, 0x01],       // length past the end
        vec![0x08, 0xff, 0xff, 0xff], // truncated varint
        vec![0xa3, 0x06],             // group never closed
        vec![
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ], // varint overflow
    ] {
        assert!(
            ExportTraceServiceRequest::decode(bad.as_slice()).is_err(),
            "{bad:?}"
        );
        assert!(validate(Signal::Traces, &bad).is_err(), "{bad:?}");
    }
    // The largest 10-byte varint is still valid.
    let max = [
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert_eq!(
        validate(Signal::Traces, &[&[0xa0, 0x06][..], &max[1..]].concat()),
        Ok(0)
    );
}
