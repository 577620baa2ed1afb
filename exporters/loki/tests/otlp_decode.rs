//! The exporter's OTLP logs decoding (`sluice_exporter_loki::otlp`) against prost's
//! `ExportLogsServiceRequest::decode`: for every payload, both accept it or both refuse it, and
//! what they accept holds the same values. The views are compared with prost's request seen
//! through `LogsRequest::from_proto` (the fields the mapping reads), as `Debug` text so that a
//! NaN a mutation makes compares equal to itself.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sluice_exporter_loki::otlp;

/// Both decoders agree on `payload`: what `otlp::decode` accepts prost accepts with the same
/// values, and `otlp::with_request` (which falls back to prost) accepts and refuses exactly
/// what prost does. Returns whether it was accepted.
fn agree(payload: &[u8]) -> bool {
    let old = ExportLogsServiceRequest::decode(payload);
    let expected = old
        .as_ref()
        .ok()
        .map(|old| format!("{:?}", otlp::LogsRequest::from_proto(old)));
    if let Some(fast) = otlp::decode(payload) {
        assert_eq!(
            Some(format!("{fast:?}")),
            expected,
            "the views differ from prost's for {payload:02x?}"
        );
    }
    let new = otlp::with_request(payload, |r| format!("{r:?}"));
    match (&expected, new) {
        (Some(expected), Ok(new)) => {
            assert_eq!(&new, expected, "values differ for {payload:02x?}");
            true
        }
        (None, Err(_)) => false,
        (expected, new) => panic!(
            "prost {} but with_request {} for {payload:02x?}",
            if expected.is_some() {
                "accepts"
            } else {
                "refuses"
            },
            if new.is_ok() { "accepts" } else { "refuses" },
        ),
    }
}

/// `otlp::decode` reads `payload` itself, without falling back to prost.
fn decoded_without_prost(payload: &[u8]) -> bool {
    otlp::decode(payload).is_some()
}

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// Every value kind, nested maps and arrays, strindex fields.
fn all_values() -> Vec<KeyValue> {
    let v = |value| AnyValue { value: Some(value) };
    vec![
        kv("str", s("text ünï <&>")),
        kv("bool", v(Value::BoolValue(true))),
        kv("int", v(Value::IntValue(-42))),
        kv("double", v(Value::DoubleValue(2.5))),
        kv("bytes", v(Value::BytesValue(vec![0, 1, 0xff]))),
        kv("strindex", v(Value::StringValueStrindex(7))),
        kv(
            "array",
            v(Value::ArrayValue(ArrayValue {
                values: vec![s("a"), v(Value::IntValue(1)), AnyValue { value: None }],
            })),
        ),
        kv(
            "map",
            v(Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("inner", s("x")),
                    kv(
                        "deeper",
                        v(Value::KvlistValue(KeyValueList {
                            values: vec![kv("k", v(Value::BoolValue(false)))],
                        })),
                    ),
                ],
            })),
        ),
        KeyValue {
            key: "no value".into(),
            value: None,
            key_strindex: 3,
        },
    ]
}

/// Record attributes of the shape the decoder reads in one step (short ASCII key and string
/// value, or no value), and ones just past it (a value of 126 bytes, so 128 with its header).
fn short_string_attributes() -> Vec<KeyValue> {
    vec![
        kv("attr.key0", s("value-17-0")),
        kv("empty", s("")),
        kv("no value", AnyValue { value: None }),
        kv("", s("empty key")),
        kv("long", s(&"x".repeat(125))),
        kv("longer", s(&"x".repeat(126))),
        kv(&"k".repeat(128), s("v")),
    ]
}

fn request() -> ExportLogsServiceRequest {
    let record = |i: u64| LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + i,
        observed_time_unix_nano: 5 + i,
        severity_number: if i == 2 { 99 } else { 9 },
        severity_text: "INFO".into(),
        body: Some(if i == 1 {
            AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: all_values(),
                })),
            }
        } else {
            s("step 3 finished")
        }),
        attributes: [short_string_attributes(), all_values()].concat(),
        dropped_attributes_count: 2,
        flags: 1,
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        event_name: "event".into(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: Some(Resource {
                    attributes: all_values(),
                    dropped_attributes_count: 1,
                    entity_refs: vec![EntityRef {
                        schema_url: "https://schema".into(),
                        r#type: "service".into(),
                        id_keys: vec!["service.name".into()],
                        description_keys: vec!["d".into()],
                    }],
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "scope".into(),
                        version: "1.0".into(),
                        attributes: all_values(),
                        dropped_attributes_count: 4,
                    }),
                    log_records: (0..3).map(record).collect(),
                    schema_url: "https://scope-schema".into(),
                }],
                schema_url: "https://resource-schema".into(),
            },
            ResourceLogs::default(),
        ],
    }
}

#[test]
fn valid_requests_decode_to_the_same_values() {
    let payload = request().encode_to_vec();
    assert!(agree(&payload));
    assert!(decoded_without_prost(&payload));
    // Concatenated requests: repeated fields append, singular messages merge.
    let twice = [payload.clone(), payload].concat();
    assert!(agree(&twice));
    assert!(decoded_without_prost(&twice));
    assert!(agree(&[]));
}

/// A length-delimited field.
fn field(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag << 3 | 2];
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// A request whose only resource has one attribute encoded as `key_value`.
fn with_resource_attribute(key_value: &[u8]) -> Vec<u8> {
    field(1, &field(1, &field(1, key_value)))
}

#[test]
fn repeated_singular_fields_last_wins_and_messages_merge() {
    let key = |k: &[u8]| field(1, k);
    let value = |any: &[u8]| field(2, any);
    let cases: Vec<Vec<u8>> = vec![
        // The key twice: the last one wins.
        [key(b"a"), key(b"b")].concat(),
        // A string value, then a map: the map replaces it.
        [
            value(&field(1, b"s")),
            value(&field(6, &field(1, &key(b"m")))),
        ]
        .concat(),
        // A map twice inside one AnyValue: the entries merge.
        value(
            &[
                field(6, &field(1, &key(b"x"))),
                field(6, &field(1, &key(b"y"))),
            ]
            .concat(),
        ),
        // An array twice: the items append.
        value(
            &[
                field(5, &field(1, &field(1, b"1"))),
                field(5, &field(1, &field(1, b"2"))),
            ]
            .concat(),
        ),
        // The value message twice: merged (second string replaces the first).
        [value(&field(1, b"first")), value(&field(1, b"second"))].concat(),
        // A bool then an int (varints).
        value(&[vec![2 << 3, 1], vec![3 << 3, 0x7f]].concat()),
        // A double (64-bit) and the strindex (varint).
        value(
            &[
                vec![4 << 3 | 1],
                1.5f64.to_le_bytes().to_vec(),
                vec![8 << 3, 5],
            ]
            .concat(),
        ),
    ];
    for case in cases {
        let payload = with_resource_attribute(&case);
        assert!(agree(&payload), "{case:02x?}");
        assert!(decoded_without_prost(&payload), "{case:02x?}");
    }
}

/// A string of the marker's length whose second byte is patched to 0xff.
const MARKER: &str = "\u{1}MARK\u{1}";

#[test]
fn invalid_utf8_is_refused_wherever_prost_refuses_it() {
    let not_utf8: &[u8] = &[0xff, 0xfe];
    let key = |k: &[u8]| field(1, k);
    // The key: invalid alone, invalid then valid, valid then invalid.
    assert!(!agree(&with_resource_attribute(&key(not_utf8))));
    assert!(!agree(&with_resource_attribute(
        &[key(not_utf8), key(b"ok")].concat()
    )));
    assert!(!agree(&with_resource_attribute(
        &[key(b"ok"), key(not_utf8)].concat()
    )));
    // A string value, also when a later one would replace it.
    assert!(!agree(&with_resource_attribute(&field(
        2,
        &field(1, not_utf8)
    ))));
    assert!(!agree(&with_resource_attribute(&field(
        2,
        &[field(1, not_utf8), field(1, b"ok")].concat()
    ))));
    // Bytes values may hold anything.
    assert!(agree(&with_resource_attribute(&field(
        2,
        &field(7, not_utf8)
    ))));

    // Every string field of a full request: replace a marker of the same length.
    type Set = fn(&mut ExportLogsServiceRequest);
    let strings: Vec<Set> = vec![
        (|r| r.resource_logs[0].schema_url = MARKER.into()),
        (|r| r.resource_logs[0].scope_logs[0].schema_url = MARKER.into()),
        (|r| {
            r.resource_logs[0].scope_logs[0]
                .scope
                .as_mut()
                .unwrap()
                .name = MARKER.into()
        }),
        (|r| {
            r.resource_logs[0].scope_logs[0]
                .scope
                .as_mut()
                .unwrap()
                .version = MARKER.into()
        }),
        (|r| r.resource_logs[0].scope_logs[0].log_records[0].severity_text = MARKER.into()),
        (|r| r.resource_logs[0].scope_logs[0].log_records[1].event_name = MARKER.into()),
        (|r| r.resource_logs[0].scope_logs[0].log_records[2].body = Some(s(MARKER))),
        (|r| r.resource_logs[0].scope_logs[0].log_records[2].attributes[0].key = MARKER.into()),
        (|r| {
            r.resource_logs[0].resource.as_mut().unwrap().entity_refs[0].id_keys[0] = MARKER.into()
        }),
        (|r| r.resource_logs[0].resource.as_mut().unwrap().entity_refs[0].r#type = MARKER.into()),
    ];
    for set in strings {
        let mut req = request();
        set(&mut req);
        let mut payload = req.encode_to_vec();
        assert!(agree(&payload), "valid with the marker");
        let at = payload
            .windows(MARKER.len())
            .position(|w| w == MARKER.as_bytes())
            .expect("marker encoded");
        payload[at + 1] = 0xff;
        assert!(!agree(&payload), "marker made invalid UTF-8");
    }
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let unknown = [
        vec![15 << 3, 0x96, 0x01],                 // varint
        [vec![15 << 3 | 1], vec![0; 8]].concat(),  // 64-bit
        field(15, b"anything \xff"),               // length-delimited
        [vec![15 << 3 | 5], vec![0; 4]].concat(),  // 32-bit
        vec![15 << 3 | 3, 1 << 3, 1, 15 << 3 | 4], // group with a varint inside
    ];
    for (i, u) in unknown.iter().enumerate() {
        assert!(agree(u));
        // Groups are left to prost.
        assert_eq!(decoded_without_prost(u), i < 4, "{u:02x?}");
        assert!(agree(&with_resource_attribute(
            &[u.clone(), field(1, b"k")].concat()
        )));
        assert!(agree(&with_resource_attribute(&field(2, u))));
    }
    // A group closed by the wrong tag, an end-group alone, a bad wire type, tag 0.
    for bad in [
        vec![15 << 3 | 3, 14 << 3 | 4],
        vec![15 << 3 | 4],
        vec![15 << 3 | 6],
        vec![0, 0],
    ] {
        assert!(!agree(&bad));
        assert!(!agree(&with_resource_attribute(&bad)));
    }
}

#[test]
fn nesting_depth_limit_is_prosts() {
    // Maps nested inside a resource attribute (three messages a level), around prost's limit
    // of 100 nested messages; both sides of it are reached.
    let mut outcomes = Vec::new();
    for depth in 25..40 {
        let mut value = field(1, b"leaf");
        for _ in 0..depth {
            value = field(6, &field(1, &[field(1, b"k"), field(2, &value)].concat()));
        }
        let payload = with_resource_attribute(&[field(1, b"top"), field(2, &value)].concat());
        outcomes.push(agree(&payload));
    }
    assert!(outcomes.first() == Some(&true) && outcomes.last() == Some(&false));
}

#[test]
fn nesting_up_to_max_depth_is_read_without_prost() {
    // Three messages a level plus the four around them (request, resource logs, resource,
    // attribute).
    let payload = |depth: u32| {
        let mut value = field(1, b"leaf");
        for _ in 0..depth {
            value = field(6, &field(1, &[field(1, b"k"), field(2, &value)].concat()));
        }
        with_resource_attribute(&[field(1, b"top"), field(2, &value)].concat())
    };
    let deepest = (otlp::MAX_DEPTH - 4) / 3;
    assert!(agree(&payload(deepest)));
    assert!(decoded_without_prost(&payload(deepest)));
    assert!(agree(&payload(deepest + 1)));
    assert!(!decoded_without_prost(&payload(deepest + 1)));
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_payloads_are_accepted_and_refused_alike() {
    let base = request().encode_to_vec();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut accepted, mut refused, mut fast) = (0, 0, 0);
    for _ in 0..20_000 {
        let mut p = base.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(p.len());
            match rng.below(4) {
                0 => p[at] = rng.next() as u8,
                1 => p[at] ^= 1 << rng.below(8),
                2 => p.truncate(at),
                _ => p.insert(at, rng.next() as u8),
            }
            if p.is_empty() {
                break;
            }
        }
        if agree(&p) {
            accepted += 1;
            fast += usize::from(decoded_without_prost(&p));
        } else {
            refused += 1;
        }
    }
    // Both outcomes were exercised, and the views were compared on most accepted payloads.
    assert!(
        accepted > 100 && refused > 100 && fast * 10 > accepted * 9,
        "{accepted} accepted ({fast} without prost), {refused} refused"
    );
}
