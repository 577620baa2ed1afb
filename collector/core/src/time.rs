//! Wall-clock time and RFC 3339 timestamps, on `jiff`: the one clock and the one calendar every
//! component uses.
//!
//! Parsing accepts RFC 3339 §5.6 `date-time` and the ISO 8601 forms Python's `isoformat()`
//! writes: `T`, `t` or a space between date and time, a `.` or `,` before the fraction, an offset
//! `Z`, `±HH:MM` or `±HHMM`, and no offset at all, which means UTC (a naive
//! `datetime.utcnow().isoformat()`). More than nine fraction digits are cut to nanoseconds.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::fmt::temporal::{DateTimeParser, DateTimePrinter};
use jiff::tz::TimeZone;

static PARSER: DateTimeParser = DateTimeParser::new();

/// Now, as a `jiff::Timestamp`.
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Nanoseconds since the Unix epoch, now (0 before 1970, `u64::MAX` after 2554).
pub fn now_unix_nanos() -> u64 {
    unix_nanos(now()).unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now (0 before 1970).
pub fn now_unix_millis() -> u64 {
    u64::try_from(now().as_millisecond()).unwrap_or(0)
}

/// `ts` as Unix nanoseconds; `None` before 1970 (saturating after 2554).
pub fn unix_nanos(ts: Timestamp) -> Option<u64> {
    let nanos = ts.as_nanosecond();
    (nanos >= 0).then(|| u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The instant Unix nanoseconds `nanos` name.
pub fn from_unix_nanos(nanos: u64) -> Timestamp {
    // Every u64 of nanoseconds (up to the year 2554) is inside jiff's range.
    Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::MAX)
}

/// The instant Unix milliseconds `ms` name, clamped to jiff's range (years -9999 to 9999).
pub fn from_unix_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Parses an RFC 3339 / ISO 8601 date-time (see the module docs for the accepted forms).
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    // Date and time with seconds, `YYYY-MM-DDTHH:MM:SS` (jiff would also take a bare date).
    if s.len() < 19 || s.as_bytes()[13] != b':' || s.as_bytes()[16] != b':' {
        return None;
    }
    let s = cut_fraction_to_nanos(s);
    if let Ok(ts) = PARSER.parse_timestamp(s.as_ref()) {
        return Some(ts);
    }
    // No offset: UTC. A string with a `Z` or an offset that failed above fails here too.
    let civil: DateTime = PARSER.parse_datetime(s.as_ref()).ok()?;
    if has_offset(s.as_ref()) {
        return None;
    }
    TimeZone::UTC.to_timestamp(civil).ok()
}

/// `ts` as `YYYY-MM-DDTHH:MM:SS.fffZ` in UTC, with exactly `fraction_digits` (0 to 9) digits.
pub fn format_rfc3339(ts: Timestamp, fraction_digits: u8) -> String {
    DateTimePrinter::new()
        .precision(Some(fraction_digits.min(9)))
        .timestamp_to_string(&ts)
}

/// An offset after the time: `Z`/`z`, or a sign after the `HH:MM:SS` part.
fn has_offset(s: &str) -> bool {
    let time = s.get(11..).unwrap_or("");
    time.contains(['Z', 'z', '+', '-'])
}

/// `s` with fraction digits beyond nine removed: jiff refuses them, AWF's Python clients may
/// write more, and they are below a nanosecond.
fn cut_fraction_to_nanos(s: &str) -> std::borrow::Cow<'_, str> {
    let Some(dot) = s.get(19..).and_then(|t| t.find(['.', ','])).map(|i| i + 19) else {
        return s.into();
    };
    let digits = s[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
    if digits <= 9 {
        return s.into();
    }
    format!("{}{}", &s[..dot + 10], &s[dot + 1 + digits..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

    fn secs(s: &str) -> Option<i64> {
        parse_rfc3339(s).map(|t| t.as_second())
    }

    #[test]
    fn parses_rfc3339_and_python_isoformat() {
        for s in [
            "2025-01-01T00:00:00Z",
            "2025-01-01t00:00:00z",
            "2025-01-01T00:00:00",
            "2025-01-01 00:00:00+00:00",
            "2025-01-01T02:00:00+02:00",
            "2024-12-31T23:00:00-0100",
            "  2025-01-01T00:00:00Z ",
        ] {
            assert_eq!(secs(s), Some(T), "{s:?}");
        }
        let frac = |s| parse_rfc3339(s).map(|t| t.subsec_nanosecond());
        assert_eq!(frac("2025-01-01T00:00:00.123456Z"), Some(123_456_000));
        assert_eq!(frac("2025-01-01T00:00:00,5"), Some(500_000_000));
        assert_eq!(frac("2025-01-01T00:00:00.1234567891Z"), Some(123_456_789));
        assert_eq!(secs("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for s in [
            "",
            "2025",
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-01-01X00:00:00Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+2",
            "2025-01-01T00:00:00Zjunk",
            "２０２５-01-01T00:00:00Z",
            "é2025-01-01T00:00:00.1234567891Z",
            &"x".repeat(30),
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s:?}");
        }
    }

    #[test]
    fn formats_utc_with_a_fixed_fraction() {
        let t = from_unix_nanos(1_740_790_923_000_042_000); // 2025-03-01T01:02:03.000042Z
        assert_eq!(format_rfc3339(t, 6), "2025-03-01T01:02:03.000042Z");
        assert_eq!(format_rfc3339(t, 3), "2025-03-01T01:02:03.000Z");
        assert_eq!(parse_rfc3339(&format_rfc3339(t, 9)), Some(t));
        assert_eq!(unix_nanos(t), Some(1_740_790_923_000_042_000));
        assert_eq!(unix_nanos(from_unix_millis(-1)), None);
        assert_eq!(
            format_rfc3339(from_unix_millis(1_735_732_800_123), 3),
            "2025-01-01T12:00:00.123Z"
        );
    }

    #[test]
    fn the_clock_moves_forward_from_now() {
        let (a, b) = (now_unix_millis(), now_unix_nanos());
        assert!(a > 1_700_000_000_000 && b / 1_000_000 >= a);
    }
}
