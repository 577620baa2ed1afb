//! Metrics of the [`PASSTHROUGH_SCOPE`] (the `prometheus_scrape` receiver's series): each
//! metric name is already the series name and each point's attributes are already its labels,
//! so they are sent exactly as they are — no sanitising, no unit or `_total` suffixes, no
//! scope labels, no `job`/`instance` derived from the resource. Only `external_labels` are
//! added (where absent). See `sluice_core::prometheus`.
//!
//! [`PASSTHROUGH_SCOPE`]: sluice_core::prometheus::PASSTHROUGH_SCOPE

use super::labels::LabelSet;
use super::naming::any_value_string;
use super::{Builder, ResourceContext, is_stale};
use crate::remote_write::{MetricType, stale_nan};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use sluice_core::prometheus::TYPE_METADATA_KEY;

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn metadata_type(metric: &Metric, monotonic_sum: bool) -> MetricType {
    let declared = metric
        .metadata
        .iter()
        .find(|kv| kv.key == TYPE_METADATA_KEY)
        .map(|kv| any_value_string(kv.value.as_ref()));
    match declared.as_deref() {
        Some("counter") => MetricType::Counter,
        Some("gauge") => MetricType::Gauge,
        Some("histogram") => MetricType::Histogram,
        Some("gaugehistogram") => MetricType::GaugeHistogram,
        Some("summary") => MetricType::Summary,
        Some("info") => MetricType::Info,
        Some("stateset") => MetricType::StateSet,
        Some(_) => MetricType::Unknown,
        None if monotonic_sum => MetricType::Counter,
        None => MetricType::Gauge,
    }
}

/// The metric family a series belongs to, for the metadata (`foo` for `foo_bucket`).
fn family_name(name: &str, metric_type: MetricType) -> &str {
    let suffixes: &[&str] = match metric_type {
        MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
        MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
        MetricType::Summary => &["_count", "_sum", "_created"],
        _ => &[],
    };
    suffixes
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

impl Builder<'_> {
    pub(super) fn passthrough(&mut self, ctx: &mut ResourceContext, metric: &Metric) {
        let (points, monotonic) = match &metric.data {
            Some(Data::Gauge(g)) => (&g.data_points, false),
            Some(Data::Sum(s)) => (&s.data_points, s.is_monotonic),
            Some(_) => return self.drop_points("passthrough_unsupported_kind", 1),
            None => return,
        };
        if !is_metric_name(&metric.name) {
            return self.drop_points("invalid_metric_name", points.len() as u64);
        }
        let metric_type = metadata_type(metric, monotonic);
        let family = self.family(
            family_name(&metric.name, metric_type),
            metric_type,
            &metric.description,
            &metric.unit,
        );
        'points: for p in points {
            let Some(t) = self.point_time(ctx, p.time_unix_nano) else {
                continue;
            };
            let value = match (is_stale(p.flags), &p.value) {
                (true, _) => stale_nan(),
                (false, Some(number_data_point::Value::AsDouble(d))) => *d,
                (false, Some(number_data_point::Value::AsInt(i))) => *i as f64,
                (false, None) => {
                    self.drop_points("missing_value", 1);
                    continue;
                }
            };
            let mut set = LabelSet::default();
            for kv in &p.attributes {
                if !is_label_name(&kv.key) || kv.key == "__name__" {
                    self.drop_points("invalid_labels", 1);
                    continue 'points;
                }
                set.set(&kv.key, &any_value_string(kv.value.as_ref()));
            }
            for (name, value) in &self.opts.external_labels {
                set.set_if_absent(name, value);
            }
            let series = self.series_index(set.into_with(&[("__name__", &metric.name)]), family);
            self.push_sample(series, t, value, 0);
        }
    }
}
