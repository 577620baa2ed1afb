//! The `logfmt` line format exactly as Alloy writes it (contrib `EncodeLogfmt` on
//! `github.com/go-logfmt/logfmt`), quirks included, so existing `| logfmt` queries keep working:
//!
//! * a string body is parsed as logfmt (only its first line); plain text like `hello world`
//!   therefore becomes `hello= world=`, and only a body that fails to parse becomes `msg=...`;
//! * keys that logfmt cannot carry (empty, spaces, `=`, `"`) are skipped with their value;
//! * `traceID`/`spanID`/`severity`/`flags` replace same-named keys of a map body, not of a
//!   parsed string body (Go compares the parsed `[]byte` keys with strings, never equal).

use crate::otlp::{AnyValue, KeyValue, any_value::Value};
use crate::value::{self, kind};

/// A logfmt value, keeping Go's distinction between `string` and `[]byte` values: a string
/// `null` is quoted, bytes never are, and nil bytes print as nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum LogfmtValue {
    Str(String),
    Bytes(Option<String>),
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyVal {
    pub key: String,
    /// False for keys parsed out of a string body (Go `[]byte`): they never match on replace.
    pub replaceable: bool,
    pub value: LogfmtValue,
}

/// Builds key/value pairs for a record body (`bodyToKeyvals`).
pub fn body_keyvals(body: Option<&AnyValue>) -> Vec<KeyVal> {
    match kind(body) {
        None => Vec::new(),
        Some(Value::StringValue(s)) => parse_line(s).unwrap_or_else(|| {
            vec![KeyVal {
                key: "msg".into(),
                replaceable: true,
                value: LogfmtValue::Str((*s).to_owned()),
            }]
        }),
        Some(Value::KvlistValue(_)) => {
            let mut out = Vec::new();
            flatten("", body, &mut out);
            out
        }
        Some(Value::ArrayValue(_)) => {
            let mut out = Vec::new();
            flatten("body", body, &mut out);
            out
        }
        Some(_) => {
            let mut out = Vec::new();
            flatten("msg", body, &mut out);
            out
        }
    }
}

/// `valueToKeyvals`: nested maps and arrays become `key_sub` / `key_0` pairs.
pub fn flatten(key: &str, v: Option<&AnyValue>, out: &mut Vec<KeyVal>) {
    let push = |out: &mut Vec<KeyVal>, value| {
        out.push(KeyVal {
            key: key.to_owned(),
            replaceable: true,
            value,
        })
    };
    let prefix = if key.is_empty() {
        String::new()
    } else {
        format!("{key}_")
    };
    match kind(v) {
        None => {}
        Some(Value::StringValue(s)) => push(out, LogfmtValue::Str((*s).to_owned())),
        Some(Value::BoolValue(b)) => push(out, LogfmtValue::Bool(*b)),
        Some(Value::IntValue(i)) => push(out, LogfmtValue::Int(*i)),
        Some(Value::DoubleValue(f)) => push(out, LogfmtValue::Float(*f)),
        Some(Value::BytesValue(b)) => push(
            out,
            LogfmtValue::Bytes(Some(String::from_utf8_lossy(b).into_owned())),
        ),
        Some(Value::KvlistValue(list)) => {
            for kv in &list.values {
                flatten(&format!("{prefix}{}", kv.key), kv.value.as_ref(), out);
            }
        }
        Some(Value::ArrayValue(arr)) => {
            for (i, item) in arr.values.iter().enumerate() {
                flatten(&format!("{prefix}{i}"), Some(item), out);
            }
        }
        Some(Value::StringValueStrindex(_)) => {}
    }
}

/// Appends attributes as `<prefix><key>=...` pairs in their order.
pub fn push_attributes<'a>(
    prefix: &str,
    attrs: impl Iterator<Item = &'a KeyValue<'a>>,
    out: &mut Vec<KeyVal>,
) {
    for kv in attrs {
        flatten(&format!("{prefix}{}", kv.key), kv.value.as_ref(), out);
    }
}

/// `keyvalsReplaceOrAppend`.
pub fn replace_or_append(keyvals: &mut Vec<KeyVal>, key: &str, value: LogfmtValue) {
    if let Some(kv) = keyvals
        .iter_mut()
        .find(|kv| kv.replaceable && kv.key == key)
    {
        kv.value = value;
        return;
    }
    keyvals.push(KeyVal {
        key: key.to_owned(),
        replaceable: true,
        value,
    });
}

fn invalid_key_char(c: char) -> bool {
    c <= ' ' || c == '=' || c == '"' || c == char::REPLACEMENT_CHARACTER
}

fn needs_quotes(s: &str) -> bool {
    s.chars().any(invalid_key_char)
}

/// Writes the pairs as `logfmt.MarshalKeyvals` does.
pub fn encode(keyvals: &[KeyVal]) -> String {
    let mut out = String::new();
    for kv in keyvals {
        if kv.key.is_empty() || kv.key.chars().any(invalid_key_char) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&kv.key);
        out.push('=');
        match &kv.value {
            LogfmtValue::Str(s) => {
                if s == "null" {
                    out.push_str("\"null\"");
                } else {
                    write_maybe_quoted(&mut out, s);
                }
            }
            LogfmtValue::Bytes(Some(b)) => write_maybe_quoted(&mut out, b),
            LogfmtValue::Bytes(None) => {}
            LogfmtValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            LogfmtValue::Int(i) => out.push_str(&i.to_string()),
            LogfmtValue::Uint(u) => out.push_str(&u.to_string()),
            LogfmtValue::Float(f) => write_maybe_quoted(&mut out, &value::go_float(*f)),
        }
    }
    out
}

fn write_maybe_quoted(out: &mut String, s: &str) {
    if !needs_quotes(s) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            char::REPLACEMENT_CHARACTER => out.push_str("\\ufffd"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `bufio.Scanner` refuses a line of 64 KiB or more; the decoder then reports an error.
const MAX_SCAN_LINE: usize = 64 * 1024;

/// Parses the first line of `body` as logfmt the way `logfmt.Decoder` does. `None` when the
/// decoder would report an error.
pub fn parse_line(body: &str) -> Option<Vec<KeyVal>> {
    let line = match body.find('\n') {
        Some(i) => &body[..i],
        None => body,
    };
    if line.len() >= MAX_SCAN_LINE {
        return None;
    }
    let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    loop {
        // Skip separators (any byte <= ' ').
        while pos < line.len() && line[pos] <= b' ' {
            pos += 1;
        }
        if pos >= line.len() {
            return Some(out);
        }
        let start = pos;
        while pos < line.len() && line[pos] > b' ' && line[pos] != b'=' && line[pos] != b'"' {
            pos += 1;
        }
        if pos == start {
            return None; // `=` or `"` where a key should start
        }
        let key = &line[start..pos];
        if String::from_utf8_lossy(key).contains(char::REPLACEMENT_CHARACTER) {
            return None;
        }
        let key = text(key);
        let mut push = |value: Option<String>| {
            out.push(KeyVal {
                key: key.clone(),
                replaceable: false,
                value: LogfmtValue::Bytes(value),
            })
        };
        if pos >= line.len() || line[pos] <= b' ' {
            push(None);
            continue;
        }
        if line[pos] == b'"' {
            return None;
        }
        // line[pos] == '='
        pos += 1;
        if pos >= line.len() || line[pos] <= b' ' {
            push(None);
            continue;
        }
        if line[pos] == b'"' {
            let open = pos;
            let mut escaped = false;
            let mut has_escape = false;
            let mut close = None;
            for (i, &c) in line.iter().enumerate().skip(open + 1) {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                    has_escape = true;
                } else if c == b'"' {
                    close = Some(i);
                    break;
                }
            }
            let close = close?;
            pos = close + 1;
            let inner = &line[open + 1..close];
            if has_escape {
                push(Some(unquote(inner)?));
            } else if inner.is_empty() {
                push(None);
            } else {
                push(Some(text(inner)));
            }
            continue;
        }
        let vstart = pos;
        while pos < line.len() && line[pos] > b' ' {
            if line[pos] == b'=' || line[pos] == b'"' {
                return None;
            }
            pos += 1;
        }
        push(Some(text(&line[vstart..pos])));
    }
}

/// JSON-style unquoting of a quoted logfmt value that contains escapes (go-logfmt
/// `unquoteBytes`): control characters and unknown escapes are errors.
fn unquote(inner: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(inner).ok()?;
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                c @ ('"' | '\\' | '/' | '\'') => out.push(c),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let first = hex4(&mut chars)?;
                    if (0xD800..0xE000).contains(&first) {
                        // A surrogate: take the pair if the next escape completes it.
                        let mut look = chars.clone();
                        let pair = if look.next() == Some('\\') && look.next() == Some('u') {
                            hex4(&mut look).filter(|lo| (0xDC00..0xE000).contains(lo))
                        } else {
                            None
                        };
                        match (first < 0xDC00, pair) {
                            (true, Some(lo)) => {
                                chars = look;
                                let cp = 0x10000 + ((first - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                            }
                            _ => out.push(char::REPLACEMENT_CHARACTER),
                        }
                    } else {
                        out.push(char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                }
                _ => return None,
            },
            c if (c as u32) < 0x20 || c == '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn hex4(chars: &mut impl Iterator<Item = char>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(body: &str) -> String {
        encode(&body_keyvals(Some(&AnyValue {
            value: Some(Value::StringValue(body)),
        })))
    }

    #[test]
    fn plain_text_body_becomes_bare_keys() {
        assert_eq!(line("hello world"), "hello= world=");
        assert_eq!(line("a=1 b=\"x y\""), "a=1 b=\"x y\"");
        assert_eq!(line("only the first\nline"), "only= the= first=");
        assert_eq!(line(""), "");
    }

    #[test]
    fn unparsable_body_becomes_msg() {
        assert_eq!(line("a=b=c"), "msg=\"a=b=c\"");
        assert_eq!(line("say \"hi\""), "msg=\"say \\\"hi\\\"\"");
        assert_eq!(line("k=\"unterminated"), "msg=\"k=\\\"unterminated\"");
    }

    #[test]
    fn escapes_in_quoted_values() {
        assert_eq!(line(r#"a="x\ty""#), "a=\"x\\ty\"");
        assert_eq!(line(r#"a="\u00e9""#), "a=é");
        assert_eq!(line(r#"a="\q""#), r#"msg="a=\"\\q\"""#);
    }

    #[test]
    fn string_null_is_quoted_and_invalid_keys_skipped() {
        let kvs = vec![
            KeyVal {
                key: "a".into(),
                replaceable: true,
                value: LogfmtValue::Str("null".into()),
            },
            KeyVal {
                key: "bad key".into(),
                replaceable: true,
                value: LogfmtValue::Str("x".into()),
            },
            KeyVal {
                key: "f".into(),
                replaceable: true,
                value: LogfmtValue::Float(1e6),
            },
            KeyVal {
                key: "e".into(),
                replaceable: true,
                value: LogfmtValue::Str(String::new()),
            },
        ];
        assert_eq!(encode(&kvs), "a=\"null\" f=1e+06 e=");
    }

    #[test]
    fn replace_only_hits_map_keys() {
        let mut parsed = parse_line("traceID=abc").unwrap();
        replace_or_append(&mut parsed, "traceID", LogfmtValue::Str("def".into()));
        assert_eq!(encode(&parsed), "traceID=abc traceID=def");
        let mut flat = Vec::new();
        flatten(
            "traceID",
            Some(&AnyValue {
                value: Some(Value::StringValue("abc")),
            }),
            &mut flat,
        );
        replace_or_append(&mut flat, "traceID", LogfmtValue::Str("def".into()));
        assert_eq!(encode(&flat), "traceID=def");
    }
}
