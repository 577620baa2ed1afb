//! Rules: alert labels + finding signals → candidate catalogue scripts. First match wins.

use crate::config::Rule;
use crate::remediation_catalogue::{Catalogue, compile_anchored};
use crate::template::{Template, escape_query_string};
use sluice_core::InvalidConfig;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: Rule,
    labels: Vec<(String, regex::Regex)>,
    findings: Vec<(String, regex::Regex)>,
    verify_query: Option<Template>,
}

#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
}

impl RuleSet {
    /// Compiles the rules; every named script must exist in `catalogue`.
    /// Errors name the key below `rules` (`rules[2].labels.severity`) and the rule.
    pub fn compile(rules: &[Rule], catalogue: &Catalogue) -> Result<RuleSet, InvalidConfig> {
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let at = |key: String, e: String| {
                InvalidConfig::new(
                    format!("rules[{i}].{key}"),
                    format!("{e} (rule {:?})", r.name),
                )
            };
            if r.name.trim().is_empty() {
                return Err(at("name".into(), "must not be empty".into()));
            }
            let mut labels = Vec::new();
            for (k, p) in &r.labels {
                labels.push((
                    k.clone(),
                    compile_anchored(p).map_err(|e| at(format!("labels.{k}"), e.to_string()))?,
                ));
            }
            let mut findings = Vec::new();
            for (k, p) in &r.findings {
                findings.push((
                    k.clone(),
                    compile_anchored(p).map_err(|e| at(format!("findings.{k}"), e.to_string()))?,
                ));
            }
            for (key, a) in r
                .actions
                .iter()
                .map(|a| ("actions", a))
                .chain(r.escalate.iter().map(|a| ("escalate", a)))
            {
                if !catalogue.scripts.contains_key(a) {
                    return Err(at(
                        key.into(),
                        format!(
                            "names {a:?}, which is not in the catalogue (known: {})",
                            catalogue.script_names()
                        ),
                    ));
                }
            }
            let verify_query = match &r.verify_query {
                Some(q) => {
                    Some(Template::parse(q).map_err(|e| at("verify_query".into(), e.to_string()))?)
                }
                None => None,
            };
            out.push(CompiledRule {
                rule: r.clone(),
                labels,
                findings,
                verify_query,
            });
        }
        Ok(RuleSet { rules: out })
    }

    /// The first rule whose matchers all match (a missing label or signal is `""`).
    pub fn first_match(
        &self,
        labels: &BTreeMap<String, String>,
        signals: &BTreeMap<String, String>,
    ) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| {
            r.labels
                .iter()
                .all(|(k, re)| re.is_match(labels.get(k).map(String::as_str).unwrap_or("")))
                && r.findings
                    .iter()
                    .all(|(k, re)| re.is_match(signals.get(k).map(String::as_str).unwrap_or("")))
        })
    }
}

impl CompiledRule {
    /// The rule's verification PromQL with alert labels inserted (escaped for a string
    /// literal); `None` if the rule has none.
    pub fn verify_query(&self, labels: &BTreeMap<String, String>) -> Option<String> {
        self.verify_query.as_ref().map(|t| {
            t.render(|n| escape_query_string(labels.get(n).map(String::as_str).unwrap_or("")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        name: &str,
        labels: &[(&str, &str)],
        findings: &[(&str, &str)],
        actions: &[&str],
    ) -> Rule {
        Rule {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            findings: findings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            escalate: None,
            verify_query: Some("x{agent_id=\"{{agent_id}}\"} > 0".into()),
        }
    }

    #[test]
    fn first_match_and_escaping() {
        let c = Catalogue::builtin().unwrap();
        let rs = RuleSet::compile(
            &[
                rule(
                    "timeouts",
                    &[("alertname", "AwfStep.*")],
                    &[("cause", "step_timeout")],
                    &["increase_timeout"],
                ),
                rule(
                    "errors",
                    &[("alertname", "AwfStep.*")],
                    &[],
                    &["switch_fallback"],
                ),
            ],
            &c,
        )
        .unwrap();
        let mut labels = BTreeMap::from([("alertname".to_owned(), "AwfStepFailures".to_owned())]);
        let signals = BTreeMap::from([("cause".to_owned(), "agent_errors".to_owned())]);
        let r = rs.first_match(&labels, &signals).unwrap();
        assert_eq!(r.rule.name, "errors");
        labels.insert("agent_id".into(), "a\"} or vector(1) #".into());
        assert_eq!(
            r.verify_query(&labels).unwrap(),
            "x{agent_id=\"a\\\"} or vector(1) #\"} > 0"
        );
        assert!(rs.first_match(&BTreeMap::new(), &signals).is_none());
        let bad = RuleSet::compile(&[rule("x", &[], &[], &["rm_rf"])], &c).unwrap_err();
        assert_eq!(bad.key, "rules[0].actions", "{bad}");
    }
}
