//! OTLP `AnyValue` rendering with the exact text Alloy produces, because LogQL queries and
//! dashboards written against Alloy's output match on these strings.
//!
//! Alloy renders values with Go: `pcommon.Value.AsString()` for label values, `encoding/json`
//! for JSON lines (HTML-safe escaping, sorted map keys, ES6 float text) and `fmt.Sprint` for
//! logfmt values. Each is reproduced here.

use crate::otlp::{AnyValue, KeyValue, any_value::Value};
use base64::Engine;
use std::borrow::Cow;
use std::fmt::Write;

/// A value Go's `encoding/json` refuses (NaN or ±Inf): Alloy drops such a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedValue;

/// The value's variant, treating the profiling-only string index as absent (as the spec asks
/// non-profiling receivers to do).
pub fn kind<'v, 'a>(v: Option<&'v AnyValue<'a>>) -> Option<&'v Value<'a>> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValueStrindex(_)) | None => None,
        Some(other) => Some(other),
    }
}

/// First attribute with this key, as Go's `pcommon.Map.Get` finds it.
pub fn get<'v, 'a>(attrs: &'v [KeyValue<'a>], key: &str) -> Option<&'v KeyValue<'a>> {
    attrs.iter().find(|kv| kv.key == key)
}

/// `pcommon.Value.AsString()`.
pub fn as_string<'v>(v: Option<&'v AnyValue<'_>>) -> Cow<'v, str> {
    match kind(v) {
        None => Cow::Borrowed(""),
        Some(Value::StringValue(s)) => Cow::Borrowed(s),
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

/// Bytes that may need an escape in [`write_json_str`]: control bytes, `"`, `\\`, the
/// HTML-unsafe `<`, `>`, `&`, and 0xE2, the first byte of U+2028 and U+2029. Everything else
/// (including every other byte of multi-byte characters) is copied as it is.
static MAY_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[b'&' as usize] = true;
    table[0xE2] = true;
    table
};

/// [`MAY_ESCAPE`] as comparisons, so that a fixed-size run of them compiles to vector
/// instructions: `"` and `&` differ only in bit 2, `<` and `>` only in bit 1.
#[inline(always)]
fn lane_may_escape(b: u8) -> bool {
    (b < 0x20) | ((b & !0x04) == b'"') | ((b & !0x02) == b'<') | (b == b'\\') | (b == 0xE2)
}

/// Whether any of `N` bytes may escape; no early exit, so the loop is one vector compare.
#[inline(always)]
fn block_may_escape<const N: usize>(block: &[u8; N]) -> bool {
    block.iter().fold(false, |any, &b| any | lane_may_escape(b))
}

/// Whether the `N` bytes at `at` may escape; true past the end.
#[inline(always)]
fn block_may_escape_at<const N: usize>(bytes: &[u8], at: usize) -> bool {
    bytes
        .get(at..at + N)
        .and_then(|b| <&[u8; N]>::try_from(b).ok())
        .is_none_or(block_may_escape)
}

/// Whether any byte of `bytes` is in [`MAY_ESCAPE`]: 16-byte blocks, the last one overlapping
/// the one before; shorter strings as two overlapping 8-byte blocks or byte by byte.
#[inline(always)]
fn may_escape(bytes: &[u8]) -> bool {
    let len = bytes.len();
    if len >= 16 {
        (0..len / 16).any(|i| block_may_escape_at::<16>(bytes, i * 16))
            || block_may_escape_at::<16>(bytes, len - 16)
    } else if len >= 8 {
        block_may_escape_at::<8>(bytes, 0) || block_may_escape_at::<8>(bytes, len - 8)
    } else {
        bytes.iter().any(|&b| lane_may_escape(b))
    }
}

/// Appends `s` as a JSON string the way Go's `encoding/json` escapes it (HTML-safe). Most
/// strings need no escape: one vectorised scan finds that and the string is copied whole.
/// Otherwise the bytes are walked and the runs between escapes copied.
#[inline]
pub fn write_json_str(out: &mut String, s: &str) {
    if may_escape(s.as_bytes()) {
        return write_escaped_json_str(out, s);
    }
    out.reserve(s.len() + 2);
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// [`write_json_str`] for a string with bytes that may need an escape.
#[inline(never)]
fn write_escaped_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !block_may_escape_at::<16>(bytes, i) {
            i += 16;
            continue;
        }
        let b = bytes[i];
        if !MAY_ESCAPE[b as usize] {
            i += 1;
            continue;
        }
        let (escape, len): (&str, usize) = match b {
            b'"' => ("\\\"", 1),
            b'\\' => ("\\\\", 1),
            b'\n' => ("\\n", 1),
            b'\r' => ("\\r", 1),
            b'\t' => ("\\t", 1),
            0x08 => ("\\b", 1),
            0x0c => ("\\f", 1),
            b'<' => ("\\u003c", 1),
            b'>' => ("\\u003e", 1),
            b'&' => ("\\u0026", 1),
            0xE2 => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(0x80), Some(0xA8)) => ("\\u2028", 3),
                (Some(0x80), Some(0xA9)) => ("\\u2029", 3),
                // Another character starting with 0xE2: copied as it is.
                _ => {
                    i += 1;
                    continue;
                }
            },
            // The other control bytes.
            _ => ("", 1),
        };
        // `start` and `i` sit on character boundaries: escapes start at ASCII or 0xE2 bytes.
        out.push_str(s.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        i += len;
        start = i;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// Roughly the length of a value as JSON, for sizing a buffer: a string's length plus room
/// for a few escapes, a fixed guess for anything else.
pub fn json_len_estimate(v: Option<&AnyValue>) -> usize {
    match kind(v) {
        Some(Value::StringValue(s)) => s.len() + 8,
        _ => 24,
    }
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
    attrs: impl Iterator<Item = &'a KeyValue<'a>>,
) -> Result<(), UnsupportedValue> {
    SortedMap::new(attrs).write(out)
}

/// How many entries [`SortedMap`] sorts without allocating: more than a record usually has.
const SORTED_ON_STACK: usize = 16;

/// Map entries in key order, as Go's `encoding/json` writes a map: collected once, on the
/// stack for the usual handful of attributes (a line is written for every record).
pub struct SortedMap<'v, 'a> {
    stack: [(&'v str, Option<&'v AnyValue<'a>>); SORTED_ON_STACK],
    heap: Vec<(&'v str, Option<&'v AnyValue<'a>>)>,
    len: usize,
    /// Every key differs from the next one, so no entry is skipped as an earlier duplicate.
    unique: bool,
}

impl<'v, 'a> SortedMap<'v, 'a> {
    pub fn new(attrs: impl Iterator<Item = &'v KeyValue<'a>>) -> SortedMap<'v, 'a> {
        let mut map = SortedMap {
            stack: [("", None); SORTED_ON_STACK],
            heap: Vec::new(),
            len: 0,
            unique: true,
        };
        for kv in attrs {
            let entry = (kv.key, kv.value.as_ref());
            match map.stack.get_mut(map.len) {
                Some(slot) => *slot = entry,
                None => {
                    if map.heap.is_empty() {
                        map.heap.extend_from_slice(&map.stack);
                    }
                    map.heap.push(entry);
                }
            }
            map.len += 1;
        }
        // Senders mostly list attributes in the same order, often already sorted: one pass
        // finds that, and that no key repeats, without sorting or looking for duplicates.
        let entries = map.entries_mut();
        if !entries.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            // Stable: of equal keys the last one stays last, and that one is written.
            entries.sort_by(|a, b| a.0.cmp(b.0));
            map.unique = false;
        }
        map
    }

    fn entries_mut(&mut self) -> &mut [(&'v str, Option<&'v AnyValue<'a>>)] {
        if self.heap.is_empty() {
            &mut self.stack[..self.len]
        } else {
            &mut self.heap
        }
    }

    fn entries(&self) -> &[(&'v str, Option<&'v AnyValue<'a>>)] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Roughly the length of the object as JSON, for sizing a buffer.
    pub fn json_len_estimate(&self) -> usize {
        self.entries()
            .iter()
            .map(|(k, v)| k.len() + 4 + json_len_estimate(*v))
            .sum()
    }

    pub fn write(&self, out: &mut String) -> Result<(), UnsupportedValue> {
        let sorted = self.entries();
        out.push('{');
        let mut first = true;
        for (i, (k, v)) in sorted.iter().enumerate() {
            if !self.unique && sorted.get(i + 1).is_some_and(|next| next.0 == *k) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            write_json_str(out, k);
            out.push(':');
            write_json_value(out, *v)?;
        }
        out.push('}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{ArrayValue, KeyValueList};

    fn s(v: &str) -> AnyValue<'_> {
        AnyValue {
            value: Some(Value::StringValue(v)),
        }
    }
    fn d(v: f64) -> AnyValue<'static> {
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

    /// The character-by-character escaper `write_json_str` replaced, kept as the reference.
    fn reference_json_str(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn json_strings_match_the_per_character_escaper() {
        let samples = [
            "",
            "plain ascii",
            "\u{2028}\u{2029}\u{2027}\u{202a}€—…",
            "ends with \u{2028}",
            "tab\tnew\nline\r\u{0}\u{1f}\u{7f}",
            "<script>&amp;\"q\"\\",
            "日本語 é ☃ 😀 \u{e2}",
        ];
        for s in samples {
            let mut out = String::new();
            write_json_str(&mut out, s);
            assert_eq!(out, reference_json_str(s), "{s:?}");
        }
        // Every character of the first three Unicode planes' interesting ranges, alone and
        // between ASCII.
        for c in (0u32..0x3000)
            .chain(0xfff0..0x10000)
            .filter_map(char::from_u32)
        {
            let s = format!("a{c}b{c}");
            let mut out = String::new();
            write_json_str(&mut out, &s);
            assert_eq!(out, reference_json_str(&s), "{c:?}");
        }
    }

    #[test]
    fn long_json_strings_match_the_per_character_escaper() {
        // Runs longer than the 16-byte block scan, with the character at every offset.
        let pad = "0123456789abcdefghij";
        for c in (0u32..0x3000)
            .chain(0xfff0..0x10000)
            .filter_map(char::from_u32)
        {
            for cut in 0..17 {
                let s = format!("{}{c}{pad}{c}{}", &pad[..cut], &pad[cut..]);
                let mut out = String::new();
                write_json_str(&mut out, &s);
                assert_eq!(out, reference_json_str(&s), "{c:?} at {cut}");
            }
        }
        // Every byte at every offset of every length up to 40, among bytes that need none.
        for b in 0u8..=0xff {
            for len in 1..40 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(may_escape(&bytes), MAY_ESCAPE[usize::from(b)], "{b:#x}");
                }
            }
            assert_eq!(lane_may_escape(b), MAY_ESCAPE[usize::from(b)], "{b:#x}");
        }
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
            value: Some(Value::BytesValue(&[1, 2, 3])),
        };
        assert_eq!(as_string(Some(&bytes)), "AQID");
        let map = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    KeyValue {
                        key: "z",
                        value: Some(s("1")),
                    },
                    KeyValue {
                        key: "a",
                        value: Some(AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue {
                                values: vec![d(1.0), AnyValue { value: None }],
                            })),
                        }),
                    },
                    KeyValue {
                        key: "z",
                        value: Some(s("2")),
                    },
                ],
            })),
        };
        assert_eq!(as_string(Some(&map)), r#"{"a":[1,null],"z":"2"}"#);
    }

    #[test]
    fn maps_longer_than_the_stack_part_sort_and_keep_the_last_duplicate() {
        let keys: Vec<String> = (0..40).rev().map(|i| format!("k{:02}", i % 20)).collect();
        let values: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let attrs: Vec<KeyValue> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| KeyValue {
                key: k,
                value: Some(s(v)),
            })
            .collect();
        for n in [0, 1, SORTED_ON_STACK, SORTED_ON_STACK + 1, 40] {
            let mut out = String::new();
            write_json_map(&mut out, attrs[..n].iter()).unwrap();
            // The reference: a map that keeps the last value of each key, in key order.
            let expected: std::collections::BTreeMap<&str, String> = attrs[..n]
                .iter()
                .map(|kv| (kv.key, as_string(kv.value.as_ref()).into_owned()))
                .collect();
            let expected = expected
                .iter()
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(out, format!("{{{expected}}}"), "{n} entries");
        }
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
