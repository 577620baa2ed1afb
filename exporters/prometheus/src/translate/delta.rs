//! Delta → cumulative conversion for monotonic sums (`convert_delta_to_cumulative = true`).
//!
//! Prometheus only understands cumulative counters, so each delta point is added to a running
//! total kept per series. The totals live in memory only: after a restart accumulation starts
//! again from zero, which Prometheus' `rate()`/`increase()` treat as a counter reset. Bounds:
//!
//! * at most `max_series` running totals; points of further new series are dropped and counted
//!   (`delta_series_limit`) until idle series expire;
//! * a series not updated for `expiry` is forgotten (the next point starts a new total).
//!
//! Points are applied in timestamp order per series; a point not newer than the last applied
//! one (a duplicate or a late arrival) cannot be added without corrupting the total and is
//! dropped (`delta_out_of_order`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Running {
    /// Start of the accumulated series, in ms (reported as the counter's start time).
    start_ms: i64,
    last_time_ns: u64,
    total: f64,
    last_update: Instant,
}

/// Why a delta point produced no sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaRefusal {
    SeriesLimit,
    OutOfOrder,
}

impl DeltaRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            DeltaRefusal::SeriesLimit => "delta_series_limit",
            DeltaRefusal::OutOfOrder => "delta_out_of_order",
        }
    }
}

/// What one delta point became.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accumulated {
    pub total: f64,
    pub start_ms: i64,
}

#[derive(Debug)]
pub struct DeltaAccumulator {
    series: HashMap<u64, Running>,
    max_series: usize,
    expiry: Duration,
    last_sweep: Instant,
}

impl DeltaAccumulator {
    pub fn new(max_series: usize, expiry: Duration) -> DeltaAccumulator {
        DeltaAccumulator {
            series: HashMap::new(),
            max_series,
            expiry,
            last_sweep: Instant::now(),
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Forgets series idle for longer than the expiry. Cheap to call often: it scans at most
    /// once per tenth of the expiry.
    pub fn expire_idle(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) < self.expiry / 10 {
            return;
        }
        self.last_sweep = now;
        let expiry = self.expiry;
        self.series
            .retain(|_, r| now.duration_since(r.last_update) <= expiry);
    }

    /// Adds one delta point (`value` over `(start_ns, time_ns]`) to the series' running total.
    pub fn add(
        &mut self,
        series: u64,
        start_ns: u64,
        time_ns: u64,
        value: f64,
        now: Instant,
    ) -> Result<Accumulated, DeltaRefusal> {
        if let Some(running) = self.series.get_mut(&series) {
            if time_ns <= running.last_time_ns {
                return Err(DeltaRefusal::OutOfOrder);
            }
            running.total += value;
            running.last_time_ns = time_ns;
            running.last_update = now;
            return Ok(Accumulated {
                total: running.total,
                start_ms: running.start_ms,
            });
        }
        if self.series.len() >= self.max_series {
            return Err(DeltaRefusal::SeriesLimit);
        }
        let start = if start_ns == 0 { time_ns } else { start_ns };
        let start_ms = (start / 1_000_000) as i64;
        self.series.insert(
            series,
            Running {
                start_ms,
                last_time_ns: time_ns,
                total: value,
                last_update: now,
            },
        );
        Ok(Accumulated {
            total: value,
            start_ms,
        })
    }

    /// The series ended (no-recorded-value point): forget its total.
    pub fn end(&mut self, series: u64) {
        self.series.remove(&series);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_in_order_and_refuses_old_points() {
        let now = Instant::now();
        let mut acc = DeltaAccumulator::new(10, Duration::from_secs(300));
        let a = acc.add(1, 1_000_000_000, 2_000_000_000, 5.0, now).unwrap();
        assert_eq!(
            a,
            Accumulated {
                total: 5.0,
                start_ms: 1000
            }
        );
        let a = acc.add(1, 2_000_000_000, 3_000_000_000, 2.5, now).unwrap();
        assert_eq!(a.total, 7.5);
        assert_eq!(a.start_ms, 1000);
        assert_eq!(
            acc.add(1, 1_000_000_000, 3_000_000_000, 1.0, now),
            Err(DeltaRefusal::OutOfOrder)
        );
        // Another series is independent.
        assert_eq!(
            acc.add(2, 0, 3_000_000_000, 1.0, now).unwrap().start_ms,
            3000
        );
    }

    #[test]
    fn limit_and_expiry() {
        let t0 = Instant::now();
        let mut acc = DeltaAccumulator::new(2, Duration::from_secs(60));
        acc.add(1, 0, 1, 1.0, t0).unwrap();
        acc.add(2, 0, 1, 1.0, t0).unwrap();
        assert_eq!(acc.add(3, 0, 1, 1.0, t0), Err(DeltaRefusal::SeriesLimit));
        // Series 2 keeps being updated; series 1 goes idle and expires.
        let t1 = t0 + Duration::from_secs(50);
        acc.add(2, 0, 2, 1.0, t1).unwrap();
        let t2 = t0 + Duration::from_secs(90);
        acc.expire_idle(t2);
        assert_eq!(acc.len(), 1);
        let again = acc.add(1, 0, 5, 4.0, t2).unwrap();
        assert_eq!(again.total, 4.0, "an expired series starts from zero");
        acc.end(1);
        assert_eq!(acc.len(), 1);
    }
}
