//! Prometheus remote-write exporter (`type = "prometheus_remote_write"`): translates OTLP
//! metrics to Prometheus series exactly as the OpenTelemetry compatibility spec and
//! Prometheus' own OTLP translator do, and sends them to Mimir or any remote-write receiver.
//!
//! * [`remote_write`]: the RW 1.0 / 2.0 protobuf messages and their snappy block encoding.
//! * [`translate`]: OTLP → series (names, labels, target_info, histograms, staleness, ...).
//! * [`exporter`]: sharding, HTTP, and what each response means.

pub mod config;
pub mod exporter;
pub mod remote_write;
pub mod translate;

pub use config::{BasicAuth, Config, ProtocolVersion, TlsConfig};
pub use exporter::{RemoteWriteExporter, RemoteWriteRequest, build};

use sluice_core::Signal;

/// The `type` of this exporter in the config file.
pub const TYPE_NAME: &str = "prometheus_remote_write";

/// Signals this exporter accepts.
pub const SIGNALS: &[Signal] = &[Signal::Metrics];

impl sluice_core::ComponentConfig for Config {
    fn retry(&self) -> sluice_core::retry::RetryConfig {
        self.retry.clone()
    }
}
