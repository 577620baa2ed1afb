//! The AWF metrics (`docs/awf-events.md` §3, Metrics), aggregated as CUMULATIVE series (the Prometheus remote-write path
//! drops delta temporality). Every snapshot carries each series' running total since its
//! `start_time`, so a lost or refused metrics item costs nothing: the next one has the totals.
//!
//! Label sets are fixed per metric and never include `execution_id` (unbounded); the execution
//! rides on exemplars instead.

use crate::attrs::{kv, kv_str};
use crate::ids::{SpanId, TraceId};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum, exemplar, metric, number_data_point,
};
use std::collections::BTreeMap;

/// Upper bounds (ms) of the `awf_step_duration_ms` buckets: 10 ms to 10 min.
pub const DURATION_BOUNDS_MS: &[f64] = &[
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0,
    120000.0, 300000.0, 600000.0,
];

/// The counters and the histogram, with their label names in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AwfMetric {
    StepDuration,
    Tokens,
    Cost,
    Workflows,
    Retries,
    Fallbacks,
}

impl AwfMetric {
    pub fn name(self) -> &'static str {
        match self {
            AwfMetric::StepDuration => "awf_step_duration_ms",
            AwfMetric::Tokens => "awf_tokens_total",
            AwfMetric::Cost => "awf_cost_usd_total",
            AwfMetric::Workflows => "awf_workflow_total",
            AwfMetric::Retries => "awf_retry_total",
            AwfMetric::Fallbacks => "awf_fallback_total",
        }
    }

    pub fn labels(self) -> &'static [&'static str] {
        match self {
            AwfMetric::StepDuration => &["step_id", "agent_id", "status"],
            AwfMetric::Tokens => &["agent_id", "direction"],
            AwfMetric::Cost => &["agent_id", "provider"],
            AwfMetric::Workflows => &["workflow_id", "status"],
            AwfMetric::Retries => &["step_id", "agent_id"],
            AwfMetric::Fallbacks => &["step_id"],
        }
    }

    fn description(self) -> &'static str {
        match self {
            AwfMetric::StepDuration => "Step execution time in milliseconds",
            AwfMetric::Tokens => "Tokens used by agents, by direction (input/output)",
            AwfMetric::Cost => "Cost of agent invocations in USD",
            AwfMetric::Workflows => "Workflow executions ended, by final status",
            AwfMetric::Retries => "Step retry attempts",
            AwfMetric::Fallbacks => "Fallback executions",
        }
    }

    /// Counts of things are integers; cost is a double.
    fn is_integer(self) -> bool {
        !matches!(self, AwfMetric::Cost)
    }
}

/// Name of the active-executions gauge (label `workflow_id`).
pub const ACTIVE_EXECUTIONS: &str = "awf_active_executions";

/// The span and execution an observation came from, kept as the series' latest exemplar.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarRef {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub execution_id: String,
    pub time_unix_nano: u64,
}

/// One observation, applied when the events that produced it have been delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricUpdate {
    pub metric: AwfMetric,
    /// Values for [`AwfMetric::labels`], in that order.
    pub label_values: Vec<String>,
    pub value: f64,
    pub exemplar: Option<ExemplarRef>,
}

#[derive(Debug, Clone)]
struct Series {
    start: u64,
    /// Counter total, or histogram sum.
    value: f64,
    count: u64,
    buckets: Vec<u64>,
    min: f64,
    max: f64,
    exemplar: Option<(ExemplarRef, f64)>,
}

/// All cumulative series, bounded in number.
#[derive(Debug)]
pub struct Aggregator {
    series: BTreeMap<(AwfMetric, Vec<String>), Series>,
    max_series: usize,
}

impl Aggregator {
    pub fn new(max_series: usize) -> Aggregator {
        Aggregator {
            series: BTreeMap::new(),
            max_series,
        }
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Adds an observation at `now`. Returns false (and changes nothing) when it would create
    /// a series beyond `max_series`.
    pub fn apply(&mut self, u: &MetricUpdate, now: u64) -> bool {
        if !u.value.is_finite() || u.value < 0.0 {
            return true; // nothing to add; not a cardinality problem
        }
        let key = (u.metric, u.label_values.clone());
        if !self.series.contains_key(&key) && self.series.len() >= self.max_series {
            return false;
        }
        let histogram = u.metric == AwfMetric::StepDuration;
        let s = self.series.entry(key).or_insert_with(|| Series {
            start: now,
            value: 0.0,
            count: 0,
            buckets: if histogram {
                vec![0; DURATION_BOUNDS_MS.len() + 1]
            } else {
                Vec::new()
            },
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            exemplar: None,
        });
        s.value += u.value;
        s.count += 1;
        if histogram {
            let idx = DURATION_BOUNDS_MS.partition_point(|b| *b < u.value);
            if let Some(b) = s.buckets.get_mut(idx) {
                *b += 1;
            }
            s.min = s.min.min(u.value);
            s.max = s.max.max(u.value);
        }
        if let Some(e) = &u.exemplar {
            s.exemplar = Some((e.clone(), u.value));
        }
        true
    }

    /// Current value of a counter series (tests, diagnostics).
    pub fn counter_value(&self, metric: AwfMetric, labels: &[&str]) -> Option<f64> {
        let key = (metric, labels.iter().map(|s| (*s).to_owned()).collect());
        self.series.get(&key).map(|s| s.value)
    }

    /// Every series as OTLP metrics at `now`, plus the active-executions gauge.
    pub fn snapshot(&self, now: u64, active: &BTreeMap<String, i64>) -> Vec<Metric> {
        let mut out: Vec<Metric> = Vec::new();
        let mut current: Option<AwfMetric> = None;
        for ((m, labels), s) in &self.series {
            if current != Some(*m) {
                current = Some(*m);
                out.push(empty_metric(*m));
            }
            let Some(last) = out.last_mut() else { continue };
            let attributes = m
                .labels()
                .iter()
                .zip(labels)
                .map(|(k, v)| kv_str(k, v.as_str()))
                .collect();
            let exemplars = s
                .exemplar
                .iter()
                .map(|(e, v)| to_exemplar(e, *v, m.is_integer()))
                .collect();
            match &mut last.data {
                Some(metric::Data::Histogram(h)) => h.data_points.push(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: s.start,
                    time_unix_nano: now.max(s.start),
                    count: s.count,
                    sum: Some(s.value),
                    bucket_counts: s.buckets.clone(),
                    explicit_bounds: DURATION_BOUNDS_MS.to_vec(),
                    exemplars,
                    min: s.min.is_finite().then_some(s.min),
                    max: s.max.is_finite().then_some(s.max),
                    ..Default::default()
                }),
                Some(metric::Data::Sum(sum)) => sum.data_points.push(NumberDataPoint {
                    attributes,
                    start_time_unix_nano: s.start,
                    time_unix_nano: now.max(s.start),
                    exemplars,
                    value: Some(if m.is_integer() {
                        number_data_point::Value::AsInt(s.value as i64)
                    } else {
                        number_data_point::Value::AsDouble(s.value)
                    }),
                    ..Default::default()
                }),
                _ => {}
            }
        }
        if !active.is_empty() {
            out.push(Metric {
                name: ACTIVE_EXECUTIONS.to_owned(),
                description: "Workflow executions started and not yet ended".to_owned(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: active
                        .iter()
                        .map(|(wf, n)| NumberDataPoint {
                            attributes: vec![kv_str("workflow_id", wf.as_str())],
                            time_unix_nano: now,
                            value: Some(number_data_point::Value::AsInt(*n)),
                            ..Default::default()
                        })
                        .collect(),
                })),
                ..Default::default()
            });
        }
        out
    }
}

/// Names already carry their unit (`_ms`, `_usd`), so `unit` stays empty: a Prometheus
/// translation that appends unit suffixes would otherwise produce `awf_step_duration_ms_milliseconds`
/// and break recording rules written against the names in `docs/awf-events.md` §3.
fn empty_metric(m: AwfMetric) -> Metric {
    let data = if m == AwfMetric::StepDuration {
        metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })
    } else {
        metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })
    };
    Metric {
        name: m.name().to_owned(),
        description: m.description().to_owned(),
        data: Some(data),
        ..Default::default()
    }
}

fn to_exemplar(e: &ExemplarRef, value: f64, integer: bool) -> Exemplar {
    Exemplar {
        filtered_attributes: vec![kv(
            "execution_id",
            AnyValue {
                value: Some(any_value::Value::StringValue(e.execution_id.clone())),
            },
        )],
        time_unix_nano: e.time_unix_nano,
        span_id: e.span_id.to_vec(),
        trace_id: e.trace_id.to_vec(),
        value: Some(if integer {
            exemplar::Value::AsInt(value as i64)
        } else {
            exemplar::Value::AsDouble(value)
        }),
    }
}

/// Number of data points in a list of metrics (the `count` of a metrics item).
pub fn data_points(metrics: &[Metric]) -> usize {
    metrics
        .iter()
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(metric: AwfMetric, labels: &[&str], value: f64) -> MetricUpdate {
        MetricUpdate {
            metric,
            label_values: labels.iter().map(|s| (*s).to_owned()).collect(),
            value,
            exemplar: None,
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_totals() {
        let mut a = Aggregator::new(100);
        for v in [5.0, 10.0, 11.0, 700_000.0] {
            assert!(a.apply(
                &upd(AwfMetric::StepDuration, &["s", "a", "completed"], v),
                1
            ));
        }
        let snap = a.snapshot(9, &BTreeMap::new());
        let Some(metric::Data::Histogram(h)) = &snap[0].data else {
            panic!("histogram expected")
        };
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!(p.count, 4);
        assert_eq!(p.sum, Some(700_026.0));
        // 5 and 10 fall in (-inf,10], 11 in (10,25], 700000 in the overflow bucket.
        assert_eq!(p.bucket_counts[0], 2);
        assert_eq!(p.bucket_counts[1], 1);
        assert_eq!(p.bucket_counts[DURATION_BOUNDS_MS.len()], 1);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 4);
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1, 9));
        assert_eq!((p.min, p.max), (Some(5.0), Some(700_000.0)));
    }

    #[test]
    fn series_are_bounded() {
        let mut a = Aggregator::new(2);
        assert!(a.apply(&upd(AwfMetric::Fallbacks, &["a"], 1.0), 1));
        assert!(a.apply(&upd(AwfMetric::Fallbacks, &["b"], 1.0), 1));
        assert!(!a.apply(&upd(AwfMetric::Fallbacks, &["c"], 1.0), 1));
        assert!(a.apply(&upd(AwfMetric::Fallbacks, &["a"], 1.0), 1));
        assert_eq!(a.counter_value(AwfMetric::Fallbacks, &["a"]), Some(2.0));
        assert_eq!(a.series_count(), 2);
    }
}
