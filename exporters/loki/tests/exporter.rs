//! The exporter against `LokiTestServer`, which decodes and validates pushes as Loki does.

mod common;

use common::*;
use prost::Message;
use sluice_core::{Batch, Exporter, SendOutcome};
use sluice_exporter_loki::{Config, Encoding, LineFormat, LineTooLong, LokiExporter, build};
use sluice_testkit::loki::{LokiServerOptions, LokiStream, LokiTestServer, ScriptedResponse};
use std::collections::BTreeMap;
use std::time::Duration;

fn exporter(url: String, edit: impl FnOnce(&mut Config)) -> LokiExporter {
    let mut c = Config::with_url(url);
    c.tenant_id = Some("t1".into());
    // One push per tenant and batch, so tests can look at "the" request; sharding has its own.
    c.shards = 1;
    edit(&mut c);
    build(&c, "exporters.loki").expect("build")
}

async fn deliver(exp: &LokiExporter, batch: &Batch) -> Vec<SendOutcome> {
    let mut out = Vec::new();
    for r in exp.build_requests(batch) {
        out.push(exp.send(&r).await);
    }
    out
}

fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn scope_suffix() -> &'static str {
    r#""instrumentation_scope":{"name":"app","version":"1.2"}}"#
}

#[tokio::test]
async fn exact_streams_for_severities_attributes_trace_and_resources() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |_| {});
    let t = base_ns();
    let mut info = record(t, 9, "order placed", vec![kv("order_id", i(42))]);
    info.severity_text = "INFO".into();
    info.trace_id = TRACE_ID.to_vec();
    info.span_id = SPAN_ID.to_vec();
    let mut error = record(t + 2, 17, "card declined", vec![kv("retry", b(false))]);
    error.severity_text = "ERROR".into();
    let info2 = record(t + 1, 9, "order shipped", vec![]);
    let payments = record(t + 3, 13, "slow gateway", vec![kv("ms", d(1532.5))]);
    let req = request(vec![
        resource_logs(
            checkout_resource(),
            Some(("app", "1.2")),
            vec![info, error, info2],
        ),
        resource_logs(
            vec![ks("service.name", "payments")],
            Some(("app", "1.2")),
            vec![payments],
        ),
    ]);
    assert_eq!(deliver(&exp, &batch(&[req])).await, vec![SendOutcome::Sent]);

    let checkout_res = r#""resources":{"host.name":"h1","service.instance.id":"pod-1","service.name":"checkout","service.namespace":"shop"},"#;
    let expected = vec![
        LokiStream {
            tenant: "t1".into(),
            labels: label_map(&[
                ("exporter", "OTLP"),
                ("instance", "pod-1"),
                ("job", "shop/checkout"),
                ("level", "ERROR"),
                ("service_name", "checkout"),
            ]),
            entries: vec![sluice_testkit::loki::LokiEntry {
                timestamp_ns: (t + 2) as i64,
                line: format!(
                    r#"{{"body":"card declined","severity":"ERROR","attributes":{{"retry":false}},{checkout_res}{}"#,
                    scope_suffix()
                ),
                structured_metadata: vec![],
            }],
        },
        LokiStream {
            tenant: "t1".into(),
            labels: label_map(&[
                ("exporter", "OTLP"),
                ("instance", "pod-1"),
                ("job", "shop/checkout"),
                ("level", "INFO"),
                ("service_name", "checkout"),
            ]),
            entries: vec![
                sluice_testkit::loki::LokiEntry {
                    timestamp_ns: t as i64,
                    line: format!(
                        r#"{{"body":"order placed","traceid":"{TRACE_HEX}","spanid":"{SPAN_HEX}","severity":"INFO","attributes":{{"order_id":42}},{checkout_res}{}"#,
                        scope_suffix()
                    ),
                    structured_metadata: vec![],
                },
                sluice_testkit::loki::LokiEntry {
                    timestamp_ns: (t + 1) as i64,
                    line: format!(
                        r#"{{"body":"order shipped",{checkout_res}{}"#,
                        scope_suffix()
                    ),
                    structured_metadata: vec![],
                },
            ],
        },
        LokiStream {
            tenant: "t1".into(),
            labels: label_map(&[
                ("exporter", "OTLP"),
                ("job", "payments"),
                ("level", "WARN"),
                ("service_name", "payments"),
            ]),
            entries: vec![sluice_testkit::loki::LokiEntry {
                timestamp_ns: (t + 3) as i64,
                line: format!(
                    r#"{{"body":"slow gateway","attributes":{{"ms":1532.5}},"resources":{{"service.name":"payments"}},{}"#,
                    scope_suffix()
                ),
                structured_metadata: vec![],
            }],
        },
    ];
    assert_eq!(server.streams("t1"), expected);
    let pushes = server.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].status, 204);
    assert_eq!(pushes[0].tenant.as_deref(), Some("t1"));
    assert_eq!(
        pushes[0].content_type.as_deref(),
        Some("application/x-protobuf")
    );
}

#[tokio::test]
async fn request_body_is_snappy_protobuf_with_sorted_streams_and_entries() {
    let exp = exporter("http://127.0.0.1:9/loki/api/v1/push".into(), |_| {});
    let t = base_ns();
    let req = request(vec![
        resource_logs(
            vec![ks("service.name", "b")],
            None,
            vec![
                record(t + 5, 0, "b2", vec![]),
                record(t + 1, 0, "b1", vec![]),
            ],
        ),
        resource_logs(
            vec![ks("service.name", "a")],
            None,
            vec![
                record(t + 9, 0, "a2", vec![]),
                record(t + 3, 0, "a1", vec![]),
            ],
        ),
    ]);
    let requests = exp.build_requests(&batch(&[req]));
    assert_eq!(requests.len(), 1);
    assert_eq!(exp.request_items(&requests[0]), 4);
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&requests[0].body)
        .expect("snappy block");
    let push = sluice_testkit::loki::wire::PushRequest::decode(raw.as_slice()).unwrap();
    let got: Vec<(String, Vec<i64>)> = push
        .streams
        .iter()
        .map(|s| {
            (
                s.labels.clone(),
                s.entries
                    .iter()
                    .map(|e| e.timestamp.unwrap().nanos as i64)
                    .collect(),
            )
        })
        .collect();
    let ns = |x: u64| ((t + x) % 1_000_000_000) as i64;
    assert_eq!(
        got,
        vec![
            (
                r#"{exporter="OTLP", job="a", service_name="a"}"#.to_owned(),
                vec![ns(3), ns(9)]
            ),
            (
                r#"{exporter="OTLP", job="b", service_name="b"}"#.to_owned(),
                vec![ns(1), ns(5)]
            ),
        ]
    );
    assert!(exp.ordered());
}

#[tokio::test]
async fn each_line_format_reaches_loki() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |c| c.line_format = LineFormat::Logfmt);
    let t = base_ns();
    let req = request(vec![resource_logs(
        vec![ks("service.name", "api")],
        None,
        vec![
            record(t, 0, "GET /health 200", vec![ks("path", "/health")]),
            record(
                t + 1,
                0,
                "as json",
                vec![ks("loki.format", "json"), ks("k", "v")],
            ),
            record(
                t + 2,
                0,
                "raw body",
                vec![ks("loki.format", "raw"), ks("k", "v")],
            ),
        ],
    )]);
    assert_eq!(deliver(&exp, &batch(&[req])).await, vec![SendOutcome::Sent]);
    let streams = server.streams("t1");
    assert_eq!(streams.len(), 1);
    assert_eq!(
        streams[0].lines(),
        vec![
            "GET= /health= 200= attribute_path=/health resource_service.name=api",
            r#"{"body":"as json","attributes":{"k":"v"},"resources":{"service.name":"api"}}"#,
            "raw body",
        ]
    );
}

#[tokio::test]
async fn tenant_hint_splits_one_batch_into_requests_per_tenant() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |_| {});
    let t = base_ns();
    let hinted = |ts, tenant: &str| {
        record(
            ts,
            0,
            "x",
            vec![ks("loki.tenant", "tenant.id"), ks("tenant.id", tenant)],
        )
    };
    let req = request(vec![resource_logs(
        vec![ks("service.name", "api")],
        None,
        vec![
            hinted(t, "acme"),
            record(t + 1, 0, "plain", vec![]),
            hinted(t + 2, "globex"),
            hinted(t + 3, "acme"),
        ],
    )]);
    let outcomes = deliver(&exp, &batch(&[req])).await;
    assert_eq!(outcomes, vec![SendOutcome::Sent; 3]);
    assert_eq!(server.tenants(), vec!["acme", "globex", "t1"]);
    let acme = server.streams("acme");
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].label("tenant_id"), Some("acme"));
    assert_eq!(acme[0].entries.len(), 2);
    assert_eq!(server.streams("globex")[0].entries.len(), 1);
    assert_eq!(server.streams("t1")[0].label("tenant_id"), None);
    let mut tenants: Vec<_> = server
        .pushes()
        .into_iter()
        .filter_map(|p| p.tenant)
        .collect();
    tenants.sort();
    assert_eq!(tenants, vec!["acme", "globex", "t1"]);
}

#[tokio::test]
async fn structured_metadata_reaches_loki() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |c| {
        c.structured_metadata = vec!["trace_id".into(), "span_id".into(), "execution_id".into()];
    });
    let t = base_ns();
    let mut r = record(t, 9, "step finished", vec![ks("execution_id", "ex-42")]);
    r.trace_id = TRACE_ID.to_vec();
    r.span_id = SPAN_ID.to_vec();
    let req = request(vec![resource_logs(
        vec![ks("service.name", "awf")],
        None,
        vec![r],
    )]);
    assert_eq!(deliver(&exp, &batch(&[req])).await, vec![SendOutcome::Sent]);
    let entries = server.entries_for(&[("service_name", "awf"), ("level", "INFO")]);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].metadata("trace_id"), Some(TRACE_HEX));
    assert_eq!(entries[0].metadata("span_id"), Some(SPAN_HEX));
    assert_eq!(entries[0].metadata("execution_id"), Some("ex-42"));
    assert_eq!(
        entries[0].line,
        r#"{"body":"step finished","resources":{"service.name":"awf"}}"#
    );
}

fn many_labels_request(
    t: u64,
    n: usize,
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    let names: Vec<String> = (0..n).map(|i| format!("attr{i:02}")).collect();
    let mut attrs = vec![ks("loki.attribute.labels", &names.join(","))];
    attrs.extend(names.iter().map(|n| ks(n, "v")));
    request(vec![resource_logs(
        vec![ks("service.name", "api")],
        None,
        vec![record(t, 0, "wide", attrs)],
    )])
}

#[tokio::test]
async fn label_limit_keeps_streams_acceptable_to_loki() {
    let server = LokiTestServer::start().await;
    let t = base_ns();

    // Default limit (15): the stream is accepted with 15 labels + service_name.
    let exp = exporter(server.push_url(), |_| {});
    assert_eq!(
        deliver(&exp, &batch(&[many_labels_request(t, 20)])).await,
        vec![SendOutcome::Sent]
    );
    let streams = server.streams("t1");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].labels.len(), 16);
    assert!(streams[0].labels.contains_key("service_name"));
    assert!(streams[0].labels.contains_key("exporter"));
    assert!(streams[0].labels.contains_key("attr12"));
    assert!(!streams[0].labels.contains_key("attr13"));
    // The labels that did not fit stay in the line.
    assert!(streams[0].entries[0].line.contains(r#""attr19":"v""#));
    assert!(!streams[0].entries[0].line.contains(r#""attr12""#));

    // Raising the exporter's limit above Loki's gets the stream refused by Loki.
    let loose = exporter(server.push_url(), |c| c.max_label_names = 30);
    let out = deliver(&loose, &batch(&[many_labels_request(t + 1, 20)])).await;
    assert!(
        matches!(&out[..], [SendOutcome::Rejected { reason: "label_limits", message }] if message.contains("limit 15")),
        "{out:?}"
    );
}

#[tokio::test]
async fn long_lines_truncate_drop_or_get_refused_by_loki() {
    let server = LokiTestServer::start().await;
    let t = base_ns();
    let huge = "x".repeat(300 * 1024);
    let req = |ts: u64, app: &str| {
        request(vec![resource_logs(
            vec![ks("service.name", app)],
            None,
            vec![
                record(ts, 0, &huge, vec![]),
                record(ts + 1, 0, "short", vec![]),
            ],
        )])
    };

    let truncating = exporter(server.push_url(), |c| c.line_format = LineFormat::Raw);
    assert_eq!(
        deliver(&truncating, &batch(&[req(t, "trunc")])).await,
        vec![SendOutcome::Sent]
    );
    let lines: Vec<usize> = server
        .entries_for(&[("job", "trunc")])
        .iter()
        .map(|e| e.line.len())
        .collect();
    assert_eq!(lines, vec![256 * 1024, 5]);

    let dropping = exporter(server.push_url(), |c| {
        c.line_format = LineFormat::Raw;
        c.line_too_long = LineTooLong::Drop;
    });
    assert_eq!(
        deliver(&dropping, &batch(&[req(t, "drop")])).await,
        vec![SendOutcome::Sent]
    );
    let lines: Vec<String> = server
        .entries_for(&[("job", "drop")])
        .into_iter()
        .map(|e| e.line)
        .collect();
    assert_eq!(lines, vec!["short"]);

    // Without the exporter's check Loki refuses the entry (400) but keeps the valid one.
    let unchecked = exporter(server.push_url(), |c| {
        c.line_format = LineFormat::Raw;
        c.max_line_size = sluice_core::ByteSize(0);
    });
    let out = deliver(&unchecked, &batch(&[req(t, "loki")])).await;
    assert!(
        matches!(
            &out[..],
            [SendOutcome::Rejected {
                reason: "line_too_long",
                ..
            }]
        ),
        "{out:?}"
    );
    assert_eq!(server.entries_for(&[("job", "loki")]).len(), 1);
}

#[tokio::test]
async fn unicode_and_escaped_label_values_round_trip() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |c| {
        c.attribute_labels = vec!["city".into(), "quote".into()];
        c.line_format = LineFormat::Raw;
    });
    let t = base_ns();
    let req = request(vec![resource_logs(
        vec![ks("service.name", "géo-服务")],
        None,
        vec![record(
            t,
            0,
            "こんにちは 🌍 \"quoted\"\ttab",
            vec![
                ks("city", "Zürich"),
                ks("quote", "say \"hi\" \\ back\nslash"),
            ],
        )],
    )]);
    assert_eq!(deliver(&exp, &batch(&[req])).await, vec![SendOutcome::Sent]);
    let streams = server.streams("t1");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].label("city"), Some("Zürich"));
    assert_eq!(streams[0].label("quote"), Some("say \"hi\" \\ back\nslash"));
    assert_eq!(streams[0].label("job"), Some("géo-服务"));
    assert_eq!(streams[0].lines(), vec!["こんにちは 🌍 \"quoted\"\ttab"]);
}

#[tokio::test]
async fn records_without_timestamp_use_observed_time_then_now() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |c| c.line_format = LineFormat::Raw);
    let t = base_ns();
    let mut observed = record(0, 0, "observed", vec![]);
    observed.observed_time_unix_nano = t + 7;
    let neither = record(0, 0, "neither", vec![]);
    let req = request(vec![resource_logs(
        vec![ks("service.name", "api")],
        None,
        vec![observed, neither],
    )]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert_eq!(deliver(&exp, &batch(&[req])).await, vec![SendOutcome::Sent]);
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let entries = server.entries_for(&[("job", "api")]);
    assert_eq!(entries[0].line, "observed");
    assert_eq!(entries[0].timestamp_ns, (t + 7) as i64);
    assert_eq!(entries[1].line, "neither");
    assert!((before..=after).contains(&entries[1].timestamp_ns));
}

#[tokio::test]
async fn rate_limit_storm_is_retryable_with_retry_after() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |_| {});
    let req = request(vec![resource_logs(
        vec![ks("service.name", "api")],
        None,
        vec![record(base_ns(), 0, "x", vec![])],
    )]);
    let requests = exp.build_requests(&batch(&[req]));
    assert_eq!(requests.len(), 1);
    server.respond_with(ScriptedResponse::too_many_requests(Some("7")), 3);
    for _ in 0..3 {
        match exp.send(&requests[0]).await {
            SendOutcome::Retryable {
                reason,
                retry_after,
                message,
            } => {
                assert_eq!(reason, "rate_limited");
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
                assert!(
                    message.contains("Ingestion rate limit exceeded"),
                    "{message}"
                );
            }
            other => panic!("expected Retryable, got {other:?}"),
        }
    }
    assert_eq!(server.total_entries(), 0);
    assert_eq!(exp.send(&requests[0]).await, SendOutcome::Sent);
    assert_eq!(server.total_entries(), 1);

    server.respond_with(ScriptedResponse::server_error(503), 1);
    assert!(matches!(
        exp.send(&requests[0]).await,
        SendOutcome::Retryable {
            reason: "server_error",
            retry_after: None,
            ..
        }
    ));
}

#[tokio::test]
async fn a_400_for_one_batch_does_not_stop_the_next() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |c| c.line_format = LineFormat::Raw);
    let t = base_ns();
    let one = |ts: u64, app: &str, line: &str| {
        request(vec![resource_logs(
            vec![ks("service.name", app)],
            None,
            vec![record(ts, 0, line, vec![])],
        )])
    };

    assert_eq!(
        deliver(&exp, &batch(&[one(t, "api", "first")])).await,
        vec![SendOutcome::Sent]
    );
    // Two hours behind the stream's newest entry: Loki refuses it, keeps the other stream.
    let late = batch(&[
        one(t - 2 * 3600 * 1_000_000_000, "api", "late"),
        one(t, "worker", "fine"),
    ]);
    let out = deliver(&exp, &late).await;
    assert!(
        matches!(&out[..], [SendOutcome::Rejected { reason: "out_of_order", message }] if message.starts_with("HTTP 400")),
        "{out:?}"
    );
    assert_eq!(server.entries_for(&[("job", "worker")]).len(), 1);

    // A scripted 400 with Loki's too-old message, then the next batch goes through.
    server.respond_with(
        ScriptedResponse::bad_request(
            "entry for stream '{job=\"api\"}' has timestamp too old: 2020-01-01T00:00:00Z, \
             oldest acceptable timestamp is: 2024-01-01T00:00:00Z",
        ),
        1,
    );
    let out = deliver(&exp, &batch(&[one(t + 1, "api", "second")])).await;
    assert!(
        matches!(&out[..], [SendOutcome::Rejected { reason: "too_old", message }] if message.contains("too old")),
        "{out:?}"
    );
    assert_eq!(
        deliver(&exp, &batch(&[one(t + 2, "api", "third")])).await,
        vec![SendOutcome::Sent]
    );
    let lines: Vec<String> = server
        .entries_for(&[("job", "api")])
        .into_iter()
        .map(|e| e.line)
        .collect();
    assert_eq!(lines, vec!["first", "third"]);
}

#[tokio::test]
async fn json_encoding_stores_the_same_streams_as_protobuf() {
    let proto_server = LokiTestServer::start().await;
    let json_server = LokiTestServer::start().await;
    let edit = |c: &mut Config| {
        c.structured_metadata = vec!["trace_id".into(), "user".into()];
    };
    let proto = exporter(proto_server.push_url(), edit);
    let json = exporter(json_server.push_url(), |c| {
        edit(c);
        c.encoding = Encoding::Json;
    });
    let t = base_ns();
    let mut r = record(t, 17, "ünïcode <b>", vec![ks("user", "ann")]);
    r.trace_id = TRACE_ID.to_vec();
    let req = request(vec![resource_logs(
        checkout_resource(),
        Some(("app", "1.2")),
        vec![r, record(t + 1, 9, "two", vec![])],
    )]);
    let b = batch(&[req]);
    assert_eq!(deliver(&proto, &b).await, vec![SendOutcome::Sent]);
    assert_eq!(deliver(&json, &b).await, vec![SendOutcome::Sent]);
    assert_eq!(
        json_server.pushes()[0].content_type.as_deref(),
        Some("application/json")
    );
    let streams = json_server.streams("t1");
    assert_eq!(streams.len(), 2);
    assert_eq!(streams, proto_server.streams("t1"));
    let err = json_server.entries_for(&[("level", "ERROR")]);
    assert_eq!(err[0].metadata("user"), Some("ann"));
    assert_eq!(err[0].metadata("trace_id"), Some(TRACE_HEX));
}

#[tokio::test]
async fn otlp_mode_posts_the_records_unchanged() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.otlp_url(), |c| c.encoding = Encoding::Otlp);
    let t = base_ns();
    let mut r = record(t, 9, "native", vec![ks("user", "ann")]);
    r.trace_id = TRACE_ID.to_vec();
    let a = request(vec![resource_logs(
        vec![ks("service.name", "api"), ks("k8s.pod.name", "p1")],
        None,
        vec![r],
    )]);
    let b2 = request(vec![resource_logs(
        vec![ks("host.name", "h1")],
        None,
        vec![record(t + 1, 0, "anonymous", vec![])],
    )]);
    let requests = exp.build_requests(&batch(&[a.clone(), b2.clone()]));
    assert_eq!(requests.len(), 1);
    assert_eq!(exp.request_items(&requests[0]), 2);
    assert_eq!(exp.send(&requests[0]).await, SendOutcome::Sent);

    let mut merged = a.clone();
    merged.resource_logs.extend(b2.resource_logs.clone());
    assert_eq!(server.otlp_requests(), vec![merged]);
    let push = &server.pushes()[0];
    assert_eq!(push.path, "/otlp/v1/logs");
    assert_eq!(push.status, 204);
    assert_eq!(push.tenant.as_deref(), Some("t1"));

    let api = server.entries_for(&[("service_name", "api"), ("k8s_pod_name", "p1")]);
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].line, "native");
    assert_eq!(api[0].metadata("user"), Some("ann"));
    assert_eq!(api[0].metadata("trace_id"), Some(TRACE_HEX));
    assert_eq!(
        server.entries_for(&[("service_name", "unknown_service")])[0].line,
        "anonymous"
    );
}

#[tokio::test]
async fn tenant_auth_and_headers() {
    let server = LokiTestServer::start().await;
    let req = request(vec![resource_logs(
        vec![ks("service.name", "api")],
        None,
        vec![record(base_ns(), 0, "x", vec![])],
    )]);
    let b = batch(&[req]);

    // No tenant while Loki requires one: 401, not retried.
    let anonymous = exporter(server.push_url(), |c| c.tenant_id = None);
    let out = deliver(&anonymous, &b).await;
    assert!(
        matches!(&out[..], [SendOutcome::Rejected { reason: "unauthorized", message }] if message.contains("no org id")),
        "{out:?}"
    );

    // The receiver's tenant wins over the configured one; auth and headers are sent.
    let exp = exporter(server.push_url(), |c| {
        c.basic_auth = Some(sluice_exporter_loki::BasicAuth {
            username: "loki".into(),
            password: "s3cret".into(),
        });
        c.headers.insert("X-Team".into(), "obs".into());
    });
    let mut from_receiver = b.clone();
    from_receiver.tenant = Some("team-a".into());
    assert_eq!(deliver(&exp, &from_receiver).await, vec![SendOutcome::Sent]);
    let push = server.pushes().pop().unwrap();
    assert_eq!(push.tenant.as_deref(), Some("team-a"));
    assert_eq!(
        push.authorization.as_deref(),
        Some("Basic bG9raTpzM2NyZXQ=")
    );
    assert_eq!(server.streams("team-a").len(), 1);

    // Loki with auth disabled files everything under "fake".
    let open = LokiTestServer::start_with(LokiServerOptions {
        auth_enabled: false,
        ..Default::default()
    })
    .await;
    let anonymous = exporter(open.push_url(), |c| c.tenant_id = None);
    assert_eq!(deliver(&anonymous, &b).await, vec![SendOutcome::Sent]);
    assert_eq!(open.tenants(), vec!["fake"]);
}

#[tokio::test]
async fn outage_is_retryable_and_delivery_resumes_after_restart() {
    let server = LokiTestServer::start().await;
    let exp = exporter(server.push_url(), |c| {
        c.timeout = sluice_core::DurationStr::from_secs(2);
    });
    let req = request(vec![resource_logs(
        vec![ks("service.name", "api")],
        None,
        vec![record(base_ns(), 0, "x", vec![])],
    )]);
    let requests = exp.build_requests(&batch(&[req]));
    server.stop().await;
    assert!(matches!(
        exp.send(&requests[0]).await,
        SendOutcome::Retryable {
            reason: "connect",
            ..
        }
    ));
    server.restart().await;
    assert_eq!(exp.send(&requests[0]).await, SendOutcome::Sent);
    assert!(server.wait_for_entries(1, Duration::from_secs(1)).await);
}

#[test]
fn type_and_signals() {
    assert_eq!(sluice_exporter_loki::TYPE_NAME, "loki");
    assert_eq!(sluice_exporter_loki::SIGNALS, &[sluice_core::Signal::Logs]);
    let mut c = Config::with_url("http://loki:3100/otlp/v1/logs");
    assert!(build(&c, "exporters.loki").is_err());
    c.encoding = Encoding::Otlp;
    assert!(build(&c, "exporters.loki").is_ok());
}

#[tokio::test]
async fn shards_split_streams_and_keep_each_stream_whole() {
    let server = LokiTestServer::start().await;
    let t = base_ns();
    // 24 services: 24 streams, each with three entries.
    let resources: Vec<_> = (0..24)
        .map(|n| {
            resource_logs(
                vec![ks("service.name", &format!("svc-{n}"))],
                Some(("app", "1.2")),
                (0..3)
                    .map(|k| record(t + k, 9, &format!("svc {n} line {k}"), vec![]))
                    .collect(),
            )
        })
        .collect();
    let batch = batch(&[request(resources)]);

    let one = exporter(server.push_url(), |c| c.shards = 1);
    let requests = one.build_requests(&batch);
    assert_eq!(requests.len(), 1);
    assert_eq!(one.lanes(), 1);

    let four = exporter(server.push_url(), |c| c.shards = 4);
    assert_eq!(four.lanes(), 4);
    let requests = four.build_requests(&batch);
    assert!(
        requests.len() > 1 && requests.len() <= 4,
        "{}",
        requests.len()
    );
    let mut lanes: Vec<usize> = requests.iter().map(|r| four.lane(r)).collect();
    lanes.dedup();
    assert_eq!(lanes.len(), requests.len(), "one request per shard");
    assert_eq!(requests.iter().map(|r| r.entries).sum::<u64>(), 72);
    for r in &requests {
        assert!(matches!(four.send(r).await, SendOutcome::Sent));
    }
    // Every stream arrived whole (in one push), in order.
    let streams = server.streams("t1");
    assert_eq!(streams.len(), 24);
    for s in &streams {
        assert_eq!(s.entries.len(), 3, "{s:?}");
    }
    assert_eq!(server.pushes().len(), requests.len());
    // The same streams land in the same shards the next time.
    let again: Vec<(usize, u64)> = four
        .build_requests(&batch)
        .iter()
        .map(|r| (four.lane(r), r.entries))
        .collect();
    let first: Vec<(usize, u64)> = requests.iter().map(|r| (four.lane(r), r.entries)).collect();
    assert_eq!(again, first);
}

#[test]
fn shards_outside_1_to_64_are_refused() {
    for bad in [0, 65] {
        let mut c = Config::with_url("http://127.0.0.1:3100/loki/api/v1/push");
        c.shards = bad;
        let err = c.validate().expect_err("refused").to_string();
        assert!(err.contains("shards"), "{err}");
    }
}
