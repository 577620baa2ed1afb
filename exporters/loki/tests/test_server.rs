//! The Loki test server itself answers raw pushes as Loki does; the exporter tests rely on it.

mod common;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;
use sluice_testkit::loki::wire::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter};
use sluice_testkit::loki::{LokiTestServer, ScriptedResponse};
use std::io::Write;
use std::time::Duration;

fn entry(ts_ns: u64, line: &str) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(prost_types::Timestamp {
            seconds: (ts_ns / 1_000_000_000) as i64,
            nanos: (ts_ns % 1_000_000_000) as i32,
        }),
        line: line.into(),
        structured_metadata: vec![LabelPairAdapter {
            name: "trace_id".into(),
            value: "abc".into(),
        }],
        parsed: vec![],
    }
}

fn push(streams: Vec<(&str, Vec<EntryAdapter>)>) -> Vec<u8> {
    let req = PushRequest {
        streams: streams
            .into_iter()
            .map(|(labels, entries)| StreamAdapter {
                labels: labels.into(),
                entries,
                hash: 0,
            })
            .collect(),
        format: String::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

async fn post(server: &LokiTestServer, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, String) {
    let mut rb = reqwest::Client::new().post(server.push_url()).body(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

const ORG: (&str, &str) = ("X-Scope-OrgID", "t1");

#[tokio::test]
async fn protobuf_must_be_snappy_and_may_be_gzip_wrapped() {
    let server = LokiTestServer::start().await;
    let t = common::base_ns();
    let body = push(vec![(r#"{job="a"}"#, vec![entry(t, "one")])]);

    // Without snappy the body is not a push request.
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let (status, msg) = post(&server, raw, &[ORG]).await;
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("snappy"), "{msg}");

    // Snappy inside gzip, with Content-Encoding: gzip.
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&body).unwrap();
    let (status, _) = post(
        &server,
        gz.finish().unwrap(),
        &[ORG, ("Content-Encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 204);

    // `Content-Encoding: snappy` is informational; unknown encodings are refused.
    let (status, _) = post(
        &server,
        body.clone(),
        &[ORG, ("Content-Encoding", "snappy")],
    )
    .await;
    assert_eq!(status, 204);
    let (status, msg) = post(&server, body, &[ORG, ("Content-Encoding", "br")]).await;
    assert_eq!(
        (status, msg.contains("not supported")),
        (400, true),
        "{msg}"
    );

    let streams = server.streams("t1");
    assert_eq!(streams.len(), 1);
    // The identical (time, line) entry sent twice is stored once, as Loki dedups it.
    assert_eq!(streams[0].lines(), vec!["one"]);
    assert_eq!(streams[0].entries[0].metadata("trace_id"), Some("abc"));
}

#[tokio::test]
async fn tenant_is_required() {
    let server = LokiTestServer::start().await;
    let body = push(vec![(r#"{job="a"}"#, vec![entry(common::base_ns(), "x")])]);
    assert_eq!(
        post(&server, body.clone(), &[]).await,
        (401, "no org id".into())
    );
    let (status, _) = post(&server, body, &[("X-Scope-OrgID", "a|b")]).await;
    assert_eq!(status, 400);
    assert_eq!(server.total_entries(), 0);
}

#[tokio::test]
async fn invalid_streams_get_400_while_valid_ones_are_stored() {
    let server = LokiTestServer::start().await;
    let t = common::base_ns();
    let too_many: String = format!(
        "{{{}}}",
        (0..16)
            .map(|i| format!("l{i}=\"v\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let body = push(vec![
        (r#"{job="ok", level="INFO"}"#, vec![entry(t, "kept")]),
        (r#"{job="unterminated}"#, vec![entry(t, "bad")]),
        (r#"{0job="x"}"#, vec![entry(t, "bad")]),
        (r#"{job="a", job="b"}"#, vec![entry(t, "bad")]),
        (too_many.as_str(), vec![entry(t, "bad")]),
        (r#"{job=""}"#, vec![entry(t, "bad")]),
    ]);
    let (status, msg) = post(&server, body, &[ORG]).await;
    assert_eq!(status, 400);
    assert_eq!(msg.lines().count(), 5, "{msg}");
    assert!(msg.contains("Error parsing labels"), "{msg}");
    assert!(msg.contains("duplicate label name"), "{msg}");
    assert!(msg.contains("has 16 label names; limit 15"), "{msg}");
    assert!(msg.contains("at least one label pair"), "{msg}");
    assert_eq!(server.total_entries(), 1);
    assert_eq!(server.entries_for(&[("job", "ok")])[0].line, "kept");
}

#[tokio::test]
async fn out_of_order_window_and_sample_age() {
    let server = LokiTestServer::start().await;
    let t = common::base_ns();
    let hour = 3_600_000_000_000u64;
    let body = push(vec![(
        r#"{job="a"}"#,
        vec![
            entry(t, "newest"),
            entry(t - hour / 2, "30 min behind: accepted"),
            entry(t - 2 * hour, "2 h behind: too far behind"),
            entry(t - 8 * 24 * hour, "8 days old: too old"),
            entry(t + hour, "future: too new"),
        ],
    )]);
    let (status, msg) = post(&server, body, &[ORG]).await;
    assert_eq!(status, 400);
    assert!(msg.contains("entry too far behind"), "{msg}");
    assert!(msg.contains("timestamp too old"), "{msg}");
    assert!(msg.contains("timestamp too new"), "{msg}");
    assert_eq!(
        server.streams("t1")[0].lines(),
        vec!["newest", "30 min behind: accepted"]
    );
}

#[tokio::test]
async fn json_push_needs_string_timestamps() {
    let server = LokiTestServer::start().await;
    let t = common::base_ns();
    let good = serde_json::json!({"streams":[{"stream":{"job":"j"},"values":[
        [t.to_string(), "line one"],
        [(t + 1).to_string(), "line two", {"trace_id":"abc"}]
    ]}]});
    let bad = serde_json::json!({"streams":[{"stream":{"job":"j"},"values":[[t, "numeric ts"]]}]});
    let json = ("Content-Type", "application/json");
    let (status, _) = post(&server, serde_json::to_vec(&good).unwrap(), &[ORG, json]).await;
    assert_eq!(status, 204);
    let (status, msg) = post(&server, serde_json::to_vec(&bad).unwrap(), &[ORG, json]).await;
    assert_eq!(status, 400, "{msg}");
    let entries = server.entries_for(&[("job", "j")]);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].metadata("trace_id"), Some("abc"));
}

#[tokio::test]
async fn scripted_answers_then_normal_service() {
    let server = LokiTestServer::start().await;
    let body = push(vec![(r#"{job="a"}"#, vec![entry(common::base_ns(), "x")])]);
    server.respond_with(ScriptedResponse::too_many_requests(Some("3")), 1);
    server.respond_with(ScriptedResponse::server_error(500), 1);
    let resp = reqwest::Client::new()
        .post(server.push_url())
        .header("X-Scope-OrgID", "t1")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert_eq!(post(&server, body.clone(), &[ORG]).await.0, 500);
    assert_eq!(post(&server, body, &[ORG]).await.0, 204);
    assert!(server.wait_for_pushes(3, Duration::from_secs(1)).await);
    assert!(server.wait_for_entries(1, Duration::from_secs(1)).await);
    assert!(!server.wait_for_entries(2, Duration::from_millis(50)).await);
}
