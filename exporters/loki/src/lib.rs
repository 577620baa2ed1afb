//! Loki exporter (`type = "loki"`): OTLP logs to Loki's push API, mapped exactly as Alloy's
//! `otelcol.exporter.loki` does (see `mapping`), sent as snappy-compressed protobuf (default),
//! JSON, or unchanged OTLP to Loki 3's native `/otlp/v1/logs` endpoint.
//!
//! The pipeline batches, retries and keeps order (`ordered() == true`); this crate converts a
//! batch into one request per tenant and classifies Loki's answer.

pub mod config;
pub mod exporter;
pub mod labels;
pub mod logfmt;
pub mod mapping;
pub mod otlp;
pub mod push;
pub mod value;

pub use config::{BasicAuth, Config, DefaultLabels, Encoding, LineFormat, LineTooLong, TlsConfig};
pub use exporter::{LOKI_ADJUSTED, LokiExporter, LokiRequest, build, classify_response};
pub use mapping::{Entry, MappingOptions, MappingReport, Stream, TenantStreams, map_request};

use sluice_core::Signal;

/// The `type` of this exporter in `[exporters.NAME]`.
pub const TYPE_NAME: &str = "loki";
/// Signals this exporter accepts.
pub const SIGNALS: &[Signal] = &[Signal::Logs];

impl sluice_core::ComponentConfig for Config {
    fn retry(&self) -> sluice_core::retry::RetryConfig {
        self.retry.clone()
    }
}
