//! `[exporters.NAME]` with `type = "loki"`.

use serde::Deserialize;
use sluice_core::InvalidConfig;
use sluice_core::retry::RetryConfig;
use sluice_core::{ByteSize, DurationStr};
pub use sluice_http_client::{BasicAuth, TlsConfig};
use std::collections::BTreeMap;

/// Loki exporter settings. Defaults follow Alloy's `otelcol.exporter.loki` + `loki.write` and
/// Loki's default per-tenant limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Push endpoint, e.g. `http://loki:3100/loki/api/v1/push`; with `encoding = "otlp"` the
    /// native OTLP endpoint, e.g. `http://loki:3100/otlp/v1/logs`.
    pub url: String,
    /// `protobuf` (snappy-compressed `PushRequest`, the default), `json`, or `otlp` (the
    /// records are posted unchanged to Loki 3's `/otlp/v1/logs`; Loki maps them itself and the
    /// mapping options below do not apply).
    #[serde(default)]
    pub encoding: Encoding,
    /// Static `X-Scope-OrgID`. A record's `loki.tenant` hint, then the tenant the receiver
    /// saw, take precedence. Unset: no header (Loki with `auth_enabled: false`).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Extra HTTP headers on every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per-request timeout (Alloy's `remote_timeout`). Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: DurationStr,

    /// Which of the default labels to set. All on by default.
    #[serde(default)]
    pub default_labels_enabled: DefaultLabels,
    /// Resource attributes promoted to labels on every record, as if each resource carried
    /// them in a `loki.resource.labels` hint. Dotted paths reach into map values.
    #[serde(default)]
    pub resource_labels: Vec<String>,
    /// Record attributes promoted to labels on every record (like `loki.attribute.labels`).
    #[serde(default)]
    pub attribute_labels: Vec<String>,
    /// Labels added to every stream that does not already have them (Alloy's `loki.write`
    /// `external_labels`: the stream's own labels win).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Line format when a record has no `loki.format` hint: `json` (default), `logfmt`, `raw`.
    #[serde(default)]
    pub line_format: LineFormat,
    /// Attributes sent as Loki 3 structured metadata instead of in the line. `trace_id` and
    /// `span_id` take the record's ids (hex); other names are record attributes, then resource
    /// attributes. Metadata names are normalized like label names. Default: none (Alloy's
    /// behaviour).
    #[serde(default)]
    pub structured_metadata: Vec<String>,

    /// Most labels per stream (Loki's `max_label_names_per_series`; `service_name` is not
    /// counted, as in Loki). Extra labels are dropped (defaults kept first) and counted; their
    /// attributes stay in the line. Default 15.
    #[serde(default = "default_max_label_names")]
    pub max_label_names: usize,
    /// Longest label name in bytes; longer names are dropped and counted. Default 1024.
    #[serde(default = "default_max_label_name_length")]
    pub max_label_name_length: usize,
    /// Longest label value in bytes; longer values are truncated and counted, and the attribute
    /// stays in the line in full. Default 2048.
    #[serde(default = "default_max_label_value_length")]
    pub max_label_value_length: usize,
    /// Largest line (Loki's `max_line_size`); `0` disables the check. Default `256KiB`.
    #[serde(default = "default_max_line_size")]
    pub max_line_size: ByteSize,
    /// What to do with a longer line: `truncate` (default) or `drop`. Both are counted.
    #[serde(default)]
    pub line_too_long: LineTooLong,

    /// Push requests per batch and tenant, each holding a fixed share of the streams (by a
    /// hash of their labels). Each shard keeps its streams in order on its own, so a slow
    /// request holds back only its shard's streams. Default 4, at most 64.
    #[serde(default = "default_shards")]
    pub shards: usize,

    #[serde(default)]
    pub retry: RetryConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Protobuf,
    Json,
    Otlp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    #[default]
    Json,
    Logfmt,
    Raw,
}

impl LineFormat {
    /// The `loki.format` hint values Alloy accepts.
    pub fn from_hint(s: &str) -> Option<LineFormat> {
        match s {
            "json" => Some(LineFormat::Json),
            "logfmt" => Some(LineFormat::Logfmt),
            "raw" => Some(LineFormat::Raw),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineTooLong {
    #[default]
    Truncate,
    Drop,
}

/// Alloy's default labels, each of which can be turned off (contrib `default_labels_enabled`),
/// plus `service_name`, which Loki derives itself for its native OTLP path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultLabels {
    /// `exporter="OTLP"`.
    pub exporter: bool,
    /// `job` = `service.namespace/service.name`, or `service.name`.
    pub job: bool,
    /// `instance` = `service.instance.id`.
    pub instance: bool,
    /// `level` = severity name (`INFO`, `ERROR2`, ...) or the record's `level` attribute.
    pub level: bool,
    /// `service_name` = `service.name`.
    pub service_name: bool,
}

impl Default for DefaultLabels {
    fn default() -> Self {
        DefaultLabels {
            exporter: true,
            job: true,
            instance: true,
            level: true,
            service_name: true,
        }
    }
}

fn default_timeout() -> DurationStr {
    DurationStr::from_secs(10)
}
fn default_max_label_names() -> usize {
    15
}
fn default_max_label_name_length() -> usize {
    1024
}
fn default_max_label_value_length() -> usize {
    2048
}
fn default_max_line_size() -> ByteSize {
    ByteSize::kib(256)
}
fn default_shards() -> usize {
    4
}

/// Loki's tenant ID limit.
const MAX_TENANT_LEN: usize = 150;

impl Config {
    /// A config with every default and this URL (for tests and embedding).
    pub fn with_url(url: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            encoding: Encoding::default(),
            tenant_id: None,
            headers: BTreeMap::new(),
            basic_auth: None,
            bearer_token: None,
            tls: TlsConfig::default(),
            timeout: default_timeout(),
            default_labels_enabled: DefaultLabels::default(),
            resource_labels: Vec::new(),
            attribute_labels: Vec::new(),
            external_labels: BTreeMap::new(),
            line_format: LineFormat::default(),
            structured_metadata: Vec::new(),
            max_label_names: default_max_label_names(),
            max_label_name_length: default_max_label_name_length(),
            max_label_value_length: default_max_label_value_length(),
            max_line_size: default_max_line_size(),
            line_too_long: LineTooLong::default(),
            shards: default_shards(),
            retry: RetryConfig::default(),
        }
    }

    /// Semantic checks; each message names the key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            InvalidConfig::new("url", format!("{:?} is not a valid URL: {e}", self.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InvalidConfig::new(
                "url",
                format!("scheme must be http or https, got {:?}", url.scheme()),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(InvalidConfig::new(
                "url",
                format!("{:?} has no host", self.url),
            ));
        }
        let path = url.path().trim_end_matches('/');
        match self.encoding {
            Encoding::Otlp if !path.ends_with("/v1/logs") => {
                return Err(InvalidConfig::new(
                    "url",
                    format!(
                        "must be Loki's OTLP logs endpoint ending in /otlp/v1/logs when \
                     encoding = \"otlp\", got {:?}",
                        self.url
                    ),
                ));
            }
            Encoding::Protobuf | Encoding::Json if path.ends_with("/otlp/v1/logs") => {
                return Err(InvalidConfig::new(
                    "encoding",
                    format!(
                        "must be \"otlp\" for Loki's OTLP endpoint {:?} (or use \
                     /loki/api/v1/push)",
                        self.url
                    ),
                ));
            }
            _ => {}
        }
        if !(1..=64).contains(&self.shards) {
            return Err(InvalidConfig::new(
                "shards",
                format!("must be within 1..=64, got {}", self.shards),
            ));
        }
        if let Some(t) = &self.tenant_id {
            validate_tenant(t)
                .map_err(|e| InvalidConfig::new("tenant_id", format!("is invalid: {e}")))?;
        }
        for (name, value) in &self.headers {
            let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                InvalidConfig::new("headers", format!("{name:?} is not a valid header name"))
            })?;
            http::HeaderValue::from_str(value).map_err(|_| {
                InvalidConfig::new(
                    "headers",
                    format!("value of {name:?} is not a valid header value"),
                )
            })?;
            if header.as_str() == "x-scope-orgid" {
                return Err(InvalidConfig::new(
                    "headers",
                    "must not set X-Scope-OrgID; use tenant_id",
                ));
            }
            if header == http::header::CONTENT_TYPE || header == http::header::CONTENT_ENCODING {
                return Err(InvalidConfig::new(
                    "headers",
                    format!("must not set {name}: the exporter sets it from `encoding`"),
                ));
            }
            if header == http::header::AUTHORIZATION
                && (self.basic_auth.is_some() || self.bearer_token.is_some())
            {
                return Err(InvalidConfig::new(
                    "headers",
                    "must not set Authorization together with basic_auth / bearer_token",
                ));
            }
        }
        sluice_http_client::validate_auth(self.basic_auth.as_ref(), self.bearer_token.as_deref())?;
        if let Some(b) = &self.basic_auth
            && b.username.is_empty()
        {
            return Err(InvalidConfig::new(
                "basic_auth.username",
                "must not be empty",
            ));
        }
        self.tls.validate()?;
        if self.timeout.get().is_zero() {
            return Err(InvalidConfig::new("timeout", "must be greater than 0"));
        }
        for (key, list) in [
            ("resource_labels", &self.resource_labels),
            ("attribute_labels", &self.attribute_labels),
            ("structured_metadata", &self.structured_metadata),
        ] {
            if list.iter().any(|s| s.trim().is_empty()) {
                return Err(InvalidConfig::new(key, "entries must not be empty"));
            }
        }
        for (name, value) in &self.external_labels {
            if !crate::labels::is_valid_name(name) || name.starts_with("__") {
                return Err(InvalidConfig::new(
                    "external_labels",
                    format!(
                        "{name:?} is not a valid Loki label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                    ),
                ));
            }
            if value.is_empty() {
                return Err(InvalidConfig::new(
                    format!("external_labels.{name}"),
                    "the value must not be empty",
                ));
            }
        }
        if self.max_label_names == 0 {
            return Err(InvalidConfig::new("max_label_names", "must be at least 1"));
        }
        if self.max_label_name_length == 0 {
            return Err(InvalidConfig::new(
                "max_label_name_length",
                "must be at least 1",
            ));
        }
        if self.max_label_value_length == 0 {
            return Err(InvalidConfig::new(
                "max_label_value_length",
                "must be at least 1",
            ));
        }
        self.retry.validate().map_err(|e| e.under("retry"))?;
        Ok(())
    }
}

/// Why a string is not a Loki tenant ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTenant {
    #[error("must not be empty")]
    Empty,
    #[error("longer than {MAX_TENANT_LEN} bytes")]
    TooLong,
    #[error("must not be \".\" or \"..\"")]
    Dots,
    #[error("character {0:?} is not allowed in a tenant ID")]
    Character(char),
}

/// Loki's tenant ID rules: at most 150 bytes, `[a-zA-Z0-9!_.*'()-]`, not `.` or `..`, and
/// no `|` (which would name several tenants).
pub fn validate_tenant(t: &str) -> Result<(), InvalidTenant> {
    if t.is_empty() {
        return Err(InvalidTenant::Empty);
    }
    if t.len() > MAX_TENANT_LEN {
        return Err(InvalidTenant::TooLong);
    }
    if t == "." || t == ".." {
        return Err(InvalidTenant::Dots);
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
    {
        return Err(InvalidTenant::Character(c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(s)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse(r#"url = "http://loki:3100/loki/api/v1/push""#).unwrap();
        assert_eq!(c.encoding, Encoding::Protobuf);
        assert_eq!(c.timeout.get().as_secs(), 10);
        assert_eq!(c.max_label_names, 15);
        assert_eq!(c.max_line_size.get(), 256 * 1024);
        assert_eq!(c.line_too_long, LineTooLong::Truncate);
        assert_eq!(c.line_format, LineFormat::Json);
        assert!(c.default_labels_enabled.level);
    }

    #[test]
    fn rejects_bad_settings_naming_the_key() {
        let cases = [
            (r#"url = "loki:3100""#, "url"),
            (r#"url = "ftp://loki/x""#, "url"),
            (
                "url = \"http://loki:3100/loki/api/v1/push\"\nencoding = \"otlp\"",
                "otlp",
            ),
            ("url = \"http://loki:3100/otlp/v1/logs\"", "encoding"),
            (
                "url = \"http://l/loki/api/v1/push\"\ntenant_id = \"a|b\"",
                "tenant_id",
            ),
            (
                "url = \"http://l/loki/api/v1/push\"\nheaders = { \"X-Scope-OrgID\" = \"x\" }",
                "tenant_id",
            ),
            (
                "url = \"http://l/loki/api/v1/push\"\nbearer_token = \"t\"\nbasic_auth = { username = \"u\", password = \"p\" }",
                "at most one",
            ),
            (
                "url = \"http://l/loki/api/v1/push\"\nmax_label_names = 0",
                "max_label_names",
            ),
            (
                "url = \"http://l/loki/api/v1/push\"\nline_too_long = \"explode\"",
                "line_too_long",
            ),
            ("url = \"http://l/loki/api/v1/push\"\nbogus = 1", "bogus"),
            (
                "url = \"http://l/loki/api/v1/push\"\ntls = { cert_file = \"c.pem\" }",
                "key_file",
            ),
            (
                "url = \"http://l/loki/api/v1/push\"\n[retry]\nmultiplier = 0.1",
                "retry.multiplier",
            ),
        ];
        for (toml, needle) in cases {
            let err = parse(toml).expect_err(toml).to_string();
            assert!(err.contains(needle), "{toml:?}: {err}");
        }
    }

    #[test]
    fn otlp_mode_accepts_otlp_url() {
        let c = parse("url = \"http://loki:3100/otlp/v1/logs\"\nencoding = \"otlp\"").unwrap();
        assert_eq!(c.encoding, Encoding::Otlp);
    }
}
