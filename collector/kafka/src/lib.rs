//! Kafka client settings shared by the Kafka exporter and receiver: `brokers`, `client_id`,
//! `tls = { ... }`, `sasl = { ... }` and raw librdkafka `properties`, turned into an
//! [`rdkafka::ClientConfig`]. One copy, so both components read the same keys the same way.
//!
//! The client is librdkafka (through `rdkafka`, built from source with SSL, zstd, lz4, snappy).
//! The property names it is given are librdkafka's (`CONFIGURATION.md` of librdkafka).
//!
//! [`ClientReports`] is the other shared part: what librdkafka says about a client's
//! connections (a refused login, a failed TLS handshake), logged and counted per component.

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use sluice_core::{InvalidConfig, Signal, reason};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// TLS towards the brokers (`security.protocol` `ssl` or `sasl_ssl`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the CA certificates to trust. Default: the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `key_file`) for mutual TLS. Default: none.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`. Default: none.
    pub key_file: Option<PathBuf>,
    /// Accept any broker certificate and host name. For tests only. Default `false`.
    pub insecure_skip_verify: bool,
}

/// SASL mechanisms Sluice offers; all are built into librdkafka (no Cyrus SASL needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `sasl = { mechanism = "SCRAM-SHA-512", username = "...", password = "..." }`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslConfig {
    // The password never reaches a log line or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The connection part of a Kafka component's config, flattened into it (so the component,
/// not this struct, refuses unknown keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClientSettings {
    /// Bootstrap brokers, `host:port`. Required.
    pub brokers: Vec<String>,
    /// `client.id` sent to the brokers (quotas, broker logs). Default `"sluice"`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// TLS towards the brokers. Unset: plaintext.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// SASL authentication. Unset: none.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// Extra librdkafka properties, applied last (for tuning that has no key of its own).
    /// Properties that Sluice's guarantees depend on are refused; see [`RESERVED`].
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_client_id() -> String {
    "sluice".into()
}

/// librdkafka properties that the components set themselves because delivery guarantees rest
/// on them (idempotence, acks, manual offset storage); `properties` may not override them.
pub const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "group.id",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
];

impl ClientSettings {
    /// Semantic checks, naming the offending key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.brokers.is_empty() {
            return Err(InvalidConfig::new(
                "brokers",
                "must list at least one host:port",
            ));
        }
        for broker in &self.brokers {
            let ok = broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(InvalidConfig::new(
                    "brokers",
                    format!("{broker:?} is not host:port"),
                ));
            }
        }
        if self.client_id.is_empty() {
            return Err(InvalidConfig::new("client_id", "must not be empty"));
        }
        if let Some(tls) = &self.tls
            && tls.cert_file.is_some() != tls.key_file.is_some()
        {
            return Err(InvalidConfig::new(
                "tls.cert_file",
                "tls.cert_file and tls.key_file must be set together",
            ));
        }
        if let Some(sasl) = &self.sasl
            && sasl.username.is_empty()
        {
            return Err(InvalidConfig::new("sasl.username", "must not be empty"));
        }
        if let Some(key) = self
            .properties
            .keys()
            .find(|k| RESERVED.contains(&k.as_str()))
        {
            return Err(InvalidConfig::new(
                "properties",
                format!("{key:?} is set by Sluice itself and cannot be overridden"),
            ));
        }
        Ok(())
    }

    /// `security.protocol` as librdkafka spells it.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    /// The librdkafka client config: connection, TLS and SASL, then `properties`.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            .set("security.protocol", self.security_protocol());
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_file {
                config.set("ssl.ca.location", ca.to_string_lossy());
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                config
                    .set("ssl.certificate.location", cert.to_string_lossy())
                    .set("ssl.key.location", key.to_string_lossy());
            }
            if tls.insecure_skip_verify {
                config
                    .set("enable.ssl.certificate.verification", "false")
                    .set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Errors librdkafka reports about a client's connections rather than about one record (a
/// refused login, a failed TLS handshake, every broker down), by `component_id` and `reason`.
pub const CLIENT_ERRORS: &str = "sluice_kafka_client_errors_total";

/// The `reason` of a client error, in the shared vocabulary where one fits.
pub fn client_error_reason(code: RDKafkaErrorCode) -> &'static str {
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            reason::UNAUTHORIZED
        }
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::GroupAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => reason::FORBIDDEN,
        RDKafkaErrorCode::SSL | RDKafkaErrorCode::Resolve | RDKafkaErrorCode::AllBrokersDown => {
            reason::CONNECT
        }
        RDKafkaErrorCode::BrokerTransportFailure => reason::TRANSPORT,
        RDKafkaErrorCode::MessageTimedOut
        | RDKafkaErrorCode::RequestTimedOut
        | RDKafkaErrorCode::OperationTimedOut => reason::TIMEOUT,
        _ => "kafka_error",
    }
}

/// One component's reports from its Kafka client: errors are logged with librdkafka's own
/// explanation and counted in [`CLIENT_ERRORS`]; librdkafka's log lines go to Sluice's log
/// with the component's id. The last error is kept, so that a record that timed out can say
/// why (librdkafka keeps records queued while a login is refused, so they only time out).
pub struct ClientReports {
    component_id: Arc<str>,
    last_error: Mutex<Option<LastError>>,
}

struct LastError {
    at: Instant,
    reason: &'static str,
    text: String,
}

impl ClientReports {
    pub fn new(component_id: &str) -> ClientReports {
        ClientReports {
            component_id: component_id.into(),
            last_error: Mutex::new(None),
        }
    }

    /// Logs and counts one client error; `detail` is librdkafka's explanation, if it gave one.
    pub fn error(&self, error: &KafkaError, detail: &str) {
        let mut reason = error
            .rdkafka_error_code()
            .map_or("kafka_error", client_error_reason);
        // librdkafka reports a failed TLS handshake (or a refused TCP connect) as a transport
        // failure "(after N ms in state SSL_HANDSHAKE)": before the connection was up, so it
        // is a failure to connect.
        if reason == reason::TRANSPORT && broker_state(detail).is_some_and(|state| state != "UP") {
            reason = reason::CONNECT;
        }
        let text = if detail.is_empty() {
            error.to_string()
        } else {
            format!("{error}: {detail}")
        };
        tracing::warn!(component_id = %self.component_id, reason, error = %text, "kafka client error");
        metrics::counter!(CLIENT_ERRORS, "component_id" => self.component_id.to_string(), "reason" => reason)
            .increment(1);
        // "All brokers down" follows the error that took the last one down (a refused login,
        // a failed handshake): that one explains, so it is not overwritten.
        let summary = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        if let Ok(mut last) = self.last_error.lock()
            && (!summary || last.is_none())
        {
            *last = Some(LastError {
                at: Instant::now(),
                reason,
                text,
            });
        }
    }

    /// Forgets the last error (the client delivered since).
    pub fn clear_error(&self) {
        if let Ok(mut last) = self.last_error.lock()
            && last.is_some()
        {
            *last = None;
        }
    }

    /// The last error reported within `window` and not cleared since: its reason and text.
    pub fn recent_error(&self, window: Duration) -> Option<(&'static str, String)> {
        let last = self.last_error.lock().ok()?;
        let last = last.as_ref()?;
        (last.at.elapsed() <= window).then(|| (last.reason, last.text.clone()))
    }

    /// Forwards one librdkafka log line.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let id = &*self.component_id;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(component_id = %id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(component_id = %id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(component_id = %id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(component_id = %id, facility, "librdkafka: {message}")
            }
        }
    }
}

/// The broker connection state librdkafka names in an error ("... (after 1ms in state
/// SSL_HANDSHAKE)").
fn broker_state(detail: &str) -> Option<&str> {
    let rest = &detail[detail.rfind("in state ")? + "in state ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// A client context that only reports (a producer's); consumers wrap [`ClientReports`] in a
/// context of their own.
#[derive(Clone)]
pub struct ReportingContext(pub Arc<ClientReports>);

impl ClientContext for ReportingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.0.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, detail: &str) {
        self.0.error(&error, detail);
    }
}

/// Topic per signal. The defaults are the OpenTelemetry Collector's, so a Sluice exporter and
/// a Collector receiver (or the reverse) meet without configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub traces: String,
    pub metrics: String,
    pub logs: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            traces: "otlp_spans".into(),
            metrics: "otlp_metrics".into(),
            logs: "otlp_logs".into(),
        }
    }
}

impl Topics {
    pub fn get(&self, signal: Signal) -> &str {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    /// Checks every topic name against Kafka's rules (1–249 of `[a-zA-Z0-9._-]`).
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        for signal in Signal::ALL {
            let topic = self.get(signal);
            let valid = !topic.is_empty()
                && topic.len() <= 249
                && topic != "."
                && topic != ".."
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                return Err(InvalidConfig::new(
                    format!("topics.{signal}"),
                    format!(
                        "{topic:?} is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ClientSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn plaintext_by_default() {
        let s = parse(r#"brokers = ["127.0.0.1:9092"]"#);
        assert_eq!(s.validate(), Ok(()));
        let c = s.client_config();
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(c.get("client.id"), Some("sluice"));
    }

    #[test]
    fn sasl_scram_over_tls() {
        let s = parse(
            r#"
            brokers = ["k1:9093", "k2:9093"]
            tls = { ca_file = "/etc/ca.pem" }
            sasl = { mechanism = "SCRAM-SHA-512", username = "gw", password = "s3cret" }
            "#,
        );
        assert_eq!(s.validate(), Ok(()));
        let c = s.client_config();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(c.get("bootstrap.servers"), Some("k1:9093,k2:9093"));
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn plain_over_plaintext() {
        let s = parse(
            r#"
            brokers = ["k1:9092"]
            sasl = { mechanism = "PLAIN", username = "gw", password = "pw" }
            "#,
        );
        assert_eq!(s.validate(), Ok(()));
        let c = s.client_config();
        assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(c.get("sasl.username"), Some("gw"));
        assert_eq!(c.get("sasl.password"), Some("pw"));
    }

    #[test]
    fn the_cause_outlives_the_all_brokers_down_that_follows() {
        let reports = ClientReports::new("exporters.kafka");
        assert_eq!(reports.recent_error(Duration::from_secs(60)), None);
        reports.error(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid-proof",
        );
        reports.error(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let (reason, text) = reports.recent_error(Duration::from_secs(60)).unwrap();
        assert_eq!(reason, reason::UNAUTHORIZED);
        assert!(text.contains("invalid-proof"), "{text}");
        reports.clear_error();
        assert_eq!(reports.recent_error(Duration::from_secs(60)), None);
    }

    #[test]
    fn a_transport_failure_before_the_connection_was_up_is_a_connect_failure() {
        let transport = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        for (detail, expected) in [
            (
                "ssl://k:9093/bootstrap: error:0A000086:SSL routines::certificate verify \
                 failed (after 1ms in state SSL_HANDSHAKE)",
                reason::CONNECT,
            ),
            (
                "k:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms \
                 in state CONNECT, 3 identical error(s) suppressed)",
                reason::CONNECT,
            ),
            (
                "k:9092/1: Disconnected (after 5001ms in state UP)",
                reason::TRANSPORT,
            ),
            ("no state named", reason::TRANSPORT),
        ] {
            let reports = ClientReports::new("receivers.kafka");
            reports.error(&transport, detail);
            let (reason, _) = reports.recent_error(Duration::from_secs(60)).unwrap();
            assert_eq!(reason, expected, "{detail}");
        }
    }

    #[test]
    fn refusals_name_the_key() {
        let bad = [
            (r#"brokers = []"#, "brokers"),
            (r#"brokers = ["nohost"]"#, "brokers"),
            (
                r#"brokers = ["k:1"]
                tls = { cert_file = "c.pem" }"#,
                "tls.cert_file",
            ),
            (
                r#"brokers = ["k:1"]
                properties = { "enable.idempotence" = "false" }"#,
                "properties",
            ),
        ];
        for (text, key) in bad {
            let err = parse(text).validate().unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
        assert!(
            toml::from_str::<ClientSettings>(
                r#"brokers = ["k:1"]
               sasl = { mechanism = "GSSAPI", username = "u", password = "p" }"#
            )
            .is_err()
        );
    }
}
