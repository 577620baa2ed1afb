//! OTLP `AnyValue` rendering with the exact text Alloy produces, because LogQL queries and
//! dashboards written against Alloy's output match on these strings.
//!
//! Alloy renders values with Go: `pcommon.Value.AsString()` for label values, `encoding/json`
//! for JSON lines (HTML-safe escaping, sorted map keys, ES6 float text) and `fmt.Sprint` for
//! logfmt values. Each is reproduced here.

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A value Go's `encoding/json` refuses (NaN or ±Inf): Alloy drops such a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedValue;

/// The value's variant, treating the profiling-only string index as absent (as the spec asks
/// non-profiling receivers to do).
pub fn kind(v: Option<&AnyValue>) -> Option<&Value> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValueStrindex(_)) | None => None,
        Some(other) => Some(other),
    }
}

/// First attribute with this key, as Go's `pcommon.Map.Get` finds it.
pub fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

/// `pcommon.Value.AsString()`.
pub fn as_string(v: Option<&AnyValue>) -> Cow<'_, str> {
    match kind(v) {
        None => Cow::Borrowed(""),
        Some(Value::StringValue(s)) => Cow::Borrowed(s.as_str()),
        Some(Value::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(Value::DoubleValue(f)) => Cow::Owned(if f.is_finite() {
            es6_float(*f)
        } else {
            format!("json: unsupported value: {}", go_special_float(*f))
        }),
        Some(Value::BytesValue(b)) => {
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::ArrayValue(_)) | Some(Value::KvlistValue(_)) => {
            // Go ignores the marshal error here and yields "".
            let mut out = String::new();
            match write_json_value(&mut out, v) {
                Ok(()) => Cow::Owned(out),
                Err(UnsupportedValue) => Cow::Borrowed(""),
            }
        }
        Some(Value::StringValueStrindex(_)) => Cow::Borrowed(""),
    }
}

fn go_special_float(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// Splits Rust's shortest round-trip `{:e}` text into mantissa and decimal exponent.
fn shortest_exp_parts(f: f64) -> (String, i32) {
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => (mantissa.to_owned(), exp.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

/// Float text as Go's `encoding/json` writes it (ES6 number-to-string): plain decimal unless
/// the magnitude is below 1e-6 or at least 1e21, then `1e+21` / `1e-7`.
pub fn es6_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (mantissa, exp) = shortest_exp_parts(f);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{}", exp.unsigned_abs())
    } else {
        format!("{f}")
    }
}

/// Float text as Go's `fmt.Sprint` writes it (`%v` = shortest `%g`): exponent form when the
/// decimal exponent is below -4 or at least 6 (`1e+06`, `1.5e-05`), plain decimal otherwise.
pub fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return go_special_float(f).to_owned();
    }
    if f == 0.0 {
        return format!("{f}");
    }
    let (mantissa, exp) = shortest_exp_parts(f);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        format!("{f}")
    }
}

/// Appends `s` as a JSON string the way Go's `encoding/json` escapes it (HTML-safe).
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `json.Marshal(value.AsRaw())`: maps as objects with sorted keys (the last of
/// duplicate keys wins), bytes as base64, an empty value as `null`.
pub fn write_json_value(out: &mut String, v: Option<&AnyValue>) -> Result<(), UnsupportedValue> {
    match kind(v) {
        None => out.push_str("null"),
        Some(Value::StringValue(s)) => write_json_str(out, s),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(f)) => {
            if !f.is_finite() {
                return Err(UnsupportedValue);
            }
            out.push_str(&es6_float(*f));
        }
        Some(Value::BytesValue(b)) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        Some(Value::ArrayValue(arr)) => {
            out.push('[');
            for (i, item) in arr.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_value(out, Some(item))?;
            }
            out.push(']');
        }
        Some(Value::KvlistValue(list)) => {
            write_json_map(out, list.values.iter())?;
        }
        Some(Value::StringValueStrindex(_)) => out.push_str("null"),
    }
    Ok(())
}

/// Appends a JSON object of attributes as Go marshals `map[string]any` (sorted, last wins).
pub fn write_json_map<'a>(
    out: &mut String,
    attrs: impl Iterator<Item = &'a KeyValue>,
) -> Result<(), UnsupportedValue> {
    let sorted: BTreeMap<&str, Option<&AnyValue>> = attrs
        .map(|kv| (kv.key.as_str(), kv.value.as_ref()))
        .collect();
    out.push('{');
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, k);
        out.push(':');
        write_json_value(out, v)?;
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn s(v: &str) -> AnyValue {
        AnyValue {
            value: Some(Value::StringValue(v.into())),
        }
    }
    fn d(v: f64) -> AnyValue {
        AnyValue {
            value: Some(Value::DoubleValue(v)),
        }
    }

    #[test]
    fn es6_floats_match_go_json() {
        assert_eq!(es6_float(1.0), "1");
        assert_eq!(es6_float(1.5), "1.5");
        assert_eq!(es6_float(-0.25), "-0.25");
        assert_eq!(es6_float(1e20), "100000000000000000000");
        assert_eq!(es6_float(1e21), "1e+21");
        assert_eq!(es6_float(1.5e-7), "1.5e-7");
        assert_eq!(es6_float(1e-10), "1e-10");
        assert_eq!(es6_float(0.000001), "0.000001");
        assert_eq!(es6_float(0.0), "0");
    }

    #[test]
    fn go_sprint_floats() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(1e100), "1e+100");
        assert_eq!(go_float(f64::NAN), "NaN");
        assert_eq!(go_float(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn json_strings_are_html_safe_like_go() {
        let mut out = String::new();
        write_json_str(&mut out, "a<b>&\"\\\n\t\u{1}\u{8}é\u{2028}\u{7f}");
        assert_eq!(
            out,
            r#""a\u003cb\u003e\u0026\"\\\n\t\u0001\bé\u2028"#.to_owned() + "\u{7f}\""
        );
    }

    #[test]
    fn as_string_forms() {
        assert_eq!(as_string(Some(&s("x"))), "x");
        assert_eq!(as_string(Some(&d(2.5))), "2.5");
        assert_eq!(
            as_string(Some(&d(f64::INFINITY))),
            "json: unsupported value: +Inf"
        );
        assert_eq!(as_string(None), "");
        let bytes = AnyValue {
            value: Some(Value::BytesValue(vec![1, 2, 3])),
        };
        assert_eq!(as_string(Some(&bytes)), "AQID");
        let map = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    KeyValue {
                        key: "z".into(),
                        value: Some(s("1")),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "a".into(),
                        value: Some(AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue {
                                values: vec![d(1.0), AnyValue { value: None }],
                            })),
                        }),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "z".into(),
                        value: Some(s("2")),
                        ..Default::default()
                    },
                ],
            })),
        };
        assert_eq!(as_string(Some(&map)), r#"{"a":[1,null],"z":"2"}"#);
    }

    #[test]
    fn json_refuses_nan() {
        let mut out = String::new();
        assert_eq!(
            write_json_value(&mut out, Some(&d(f64::NAN))),
            Err(UnsupportedValue)
        );
    }
}
