//! Timestamps in AWF events: RFC 3339 / ISO 8601 strings (what Python's `datetime.isoformat()`
//! and pydantic emit) or epoch numbers, all turned into Unix nanoseconds. The calendar is
//! `sluice_core::time`'s.

use sluice_core::time;

/// An epoch number whose unit is guessed from its magnitude: seconds (with fraction),
/// milliseconds, microseconds or nanoseconds. Negative or non-finite values are refused.
pub fn from_epoch_number(v: f64) -> Option<u64> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let nanos = if v < 1e11 {
        v * 1e9 // seconds: good until the year 5138
    } else if v < 1e14 {
        v * 1e6 // milliseconds
    } else if v < 1e17 {
        v * 1e3 // microseconds
    } else {
        v
    };
    if nanos >= u64::MAX as f64 {
        return None;
    }
    Some(nanos as u64)
}

/// Parses an RFC 3339 / ISO 8601 date-time to Unix nanoseconds (the forms
/// `sluice_core::time::parse_rfc3339` takes; a missing offset means UTC, as Python's naive
/// `utcnow().isoformat()`). Instants before 1970 are refused.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    time::unix_nanos(time::parse_rfc3339(s)?)
}

/// Formats Unix nanoseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds, like Python).
pub fn format_rfc3339(nanos: u64) -> String {
    time::format_rfc3339(time::from_unix_nanos(nanos), 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_735_689_600_000_000_000; // 2025-01-01T00:00:00Z

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_rfc3339("2025-01-01T00:00:00Z"), Some(T));
        assert_eq!(parse_rfc3339("2025-01-01T00:00:00"), Some(T));
        assert_eq!(parse_rfc3339("2025-01-01 00:00:00+00:00"), Some(T));
        assert_eq!(parse_rfc3339("2025-01-01T02:00:00+02:00"), Some(T));
        assert_eq!(parse_rfc3339("2024-12-31T23:00:00-0100"), Some(T));
        assert_eq!(
            parse_rfc3339("2025-01-01T00:00:00.123456Z"),
            Some(T + 123_456_000)
        );
        assert_eq!(
            parse_rfc3339("2025-01-01T00:00:00.1234567891Z"),
            Some(T + 123_456_789)
        );
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for s in [
            "",
            "2025",
            "2025-13-01T00:00:00Z",
            "2025-01-01X00:00:00Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+2",
            "2025-01-01T00:00:00Zjunk",
            "1969-12-31T23:59:59Z",
            "２０２５-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s:?}");
        }
    }

    #[test]
    fn format_round_trips() {
        let t = T + 86_400 * 1_000_000_000 * 59 + 3_723_000_000_000 + 42_000; // 2025-03-01T01:02:03.000042
        let s = format_rfc3339(t);
        assert_eq!(s, "2025-03-01T01:02:03.000042Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
    }

    #[test]
    fn epoch_units_by_magnitude() {
        assert_eq!(from_epoch_number(1_735_689_600.0), Some(T));
        assert_eq!(from_epoch_number(1_735_689_600_000.0), Some(T));
        assert_eq!(from_epoch_number(1_735_689_600_000_000.0), Some(T));
        assert_eq!(
            from_epoch_number(1.7356896e18),
            Some(1_735_689_600_000_000_000)
        );
        assert_eq!(from_epoch_number(-1.0), None);
        assert_eq!(from_epoch_number(f64::NAN), None);
        assert_eq!(from_epoch_number(1e30), None);
    }
}
