//! Batching: how an exporter driver groups items it reads from the spool. A setting of the
//! driver, like [`crate::retry::RetryConfig`], not a processor.
//!
//! A config spells it as a processor (`type = "batch"` listed in a pipeline's `processors`),
//! as Alloy's `otelcol.processor.batch` does, but unlike that processor this runs *after* the
//! spool, so data waiting for a batch to fill is already durable: a crash loses nothing.
//! Defaults are Alloy's `otelcol.processor.batch` defaults; a pipeline that lists no batch
//! stage batches with these defaults too.

use crate::config::InvalidConfig;
use crate::{ByteSize, DurationStr};
use serde::Deserialize;

/// The `type` a config uses to set a pipeline's batching.
pub const TYPE_NAME: &str = "batch";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch is sent as soon as it holds this many spans / data points / log records.
    pub send_batch_size: u64,
    /// Upper bound on items in one batch (0 = no bound beyond `send_batch_size`). Items are whole
    /// client requests, so a single request larger than this still goes as one batch.
    pub send_batch_max_size: u64,
    /// Upper bound on payload bytes in one batch.
    pub send_batch_max_bytes: ByteSize,
    /// A batch that has not filled is sent after this long.
    pub timeout: DurationStr,
    /// Batches of one exporter in flight at once (at least 2 for exporters that need ordering:
    /// they convert in spool order and send each ordered lane one batch at a time).
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 2000,
            send_batch_max_size: 3000,
            send_batch_max_bytes: ByteSize::mib(3),
            timeout: DurationStr::from_millis(200),
            max_in_flight: 8,
        }
    }
}

impl BatchConfig {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.send_batch_size == 0 {
            return Err(InvalidConfig::new("send_batch_size", "must be at least 1"));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(InvalidConfig::new(
                "send_batch_max_size",
                "must be 0 or at least send_batch_size",
            ));
        }
        if self.send_batch_max_bytes.0 == 0 {
            return Err(InvalidConfig::new(
                "send_batch_max_bytes",
                "must be greater than 0",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(InvalidConfig::new("max_in_flight", "must be at least 1"));
        }
        Ok(())
    }

    /// Most items to read for one batch.
    pub fn max_items(&self) -> u64 {
        if self.send_batch_max_size == 0 {
            self.send_batch_size
        } else {
            self.send_batch_max_size
        }
    }
}
