//! Timestamps in AWF events: RFC 3339 / ISO 8601 strings (what Python's `datetime.isoformat()`
//! and pydantic emit) or epoch numbers, all turned into Unix nanoseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

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

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM]`. A missing offset means UTC
/// (Python's naive `utcnow().isoformat()`).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    if b.get(16) != Some(&b':') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_nanos: i64 = 0;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Keep at most nanosecond precision; extra digits are truncated.
        for (n, &d) in b[start..i].iter().take(9).enumerate() {
            frac_nanos += i64::from(d - b'0') * 10i64.pow(8 - n as u32);
        }
    }
    let offset_secs: i64 = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let hh = num(i + 1..i + 3)?;
            let mm = match b.get(i + 3) {
                Some(b':') if b.len() == i + 6 => num(i + 4..i + 6)?,
                None => 0,
                Some(_) if b.len() == i + 5 => num(i + 3..i + 5)?,
                _ => return None,
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            let off = hh * 3600 + mm * 60;
            if sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    if secs < 0 {
        return None;
    }
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u64::try_from(frac_nanos).ok()?)
}

/// Formats Unix nanoseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds, like Python).
pub fn format_rfc3339(nanos: u64) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let micros = (nanos % 1_000_000_000) / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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
