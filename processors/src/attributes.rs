//! `attributes`: insert, update, upsert, delete, hash, extract and convert the attributes of
//! spans, data points and log records, with the actions and semantics of the OpenTelemetry
//! Collector's attributes processor. Actions run in configured order. The `resource`
//! processor runs the same actions on resource attributes.

use crate::data::{self, ConfigValue};
use crate::{BuildError, Context, Request, RequestProcessor, Stage, compile_regex};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use serde::Deserialize;
use sluice_core::{InvalidConfig, Refusal};
use std::sync::Arc;

pub const TYPE_NAME: &str = "attributes";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Adds the key when it is absent.
    Insert,
    /// Changes the key when it is present.
    Update,
    /// Sets the key, present or not.
    Upsert,
    /// Removes the key (or every key matching `pattern`).
    Delete,
    /// Replaces the value with its SHA-256, in hex.
    Hash,
    /// Sets the named groups of `pattern`, matched against the key's value, as attributes.
    Extract,
    /// Changes the value's type to `converted_type`.
    Convert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvertedType {
    Int,
    Double,
    String,
}

/// One action. Which fields it needs depends on `action` (checked by `validate`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    #[serde(default)]
    pub key: Option<String>,
    pub action: ActionKind,
    /// The value to set (insert, update, upsert).
    #[serde(default)]
    pub value: Option<ConfigValue>,
    /// Take the value from this attribute instead (insert, update, upsert).
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// delete, hash: the keys matching this regular expression (instead of `key`); extract:
    /// the regular expression with named groups matched against `key`'s value.
    #[serde(default)]
    pub pattern: Option<String>,
    /// convert: `int`, `double` or `string`.
    #[serde(default)]
    pub converted_type: Option<ConvertedType>,
}

/// Config of the `attributes` processor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub actions: Vec<ActionConfig>,
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActionKind::Insert => "insert",
            ActionKind::Update => "update",
            ActionKind::Upsert => "upsert",
            ActionKind::Delete => "delete",
            ActionKind::Hash => "hash",
            ActionKind::Extract => "extract",
            ActionKind::Convert => "convert",
        })
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        compile_actions("actions", &self.actions).map(|_| ())
    }
}

impl sluice_core::ComponentConfig for Config {}

/// A checked action, ready to run.
#[derive(Debug, Clone)]
pub enum Action {
    Set {
        key: String,
        kind: ActionKind,
        source: Source,
    },
    Delete(KeySelector),
    Hash(KeySelector),
    Extract {
        key: String,
        pattern: regex::Regex,
    },
    Convert {
        key: String,
        to: ConvertedType,
    },
}

#[derive(Debug, Clone)]
pub enum Source {
    Value(AnyValue),
    Attribute(String),
}

#[derive(Debug, Clone)]
pub enum KeySelector {
    Key(String),
    Pattern(regex::Regex),
}

impl KeySelector {
    fn matches(&self, key: &str) -> bool {
        match self {
            KeySelector::Key(k) => k == key,
            KeySelector::Pattern(p) => p.is_match(key),
        }
    }
}

/// Checks every action and compiles its patterns. Errors name the offending key below `list`.
pub fn compile_actions(list: &str, actions: &[ActionConfig]) -> Result<Vec<Action>, InvalidConfig> {
    if actions.is_empty() {
        return Err(InvalidConfig::new(list, "must hold at least one action"));
    }
    actions
        .iter()
        .enumerate()
        .map(|(i, a)| compile_action(&format!("{list}[{i}]"), a))
        .collect()
}

fn compile_action(at: &str, a: &ActionConfig) -> Result<Action, InvalidConfig> {
    let invalid = |field: &str, reason: String| {
        if field.is_empty() {
            InvalidConfig::new(at, reason)
        } else {
            InvalidConfig::new(format!("{at}.{field}"), reason)
        }
    };
    let key = || {
        a.key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| invalid("key", format!("is required for action {}", a.action)))
    };
    let unexpected = |field: &str, present: bool| {
        if present {
            Err(invalid(
                field,
                format!("does not apply to action {}", a.action),
            ))
        } else {
            Ok(())
        }
    };
    match a.action {
        ActionKind::Insert | ActionKind::Update | ActionKind::Upsert => {
            unexpected("pattern", a.pattern.is_some())?;
            unexpected("converted_type", a.converted_type.is_some())?;
            let source = match (&a.value, &a.from_attribute) {
                (Some(v), None) => Source::Value(v.to_any()),
                (None, Some(f)) => Source::Attribute(f.clone()),
                _ => {
                    return Err(invalid(
                        "",
                        format!(
                            "action {} needs exactly one of value and from_attribute",
                            a.action
                        ),
                    ));
                }
            };
            Ok(Action::Set {
                key: key()?,
                kind: a.action,
                source,
            })
        }
        ActionKind::Delete | ActionKind::Hash => {
            unexpected("value", a.value.is_some())?;
            unexpected("from_attribute", a.from_attribute.is_some())?;
            unexpected("converted_type", a.converted_type.is_some())?;
            let selector = match (&a.key, &a.pattern) {
                (Some(k), None) if !k.is_empty() => KeySelector::Key(k.clone()),
                (None, Some(p)) => {
                    KeySelector::Pattern(compile_regex(&format!("{at}.pattern"), p)?)
                }
                _ => {
                    return Err(invalid(
                        "",
                        format!("action {} needs exactly one of key and pattern", a.action),
                    ));
                }
            };
            Ok(match a.action {
                ActionKind::Delete => Action::Delete(selector),
                _ => Action::Hash(selector),
            })
        }
        ActionKind::Extract => {
            unexpected("value", a.value.is_some())?;
            unexpected("from_attribute", a.from_attribute.is_some())?;
            unexpected("converted_type", a.converted_type.is_some())?;
            let Some(p) = &a.pattern else {
                return Err(invalid("pattern", "is required for action extract".into()));
            };
            let pattern = compile_regex(&format!("{at}.pattern"), p)?;
            if pattern.capture_names().flatten().next().is_none() {
                return Err(invalid(
                    "pattern",
                    "needs named groups, e.g. ^(?P<scheme>\\w+)://".into(),
                ));
            }
            Ok(Action::Extract {
                key: key()?,
                pattern,
            })
        }
        ActionKind::Convert => {
            unexpected("value", a.value.is_some())?;
            unexpected("from_attribute", a.from_attribute.is_some())?;
            unexpected("pattern", a.pattern.is_some())?;
            let Some(to) = a.converted_type else {
                return Err(invalid(
                    "converted_type",
                    "is required for action convert (int, double or string)".into(),
                ));
            };
            Ok(Action::Convert { key: key()?, to })
        }
    }
}

/// Runs `actions` over one attribute list.
pub fn apply(actions: &[Action], attrs: &mut Vec<KeyValue>) {
    for action in actions {
        match action {
            Action::Set { key, kind, source } => {
                let value = match source {
                    Source::Value(v) => Some(v.clone()),
                    Source::Attribute(from) => data::get(attrs, from).cloned(),
                };
                let Some(value) = value else { continue };
                match (kind, data::get_mut(attrs, key)) {
                    (ActionKind::Insert, None) | (ActionKind::Upsert, None) => {
                        attrs.push(KeyValue {
                            key: key.clone(),
                            value: Some(value),
                            ..Default::default()
                        })
                    }
                    (ActionKind::Update, Some(kv)) | (ActionKind::Upsert, Some(kv)) => {
                        kv.value = Some(value)
                    }
                    _ => {}
                }
            }
            Action::Delete(selector) => attrs.retain(|kv| !selector.matches(&kv.key)),
            Action::Hash(selector) => {
                for kv in attrs.iter_mut().filter(|kv| selector.matches(&kv.key)) {
                    let text = kv.value.as_ref().map(data::value_text).unwrap_or_default();
                    kv.value = Some(data::string_value(data::sha256_hex(text.as_bytes())));
                }
            }
            Action::Extract { key, pattern } => {
                let Some(Value::StringValue(text)) =
                    data::get(attrs, key).and_then(|v| v.value.clone())
                else {
                    continue;
                };
                let Some(caps) = pattern.captures(&text) else {
                    continue;
                };
                for name in pattern.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        data::upsert(attrs, name, data::string_value(m.as_str()));
                    }
                }
            }
            Action::Convert { key, to } => {
                if let Some(kv) = data::get_mut(attrs, key)
                    && let Some(v) = kv.value.as_ref().and_then(|v| convert(v, *to))
                {
                    kv.value = Some(v);
                }
            }
        }
    }
}

/// A value of another type; `None` (left unchanged) when it does not convert.
fn convert(v: &AnyValue, to: ConvertedType) -> Option<AnyValue> {
    let value = match (to, v.value.as_ref()?) {
        (ConvertedType::String, other) => Value::StringValue(data::value_text(&AnyValue {
            value: Some(other.clone()),
        })),
        (ConvertedType::Int, Value::IntValue(i)) => Value::IntValue(*i),
        (ConvertedType::Int, Value::DoubleValue(d)) => Value::IntValue(d.trunc() as i64),
        (ConvertedType::Int, Value::BoolValue(b)) => Value::IntValue(i64::from(*b)),
        (ConvertedType::Int, Value::StringValue(s)) => Value::IntValue(s.trim().parse().ok()?),
        (ConvertedType::Double, Value::IntValue(i)) => Value::DoubleValue(*i as f64),
        (ConvertedType::Double, Value::DoubleValue(d)) => Value::DoubleValue(*d),
        (ConvertedType::Double, Value::BoolValue(b)) => Value::DoubleValue(f64::from(u8::from(*b))),
        (ConvertedType::Double, Value::StringValue(s)) => {
            Value::DoubleValue(s.trim().parse().ok()?)
        }
        _ => return None,
    };
    Some(AnyValue { value: Some(value) })
}

/// The `attributes` processor.
pub struct Attributes {
    actions: Vec<Action>,
}

pub fn build(config: &Config, _ctx: Context) -> Result<Stage, BuildError> {
    Ok(Stage::Request(Arc::new(Attributes {
        actions: compile_actions("actions", &config.actions)?,
    })))
}

impl RequestProcessor for Attributes {
    fn process(&self, request: &mut Request) -> Result<(), Refusal> {
        request.for_each_record_attributes(|attrs| apply(&self.actions, attrs));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Action> {
        let cfg: Config = toml::from_str(text).unwrap();
        compile_actions("actions", &cfg.actions).unwrap()
    }

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    #[test]
    fn insert_update_upsert_follow_presence() {
        let actions = parse(
            r#"
            [[actions]]
            key = "present"
            value = "inserted"
            action = "insert"
            [[actions]]
            key = "absent_insert"
            value = 7
            action = "insert"
            [[actions]]
            key = "absent_update"
            value = true
            action = "update"
            [[actions]]
            key = "present2"
            value = 1.5
            action = "update"
            [[actions]]
            key = "absent_upsert"
            from_attribute = "present"
            action = "upsert"
            "#,
        );
        let mut attrs = vec![kv("present", s("orig")), kv("present2", s("x"))];
        apply(&actions, &mut attrs);
        assert_eq!(
            attrs,
            vec![
                kv("present", s("orig")),
                kv("present2", Value::DoubleValue(1.5)),
                kv("absent_insert", Value::IntValue(7)),
                kv("absent_upsert", s("orig")),
            ]
        );
    }

    #[test]
    fn delete_hash_by_key_and_pattern() {
        let actions = parse(
            r#"
            [[actions]]
            pattern = "^secret\\."
            action = "delete"
            [[actions]]
            key = "user.email"
            action = "hash"
            "#,
        );
        let mut attrs = vec![
            kv("secret.a", s("1")),
            kv("secret.b", s("2")),
            kv("keep", s("3")),
            kv("user.email", s("a@b.c")),
        ];
        apply(&actions, &mut attrs);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0], kv("keep", s("3")));
        // sha256("a@b.c")
        assert_eq!(attrs[1], kv("user.email", s(&data::sha256_hex(b"a@b.c"))));
        assert_eq!(
            data::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn extract_named_groups_and_convert() {
        let actions = parse(
            r#"
            [[actions]]
            key = "http.url"
            pattern = '^(?P<scheme>\w+)://(?P<host>[^/]+)/(?P<path>.*)$'
            action = "extract"
            [[actions]]
            key = "code"
            action = "convert"
            converted_type = "int"
            "#,
        );
        let mut attrs = vec![
            kv("http.url", s("https://example.com/a/b")),
            kv("code", s("404")),
        ];
        apply(&actions, &mut attrs);
        assert_eq!(data::get(&attrs, "scheme").unwrap().value, Some(s("https")));
        assert_eq!(
            data::get(&attrs, "host").unwrap().value,
            Some(s("example.com"))
        );
        assert_eq!(data::get(&attrs, "path").unwrap().value, Some(s("a/b")));
        assert_eq!(
            data::get(&attrs, "code").unwrap().value,
            Some(Value::IntValue(404))
        );
    }

    #[test]
    fn bad_actions_name_the_field() {
        let bad = |text: &str| {
            let cfg: Config = toml::from_str(text).unwrap();
            cfg.validate().unwrap_err()
        };
        let e = bad("[[actions]]\nkey = \"a\"\naction = \"insert\"");
        assert_eq!(e.key, "actions[0]");
        assert!(e.reason.contains("value and from_attribute"), "{e}");
        assert_eq!(bad("[[actions]]\naction = \"delete\"").key, "actions[0]");
        let e = bad("[[actions]]\nkey = \"a\"\npattern = \"(\"\naction = \"extract\"");
        assert_eq!(e.key, "actions[0].pattern");
        assert!(e.reason.contains("invalid regular expression"), "{e}");
        let e = bad("[[actions]]\nkey = \"a\"\npattern = \"a+\"\naction = \"extract\"");
        assert_eq!(e.key, "actions[0].pattern");
        assert!(e.reason.contains("named groups"), "{e}");
        let e = bad("actions = []");
        assert_eq!(
            (e.key.as_str(), e.reason.as_str()),
            ("actions", "must hold at least one action")
        );
    }
}
