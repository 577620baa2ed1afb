//! `redaction`: removes attributes that are not allowed and masks values that look sensitive,
//! with the settings of the OpenTelemetry Collector's redaction processor.
//!
//! Applies to the attributes of resources, spans, span events, data points and log records, and
//! to string log bodies (value patterns only). Per attribute, in order:
//! 1. a key in `ignored_keys` is left as it is;
//! 2. unless `allow_all_keys`, a key not in `allowed_keys` is removed;
//! 3. a key matching `blocked_key_patterns` has its whole value masked;
//! 4. otherwise every match of `blocked_values` in a string value is masked, unless the value
//!    matches one of `allowed_values`.
//!
//! Masked text becomes `****`, or with `hash_function = "sha256"` the SHA-256 (hex) of what it
//! replaces, so equal values stay comparable without being readable.

use crate::data::{self, sha256_hex};
use crate::{BuildError, Context, Request, RequestProcessor, Stage, compile_regex};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use serde::Deserialize;
use sluice_core::{InvalidConfig, Refusal, Signal};
use std::collections::BTreeSet;
use std::sync::Arc;

pub const TYPE_NAME: &str = "redaction";
const MASK: &str = "****";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashFunction {
    /// Masked text becomes `****`.
    #[default]
    None,
    Sha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Summary {
    /// Adds nothing.
    #[default]
    Silent,
    /// Adds `redaction.redacted.count` and `redaction.masked.count` to each changed record.
    Info,
    /// Also the keys: `redaction.redacted.keys`, `redaction.masked.keys`.
    Debug,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub allow_all_keys: bool,
    #[serde(default)]
    pub allowed_keys: Vec<String>,
    #[serde(default)]
    pub ignored_keys: Vec<String>,
    #[serde(default)]
    pub blocked_key_patterns: Vec<String>,
    #[serde(default)]
    pub blocked_values: Vec<String>,
    #[serde(default)]
    pub allowed_values: Vec<String>,
    #[serde(default)]
    pub hash_function: HashFunction,
    #[serde(default)]
    pub summary: Summary,
}

impl sluice_core::ComponentConfig for Config {}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !self.allow_all_keys && self.allowed_keys.is_empty() {
            return Err(InvalidConfig::new(
                "allowed_keys",
                "is empty and allow_all_keys is false: every attribute would be removed; list the keys to keep or set allow_all_keys = true",
            ));
        }
        Rules::compile(self).map(|_| ())
    }
}

struct Rules {
    allow_all_keys: bool,
    allowed_keys: BTreeSet<String>,
    ignored_keys: BTreeSet<String>,
    blocked_keys: Vec<regex::Regex>,
    blocked_values: Vec<regex::Regex>,
    allowed_values: Vec<regex::Regex>,
    hash: HashFunction,
    summary: Summary,
}

fn compile_all(field: &str, patterns: &[String]) -> Result<Vec<regex::Regex>, InvalidConfig> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| compile_regex(&format!("{field}[{i}]"), p))
        .collect()
}

impl Rules {
    fn compile(c: &Config) -> Result<Rules, InvalidConfig> {
        Ok(Rules {
            allow_all_keys: c.allow_all_keys,
            allowed_keys: c.allowed_keys.iter().cloned().collect(),
            ignored_keys: c.ignored_keys.iter().cloned().collect(),
            blocked_keys: compile_all("blocked_key_patterns", &c.blocked_key_patterns)?,
            blocked_values: compile_all("blocked_values", &c.blocked_values)?,
            allowed_values: compile_all("allowed_values", &c.allowed_values)?,
            hash: c.hash_function,
            summary: c.summary,
        })
    }

    fn mask(&self, text: &str) -> String {
        match self.hash {
            HashFunction::None => MASK.to_string(),
            HashFunction::Sha256 => sha256_hex(text.as_bytes()),
        }
    }

    /// Masks every blocked match in `s`; true when something changed.
    fn mask_values(&self, s: &mut String) -> bool {
        if self.allowed_values.iter().any(|a| a.is_match(s)) {
            return false;
        }
        let mut changed = false;
        for re in &self.blocked_values {
            if re.is_match(s) {
                let out = re.replace_all(s, |c: &regex::Captures<'_>| self.mask(&c[0]));
                *s = out.into_owned();
                changed = true;
            }
        }
        changed
    }

    /// Applies the rules to one attribute list; returns (removed keys, masked keys).
    fn apply(&self, attrs: &mut Vec<KeyValue>) -> (Vec<String>, Vec<String>) {
        let mut removed = Vec::new();
        let mut masked = Vec::new();
        attrs.retain(|kv| {
            let keep = self.allow_all_keys
                || self.allowed_keys.contains(&kv.key)
                || self.ignored_keys.contains(&kv.key);
            if !keep {
                removed.push(kv.key.clone());
            }
            keep
        });
        for kv in attrs.iter_mut() {
            if self.ignored_keys.contains(&kv.key) {
                continue;
            }
            if self.blocked_keys.iter().any(|re| re.is_match(&kv.key)) {
                let text = kv.value.as_ref().map(data::value_text).unwrap_or_default();
                kv.value = Some(data::string_value(self.mask(&text)));
                masked.push(kv.key.clone());
                continue;
            }
            if let Some(AnyValue {
                value: Some(Value::StringValue(s)),
            }) = &mut kv.value
                && self.mask_values(s)
            {
                masked.push(kv.key.clone());
            }
        }
        (removed, masked)
    }

    /// Applies the rules and writes the summary attributes.
    fn apply_with_summary(&self, attrs: &mut Vec<KeyValue>) -> usize {
        let (removed, masked) = self.apply(attrs);
        let changes = removed.len() + masked.len();
        if changes > 0 && self.summary != Summary::Silent {
            let int = |n: usize| AnyValue {
                value: Some(Value::IntValue(n as i64)),
            };
            data::upsert(attrs, "redaction.redacted.count", int(removed.len()));
            data::upsert(attrs, "redaction.masked.count", int(masked.len()));
            if self.summary == Summary::Debug {
                if !removed.is_empty() {
                    data::upsert(
                        attrs,
                        "redaction.redacted.keys",
                        data::string_value(removed.join(",")),
                    );
                }
                if !masked.is_empty() {
                    data::upsert(
                        attrs,
                        "redaction.masked.keys",
                        data::string_value(masked.join(",")),
                    );
                }
            }
        }
        changes
    }
}

pub struct Redaction {
    rules: Rules,
    ctx: Context,
}

pub fn build(config: &Config, ctx: Context) -> Result<Stage, BuildError> {
    Ok(Stage::Request(Arc::new(Redaction {
        rules: Rules::compile(config)?,
        ctx,
    })))
}

impl RequestProcessor for Redaction {
    fn process(&self, request: &mut Request) -> Result<(), Refusal> {
        let rules = &self.rules;
        let mut changes = 0usize;
        for attrs in request.resource_attributes_mut() {
            changes += rules.apply_with_summary(attrs);
        }
        match request {
            Request::Traces(r) => {
                for span in r
                    .resource_spans
                    .iter_mut()
                    .flat_map(|rs| &mut rs.scope_spans)
                    .flat_map(|ss| &mut ss.spans)
                {
                    changes += rules.apply_with_summary(&mut span.attributes);
                    for event in &mut span.events {
                        changes += rules.apply_with_summary(&mut event.attributes);
                    }
                }
            }
            Request::Metrics(_) => request.for_each_record_attributes(|attrs| {
                changes += rules.apply_with_summary(attrs);
            }),
            Request::Logs(r) => {
                for log in r
                    .resource_logs
                    .iter_mut()
                    .flat_map(|rl| &mut rl.scope_logs)
                    .flat_map(|sl| &mut sl.log_records)
                {
                    changes += rules.apply_with_summary(&mut log.attributes);
                    if let Some(AnyValue {
                        value: Some(Value::StringValue(body)),
                    }) = &mut log.body
                        && rules.mask_values(body)
                    {
                        changes += 1;
                    }
                }
            }
        }
        if changes > 0 {
            metrics::counter!("sluice_processor_redacted_values_total",
                "component_id" => self.ctx.component_id.to_string(), "pipeline" => self.ctx.pipeline.to_string(),
                "signal" => request.signal().as_str())
            .increment(changes as u64);
        }
        Ok(())
    }

    fn applies_to(&self, _signal: Signal) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patterns docs/processors.md recommends for e-mail addresses, payment card numbers and
    /// API keys.
    const EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}";
    const CARD: &str = r"\b(?:\d[ -]?){12,18}\d\b";
    const API_KEY: &str = r"\b(?:sk|pk|ghp|xox[bap])[-_][A-Za-z0-9_-]{16,}\b";

    fn rules(extra: &str) -> Rules {
        let text = format!("blocked_values = ['{EMAIL}', '{CARD}', '{API_KEY}']\n{extra}");
        let cfg: Config = toml::from_str(&text).unwrap();
        cfg.validate().unwrap();
        Rules::compile(&cfg).unwrap()
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(data::string_value(v)),
            ..Default::default()
        }
    }

    fn text(attrs: &[KeyValue], k: &str) -> Option<String> {
        data::get(attrs, k).map(data::value_text)
    }

    #[test]
    fn masks_emails_cards_and_api_keys() {
        let r = rules("allow_all_keys = true");
        let mut attrs = vec![
            kv("msg", "mail ann@example.com about 4111 1111 1111 1111"),
            kv("auth", "using sk-live_abcdefghijklmnop1234"),
            kv("plain", "nothing here 1234"),
        ];
        let (removed, masked) = r.apply(&mut attrs);
        assert!(removed.is_empty());
        assert_eq!(masked, vec!["msg", "auth"]);
        assert_eq!(text(&attrs, "msg").unwrap(), "mail **** about ****");
        assert_eq!(text(&attrs, "auth").unwrap(), "using ****");
        assert_eq!(text(&attrs, "plain").unwrap(), "nothing here 1234");
    }

    #[test]
    fn allow_list_ignored_keys_and_blocked_key_patterns() {
        let r = rules(
            r#"
            allowed_keys = ["http.method", "token.kind", "user.email"]
            ignored_keys = ["trace.note"]
            blocked_key_patterns = ["^token\\."]
            summary = "debug"
            "#,
        );
        let mut attrs = vec![
            kv("http.method", "GET"),
            kv("password", "hunter2"),
            kv("token.kind", "bearer"),
            kv("trace.note", "ann@example.com"),
            kv("user.email", "bob@example.org"),
        ];
        r.apply_with_summary(&mut attrs);
        assert_eq!(text(&attrs, "password"), None);
        assert_eq!(text(&attrs, "http.method").unwrap(), "GET");
        assert_eq!(text(&attrs, "token.kind").unwrap(), "****");
        assert_eq!(text(&attrs, "trace.note").unwrap(), "ann@example.com");
        assert_eq!(text(&attrs, "user.email").unwrap(), "****");
        assert_eq!(text(&attrs, "redaction.redacted.keys").unwrap(), "password");
        assert_eq!(
            text(&attrs, "redaction.masked.keys").unwrap(),
            "token.kind,user.email"
        );
        assert_eq!(text(&attrs, "redaction.masked.count").unwrap(), "2");
    }

    #[test]
    fn hashing_keeps_equal_values_comparable() {
        let r = rules(
            "allow_all_keys = true\nhash_function = \"sha256\"\nallowed_values = ['@example\\.net$']",
        );
        let mut attrs = vec![
            kv("a", "ann@example.com"),
            kv("b", "ann@example.com"),
            kv("c", "ok@example.net"),
        ];
        r.apply(&mut attrs);
        let hashed = sha256_hex(b"ann@example.com");
        assert_eq!(text(&attrs, "a").unwrap(), hashed);
        assert_eq!(text(&attrs, "b").unwrap(), hashed);
        assert_eq!(text(&attrs, "c").unwrap(), "ok@example.net");
    }

    #[test]
    fn config_errors() {
        let bad = |t: &str| toml::from_str::<Config>(t).unwrap().validate().unwrap_err();
        assert!(bad("").to_string().starts_with("allowed_keys: is empty"));
        let e = bad("allow_all_keys = true\nblocked_values = ['(']");
        assert_eq!(e.key, "blocked_values[0]");
        assert!(e.reason.starts_with("invalid regular expression"), "{e}");
        assert!(toml::from_str::<Config>("hash_function = \"md5\"").is_err());
    }
}
