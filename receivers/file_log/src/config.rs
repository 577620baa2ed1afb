//! `[receivers.NAME]` with `type = "file_log"`.

use serde::Deserialize;
use sluice_core::config::{ByteSize, DurationStr};
use sluice_core::retry::RetryConfig;
use sluice_core::{ComponentConfig, InvalidConfig};
use std::collections::BTreeMap;

/// Where a file found at the first scan, with no recorded position, is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only what is written from now on (the Collector's `filelog` default).
    #[default]
    End,
    /// The whole file.
    Beginning,
}

/// How a line is parsed into log attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The line is the body, nothing else.
    #[default]
    None,
    /// A JSON object: its top-level keys become attributes.
    Json,
    /// `regex`'s named capture groups become attributes.
    Regex,
}

/// How a timestamp field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeLayout {
    /// RFC 3339 (`2026-12-04T10:00:00.123Z`; no offset means UTC).
    #[default]
    Rfc3339,
    /// Seconds since the Unix epoch, possibly fractional.
    Unix,
    UnixMs,
    UnixUs,
    UnixNs,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    /// The parsed attribute holding the time.
    pub field: String,
    #[serde(default)]
    pub layout: TimeLayout,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    /// The parsed attribute holding the level (`info`, `WARN`, `error`, ...).
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this starts a new entry; other lines are appended to the entry before.
    pub line_start_pattern: String,
    /// An entry that got no further line for this long is complete. Default 500 ms.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout: DurationStr,
    /// Most lines in one entry; the next line starts a new one. Default 1000.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Glob patterns of files to read (`/var/log/app/*.log`, `/var/log/**/*.log`).
    pub include: Vec<String>,
    /// Glob patterns of files to leave alone, even when `include` matches them.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub start_at: StartAt,
    /// How often the globs are matched again to find new and rotated files. Default 1 s.
    #[serde(default = "default_scan_interval")]
    pub scan_interval: DurationStr,
    /// How often open files are checked for new data. Default 250 ms.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: DurationStr,
    /// Longest entry kept; the rest of a longer one is cut off and counted. Default 1 MiB.
    #[serde(default = "default_max_entry_size")]
    pub max_entry_size: ByteSize,
    /// Most entries in one spool append (one OTLP request). Default 1000.
    #[serde(default = "default_max_batch_entries")]
    pub max_batch_entries: usize,
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    #[serde(default)]
    pub format: Format,
    /// For `format = "regex"`: the pattern, with named groups (`(?P<level>\w+)`).
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub timestamp: Option<TimestampConfig>,
    #[serde(default)]
    pub severity: Option<SeverityConfig>,
    /// Adds the `log.file.name` attribute (the file's base name). Default true.
    #[serde(default = "yes")]
    pub include_file_name: bool,
    /// Adds the `log.file.path` attribute (the path it was found under). Default false.
    #[serde(default)]
    pub include_file_path: bool,
    /// The attribute `include_file_path` writes the path to (`filename` for Alloy's label).
    #[serde(default = "file_path_attribute")]
    pub file_path_attribute: String,
    /// Attributes set on every record.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes of every record (`service.name`, ...).
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Tenant (`X-Scope-OrgID`) of the records, for exporters that send one.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Backoff while the pipeline refuses entries for now (spool full).
    #[serde(default)]
    pub retry: RetryConfig,
    /// Keys this component does not know; refused by `validate`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

fn file_path_attribute() -> String {
    crate::parse::FILE_PATH_ATTR.to_owned()
}

fn yes() -> bool {
    true
}
fn default_flush_timeout() -> DurationStr {
    DurationStr::from_millis(500)
}
fn default_max_lines() -> usize {
    1000
}
fn default_scan_interval() -> DurationStr {
    DurationStr::from_secs(1)
}
fn default_poll_interval() -> DurationStr {
    DurationStr::from_millis(250)
}
fn default_max_entry_size() -> ByteSize {
    ByteSize::mib(1)
}
fn default_max_batch_entries() -> usize {
    1000
}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(InvalidConfig::new(
                key.as_str(),
                "is not a key of the file_log receiver",
            ));
        }
        if self.include.is_empty() {
            return Err(InvalidConfig::new(
                "include",
                "needs at least one glob pattern",
            ));
        }
        for (key, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, p) in patterns.iter().enumerate() {
                glob::Pattern::new(p).map_err(|e| {
                    InvalidConfig::new(format!("{key}[{i}]"), format!("{p:?}: {e}"))
                })?;
            }
        }
        if self.file_path_attribute.trim().is_empty() {
            return Err(InvalidConfig::new(
                "file_path_attribute",
                "must not be empty",
            ));
        }
        if self.scan_interval.get().as_millis() < 10 {
            return Err(InvalidConfig::new("scan_interval", "must be at least 10ms"));
        }
        if self.poll_interval.get().as_millis() < 1 {
            return Err(InvalidConfig::new("poll_interval", "must be at least 1ms"));
        }
        if !(64..=(64 << 20)).contains(&self.max_entry_size.get()) {
            return Err(InvalidConfig::new(
                "max_entry_size",
                "must be within 64B..=64MiB",
            ));
        }
        if !(1..=100_000).contains(&self.max_batch_entries) {
            return Err(InvalidConfig::new(
                "max_batch_entries",
                "must be within 1..=100000",
            ));
        }
        if let Some(m) = &self.multiline {
            regex::Regex::new(&m.line_start_pattern)
                .map_err(|e| InvalidConfig::new("multiline.line_start_pattern", e.to_string()))?;
            if m.max_lines == 0 {
                return Err(InvalidConfig::new(
                    "multiline.max_lines",
                    "must be at least 1",
                ));
            }
        }
        match (self.format, &self.regex) {
            (Format::Regex, None) => {
                return Err(InvalidConfig::new(
                    "regex",
                    "is needed with format = \"regex\"",
                ));
            }
            (Format::Regex, Some(r)) => {
                let re =
                    regex::Regex::new(r).map_err(|e| InvalidConfig::new("regex", e.to_string()))?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(InvalidConfig::new(
                        "regex",
                        "has no named capture group ((?P<name>...)); nothing would be extracted",
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(InvalidConfig::new(
                    "regex",
                    "is only used with format = \"regex\"",
                ));
            }
            (_, None) => {}
        }
        if self.format == Format::None {
            if self.timestamp.is_some() {
                return Err(InvalidConfig::new(
                    "timestamp",
                    "needs a parsed field: set format = \"json\" or \"regex\"",
                ));
            }
            if self.severity.is_some() {
                return Err(InvalidConfig::new(
                    "severity",
                    "needs a parsed field: set format = \"json\" or \"regex\"",
                ));
            }
        }
        if self.tenant.as_deref() == Some("") {
            return Err(InvalidConfig::new("tenant", "must not be empty"));
        }
        self.retry.validate().map_err(|e| e.under("retry"))
    }
}

impl ComponentConfig for Config {}
