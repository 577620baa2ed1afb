//! `[receivers.<name>]` with `type = "otlp"`: which servers to start and their limits.
//! Defaults follow Grafana Alloy's `otelcol.receiver.otlp`.

use serde::Deserialize;
use sluice_core::config::DurationStr;
use sluice_core::{ByteSize, InvalidConfig};
use sluice_http_server::config::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_HEADER_TIMEOUT,
};
use sluice_http_server::{ConnectionLimits, ServerAuthConfig, ServerTlsConfig};
use std::time::Duration;

/// The OTLP receiver's configuration. An absent `grpc`/`http` table leaves that server off;
/// an empty one starts it with its defaults. At least one must be present.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP header (gRPC metadata key, case-insensitive) whose value becomes the items' tenant,
    /// e.g. `"X-Scope-OrgID"`. Default: none, items carry no tenant.
    #[serde(default)]
    pub tenant_header: Option<String>,
    /// OTLP/gRPC server. Default: off.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP server. Default: off.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// Intake validation (docs/validation.md). Default: on.
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Credentials clients must present on both servers (`bearer_token`, `basic_auth`, and
    /// per tenant under `tenants.<tenant>`, matched against `tenant_header`). Default: none.
    #[serde(default)]
    pub auth: Option<ServerAuthConfig>,
}

/// `[<receiver>.validation]`: refuse, item by item, what the backends are known to refuse.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Apply the rules. Off, only malformed protobuf/JSON is refused. Default `true`.
    pub enabled: bool,
    /// Timestamps later than now plus this are refused. Default `"10m"` (Mimir's and Loki's
    /// `creation_grace_period`).
    pub max_future: DurationStr,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            enabled: true,
            max_future: DurationStr(Duration::from_secs(600)),
        }
    }
}

impl ValidationConfig {
    /// The rules to apply, or `None` when validation is off.
    pub fn rules(&self) -> Option<sluice_otlp::Rules> {
        self.enabled.then_some(sluice_otlp::Rules {
            max_future: self.max_future.get(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` to listen on. Default `"0.0.0.0:4317"`.
    pub endpoint: String,
    /// Largest message accepted, after decompression. Default `"4MiB"`.
    pub max_recv_msg_size: ByteSize,
    /// A client must send a request's headers (and finish a TLS handshake) within this.
    /// Default `"60s"`.
    pub read_header_timeout: DurationStr,
    /// A connection that sends nothing for this long, with no request being answered, is
    /// closed. Default `"60s"`.
    pub idle_timeout: DurationStr,
    /// Connections held at once; more are refused and counted. Default `4096`.
    pub max_connections: usize,
    /// Serve TLS (`cert_file`, `key_file`; `client_ca_file` requires client certificates).
    /// Default: plain TCP.
    pub tls: Option<ServerTlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "0.0.0.0:4317".to_owned(),
            max_recv_msg_size: ByteSize::mib(4),
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on. Default `"0.0.0.0:4318"`.
    pub endpoint: String,
    /// Largest request body accepted as sent (compressed). Default `"20MiB"`.
    pub max_request_body_size: ByteSize,
    /// Largest body accepted after decompression; a larger one (a gzip bomb) gets 413 without
    /// memory growing past this cap. Default `"64MiB"`.
    pub max_decompressed_size: ByteSize,
    /// A client must send a request's headers (and finish a TLS handshake) within this.
    /// Default `"60s"`.
    pub read_header_timeout: DurationStr,
    /// A connection that sends nothing for this long, with no request being answered, is
    /// closed. Default `"60s"`.
    pub idle_timeout: DurationStr,
    /// Connections held at once; more are refused and counted. Default `4096`.
    pub max_connections: usize,
    /// Serve TLS (`cert_file`, `key_file`; `client_ca_file` requires client certificates).
    /// Default: plain TCP.
    pub tls: Option<ServerTlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "0.0.0.0:4318".to_owned(),
            max_request_body_size: ByteSize::mib(20),
            max_decompressed_size: ByteSize::mib(64),
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

macro_rules! limits {
    ($server:ty) => {
        impl $server {
            /// The listener's slow-client limits.
            pub fn limits(&self) -> ConnectionLimits {
                ConnectionLimits {
                    read_header_timeout: self.read_header_timeout.get(),
                    idle_timeout: self.idle_timeout.get(),
                    max_connections: self.max_connections,
                }
            }
        }
    };
}
limits!(GrpcConfig);
limits!(HttpConfig);

impl Config {
    /// Semantic checks; the error names the offending key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.grpc.is_none() && self.http.is_none() {
            return Err(InvalidConfig::new(
                "",
                "neither `grpc` nor `http` is configured: add `[<receiver>.grpc]` and/or `[<receiver>.http]` (an empty table uses the defaults)",
            ));
        }
        if let Some(header) = &self.tenant_header
            && http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            return Err(InvalidConfig::new(
                "tenant_header",
                format!("{header:?} is not a valid HTTP header name"),
            ));
        }
        if let Some(grpc) = &self.grpc {
            check_endpoint("grpc.endpoint", &grpc.endpoint)?;
            check_size("grpc.max_recv_msg_size", grpc.max_recv_msg_size)?;
            grpc.limits().validate().map_err(|e| e.under("grpc"))?;
        }
        if let Some(http) = &self.http {
            check_endpoint("http.endpoint", &http.endpoint)?;
            check_size("http.max_request_body_size", http.max_request_body_size)?;
            check_size("http.max_decompressed_size", http.max_decompressed_size)?;
            http.limits().validate().map_err(|e| e.under("http"))?;
        }
        if let Some(auth) = &self.auth {
            auth.validate().map_err(|e| e.under("auth"))?;
            if !auth.tenants.is_empty() && self.tenant_header.is_none() {
                return Err(InvalidConfig::new(
                    "auth.tenants",
                    "per-tenant credentials need `tenant_header` to name the tenant",
                ));
            }
        }
        if let (Some(grpc), Some(http)) = (&self.grpc, &self.http)
            && grpc.endpoint == http.endpoint
            && !grpc.endpoint.ends_with(":0")
        {
            return Err(InvalidConfig::new(
                "http.endpoint",
                format!(
                    "grpc.endpoint and http.endpoint are both {:?}: they need different ports",
                    grpc.endpoint
                ),
            ));
        }
        Ok(())
    }
}

fn check_endpoint(key: &str, endpoint: &str) -> Result<(), InvalidConfig> {
    let port = endpoint.rsplit_once(':').map(|(_, port)| port);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) if !endpoint.starts_with(':') => Ok(()),
        _ => Err(InvalidConfig::new(
            key,
            format!("{endpoint:?} is not `host:port` (e.g. \"0.0.0.0:4317\")"),
        )),
    }
}

fn check_size(key: &str, size: ByteSize) -> Result<(), InvalidConfig> {
    if size.get() == 0 {
        return Err(InvalidConfig::new(key, "must be greater than 0"));
    }
    if size.get() > u64::from(u32::MAX) {
        return Err(InvalidConfig::new(
            key,
            format!("{size} is over the 4GiB a request may hold"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(toml_text)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn empty_tables_take_alloy_defaults() {
        let config = parse("tenant_header = \"X-Scope-OrgID\"\n[grpc]\n[http]\n").unwrap();
        let grpc = config.grpc.unwrap();
        assert_eq!(grpc.endpoint, "0.0.0.0:4317");
        assert_eq!(grpc.max_recv_msg_size, ByteSize::mib(4));
        let http = config.http.unwrap();
        assert_eq!(http.endpoint, "0.0.0.0:4318");
        assert_eq!(http.max_request_body_size, ByteSize::mib(20));
        assert_eq!(http.max_decompressed_size, ByteSize::mib(64));
        assert_eq!(config.tenant_header.as_deref(), Some("X-Scope-OrgID"));
        assert_eq!(
            config.validation.rules(),
            Some(sluice_otlp::Rules::default())
        );
    }

    #[test]
    fn validation_can_be_turned_off_or_tuned() {
        let config = parse("[grpc]\n[validation]\nenabled = false\n").unwrap();
        assert_eq!(config.validation.rules(), None);
        let config = parse("[grpc]\n[validation]\nmax_future = \"1h\"\n").unwrap();
        assert_eq!(
            config.validation.rules().unwrap().max_future,
            Duration::from_secs(3600)
        );
        let err = parse("[grpc]\n[validation]\nstrict = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn sizes_and_endpoints_parse() {
        let config = parse(
            "[http]\nendpoint = \"127.0.0.1:9999\"\nmax_request_body_size = \"1MiB\"\nmax_decompressed_size = 4096\n",
        )
        .unwrap();
        assert!(config.grpc.is_none());
        let http = config.http.unwrap();
        assert_eq!(http.endpoint, "127.0.0.1:9999");
        assert_eq!(http.max_request_body_size, ByteSize::mib(1));
        assert_eq!(http.max_decompressed_size, ByteSize(4096));
    }

    #[test]
    fn refusals_name_the_key() {
        let err = parse("tenant_header = \"X\"\n").unwrap_err().to_string();
        assert!(err.contains("grpc") && err.contains("http"), "{err}");
        let err = parse("[grpc]\nendpoint = \"4317\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("grpc.endpoint"), "{err}");
        let err = parse("[http]\nmax_decompressed_size = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("http.max_decompressed_size"), "{err}");
        let err = parse("tenant_header = \"bad header\"\n[grpc]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tenant_header"), "{err}");
        let err =
            parse("[grpc]\nendpoint = \"0.0.0.0:5000\"\n[http]\nendpoint = \"0.0.0.0:5000\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("different ports"), "{err}");
        let err = parse("[grpc]\nmax_recv_msg_size = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid size"), "{err}");
        let err = parse("[grpc]\nendpoint = \"0.0.0.0:4317\"\ntypo = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = parse("[grpc]\n[statsd]\n").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
