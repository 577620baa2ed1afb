//! `[receivers.<name>]` with `type = "awf"`: where AWF events come from and how they are
//! turned into telemetry.

use crate::convert::ConvertConfig;
use crate::redact::{RedactionMode, Redactor};
use serde::Deserialize;
use sluice_core::InvalidConfig;
use sluice_core::{ByteSize, DurationStr};
pub use sluice_http_client::TlsConfig;
use sluice_http_server::config::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_HEADER_TIMEOUT,
};
use sluice_http_server::{BasicCredentials, ConnectionLimits, ServerAuthConfig, ServerTlsConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The AWF receiver's configuration. At least one of `streams`, `discovery` and `push` is
/// needed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Fixed SSE URLs to follow, e.g. `"http://awf:8000/executions/<id>/events"`. Each is
    /// followed (reconnecting with `Last-Event-ID`) until the server answers 204, or ends the
    /// stream after every execution seen on it has ended. Default: none.
    pub streams: Vec<String>,
    /// Poll an executions listing and follow each running execution's stream until its
    /// terminal event. Default: off.
    pub discovery: Option<DiscoveryConfig>,
    /// HTTP server taking pushed events (`POST` of one JSON event or an array). Default: off.
    pub push: Option<PushConfig>,
    /// Extra headers on every request to AWF (SSE and listing). Default: none.
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer <token>` to AWF. Default: none.
    pub bearer_token: Option<String>,
    /// TLS settings for `https://` AWF URLs (`ca_file`, `cert_file`/`key_file` for mutual
    /// TLS, `insecure_skip_verify`). Default: system-independent webpki roots.
    pub tls: TlsConfig,
    /// Reconnect when a stream delivers no byte (not even a keep-alive comment) for this long.
    /// AWF-style servers send a comment every ~15 s. Default `"45s"`.
    pub idle_timeout: DurationStr,
    /// Timeout for establishing a connection. Default `"10s"`.
    pub connect_timeout: DurationStr,
    /// First reconnect delay, unless the server set one with `retry:`. Doubles per consecutive
    /// connection without a new event. Default `"1s"`.
    pub reconnect_delay: DurationStr,
    /// Cap on the reconnect delay. Default `"30s"`.
    pub max_reconnect_delay: DurationStr,
    /// A step with no end event this long after its start was received is closed with an
    /// error status (`awf_step_duration_ms{status="timeout"}`). Default `"10m"`.
    pub step_timeout: DurationStr,
    /// An execution with no event at all for this long is closed with an error status and
    /// forgotten (`awf_workflow_total{status="timeout"}`). Default `"1h"`.
    pub execution_timeout: DurationStr,
    /// How often the cumulative metrics are emitted. Default `"10s"`.
    pub metrics_interval: DurationStr,
    /// `service.name` of everything produced. Default `"awf"`.
    pub service_name: String,
    /// Tenant (`X-Scope-OrgID`) attached to the produced items. Default: none.
    pub tenant: Option<String>,
    /// Keep workflow/agent inputs and outputs (`input`, `inputs`, `output`, `outputs`,
    /// `prompt`, `completion`, `messages`) in attributes. Default `false` (they are redacted;
    /// `docs/awf-events.md` §3, Redaction).
    pub keep_inputs_outputs: bool,
    /// Further attribute keys (at any depth of an event) to redact; `"error"` redacts error
    /// messages. Default: none.
    pub redact_keys: Vec<String>,
    /// `"drop"` removes redacted values, `"hash"` replaces them with `sha256:<hex>`.
    /// Default `"drop"`.
    pub redaction: RedactionMode,
    /// Salt of `redaction = "hash"`. Default: empty.
    pub hash_salt: String,
    /// Event ids (and, separately, span identities) remembered for de-duplication.
    /// Default `100000`.
    pub dedup_window: usize,
    /// Executions tracked at once. Default `100000`.
    pub max_open_executions: usize,
    /// Metric series kept at once. Default `10000`.
    pub max_series: usize,
    /// Largest SSE line / event or pushed body accepted. Default `"4MiB"`.
    pub max_event_size: ByteSize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            streams: Vec::new(),
            discovery: None,
            push: None,
            headers: BTreeMap::new(),
            bearer_token: None,
            tls: TlsConfig::default(),
            idle_timeout: DurationStr::from_secs(45),
            connect_timeout: DurationStr::from_secs(10),
            reconnect_delay: DurationStr::from_secs(1),
            max_reconnect_delay: DurationStr::from_secs(30),
            step_timeout: DurationStr::from_secs(600),
            execution_timeout: DurationStr::from_secs(3600),
            metrics_interval: DurationStr::from_secs(10),
            service_name: "awf".to_owned(),
            tenant: None,
            keep_inputs_outputs: false,
            redact_keys: Vec::new(),
            redaction: RedactionMode::Drop,
            hash_salt: String::new(),
            dedup_window: 100_000,
            max_open_executions: 100_000,
            max_series: 10_000,
            max_event_size: ByteSize::mib(4),
        }
    }
}

/// `discovery = { url = "http://awf:8000/executions", interval = "5s" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The executions listing: a JSON array of executions, or an object holding one under
    /// `executions`, `items` or `data`. Each has `id` (or `execution_id`) and `status`.
    pub url: String,
    /// Poll period. Default `"5s"`.
    #[serde(default = "default_interval")]
    pub interval: DurationStr,
    /// Stream URL of an execution; `{url}` is the listing URL and `{id}` the execution id.
    /// An `events_url` in the listing entry wins. Default `"{url}/{id}/events"`.
    #[serde(default = "default_events_url")]
    pub events_url: String,
    /// Executions followed at once. Default `1000`.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// A stream whose body ends before the execution's terminal event is reconnected; after
    /// this many such ends in a row without a new event it is given up. Default `10`.
    #[serde(default = "default_max_premature_ends")]
    pub max_premature_ends: u32,
}

fn default_interval() -> DurationStr {
    DurationStr::from_secs(5)
}

fn default_events_url() -> String {
    "{url}/{id}/events".to_owned()
}

fn default_max_streams() -> usize {
    1000
}

pub fn default_max_premature_ends() -> u32 {
    10
}

/// `push = { endpoint = "0.0.0.0:4320" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// `host:port` to listen on. Default `"0.0.0.0:4320"`.
    pub endpoint: String,
    /// Path taking `POST`ed events. Default `"/v1/awf/events"`.
    pub path: String,
    /// When set, requests must carry `Authorization: Bearer <token>` (`docs/awf-events.md` §2). Default: none.
    pub bearer_token: Option<String>,
    /// When set, requests may (or, without `bearer_token`, must) carry these basic-auth
    /// credentials. Default: none.
    pub basic_auth: Option<BasicCredentials>,
    /// A client must send a request's headers (and finish a TLS handshake) within this.
    /// Default `"60s"`.
    pub read_header_timeout: DurationStr,
    /// A connection that sends nothing for this long, with no request being answered, is
    /// closed. Default `"60s"`.
    pub idle_timeout: DurationStr,
    /// Connections held at once; more are refused (503) and counted. Default `4096`.
    pub max_connections: usize,
    /// Serve TLS (`cert_file`, `key_file`; `client_ca_file` requires client certificates).
    /// Default: plain TCP.
    pub tls: Option<ServerTlsConfig>,
}

impl PushConfig {
    /// The listener's slow-client limits.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            read_header_timeout: self.read_header_timeout.get(),
            idle_timeout: self.idle_timeout.get(),
            max_connections: self.max_connections,
        }
    }

    /// The credentials clients must present, if any.
    pub fn auth(&self) -> Option<ServerAuthConfig> {
        (self.bearer_token.is_some() || self.basic_auth.is_some()).then(|| ServerAuthConfig {
            bearer_token: self.bearer_token.clone(),
            basic_auth: self.basic_auth.clone(),
            tenants: BTreeMap::new(),
        })
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            endpoint: "0.0.0.0:4320".to_owned(),
            path: "/v1/awf/events".to_owned(),
            bearer_token: None,
            basic_auth: None,
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

impl Config {
    /// Semantic checks; the message starts with the offending key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.streams.is_empty() && self.discovery.is_none() && self.push.is_none() {
            return Err(InvalidConfig::new(
                "streams",
                "none of `streams`, `discovery` and `push` is configured, so the receiver would get no events",
            ));
        }
        for (i, s) in self.streams.iter().enumerate() {
            check_url(&format!("streams[{i}]"), s)?;
        }
        if let Some(d) = &self.discovery {
            check_url("discovery.url", &d.url)?;
            check_positive("discovery.interval", d.interval)?;
            if !d.events_url.contains("{id}") {
                return Err(InvalidConfig::new(
                    "discovery.events_url",
                    format!("{:?} must contain {{id}}", d.events_url),
                ));
            }
            check_url("discovery.events_url", &events_url(d, "x"))?;
            if d.max_streams == 0 {
                return Err(InvalidConfig::new(
                    "discovery.max_streams",
                    "must be greater than 0",
                ));
            }
            if d.max_premature_ends == 0 {
                return Err(InvalidConfig::new(
                    "discovery.max_premature_ends",
                    "must be greater than 0",
                ));
            }
        }
        if let Some(p) = &self.push {
            if p.endpoint.parse::<SocketAddr>().is_err() {
                return Err(InvalidConfig::new(
                    "push.endpoint",
                    format!("{:?} is not `ip:port` (e.g. \"0.0.0.0:4320\")", p.endpoint),
                ));
            }
            if !p.path.starts_with('/') {
                return Err(InvalidConfig::new(
                    "push.path",
                    format!("{:?} must start with '/'", p.path),
                ));
            }
            p.limits().validate().map_err(|e| e.under("push"))?;
            if let Some(auth) = p.auth() {
                auth.validate().map_err(|e| e.under("push"))?;
            }
        }
        for (k, v) in &self.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(InvalidConfig::new(
                    "headers",
                    format!("{k:?} is not a valid HTTP header name"),
                ));
            }
            if http::HeaderValue::from_str(v).is_err() {
                return Err(InvalidConfig::new(
                    "headers",
                    format!("the value of {k:?} is not a valid header value"),
                ));
            }
        }
        if let Some(t) = &self.bearer_token
            && http::HeaderValue::from_str(&format!("Bearer {t}")).is_err()
        {
            return Err(InvalidConfig::new(
                "bearer_token",
                "contains characters not allowed in a header",
            ));
        }
        self.tls.validate()?;
        check_positive("idle_timeout", self.idle_timeout)?;
        check_positive("connect_timeout", self.connect_timeout)?;
        check_positive("reconnect_delay", self.reconnect_delay)?;
        check_positive("step_timeout", self.step_timeout)?;
        check_positive("execution_timeout", self.execution_timeout)?;
        check_positive("metrics_interval", self.metrics_interval)?;
        if self.max_reconnect_delay.0 < self.reconnect_delay.0 {
            return Err(InvalidConfig::new(
                "max_reconnect_delay",
                "must not be smaller than reconnect_delay",
            ));
        }
        for (key, v) in [
            ("dedup_window", self.dedup_window),
            ("max_open_executions", self.max_open_executions),
            ("max_series", self.max_series),
        ] {
            if v == 0 {
                return Err(InvalidConfig::new(key, "must be greater than 0"));
            }
        }
        if self.max_event_size.get() < 1024 {
            return Err(InvalidConfig::new(
                "max_event_size",
                "must be at least 1KiB",
            ));
        }
        if self.service_name.is_empty() {
            return Err(InvalidConfig::new("service_name", "must not be empty"));
        }
        Ok(())
    }

    /// Listening addresses by config key, for clash checks before building.
    pub fn listen_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.push
            .iter()
            .filter_map(|p| p.endpoint.parse().ok())
            .map(|a| ("push.endpoint".to_owned(), a))
            .collect()
    }

    pub(crate) fn convert_config(&self) -> ConvertConfig {
        ConvertConfig {
            service_name: self.service_name.clone(),
            step_timeout: self.step_timeout.get(),
            execution_timeout: self.execution_timeout.get(),
            dedup_window: self.dedup_window,
            max_open_executions: self.max_open_executions,
            max_series: self.max_series,
            redactor: Redactor::new(
                self.redaction,
                &self.redact_keys,
                self.keep_inputs_outputs,
                &self.hash_salt,
            ),
        }
    }
}

/// The stream URL of execution `id` under a discovery config.
pub fn events_url(d: &DiscoveryConfig, id: &str) -> String {
    d.events_url
        .replace("{url}", d.url.trim_end_matches('/'))
        .replace("{id}", &percent_encode_segment(id))
}

/// Encodes an execution id for use as one URL path segment.
fn percent_encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, sluice_http_client::PATH_SEGMENT).to_string()
}

fn check_url(key: &str, s: &str) -> Result<(), InvalidConfig> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(InvalidConfig::new(
            key,
            format!(
                "{s:?} must be an http:// or https:// URL with a host (got scheme {:?})",
                u.scheme()
            ),
        )),
        Err(e) => Err(InvalidConfig::new(key, format!("{s:?} is not a URL: {e}"))),
    }
}

fn check_positive(key: &str, d: DurationStr) -> Result<(), InvalidConfig> {
    if d.0.is_zero() {
        return Err(InvalidConfig::new(key, "must be greater than 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            r#"
            streams = ["http://awf:8000/executions/ex-1/events"]
            discovery = { url = "http://awf:8000/executions", interval = "2s" }
            push = { endpoint = "127.0.0.1:4320", bearer_token = "s3cret" }
            headers = { "X-Api-Key" = "k" }
            bearer_token = "t"
            idle_timeout = "30s"
            step_timeout = "5m"
            redaction = "hash"
            redact_keys = ["user_email"]
            keep_inputs_outputs = true
            tls = { insecure_skip_verify = true }
            "#,
        )
        .unwrap();
        let d = c.discovery.as_ref().unwrap();
        assert_eq!(d.interval, DurationStr::from_secs(2));
        assert_eq!(d.max_premature_ends, 10);
        assert_eq!(
            events_url(d, "ex 1/x"),
            "http://awf:8000/executions/ex%201%2Fx/events"
        );
        assert_eq!(c.push.as_ref().unwrap().path, "/v1/awf/events");
        assert_eq!(c.redaction, RedactionMode::Hash);
        assert_eq!(c.step_timeout, DurationStr::from_secs(300));
        assert_eq!(c.metrics_interval, DurationStr::from_secs(10));
        assert_eq!(
            c.listen_addrs(),
            vec![(
                "push.endpoint".to_owned(),
                "127.0.0.1:4320".parse().unwrap()
            )]
        );
    }

    #[test]
    fn refusals_name_the_key() {
        let err = parse("").unwrap_err().to_string();
        assert!(err.starts_with("streams"), "{err}");
        let err = parse(r#"streams = ["ftp://x/y"]"#).unwrap_err().to_string();
        assert!(err.starts_with("streams[0]"), "{err}");
        let err =
            parse(r#"discovery = { url = "http://a/executions", events_url = "http://a/x" }"#)
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("discovery.events_url"), "{err}");
        let err = parse(r#"discovery = { url = "http://a/executions", max_premature_ends = 0 }"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("discovery.max_premature_ends"), "{err}");
        let err = parse(r#"push = { endpoint = "4320" }"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("push.endpoint"), "{err}");
        let err = parse("push = {}\nidle_timeout = \"0\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("idle_timeout"), "{err}");
        let err = parse("push = {}\nredaction = \"shred\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant"), "{err}");
        let err = parse("push = {}\nheaders = { \"bad header\" = \"x\" }")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("headers"), "{err}");
        let err = parse("push = {}\ntypo = 1").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = parse("push = { endpoint = \"0.0.0.0:1\", extra = 1 }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = parse("push = {}\nreconnect_delay = \"10s\"\nmax_reconnect_delay = \"1s\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("max_reconnect_delay"), "{err}");
    }
}
