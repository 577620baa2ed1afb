//! The TOML side of a listener: connection limits, server TLS and client authentication.
//! Receivers embed these types so every listener reads the same keys the same way.

use serde::Deserialize;
use sluice_core::InvalidConfig;
use sluice_core::config::DurationStr;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default `read_header_timeout`: the OpenTelemetry Collector's `confighttp` default.
pub const DEFAULT_READ_HEADER_TIMEOUT: DurationStr = DurationStr::from_secs(60);
/// Default `idle_timeout`: the OpenTelemetry Collector's `confighttp` default.
pub const DEFAULT_IDLE_TIMEOUT: DurationStr = DurationStr::from_secs(60);
/// Default `max_connections` per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How a listener treats slow and idle clients, and how many it holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A client must send a request's headers (and finish a TLS handshake) within this time.
    pub read_header_timeout: Duration,
    /// A connection that sends nothing for this long while no request of it is being
    /// answered is closed. gRPC listeners ping their clients at half this interval, so a
    /// live gRPC client always answers in time and only dead peers are dropped.
    pub idle_timeout: Duration,
    /// Connections held at once; the next one is refused (HTTP/1 gets a 503) and counted.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT.get(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT.get(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ConnectionLimits {
    /// Semantic checks; keys are relative to the listener's table.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.read_header_timeout.is_zero() {
            return Err(InvalidConfig::new(
                "read_header_timeout",
                "must be greater than 0",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(InvalidConfig::new("idle_timeout", "must be greater than 0"));
        }
        if self.max_connections == 0 {
            return Err(InvalidConfig::new(
                "max_connections",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// `tls = { cert_file, key_file, client_ca_file }`: serve TLS; with `client_ca_file`, also
/// require a client certificate signed by one of its CAs (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain the server presents.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate they signed.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// `basic_auth = { username, password }` a client must present.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials: a bearer token, basic auth, or both (either is then accepted).
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Credentials {
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// `Authorization: Basic <base64(username:password)>`.
    pub basic_auth: Option<BasicCredentials>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("basic_auth", &self.basic_auth)
            .finish()
    }
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.bearer_token.is_none() && self.basic_auth.is_none()
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(token) = &self.bearer_token
            && (token.is_empty() || http::HeaderValue::from_str(token).is_err())
        {
            return Err(InvalidConfig::new(
                "bearer_token",
                "must be non-empty and fit in an HTTP header",
            ));
        }
        if let Some(basic) = &self.basic_auth
            && (basic.username.is_empty() || basic.username.contains(':'))
        {
            return Err(InvalidConfig::new(
                "basic_auth.username",
                "must be non-empty and hold no ':'",
            ));
        }
        Ok(())
    }
}

/// `[<receiver>.auth]`: what clients must present. Top-level credentials are good for every
/// tenant; `[<receiver>.auth.tenants.<tenant>]` credentials only for requests whose tenant
/// header names that tenant.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServerAuthConfig {
    pub bearer_token: Option<String>,
    pub basic_auth: Option<BasicCredentials>,
    pub tenants: BTreeMap<String, Credentials>,
}

impl std::fmt::Debug for ServerAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAuthConfig")
            .field("any_tenant", &self.any_tenant())
            .field("tenants", &self.tenants)
            .finish()
    }
}

impl ServerAuthConfig {
    /// The credentials good for every tenant.
    pub fn any_tenant(&self) -> Credentials {
        Credentials {
            bearer_token: self.bearer_token.clone(),
            basic_auth: self.basic_auth.clone(),
        }
    }

    /// Semantic checks; keys are relative to this table.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let any = self.any_tenant();
        any.validate()?;
        if any.is_empty() && self.tenants.is_empty() {
            return Err(InvalidConfig::new(
                "",
                "set bearer_token, basic_auth or tenants (an empty auth table would refuse every request)",
            ));
        }
        for (tenant, credentials) in &self.tenants {
            let table = format!("tenants.{tenant}");
            if credentials.is_empty() {
                return Err(InvalidConfig::new(table, "set bearer_token or basic_auth"));
            }
            credentials.validate().map_err(|e| e.under(&table))?;
        }
        Ok(())
    }
}
