//! The Sluice TOML being built: tables whose every line remembers the Alloy origin it came
//! from, and the TOML spelling of keys, strings and floats.

use super::Origin;

/// A TOML table being built: values first, then sub-tables, each with its Alloy origin.
#[derive(Debug, Clone, Default)]
pub(super) struct Table {
    pub(super) vals: Vec<(String, String, Origin)>,
    pub(super) tables: Vec<(String, Table, Origin)>,
}

impl Table {
    pub(super) fn set(&mut self, key: &str, rendered: String, origin: Origin) {
        self.vals.retain(|(k, _, _)| k != key);
        self.vals.push((key.to_string(), rendered, origin));
    }

    pub(super) fn table(&mut self, key: &str, origin: Origin) -> &mut Table {
        let idx = match self.tables.iter().position(|(k, _, _)| k == key) {
            Some(i) => i,
            None => {
                self.tables
                    .push((key.to_string(), Table::default(), origin));
                self.tables.len() - 1
            }
        };
        &mut self.tables[idx].1
    }

    pub(super) fn is_empty(&self) -> bool {
        self.vals.is_empty() && self.tables.is_empty()
    }

    pub(super) fn has_key_ignore_case(&self, key: &str) -> bool {
        self.vals
            .iter()
            .any(|(k, _, _)| k.eq_ignore_ascii_case(key))
    }

    pub(super) fn render(&self, path: &str, out: &mut Out) {
        for (k, v, origin) in &self.vals {
            out.line(format!("{} = {v}", toml_key(k)), origin.clone());
        }
        for (k, t, origin) in &self.tables {
            let p = format!("{path}.{}", toml_key(k));
            out.line(format!("[{p}]"), origin.clone());
            t.render(&p, out);
        }
    }
}

#[derive(Default)]
pub(super) struct Out {
    pub(super) lines: Vec<(String, Origin)>,
}

impl Out {
    pub(super) fn line(&mut self, text: String, origin: Origin) {
        for l in text.split('\n') {
            self.lines.push((l.to_string(), origin.clone()));
        }
    }
}

pub(super) fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml_string(k)
    }
}

/// A TOML basic string (TOML 1.0 "String"): quotes, backslashes and control characters escaped.
pub(super) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn toml_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}
