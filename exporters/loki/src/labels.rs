//! Loki label names and the label-set string of a stream.

/// `prometheus.NormalizeLabel` as the contrib translator applies it: every character that is
/// not a letter or digit becomes `_`, a leading digit gets a `key_` prefix and a single leading
/// `_` a `key` prefix (`__` is kept). Unlike Go's `unicode.IsLetter`, only ASCII letters are
/// kept: Loki refuses any other label name, which would lose the whole stream.
pub fn normalize_label(name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let mapped: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if mapped.as_bytes()[0].is_ascii_digit() {
        format!("key_{mapped}")
    } else if mapped.starts_with('_') && !mapped.starts_with("__") {
        format!("key{mapped}")
    } else {
        mapped
    }
}

/// True for a name Loki accepts: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Renders labels (already sorted by name, names valid, values non-empty) as the Prometheus
/// label-set string Loki parses: `{job="api", level="ERROR"}`. Values are escaped so the PromQL
/// lexer reads them back exactly (`\\`, `\"`, and control characters).
pub fn label_string(labels: &[(String, String)]) -> String {
    let mut out = String::with_capacity(
        2 + labels
            .iter()
            .map(|(n, v)| n.len() + v.len() + 5)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// Cuts `s` to at most `max` bytes without splitting a character.
pub fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_like_prometheus() {
        assert_eq!(normalize_label("service.name"), "service_name");
        assert_eq!(normalize_label("k8s.pod.name"), "k8s_pod_name");
        assert_eq!(normalize_label("0abc"), "key_0abc");
        assert_eq!(normalize_label("_private"), "key_private");
        assert_eq!(normalize_label("__reserved"), "__reserved");
        assert_eq!(normalize_label("café-1"), "caf__1");
        assert_eq!(normalize_label(""), "");
        assert!(is_valid_name("key_0abc"));
        assert!(!is_valid_name("0abc"));
        assert!(!is_valid_name(""));
    }

    #[test]
    fn label_string_escapes() {
        let labels = vec![
            ("a".to_owned(), "x\"y\\z\nw".to_owned()),
            ("b".to_owned(), "ünï\tcode\u{1}".to_owned()),
        ];
        assert_eq!(
            label_string(&labels),
            r#"{a="x\"y\\z\nw", b="ünï\tcode\u0001"}"#
        );
    }

    #[test]
    fn truncation_keeps_chars_whole() {
        let mut s = "aé".to_owned(); // é is 2 bytes
        truncate_at_char(&mut s, 2);
        assert_eq!(s, "a");
    }
}
