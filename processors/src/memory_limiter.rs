//! `memory_limiter`: refuses data while the process uses more memory than its soft limit, so
//! clients back off (HTTP 429 / gRPC `RESOURCE_EXHAUSTED` with a retry delay) before the process
//! is in danger. Settings and semantics of the OpenTelemetry Collector's memory limiter: the
//! soft limit is `limit_mib - spike_limit_mib`; usage is sampled every `check_interval`.
//!
//! The measure is the process's resident set size (`/proc/self/statm`), which is what the
//! kernel's OOM killer and container limits act on. It is global: every memory_limiter in every
//! pipeline reads the same sample, so it protects the process, not one pipeline. Put it first
//! in a pipeline's processors so refused data costs nothing more.

use crate::{BuildError, Context, Stage};
use serde::Deserialize;
use sluice_core::{DurationStr, InvalidConfig, Item, Processor, Refusal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const TYPE_NAME: &str = "memory_limiter";
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How often memory use is sampled.
    #[serde(default = "default_interval")]
    pub check_interval: DurationStr,
    /// Hard limit in MiB. Data is refused from `limit_mib - spike_limit_mib` on.
    #[serde(default)]
    pub limit_mib: Option<u64>,
    /// Headroom below the hard limit for growth between two samples (default: 20% of the limit).
    #[serde(default)]
    pub spike_limit_mib: Option<u64>,
    /// Hard limit as a percentage of the memory available (the cgroup limit, else the
    /// machine's memory); instead of `limit_mib`.
    #[serde(default)]
    pub limit_percentage: Option<u64>,
    #[serde(default)]
    pub spike_limit_percentage: Option<u64>,
}

fn default_interval() -> DurationStr {
    DurationStr::from_secs(1)
}

impl sluice_core::ComponentConfig for Config {}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.limits().map(|_| ())
    }

    /// (soft, hard) limits in bytes.
    pub fn limits(&self) -> Result<(u64, u64), InvalidConfig> {
        if self.check_interval.get().is_zero() {
            return Err(InvalidConfig::new("check_interval", "must be more than 0"));
        }
        let (hard, spike) = match (self.limit_mib, self.limit_percentage) {
            (Some(_), Some(_)) => {
                return Err(InvalidConfig::new(
                    "limit_percentage",
                    "limit_mib is set too: set one of them, not both",
                ));
            }
            (None, None) => {
                return Err(InvalidConfig::new(
                    "",
                    "limit_mib or limit_percentage is required",
                ));
            }
            (Some(mib), None) => {
                if self.spike_limit_percentage.is_some() {
                    return Err(InvalidConfig::new(
                        "spike_limit_percentage",
                        "goes with limit_percentage; with limit_mib use spike_limit_mib",
                    ));
                }
                let hard = mib * MIB;
                (
                    hard,
                    self.spike_limit_mib.map(|s| s * MIB).unwrap_or(hard / 5),
                )
            }
            (None, Some(pct)) => {
                if self.spike_limit_mib.is_some() {
                    return Err(InvalidConfig::new(
                        "spike_limit_mib",
                        "goes with limit_mib; with limit_percentage use spike_limit_percentage",
                    ));
                }
                if pct == 0 || pct > 100 {
                    return Err(InvalidConfig::new(
                        "limit_percentage",
                        "must be between 1 and 100",
                    ));
                }
                let total = available_memory().ok_or_else(|| {
                    InvalidConfig::new(
                        "limit_percentage",
                        "cannot read the memory available (use limit_mib)",
                    )
                })?;
                let spike = self.spike_limit_percentage.unwrap_or(pct / 5);
                (total / 100 * pct, total / 100 * spike)
            }
        };
        if hard == 0 {
            return Err(InvalidConfig::new("limit_mib", "must be more than 0"));
        }
        if spike >= hard {
            return Err(InvalidConfig::new(
                "spike_limit_mib",
                "must be less than limit_mib",
            ));
        }
        Ok((hard - spike, hard))
    }
}

/// The process's resident set size in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The cgroup v2 memory limit, else the machine's memory.
fn available_memory() -> Option<u64> {
    if let Ok(max) = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        && let Ok(bytes) = max.trim().parse::<u64>()
    {
        return Some(bytes);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The last sample of the process's memory, shared by every limiter: memory is a property
/// of the process, not of a pipeline. A limiter takes a new sample when the last one is older
/// than its `check_interval`, on the request that finds it stale (reading `/proc/self/statm`
/// costs microseconds), so no sampler thread can fall behind under load.
struct Sample {
    resident: AtomicU64,
    /// When it was taken, in nanoseconds since `EPOCH`.
    taken: AtomicU64,
}

static SAMPLE: Sample = Sample {
    resident: AtomicU64::new(0),
    taken: AtomicU64::new(0),
};

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The process's resident bytes, sampled at most once per `interval`.
fn resident(interval: Duration) -> u64 {
    let now = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
    let taken = SAMPLE.taken.load(Ordering::Relaxed);
    let stale = taken == 0 || now.saturating_sub(taken) >= interval.as_nanos() as u64;
    if stale
        && SAMPLE
            .taken
            .compare_exchange(taken, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        && let Some(r) = resident_bytes()
    {
        SAMPLE.resident.store(r, Ordering::Relaxed);
        metrics::gauge!("sluice_process_resident_memory_bytes").set(r as f64);
    }
    SAMPLE.resident.load(Ordering::Relaxed)
}

pub struct MemoryLimiter {
    interval: Duration,
    soft_limit: u64,
    retry_after: Duration,
    refusing: AtomicBool,
    ctx: Context,
}

impl Processor for MemoryLimiter {
    fn process(&self, item: Item) -> Result<Option<Item>, Refusal> {
        let used = resident(self.interval);
        let over = used >= self.soft_limit;
        if over != self.refusing.swap(over, Ordering::Relaxed) {
            if over {
                tracing::warn!(processor = %self.ctx.component_id, pipeline = %self.ctx.pipeline,
                    resident_mib = used / MIB, soft_limit_mib = self.soft_limit / MIB,
                    "memory use is above the soft limit; refusing data until it drops");
            } else {
                tracing::info!(processor = %self.ctx.component_id, pipeline = %self.ctx.pipeline,
                    resident_mib = used / MIB, "memory use is below the soft limit again; accepting data");
            }
        }
        if over {
            return Err(Refusal::Backpressure {
                reason: "memory_limit",
                retry_after: self.retry_after,
            });
        }
        Ok(Some(item))
    }
}

pub fn build(config: &Config, ctx: Context) -> Result<Stage, BuildError> {
    let (soft_limit, _hard) = config.limits()?;
    let interval = config.check_interval.get();
    Ok(Stage::Item(Arc::new(MemoryLimiter {
        interval,
        soft_limit,
        retry_after: interval.max(Duration::from_secs(1)),
        refusing: AtomicBool::new(false),
        ctx,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Signal;

    fn cfg(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn limits_follow_the_collector() {
        assert_eq!(
            cfg("limit_mib = 100").limits().unwrap(),
            (80 * MIB, 100 * MIB)
        );
        assert_eq!(
            cfg("limit_mib = 100\nspike_limit_mib = 30")
                .limits()
                .unwrap(),
            (70 * MIB, 100 * MIB)
        );
        let (soft, hard) = cfg("limit_percentage = 50\nspike_limit_percentage = 10")
            .limits()
            .unwrap();
        assert!(soft < hard);
        let bad = |t: &str| cfg(t).validate().unwrap_err();
        assert!(bad("").reason.contains("required"));
        assert_eq!(
            bad("limit_mib = 10\nspike_limit_mib = 10").key,
            "spike_limit_mib"
        );
        let both = bad("limit_mib = 10\nlimit_percentage = 10");
        assert_eq!(both.key, "limit_percentage");
        assert!(both.reason.contains("not both"));
        assert_eq!(
            bad("limit_mib = 10\ncheck_interval = \"0\"").key,
            "check_interval"
        );
    }

    #[test]
    fn refuses_above_the_soft_limit_and_passes_below() {
        let used = resident_bytes().unwrap();
        let item = Item::new(Signal::Logs, bytes::Bytes::from_static(b""), 0);
        // A soft limit under what this process already uses: refused.
        let low = MemoryLimiter {
            interval: Duration::ZERO,
            soft_limit: used / 2,
            retry_after: Duration::from_secs(1),
            refusing: AtomicBool::new(false),
            ctx: Context::new("processors.m", "p"),
        };
        match low.process(item.clone()) {
            Err(Refusal::Backpressure { reason, .. }) => assert_eq!(reason, "memory_limit"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Far above: passes.
        let high = MemoryLimiter {
            soft_limit: used * 100,
            ..low
        };
        assert_eq!(high.process(item.clone()).unwrap(), Some(item));
    }
}
