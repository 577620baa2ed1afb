//! One bad log record next to Loki (docs/validation.md): Loki refuses part of a push (400,
//! the valid entries kept), so Sluice does not split; it keeps the refused request in the
//! dead-letter store. Clients send valid logs concurrently; every acknowledged line must
//! arrive, and the sender of a record intake validation refuses gets `partial_success`.

mod support;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_testkit::loki::LokiTestServer;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Sluice, free_port, write_config};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn record(line: &str, time_unix_nano: u64) -> LogRecord {
    LogRecord {
        time_unix_nano,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(line.into())),
        }),
        ..Default::default()
    }
}

fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("poison-test".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post(port: u16, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_keeps_the_valid_part_and_the_refused_push_is_kept() {
    let loki = LokiTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let config = format!(
        r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.http]
endpoint = "127.0.0.1:{http}"

[processors.batch]
type = "batch"
timeout = "200ms"

[exporters.loki]
type = "loki"
url = "{}"
tenant_id = "team"

[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["loki"]
"#,
        loki.push_url()
    );
    let path = write_config(dir.path(), "sluice.toml", &config);
    let sluice = Sluice::start(&path, &dir.path().join("data")).await;

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let senders: Vec<_> = (0..4)
        .map(|client| {
            let acked = acked.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let lines: Vec<String> = (0..10)
                        .map(|j| format!("client-{client}-{i}-{j}"))
                        .collect();
                    let records = lines.iter().map(|l| record(l, now_ns())).collect();
                    let (status, _) = post(http, request(records).encode_to_vec()).await;
                    if status == 200 {
                        acked.lock().unwrap().extend(lines);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    // One request with a record Loki refuses (30 days old: past reject_old_samples_max_age,
    // which intake validation does not check) and one intake validation refuses (zero trace id).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let month_ago = now_ns() - 30 * 24 * 3600 * 1_000_000_000;
    let mut records = vec![
        record("poison-ok-1", now_ns()),
        record("poison-too-old", month_ago),
        record("poison-zero-trace", now_ns()),
        record("poison-ok-2", now_ns()),
    ];
    records[2].trace_id = vec![0; 16];
    let (status, body) = post(http, request(records).encode_to_vec()).await;
    assert_eq!(status, 200);
    let partial = ExportLogsServiceResponse::decode(body.as_slice())
        .unwrap()
        .partial_success
        .expect("partial_success");
    assert_eq!(partial.rejected_log_records, 1);
    assert_eq!(
        partial.error_message,
        "log record 2 refused: trace_id is all zeros"
    );
    for sender in senders {
        sender.await.unwrap();
    }

    let mut want: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        want.len(),
        4 * 30 * 10,
        "every valid request was acknowledged"
    );
    want.extend(["poison-ok-1".to_owned(), "poison-ok-2".to_owned()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<String> = loki
            .streams("team")
            .iter()
            .flat_map(|s| s.lines().into_iter().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let arrived = want
            .iter()
            .filter(|w| lines.iter().any(|l| l.contains(w.as_str())))
            .count();
        if arrived == want.len() {
            assert!(!lines.iter().any(|l| l.contains("poison-too-old")));
            assert!(!lines.iter().any(|l| l.contains("poison-zero-trace")));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{arrived} of {} valid acknowledged lines arrived; log:\n{}",
            want.len(),
            sluice.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The refused push is in the dead-letter store with Loki's message, its payload holding the
    // refused record (with the rest of its batch, which Loki kept: see docs/validation.md).
    let (code, text) = sluice.get("/api/v1/dead-letter").await;
    assert_eq!(code, 200);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["exporter"], "exporters.loki");
    let message = entries[0]["message"].as_str().unwrap();
    assert!(message.contains("timestamp too old"), "{message}");
    let id = entries[0]["id"].as_str().unwrap();
    let (code, shown) = sluice.get(&format!("/api/v1/dead-letter/{id}")).await;
    assert_eq!(code, 200);
    assert!(shown.contains("poison-too-old"), "{shown}");
    assert!(!shown.contains("poison-zero-trace"), "{shown}");
}
