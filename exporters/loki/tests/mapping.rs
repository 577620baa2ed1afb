//! Exact OTLP → Loki mapping, compared with what Alloy's `otelcol.exporter.loki` produces.

mod common;

use common::*;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use sluice_exporter_loki::mapping::*;
use sluice_exporter_loki::{Config, LineFormat, LineTooLong, MappingOptions};

const NOW: u64 = 1_700_000_000_000_000_000;

fn opts(edit: impl FnOnce(&mut Config)) -> MappingOptions {
    let mut c = Config::with_url("http://loki:3100/loki/api/v1/push");
    edit(&mut c);
    c.validate().unwrap();
    MappingOptions::from_config(&c)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Maps one resource with one scope and returns (tenant streams, report).
fn map_one(
    opts: &MappingOptions,
    res: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    records: Vec<LogRecord>,
) -> (Vec<TenantStreams>, MappingReport) {
    map_request(
        opts,
        &request(vec![resource_logs(res, Some(("app", "1.2")), records)]),
        NOW,
    )
}

fn only_stream(out: &[TenantStreams]) -> &Stream {
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].streams.len(), 1, "{out:#?}");
    &out[0].streams[0]
}

#[test]
fn default_labels_and_alloy_json_line() {
    let mut r = record(
        1_000,
        9,
        "order placed",
        vec![
            kv("order_id", i(42)),
            ks("user", "ann"),
            kv("ratio", d(0.5)),
        ],
    );
    r.severity_text = "INFO".into();
    r.trace_id = TRACE_ID.to_vec();
    r.span_id = SPAN_ID.to_vec();
    r.flags = 1;
    let (out, report) = map_one(&opts(|_| {}), checkout_resource(), vec![r]);
    let stream = only_stream(&out);
    assert_eq!(out[0].tenant, None);
    assert_eq!(
        stream.labels,
        labels(&[
            ("exporter", "OTLP"),
            ("instance", "pod-1"),
            ("job", "shop/checkout"),
            ("level", "INFO"),
            ("service_name", "checkout"),
        ])
    );
    assert_eq!(
        stream.label_string,
        r#"{exporter="OTLP", instance="pod-1", job="shop/checkout", level="INFO", service_name="checkout"}"#
    );
    assert_eq!(
        stream.entries[0].line,
        format!(
            r#"{{"body":"order placed","traceid":"{TRACE_HEX}","spanid":"{SPAN_HEX}","severity":"INFO","flags":1,"attributes":{{"order_id":42,"ratio":0.5,"user":"ann"}},"resources":{{"host.name":"h1","service.instance.id":"pod-1","service.name":"checkout","service.namespace":"shop"}},"instrumentation_scope":{{"name":"app","version":"1.2"}}}}"#
        )
    );
    assert_eq!(stream.entries[0].timestamp_ns, 1_000);
    assert!(stream.entries[0].structured_metadata.is_empty());
    assert_eq!(report.mapped, 1);
    assert!(report.dropped.is_empty() && report.adjusted.is_empty());
}

#[test]
fn level_comes_from_severity_or_the_level_attribute() {
    let records = vec![
        record(1, 17, "boom", vec![ks("level", "warn")]),
        record(2, 0, "quiet", vec![ks("level", "debug")]),
        record(3, 23, "fatal", vec![]),
    ];
    let (out, _) = map_one(&opts(|_| {}), vec![ks("service.name", "api")], records);
    let streams = &out[0].streams;
    let summary: Vec<(String, &str)> = streams
        .iter()
        .map(|s| (s.label_string.clone(), s.entries[0].line.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                r#"{exporter="OTLP", job="api", level="FATAL3", service_name="api"}"#.into(),
                r#"{"body":"fatal","resources":{"service.name":"api"},"instrumentation_scope":{"name":"app","version":"1.2"}}"#
            ),
            (
                r#"{exporter="OTLP", job="api", level="warn", service_name="api"}"#.into(),
                r#"{"body":"boom","resources":{"service.name":"api"},"instrumentation_scope":{"name":"app","version":"1.2"}}"#
            ),
            (
                // No severity: the level attribute is not promoted and stays in the line.
                r#"{exporter="OTLP", job="api", service_name="api"}"#.into(),
                r#"{"body":"quiet","attributes":{"level":"debug"},"resources":{"service.name":"api"},"instrumentation_scope":{"name":"app","version":"1.2"}}"#
            ),
        ]
    );
}

#[test]
fn logfmt_line_like_alloy() {
    let mut r = record(
        1,
        9,
        "user logged in",
        vec![
            ks("user", "ann"),
            kv("count", i(3)),
            kv("ratio", d(2.75)),
            kv("big", d(1e6)),
            ks("note", "two words"),
        ],
    );
    r.severity_text = "INFO".into();
    r.trace_id = TRACE_ID.to_vec();
    r.span_id = SPAN_ID.to_vec();
    let o = opts(|c| c.line_format = LineFormat::Logfmt);
    let (out, _) = map_one(&o, vec![ks("service.name", "checkout")], vec![r]);
    assert_eq!(
        only_stream(&out).entries[0].line,
        format!(
            "user= logged= in= traceID={TRACE_HEX} spanID={SPAN_HEX} severity=INFO attribute_user=ann \
             attribute_count=3 attribute_ratio=2.75 attribute_big=1e+06 attribute_note=\"two words\" \
             resource_service.name=checkout instrumentation_scope_name=app instrumentation_scope_version=1.2"
        )
    );

    // A map body: its keys are flattened and `traceID` in it is replaced.
    let mut r = record(1, 0, "", vec![]);
    r.body = Some(map(vec![
        ks("msg", "hi"),
        ks("traceID", "old"),
        kv("ctx", map(vec![kv("n", i(1))])),
    ]));
    r.trace_id = TRACE_ID.to_vec();
    let (out, _) = map_one(&o, vec![], vec![r]);
    assert_eq!(
        only_stream(&out).entries[0].line,
        format!(
            "msg=hi traceID={TRACE_HEX} ctx_n=1 instrumentation_scope_name=app instrumentation_scope_version=1.2"
        )
    );
}

#[test]
fn format_hint_raw_and_invalid() {
    let mut map_body = record(1, 0, "", vec![ks("loki.format", "raw")]);
    map_body.body = Some(map(vec![kv("a", i(1)), ks("b", "<x>")]));
    let records = vec![
        record(
            2,
            0,
            "plain text",
            vec![ks("loki.format", "raw"), ks("k", "v")],
        ),
        map_body,
        record(3, 0, "x", vec![ks("loki.format", "yaml")]),
    ];
    let (out, report) = map_one(&opts(|_| {}), vec![], records);
    let lines: Vec<&str> = only_stream(&out)
        .entries
        .iter()
        .map(|e| e.line.as_str())
        .collect();
    assert_eq!(lines, vec![r#"{"a":1,"b":"\u003cx\u003e"}"#, "plain text"]);
    assert_eq!(report.dropped.get(DROP_INVALID_FORMAT), Some(&1));
}

#[test]
fn hints_promote_labels_and_leave_the_line() {
    let res = vec![
        ks("service.name", "api"),
        ks("host.name", "h1"),
        ks("k8s.pod.name", "p1"),
        ks("loki.resource.labels", "host.name, k8s.pod.name"),
    ];
    let r = record(
        1,
        0,
        "hello",
        vec![
            kv(
                "loki.attribute.labels",
                arr(vec![s("http.method"), s("nested.inner")]),
            ),
            ks("http.method", "GET"),
            kv("nested", map(vec![ks("inner", "v"), ks("other", "o")])),
            ks("user", "ann"),
        ],
    );
    let (out, _) = map_one(&opts(|_| {}), res, vec![r]);
    let stream = only_stream(&out);
    assert_eq!(
        stream.labels,
        labels(&[
            ("exporter", "OTLP"),
            ("host_name", "h1"),
            ("http_method", "GET"),
            ("job", "api"),
            ("k8s_pod_name", "p1"),
            ("nested_inner", "v"),
            ("service_name", "api"),
        ])
    );
    // `nested` stays: only an attribute whose key equals a promoted name leaves the line.
    assert_eq!(
        stream.entries[0].line,
        r#"{"body":"hello","attributes":{"nested":{"inner":"v","other":"o"},"user":"ann"},"resources":{"service.name":"api"},"instrumentation_scope":{"name":"app","version":"1.2"}}"#
    );
}

#[test]
fn configured_promotion_and_resource_hint_on_record() {
    let o = opts(|c| {
        c.resource_labels = vec!["deployment.environment".into()];
        c.attribute_labels = vec!["component".into()];
    });
    let res = vec![ks("deployment.environment", "prod"), ks("region", "eu")];
    let r = record(
        1,
        0,
        "x",
        vec![ks("component", "db"), ks("loki.resource.labels", "region")],
    );
    let (out, _) = map_one(&o, res, vec![r]);
    let stream = only_stream(&out);
    assert_eq!(
        stream.labels,
        labels(&[
            ("component", "db"),
            ("deployment_environment", "prod"),
            ("exporter", "OTLP"),
            ("region", "eu"),
        ])
    );
    assert_eq!(
        stream.entries[0].line,
        r#"{"body":"x","instrumentation_scope":{"name":"app","version":"1.2"}}"#
    );
}

#[test]
fn tenant_hint_splits_tenants_and_becomes_a_label() {
    let records = vec![
        record(
            1,
            0,
            "a",
            vec![ks("loki.tenant", "tenant.id"), ks("tenant.id", "acme")],
        ),
        record(
            2,
            0,
            "b",
            vec![ks("loki.tenant", "tenant.id"), ks("tenant.id", "globex")],
        ),
        record(3, 0, "c", vec![]),
    ];
    let (out, _) = map_one(&opts(|_| {}), vec![], records);
    let tenants: Vec<Option<&str>> = out.iter().map(|t| t.tenant.as_deref()).collect();
    assert_eq!(tenants, vec![None, Some("acme"), Some("globex")]);
    assert_eq!(
        out[1].streams[0].labels,
        labels(&[("exporter", "OTLP"), ("tenant_id", "acme")])
    );
    assert_eq!(
        out[1].streams[0].entries[0].line,
        r#"{"body":"a","instrumentation_scope":{"name":"app","version":"1.2"}}"#
    );
}

#[test]
fn structured_metadata_moves_ids_and_attributes_out_of_the_line() {
    let o = opts(|c| {
        c.structured_metadata = vec![
            "trace_id".into(),
            "span_id".into(),
            "execution_id".into(),
            "k8s.namespace.name".into(),
            "absent".into(),
        ]
    });
    let mut r = record(
        1,
        9,
        "step done",
        vec![ks("execution_id", "ex-7"), ks("step", "build")],
    );
    r.trace_id = TRACE_ID.to_vec();
    r.span_id = SPAN_ID.to_vec();
    let (out, _) = map_one(
        &o,
        vec![ks("service.name", "awf"), ks("k8s.namespace.name", "ci")],
        vec![r],
    );
    let e = &only_stream(&out).entries[0];
    assert_eq!(
        e.structured_metadata,
        labels(&[
            ("trace_id", TRACE_HEX),
            ("span_id", SPAN_HEX),
            ("execution_id", "ex-7"),
            ("k8s_namespace_name", "ci"),
        ])
    );
    assert_eq!(
        e.line,
        r#"{"body":"step done","attributes":{"step":"build"},"resources":{"service.name":"awf"},"instrumentation_scope":{"name":"app","version":"1.2"}}"#
    );
}

#[test]
fn label_count_limit_keeps_defaults_and_leaves_dropped_in_line() {
    let o = opts(|c| {
        c.max_label_names = 4;
        c.attribute_labels = vec!["a".into(), "b".into()];
    });
    let r = record(1, 13, "x", vec![ks("a", "1"), ks("b", "2")]);
    let (out, report) = map_one(
        &o,
        vec![ks("service.name", "api"), ks("service.instance.id", "i1")],
        vec![r],
    );
    let stream = only_stream(&out);
    // service_name is not counted, as in Loki.
    assert_eq!(
        stream.labels,
        labels(&[
            ("exporter", "OTLP"),
            ("instance", "i1"),
            ("job", "api"),
            ("level", "WARN"),
            ("service_name", "api"),
        ])
    );
    assert_eq!(report.adjusted.get(ADJ_MAX_LABEL_NAMES), Some(&2));
    assert!(
        stream.entries[0]
            .line
            .contains(r#""attributes":{"a":"1","b":"2"}"#),
        "{}",
        stream.entries[0].line
    );
}

#[test]
fn label_names_are_sanitized_and_values_limited() {
    let o = opts(|c| {
        c.attribute_labels = vec![
            "0abc".into(),
            "_x".into(),
            "__private".into(),
            "long".into(),
            "empty".into(),
        ];
        c.max_label_value_length = 8;
        c.default_labels_enabled.exporter = false;
    });
    let r = record(
        1,
        0,
        "x",
        vec![
            ks("0abc", "d"),
            ks("_x", "u"),
            ks("__private", "p"),
            ks("long", "abcdefghijkl"),
            ks("empty", ""),
        ],
    );
    let (out, report) = map_one(&o, vec![], vec![r]);
    let stream = only_stream(&out);
    assert_eq!(
        stream.labels,
        labels(&[("key_0abc", "d"), ("key_x", "u"), ("long", "abcdefgh")])
    );
    assert_eq!(report.adjusted.get(ADJ_RESERVED_LABEL_NAME), Some(&1));
    assert_eq!(report.adjusted.get(ADJ_LABEL_VALUE_TRUNCATED), Some(&1));
    // Dropped and truncated labels keep their attribute; empty ones leave like Alloy's.
    assert_eq!(
        stream.entries[0].line,
        r#"{"body":"x","attributes":{"__private":"p","long":"abcdefghijkl"},"instrumentation_scope":{"name":"app","version":"1.2"}}"#
    );
}

#[test]
fn no_labels_at_all_falls_back_to_unknown_service() {
    let o = opts(|c| {
        c.default_labels_enabled.exporter = false;
    });
    let (out, _) = map_one(&o, vec![], vec![record(1, 0, "x", vec![])]);
    assert_eq!(
        only_stream(&out).label_string,
        r#"{service_name="unknown_service"}"#
    );
}

#[test]
fn label_values_are_escaped_and_unicode_kept() {
    let o = opts(|c| c.attribute_labels = vec!["city".into(), "q".into()]);
    let r = record(
        1,
        0,
        "こんにちは 🌍",
        vec![ks("city", "Zürich"), ks("q", "a\"b\\c\nd")],
    );
    let (out, _) = map_one(&o, vec![], vec![r]);
    let stream = only_stream(&out);
    assert_eq!(
        stream.label_string,
        "{city=\"Zürich\", exporter=\"OTLP\", q=\"a\\\"b\\\\c\\nd\"}"
    );
    assert_eq!(
        stream.entries[0].line,
        r#"{"body":"こんにちは 🌍","instrumentation_scope":{"name":"app","version":"1.2"}}"#
    );
}

#[test]
fn unsupported_json_values_drop_the_record() {
    let (out, report) = map_one(
        &opts(|_| {}),
        vec![],
        vec![
            record(1, 0, "bad", vec![kv("x", d(f64::NAN))]),
            record(2, 0, "good", vec![kv("x", d(1.0))]),
        ],
    );
    assert_eq!(only_stream(&out).entries.len(), 1);
    assert_eq!(report.dropped.get(DROP_UNSUPPORTED_VALUE), Some(&1));
}

#[test]
fn long_lines_are_truncated_or_dropped_and_counted() {
    let long = "é".repeat(600); // 1200 bytes
    let o = opts(|c| {
        c.max_line_size = sluice_core::ByteSize(1001);
        c.line_format = LineFormat::Raw;
    });
    let (out, report) = map_one(&o, vec![], vec![record(1, 0, &long, vec![])]);
    let line = &only_stream(&out).entries[0].line;
    assert_eq!(line.len(), 1000, "cut on a character boundary");
    assert!(long.starts_with(line.as_str()));
    assert_eq!(report.adjusted.get(ADJ_LINE_TRUNCATED), Some(&1));

    let drop = opts(|c| {
        c.max_line_size = sluice_core::ByteSize(1001);
        c.line_too_long = LineTooLong::Drop;
    });
    let (out, report) = map_one(
        &drop,
        vec![],
        vec![record(1, 0, &long, vec![]), record(2, 0, "short", vec![])],
    );
    assert_eq!(only_stream(&out).entries.len(), 1);
    assert_eq!(report.dropped.get(DROP_LINE_TOO_LONG), Some(&1));
}

#[test]
fn timestamps_fall_back_to_observed_then_now_and_sort_stably() {
    let mut observed = record(0, 0, "observed", vec![]);
    observed.observed_time_unix_nano = 500;
    let records = vec![
        record(300, 0, "c", vec![]),
        record(100, 0, "a1", vec![]),
        observed,
        record(0, 0, "now", vec![]),
        record(100, 0, "a2", vec![]),
    ];
    let (out, _) = map_one(&opts(|_| {}), vec![], records);
    let got: Vec<(u64, &str)> = only_stream(&out)
        .entries
        .iter()
        .map(|e| (e.timestamp_ns, e.line.as_str()))
        .collect();
    let body = |b: &str| {
        format!(r#"{{"body":"{b}","instrumentation_scope":{{"name":"app","version":"1.2"}}}}"#)
    };
    let expected = [
        (100, body("a1")),
        (100, body("a2")),
        (300, body("c")),
        (500, body("observed")),
        (NOW, body("now")),
    ];
    let expected: Vec<(u64, &str)> = expected.iter().map(|(t, l)| (*t, l.as_str())).collect();
    assert_eq!(got, expected);
}

#[test]
fn external_labels_are_added_under_the_streams_own_labels() {
    let o = opts(|c| {
        c.external_labels = [("cluster", "eu-1"), ("job", "ignored")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    });
    let r = record(1_000, 9, "hello", vec![]);
    let (out, _) = map_one(&o, checkout_resource(), vec![r]);
    let stream = only_stream(&out);
    let label = |n: &str| {
        stream
            .labels
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(label("cluster"), Some("eu-1"));
    // The stream's own `job` wins over the external one, as in Alloy's loki.write.
    assert_eq!(label("job"), Some("shop/checkout"));
    assert!(stream.label_string.contains(r#"cluster="eu-1""#));
    let names: Vec<&str> = stream.labels.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

/// Records of one resource share computed stream labels where their own attributes cannot
/// change them; every record must still map exactly as it does alone, with the same counters.
#[test]
fn records_of_one_resource_map_as_each_would_alone() {
    maps_as_alone(opts(|c| {
        c.max_label_value_length = 8;
        c.external_labels.insert("cluster".into(), "eu".into());
    }));
    // A resource attribute moved to structured metadata leaves the line per record.
    maps_as_alone(opts(|c| {
        c.max_label_value_length = 8;
        c.structured_metadata = vec!["service.instance.id".into()];
    }));
    maps_as_alone(opts(|c| {
        c.max_label_value_length = 8;
        c.line_format = LineFormat::Logfmt;
    }));
}

fn maps_as_alone(o: MappingOptions) {
    let res = vec![
        ks("service.name", "checkout"),
        ks("service.instance.id", "a-very-long-instance-id"),
        ks("loki.resource.labels", "host.name"),
        ks("host.name", "node-1"),
    ];
    let mut with_level = record(5, 9, "own level", vec![ks("level", "warn")]);
    with_level.severity_text = "INFO".into();
    let records = vec![
        record(1, 9, "info a", vec![ks("user", "ann")]),
        record(2, 17, "error", vec![]),
        record(3, 9, "info b", vec![kv("n", i(1))]),
        record(4, 0, "no severity", vec![]),
        with_level,
        record(
            6,
            9,
            "hinted",
            vec![ks("loki.attribute.labels", "user"), ks("user", "bob")],
        ),
        record(7, 17, "error again", vec![ks("user", "cy")]),
        record(8, 0, "no severity again", vec![]),
    ];
    let (together, together_report) = map_one(&o, res.clone(), records.clone());

    let mut alone: std::collections::BTreeMap<String, Stream> = Default::default();
    let mut alone_report = MappingReport::default();
    for r in records {
        let (out, report) = map_one(&o, res.clone(), vec![r]);
        for tenant in out {
            for stream in tenant.streams {
                alone
                    .entry(stream.label_string.clone())
                    .and_modify(|s| s.entries.extend(stream.entries.clone()))
                    .or_insert(stream);
            }
        }
        alone_report.mapped += report.mapped;
        for (k, n) in report.adjusted {
            *alone_report.adjusted.entry(k).or_default() += n;
        }
        for (k, n) in report.dropped {
            *alone_report.dropped.entry(k).or_default() += n;
        }
    }
    let together: Vec<Stream> = together.into_iter().flat_map(|t| t.streams).collect();
    let alone: Vec<Stream> = alone.into_values().collect();
    assert_eq!(together, alone);
    assert_eq!(together_report, alone_report);
    // The case is not trivial: several streams, and the long instance id truncated every time.
    assert!(together.len() >= 4, "{together:#?}");
    assert_eq!(
        together_report.adjusted.get(ADJ_LABEL_VALUE_TRUNCATED),
        Some(&8)
    );
}
