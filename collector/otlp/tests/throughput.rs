//! Rough speed check of `validate` against a prost decode of the same request.
//! Run with `cargo test --release -p sluice-otlp --test throughput -- --ignored --nocapture`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sluice_otlp::{Signal, validate};
use std::time::Instant;

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

#[test]
#[ignore = "timing; run in release"]
fn validate_is_much_faster_than_decoding() {
    let spans: Vec<Span> = (0..2000u32)
        .map(|i| Span {
            trace_id: vec![i as u8; 16],
            span_id: vec![7; 8],
            parent_span_id: vec![9; 8],
            name: format!("GET /api/v1/items/{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i),
            end_time_unix_nano: 1_700_000_000_100_000_000 + u64::from(i),
            attributes: vec![
                attr("http.method", "GET"),
                attr("http.route", "/api/v1/items/{id}"),
                attr("net.peer.name", "backend.internal"),
                attr("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
            ],
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let buf = req.encode_to_vec();
    let rounds = 200;

    let t = Instant::now();
    for _ in 0..rounds {
        assert_eq!(
            validate(Signal::Traces, std::hint::black_box(&buf)),
            Ok(2000)
        );
    }
    let ours = t.elapsed();
    let t = Instant::now();
    for _ in 0..rounds {
        let decoded = ExportTraceServiceRequest::decode(std::hint::black_box(buf.as_slice()));
        assert!(decoded.is_ok());
    }
    let prost = t.elapsed();
    let mb = (buf.len() * rounds) as f64 / 1e6;
    println!(
        "validate: {:.0} MB/s, {:.1} M spans/s; prost decode: {:.0} MB/s ({} bytes/request)",
        mb / ours.as_secs_f64(),
        (2000 * rounds) as f64 / ours.as_secs_f64() / 1e6,
        mb / prost.as_secs_f64(),
        buf.len()
    );
    assert!(ours * 3 < prost, "validate {ours:?} vs prost {prost:?}");
}
