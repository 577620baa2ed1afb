//! `[receivers.NAME]` with `type = "prometheus_scrape"`: the keys of a Prometheus
//! `scrape_config` that Sluice supports, spelled as Prometheus spells them.

use crate::relabel::RelabelConfig;
use serde::Deserialize;
use sluice_core::config::{ByteSize, DurationStr};
use sluice_core::retry::RetryConfig;
use sluice_core::{ComponentConfig, InvalidConfig};
use sluice_http_client::{BasicAuth, TlsConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// The `job` label of every target. Default: the receiver's name in the config.
    #[serde(default)]
    pub job_name: Option<String>,
    /// Targets listed in the config, as Prometheus' `static_configs`.
    #[serde(default)]
    pub static_configs: Vec<TargetGroup>,
    /// Target files, as Prometheus' `file_sd_configs`.
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Default 1m (Prometheus' and Alloy's default).
    #[serde(default = "default_interval")]
    pub scrape_interval: DurationStr,
    /// Default 10s; at most `scrape_interval`.
    #[serde(default = "default_timeout")]
    pub scrape_timeout: DurationStr,
    /// Default `/metrics`.
    #[serde(default = "default_path")]
    pub metrics_path: String,
    /// `http` (default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Keep a scraped sample's own label when it clashes with a target label (instead of
    /// renaming it to `exported_<name>`). Default `false`.
    #[serde(default)]
    pub honor_labels: bool,
    /// Keep timestamps the target exposes (instead of the scrape's time). Default `true`.
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// Rules applied to each target's labels before it is scraped.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped sample's labels.
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// A larger response fails the scrape. Default 64MiB.
    #[serde(default = "default_body_limit")]
    pub body_size_limit: ByteSize,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Backoff while the pipeline refuses a scrape for now (spool full); a scrape still
    /// refused when the next one is due is dropped and counted.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Keys this component does not know; refused by `validate`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

/// `{ targets = ["host:port", ...], labels = { name = "value" } }`; also the element of a
/// file-SD file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `{ files = ["/etc/targets/*.json"], refresh_interval = "5m" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Paths of JSON (`.json`) or YAML (`.yml`, `.yaml`) files; `*` and `?` may appear in the
    /// last path segment.
    pub files: Vec<PathBuf>,
    /// Every file is re-read this often even when no change was seen. Default 5m.
    #[serde(default = "default_refresh")]
    pub refresh_interval: DurationStr,
}

fn default_interval() -> DurationStr {
    DurationStr::from_secs(60)
}
fn default_timeout() -> DurationStr {
    DurationStr::from_secs(10)
}
fn default_path() -> String {
    "/metrics".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn default_true() -> bool {
    true
}
fn default_body_limit() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_refresh() -> DurationStr {
    DurationStr::from_secs(300)
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

impl TargetGroup {
    /// Checks target addresses and label names; keys are relative to the group.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        for (i, t) in self.targets.iter().enumerate() {
            if t.is_empty() || t.contains('/') || t.chars().any(char::is_whitespace) {
                return Err(InvalidConfig::new(
                    format!("targets[{i}]"),
                    format!("{t:?} is not a host:port address"),
                ));
            }
        }
        for name in self.labels.keys() {
            if !is_label_name(name) {
                return Err(InvalidConfig::new(
                    format!("labels.{name}"),
                    "is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(InvalidConfig::new(
                key.as_str(),
                "is not a key of the prometheus_scrape receiver",
            ));
        }
        if let Some(job) = &self.job_name
            && job.is_empty()
        {
            return Err(InvalidConfig::new("job_name", "must not be empty"));
        }
        if self.static_configs.is_empty() && self.file_sd_configs.is_empty() {
            return Err(InvalidConfig::new(
                "static_configs",
                "no targets: set static_configs or file_sd_configs",
            ));
        }
        for (i, g) in self.static_configs.iter().enumerate() {
            g.validate()
                .map_err(|e| e.under(&format!("static_configs[{i}]")))?;
        }
        for (i, f) in self.file_sd_configs.iter().enumerate() {
            let key = format!("file_sd_configs[{i}]");
            if f.files.is_empty() {
                return Err(InvalidConfig::new(
                    format!("{key}.files"),
                    "must list at least one file",
                ));
            }
            for (j, path) in f.files.iter().enumerate() {
                if let Err(reason) = crate::file_sd::check_pattern(path) {
                    return Err(InvalidConfig::new(
                        format!("{key}.files[{j}]"),
                        reason.to_string(),
                    ));
                }
            }
            if f.refresh_interval.get().as_secs() < 1 {
                return Err(InvalidConfig::new(
                    format!("{key}.refresh_interval"),
                    "must be at least 1s",
                ));
            }
        }
        let interval = self.scrape_interval.get();
        if interval.as_millis() < 100 {
            return Err(InvalidConfig::new(
                "scrape_interval",
                "must be at least 100ms",
            ));
        }
        let timeout = self.scrape_timeout.get();
        if timeout.as_millis() < 10 {
            return Err(InvalidConfig::new(
                "scrape_timeout",
                "must be at least 10ms",
            ));
        }
        if timeout > interval {
            return Err(InvalidConfig::new(
                "scrape_timeout",
                format!("{timeout:?} is longer than scrape_interval ({interval:?})"),
            ));
        }
        if !self.metrics_path.starts_with('/') {
            return Err(InvalidConfig::new("metrics_path", "must start with '/'"));
        }
        if self.scheme != "http" && self.scheme != "https" {
            return Err(InvalidConfig::new(
                "scheme",
                "must be \"http\" or \"https\"",
            ));
        }
        if self.body_size_limit.get() < 1024 {
            return Err(InvalidConfig::new(
                "body_size_limit",
                "must be at least 1KiB",
            ));
        }
        for (i, r) in self.relabel_configs.iter().enumerate() {
            r.validate()
                .map_err(|e| e.under(&format!("relabel_configs[{i}]")))?;
        }
        for (i, r) in self.metric_relabel_configs.iter().enumerate() {
            r.validate()
                .map_err(|e| e.under(&format!("metric_relabel_configs[{i}]")))?;
        }
        sluice_http_client::validate_auth(self.basic_auth.as_ref(), self.bearer_token.as_deref())?;
        self.tls.validate()?;
        self.retry.validate().map_err(|e| e.under("retry"))
    }
}

impl ComponentConfig for Config {}
