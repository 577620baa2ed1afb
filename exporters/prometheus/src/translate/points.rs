//! Data points of each OTLP metric kind → samples of their derived series (OpenTelemetry
//! specification, Prometheus and OpenMetrics Compatibility, "Metric Points"): gauges and sums,
//! explicit and exponential histograms, summaries.

use super::naming::{NameKind, format_plain, metadata_unit, metric_name};
use super::raw::{Data, Metric, NumberDataPoint};
use super::{
    Builder, MetricSeries, NativePoint, PendingDelta, ResourceContext, SeriesLabels, exemplars,
    hash_labels, is_stale, ms, native, push_key_part,
};
use crate::remote_write::{MetricType, stale_nan, v1};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, SummaryDataPoint,
};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum NumberKind {
    Gauge,
    Counter,
    UpDownCounter,
    DeltaCounter,
}

impl Builder<'_> {
    /// `context` is the series cache's id of the resource and scope (see `SeriesCache`).
    pub(super) fn metric(
        &mut self,
        ctx: &mut ResourceContext,
        scope: &[v1::Label],
        context: u32,
        metric: &Metric,
    ) {
        let Some(data) = &metric.data else {
            return;
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        let delta = AggregationTemporality::Delta as i32;
        match data {
            Data::Gauge(g) => {
                self.numbers(
                    ctx,
                    scope,
                    context,
                    metric,
                    &g.data_points,
                    NumberKind::Gauge,
                );
            }
            Data::Sum(s) => {
                let n = s.data_points.len() as u64;
                let kind = match (s.aggregation_temporality, s.is_monotonic) {
                    (t, true) if t == cumulative => NumberKind::Counter,
                    (t, false) if t == cumulative => NumberKind::UpDownCounter,
                    (t, true) if t == delta && self.opts.convert_delta_to_cumulative => {
                        NumberKind::DeltaCounter
                    }
                    (t, _) if t == delta => return self.drop_points("delta_temporality", n),
                    _ => return self.drop_points("unspecified_temporality", n),
                };
                self.numbers(ctx, scope, context, metric, &s.data_points, kind);
            }
            Data::Histogram(h) => {
                let n = h.data_points.len() as u64;
                match h.aggregation_temporality {
                    t if t == cumulative => self.histograms(ctx, scope, metric, &h.data_points),
                    t if t == delta => self.drop_points("delta_temporality", n),
                    _ => self.drop_points("unspecified_temporality", n),
                }
            }
            Data::ExponentialHistogram(h) => {
                let n = h.data_points.len() as u64;
                if !self.opts.send_native_histograms {
                    return self.drop_points("native_histograms_disabled", n);
                }
                match h.aggregation_temporality {
                    t if t == cumulative => self.natives(ctx, scope, metric, &h.data_points),
                    t if t == delta => self.drop_points("delta_temporality", n),
                    _ => self.drop_points("unspecified_temporality", n),
                }
            }
            Data::Summary(s) => self.summaries(ctx, scope, metric, &s.data_points),
        }
    }

    fn name_or_drop(&mut self, metric: &Metric, kind: NameKind, points: usize) -> Option<String> {
        let name = metric_name(
            &metric.name,
            &metric.unit,
            kind,
            self.opts.add_metric_suffixes,
        );
        if name.is_none() {
            self.drop_points("invalid_metric_name", points as u64);
        }
        name
    }

    fn numbers(
        &mut self,
        ctx: &mut ResourceContext,
        scope: &[v1::Label],
        context: u32,
        metric: &Metric,
        points: &[NumberDataPoint],
        kind: NumberKind,
    ) {
        let name_kind = match kind {
            NumberKind::Gauge => NameKind::Gauge,
            NumberKind::Counter | NumberKind::DeltaCounter => NameKind::Counter,
            NumberKind::UpDownCounter => NameKind::Other,
        };
        let Some(name) = self.name_or_drop(metric, name_kind, points.len()) else {
            return;
        };
        let metric_type = match kind {
            NumberKind::Gauge | NumberKind::UpDownCounter => MetricType::Gauge,
            NumberKind::Counter | NumberKind::DeltaCounter => MetricType::Counter,
        };
        let family = self.family(
            &name,
            metric_type,
            &metric.description,
            &metadata_unit(&metric.unit),
        );
        let resolved = self.number_series(ctx, scope, context, &name, points);
        for (p, resolved) in points.iter().zip(resolved.iter()) {
            let Some(t) = self.point_time(ctx, p.time_unix_nano) else {
                continue;
            };
            let stale = is_stale(p.flags);
            let value = match (stale, p.value()) {
                (true, _) => stale_nan(),
                (false, Some(v)) => v,
                (false, None) => {
                    self.drop_points("missing_value", 1);
                    continue;
                }
            };
            let Some((labels, hash)) = resolved.clone() else {
                self.drop_points("decode_error", 1);
                continue;
            };
            let series = self.series_index_hashed(labels, hash, family);
            // Gauges carry no exemplars in Prometheus.
            if kind != NumberKind::Gauge {
                self.exemplars(series, &p.exemplars, t);
            }
            match kind {
                NumberKind::DeltaCounter => self.pending_deltas.push(PendingDelta {
                    series,
                    start_ns: p.start_time_unix_nano,
                    time_ns: p.time_unix_nano,
                    value,
                    stale,
                }),
                NumberKind::Counter => {
                    self.push_sample(series, t, value, ms(p.start_time_unix_nano))
                }
                NumberKind::Gauge | NumberKind::UpDownCounter => {
                    self.push_sample(series, t, value, 0)
                }
            }
        }
    }

    /// The label set and hash of each point's series (`None` where its attributes do not
    /// decode), from the series cache: the metric's whole list when its points carry the same
    /// attributes in the same order as before (one lookup per metric), else per point.
    fn number_series(
        &mut self,
        ctx: &ResourceContext,
        scope: &[v1::Label],
        context: u32,
        name: &str,
        points: &[NumberDataPoint],
    ) -> MetricSeries {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.extend_from_slice(&context.to_le_bytes());
        push_key_part(&mut key, name.as_bytes());
        let prefix = key.len();
        for p in points {
            key.extend_from_slice(&(p.attributes.len() as u32).to_le_bytes());
            for attribute in &p.attributes {
                push_key_part(&mut key, attribute);
            }
        }
        if let Some(known) = self.cache.metric(&key) {
            self.key = key;
            return known;
        }
        let metric_key: Box<[u8]> = key[..].into();
        let mut resolved = Vec::with_capacity(points.len());
        for p in points {
            key.truncate(prefix);
            for attribute in &p.attributes {
                push_key_part(&mut key, attribute);
            }
            resolved.push(match self.cache.get(&key) {
                Some((labels, hash)) => Some((labels.clone(), *hash)),
                None => match p.decode_attributes() {
                    Ok(attributes) => {
                        let labels = self
                            .point_labels(ctx, scope, &attributes)
                            .into_with(&[("__name__", name)]);
                        let hash = hash_labels(&labels);
                        let labels = SeriesLabels::new(labels);
                        self.cache.insert(&key, labels.clone(), hash);
                        Some((labels, hash))
                    }
                    Err(_) => None,
                },
            });
        }
        self.key = key;
        let resolved: MetricSeries = resolved.into();
        if resolved.iter().all(Option::is_some) {
            self.cache.insert_metric(metric_key, resolved.clone());
        }
        resolved
    }

    fn histograms(
        &mut self,
        ctx: &mut ResourceContext,
        scope: &[v1::Label],
        metric: &Metric,
        points: &[HistogramDataPoint],
    ) {
        let Some(name) = self.name_or_drop(metric, NameKind::Other, points.len()) else {
            return;
        };
        let family = self.family(
            &name,
            MetricType::Histogram,
            &metric.description,
            &metadata_unit(&metric.unit),
        );
        let (sum_name, count_name, bucket_name) = (
            format!("{name}_sum"),
            format!("{name}_count"),
            format!("{name}_bucket"),
        );
        for p in points {
            let Some(t) = self.point_time(ctx, p.time_unix_nano) else {
                continue;
            };
            let stale = is_stale(p.flags);
            let start = ms(p.start_time_unix_nano);
            let base = self.point_labels(ctx, scope, &p.attributes);
            let value = |v: f64| if stale { stale_nan() } else { v };
            if stale || p.sum.is_some() {
                let s = self.series_index(base.with(&[("__name__", &sum_name)]), family);
                self.push_sample(s, t, value(p.sum.unwrap_or(0.0)), start);
            }
            let c = self.series_index(base.with(&[("__name__", &count_name)]), family);
            self.push_sample(c, t, value(p.count as f64), start);

            // Buckets: OTLP counts are per bucket, Prometheus' are cumulative.
            let mut bucket_series: Vec<(f64, usize)> = Vec::new();
            let mut cumulative: u64 = 0;
            for (&bound, &count) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
                cumulative = cumulative.saturating_add(count);
                if bound == f64::INFINITY {
                    // The `+Inf` bucket below already covers it.
                    continue;
                }
                let le = format_plain(bound);
                let labels = base.with(&[("__name__", &bucket_name), ("le", &le)]);
                let b = self.series_index(labels, family);
                self.push_sample(b, t, value(cumulative as f64), start);
                bucket_series.push((bound, b));
            }
            let labels = base.with(&[("__name__", &bucket_name), ("le", "+Inf")]);
            let inf = self.series_index(labels, family);
            self.push_sample(inf, t, value(p.count as f64), start);

            if self.opts.send_exemplars && !p.exemplars.is_empty() {
                for e in &p.exemplars {
                    let converted = exemplars::convert(e, t);
                    let target = bucket_series
                        .iter()
                        .find(|(bound, _)| *bound >= converted.value)
                        .map_or(inf, |(_, s)| *s);
                    if let Some(s) = self.series.get_mut(target) {
                        s.exemplars.push(converted);
                    }
                }
            }
        }
    }

    fn natives(
        &mut self,
        ctx: &mut ResourceContext,
        scope: &[v1::Label],
        metric: &Metric,
        points: &[ExponentialHistogramDataPoint],
    ) {
        let Some(name) = self.name_or_drop(metric, NameKind::Other, points.len()) else {
            return;
        };
        let family = self.family(
            &name,
            MetricType::Histogram,
            &metric.description,
            &metadata_unit(&metric.unit),
        );
        for p in points {
            if p.scale < native::MIN_SCHEMA {
                self.drop_points("native_histogram_scale_too_low", 1);
                continue;
            }
            let Some(t) = self.point_time(ctx, p.time_unix_nano) else {
                continue;
            };
            let Some(histogram) = native::from_exponential(p, t) else {
                self.drop_points("invalid_exponential_histogram", 1);
                continue;
            };
            let labels = self
                .point_labels(ctx, scope, &p.attributes)
                .into_with(&[("__name__", &name)]);
            let series = self.series_index(labels, family);
            self.exemplars(series, &p.exemplars, t);
            if let Some(s) = self.series.get_mut(series) {
                s.histograms.push(NativePoint {
                    histogram,
                    start_timestamp: ms(p.start_time_unix_nano),
                });
            }
        }
    }

    fn summaries(
        &mut self,
        ctx: &mut ResourceContext,
        scope: &[v1::Label],
        metric: &Metric,
        points: &[SummaryDataPoint],
    ) {
        let Some(name) = self.name_or_drop(metric, NameKind::Other, points.len()) else {
            return;
        };
        let family = self.family(
            &name,
            MetricType::Summary,
            &metric.description,
            &metadata_unit(&metric.unit),
        );
        let (sum_name, count_name) = (format!("{name}_sum"), format!("{name}_count"));
        for p in points {
            let Some(t) = self.point_time(ctx, p.time_unix_nano) else {
                continue;
            };
            let stale = is_stale(p.flags);
            let start = ms(p.start_time_unix_nano);
            let value = |v: f64| if stale { stale_nan() } else { v };
            let base = self.point_labels(ctx, scope, &p.attributes);
            let s = self.series_index(base.with(&[("__name__", &sum_name)]), family);
            self.push_sample(s, t, value(p.sum), start);
            let c = self.series_index(base.with(&[("__name__", &count_name)]), family);
            self.push_sample(c, t, value(p.count as f64), start);
            for q in &p.quantile_values {
                let quantile = format_plain(q.quantile);
                let labels = base.with(&[("__name__", &name), ("quantile", &quantile)]);
                let series = self.series_index(labels, family);
                self.push_sample(series, t, value(q.value), start);
            }
        }
    }

    fn exemplars(
        &mut self,
        series: usize,
        exemplars: &[opentelemetry_proto::tonic::metrics::v1::Exemplar],
        point_ms: i64,
    ) {
        if !self.opts.send_exemplars || exemplars.is_empty() {
            return;
        }
        if let Some(s) = self.series.get_mut(series) {
            s.exemplars
                .extend(exemplars.iter().map(|e| exemplars::convert(e, point_ms)));
        }
    }
}
