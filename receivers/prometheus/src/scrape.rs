//! One target's scrape results → the series Prometheus would append: sample labels merged
//! with the target's (`honor_labels`), `metric_relabel_configs`, the report series (`up`,
//! `scrape_duration_seconds`, `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`,
//! `scrape_series_added`) and staleness markers for the series that vanished.
//!
//! Staleness follows Prometheus ("Staleness" in its querying docs): a series present in the
//! previous successful scrape and absent from this one gets a stale marker at this scrape's
//! time; a failed scrape marks every series of the previous one stale; a target that goes away
//! gets markers for all its series, report series included. Series exposed with their own
//! timestamp are not tracked, as in Prometheus.

use crate::parse::{Exposition, MetricKind};
use crate::relabel::{self, Labels, Rule};
use crate::target::Target;
use std::collections::{HashMap, HashSet};

/// One series' value at a time, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Sorted by name, `__name__` included.
    pub labels: Vec<(String, String)>,
    pub kind: MetricKind,
    pub timestamp_ms: i64,
    pub value: f64,
    pub stale: bool,
}

impl Point {
    pub fn name(&self) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == "__name__")
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// What one scrape attempt produced.
pub enum Outcome {
    Scraped(Exposition),
    /// The scrape failed (connection, status, timeout, size, parse).
    Failed,
}

/// What a scrape yields and the counts the receiver reports.
#[derive(Debug, Default)]
pub struct Report {
    pub points: Vec<Point>,
    pub scraped: u64,
    pub post_relabel: u64,
    pub duplicates: u64,
    pub stale_markers: u64,
}

/// How a target's samples are labeled: `honor_labels`, `honor_timestamps`,
/// `metric_relabel_configs`.
#[derive(Clone, Copy)]
pub struct SampleRules<'a> {
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel: &'a [Rule],
}

/// A target's memory between scrapes.
#[derive(Debug, Default)]
pub struct SeriesCache {
    /// Series (label sets) of the last successful scrape that carried no own timestamp,
    /// with their metric kind.
    last: HashMap<Vec<(String, String)>, MetricKind>,
    /// Whether report series were sent (so the end of the target marks them stale too).
    reported: bool,
}

const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn sorted(labels: Labels) -> Vec<(String, String)> {
    labels.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// A sample's labels with the target's merged in (Prometheus `mutateSampleLabels`).
fn merge_target_labels(sample: &mut Labels, target: &Target, honor_labels: bool) {
    if honor_labels {
        for (name, value) in &target.labels {
            sample.entry(name.clone()).or_insert_with(|| value.clone());
        }
        return;
    }
    let exposed = sample.clone();
    for (name, value) in &target.labels {
        if let Some(existing) = exposed.get(name).filter(|v| !v.is_empty()) {
            // The exposed label moves aside to `exported_<name>` (more prefixes while that
            // name is taken too).
            let mut renamed = format!("exported_{name}");
            while exposed.contains_key(&renamed) || target.label(&renamed).is_some() {
                renamed = format!("exported_{renamed}");
            }
            sample.insert(renamed, existing.clone());
        }
        sample.insert(name.clone(), value.clone());
    }
}

fn with_name(target: &Target, name: &str) -> Vec<(String, String)> {
    let mut labels: Labels = target.labels.iter().cloned().collect();
    labels.insert("__name__".into(), name.into());
    sorted(labels)
}

impl SeriesCache {
    /// Turns one scrape's outcome at `timestamp_ms` (the scrape's start) into points.
    pub fn process(
        &mut self,
        target: &Target,
        outcome: Outcome,
        timestamp_ms: i64,
        duration_seconds: f64,
        rules: &SampleRules<'_>,
    ) -> Report {
        let SampleRules {
            honor_labels,
            honor_timestamps,
            metric_relabel: metric_rules,
        } = *rules;
        let mut report = Report::default();
        let mut current: HashMap<Vec<(String, String)>, MetricKind> = HashMap::new();
        let mut seen: HashSet<Vec<(String, String)>> = HashSet::new();
        let up = match outcome {
            Outcome::Scraped(exposition) => {
                report.scraped = exposition.samples.len() as u64;
                for sample in &exposition.samples {
                    let kind = exposition.kind_of(&sample.name);
                    let mut labels: Labels = sample.labels.iter().cloned().collect();
                    labels.insert("__name__".into(), sample.name.clone());
                    merge_target_labels(&mut labels, target, honor_labels);
                    if !relabel::apply(metric_rules, &mut labels) {
                        continue;
                    }
                    if labels.get("__name__").is_none_or(|n| n.is_empty()) {
                        continue;
                    }
                    let labels = sorted(labels);
                    // A second sample of one series in one scrape is refused, as Prometheus
                    // refuses it (the first wins).
                    if !seen.insert(labels.clone()) {
                        report.duplicates += 1;
                        continue;
                    }
                    report.post_relabel += 1;
                    let own_time = sample.timestamp_ms.filter(|_| honor_timestamps);
                    if own_time.is_none() {
                        current.insert(labels.clone(), kind);
                    }
                    report.points.push(Point {
                        labels,
                        kind,
                        timestamp_ms: own_time.unwrap_or(timestamp_ms),
                        value: sample.value,
                        stale: false,
                    });
                }
                1.0
            }
            Outcome::Failed => 0.0,
        };
        let added = current
            .keys()
            .filter(|k| !self.last.contains_key(*k))
            .count();
        for (labels, kind) in &self.last {
            if !current.contains_key(labels) {
                report.points.push(Point {
                    labels: labels.clone(),
                    kind: *kind,
                    timestamp_ms,
                    value: f64::NAN,
                    stale: true,
                });
                report.stale_markers += 1;
            }
        }
        self.last = current;
        let values = [
            up,
            duration_seconds,
            report.scraped as f64,
            report.post_relabel as f64,
            added as f64,
        ];
        for (name, value) in REPORT_SERIES.iter().zip(values) {
            report.points.push(Point {
                labels: with_name(target, name),
                kind: MetricKind::Gauge,
                timestamp_ms,
                value,
                stale: false,
            });
        }
        self.reported = true;
        report
    }

    /// Stale markers for every series of a target that is no longer scraped.
    pub fn end(&mut self, target: &Target, timestamp_ms: i64) -> Vec<Point> {
        let mut points: Vec<Point> = self
            .last
            .drain()
            .map(|(labels, kind)| Point {
                labels,
                kind,
                timestamp_ms,
                value: f64::NAN,
                stale: true,
            })
            .collect();
        if std::mem::take(&mut self.reported) {
            for name in REPORT_SERIES {
                points.push(Point {
                    labels: with_name(target, name),
                    kind: MetricKind::Gauge,
                    timestamp_ms,
                    value: f64::NAN,
                    stale: true,
                });
            }
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, parse};

    fn target() -> Target {
        Target {
            url: "http://h:1/metrics".into(),
            labels: vec![
                ("instance".into(), "h:1".into()),
                ("job".into(), "app".into()),
            ],
        }
    }

    fn rules(
        honor_labels: bool,
        honor_timestamps: bool,
        metric_relabel: &[Rule],
    ) -> SampleRules<'_> {
        SampleRules {
            honor_labels,
            honor_timestamps,
            metric_relabel,
        }
    }

    fn scraped(body: &str) -> Outcome {
        Outcome::Scraped(parse(body, Format::Text).unwrap())
    }

    fn find<'a>(r: &'a Report, name: &str) -> Vec<&'a Point> {
        r.points.iter().filter(|p| p.name() == name).collect()
    }

    fn label<'a>(p: &'a Point, name: &str) -> Option<&'a str> {
        p.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn target_labels_win_and_exposed_ones_move_to_exported() {
        let mut cache = SeriesCache::default();
        let r = cache.process(
            &target(),
            scraped("m{job=\"inner\",exported_job=\"x\"} 1\n"),
            1000,
            0.01,
            &rules(false, true, &[]),
        );
        let m = find(&r, "m")[0];
        assert_eq!(label(m, "job"), Some("app"));
        assert_eq!(label(m, "exported_job"), Some("x"));
        assert_eq!(label(m, "exported_exported_job"), Some("inner"));
        assert_eq!(label(m, "instance"), Some("h:1"));

        let mut cache = SeriesCache::default();
        let r = cache.process(
            &target(),
            scraped("m{job=\"inner\"} 1\n"),
            1000,
            0.01,
            &rules(true, true, &[]),
        );
        let m = find(&r, "m")[0];
        assert_eq!(label(m, "job"), Some("inner"));
        assert_eq!(label(m, "instance"), Some("h:1"));
    }

    #[test]
    fn report_series_and_counts() {
        let drop_me = relabel::compile(&[toml::from_str(
            "source_labels = [\"__name__\"]\nregex = \"drop_me\"\naction = \"drop\"",
        )
        .unwrap()])
        .unwrap();
        let mut cache = SeriesCache::default();
        let r = cache.process(
            &target(),
            scraped("a 1\ndrop_me 2\nb{x=\"1\"} 3 1234\na 9\n"),
            5000,
            0.25,
            &rules(false, true, &drop_me),
        );
        let value = |n: &str| find(&r, n)[0].value;
        assert_eq!(value("up"), 1.0);
        assert_eq!(value("scrape_duration_seconds"), 0.25);
        assert_eq!(value("scrape_samples_scraped"), 4.0);
        // drop_me relabeled away, the second `a` refused as a duplicate.
        assert_eq!(value("scrape_samples_post_metric_relabeling"), 2.0);
        assert_eq!(r.duplicates, 1);
        // `b` has its own timestamp: kept, and not tracked for staleness.
        assert_eq!(value("scrape_series_added"), 1.0);
        assert_eq!(find(&r, "b")[0].timestamp_ms, 1234);
        assert_eq!(find(&r, "a")[0].timestamp_ms, 5000);
        assert_eq!(find(&r, "a")[0].value, 1.0);
        let up = find(&r, "up")[0];
        assert_eq!(
            up.labels,
            [
                ("__name__".to_string(), "up".to_string()),
                ("instance".into(), "h:1".into()),
                ("job".into(), "app".into())
            ]
        );
    }

    #[test]
    fn vanished_series_failed_scrapes_and_removed_targets_get_stale_markers() {
        let t = target();
        let mut cache = SeriesCache::default();
        let r = cache.process(
            &t,
            scraped("a 1\nb 2\n"),
            1000,
            0.1,
            &rules(false, true, &[]),
        );
        assert_eq!(r.stale_markers, 0);
        let r = cache.process(
            &t,
            scraped("a 1\nc 3\n"),
            2000,
            0.1,
            &rules(false, true, &[]),
        );
        let b = find(&r, "b");
        assert_eq!(b.len(), 1);
        assert!(b[0].stale);
        assert_eq!(b[0].timestamp_ms, 2000);
        assert_eq!(find(&r, "scrape_series_added")[0].value, 1.0);

        // A failed scrape: up 0 and every series of the last one stale.
        let r = cache.process(&t, Outcome::Failed, 3000, 0.1, &rules(false, true, &[]));
        assert_eq!(find(&r, "up")[0].value, 0.0);
        let mut stale: Vec<&str> = r
            .points
            .iter()
            .filter(|p| p.stale)
            .map(|p| p.name())
            .collect();
        stale.sort();
        assert_eq!(stale, ["a", "c"]);

        // Back, then the target goes away: its series and its report series go stale.
        cache.process(&t, scraped("a 1\n"), 4000, 0.1, &rules(false, true, &[]));
        let end = cache.end(&t, 5000);
        let mut names: Vec<&str> = end.iter().map(|p| p.name()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "a",
                "scrape_duration_seconds",
                "scrape_samples_post_metric_relabeling",
                "scrape_samples_scraped",
                "scrape_series_added",
                "up"
            ]
        );
        assert!(end.iter().all(|p| p.stale && p.timestamp_ms == 5000));
        assert!(cache.end(&t, 6000).is_empty());
    }
}
