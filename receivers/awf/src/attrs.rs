//! OTLP attribute helpers: typed key-values, and JSON fields flattened into attributes with
//! bounded size (a hostile event cannot produce megabyte attributes or thousands of keys).

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use serde_json::{Map, Value};

/// Longest string value kept (bytes, cut at a character boundary).
pub const MAX_VALUE_BYTES: usize = 4096;
/// Most attributes taken from an event's free-form fields.
pub const MAX_FREE_ATTRIBUTES: usize = 64;
/// Objects nested deeper than this become a JSON string.
const MAX_DEPTH: usize = 4;

pub fn any_str(v: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(truncate(v.into()))),
    }
}

pub fn kv(key: impl Into<String>, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

pub fn kv_str(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_str(v))
}

pub fn kv_i64(key: &str, v: i64) -> KeyValue {
    kv(
        key,
        AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        },
    )
}

pub fn kv_f64(key: &str, v: f64) -> KeyValue {
    kv(
        key,
        AnyValue {
            value: Some(any_value::Value::DoubleValue(v)),
        },
    )
}

pub fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(
        key,
        AnyValue {
            value: Some(any_value::Value::BoolValue(v)),
        },
    )
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_VALUE_BYTES {
        let mut cut = MAX_VALUE_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn scalar(v: &Value) -> Option<AnyValue> {
    let value = match v {
        Value::Null => return None,
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => any_value::Value::StringValue(truncate(s.clone())),
        Value::Array(_) | Value::Object(_) => {
            any_value::Value::StringValue(truncate(v.to_string()))
        }
    };
    Some(AnyValue { value: Some(value) })
}

/// Appends `fields` as attributes: nested objects become dotted keys, arrays of scalars become
/// array values, anything deeper a JSON string; nulls are skipped. Keys for which `taken`
/// returns true (already set from known fields) are skipped. Returns how many were dropped
/// for exceeding [`MAX_FREE_ATTRIBUTES`].
pub fn append_json(
    out: &mut Vec<KeyValue>,
    fields: &Map<String, Value>,
    taken: &dyn Fn(&str) -> bool,
) -> u32 {
    let mut budget = MAX_FREE_ATTRIBUTES;
    let mut dropped = 0;
    for (k, v) in fields {
        if taken(k) {
            continue;
        }
        flatten(out, k.clone(), v, 0, &mut budget, &mut dropped);
    }
    dropped
}

fn flatten(
    out: &mut Vec<KeyValue>,
    key: String,
    v: &Value,
    depth: usize,
    budget: &mut usize,
    dropped: &mut u32,
) {
    match v {
        Value::Object(m) if depth < MAX_DEPTH => {
            for (k, inner) in m {
                flatten(out, format!("{key}.{k}"), inner, depth + 1, budget, dropped);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
            push(out, key, array(items), budget, dropped);
        }
        other => {
            if let Some(value) = scalar(other) {
                push(out, key, value, budget, dropped);
            }
        }
    }
}

fn array(items: &[Value]) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().filter_map(scalar).take(128).collect(),
        })),
    }
}

fn push(out: &mut Vec<KeyValue>, key: String, v: AnyValue, budget: &mut usize, dropped: &mut u32) {
    if *budget == 0 {
        *dropped += 1;
        return;
    }
    *budget -= 1;
    out.push(kv(key, v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(kvs: &[KeyValue]) -> Vec<&str> {
        let mut k: Vec<&str> = kvs.iter().map(|k| k.key.as_str()).collect();
        k.sort_unstable();
        k
    }

    fn get<'a>(kvs: &'a [KeyValue], key: &str) -> &'a any_value::Value {
        let kv = kvs.iter().find(|k| k.key == key).expect(key);
        kv.value.as_ref().and_then(|v| v.value.as_ref()).expect(key)
    }

    #[test]
    fn flattens_nested_objects_and_arrays() {
        let fields =
            json!({"a":{"b":{"c":1}},"list":[1,"x",true],"deep":[{"x":1}],"n":null,"skip":1});
        let mut out = Vec::new();
        let dropped = append_json(&mut out, fields.as_object().unwrap(), &|k| k == "skip");
        assert_eq!(dropped, 0);
        assert_eq!(keys(&out), vec!["a.b.c", "deep", "list"]);
        let any_value::Value::ArrayValue(arr) = get(&out, "list") else {
            panic!("list should be an array");
        };
        assert_eq!(arr.values.len(), 3);
        let any_value::Value::StringValue(s) = get(&out, "deep") else {
            panic!("deep should be a JSON string");
        };
        assert_eq!(s, r#"[{"x":1}]"#);
    }

    #[test]
    fn bounds_count_and_size() {
        let mut m = Map::new();
        for i in 0..100 {
            m.insert(format!("k{i:03}"), json!("é".repeat(3000)));
        }
        let mut out = Vec::new();
        let dropped = append_json(&mut out, &m, &|_| false);
        assert_eq!(out.len(), MAX_FREE_ATTRIBUTES);
        assert_eq!(dropped, 100 - MAX_FREE_ATTRIBUTES as u32);
        let any_value::Value::StringValue(s) = get(&out, "k000") else {
            panic!("k000 should be a string")
        };
        assert!(s.len() <= MAX_VALUE_BYTES && s.len() >= MAX_VALUE_BYTES - 1);
    }
}
