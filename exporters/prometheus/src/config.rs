//! `[exporters.<name>]` with `type = "prometheus_remote_write"`.
//!
//! ```toml
//! [exporters.mimir]
//! type = "prometheus_remote_write"
//! url = "http://mimir:9009/api/v1/push"
//! tenant_id = "team-a"
//! external_labels = { cluster = "eu-1" }
//! ```

use crate::remote_write::Protocol;
use crate::translate::TranslateOptions;
use serde::Deserialize;
use sluice_core::DurationStr;
use sluice_core::InvalidConfig;
use sluice_core::retry::RetryConfig;
pub use sluice_http_client::{BasicAuth, TlsConfig};
use std::collections::BTreeMap;

/// Remote-write version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolVersion {
    /// `prometheus.WriteRequest` (remote-write 1.0), what every receiver understands.
    #[default]
    V1,
    /// `io.prometheus.write.v2.Request` (2.0, experimental). Falls back to v1 for good, with an
    /// error logged, when the receiver answers 415 or shows it ignored the 2.0 body.
    V2,
}

impl ProtocolVersion {
    pub fn protocol(self) -> Protocol {
        match self {
            ProtocolVersion::V1 => Protocol::V1,
            ProtocolVersion::V2 => Protocol::V2,
        }
    }
}

/// Headers the remote-write protocol fixes; configuring them is refused.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-encoding",
    "content-type",
    "content-length",
    "x-prometheus-remote-write-version",
    "user-agent",
    "host",
];

fn default_true() -> bool {
    true
}
fn default_timeout() -> DurationStr {
    DurationStr::from_secs(30)
}
fn default_shards() -> usize {
    4
}
fn default_max_delta_series() -> usize {
    100_000
}
fn default_delta_series_expiry() -> DurationStr {
    DurationStr::from_secs(300)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Remote-write endpoint, e.g. `http://mimir:9009/api/v1/push`. Required.
    pub url: String,
    /// `"v1"` (default) or `"v2"`.
    #[serde(default)]
    pub protocol: ProtocolVersion,
    /// Extra HTTP headers. The remote-write headers cannot be overridden; use `tenant_id`
    /// for `X-Scope-OrgID` and `basic_auth`/`bearer_token` for `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `X-Scope-OrgID` for batches whose items carry no tenant of their own.
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Deadline of one request, connect included. Default `30s` (Alloy's `remote_timeout`).
    #[serde(default = "default_timeout")]
    pub timeout: DurationStr,
    /// Requests per batch, sent concurrently; each series always goes to the same shard, so
    /// its samples stay in order. Default 4, at most 256.
    #[serde(default = "default_shards")]
    pub shards: usize,

    /// Unit and type suffixes on metric names (`_seconds`, `_total`, `_ratio`). Default true.
    #[serde(default = "default_true")]
    pub add_metric_suffixes: bool,
    /// `otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url` and
    /// `otel_scope_<attribute>` labels on every series. Default true (as Alloy).
    #[serde(default = "default_true")]
    pub include_scope_labels: bool,
    /// A `target_info` series per job/instance with the other resource attributes. Default true.
    #[serde(default = "default_true")]
    pub include_target_info: bool,
    /// Resource attributes copied as labels onto every series of their resource.
    #[serde(default)]
    pub promote_resource_attributes: Vec<String>,
    /// Labels added to every series that does not already have them.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Send exponential histograms as native histograms; when false (default, as Alloy's
    /// `send_native_histograms`) they are dropped and counted (`native_histograms_disabled`).
    #[serde(default)]
    pub send_native_histograms: bool,
    /// Send exemplars (trace and span ids). Default true.
    #[serde(default = "default_true")]
    pub send_exemplars: bool,
    /// Send metric metadata (TYPE, HELP, UNIT). Default true.
    #[serde(default = "default_true")]
    pub send_metadata: bool,
    /// Turn monotonic delta sums into counters by keeping a running total per series in
    /// memory. Off by default: delta sums are then dropped and counted (`delta_temporality`).
    /// After a restart totals start from zero again, which `rate()` sees as a counter reset.
    #[serde(default)]
    pub convert_delta_to_cumulative: bool,
    /// Most running delta totals kept; points of further new series are dropped
    /// (`delta_series_limit`). Default 100000 (about 10 MB).
    #[serde(default = "default_max_delta_series")]
    pub max_delta_series: usize,
    /// A running delta total not updated for this long is forgotten. Default `5m`.
    #[serde(default = "default_delta_series_expiry")]
    pub delta_series_expiry: DurationStr,

    #[serde(default)]
    pub retry: RetryConfig,
}

/// Prometheus' label name rule (`[a-zA-Z_][a-zA-Z0-9_]*`), without the reserved `__` prefix.
fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

impl Config {
    /// A config with every default and the given URL.
    pub fn new(url: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            protocol: ProtocolVersion::V1,
            headers: BTreeMap::new(),
            tenant_id: None,
            basic_auth: None,
            bearer_token: None,
            tls: TlsConfig::default(),
            timeout: default_timeout(),
            shards: default_shards(),
            add_metric_suffixes: true,
            include_scope_labels: true,
            include_target_info: true,
            promote_resource_attributes: Vec::new(),
            external_labels: BTreeMap::new(),
            send_native_histograms: false,
            send_exemplars: true,
            send_metadata: true,
            convert_delta_to_cumulative: false,
            max_delta_series: default_max_delta_series(),
            delta_series_expiry: default_delta_series_expiry(),
            retry: RetryConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            InvalidConfig::new("url", format!("{:?} is not a valid URL: {e}", self.url))
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
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
        if !(1..=256).contains(&self.shards) {
            return Err(InvalidConfig::new(
                "shards",
                format!("must be within 1..=256, got {}", self.shards),
            ));
        }
        if self.timeout.0.is_zero() {
            return Err(InvalidConfig::new("timeout", "must be greater than 0"));
        }
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(InvalidConfig::new(
                    format!("headers.{name}"),
                    "set by the remote-write protocol, cannot be configured",
                ));
            }
            if lower == "x-scope-orgid" {
                return Err(InvalidConfig::new(
                    format!("headers.{name}"),
                    "use tenant_id instead",
                ));
            }
            if lower == "authorization"
                && (self.basic_auth.is_some() || self.bearer_token.is_some())
            {
                return Err(InvalidConfig::new(
                    format!("headers.{name}"),
                    "conflicts with basic_auth/bearer_token",
                ));
            }
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                InvalidConfig::new("headers", format!("{name:?} is not a valid header name"))
            })?;
            reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                InvalidConfig::new(
                    format!("headers.{name}"),
                    "value is not a valid header value",
                )
            })?;
        }
        if let Some(tenant) = &self.tenant_id
            && (tenant.is_empty() || reqwest::header::HeaderValue::from_str(tenant).is_err())
        {
            return Err(InvalidConfig::new(
                "tenant_id",
                "must be a non-empty, printable header value",
            ));
        }
        sluice_http_client::validate_auth(self.basic_auth.as_ref(), self.bearer_token.as_deref())?;
        self.tls.validate()?;
        for (name, value) in &self.external_labels {
            if !is_valid_label_name(name) {
                return Err(InvalidConfig::new(
                    format!("external_labels.{name}"),
                    "not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)",
                ));
            }
            if value.is_empty() {
                return Err(InvalidConfig::new(
                    format!("external_labels.{name}"),
                    "value must not be empty",
                ));
            }
        }
        if self
            .promote_resource_attributes
            .iter()
            .any(String::is_empty)
        {
            return Err(InvalidConfig::new(
                "promote_resource_attributes",
                "names must not be empty",
            ));
        }
        if self.convert_delta_to_cumulative {
            if self.max_delta_series == 0 {
                return Err(InvalidConfig::new(
                    "max_delta_series",
                    "must be greater than 0",
                ));
            }
            if self.delta_series_expiry.0.is_zero() {
                return Err(InvalidConfig::new(
                    "delta_series_expiry",
                    "must be greater than 0",
                ));
            }
        }
        self.retry.validate().map_err(|e| e.under("retry"))
    }

    pub fn translate_options(&self) -> TranslateOptions {
        TranslateOptions {
            add_metric_suffixes: self.add_metric_suffixes,
            include_scope_labels: self.include_scope_labels,
            include_target_info: self.include_target_info,
            promote_resource_attributes: self.promote_resource_attributes.clone(),
            external_labels: self
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            send_native_histograms: self.send_native_histograms,
            send_exemplars: self.send_exemplars,
            convert_delta_to_cumulative: self.convert_delta_to_cumulative,
            max_delta_series: self.max_delta_series,
            delta_series_expiry: self.delta_series_expiry.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, toml::de::Error> {
        toml::from_str::<Config>(s)
    }

    #[test]
    fn defaults() {
        let c = parse(r#"url = "http://mimir:9009/api/v1/push""#).unwrap();
        assert_eq!(c, Config::new("http://mimir:9009/api/v1/push"));
        assert_eq!(c.timeout.0.as_secs(), 30);
        assert_eq!(c.shards, 4);
        assert_eq!(c.protocol, ProtocolVersion::V1);
        assert!(c.include_scope_labels && c.add_metric_suffixes && !c.send_native_histograms);
        c.validate().unwrap();
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            r#"
            url = "https://mimir/api/v1/push"
            protocol = "v2"
            headers = { "X-Extra" = "1" }
            tenant_id = "team-a"
            basic_auth = { username = "u", password = "p" }
            tls = { ca_file = "/etc/ca.pem", insecure_skip_verify = false }
            timeout = "10s"
            shards = 8
            add_metric_suffixes = false
            include_scope_labels = false
            promote_resource_attributes = ["k8s.namespace.name"]
            external_labels = { cluster = "eu-1" }
            send_native_histograms = true
            convert_delta_to_cumulative = true
            max_delta_series = 10
            delta_series_expiry = "1m"
            retry = { initial_interval = "1s", max_interval = "10s" }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.protocol, ProtocolVersion::V2);
        assert_eq!(c.shards, 8);
        assert_eq!(
            c.translate_options().external_labels,
            vec![("cluster".into(), "eu-1".into())]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("url = \"http://x\"\nshard = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard"), "{err}");
        assert!(parse("url = \"http://x\"\nprotocol = \"v3\"").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let check = |edit: &dyn Fn(&mut Config), key: &str| {
            let mut c = Config::new("http://localhost:9090/api/v1/write");
            edit(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.to_string().contains(key), "{err} should name {key}");
        };
        check(&|c| c.url = "ftp://x".into(), "url");
        check(&|c| c.url = "not a url".into(), "url");
        check(&|c| c.shards = 0, "shards");
        check(&|c| c.timeout = DurationStr::from_secs(0), "timeout");
        check(
            &|c| {
                c.headers.insert("Content-Type".into(), "text/plain".into());
            },
            "headers.Content-Type",
        );
        check(
            &|c| {
                c.headers.insert("X-Scope-OrgID".into(), "t".into());
            },
            "tenant_id",
        );
        check(
            &|c| {
                c.bearer_token = Some("t".into());
                c.basic_auth = Some(BasicAuth {
                    username: "u".into(),
                    password: "p".into(),
                });
            },
            "bearer_token",
        );
        check(&|c| c.tls.cert_file = Some("/x".into()), "tls.cert_file");
        check(
            &|c| {
                c.external_labels.insert("bad-name".into(), "v".into());
            },
            "external_labels.bad-name",
        );
        check(
            &|c| {
                c.external_labels.insert("__name__".into(), "v".into());
            },
            "external_labels.__name__",
        );
        check(
            &|c| {
                c.convert_delta_to_cumulative = true;
                c.max_delta_series = 0;
            },
            "max_delta_series",
        );
        check(&|c| c.retry.multiplier = 0.1, "retry.");
    }
}
