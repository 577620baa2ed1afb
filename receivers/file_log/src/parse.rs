//! Entries → OTLP log records: the line is the body; `format = "json"` / `"regex"` turn its
//! fields into attributes, from which the timestamp and severity can be taken. An entry that
//! does not parse is kept as it is (body only) and counted, never dropped.

use crate::config::{Config, Format, TimeLayout};
use crate::counters as m;
use crate::tail::Entry;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use regex::Regex;
use std::sync::Arc;

pub const FILE_NAME_ATTR: &str = "log.file.name";
pub const FILE_PATH_ATTR: &str = "log.file.path";

pub struct Parser {
    id: Arc<str>,
    format: Format,
    regex: Option<Regex>,
    timestamp: Option<(String, TimeLayout)>,
    severity: Option<String>,
    include_file_name: bool,
    /// The attribute the path goes to, when `include_file_path` is on.
    file_path_attribute: Option<String>,
    attributes: Vec<KeyValue>,
    resource: Vec<KeyValue>,
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn json_value(v: serde_json::Value) -> Option<AnyValue> {
    let value = match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::BoolValue(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::StringValue(s),
        serde_json::Value::Array(items) => Value::ArrayValue(ArrayValue {
            values: items
                .into_iter()
                .map(|v| json_value(v).unwrap_or_default())
                .collect(),
        }),
        serde_json::Value::Object(map) => Value::KvlistValue(KeyValueList {
            values: map
                .into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: json_value(v),
                    ..Default::default()
                })
                .collect(),
        }),
    };
    Some(AnyValue { value: Some(value) })
}

/// Seconds, milliseconds... since the epoch, or RFC 3339, as nanoseconds since the epoch.
pub fn parse_time(value: &AnyValue, layout: TimeLayout) -> Option<u64> {
    let scale = match layout {
        TimeLayout::Rfc3339 => {
            let Some(Value::StringValue(s)) = &value.value else {
                return None;
            };
            return sluice_core::time::parse_rfc3339(s).and_then(sluice_core::time::unix_nanos);
        }
        TimeLayout::Unix => 1_000_000_000u64,
        TimeLayout::UnixMs => 1_000_000,
        TimeLayout::UnixUs => 1_000,
        TimeLayout::UnixNs => 1,
    };
    // Whole numbers in integer arithmetic (a float would round nanoseconds away).
    let whole = match &value.value {
        Some(Value::IntValue(i)) => u64::try_from(*i).ok(),
        Some(Value::StringValue(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    if let Some(whole) = whole {
        return whole.checked_mul(scale).filter(|ns| *ns > 0);
    }
    let number = match &value.value {
        Some(Value::DoubleValue(d)) => *d,
        Some(Value::StringValue(s)) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    let nanos = number * scale as f64;
    (nanos.is_finite() && nanos > 0.0 && nanos < u64::MAX as f64).then_some(nanos as u64)
}

/// A level word as OpenTelemetry's severity number (the log data model's mapping).
pub fn severity_number(text: &str) -> Option<SeverityNumber> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "trace" | "trc" => SeverityNumber::Trace,
        "debug" | "dbg" => SeverityNumber::Debug,
        "info" | "inf" | "information" | "notice" => SeverityNumber::Info,
        "warn" | "wrn" | "warning" => SeverityNumber::Warn,
        "error" | "err" | "eror" => SeverityNumber::Error,
        "fatal" | "crit" | "critical" | "alert" | "emerg" | "emergency" | "panic" => {
            SeverityNumber::Fatal
        }
        _ => return None,
    })
}

impl Parser {
    /// `config` must have passed `validate`.
    pub fn new(config: &Config, component_id: Arc<str>) -> Parser {
        Parser {
            id: component_id,
            format: config.format,
            regex: config.regex.as_deref().and_then(|r| Regex::new(r).ok()),
            timestamp: config
                .timestamp
                .as_ref()
                .map(|t| (t.field.clone(), t.layout)),
            severity: config.severity.as_ref().map(|s| s.field.clone()),
            include_file_name: config.include_file_name,
            file_path_attribute: config
                .include_file_path
                .then(|| config.file_path_attribute.clone()),
            attributes: config
                .attributes
                .iter()
                .map(|(k, v)| string_kv(k, v))
                .collect(),
            resource: config
                .resource
                .iter()
                .map(|(k, v)| string_kv(k, v))
                .collect(),
        }
    }

    /// The fields of one line, as attributes.
    fn fields(&self, line: &str) -> Vec<KeyValue> {
        match self.format {
            Format::None => Vec::new(),
            Format::Json => match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(map)) => map
                    .into_iter()
                    .filter_map(|(key, v)| Some((key, json_value(v)?)))
                    .map(|(key, value)| KeyValue {
                        key,
                        value: Some(value),
                        ..Default::default()
                    })
                    .collect(),
                Ok(_) => {
                    m::parse_failure(&self.id, "not_an_object");
                    Vec::new()
                }
                Err(_) => {
                    m::parse_failure(&self.id, "invalid_json");
                    Vec::new()
                }
            },
            Format::Regex => {
                let Some(re) = &self.regex else {
                    return Vec::new();
                };
                match re.captures(line) {
                    Some(caps) => re
                        .capture_names()
                        .flatten()
                        .filter_map(|name| Some(string_kv(name, caps.name(name)?.as_str())))
                        .collect(),
                    None => {
                        m::parse_failure(&self.id, "no_match");
                        Vec::new()
                    }
                }
            }
        }
    }

    pub fn record(&self, entry: &Entry, observed_ns: u64) -> LogRecord {
        let mut attributes = Vec::new();
        if self.include_file_name {
            let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
            attributes.push(string_kv(FILE_NAME_ATTR, name));
        }
        if let Some(key) = &self.file_path_attribute {
            attributes.push(string_kv(key, &entry.path));
        }
        attributes.extend(self.attributes.iter().cloned());
        let fields = self.fields(&entry.text);
        let field = |name: &str| {
            fields
                .iter()
                .find(|kv| kv.key == name)
                .and_then(|kv| kv.value.as_ref())
        };
        let mut time_unix_nano = 0;
        if let Some((name, layout)) = &self.timestamp {
            match field(name).and_then(|v| parse_time(v, *layout)) {
                Some(ns) => time_unix_nano = ns,
                None => m::parse_failure(&self.id, "timestamp"),
            }
        }
        let mut severity_text = String::new();
        let mut severity = SeverityNumber::Unspecified;
        if let Some(name) = &self.severity {
            match field(name).and_then(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            }) {
                Some(text) => {
                    severity_text = text.to_owned();
                    match severity_number(text) {
                        Some(n) => severity = n,
                        None => m::parse_failure(&self.id, "severity"),
                    }
                }
                None => m::parse_failure(&self.id, "severity"),
            }
        }
        attributes.extend(fields);
        LogRecord {
            time_unix_nano,
            observed_time_unix_nano: observed_ns,
            severity_number: severity as i32,
            severity_text,
            body: Some(AnyValue {
                value: Some(Value::StringValue(entry.text.clone())),
            }),
            attributes,
            ..Default::default()
        }
    }

    /// One OTLP request holding `entries`.
    pub fn request(&self, entries: &[Entry], observed_ns: u64) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: self.resource.clone(),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "sluice/file_log".into(),
                        ..Default::default()
                    }),
                    log_records: entries
                        .iter()
                        .map(|e| self.record(e, observed_ns))
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(extra: &str) -> Parser {
        let c: Config = toml::from_str(&format!("include = [\"/x/*.log\"]\n{extra}")).unwrap();
        c.validate().unwrap();
        Parser::new(&c, Arc::from("receivers.test"))
    }

    fn entry(text: &str) -> Entry {
        Entry {
            text: text.into(),
            path: Arc::from("/var/log/app/api.log"),
            reread: false,
        }
    }

    fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn json_fields_become_attributes_with_time_and_severity() {
        let p = parser(
            "format = \"json\"\ntimestamp = { field = \"ts\" }\nseverity = { field = \"level\" }\nattributes = { team = \"awf\" }",
        );
        let line = r#"{"ts":"2026-12-04T10:00:00.5Z","level":"WARN","msg":"slow","ms":12,"ok":false,"ctx":{"run":"r1"}}"#;
        let r = p.record(&entry(line), 7);
        assert_eq!(r.time_unix_nano, 1_796_378_400_500_000_000);
        assert_eq!(r.observed_time_unix_nano, 7);
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(r.severity_text, "WARN");
        assert_eq!(
            attr(&r, FILE_NAME_ATTR),
            Some(&Value::StringValue("api.log".into()))
        );
        assert_eq!(attr(&r, FILE_PATH_ATTR), None);
        assert_eq!(attr(&r, "team"), Some(&Value::StringValue("awf".into())));
        assert_eq!(attr(&r, "msg"), Some(&Value::StringValue("slow".into())));
        assert_eq!(attr(&r, "ms"), Some(&Value::IntValue(12)));
        assert_eq!(attr(&r, "ok"), Some(&Value::BoolValue(false)));
        assert!(matches!(attr(&r, "ctx"), Some(Value::KvlistValue(_))));
        assert_eq!(
            r.body.and_then(|b| b.value),
            Some(Value::StringValue(line.into()))
        );
    }

    #[test]
    fn regex_groups_become_attributes() {
        let p = parser(
            "format = \"regex\"\nregex = '^(?P<time>\\d+) (?P<level>\\w+) (?P<msg>.*)$'\ntimestamp = { field = \"time\", layout = \"unix_ms\" }\nseverity = { field = \"level\" }\ninclude_file_path = true",
        );
        let r = p.record(&entry("1796378400123 error disk full"), 1);
        assert_eq!(r.time_unix_nano, 1_796_378_400_123_000_000);
        assert_eq!(r.severity_number, SeverityNumber::Error as i32);
        assert_eq!(
            attr(&r, "msg"),
            Some(&Value::StringValue("disk full".into()))
        );
        assert_eq!(
            attr(&r, FILE_PATH_ATTR),
            Some(&Value::StringValue("/var/log/app/api.log".into()))
        );
    }

    #[test]
    fn lines_that_do_not_parse_are_kept_as_they_are() {
        for (extra, line) in [
            ("format = \"json\"", "not json"),
            ("format = \"json\"", "[1,2]"),
            ("format = \"regex\"\nregex = '^(?P<a>\\d+)$'", "abc"),
        ] {
            let r = parser(extra).record(&entry(line), 1);
            assert_eq!(
                r.body.and_then(|b| b.value),
                Some(Value::StringValue(line.into()))
            );
            assert_eq!(r.attributes.len(), 1, "only log.file.name: {extra}");
            assert_eq!(r.time_unix_nano, 0);
        }
        // A field that is not a time or a level is counted and leaves the record's fields unset.
        let p = parser(
            "format = \"json\"\ntimestamp = { field = \"ts\", layout = \"unix\" }\nseverity = { field = \"lvl\" }",
        );
        let r = p.record(&entry(r#"{"ts":"soon","lvl":"loud"}"#), 1);
        assert_eq!(r.time_unix_nano, 0);
        assert_eq!(r.severity_number, SeverityNumber::Unspecified as i32);
        assert_eq!(r.severity_text, "loud");
    }

    #[test]
    fn bad_configs_name_their_key() {
        for (extra, key) in [
            ("format = \"regex\"", "regex"),
            ("format = \"regex\"\nregex = '('", "regex"),
            ("format = \"regex\"\nregex = '\\d+'", "regex"),
            ("regex = '(?P<a>x)'", "regex"),
            ("timestamp = { field = \"t\" }", "timestamp"),
            (
                "multiline = { line_start_pattern = '[' }",
                "multiline.line_start_pattern",
            ),
            ("exclude = [\"[\"]", "exclude[0]"),
            ("max_batch_entries = 0", "max_batch_entries"),
            ("follow = true", "follow"),
        ] {
            let c: Config = toml::from_str(&format!("include = [\"/x/*.log\"]\n{extra}")).unwrap();
            assert_eq!(c.validate().unwrap_err().key, key, "{extra}");
        }
        let c: Config = toml::from_str("include = []").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "include");
    }
}
