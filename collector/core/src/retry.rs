//! Retry policy shared by every exporter: exponential backoff with jitter, a floor from the
//! backend's `Retry-After` / `RetryInfo`, and an optional maximum item age.

use crate::config::{DurationStr, InvalidConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// `[exporters.X.retry]`. Defaults retry forever: acknowledged data is only ever dropped when
/// the backend refuses it for good, or when the user sets `max_age`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First delay after a retryable failure.
    pub initial_interval: DurationStr,
    /// Cap on the delay between attempts.
    pub max_interval: DurationStr,
    /// Growth factor per consecutive failure.
    pub multiplier: f64,
    /// Each delay is drawn from `[d·(1−r), d·(1+r)]`.
    pub randomization_factor: f64,
    /// Drop (and count with reason `expired`) items still undelivered after this long.
    /// Unset (the default) means retry forever.
    pub max_age: Option<DurationStr>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_interval: DurationStr::from_millis(500),
            max_interval: DurationStr::from_secs(30),
            multiplier: 1.5,
            randomization_factor: 0.5,
            max_age: None,
        }
    }
}

impl RetryConfig {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(InvalidConfig::new(
                "multiplier",
                format!("must be >= 1, got {}", self.multiplier),
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err(InvalidConfig::new(
                "randomization_factor",
                format!("must be within 0..=1, got {}", self.randomization_factor),
            ));
        }
        if self.initial_interval.0.is_zero() {
            return Err(InvalidConfig::new(
                "initial_interval",
                "must be greater than 0",
            ));
        }
        if self.max_interval.0 < self.initial_interval.0 {
            return Err(InvalidConfig::new(
                "max_interval",
                "must not be smaller than initial_interval",
            ));
        }
        Ok(())
    }
}

/// Backoff state for one request (or one exporter) across consecutive failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: RetryConfig,
    next: Duration,
    pub attempts: u32,
}

impl Backoff {
    pub fn new(config: &RetryConfig) -> Self {
        Backoff {
            next: config.initial_interval.0,
            config: config.clone(),
            attempts: 0,
        }
    }

    /// The delay before the next attempt: jittered exponential, but never less than the
    /// backend's own `retry_after`.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.attempts += 1;
        let base = self.next;
        let r = self.config.randomization_factor;
        let jittered = if r > 0.0 {
            let f = rand::rng().random_range((1.0 - r)..=(1.0 + r));
            base.mul_f64(f)
        } else {
            base
        };
        self.next = base
            .mul_f64(self.config.multiplier)
            .min(self.config.max_interval.0);
        let delay = jittered.min(self.config.max_interval.0);
        match retry_after {
            Some(floor) if floor > delay => floor,
            _ => delay,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.config.initial_interval.0;
        self.attempts = 0;
    }
}

/// Parses an HTTP `Retry-After` value: delta-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_floor() {
        let cfg = RetryConfig {
            initial_interval: DurationStr::from_millis(100),
            max_interval: DurationStr::from_millis(400),
            multiplier: 2.0,
            randomization_factor: 0.0,
            max_age: None,
        };
        let mut b = Backoff::new(&cfg);
        assert_eq!(b.next_delay(None), Duration::from_millis(100));
        assert_eq!(b.next_delay(None), Duration::from_millis(200));
        assert_eq!(b.next_delay(None), Duration::from_millis(400));
        assert_eq!(b.next_delay(None), Duration::from_millis(400));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        b.reset();
        assert_eq!(b.next_delay(None), Duration::from_millis(100));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
        let future = SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn validate_rejects_nonsense() {
        let mut c = RetryConfig {
            multiplier: 0.5,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        c.multiplier = 2.0;
        c.randomization_factor = 3.0;
        assert!(c.validate().is_err());
    }
}
