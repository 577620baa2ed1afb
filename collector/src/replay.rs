//! Progress of delivering what earlier runs left in a spool (docs/spool.md, "Start-up
//! replay"). After a long outage the spool may hold gigabytes; an operator who restarts
//! Sluice wants to know how far the replay is and when it will be done. Each exporter reads
//! through its own cursor, so progress is per exporter: its committed cursor against the
//! position the spool had reached when it opened.
//!
//! Logged every [`REPLAY_PROGRESS_EVERY`] while an exporter is behind, and once when it has
//! caught up; exposed as gauges (`sluice_spool_replay_*`, labels `component_id`, `pipeline`)
//! that `/api/v1/components` reads back.

use sluice_spool::{Spool, Stored, human_bytes};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often replay progress is logged.
pub const REPLAY_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One exporter's replay of the records earlier runs left.
struct ExporterReplay {
    component_id: Arc<str>,
    name: String,
    /// Where its cursor was at open, and where the earlier runs' records end.
    start: u64,
    end: u64,
    total: Stored,
    /// Remaining bytes at the previous report, to tell a stalled replay.
    last_remaining: u64,
    done: bool,
}

impl ExporterReplay {
    fn gauges(&self, pipeline: &str, remaining: Stored) {
        let labels = [
            ("component_id", self.component_id.to_string()),
            ("pipeline", pipeline.to_owned()),
        ];
        metrics::gauge!("sluice_spool_replay_total_records", &labels)
            .set(self.total.records as f64);
        metrics::gauge!("sluice_spool_replay_total_bytes", &labels).set(self.total.bytes as f64);
        metrics::gauge!("sluice_spool_replay_remaining_records", &labels)
            .set(remaining.records as f64);
        metrics::gauge!("sluice_spool_replay_remaining_bytes", &labels).set(remaining.bytes as f64);
    }
}

/// What one progress line says, computed apart from the clock and the log so it can be tested.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayLine {
    pub percent: u64,
    pub message: String,
}

/// The progress line of a replay that has `remaining` of `total` left after `elapsed`;
/// `stalled` when nothing was delivered since the previous line.
pub fn progress_line(
    total: Stored,
    remaining: Stored,
    elapsed: Duration,
    stalled: bool,
) -> ReplayLine {
    let done_bytes = total.bytes.saturating_sub(remaining.bytes);
    let done_records = total.records.saturating_sub(remaining.records);
    let percent = (done_records * 100)
        .checked_div(total.records)
        .unwrap_or(100);
    let rate = done_bytes as f64 / elapsed.as_secs_f64().max(0.001);
    let pace = if stalled {
        "stalled: nothing delivered in the last interval (is the backend reachable?)".to_owned()
    } else if rate >= 1.0 {
        let eta = remaining.bytes as f64 / rate;
        format!(
            "{}/s, about {} left",
            human_bytes(rate as u64),
            human_duration(eta)
        )
    } else {
        "starting".to_owned()
    };
    ReplayLine {
        percent,
        message: format!(
            "replaying spool: {percent}% ({} of {}, {done_records} of {} requests), {pace}",
            human_bytes(done_bytes),
            human_bytes(total.bytes),
            total.records,
        ),
    }
}

/// `45s`, `12m 5s`, `2h 3m`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

/// Watches `exporters` of `spool` until each has delivered what earlier runs left. `None` when
/// there is nothing to replay.
pub fn spawn(spool: Spool, pipeline: &str, exporters: &[String]) -> Option<JoinHandle<()>> {
    let end = spool.replay_end();
    let mut replays: Vec<ExporterReplay> = exporters
        .iter()
        .filter_map(|name| {
            let start = spool.cursor(name)?.committed;
            let total = spool.stored_between(start, end);
            (total.records > 0).then(|| ExporterReplay {
                component_id: Arc::from(format!("exporters.{name}")),
                name: name.clone(),
                start,
                end,
                total,
                last_remaining: total.bytes,
                done: false,
            })
        })
        .collect();
    if replays.is_empty() {
        return None;
    }
    let pipeline = pipeline.to_owned();
    for r in &replays {
        r.gauges(&pipeline, r.total);
        tracing::info!(
            pipeline = %pipeline,
            exporter = %r.name,
            records = r.total.records,
            bytes = r.total.bytes,
            "spool holds {} ({} requests) from an earlier run for exporter {}; replaying it",
            human_bytes(r.total.bytes),
            r.total.records,
            r.name
        );
    }
    let started = Instant::now();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut next_report = Instant::now() + REPLAY_PROGRESS_EVERY;
        while replays.iter().any(|r| !r.done) {
            tick.tick().await;
            let report = Instant::now() >= next_report;
            if report {
                next_report = Instant::now() + REPLAY_PROGRESS_EVERY;
            }
            for r in replays.iter_mut().filter(|r| !r.done) {
                let committed = spool.cursor(&r.name).map_or(r.start, |c| c.committed);
                let remaining = spool.stored_between(committed.max(r.start), r.end);
                r.gauges(&pipeline, remaining);
                if committed >= r.end {
                    r.done = true;
                    tracing::info!(
                        pipeline = %pipeline,
                        exporter = %r.name,
                        records = r.total.records,
                        bytes = r.total.bytes,
                        "spool replay done: {} ({} requests) delivered in {}",
                        human_bytes(r.total.bytes),
                        r.total.records,
                        human_duration(started.elapsed().as_secs_f64())
                    );
                } else if report {
                    let stalled = remaining.bytes >= r.last_remaining;
                    r.last_remaining = remaining.bytes;
                    let line = progress_line(r.total, remaining, started.elapsed(), stalled);
                    tracing::info!(
                        pipeline = %pipeline,
                        exporter = %r.name,
                        percent = line.percent,
                        remaining_records = remaining.records,
                        remaining_bytes = remaining.bytes,
                        "{}",
                        line.message
                    );
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn progress_line_reports_share_rate_and_time_left() {
        let total = Stored {
            records: 1000,
            bytes: 100 * MIB,
        };
        let remaining = Stored {
            records: 600,
            bytes: 60 * MIB,
        };
        let line = progress_line(total, remaining, Duration::from_secs(4), false);
        assert_eq!(line.percent, 40);
        assert_eq!(
            line.message,
            "replaying spool: 40% (40.0 MiB of 100.0 MiB, 400 of 1000 requests), 10.0 MiB/s, about 6s left"
        );
    }

    #[test]
    fn a_replay_that_moves_no_data_says_it_is_stalled() {
        let total = Stored {
            records: 10,
            bytes: 10 * MIB,
        };
        let line = progress_line(total, total, Duration::from_secs(5), true);
        assert_eq!(line.percent, 0);
        assert!(
            line.message
                .contains("0% (0 B of 10.0 MiB, 0 of 10 requests), stalled"),
            "{}",
            line.message
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(44.6), "45s");
        assert_eq!(human_duration(725.0), "12m 5s");
        assert_eq!(human_duration(7380.0), "2h 3m");
    }
}
