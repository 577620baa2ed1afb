//! Value types used by component configs: human-readable durations and byte sizes.
//!
//! Configs are strict (`deny_unknown_fields`) and these types refuse anything they cannot parse
//! with a message that names the accepted forms, so a typo fails at start, not at runtime.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A config value refused by a component's checks: where it is (the key path below the
/// component's table, e.g. `tls.server_name`; empty for the table as a whole) and why. The
/// collector adds the file, line and table, so a bad config reads
/// `file:line:col: exporters.tempo.tls.server_name: "x y" is not a valid DNS name or IP`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct InvalidConfig {
    pub key: String,
    pub reason: String,
}

impl InvalidConfig {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> InvalidConfig {
        InvalidConfig {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The same error seen from the enclosing table: `multiplier` under `retry` is
    /// `retry.multiplier`.
    pub fn under(mut self, parent: &str) -> InvalidConfig {
        self.key = if self.key.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.key)
        };
        self
    }
}

/// A duration string that is not `<number><unit>...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {0:?}: use a number with a unit: ns, us, ms, s, m, h, d (e.g. \"200ms\", \"1m30s\")"
)]
pub struct InvalidDuration(pub String);

/// A byte size that is neither an integer nor `<number><unit>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {0:?}: use bytes or a number with a unit: B, KB, MB, GB, KiB, MiB, GiB (e.g. \"20MiB\")"
)]
pub struct InvalidByteSize(pub String);

/// A duration written as `"200ms"`, `"5s"`, `"1m"`, `"2h"`, `"1h30m"`, or `"0"`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationStr(pub Duration);

impl DurationStr {
    pub const fn from_millis(ms: u64) -> Self {
        DurationStr(Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        DurationStr(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, InvalidDuration> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let err = || InvalidDuration(s.to_owned());
    if s.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let nanos_per: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => return Err(err()),
        };
        let nanos = value * nanos_per;
        if !nanos.is_finite() || nanos > 1e20 {
            return Err(err());
        }
        total += Duration::from_nanos(nanos as u64);
    }
    Ok(total)
}

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(DurationStr)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for DurationStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl fmt::Display for DurationStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A size in bytes, written as an integer or as `"20MiB"`, `"512KiB"`, `"1GB"`, `"100"`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * 1024)
    }
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024 * 1024)
    }
    pub fn get(self) -> u64 {
        self.0
    }
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

pub fn parse_byte_size(s: &str) -> Result<u64, InvalidByteSize> {
    let t = s.trim();
    let err = || InvalidByteSize(s.to_owned());
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    if split == 0 {
        return Err(err());
    }
    let value: f64 = t[..split].parse().map_err(|_| err())?;
    let mult: f64 = match t[split..].trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte size such as 1048576 or \"1MiB\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("20MiB").unwrap(), 20 * 1024 * 1024);
        assert_eq!(parse_byte_size("1KB").unwrap(), 1000);
        assert_eq!(parse_byte_size("512").unwrap(), 512);
        assert!(parse_byte_size("12 furlongs").is_err());
        assert!(parse_byte_size("").is_err());
    }
}
