//! Alloy configuration syntax: every supported component, from documentation-style examples,
//! loads into the same config as its hand-written Sluice TOML (and `convert`'s output loads
//! into it too); syntax and mapping errors name the file, line, column, Alloy key and reason.

use sluice::config::{Config, parse};
use std::path::Path;

fn env_none(_: &str) -> Option<String> {
    None
}

fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Config {
    parse(Path::new("test.alloy"), text, env).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `alloy` and `toml` load into the same config, and so does `sluice convert`'s output.
fn assert_equivalent(alloy: &str, toml: &str) {
    let from_alloy = load(alloy, &env_none);
    let from_toml =
        parse(Path::new("test.toml"), toml, &env_none).unwrap_or_else(|e| panic!("{e}"));
    let source = from_toml.source.clone();
    let same = |mut c: Config| {
        c.source = source.clone();
        c.text = String::new();
        c
    };
    let converted = sluice::alloy::convert(Path::new("test.alloy"), alloy, &env_none)
        .unwrap()
        .toml;
    let from_converted = parse(Path::new("converted.toml"), &converted, &env_none)
        .unwrap_or_else(|e| panic!("{e}\n{converted}"));
    let expected = same(from_toml);
    assert_eq!(
        same(from_alloy),
        expected,
        "Alloy:\n{alloy}\nconverted:\n{converted}"
    );
    assert_eq!(same(from_converted), expected, "converted:\n{converted}");
}

fn err(text: &str) -> String {
    parse(Path::new("test.alloy"), text, &env_none)
        .expect_err("config must be refused")
        .to_string()
}

const REFERENCE_CONFIG: &str = include_str!("../../configs/alloy-config.river");

#[test]
fn prd_file_maps_to_three_pipelines() {
    assert_equivalent(
        REFERENCE_CONFIG,
        r#"
[receivers.default]
type = "otlp"
[receivers.default.grpc]
endpoint = "0.0.0.0:4317"
[receivers.default.http]
endpoint = "0.0.0.0:4318"

[processors.default]
type = "batch"

[exporters.mimir]
type = "prometheus_remote_write"
url = "http://mimir:9009/api/v1/push"

[exporters.tempo]
type = "otlp"
endpoint = "http://tempo:4317"

[exporters.default]
type = "loki"
url = "http://loki:3100/loki/api/v1/push"

[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["default"]
processors = ["default"]
exporters = ["tempo"]

[[pipelines]]
name = "metrics"
signals = ["metrics"]
receivers = ["default"]
processors = ["default"]
exporters = ["mimir"]

[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["default"]
processors = ["default"]
exporters = ["default"]
"#,
    );
}

#[test]
fn prd_file_is_detected_by_content_without_its_extension() {
    let c = parse(Path::new("/etc/alloy/config"), REFERENCE_CONFIG, &env_none)
        .expect("Alloy by content");
    assert_eq!(c.pipelines.len(), 3);
    assert_eq!(c.text, REFERENCE_CONFIG);
    // And a TOML file without an extension is still TOML.
    let toml = "[exporters.x]\ntype = \"debug\"\n";
    assert!(!sluice_alloy::is_alloy(Path::new("config"), toml));
}

#[test]
fn convert_output_names_the_source_of_every_section() {
    let c = sluice::alloy::convert(Path::new("alloy-config.river"), REFERENCE_CONFIG, &env_none)
        .unwrap();
    for needle in [
        "# otelcol.receiver.otlp \"default\" (line 2, column 1)\n[receivers.default]",
        "# otelcol.processor.batch \"default\" (line 16, column 1)\n[processors.default]",
        "# prometheus.remote_write \"mimir\" > endpoint (line 29, column 3)\n[exporters.mimir]",
        "# otelcol.exporter.otlp \"tempo\" (line 34, column 1)\n[exporters.tempo]",
        "# loki.write \"default\" > endpoint (line 48, column 3)\n[exporters.default]",
        "# Routes from line 11: traces: receivers.default → otelcol.processor.batch.default → exporters.tempo\n[[pipelines]]",
    ] {
        assert!(c.toml.contains(needle), "missing {needle:?} in\n{}", c.toml);
    }
    assert_eq!(c.origins.len(), c.toml.lines().count());
}

/// One documentation-style example per supported component, with the Sluice TOML it means.
#[test]
fn component_examples_match_their_toml() {
    let examples: &[(&str, &str, &str)] = &[
        (
            "otelcol.receiver.otlp",
            r#"
otelcol.receiver.otlp "default" {
  grpc {
    endpoint          = "127.0.0.1:24317"
    max_recv_msg_size = "8MiB"
  }
  http {
    endpoint              = "127.0.0.1:24318"
    max_request_body_size = "10MiB"
  }
  output {
    traces  = [otelcol.exporter.debug.out.input]
    metrics = [otelcol.exporter.debug.out.input]
    logs    = [otelcol.exporter.debug.out.input]
  }
}
otelcol.exporter.debug "out" {}
"#,
            r#"
[receivers.default]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317", max_recv_msg_size = "8MiB" }
http = { endpoint = "127.0.0.1:24318", max_request_body_size = "10MiB" }
[exporters.out]
type = "debug"
[[pipelines]]
name = "traces_metrics_logs"
signals = ["traces", "metrics", "logs"]
receivers = ["default"]
exporters = ["out"]
"#,
        ),
        (
            "otelcol.processor.batch",
            r#"
otelcol.receiver.otlp "in" {
  grpc { endpoint = "127.0.0.1:24317" }
  output { traces = [otelcol.processor.batch.default.input] }
}
otelcol.processor.batch "default" {
  timeout             = "500ms"
  send_batch_size     = 1000
  send_batch_max_size = 2000
  output { traces = [otelcol.exporter.debug.out.input] }
}
otelcol.exporter.debug "out" {}
"#,
            r#"
[receivers.in]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317" }
[processors.default]
type = "batch"
timeout = "500ms"
send_batch_size = 1000
send_batch_max_size = 2000
[exporters.out]
type = "debug"
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["in"]
processors = ["default"]
exporters = ["out"]
"#,
        ),
        (
            "otelcol.processor.memory_limiter → memory_limiter, before the batch setting",
            r#"
otelcol.receiver.otlp "in" {
  http {}
  output { logs = [otelcol.processor.memory_limiter.default.input] }
}
otelcol.processor.memory_limiter "default" {
  check_interval         = "1s"
  limit_percentage       = 80
  spike_limit_percentage = 20
  output { logs = [otelcol.processor.batch.default.input] }
}
otelcol.processor.batch "default" {
  output { logs = [otelcol.exporter.debug.out.input] }
}
otelcol.exporter.debug "out" {
  verbosity = "detailed"
}
"#,
            r#"
[receivers.in]
type = "otlp"
http = {}
[processors.default]
type = "memory_limiter"
check_interval = "1s"
limit_percentage = 80
spike_limit_percentage = 20
[processors.default_2]
type = "batch"
[exporters.out]
type = "debug"
verbosity = "detailed"
[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["in"]
processors = ["default", "default_2"]
exporters = ["out"]
"#,
        ),
        (
            "otelcol.processor.{attributes,filter,transform,tail_sampling} → in-line processors, in route order",
            r#"
otelcol.receiver.otlp "in" {
  grpc { endpoint = "127.0.0.1:24317" }
  output { traces = [otelcol.processor.filter.noise.input] }
}
otelcol.processor.filter "noise" {
  error_mode = "ignore"
  traces {
    span = ["name == \"GET /health\"", "status.code != STATUS_CODE_ERROR and end_time_unix_nano - start_time_unix_nano < 1000000"]
  }
  output { traces = [otelcol.processor.attributes.tidy.input] }
}
otelcol.processor.attributes "tidy" {
  action {
    key    = "user.id"
    action = "hash"
  }
  action {
    key    = "env"
    value  = "prod"
    action = "upsert"
  }
  output { traces = [otelcol.processor.transform.t.input] }
}
otelcol.processor.transform "t" {
  trace_statements {
    context    = "span"
    statements = [`set(attributes["slow"], true) where end_time_unix_nano - start_time_unix_nano > 1000000000`]
  }
  output { traces = [otelcol.processor.tail_sampling.ts.input] }
}
otelcol.processor.tail_sampling "ts" {
  decision_wait = "10s"
  num_traces    = 1000
  policy {
    name = "errors"
    type = "status_code"
    status_code { status_codes = ["ERROR"] }
  }
  policy {
    name = "rest"
    type = "probabilistic"
    probabilistic { sampling_percentage = 10 }
  }
  output { traces = [otelcol.exporter.debug.out.input] }
}
otelcol.exporter.debug "out" {}
"#,
            r#"
[receivers.in]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317" }
[processors.noise]
type = "filter"
error_mode = "ignore"
traces.span = ['name == "GET /health"', 'status.code != STATUS_CODE_ERROR and end_time_unix_nano - start_time_unix_nano < 1000000']
[processors.tidy]
type = "attributes"
actions = [{ key = "user.id", action = "hash" }, { key = "env", value = "prod", action = "upsert" }]
[processors.t]
type = "transform"
trace_statements = [{ context = "span", statements = ['set(attributes["slow"], true) where end_time_unix_nano - start_time_unix_nano > 1000000000'] }]
[processors.ts]
type = "tail_sampling"
decision_wait = "10s"
num_traces = 1000
policies = [
  { name = "errors", type = "status_code", status_code = { status_codes = ["ERROR"] } },
  { name = "rest", type = "probabilistic", probabilistic = { sampling_percentage = 10.0 } },
]
[exporters.out]
type = "debug"
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["in"]
processors = ["noise", "tidy", "t", "ts"]
exporters = ["out"]
"#,
        ),
        (
            "otelcol.exporter.otlp (plaintext, headers, retries, sending_queue)",
            r#"
otelcol.receiver.otlp "in" {
  grpc { endpoint = "127.0.0.1:24317" }
  output { traces = [otelcol.exporter.otlp.tempo.input] }
}
otelcol.exporter.otlp "tempo" {
  timeout = "10s"
  client {
    endpoint    = "tempo:4317"
    compression = "none"
    headers     = { "X-Scope-OrgID" = "team-a" }
    tls {
      insecure = true
    }
  }
  retry_on_failure {
    initial_interval = "1s"
    max_interval     = "20s"
    max_elapsed_time = "10m"
    multiplier       = 2
  }
  sending_queue {
    num_consumers = 4
    queue_size    = 1000
  }
}
"#,
            r#"
[receivers.in]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317" }
[exporters.tempo]
type = "otlp"
endpoint = "http://tempo:4317"
compression = "none"
timeout = "10s"
headers = { "X-Scope-OrgID" = "team-a" }
retry = { initial_interval = "1s", max_interval = "20s", max_age = "10m", multiplier = 2.0 }
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["in"]
exporters = ["tempo"]
"#,
        ),
        (
            "otelcol.exporter.otlp with TLS (the default) and otelcol.auth.bearer",
            r#"
otelcol.receiver.otlp "in" {
  grpc { endpoint = "127.0.0.1:24317" }
  output { traces = [otelcol.exporter.otlp.cloud.input] }
}
otelcol.auth.bearer "token" {
  token = "s3cr3t"
}
otelcol.exporter.otlp "cloud" {
  client {
    endpoint = "otlp.example.com:443"
    auth     = otelcol.auth.bearer.token.handler
    tls {
      server_name          = "otlp.example.com"
      insecure_skip_verify = false
    }
  }
}
"#,
            r#"
[receivers.in]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317" }
[exporters.cloud]
type = "otlp"
endpoint = "https://otlp.example.com:443"
headers = { Authorization = "Bearer s3cr3t" }
tls = { server_name = "otlp.example.com", insecure_skip_verify = false }
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["in"]
exporters = ["cloud"]
"#,
        ),
        (
            "otelcol.exporter.otlphttp with otelcol.auth.basic",
            r#"
otelcol.receiver.otlp "in" {
  http { endpoint = "127.0.0.1:24318" }
  output { logs = [otelcol.exporter.otlphttp.gw.input] }
}
otelcol.auth.basic "creds" {
  username = "user"
  password = "pass"
}
otelcol.exporter.otlphttp "gw" {
  encoding = "proto"
  client {
    endpoint = "http://gateway:4318"
    auth     = otelcol.auth.basic.creds.handler
  }
}
"#,
            r#"
[receivers.in]
type = "otlp"
http = { endpoint = "127.0.0.1:24318" }
[exporters.gw]
type = "otlp"
protocol = "http"
endpoint = "http://gateway:4318"
headers = { Authorization = "Basic dXNlcjpwYXNz" }
[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["in"]
exporters = ["gw"]
"#,
        ),
        (
            "otelcol.exporter.prometheus + prometheus.remote_write",
            r#"
otelcol.receiver.otlp "in" {
  grpc { endpoint = "127.0.0.1:24317" }
  output { metrics = [otelcol.exporter.prometheus.default.input] }
}
otelcol.exporter.prometheus "default" {
  forward_to           = [prometheus.remote_write.mimir.receiver]
  include_target_info  = false
  add_metric_suffixes  = false
}
prometheus.remote_write "mimir" {
  external_labels = { cluster = "eu-1" }
  endpoint {
    url            = "http://mimir:9009/api/v1/push"
    remote_timeout = "15s"
    headers        = { "X-Scope-OrgID" = "team-a" }
    send_native_histograms = true
    basic_auth {
      username = "u"
      password = "p"
    }
    queue_config {
      max_shards          = 8
      min_backoff         = "100ms"
      max_backoff         = "10s"
      capacity            = 10000
      max_samples_per_send = 2000
    }
    metadata_config {
      send = false
    }
  }
}
"#,
            r#"
[receivers.in]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317" }
[exporters.mimir]
type = "prometheus_remote_write"
url = "http://mimir:9009/api/v1/push"
timeout = "15s"
tenant_id = "team-a"
send_native_histograms = true
basic_auth = { username = "u", password = "p" }
shards = 8
retry = { initial_interval = "100ms", max_interval = "10s" }
send_metadata = false
external_labels = { cluster = "eu-1" }
include_target_info = false
add_metric_suffixes = false
[[pipelines]]
name = "metrics"
signals = ["metrics"]
receivers = ["in"]
exporters = ["mimir"]
"#,
        ),
        (
            "otelcol.exporter.loki + loki.write",
            r#"
otelcol.receiver.otlp "in" {
  http { endpoint = "127.0.0.1:24318" }
  output { logs = [otelcol.exporter.loki.default.input] }
}
otelcol.exporter.loki "default" {
  forward_to = [loki.write.local.receiver]
}
loki.write "local" {
  external_labels = { env = "prod" }
  endpoint {
    url            = "http://loki:3100/loki/api/v1/push"
    tenant_id      = "team-a"
    remote_timeout = "5s"
    bearer_token   = "tok"
  }
}
"#,
            r#"
[receivers.in]
type = "otlp"
http = { endpoint = "127.0.0.1:24318" }
[exporters.local]
type = "loki"
url = "http://loki:3100/loki/api/v1/push"
tenant_id = "team-a"
timeout = "5s"
bearer_token = "tok"
external_labels = { env = "prod" }
[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["in"]
exporters = ["local"]
"#,
        ),
        (
            "fan-out, two receivers, logging block",
            r#"
logging {
  level  = "debug"
  format = "json"
}
otelcol.receiver.otlp "a" {
  grpc { endpoint = "127.0.0.1:24317" }
  output { traces = [otelcol.exporter.otlp.one.input, otelcol.exporter.otlp.two.input] }
}
otelcol.receiver.otlp "b" {
  grpc { endpoint = "127.0.0.1:24327" }
  output { traces = [otelcol.exporter.otlp.one.input, otelcol.exporter.otlp.two.input] }
}
otelcol.exporter.otlp "one" {
  client { endpoint = "http://one:4317" }
}
otelcol.exporter.otlp "two" {
  client { endpoint = "http://two:4317" }
}
"#,
            r#"
[receivers.a]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317" }
[receivers.b]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24327" }
[exporters.one]
type = "otlp"
endpoint = "http://one:4317"
[exporters.two]
type = "otlp"
endpoint = "http://two:4317"
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["a", "b"]
exporters = ["one", "two"]
"#,
        ),
        (
            "prometheus.scrape",
            r#"
prometheus.scrape "node" {
  targets = [
    {"__address__" = "127.0.0.1:9100", "env" = "prod"},
    {"__address__" = "127.0.0.1:9090"},
  ]
  forward_to      = [prometheus.remote_write.mimir.receiver]
  scrape_interval = "15s"
  scrape_timeout  = "5s"
  metrics_path    = "/metrics"
  honor_labels    = true
}
prometheus.scrape "defaults" {
  targets    = [{"__address__" = "127.0.0.1:9091"}]
  forward_to = [prometheus.remote_write.mimir.receiver]
}
prometheus.remote_write "mimir" {
  endpoint { url = "http://mimir:9009/api/v1/push" }
}
"#,
            r#"
[receivers.node]
type = "prometheus_scrape"
job_name = "prometheus.scrape.node"
static_configs = [
  { targets = ["127.0.0.1:9100"], labels = { env = "prod" } },
  { targets = ["127.0.0.1:9090"] },
]
scrape_interval = "15s"
scrape_timeout = "5s"
metrics_path = "/metrics"
honor_labels = true
[receivers.defaults]
type = "prometheus_scrape"
job_name = "prometheus.scrape.defaults"
static_configs = [{ targets = ["127.0.0.1:9091"] }]
[exporters.mimir]
type = "prometheus_remote_write"
url = "http://mimir:9009/api/v1/push"
[[pipelines]]
name = "metrics"
signals = ["metrics"]
receivers = ["node", "defaults"]
exporters = ["mimir"]
"#,
        ),
        (
            "local.file_match + loki.source.file",
            r#"
local.file_match "app" {
  path_targets = [
    {"__path__" = "/var/log/app/*.log", "job" = "app", "env" = "prod"},
    {"__path__" = "/var/log/app/extra/*.log", "env" = "prod", "job" = "app"},
    {"__path__" = "/var/log/db/*.log", "__path_exclude__" = "/var/log/db/debug-*.log", "job" = "db", "__meta_x" = "internal"},
  ]
  sync_period = "5s"
}
loki.source.file "files" {
  targets       = local.file_match.app.targets
  forward_to    = [loki.write.default.receiver]
  tail_from_end = true
  encoding      = "UTF-8"
}
loki.write "default" {
  endpoint { url = "http://loki:3100/loki/api/v1/push" }
}
"#,
            r#"
[receivers.files]
type = "file_log"
include = ["/var/log/app/*.log", "/var/log/app/extra/*.log"]
start_at = "end"
scan_interval = "5s"
include_file_name = false
include_file_path = true
file_path_attribute = "filename"
resource = { env = "prod", job = "app", "loki.resource.labels" = "env,job" }
attributes = { "loki.attribute.labels" = "filename" }
[receivers.files_2]
type = "file_log"
include = ["/var/log/db/*.log"]
exclude = ["/var/log/db/debug-*.log"]
start_at = "end"
scan_interval = "5s"
include_file_name = false
include_file_path = true
file_path_attribute = "filename"
resource = { job = "db", "loki.resource.labels" = "job" }
attributes = { "loki.attribute.labels" = "filename" }
[exporters.default]
type = "loki"
url = "http://loki:3100/loki/api/v1/push"
line_format = "raw"
default_labels_enabled = { exporter = false, job = false, instance = false, level = false, service_name = false }
[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["files", "files_2"]
exporters = ["default"]
"#,
        ),
        (
            "loki.source.file with its file_match block",
            r#"
loki.source.file "tmp" {
  targets    = [{"__path__" = "/tmp/logs/**/*.log", "job" = "tmp"}]
  forward_to = [loki.write.default.receiver]
  file_match {
    enabled     = true
    sync_period = "2s"
  }
}
loki.write "default" {
  endpoint { url = "http://loki:3100/loki/api/v1/push" }
}
"#,
            r#"
[receivers.tmp]
type = "file_log"
include = ["/tmp/logs/**/*.log"]
start_at = "beginning"
scan_interval = "2s"
include_file_name = false
include_file_path = true
file_path_attribute = "filename"
resource = { job = "tmp", "loki.resource.labels" = "job" }
attributes = { "loki.attribute.labels" = "filename" }
[exporters.default]
type = "loki"
url = "http://loki:3100/loki/api/v1/push"
line_format = "raw"
default_labels_enabled = { exporter = false, job = false, instance = false, level = false, service_name = false }
[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["tmp"]
exporters = ["default"]
"#,
        ),
        (
            "loki.source.file + loki.process, and otelcol.exporter.loki to the same loki.write",
            r#"
otelcol.receiver.otlp "in" {
  http { endpoint = "127.0.0.1:24318" }
  output { logs = [otelcol.exporter.loki.l.input] }
}
otelcol.exporter.loki "l" {
  forward_to = [loki.write.default.receiver]
}
loki.source.file "json" {
  targets    = [{"__path__" = "/var/log/json.log"}]
  forward_to = [loki.process.parse.receiver]
}
loki.process "parse" {
  stage.multiline {
    firstline     = "^\\{"
    max_wait_time = "3s"
    max_lines     = 50
  }
  stage.json {
    expressions = { level = "", msg = "msg" }
  }
  stage.labels {
    values = { level = "" }
  }
  stage.static_labels {
    values = { team = "core" }
  }
  forward_to = [loki.write.default.receiver]
}
loki.write "default" {
  endpoint {
    url       = "http://loki:3100/loki/api/v1/push"
    tenant_id = "t1"
  }
}
"#,
            r#"
[receivers.in]
type = "otlp"
http = { endpoint = "127.0.0.1:24318" }
[receivers.json]
type = "file_log"
include = ["/var/log/json.log"]
start_at = "beginning"
include_file_name = false
include_file_path = true
file_path_attribute = "filename"
format = "json"
multiline = { line_start_pattern = '^\{', flush_timeout = "3s", max_lines = 50 }
resource = { team = "core", "loki.resource.labels" = "team" }
attributes = { "loki.attribute.labels" = "filename,level" }
[exporters.default]
type = "loki"
url = "http://loki:3100/loki/api/v1/push"
tenant_id = "t1"
[exporters.default_files]
type = "loki"
url = "http://loki:3100/loki/api/v1/push"
tenant_id = "t1"
line_format = "raw"
default_labels_enabled = { exporter = false, job = false, instance = false, level = false, service_name = false }
[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["in"]
exporters = ["default"]
[[pipelines]]
name = "logs_2"
signals = ["logs"]
receivers = ["json"]
exporters = ["default_files"]
"#,
        ),
        (
            "otelcol.processor.redaction",
            r#"
otelcol.receiver.otlp "in" {
  grpc { endpoint = "127.0.0.1:24317" }
  output { traces = [otelcol.processor.redaction.pii.input] }
}
otelcol.processor.redaction "pii" {
  allow_all_keys       = false
  allowed_keys         = ["http.method", "user.email"]
  ignored_keys         = ["trace.note"]
  blocked_key_patterns = ["(?i)token|secret"]
  blocked_values       = ["[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+"]
  allowed_values       = ["@example\\.com$"]
  summary              = "debug"
  output { traces = [otelcol.exporter.debug.out.input] }
}
otelcol.exporter.debug "out" {}
"#,
            r#"
[receivers.in]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317" }
[processors.pii]
type = "redaction"
allow_all_keys = false
allowed_keys = ["http.method", "user.email"]
ignored_keys = ["trace.note"]
blocked_key_patterns = ["(?i)token|secret"]
blocked_values = ['[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+']
allowed_values = ['@example\.com$']
summary = "debug"
[exporters.out]
type = "debug"
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["in"]
processors = ["pii"]
exporters = ["out"]
"#,
        ),
    ];
    for (name, alloy, toml) in examples {
        eprintln!("example: {name}");
        assert_equivalent(alloy, toml);
    }
}

#[test]
fn logging_block_is_read_for_the_command_line() {
    let text = "logging {\n  level = \"debug\"\n  format = \"logfmt\"\n}\n";
    let l = sluice::alloy::logging(Path::new("x.alloy"), text).expect("logging");
    assert_eq!(l.level.as_deref(), Some("debug"));
    assert_eq!(l.format.as_deref(), Some("logfmt"));
}

#[test]
fn env_and_functions_evaluate() {
    let env = |v: &str| match v {
        "MIMIR_URL" => Some("http://mimir-from-env:9009/api/v1/push".to_string()),
        "EXTRA" => Some(r#"{"region": "eu", "shards": 3}"#.to_string()),
        _ => None,
    };
    let text = r#"
otelcol.receiver.otlp "in" {
  grpc { endpoint = coalesce(env("NOT_SET"), "127.0.0.1:" + "24317") }
  output { metrics = concat([otelcol.exporter.prometheus.p.input], []) }
}
otelcol.exporter.prometheus "p" {
  forward_to = [prometheus.remote_write.m.receiver]
}
prometheus.remote_write "m" {
  external_labels = { region = json_decode(sys.env("EXTRA")).region }
  endpoint {
    url = coalesce(env("MIMIR_URL"), "http://mimir:9009/api/v1/push")
    queue_config {
      max_shards = json_decode(env("EXTRA"))["shards"]
    }
  }
}
"#;
    let config = load(text, &env);
    let toml = r#"
[receivers.in]
type = "otlp"
grpc = { endpoint = "127.0.0.1:24317" }
[exporters.m]
type = "prometheus_remote_write"
url = "http://mimir-from-env:9009/api/v1/push"
shards = 3
external_labels = { region = "eu" }
[[pipelines]]
name = "metrics"
signals = ["metrics"]
receivers = ["in"]
exporters = ["m"]
"#;
    let mut expected = parse(Path::new("t.toml"), toml, &env_none).unwrap();
    expected.source = config.source.clone();
    expected.text = config.text.clone();
    assert_eq!(config, expected);

    // `convert` keeps what TOML can express as ${VAR:-default} for the environment of the run,
    // and says which values it had to read now.
    let c = sluice::alloy::convert(Path::new("t.alloy"), text, &env).unwrap();
    assert!(
        c.toml
            .contains(r#"url = "${MIMIR_URL:-http://mimir:9009/api/v1/push}""#),
        "{}",
        c.toml
    );
    assert!(
        c.toml
            .contains(r#"endpoint = "${NOT_SET:-127.0.0.1:24317}""#)
    );
    assert!(
        c.toml
            .contains("# Note: $EXTRA (line 10) was read at conversion time"),
        "{}",
        c.toml
    );
}

#[test]
fn literal_dollar_braces_survive_the_toml_substitution() {
    let text = r#"
otelcol.receiver.otlp "in" {
  grpc { endpoint = "127.0.0.1:24317" }
  output { logs = [otelcol.exporter.loki.l.input] }
}
otelcol.exporter.loki "l" {
  forward_to = [loki.write.l.receiver]
}
loki.write "l" {
  endpoint {
    url     = "http://loki:3100/loki/api/v1/push"
    headers = { "X-Note" = "cost $${x} and ${y}" }
  }
}
"#;
    let c = load(text, &env_none);
    let out = format!("{:?}", c.exporters["l"]);
    assert!(out.contains(r#""X-Note": "cost $${x} and ${y}""#), "{out}");
}

#[test]
fn syntax_errors_name_line_column_and_reason() {
    let cases: &[(&str, &str)] = &[
        (
            "otelcol.receiver.otlp \"default\" {\n  grpc {\n    endpoint = \"0.0.0.0:4317\n  }\n}\n",
            "test.alloy:3:16: unterminated string: a newline inside \"...\" (use \\n, or a `raw string`)",
        ),
        (
            "otelcol.receiver.otlp \"default\" {\n  grpc {\n    endpoint = \"0.0.0.0:4317\"\n  }\n",
            "test.alloy:5:1: expected '}' to close the block, found end of file",
        ),
        (
            "otelcol.receiver.otlp default {\n}\n",
            "test.alloy:1:23: expected '{' to open the block, found identifier \"default\"",
        ),
        (
            "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = \"a\" timeout = \"5s\"\n  }\n}\n",
            "test.alloy:3:20: expected end of line after the statement, found identifier \"timeout\"",
        ),
        (
            "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = \"\\q\"\n  }\n}\n",
            "test.alloy:3:17: unknown escape sequence \\q in string",
        ),
        (
            "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = [1, 2\n  }\n}\n",
            "test.alloy:4:3: expected ',' or ']', found '}'",
        ),
        (
            "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = 5s\n  }\n}\n",
            "test.alloy:3:16: malformed number (a duration or size is a string in Alloy, e.g. \"5s\")",
        ),
        (
            "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = \"x\" @\n  }\n}\n",
            "test.alloy:3:20: unexpected character '@'",
        ),
        (
            "/* unterminated\notelcol.exporter.otlp \"t\" {}\n",
            "test.alloy:1:1: unterminated /* comment (no closing */)",
        ),
        (
            "otelcol.exporter.otlp \"my-exp\" {\n}\n",
            "test.alloy:1:23: block label \"my-exp\" must be an identifier (letters, digits and '_')",
        ),
        (
            "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = { a = 1, a = 2 }\n  }\n}\n",
            "test.alloy:3:25: object key \"a\" is set twice",
        ),
        ("}\n", "test.alloy:1:1: unmatched '}'"),
        (
            "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = \"\\u00zz\"\n  }\n}\n",
            "test.alloy:3:17: escape sequence needs 4 hex digits",
        ),
        (
            "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = `raw\n",
            "test.alloy:3:16: unterminated raw string (no closing `)",
        ),
        (
            "log_level = \"debug\"\n",
            "test.alloy:1:1: log_level: attributes are not allowed at the top level of an Alloy file; put them in a component block",
        ),
        (
            "otelcol.processor.batch {\n}\n",
            "test.alloy:1:1: otelcol.processor.batch: component `otelcol.processor.batch` needs a label, e.g. otelcol.processor.batch \"default\" { ... }",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(err(text), *expected, "for:\n{text}");
    }
}

const BASE: &str = r#"otelcol.receiver.otlp "in" {
  grpc {
    endpoint = "127.0.0.1:24317"
  }
  output {
    traces  = [otelcol.processor.batch.b.input]
    metrics = [otelcol.processor.batch.b.input]
    logs    = [otelcol.exporter.loki.l.input]
  }
}

otelcol.processor.batch "b" {
  timeout = "1s"
  output {
    traces  = [otelcol.exporter.otlp.t.input]
    metrics = [otelcol.exporter.prometheus.p.input]
  }
}

otelcol.exporter.otlp "t" {
  client {
    endpoint = "tempo:4317"
  }
}

otelcol.exporter.prometheus "p" {
  forward_to = [prometheus.remote_write.m.receiver]
}

prometheus.remote_write "m" {
  endpoint {
    url = "http://mimir:9009/api/v1/push"
  }
}

otelcol.exporter.loki "l" {
  forward_to = [loki.write.l.receiver]
}

loki.write "l" {
  endpoint {
    url = "http://loki:3100/loki/api/v1/push"
  }
}
"#;

#[test]
fn mapping_errors_name_the_alloy_key_and_what_is_supported() {
    load(BASE, &env_none);
    let cases: &[(&str, &str, &str)] = &[
        (
            "loki.write \"l\" {",
            "loki.source.journal \"f\" {}\nloki.write \"l\" {",
            "test.alloy:40:1: loki.source.journal: component `loki.source.journal` is not supported by Sluice; supported: otelcol.receiver.otlp, otelcol.processor.batch, otelcol.processor.memory_limiter, otelcol.processor.attributes, otelcol.processor.filter, otelcol.processor.transform, otelcol.processor.tail_sampling, otelcol.processor.redaction, otelcol.exporter.otlp, otelcol.exporter.otlphttp, otelcol.exporter.debug, otelcol.exporter.prometheus, prometheus.remote_write, otelcol.exporter.loki, loki.write, otelcol.auth.basic, otelcol.auth.bearer, prometheus.scrape, local.file_match, loki.source.file, loki.process, logging (docs/alloy.md)",
        ),
        (
            "timeout = \"1s\"",
            "timeout = \"1s\"\n  metadata_keys = [\"a\"]",
            "test.alloy:14:3: otelcol.processor.batch.b.metadata_keys: attribute `metadata_keys` of otelcol.processor.batch \"b\" is not supported by Sluice; supported: timeout, send_batch_size, send_batch_max_size, output { } (docs/alloy.md)",
        ),
        (
            "endpoint = \"tempo:4317\"",
            "endpoint = \"tempo:4317\"\n    balancer_name = \"round_robin\"",
            "test.alloy:23:5: otelcol.exporter.otlp.t.client.balancer_name: attribute `balancer_name` of otelcol.exporter.otlp \"t\" > client is not supported by Sluice; supported: endpoint, compression, headers, auth, tls { } (docs/alloy.md)",
        ),
        (
            "    endpoint = \"tempo:4317\"",
            "    compression = \"gzip\"",
            "test.alloy:21:3: otelcol.exporter.otlp.t.client.endpoint: otelcol.exporter.otlp \"t\" > client needs the attribute `endpoint`",
        ),
        (
            "metrics = [otelcol.exporter.prometheus.p.input]",
            "metrics = [otelcol.exporter.prometheus.q.input]",
            "test.alloy:16:16: `otelcol.exporter.prometheus.q.input` refers to no component in this file (a reference is NAME.LABEL.EXPORT of a declared component, e.g. otelcol.processor.batch.default.input)",
        ),
        (
            "metrics = [otelcol.exporter.prometheus.p.input]",
            "metrics = [prometheus.remote_write.m.receiver]",
            "test.alloy:16:15: prometheus.remote_write.m.receiver: prometheus.remote_write.m takes data from Prometheus/Loki components, not OpenTelemetry data; send it through otelcol.exporter.prometheus (forward_to = [prometheus.remote_write.m.receiver])",
        ),
        (
            "traces  = [otelcol.exporter.otlp.t.input]",
            "traces  = [otelcol.exporter.prometheus.p.input]",
            "test.alloy:15:15: otelcol.exporter.prometheus.p.input: otelcol.exporter.prometheus.p takes metrics only, but traces are sent to it here",
        ),
        (
            "forward_to = [loki.write.l.receiver]",
            "forward_to = [prometheus.remote_write.m.receiver]",
            "test.alloy:37:16: prometheus.remote_write.m: otelcol.exporter.loki.l's forward_to takes loki.write receivers; `prometheus.remote_write.m` is not one",
        ),
        (
            "otelcol.processor.batch.b.input]\n    metrics",
            "otelcol.processor.batch.b.inputs]\n    metrics",
            "test.alloy:6:15: otelcol.processor.batch.b.inputs: `otelcol.processor.batch.b.inputs`: otelcol.processor.batch.b is an OpenTelemetry processor; its export is `input`",
        ),
        (
            "timeout = \"1s\"",
            "timeout = 1",
            "test.alloy:13:13: otelcol.processor.batch.b.timeout: `timeout` must be a string, got a number",
        ),
        (
            "endpoint = \"tempo:4317\"",
            "endpoint = string.format(\"%s\", \"a\")",
            "test.alloy:22:16: unknown function `string.format`; Sluice supports env, sys.env, coalesce, concat (array.concat), json_decode (encoding.from_json)",
        ),
        (
            "endpoint = \"tempo:4317\"",
            "endpoint = tempo",
            "test.alloy:22:16: unknown identifier `tempo` (functions: env, sys.env, coalesce, concat (array.concat), json_decode (encoding.from_json); strings need quotes)",
        ),
        (
            "endpoint = \"tempo:4317\"",
            "endpoint = json_decode(\"{\")",
            "test.alloy:22:28: json_decode(): invalid JSON: EOF while parsing an object at line 1 column 1",
        ),
        (
            "endpoint = \"tempo:4317\"",
            "endpoint = \"a\" + 1",
            "test.alloy:22:16: operator + cannot apply to a string and a number",
        ),
        // Errors found by Sluice's own checks point at the Alloy attribute too.
        (
            "url = \"http://mimir:9009/api/v1/push\"",
            "url = \"mimir:9009\"",
            "test.alloy:32:5: prometheus.remote_write.m.endpoint.url: scheme must be http or https, got \"mimir\"",
        ),
        (
            "timeout = \"1s\"",
            "timeout = \"1 second\"",
            "test.alloy:13:3: otelcol.processor.batch.b.timeout: invalid duration \"1 second\": use a number with a unit: ns, us, ms, s, m, h, d (e.g. \"200ms\", \"1m30s\")",
        ),
        (
            "127.0.0.1:24317",
            "127.0.0.1:99999",
            "test.alloy:3:5: otelcol.receiver.otlp.in.grpc.endpoint: \"127.0.0.1:99999\" is not `host:port` (e.g. \"0.0.0.0:4317\")",
        ),
        (
            "otelcol.exporter.loki \"l\" {",
            "otelcol.exporter.loki \"l\" {}\notelcol.exporter.loki \"l\" {",
            "test.alloy:37:1: otelcol.exporter.loki.l: `otelcol.exporter.loki.l` is declared twice; labels must be unique per component",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replacen(from, to, 1);
        assert_eq!(err(&text), *expected, "for:\n{text}");
    }
}

#[test]
fn routes_sluice_cannot_build_are_refused() {
    let chained = r#"otelcol.receiver.otlp "in" {
  grpc {}
  output { traces = [otelcol.processor.batch.one.input] }
}
otelcol.processor.batch "one" {
  output { traces = [otelcol.processor.batch.two.input] }
}
otelcol.processor.batch "two" {
  output { traces = [otelcol.exporter.debug.d.input] }
}
otelcol.exporter.debug "d" {}
"#;
    assert_eq!(
        err(chained),
        "test.alloy:6:21: otelcol.processor.batch.two: two batch processors on one route (processors.one, then otelcol.processor.batch.two): Sluice batches once per pipeline, after the spool"
    );
    let cycle = r#"otelcol.receiver.otlp "in" {
  grpc {}
  output { traces = [otelcol.processor.memory_limiter.a.input] }
}
otelcol.processor.memory_limiter "a" {
  check_interval = "1s"
  output { traces = [otelcol.processor.memory_limiter.b.input] }
}
otelcol.processor.memory_limiter "b" {
  check_interval = "1s"
  output { traces = [otelcol.processor.memory_limiter.a.input] }
}
"#;
    assert_eq!(
        err(cycle),
        "test.alloy:11:21: otelcol.processor.memory_limiter.a: reference cycle: otelcol.receiver.otlp.in → otelcol.processor.memory_limiter.a → otelcol.processor.memory_limiter.b → otelcol.processor.memory_limiter.a"
    );
    let no_output = "otelcol.processor.batch \"b\" {\n  timeout = \"1s\"\n}\n";
    assert_eq!(
        err(no_output),
        "test.alloy:1:1: otelcol.processor.batch.b.output: otelcol.processor.batch \"b\" needs an `output { }` block saying where its data goes (traces/metrics/logs = [...])"
    );
}

/// Alloy file-log settings Sluice cannot honour are refused at their key and line.
#[test]
fn file_log_settings_sluice_cannot_honour_are_refused() {
    let base = r#"local.file_match "m" {
  path_targets = [{"__path__" = "/var/log/*.log"}]
}
loki.source.file "f" {
  targets    = local.file_match.m.targets
  forward_to = [loki.write.w.receiver]
}
loki.process "p" {
  stage.json {
    expressions = { level = "" }
  }
  forward_to = [loki.write.w.receiver]
}
loki.write "w" {
  endpoint { url = "http://loki:3100/loki/api/v1/push" }
}
"#;
    load(base, &env_none);
    let cases: &[(&str, &str, &str)] = &[
        (
            "  path_targets",
            "  ignore_older_than = \"1h\"\n  path_targets",
            "test.alloy:2:23: local.file_match.m.ignore_older_than: ignore_older_than is not supported by Sluice: its file_log receiver reads every matching file, whatever its age (use __path_exclude__ to leave files out)",
        ),
        (
            "  forward_to = [loki.write.w.receiver]\n}\nloki.process",
            "  forward_to = [loki.write.w.receiver]\n  legacy_positions_file = \"/tmp/positions.yaml\"\n}\nloki.process",
            "test.alloy:7:3: loki.source.file.f.legacy_positions_file: attribute `legacy_positions_file` of loki.source.file \"f\" is not supported by Sluice; supported: targets, forward_to, tail_from_end, encoding, file_match { } (docs/alloy.md)",
        ),
        (
            "  forward_to = [loki.write.w.receiver]\n}\nloki.process",
            "  forward_to = [loki.write.w.receiver]\n  encoding = \"UTF-16\"\n}\nloki.process",
            "test.alloy:7:14: loki.source.file.f.encoding: encoding \"UTF-16\": Sluice's file_log receiver reads UTF-8 only",
        ),
        (
            "  stage.json {",
            "  stage.drop {\n    expression = \".*debug.*\"\n  }\n  stage.json {",
            "test.alloy:9:3: loki.process.p.stage.drop: block `stage.drop` of loki.process \"p\" is not supported by Sluice; supported: forward_to, stage.multiline { }, stage.json { }, stage.regex { }, stage.labels { }, stage.static_labels { } (docs/alloy.md)",
        ),
        (
            "expressions = { level = \"\" }",
            "expressions = { level = \"log.level\" }",
            "test.alloy:10:19: loki.process.p.stage.json.expressions.level: JMESPath expression \"log.level\": Sluice's file_log receiver takes a JSON object's top-level fields as they are (use \"\" or \"level\")",
        ),
        (
            "expressions = { level = \"\" }",
            "expressions = { level = \"\" }\n    source = \"msg\"",
            "test.alloy:11:5: loki.process.p.stage.json.source: attribute `source` of loki.process \"p\" > stage.json is not supported by Sluice; supported: expressions (docs/alloy.md)",
        ),
        (
            "\"/var/log/*.log\"",
            "\"/var/log/{app,db}/*.log\"",
            "test.alloy:2:18: local.file_match.m.path_targets.__path__: __path__ \"/var/log/{app,db}/*.log\": brace alternation ({a,b}) is not supported by Sluice's file_log patterns; write one target per pattern",
        ),
        (
            "targets    = local.file_match.m.targets",
            "targets    = [{\"job\" = \"x\"}]",
            "test.alloy:5:16: loki.source.file.f.targets: every target needs `__path__` (a file path or glob pattern)",
        ),
        (
            "forward_to = [loki.write.w.receiver]\n}\nloki.process",
            "forward_to = [loki.process.p.receiver, loki.write.w.receiver]\n}\nloki.process",
            "test.alloy:6:16: loki.source.file.f.forward_to: loki.source.file.f forwards to loki.process.p and to other components: Sluice applies loki.process stages in the file_log receiver, so a loki.source.file that uses loki.process must forward to it alone",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        assert_eq!(err(&text), *expected, "for:\n{text}");
    }
    let redaction = r#"otelcol.receiver.otlp "in" {
  grpc {}
  output { traces = [otelcol.processor.redaction.r.input] }
}
otelcol.processor.redaction "r" {
  allow_all_keys = true
  hash_function  = "md5"
  output { traces = [otelcol.exporter.debug.d.input] }
}
otelcol.exporter.debug "d" {}
"#;
    assert_eq!(
        err(redaction),
        "test.alloy:7:20: otelcol.processor.redaction.r.hash_function: hash_function \"md5\" is not supported by Sluice: its redaction processor masks with **** or hashes with SHA-256 (hash_function = \"sha256\" in Sluice TOML)"
    );
    let sanitizer = redaction.replace(
        "  hash_function  = \"md5\"\n",
        "  url_sanitizer {\n    enabled = true\n  }\n",
    );
    assert_eq!(
        err(&sanitizer),
        "test.alloy:7:3: otelcol.processor.redaction.r.url_sanitizer: block `url_sanitizer` of otelcol.processor.redaction \"r\" is not supported by Sluice; supported: allow_all_keys, allowed_keys, ignored_keys, blocked_key_patterns, blocked_values, allowed_values, summary, hash_function, output { } (docs/alloy.md)"
    );
}
