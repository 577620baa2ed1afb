//! Redaction (`docs/awf-events.md` §3, Redaction): workflow inputs/outputs and configured keys are dropped or replaced by
//! a hash before an event is converted, so they never leave Sluice.

use crate::event::WorkflowEvent;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// Keys holding workflow/agent inputs and outputs, redacted unless `keep_inputs_outputs`.
pub const IO_KEYS: &[&str] = &[
    "input",
    "inputs",
    "output",
    "outputs",
    "prompt",
    "completion",
    "messages",
];

/// What happens to a redacted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedactionMode {
    /// The key is removed.
    #[default]
    Drop,
    /// The value is replaced by `sha256:<32 hex>` of the salted value: still joinable, not
    /// readable.
    Hash,
}

/// Applies one redaction policy to events.
#[derive(Debug, Clone)]
pub struct Redactor {
    mode: RedactionMode,
    keys: HashSet<String>,
    salt: String,
}

impl Redactor {
    /// `keep_inputs_outputs = false` adds [`IO_KEYS`] to `keys`.
    pub fn new(
        mode: RedactionMode,
        keys: &[String],
        keep_inputs_outputs: bool,
        salt: &str,
    ) -> Redactor {
        let mut set: HashSet<String> = keys.iter().cloned().collect();
        if !keep_inputs_outputs {
            set.extend(IO_KEYS.iter().map(|k| (*k).to_owned()));
        }
        Redactor {
            mode,
            keys: set,
            salt: salt.to_owned(),
        }
    }

    /// A redactor that changes nothing.
    pub fn none() -> Redactor {
        Redactor::new(RedactionMode::Drop, &[], true, "")
    }

    /// Redacts matching keys at any depth of the event's free-form fields, and the error
    /// message when `error` is a redacted key. Returns how many values were redacted.
    pub fn apply(&self, event: &mut WorkflowEvent) -> usize {
        if self.keys.is_empty() {
            return 0;
        }
        let mut n = self.redact_map(&mut event.attributes, 0);
        if self.keys.contains("error")
            && let Some(err) = &mut event.error
        {
            err.message = match self.mode {
                RedactionMode::Drop => "[redacted]".to_owned(),
                RedactionMode::Hash => self.hash(&Value::String(std::mem::take(&mut err.message))),
            };
            n += 1;
        }
        n
    }

    fn redact_map(&self, map: &mut Map<String, Value>, depth: usize) -> usize {
        let mut n = 0;
        let hits: Vec<String> = map
            .keys()
            .filter(|k| self.keys.contains(k.as_str()))
            .cloned()
            .collect();
        for k in hits {
            n += 1;
            match self.mode {
                RedactionMode::Drop => {
                    map.remove(&k);
                }
                RedactionMode::Hash => {
                    if let Some(v) = map.get_mut(&k) {
                        *v = Value::String(self.hash(v));
                    }
                }
            }
        }
        // Bounded depth: a hostile, deeply nested document cannot blow the stack.
        if depth < 32 {
            for v in map.values_mut() {
                n += self.redact_value(v, depth + 1);
            }
        }
        n
    }

    fn redact_value(&self, v: &mut Value, depth: usize) -> usize {
        match v {
            Value::Object(m) => self.redact_map(m, depth),
            Value::Array(items) if depth < 32 => items
                .iter_mut()
                .map(|i| self.redact_value(i, depth + 1))
                .sum(),
            _ => 0,
        }
    }

    fn hash(&self, v: &Value) -> String {
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        match v {
            Value::String(s) => h.update(s.as_bytes()),
            other => h.update(other.to_string().as_bytes()),
        }
        let d = h.finalize();
        format!("sha256:{}", hex::encode(&d[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> WorkflowEvent {
        WorkflowEvent::from_value(v).unwrap()
    }

    #[test]
    fn inputs_and_outputs_are_dropped_by_default() {
        let r = Redactor::new(RedactionMode::Drop, &[], false, "");
        let mut e = event(json!({"type":"workflow.started","input":{"q":"secret"},
            "data":{"output":"x","keep":1},"nested":[{"prompt":"p","ok":2}]}));
        assert_eq!(r.apply(&mut e), 3);
        assert_eq!(
            Value::Object(e.attributes),
            json!({"data":{"keep":1},"nested":[{"ok":2}]})
        );
    }

    #[test]
    fn configured_keys_are_hashed() {
        let r = Redactor::new(
            RedactionMode::Hash,
            &["user_email".into(), "error".into()],
            true,
            "salt",
        );
        let mut e =
            event(json!({"type":"x","user_email":"a@b.c","input":"kept","error":"for a@b.c"}));
        assert_eq!(r.apply(&mut e), 2);
        let hashed = e.attributes["user_email"].as_str().unwrap().to_owned();
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 7 + 32,
            "{hashed}"
        );
        assert!(!hashed.contains("a@b.c"));
        assert_eq!(e.attributes["input"], json!("kept"));
        assert!(e.error.unwrap().message.starts_with("sha256:"));
        // Same value, same salt: same hash (joinable across events).
        let mut e2 = event(json!({"type":"x","user_email":"a@b.c"}));
        r.apply(&mut e2);
        assert_eq!(e2.attributes["user_email"], json!(hashed));
    }

    #[test]
    fn none_changes_nothing() {
        let mut e = event(json!({"type":"x","input":"i"}));
        assert_eq!(Redactor::none().apply(&mut e), 0);
        assert_eq!(e.attributes["input"], json!("i"));
    }
}
