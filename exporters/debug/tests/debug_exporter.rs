//! The debug exporter writes OTLP/JSON lines that decode back to what was sent.

use sluice_testkit::payloads as common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use sluice_core::{Exporter, Item, SendOutcome, Signal};
use sluice_exporter_debug::{self as debug, Config, Verbosity};

fn config(text: &str) -> Config {
    let c: Config = toml::from_str(text).expect("parse");
    c.validate().expect("valid");
    c
}

#[tokio::test]
async fn file_lines_round_trip_for_every_signal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/out.jsonl");
    let exp = debug::build(
        &config(&format!(
            "verbosity = \"detailed\"\npath = {:?}",
            path.display().to_string()
        )),
        "exporters.debug",
    )
    .unwrap();

    let t1 = traces("a", 1, 2);
    let t2 = traces("b", 2, 1);
    let m = metrics("a", 3);
    let l = logs("a", 2);
    let garbage = Item::new(Signal::Traces, bytes::Bytes::from_static(b"\xff\xff"), 9);
    let batches = [
        batch(
            Signal::Traces,
            None,
            vec![trace_item(&t1), garbage, trace_item(&t2)],
        ),
        batch(Signal::Metrics, Some("t"), vec![metric_item(&m, 4)]),
        batch(Signal::Logs, None, vec![log_item(&l)]),
    ];
    for b in &batches {
        let requests = exp.build_requests(b);
        assert_eq!(requests.len(), 1);
        assert_eq!(exp.send(&requests[0]).await, SendOutcome::Sent);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The undecodable item is dropped (and counted), the rest is one line each.
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        serde_json::from_str::<ExportTraceServiceRequest>(lines[0]).unwrap(),
        t1
    );
    assert_eq!(
        serde_json::from_str::<ExportTraceServiceRequest>(lines[1]).unwrap(),
        t2
    );
    assert_eq!(
        serde_json::from_str::<ExportMetricsServiceRequest>(lines[2]).unwrap(),
        m
    );
    assert_eq!(
        serde_json::from_str::<ExportLogsServiceRequest>(lines[3]).unwrap(),
        l
    );
    // OTLP/JSON shape: lowerCamelCase keys, hex ids, 64-bit integers as strings.
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], "01010101010101010101010101010101");
    assert_eq!(span["spanId"], "0100abcd01020304");
    assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
    assert_eq!(span["kind"], 2);

    // Appends, never truncates.
    let again = exp.build_requests(&batches[2]);
    assert_eq!(exp.send(&again[0]).await, SendOutcome::Sent);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 5);
}

#[tokio::test]
async fn unwritable_file_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("out.jsonl");
    let exp = debug::build(
        &config(&format!("path = {:?}", path.display().to_string())),
        "exporters.debug",
    )
    .unwrap();
    let b = batch(Signal::Logs, None, vec![log_item(&logs("a", 1))]);
    let requests = exp.build_requests(&b);
    match exp.send(&requests[0]).await {
        SendOutcome::Retryable { reason, .. } => assert_eq!(reason, "file_write"),
        other => panic!("{other:?}"),
    }
    // Once the path becomes writable the same request goes through.
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(exp.send(&requests[0]).await, SendOutcome::Sent);
    let line = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        serde_json::from_str::<ExportLogsServiceRequest>(line.trim()).unwrap(),
        logs("a", 1)
    );
}

#[tokio::test]
async fn basic_logging_without_file_needs_no_decoding() {
    let exp = debug::build(&Config::default(), "exporters.debug").unwrap();
    let garbage = Item::new(Signal::Traces, bytes::Bytes::from_static(b"\xff"), 3);
    let requests = exp.build_requests(&batch(Signal::Traces, None, vec![garbage]));
    assert_eq!(requests.len(), 1);
    assert_eq!(exp.request_items(&requests[0]), 3);
    assert!(requests[0].json_lines.is_empty());
    assert_eq!(exp.send(&requests[0]).await, SendOutcome::Sent);
}

#[test]
fn config_is_strict() {
    assert_eq!(config("").verbosity, Verbosity::Basic);
    assert!(toml::from_str::<Config>("verbosity = \"loud\"").is_err());
    assert!(toml::from_str::<Config>("colour = true").is_err());
    let dir = tempfile::tempdir().unwrap();
    let c: Config =
        toml::from_str(&format!("path = {:?}", dir.path().display().to_string())).unwrap();
    let err = c.validate().unwrap_err();
    assert_eq!(err.key, "path");
    assert!(err.reason.contains("directory"), "{err}");
}
