//! `[exporters.<name>]` with `type = "otlp"`.

use serde::Deserialize;
use sluice_core::InvalidConfig;
use sluice_core::retry::RetryConfig;
use sluice_core::{ByteSize, DurationStr};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Wire protocol used to reach the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC (port 4317). The default, as in Alloy's `otelcol.exporter.otlp`.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    Http,
}

/// Body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// The default, as in Alloy.
    #[default]
    Gzip,
    None,
}

/// Client TLS settings (`[exporters.<name>.tls]`). Only valid with an `https://` endpoint; an
/// `https://` endpoint without this section verifies the server against the webpki roots.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust instead of the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS); requires `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. For tests and throwaway setups only. Default false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Name to verify the server certificate against (and, over gRPC, to send as SNI) instead
    /// of the endpoint's host.
    pub server_name: Option<String>,
}

/// Config of the OTLP exporter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC: `scheme://host:port`. HTTP: base URL; `/v1/{traces,metrics,logs}` is appended.
    /// `https://` turns TLS on.
    pub endpoint: String,
    /// `"grpc"` (default) or `"http"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `"gzip"` (default) or `"none"`.
    #[serde(default)]
    pub compression: Compression,
    /// Limit for one attempt, connecting included. Default `"5s"` (Alloy's).
    #[serde(default = "default_timeout")]
    pub timeout: DurationStr,
    /// Largest uncompressed request body. Batches are split to stay below it; an item that is
    /// larger on its own is sent alone. Default `"3MiB"`, well under the 4 MiB a gRPC server
    /// (Tempo's 4317 receiver included) accepts by default.
    #[serde(default = "default_max_request_size")]
    pub max_request_size: ByteSize,
    /// Static headers (gRPC metadata) sent with every request. A batch's tenant replaces
    /// `X-Scope-OrgID`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// gRPC only: HTTP/2 connections that requests are spread over. A server that keeps the
    /// protocol's 64 KiB flow-control window (RFC 9113 §6.9.2) lets one connection carry only
    /// that much per round trip, so concurrent batches on one connection queue behind each
    /// other. Default 8, the pipeline's default batches in flight.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Retry policy; applied by the pipeline.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_timeout() -> DurationStr {
    DurationStr::from_secs(5)
}

fn default_connections() -> usize {
    8
}

fn default_max_request_size() -> ByteSize {
    ByteSize::mib(3)
}

/// Headers that the transport owns; setting them statically would break requests.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "te",
];

impl Config {
    /// A config with every default, for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Config {
        Config {
            endpoint: endpoint.into(),
            protocol: Protocol::default(),
            compression: Compression::default(),
            timeout: default_timeout(),
            max_request_size: default_max_request_size(),
            headers: BTreeMap::new(),
            tls: None,
            connections: default_connections(),
            retry: RetryConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.connections == 0 || self.connections > 64 {
            return Err(InvalidConfig::new(
                "connections",
                format!("{} must be between 1 and 64", self.connections),
            ));
        }
        let uri: http::Uri = self.endpoint.parse().map_err(|e| {
            InvalidConfig::new("endpoint", format!("{:?} is not a URL: {e}", self.endpoint))
        })?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(InvalidConfig::new(
                    "endpoint",
                    format!("{:?} must start with http:// or https://", self.endpoint),
                ));
            }
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(InvalidConfig::new(
                "endpoint",
                format!("{:?} has no host", self.endpoint),
            ));
        }
        if uri.query().is_some() {
            return Err(InvalidConfig::new(
                "endpoint",
                format!("{:?} must not have a query string", self.endpoint),
            ));
        }
        if self.protocol == Protocol::Grpc && !matches!(uri.path(), "" | "/") {
            return Err(InvalidConfig::new(
                "endpoint",
                format!(
                    "{:?} has a path, but a gRPC endpoint is scheme://host:port",
                    self.endpoint
                ),
            ));
        }
        if self.timeout.0.is_zero() {
            return Err(InvalidConfig::new("timeout", "must be greater than 0"));
        }
        if self.max_request_size.0 < 1024 {
            return Err(InvalidConfig::new(
                "max_request_size",
                format!("must be at least 1KiB, got {}", self.max_request_size),
            ));
        }
        for (name, value) in &self.headers {
            let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                InvalidConfig::new("headers", format!("{name:?} is not a valid header name"))
            })?;
            if RESERVED_HEADERS.contains(&header.as_str()) || header.as_str().starts_with("grpc-") {
                return Err(InvalidConfig::new(
                    "headers",
                    format!("{name:?} is set by the exporter itself and cannot be configured"),
                ));
            }
            http::HeaderValue::from_str(value).map_err(|_| {
                InvalidConfig::new(
                    format!("headers.{name}"),
                    "the value is not a valid header value",
                )
            })?;
        }
        if let Some(tls) = &self.tls {
            if !https {
                return Err(InvalidConfig::new(
                    "tls",
                    format!("is set, but endpoint {:?} is not https://", self.endpoint),
                ));
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(InvalidConfig::new(
                    "tls",
                    "cert_file and key_file must be set together",
                ));
            }
            if let Some(name) = &tls.server_name
                && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
            {
                return Err(InvalidConfig::new(
                    "tls.server_name",
                    format!("{name:?} is not a valid DNS name or IP"),
                ));
            }
        }
        self.retry.validate().map_err(|e| e.under("retry"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(toml_text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse(r#"endpoint = "http://tempo:4317""#).unwrap();
        assert_eq!(c, Config::new("http://tempo:4317"));
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.timeout.get(), std::time::Duration::from_secs(5));
        assert_eq!(c.max_request_size.get(), 3 * 1024 * 1024);
    }

    #[test]
    fn full_config() {
        let c = parse(
            r#"
            endpoint = "https://tempo:4317"
            protocol = "grpc"
            compression = "none"
            timeout = "2s"
            max_request_size = "1MiB"
            headers = { "X-Scope-OrgID" = "tenant-a" }
            [tls]
            ca_file = "/ca.pem"
            server_name = "tempo.internal"
            [retry]
            initial_interval = "1s"
            "#,
        )
        .unwrap();
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.headers["X-Scope-OrgID"], "tenant-a");
        assert_eq!(
            c.tls.unwrap().server_name.as_deref(),
            Some("tempo.internal")
        );
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            (r#"endpoint = "tempo:4317""#, "endpoint"),
            (r#"endpoint = "ftp://tempo:4317""#, "endpoint"),
            (r#"endpoint = "http://tempo:4317/x""#, "path"),
            (
                r#"endpoint = "http://t:1"
                timeout = "0""#,
                "timeout",
            ),
            (
                r#"endpoint = "http://t:1"
                max_request_size = 10"#,
                "max_request_size",
            ),
            (
                r#"endpoint = "http://t:1"
                headers = { "content-type" = "x" }"#,
                "headers",
            ),
            (
                r#"endpoint = "http://t:1"
                headers = { "bad name" = "x" }"#,
                "headers",
            ),
            (
                r#"endpoint = "http://t:1"
                [tls]
                insecure_skip_verify = true"#,
                "tls",
            ),
            (
                r#"endpoint = "https://t:1"
                [tls]
                cert_file = "/c.pem""#,
                "key_file",
            ),
            (
                r#"endpoint = "http://t:1"
                bogus = 1"#,
                "bogus",
            ),
            (
                r#"endpoint = "http://t:1"
                protocol = "thrift""#,
                "thrift",
            ),
            (
                r#"endpoint = "http://t:1"
                [retry]
                multiplier = 0.1"#,
                "retry",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        // HTTP endpoints may carry a base path.
        parse(
            r#"endpoint = "http://gw:4318/otlp"
               protocol = "http""#,
        )
        .unwrap();
    }
}
