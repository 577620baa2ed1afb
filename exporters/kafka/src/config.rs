//! `[exporters.NAME]` with `type = "kafka"`.

use serde::Deserialize;
use sluice_core::config::{ByteSize, DurationStr};
use sluice_core::retry::RetryConfig;
use sluice_core::{ComponentConfig, InvalidConfig, Signal};
use sluice_kafka::{ClientSettings, Topics};
use std::collections::BTreeMap;

/// Record compression, done by the producer per record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    #[default]
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// How records are keyed, which decides their partition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Partitioning {
    /// One record per trace, keyed by the trace id (hex), so every span of a trace lands on
    /// one partition and one gateway (tail sampling, span metrics). Default `true`.
    pub traces_by_id: bool,
    /// One record per resource, keyed by a hash of its attributes. Default `true`.
    pub metrics_by_resource: bool,
    /// One record per resource, keyed by a hash of its attributes. Default `true`.
    pub logs_by_resource: bool,
}

impl Default for Partitioning {
    fn default() -> Self {
        Partitioning {
            traces_by_id: true,
            metrics_by_resource: true,
            logs_by_resource: true,
        }
    }
}

impl Partitioning {
    pub fn keyed(&self, signal: Signal) -> bool {
        match signal {
            Signal::Traces => self.traces_by_id,
            Signal::Metrics => self.metrics_by_resource,
            Signal::Logs => self.logs_by_resource,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// `brokers`, `client_id`, `tls`, `sasl`, `properties`.
    #[serde(flatten)]
    pub client: ClientSettings,
    #[serde(default)]
    pub topics: Topics,
    #[serde(default)]
    pub partition: Partitioning,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd` (default).
    #[serde(default)]
    pub compression: Compression,
    /// Largest record value; bigger requests are split, a single item larger than this is
    /// refused by the producer and counted. Default 1 MiB (the broker's default limit).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: ByteSize,
    /// How long the producer waits to fill a record batch (`linger.ms`). Default 5 ms.
    #[serde(default = "default_linger")]
    pub linger: DurationStr,
    /// How long one record may take to be acknowledged, retries included
    /// (`message.timeout.ms`); then the pipeline retries it. Default 30 s.
    #[serde(default = "default_timeout")]
    pub timeout: DurationStr,
    /// Retry policy; applied by the pipeline.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Keys this component does not know; refused by `validate` (they cannot be refused by
    /// serde while the client settings are flattened in).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

fn default_max_message_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}

fn default_linger() -> DurationStr {
    DurationStr::from_millis(5)
}

fn default_timeout() -> DurationStr {
    DurationStr::from_secs(30)
}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(InvalidConfig::new(
                key.as_str(),
                "is not a key of the kafka exporter",
            ));
        }
        self.client.validate()?;
        self.topics.validate()?;
        let max = self.max_message_bytes.get();
        if !(1024..=1_000_000_000).contains(&max) {
            return Err(InvalidConfig::new(
                "max_message_bytes",
                format!("must be within 1KiB..1GB, got {max}"),
            ));
        }
        if self.linger.get().as_millis() > 900_000 {
            return Err(InvalidConfig::new("linger", "must be at most 15m"));
        }
        if self.timeout.get().as_millis() < 1000 {
            return Err(InvalidConfig::new("timeout", "must be at least 1s"));
        }
        self.retry.validate().map_err(|e| e.under("retry"))
    }
}

impl ComponentConfig for Config {
    fn retry(&self) -> RetryConfig {
        self.retry.clone()
    }
}
