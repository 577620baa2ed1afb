//! Relabeling with Prometheus' semantics (Prometheus configuration docs, `<relabel_config>`):
//! the values of `source_labels` are joined with `separator` and matched against `regex`,
//! which is anchored at both ends; `replacement` may refer to its groups as `$1`, `${1}` or
//! `$name`. A label set to the empty string is removed.

use crate::config::is_label_name;
use regex::Regex;
use serde::Deserialize;
use sluice_core::InvalidConfig;
use std::collections::BTreeMap;

/// A target's or a sample's labels, `__name__` included for samples.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Sets `target_label` to the expanded `replacement` when `regex` matches.
    #[default]
    Replace,
    /// Drops the target / sample unless `regex` matches.
    Keep,
    /// Drops the target / sample when `regex` matches.
    Drop,
    /// Copies every label whose name matches `regex` to the name `replacement` expands to.
    Labelmap,
    /// Removes every label whose name matches `regex`.
    Labeldrop,
    /// Removes every label whose name does not match `regex`.
    Labelkeep,
    /// Sets `target_label` to the lower-cased joined source values.
    Lowercase,
    /// Sets `target_label` to the upper-cased joined source values.
    Uppercase,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Default `;`.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Default `(.*)`; anchored at both ends.
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default)]
    pub target_label: Option<String>,
    /// Default `$1`.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

impl RelabelConfig {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        anchored(&self.regex)?;
        for (i, name) in self.source_labels.iter().enumerate() {
            if !is_label_name(name) {
                return Err(InvalidConfig::new(
                    format!("source_labels[{i}]"),
                    format!("{name:?} is not a valid label name"),
                ));
            }
        }
        let target = self.target_label.as_deref().unwrap_or("");
        match self.action {
            Action::Replace | Action::Lowercase | Action::Uppercase => {
                if target.is_empty() {
                    return Err(InvalidConfig::new(
                        "target_label",
                        "is required by this action",
                    ));
                }
                // A template (`$1`) is checked once expanded, as Prometheus does.
                let templated = self.action == Action::Replace && target.contains('$');
                if !templated && !is_label_name(target) {
                    return Err(InvalidConfig::new(
                        "target_label",
                        format!("{target:?} is not a valid label name"),
                    ));
                }
            }
            Action::Labelmap => {
                if !self.replacement.contains('$') && !is_label_name(&self.replacement) {
                    return Err(InvalidConfig::new(
                        "replacement",
                        format!("{:?} is not a valid label name", self.replacement),
                    ));
                }
            }
            Action::Labeldrop | Action::Labelkeep => {
                if !self.source_labels.is_empty() || !target.is_empty() {
                    return Err(InvalidConfig::new(
                        "action",
                        "labeldrop and labelkeep take only regex (no source_labels or target_label)",
                    ));
                }
            }
            Action::Keep | Action::Drop => {}
        }
        Ok(())
    }
}

/// Compiles `regex` anchored at both ends; a refusal names the rule's `regex` key.
fn anchored(regex: &str) -> Result<Regex, InvalidConfig> {
    Regex::new(&format!("^(?:{regex})$"))
        .map_err(|e| InvalidConfig::new("regex", format!("invalid regular expression: {e}")))
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    config: RelabelConfig,
    regex: Regex,
}

/// Compiles validated rules (an invalid regex is a config error, caught by `validate`).
pub fn compile(configs: &[RelabelConfig]) -> Result<Vec<Rule>, InvalidConfig> {
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.validate().map_err(|e| e.under(&format!("[{i}]")))?;
            let regex = anchored(&c.regex).map_err(|e| e.under(&format!("[{i}]")))?;
            Ok(Rule {
                config: c.clone(),
                regex,
            })
        })
        .collect()
}

fn set(labels: &mut Labels, name: &str, value: String) {
    if value.is_empty() {
        labels.remove(name);
    } else {
        labels.insert(name.to_owned(), value);
    }
}

/// Applies `rules` in order; `false` when a rule drops the labels' owner.
pub fn apply(rules: &[Rule], labels: &mut Labels) -> bool {
    rules.iter().all(|rule| rule.apply(labels))
}

impl Rule {
    fn joined(&self, labels: &Labels) -> String {
        let values: Vec<&str> = self
            .config
            .source_labels
            .iter()
            .map(|name| labels.get(name).map(String::as_str).unwrap_or(""))
            .collect();
        values.join(&self.config.separator)
    }

    fn apply(&self, labels: &mut Labels) -> bool {
        let c = &self.config;
        let target = c.target_label.as_deref().unwrap_or("");
        match c.action {
            Action::Keep => self.regex.is_match(&self.joined(labels)),
            Action::Drop => !self.regex.is_match(&self.joined(labels)),
            Action::Replace => {
                let value = self.joined(labels);
                let Some(caps) = self.regex.captures(&value) else {
                    return true;
                };
                let mut name = String::new();
                caps.expand(target, &mut name);
                if !is_label_name(&name) {
                    labels.remove(target);
                    return true;
                }
                let mut result = String::new();
                caps.expand(&c.replacement, &mut result);
                if result.is_empty() {
                    labels.remove(target);
                } else {
                    labels.insert(name, result);
                }
                true
            }
            Action::Lowercase => {
                let value = self.joined(labels).to_lowercase();
                set(labels, target, value);
                true
            }
            Action::Uppercase => {
                let value = self.joined(labels).to_uppercase();
                set(labels, target, value);
                true
            }
            Action::Labelmap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter(|(name, _)| self.regex.is_match(name))
                    .map(|(name, value)| {
                        let new = self.regex.replace_all(name, c.replacement.as_str());
                        (new.into_owned(), value.clone())
                    })
                    .collect();
                for (name, value) in mapped {
                    set(labels, &name, value);
                }
                true
            }
            Action::Labeldrop => {
                labels.retain(|name, _| !self.regex.is_match(name));
                true
            }
            Action::Labelkeep => {
                labels.retain(|name, _| self.regex.is_match(name));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Vec<Rule> {
        #[derive(Deserialize)]
        struct Holder {
            r: Vec<RelabelConfig>,
        }
        let h: Holder = toml::from_str(toml_text).unwrap();
        compile(&h.r).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replace_joins_sources_and_expands_groups() {
        let r = rules(
            r#"
[[r]]
source_labels = ["__address__", "env"]
separator = "@"
regex = "([^:]+):\\d+@(.*)"
target_label = "host_env"
replacement = "${1}-$2"
"#,
        );
        let mut l = labels(&[("__address__", "db1:9100"), ("env", "prod")]);
        assert!(apply(&r, &mut l));
        assert_eq!(l["host_env"], "db1-prod");
    }

    #[test]
    fn regex_is_anchored() {
        // Unanchored, "node" would match inside "node_exporter"; Prometheus anchors it.
        let r = rules(
            r#"
[[r]]
source_labels = ["job"]
regex = "node"
action = "keep"
"#,
        );
        assert!(!apply(&r, &mut labels(&[("job", "node_exporter")])));
        assert!(apply(&r, &mut labels(&[("job", "node")])));
    }

    #[test]
    fn keep_and_drop_missing_labels_are_empty_strings() {
        let keep_empty = rules(
            r#"
[[r]]
source_labels = ["team"]
regex = ""
action = "keep"
"#,
        );
        assert!(apply(&keep_empty, &mut labels(&[("job", "x")])));
        let drop_debug = rules(
            r#"
[[r]]
source_labels = ["__name__"]
regex = "go_.*|process_.*"
action = "drop"
"#,
        );
        assert!(!apply(
            &drop_debug,
            &mut labels(&[("__name__", "go_goroutines")])
        ));
        assert!(apply(&drop_debug, &mut labels(&[("__name__", "up")])));
    }

    #[test]
    fn replace_without_match_changes_nothing_and_empty_result_deletes() {
        let r = rules(
            r#"
[[r]]
source_labels = ["a"]
regex = "x(.*)"
target_label = "b"
"#,
        );
        let mut l = labels(&[("a", "y"), ("b", "keep")]);
        apply(&r, &mut l);
        assert_eq!(l["b"], "keep");
        let mut l = labels(&[("a", "x"), ("b", "gone")]);
        apply(&r, &mut l);
        assert!(!l.contains_key("b"), "{l:?}");
    }

    #[test]
    fn default_replace_copies_a_label() {
        let r = rules(
            r#"
[[r]]
source_labels = ["__address__"]
target_label = "instance"
"#,
        );
        let mut l = labels(&[("__address__", "h:1")]);
        apply(&r, &mut l);
        assert_eq!(l["instance"], "h:1");
    }

    #[test]
    fn labelmap_labeldrop_labelkeep_and_case() {
        let r = rules(
            r#"
[[r]]
action = "labelmap"
regex = "__meta_(.+)"
[[r]]
action = "labeldrop"
regex = "__meta_.*"
[[r]]
action = "uppercase"
source_labels = ["zone"]
target_label = "zone_upper"
"#,
        );
        let mut l = labels(&[("__meta_zone", "eu1"), ("job", "j")]);
        apply(&r, &mut l);
        // labelmap's default replacement `$1` keeps the captured part of the name.
        assert_eq!(
            l,
            labels(&[("job", "j"), ("zone", "eu1"), ("zone_upper", "EU1")])
        );
        let mut l = labels(&[("zone", "eu1")]);
        apply(&r, &mut l);
        assert_eq!(l["zone_upper"], "EU1");
        let keep = rules("[[r]]\naction = \"labelkeep\"\nregex = \"__name__|job\"");
        let mut l = labels(&[("__name__", "m"), ("job", "j"), ("pod", "p")]);
        apply(&keep, &mut l);
        assert_eq!(l, labels(&[("__name__", "m"), ("job", "j")]));
    }

    #[test]
    fn templated_target_label_that_expands_invalid_is_skipped() {
        let r = rules(
            r#"
[[r]]
source_labels = ["k"]
regex = "(.*)"
target_label = "$1"
replacement = "v"
"#,
        );
        let mut l = labels(&[("k", "good_name")]);
        apply(&r, &mut l);
        assert_eq!(l["good_name"], "v");
        let mut l = labels(&[("k", "bad-name")]);
        apply(&r, &mut l);
        assert!(!l.contains_key("bad-name"));
    }

    #[test]
    fn invalid_rules_name_their_key() {
        for (text, key) in [
            ("regex = \"(\"", "regex"),
            ("source_labels = [\"a\"]", "target_label"),
            ("target_label = \"bad-name\"", "target_label"),
            (
                "action = \"labelmap\"\nreplacement = \"bad-name\"",
                "replacement",
            ),
            ("action = \"labeldrop\"\nsource_labels = [\"a\"]", "action"),
            (
                "source_labels = [\"bad-name\"]\ntarget_label = \"x\"",
                "source_labels[0]",
            ),
        ] {
            let c: RelabelConfig = toml::from_str(text).unwrap();
            assert_eq!(c.validate().unwrap_err().key, key, "{text}");
        }
        assert!(toml::from_str::<RelabelConfig>("action = \"hashmod\"").is_err());
    }
}
