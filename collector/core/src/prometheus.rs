//! How Prometheus series travel through a pipeline as OTLP, unchanged.
//!
//! The `prometheus_scrape` receiver puts scraped series into an instrumentation scope named
//! [`PASSTHROUGH_SCOPE`]: each metric's name is the exact series name (`foo_total`,
//! `foo_bucket`), each data point's attributes are the exact labels (`job`, `instance`, `le`
//! included), and a staleness marker is a point flagged `FLAG_NO_RECORDED_VALUE`. The
//! remote-write exporter sends such metrics as they are: no name or label sanitising, no unit
//! or `_total` suffixes, no scope labels. Any OTLP source may use the scope the same way.

/// The instrumentation scope name that marks metrics as Prometheus series to pass through.
pub const PASSTHROUGH_SCOPE: &str = "sluice.prometheus_scrape";

/// `Metric.metadata` key holding the family's Prometheus type (`counter`, `gauge`,
/// `histogram`, `summary`, `gaugehistogram`, `info`, `stateset`, `unknown`).
pub const TYPE_METADATA_KEY: &str = "prometheus.type";
