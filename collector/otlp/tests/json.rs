//! OTLP/JSON conversion on upstream-style examples: hex ids (any case), 64-bit integers as
//! strings or numbers, every value kind, unknown fields, and the refusals.

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use sluice_otlp::{Signal, WireErrorKind, json_to_protobuf, protobuf_to_json, validate};

const TRACES: &str = r#"{
  "resourceSpans": [{
    "resource": {
      "attributes": [{ "key": "service.name", "value": { "stringValue": "checkout" } }]
    },
    "scopeSpans": [{
      "scope": {
        "name": "shop.instrumentation",
        "version": "2.1.0",
        "attributes": [{ "key": "scope.attr", "value": { "stringValue": "x" } }]
      },
      "spans": [
        {
          "traceId": "5B8EFFF798038103D269B633813FC60C",
          "spanId": "eee19b7ec3c1b174",
          "parentSpanId": "EEE19B7EC3C1B173",
          "name": "GET /cart",
          "startTimeUnixNano": "1544712660000000000",
          "endTimeUnixNano": 1544712661000000000,
          "kind": 2,
          "attributes": [
            { "key": "http.status_code", "value": { "intValue": "200" } },
            { "key": "retries", "value": { "intValue": 3 } },
            { "key": "ratio", "value": { "doubleValue": 0.25 } },
            { "key": "cached", "value": { "boolValue": true } },
            { "key": "blob", "value": { "bytesValue": "aGVsbG8=" } },
            { "key": "tags", "value": { "arrayValue": { "values": [
                { "stringValue": "a" }, { "intValue": "7" } ] } } },
            { "key": "nested", "value": { "kvlistValue": { "values": [
                { "key": "k", "value": { "stringValue": "v" } } ] } } }
          ],
          "events": [{
            "timeUnixNano": "1544712660500000000",
            "name": "cache miss",
            "attributes": [{ "key": "key", "value": { "stringValue": "cart:42" } }]
          }],
          "links": [{
            "traceId": "0102030405060708090a0b0c0d0e0f10",
            "spanId": "1112131415161718",
            "flags": 1
          }],
          "status": { "code": 2, "message": "upstream failed" },
          "aFieldFromTheFuture": { "anything": [1, 2, 3] }
        },
        {
          "traceId": "5b8efff798038103d269b633813fc60c",
          "spanId": "0000000000000001",
          "name": "render"
        }
      ]
    }],
    "schemaUrl": "https://opentelemetry.io/schemas/1.24.0"
  }]
}"#;

const METRICS: &str = r#"{
  "resourceMetrics": [{
    "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "api" } }] },
    "scopeMetrics": [{
      "scope": { "name": "meter" },
      "metrics": [
        {
          "name": "requests", "unit": "1", "description": "count",
          "sum": {
            "aggregationTemporality": 2, "isMonotonic": true,
            "dataPoints": [
              { "asInt": "5", "startTimeUnixNano": "1544712660300000000", "timeUnixNano": "1544712660300000000",
                "attributes": [{ "key": "route", "value": { "stringValue": "/a" } }] },
              { "asInt": 6, "timeUnixNano": 1544712660300000000 }
            ]
          }
        },
        {
          "name": "temperature", "unit": "Cel",
          "gauge": { "dataPoints": [{ "asDouble": 21.5, "timeUnixNano": "1544712660300000000" }] }
        },
        {
          "name": "latency", "unit": "ms",
          "histogram": {
            "aggregationTemporality": 2,
            "dataPoints": [{
              "startTimeUnixNano": "1544712660300000000", "timeUnixNano": "1544712660300000000",
              "count": "3", "sum": 12.5, "bucketCounts": ["1", 1, "1"], "explicitBounds": [1, 10],
              "min": 0.5, "max": 9,
              "exemplars": [{ "asDouble": 9, "timeUnixNano": "1544712660300000000",
                              "traceId": "0102030405060708090A0B0C0D0E0F10", "spanId": "0102030405060708" }]
            }]
          }
        },
        {
          "name": "size",
          "exponentialHistogram": {
            "aggregationTemporality": 1,
            "dataPoints": [{
              "timeUnixNano": "1544712660300000000", "count": "4", "sum": 10, "scale": 2,
              "zeroCount": "1", "positive": { "offset": -1, "bucketCounts": ["2", "1"] }
            }]
          }
        },
        {
          "name": "rpc_duration",
          "summary": {
            "dataPoints": [{
              "timeUnixNano": "1544712660300000000", "count": "10", "sum": 55,
              "quantileValues": [{ "quantile": 0.5, "value": 4 }, { "quantile": 0.99, "value": 9.5 }]
            }]
          }
        }
      ]
    }]
  }]
}"#;

const LOGS: &str = r#"{
  "resourceLogs": [{
    "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "worker" } }] },
    "scopeLogs": [{
      "scope": { "name": "logger" },
      "logRecords": [
        {
          "timeUnixNano": "1544712660300000000",
          "observedTimeUnixNano": 1544712660300000001,
          "severityNumber": 10,
          "severityText": "Information",
          "traceId": "5B8EFFF798038103D269B633813FC60C",
          "spanId": "EEE19B7EC3C1B174",
          "eventName": "job.done",
          "body": { "stringValue": "job 7 finished" },
          "attributes": [
            { "key": "job.id", "value": { "intValue": "7" } },
            { "key": "payload", "value": { "kvlistValue": { "values": [
                { "key": "list", "value": { "arrayValue": { "values": [{ "doubleValue": 1.5 }] } } } ] } } }
          ]
        },
        { "body": { "stringValue": "second" } }
      ]
    }]
  }]
}"#;

#[test]
fn traces_json_converts_with_hex_ids_and_string_or_number_int64() {
    let (buf, count) = json_to_protobuf(Signal::Traces, TRACES.as_bytes()).unwrap();
    assert_eq!(count, 2);
    assert_eq!(validate(Signal::Traces, &buf), Ok(2));
    let req = ExportTraceServiceRequest::decode(buf.as_ref()).unwrap();
    let rs = &req.resource_spans[0];
    assert_eq!(rs.schema_url, "https://opentelemetry.io/schemas/1.24.0");
    let scope_spans = &rs.scope_spans[0];
    assert_eq!(scope_spans.scope.as_ref().unwrap().version, "2.1.0");
    let span = &scope_spans.spans[0];
    assert_eq!(
        span.trace_id,
        hex_bytes("5b8efff798038103d269b633813fc60c"),
        "ids are hex, case-insensitive"
    );
    assert_eq!(span.span_id, hex_bytes("eee19b7ec3c1b174"));
    assert_eq!(span.parent_span_id, hex_bytes("eee19b7ec3c1b173"));
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(span.kind, 2);
    let attr = |k: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(attr("http.status_code"), Some(Value::IntValue(200)));
    assert_eq!(attr("retries"), Some(Value::IntValue(3)));
    assert_eq!(attr("ratio"), Some(Value::DoubleValue(0.25)));
    assert_eq!(attr("cached"), Some(Value::BoolValue(true)));
    assert_eq!(attr("blob"), Some(Value::BytesValue(b"hello".to_vec())));
    match attr("tags") {
        Some(Value::ArrayValue(a)) => assert_eq!(a.values.len(), 2),
        other => panic!("tags: {other:?}"),
    }
    match attr("nested") {
        Some(Value::KvlistValue(l)) => assert_eq!(l.values[0].key, "k"),
        other => panic!("nested: {other:?}"),
    }
    assert_eq!(span.events[0].name, "cache miss");
    assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_500_000_000);
    assert_eq!(span.links[0].trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(span.links[0].flags, 1);
    let status = span.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (2, "upstream failed")
    );
    assert_eq!(scope_spans.spans[1].span_id, hex_bytes("0000000000000001"));
}

#[test]
fn metrics_json_counts_every_point_kind() {
    let (buf, count) = json_to_protobuf(Signal::Metrics, METRICS.as_bytes()).unwrap();
    // 2 sum + 1 gauge + 1 histogram + 1 exponential histogram + 1 summary.
    assert_eq!(count, 6);
    let req = ExportMetricsServiceRequest::decode(buf.as_ref()).unwrap();
    let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
    match &metrics[0].data {
        Some(metric::Data::Sum(sum)) => {
            assert!(sum.is_monotonic);
            assert_eq!(sum.aggregation_temporality, 2);
            assert_eq!(
                sum.data_points[0].value,
                Some(number_data_point::Value::AsInt(5))
            );
            assert_eq!(
                sum.data_points[1].value,
                Some(number_data_point::Value::AsInt(6))
            );
            assert_eq!(sum.data_points[1].time_unix_nano, 1_544_712_660_300_000_000);
        }
        other => panic!("{other:?}"),
    }
    match &metrics[2].data {
        Some(metric::Data::Histogram(h)) => {
            let p = &h.data_points[0];
            assert_eq!(p.count, 3);
            assert_eq!(p.bucket_counts, vec![1, 1, 1]);
            assert_eq!(p.explicit_bounds, vec![1.0, 10.0]);
            assert_eq!((p.min, p.max), (Some(0.5), Some(9.0)));
            assert_eq!(p.exemplars[0].trace_id, (1..=16).collect::<Vec<u8>>());
        }
        other => panic!("{other:?}"),
    }
    match &metrics[3].data {
        Some(metric::Data::ExponentialHistogram(h)) => {
            let p = &h.data_points[0];
            assert_eq!((p.scale, p.zero_count), (2, 1));
            let positive = p.positive.as_ref().unwrap();
            assert_eq!(
                (positive.offset, positive.bucket_counts.clone()),
                (-1, vec![2, 1])
            );
        }
        other => panic!("{other:?}"),
    }
    match &metrics[4].data {
        Some(metric::Data::Summary(s)) => {
            assert_eq!(s.data_points[0].quantile_values[1].value, 9.5);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn logs_json_converts() {
    let (buf, count) = json_to_protobuf(Signal::Logs, LOGS.as_bytes()).unwrap();
    assert_eq!(count, 2);
    let req = ExportLogsServiceRequest::decode(buf.as_ref()).unwrap();
    let record = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(record.time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(record.observed_time_unix_nano, 1_544_712_660_300_000_001);
    assert_eq!(record.severity_number, 10);
    assert_eq!(record.event_name, "job.done");
    assert_eq!(
        record.trace_id,
        hex_bytes("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(
        record.body.as_ref().and_then(|b| b.value.clone()),
        Some(Value::StringValue("job 7 finished".into()))
    );
}

#[test]
fn empty_object_is_an_empty_request() {
    for signal in Signal::ALL {
        let (buf, count) = json_to_protobuf(signal, b"{}").unwrap();
        assert!(buf.is_empty());
        assert_eq!(count, 0);
    }
}

#[test]
fn protobuf_to_json_round_trips() {
    for (signal, json) in [
        (Signal::Traces, TRACES),
        (Signal::Metrics, METRICS),
        (Signal::Logs, LOGS),
    ] {
        let (buf, count) = json_to_protobuf(signal, json.as_bytes()).unwrap();
        let rendered = protobuf_to_json(signal, &buf).unwrap();
        let (again, again_count) = json_to_protobuf(signal, rendered.as_bytes()).unwrap();
        assert_eq!(again, buf, "{signal}: {rendered}");
        assert_eq!(again_count, count);
    }
    let rendered = protobuf_to_json(
        Signal::Traces,
        &json_to_protobuf(Signal::Traces, TRACES.as_bytes())
            .unwrap()
            .0,
    )
    .unwrap();
    assert!(
        rendered.contains("\"traceId\":\"5b8efff798038103d269b633813fc60c\""),
        "{rendered}"
    );
}

#[test]
fn malformed_json_is_refused_with_a_position() {
    let err = json_to_protobuf(Signal::Traces, b"{\"resourceSpans\": [").unwrap_err();
    assert!(matches!(err.kind(), WireErrorKind::Json(_)), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
    assert_eq!(err.offset(), None);

    let err = json_to_protobuf(Signal::Logs, b"[1, 2]").unwrap_err();
    assert!(matches!(err.kind(), WireErrorKind::Json(_)), "{err}");
}

#[test]
fn bad_ids_are_refused() {
    let with_trace_id = |id: &str| {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{id}","spanId":"0102030405060708"}}]}}]}}]}}"#
        )
    };
    // Not hex.
    let err = json_to_protobuf(Signal::Traces, with_trace_id("zz").as_bytes()).unwrap_err();
    assert!(matches!(err.kind(), WireErrorKind::Json(_)), "{err}");
    // Hex, but 4 bytes: refused by the same check as protobuf input, without a byte offset.
    let err = json_to_protobuf(Signal::Traces, with_trace_id("01020304").as_bytes()).unwrap_err();
    assert_eq!(
        err.kind(),
        &WireErrorKind::IdLength {
            expected: 16,
            found: 4
        }
    );
    assert_eq!(err.path(), "resource_spans.scope_spans.spans.trace_id");
    assert_eq!(err.offset(), None);
    // Empty ids are allowed.
    let (_, count) = json_to_protobuf(Signal::Traces, with_trace_id("").as_bytes()).unwrap();
    assert_eq!(count, 1);
}

#[test]
fn protobuf_to_json_refuses_garbage() {
    let err = protobuf_to_json(Signal::Traces, &[0x0a, 0x05, 0x01]).unwrap_err();
    assert!(matches!(err.kind(), WireErrorKind::Decode(_)), "{err}");
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn empty_and_null_values_are_accepted() {
    let json = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{
        "body": {},
        "attributes": [
            { "key": "empty", "value": {} },
            { "key": "absent" },
            { "key": "nulled", "value": null }
        ],
        "traceId": "",
        "spanId": null
    }]}]}]}"#;
    let (buf, count) = json_to_protobuf(Signal::Logs, json.as_bytes()).unwrap();
    assert_eq!(count, 1);
    let req = ExportLogsServiceRequest::decode(buf.as_ref()).unwrap();
    let record = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(record.attributes.len(), 3);
    assert!(record.trace_id.is_empty() && record.span_id.is_empty());
    assert!(
        record
            .attributes
            .iter()
            .all(|kv| kv.value.as_ref().is_none_or(|v| v.value.is_none())),
        "{:?}",
        record.attributes
    );
}
