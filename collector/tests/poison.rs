//! One bad item must not take its batch down (docs/validation.md), against the real binary and
//! a backend that refuses, as Tempo does, any request holding a span with an all-zero id.
//!
//! Four clients send valid spans concurrently. A fifth sends requests holding one poison span:
//! through a receiver with intake validation (it gets `partial_success`) and through one with
//! validation off (the poison reaches the exporter, merged into a batch with the others' spans,
//! and the backend refuses the whole batch). Every valid acknowledged span must arrive, the
//! poison span must land in the dead-letter store, and the CLI must show, replay and purge it.

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use sluice_loadgen::loadgen::build_request;
use sluice_testkit::otlp::{OtlpTestServer, TEMPO_ZERO_ID_MESSAGE};
use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Sluice, TraceClient, free_port, span_ids, write_config};

fn config(strict_grpc: u16, strict_http: u16, raw_http: u16, backend: &str) -> String {
    format!(
        r#"
[receivers.strict]
type = "otlp"
[receivers.strict.grpc]
endpoint = "127.0.0.1:{strict_grpc}"
[receivers.strict.http]
endpoint = "127.0.0.1:{strict_http}"

[receivers.raw]
type = "otlp"
[receivers.raw.http]
endpoint = "127.0.0.1:{raw_http}"
[receivers.raw.validation]
enabled = false

[processors.batch]
type = "batch"
timeout = "200ms"

[exporters.tempo]
type = "otlp"
endpoint = "{backend}"
[exporters.tempo.retry]
initial_interval = "20ms"
max_interval = "200ms"

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["strict", "raw"]
processors = ["batch"]
exporters = ["tempo"]
"#
    )
}

/// A 50-span request whose span 7 has an all-zero span id.
fn poisoned(seed: u64) -> ExportTraceServiceRequest {
    let mut request = build_request(50, 1, seed);
    request.resource_spans[0].scope_spans[0].spans[7].span_id = vec![0; 8];
    request
}

async fn post(port: u16, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn cli(sluice: &Sluice, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dead-letter")
        .arg(format!("--storage.path={}", sluice.storage.display()))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dead-letter {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_span_is_isolated_and_kept_while_everything_valid_arrives() {
    let backend = OtlpTestServer::start().await;
    backend.refuse_zero_ids(true);
    let dir = tempfile::tempdir().unwrap();
    let (strict_grpc, strict_http, raw_http) = (free_port(), free_port(), free_port());
    let config = write_config(
        dir.path(),
        "sluice.toml",
        &config(strict_grpc, strict_http, raw_http, &backend.grpc_endpoint()),
    );
    let sluice = Sluice::start(&config, &dir.path().join("data")).await;

    // Four clients send valid spans while the poison requests arrive.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let senders: Vec<_> = (0..4u64)
        .map(|client| {
            let acked = acked.clone();
            tokio::spawn(async move {
                let mut grpc = TraceClient::new(&format!("http://127.0.0.1:{strict_grpc}"));
                for i in 0..40 {
                    let request = build_request(50, 1, 1 + client * 1000 + i);
                    let body = request.encode_to_vec();
                    if grpc.send(body.into()).await.is_ok() {
                        acked.lock().unwrap().extend(span_ids(&request));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    // Through validation: partial success naming the bad span; the other 49 are kept.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let strict = poisoned(90_001);
    let (status, body) = post(strict_http, strict.encode_to_vec()).await;
    assert_eq!(status, 200);
    let partial = ExportTraceServiceResponse::decode(body.as_slice())
        .unwrap()
        .partial_success
        .expect("partial_success");
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(
        partial.error_message,
        "span 7 refused: span_id is all zeros"
    );

    // Without validation: accepted whole, merged with the other clients' spans.
    let raw = poisoned(90_002);
    let (status, _) = post(raw_http, raw.encode_to_vec()).await;
    assert_eq!(status, 200);
    for sender in senders {
        sender.await.unwrap();
    }

    let mut want: HashSet<u64> = acked.lock().unwrap().iter().copied().collect();
    assert_eq!(
        want.len(),
        4 * 40 * 50,
        "every valid request was acknowledged"
    );
    for request in [&strict, &raw] {
        want.extend(span_ids(request).into_iter().filter(|id| *id != 0));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: HashSet<u64> = span_ids(&ExportTraceServiceRequest {
            resource_spans: backend.resource_spans(),
        })
        .into_iter()
        .collect();
        if want.is_subset(&got) {
            assert!(!got.contains(&0), "the backend never stores a zero id");
            break;
        }
        let missing = want.difference(&got).count();
        assert!(
            Instant::now() < deadline,
            "{missing} valid acknowledged spans never arrived; log:\n{}",
            sluice.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The refusal really hit a merged batch, which was split.
    assert!(
        backend
            .requests()
            .iter()
            .any(|r| !r.accepted() && r.payload.item_count() > 50),
        "the poison span was merged with other clients' spans"
    );

    // The poison span, alone, in the dead-letter store (admin API and CLI).
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let (code, text) = sluice.get("/api/v1/dead-letter").await;
        assert_eq!(code, 200);
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        if !entries.is_empty() || Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["items"], 1);
    assert_eq!(entry["exporter"], "exporters.tempo");
    assert_eq!(entry["signal"], "traces");
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .contains(TEMPO_ZERO_ID_MESSAGE),
        "{entry}"
    );
    let id = entry["id"].as_str().unwrap().to_owned();
    let (code, shown) = sluice.get(&format!("/api/v1/dead-letter/{id}")).await;
    assert_eq!(code, 200);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let spans = &shown["payload"]["resourceSpans"][0]["scopeSpans"][0]["spans"];
    assert_eq!(spans.as_array().unwrap().len(), 1);
    assert_eq!(spans[0]["spanId"], "0000000000000000");

    let metrics = sluice.get("/metrics").await.1;
    assert!(
        metrics.contains(
            r#"sluice_dead_letter_items_total{exporter="exporters.tempo",reason="bad_request"} 1"#
        ),
        "{metrics}"
    );
    // Admin replay while the cause is not fixed: back through the pipeline, refused again, and
    // kept again under a new id.
    let (code, text) = sluice
        .post(&format!("/api/v1/dead-letter/{id}/replay"))
        .await;
    assert_eq!(code, 200, "{text}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (_, text) = sluice.get("/api/v1/dead-letter").await;
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        if let [entry] = entries.as_slice()
            && entry["id"] != id.as_str()
        {
            assert_eq!(entry["items"], 1);
            break entry["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "replayed entry not kept again: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let listed = cli(&sluice, &["list"]);
    assert!(listed.starts_with(&id), "{listed}");
    assert!(cli(&sluice, &["show", &id]).contains("0000000000000000"));

    // Replay after "fixing the cause" (the backend takes it now): delivered and removed.
    backend.refuse_zero_ids(false);
    let replayed = cli(
        &sluice,
        &[
            "replay",
            &id,
            &format!("--endpoint=http://127.0.0.1:{raw_http}"),
        ],
    );
    assert!(replayed.contains("replayed 1 spans"), "{replayed}");
    assert!(cli(&sluice, &["list"]).is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !backend.spans().iter().any(|s| s.span_id == vec![0; 8]) {
        assert!(Instant::now() < deadline, "the replayed span never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cli(&sluice, &["purge"]).contains("purged 0 entries"));
}
