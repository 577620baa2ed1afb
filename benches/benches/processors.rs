//! Throughput of each in-line processor on a 512-span trace request (8 attributes a span) and
//! a 1000-record log request, as the pipeline runs it: from the receiver's protobuf bytes
//! through decode, the processor and encode (`Chain::process`). `decode_encode_only` is the
//! floor every decoding processor pays; `memory_limiter` works on the bytes and pays none.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice_core::{Item, Processor, Signal};
use sluice_processors::{Chain, Context, Stage};
use std::hint::black_box;

const SPANS: usize = 512;
const RECORDS: usize = 1000;

fn stage(kind: &str, toml_text: &str) -> Stage {
    let ctx = Context::new(&format!("processors.{kind}"), "bench");
    let parsed = |t: &str| -> toml::Value { toml::from_str(t).expect("bench config") };
    let body = parsed(toml_text);
    use sluice_processors::*;
    let built = match kind {
        "attributes" => attributes::build(&body.try_into().expect("config"), ctx),
        "resource" => resource::build(&body.try_into().expect("config"), ctx),
        "filter" => filter::build(&body.try_into().expect("config"), ctx),
        "redaction" => redaction::build(&body.try_into().expect("config"), ctx),
        "transform" => transform::build(&body.try_into().expect("config"), ctx),
        "tail_sampling" => tail_sampling::build(&body.try_into().expect("config"), ctx),
        "memory_limiter" => memory_limiter::build(&body.try_into().expect("config"), ctx),
        other => panic!("unknown processor {other}"),
    };
    built.expect("bench processor builds")
}

fn chain(kind: &str, toml_text: &str) -> Chain {
    let ctx = Context::new(&format!("processors.{kind}"), "bench");
    Chain::new(vec![(stage(kind, toml_text), ctx)])
}

const ATTRIBUTES: &str = r#"
[[actions]]
key = "deployment.environment"
value = "prod"
action = "upsert"
[[actions]]
key = "attr.key1"
action = "hash"
[[actions]]
key = "attr.key7"
action = "delete"
"#;

const RESOURCE: &str = r#"
[[attributes]]
key = "cloud.region"
value = "eu-west-1"
action = "upsert"
"#;

const FILTER_TRACES: &str = r#"
traces.span = ['name == "awf.step 3"', 'status.code == STATUS_CODE_ERROR and end_time_unix_nano - start_time_unix_nano < 1000']
"#;

const FILTER_LOGS: &str = r#"
logs.log_record = ['severity_number < SEVERITY_NUMBER_INFO', 'IsMatch(body, "^healthcheck")']
"#;

const REDACTION: &str = r#"
allow_all_keys = true
blocked_values = [
  '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}',
  '\b(?:\d[ -]?){12,18}\d\b',
  '\b(?:sk|pk|ghp|xox[bap])[-_][A-Za-z0-9_-]{16,}\b',
]
"#;

const TRANSFORM: &str = r#"
[[trace_statements]]
context = "span"
statements = ['set(attributes["slow"], true) where end_time_unix_nano - start_time_unix_nano > 1000000', 'delete_key(attributes, "attr.key6")']
[[log_statements]]
context = "log"
statements = ['set(attributes["level"], severity_text)']
"#;

const TAIL_SAMPLING: &str = r#"
decision_wait = "100ms"
num_traces = 20000
[[policies]]
name = "errors"
type = "status_code"
status_code = { status_codes = ["ERROR"] }
[[policies]]
name = "rest"
type = "probabilistic"
probabilistic = { sampling_percentage = 10 }
"#;

const MEMORY_LIMITER: &str = r#"
check_interval = "1s"
limit_percentage = 100
spike_limit_percentage = 1
"#;

fn bench(c: &mut Criterion) {
    // Tail sampling decides on the runtime's timer.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();

    let traces = Bytes::from(sluice_benches::traces_request(SPANS, 8, 3).encode_to_vec());
    let mut g = c.benchmark_group("processors_traces");
    g.throughput(Throughput::Elements(SPANS as u64));
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "decode_encode_only",
            "resource",
            "[[attributes]]\nkey = \"none\"\naction = \"delete\"",
        ),
        ("attributes", "attributes", ATTRIBUTES),
        ("resource", "resource", RESOURCE),
        ("filter", "filter", FILTER_TRACES),
        ("redaction", "redaction", REDACTION),
        ("transform", "transform", TRANSFORM),
        ("tail_sampling_intake", "tail_sampling", TAIL_SAMPLING),
        ("memory_limiter", "memory_limiter", MEMORY_LIMITER),
    ];
    for (name, kind, cfg) in &cases {
        let chain = chain(kind, cfg);
        g.bench_function(*name, |b| {
            b.iter(|| {
                let item = Item::new(Signal::Traces, traces.clone(), SPANS as u32);
                black_box(chain.process(item).expect("processed"))
            })
        });
    }
    g.finish();

    let logs = Bytes::from(sluice_benches::logs_request(RECORDS).encode_to_vec());
    let mut g = c.benchmark_group("processors_logs");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for (name, kind, cfg) in [
        ("filter", "filter", FILTER_LOGS),
        ("redaction", "redaction", REDACTION),
        ("transform", "transform", TRANSFORM),
    ] {
        let chain = chain(kind, cfg);
        g.bench_function(name, |b| {
            b.iter(|| {
                let item = Item::new(Signal::Logs, logs.clone(), RECORDS as u32);
                black_box(chain.process(item).expect("processed"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
