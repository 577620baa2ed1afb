//! The Prometheus check: the alert's own query (now and over the lookback) and the step,
//! latency and cost series of the subject.

use super::{Investigator, Part, Subject};
use crate::backends::PromSample;
use crate::finding::{Evidence, Fact};
use crate::template::escape_query_string;
use std::time::Duration;

impl Investigator {
    pub(super) async fn prometheus_checks(
        &self,
        s: &Subject,
        alert_query: Option<&str>,
        since_ms: i64,
        timeout: Duration,
    ) -> Part {
        let mut part = Part::new("prometheus");
        if self.backends.prometheus.is_none() {
            part.skip("prometheus_url not set");
            return part;
        }
        let queries = subject_queries(s, alert_query);
        if queries.is_empty() {
            part.skip("no alert query and no agent/step/provider label");
            return part;
        }
        let now_s = crate::alert::now_ms() as f64 / 1000.0;
        let start = (since_ms as f64 / 1000.0).max(now_s - 3600.0);
        let step = ((now_s - start) / 120.0).max(1.0);
        let range = async {
            match alert_query {
                Some(q) => Some(
                    self.backends
                        .prom_query_range(q, start, now_s, step, timeout)
                        .await,
                ),
                None => None,
            }
        };
        let (results, range) = futures::join!(
            futures::future::join_all(
                queries
                    .iter()
                    .map(|(q, _)| self.backends.prom_query(q, now_s, timeout)),
            ),
            range
        );
        // The alert's signal over the lookback: since when has it fired?
        if let (Some(q), Some(r)) = (alert_query, range) {
            match r {
                Ok(series) => {
                    part.ok += 1;
                    alert_onset(&mut part, q, &series, (start, now_s, step));
                }
                Err(e) => part.fail(format!("alert range: {e}")),
            }
        }
        for ((q, what), r) in queries.iter().zip(results) {
            match r {
                Ok(samples) => {
                    part.ok += 1;
                    part.facts.push(prom_fact(what, &samples));
                    part.evidence.push(Evidence {
                        source: "prometheus".into(),
                        query: q.clone(),
                        result: samples.iter().take(20).map(PromSample::describe).collect(),
                        ..Default::default()
                    });
                }
                Err(e) => part.fail(format!("{what}: {e}")),
            }
        }
        part
    }
}

/// The instant queries to run: the alert's own, then the subject's step outcomes, step
/// latency and cost rate, each selecting what the alert names.
fn subject_queries(s: &Subject, alert_query: Option<&str>) -> Vec<(String, &'static str)> {
    let sel = |extra: &[(&str, &Option<String>)]| {
        let mut m: Vec<String> = Vec::new();
        if let Some(j) = &s.service {
            m.push(format!("job=\"{}\"", escape_query_string(j)));
        }
        for (k, v) in extra {
            if let Some(v) = v {
                m.push(format!("{k}=\"{}\"", escape_query_string(v)));
            }
        }
        m.join(",")
    };
    let mut queries: Vec<(String, &'static str)> = Vec::new();
    if let Some(q) = alert_query {
        queries.push((q.to_owned(), "alert"));
    }
    if s.agent_id.is_some() || s.step_id.is_some() {
        let m = sel(&[("agent_id", &s.agent_id), ("step_id", &s.step_id)]);
        queries.push((
            format!("sum by (status) (increase(awf_step_duration_ms_count{{{m}}}[5m]))"),
            "step_outcomes",
        ));
    }
    if s.step_id.is_some() {
        let m = sel(&[("step_id", &s.step_id)]);
        queries.push((
            format!(
                "histogram_quantile(0.99, sum by (le) (rate(awf_step_duration_ms_bucket{{{m}}}[5m])))"
            ),
            "step_p99",
        ));
    }
    if s.agent_id.is_some() || s.provider.is_some() {
        let m = sel(&[("agent_id", &s.agent_id), ("provider", &s.provider)]);
        queries.push((
            format!("sum by (agent_id, provider) (rate(awf_cost_usd_total{{{m}}}[5m]))"),
            "cost_rate",
        ));
    }
    queries
}

/// When the alert's signal started, from its series over the lookback (`range` is start,
/// end and step in seconds).
fn alert_onset(
    part: &mut Part,
    q: &str,
    series: &[(PromSample, f64, f64)],
    (start, now_s, step): (f64, f64, f64),
) {
    let onset = series.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    if onset.is_finite() {
        part.facts.push(Fact {
            source: "prometheus".into(),
            interesting: true,
            message: format!(
                "the alert's signal has been present for {:.0}s ({} series)",
                now_s - onset,
                series.len()
            ),
        });
    }
    part.evidence.push(Evidence {
        source: "prometheus".into(),
        query: format!("{q} [range {start:.0}..{now_s:.0} step {step:.0}s]"),
        result: series
            .iter()
            .take(10)
            .map(|(s, t0, t1)| format!("{} from {t0:.0} to {t1:.0}", s.describe()))
            .collect(),
        ..Default::default()
    });
}

fn prom_fact(what: &str, samples: &[PromSample]) -> Fact {
    let source = "prometheus".to_owned();
    match what {
        "alert" => Fact {
            source,
            interesting: !samples.is_empty(),
            message: if samples.is_empty() {
                "the alert's query returns nothing now (the signal may have cleared)".into()
            } else {
                format!("the alert's query still returns {} series", samples.len())
            },
        },
        "step_outcomes" => {
            let total: f64 = samples
                .iter()
                .map(|s| s.value)
                .filter(|v| v.is_finite())
                .sum();
            let failed: f64 = samples
                .iter()
                .filter(|s| s.labels.get("status").is_some_and(|st| st != "completed"))
                .map(|s| s.value)
                .filter(|v| v.is_finite())
                .sum();
            let ratio = if total > 0.0 { failed / total } else { 0.0 };
            Fact {
                source,
                interesting: ratio >= 0.2,
                message: format!(
                    "{failed:.0} of {total:.0} step attempts did not complete in the last 5m ({:.0}%)",
                    ratio * 100.0
                ),
            }
        }
        "step_p99" => Fact {
            source,
            interesting: false,
            message: match samples.first() {
                Some(s) if s.value.is_finite() => format!("step p99 latency {:.0} ms", s.value),
                _ => "no step latency data".into(),
            },
        },
        _ => Fact {
            source,
            interesting: false,
            message: format!(
                "cost rate: {}",
                samples
                    .iter()
                    .take(5)
                    .map(|s| format!(
                        "{} ${:.4}/s",
                        s.labels.get("agent_id").map(String::as_str).unwrap_or("?"),
                        s.value
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}
