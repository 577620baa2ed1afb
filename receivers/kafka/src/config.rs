//! `[receivers.NAME]` with `type = "kafka"`.

use serde::Deserialize;
use sluice_core::config::DurationStr;
use sluice_core::retry::RetryConfig;
use sluice_core::{ComponentConfig, InvalidConfig};
use sluice_kafka::{ClientSettings, Topics};
use std::collections::BTreeMap;

/// Where a consumer group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    /// Only records produced from now on (the Collector's default).
    #[default]
    Latest,
    /// Everything the topic still holds.
    Earliest,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// `brokers`, `client_id`, `tls`, `sasl`, `properties`.
    #[serde(flatten)]
    pub client: ClientSettings,
    /// Consumer group; gateways sharing it share the partitions. Default `"sluice"`.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    #[serde(default)]
    pub topics: Topics,
    /// `latest` (default) or `earliest`, for a group without committed offsets.
    #[serde(default)]
    pub initial_offset: InitialOffset,
    /// How often offsets of spooled records are committed. A crash redelivers at most this
    /// long's worth of records (plus those in flight). Default 1 s.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: DurationStr,
    /// Records being written to the spool at once, all partitions together. Default 256.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// A gateway that sends no heartbeat for this long is dropped from the group and its
    /// partitions move to the others. Default 10 s.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: DurationStr,
    /// How often consumer lag is read and exported. Default 5 s.
    #[serde(default = "default_lag_interval")]
    pub lag_interval: DurationStr,
    /// Backoff while the pipeline refuses records for now (spool full).
    #[serde(default)]
    pub retry: RetryConfig,
    /// Keys this component does not know; refused by `validate`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

fn default_group_id() -> String {
    "sluice".into()
}
fn default_commit_interval() -> DurationStr {
    DurationStr::from_secs(1)
}
fn default_max_in_flight() -> usize {
    256
}
fn default_session_timeout() -> DurationStr {
    DurationStr::from_secs(10)
}
fn default_lag_interval() -> DurationStr {
    DurationStr::from_secs(5)
}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(InvalidConfig::new(
                key.as_str(),
                "is not a key of the kafka receiver",
            ));
        }
        self.client.validate()?;
        if self.group_id.is_empty() {
            return Err(InvalidConfig::new("group_id", "must not be empty"));
        }
        self.topics.validate()?;
        if self.commit_interval.get().as_millis() < 10 {
            return Err(InvalidConfig::new(
                "commit_interval",
                "must be at least 10ms",
            ));
        }
        if !(1..=100_000).contains(&self.max_in_flight) {
            return Err(InvalidConfig::new(
                "max_in_flight",
                "must be within 1..=100000",
            ));
        }
        let session = self.session_timeout.get().as_millis();
        if !(1000..=3_600_000).contains(&session) {
            return Err(InvalidConfig::new(
                "session_timeout",
                "must be within 1s..1h",
            ));
        }
        if self.lag_interval.get().as_millis() < 100 {
            return Err(InvalidConfig::new("lag_interval", "must be at least 100ms"));
        }
        self.retry.validate().map_err(|e| e.under("retry"))
    }
}

impl ComponentConfig for Config {}
