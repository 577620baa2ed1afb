//! Targets: from a discovered group to the labels and URL of one scrape (Prometheus
//! configuration docs, `<relabel_config>` and "Scrape config"; `__address__`, `__scheme__`,
//! `__metrics_path__` may be rewritten by `relabel_configs`; labels starting with `__` are
//! removed afterwards; `instance` defaults to `__address__`).

use crate::config::{Config, TargetGroup};
use crate::relabel::{self, Labels, Rule};
use std::collections::BTreeMap;

/// One target to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub url: String,
    /// Labels every sample of the target gets (`job`, `instance`, group labels...), without
    /// `__`-prefixed ones and empty ones.
    pub labels: Vec<(String, String)>,
}

impl Target {
    pub fn instance(&self) -> &str {
        self.label("instance").unwrap_or("")
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a discovered address is not scraped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// `relabel_configs` dropped it (a `keep` / `drop` rule).
    Dropped,
    /// It has no usable address after relabeling.
    Invalid(String),
}

/// Builds the target for one address of a group, as Prometheus' `PopulateLabels` does.
pub fn populate(
    config: &Config,
    job: &str,
    rules: &[Rule],
    group: &TargetGroup,
    address: &str,
) -> Result<Target, Skipped> {
    let mut labels: Labels = group.labels.clone();
    labels.insert("__address__".into(), address.to_owned());
    let defaults = [
        ("job", job.to_owned()),
        ("__metrics_path__", config.metrics_path.clone()),
        ("__scheme__", config.scheme.clone()),
        ("__scrape_interval__", config.scrape_interval.to_string()),
        ("__scrape_timeout__", config.scrape_timeout.to_string()),
    ];
    for (name, value) in defaults {
        labels.entry(name.to_owned()).or_insert(value);
    }
    if !relabel::apply(rules, &mut labels) {
        return Err(Skipped::Dropped);
    }
    let address = labels
        .get("__address__")
        .filter(|a| !a.is_empty())
        .cloned()
        .ok_or_else(|| Skipped::Invalid("no __address__ after relabeling".into()))?;
    let scheme = labels
        .get("__scheme__")
        .cloned()
        .unwrap_or_else(|| config.scheme.clone());
    if scheme != "http" && scheme != "https" {
        return Err(Skipped::Invalid(format!(
            "unsupported __scheme__ {scheme:?}"
        )));
    }
    if address.contains('/') || address.chars().any(char::is_whitespace) {
        return Err(Skipped::Invalid(format!(
            "{address:?} is not a host:port address"
        )));
    }
    // Prometheus 2 adds the scheme's default port to an address without one.
    let has_port = match address.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    let address = if has_port {
        address
    } else {
        let port = if scheme == "https" { 443 } else { 80 };
        format!("{address}:{port}")
    };
    let path = labels
        .get("__metrics_path__")
        .cloned()
        .unwrap_or_else(|| config.metrics_path.clone());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    labels
        .entry("instance".into())
        .or_insert_with(|| address.clone());
    let labels: BTreeMap<String, String> = labels
        .into_iter()
        .filter(|(name, value)| !name.starts_with("__") && !value.is_empty())
        .collect();
    Ok(Target {
        url: format!("{scheme}://{address}{path}"),
        labels: labels.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(&format!(
            "static_configs = [{{ targets = [\"h:1\"] }}]\n{extra}"
        ))
        .unwrap()
    }

    fn group(labels: &[(&str, &str)]) -> TargetGroup {
        TargetGroup {
            targets: vec![],
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn defaults_instance_job_and_url() {
        let c = config("");
        let t = populate(&c, "node", &[], &group(&[("env", "prod")]), "10.0.0.1:9100").unwrap();
        assert_eq!(t.url, "http://10.0.0.1:9100/metrics");
        assert_eq!(
            t.labels,
            [
                ("env".to_string(), "prod".to_string()),
                ("instance".into(), "10.0.0.1:9100".into()),
                ("job".into(), "node".into())
            ]
        );
        let t = populate(&c, "node", &[], &group(&[]), "example.org").unwrap();
        assert_eq!(t.url, "http://example.org:80/metrics");
    }

    #[test]
    fn relabeling_rewrites_address_path_and_drops() {
        let c = config(
            r#"
[[relabel_configs]]
source_labels = ["__address__"]
regex = "(.*):9100"
target_label = "__address__"
replacement = "${1}:9200"
[[relabel_configs]]
target_label = "__metrics_path__"
replacement = "/probe"
[[relabel_configs]]
source_labels = ["env"]
regex = "dev"
action = "drop"
"#,
        );
        let rules = relabel::compile(&c.relabel_configs).unwrap();
        let t = populate(&c, "j", &rules, &group(&[]), "h:9100").unwrap();
        assert_eq!(t.url, "http://h:9200/probe");
        assert_eq!(t.instance(), "h:9200");
        assert_eq!(
            populate(&c, "j", &rules, &group(&[("env", "dev")]), "h:9100"),
            Err(Skipped::Dropped)
        );
    }
}
