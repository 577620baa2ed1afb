//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text, parsed into
//! samples as Prometheus' scraper sees them: each sample line keeps its exact metric name
//! (`foo_total`, `foo_bucket`, `foo_created`), its labels in exposition order and its
//! value; `# TYPE` gives the family's type.
//!
//! Hand-written rather than a crates.io parser: `prometheus-parse` splits label pairs on `,`
//! and `=` without decoding escapes (a value holding `,`, `=` or `\"` is corrupted) and its
//! names exclude `:`; `openmetrics-parser` is LGPL-3.0, which this Apache-2.0 project does not
//! link. The grammar is small and line-oriented; the tests below cover the escapes, the two
//! timestamp units and the OpenMetrics `# EOF` and exemplar rules.

use crate::config::{is_label_name, is_metric_name};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and anything Prometheus does not recognise).
    Text,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// The format of a response by its `Content-Type`, as Prometheus decides it.
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct)
                if ct.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/openmetrics-text")
                }) =>
            {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }
}

/// A family's `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricKind {
    fn parse(word: &str, format: Format) -> Option<MetricKind> {
        Some(match (word, format) {
            ("counter", _) => MetricKind::Counter,
            ("gauge", _) => MetricKind::Gauge,
            ("histogram", _) => MetricKind::Histogram,
            ("summary", _) => MetricKind::Summary,
            ("untyped", Format::Text) | ("unknown", Format::OpenMetrics) => MetricKind::Unknown,
            ("gaugehistogram", Format::OpenMetrics) => MetricKind::GaugeHistogram,
            ("info", Format::OpenMetrics) => MetricKind::Info,
            ("stateset", Format::OpenMetrics) => MetricKind::StateSet,
            _ => return None,
        })
    }

    /// The Prometheus metadata type name (as in `# TYPE`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::GaugeHistogram => "gaugehistogram",
            MetricKind::Summary => "summary",
            MetricKind::Info => "info",
            MetricKind::StateSet => "stateset",
            MetricKind::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In exposition order, `__name__` not included.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, when the exposition gives one.
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    types: HashMap<String, MetricKind>,
}

/// Suffixes a family's samples may carry beyond the family name.
const SUFFIXES: &[&str] = &[
    "_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
];

impl Exposition {
    /// The type of the family a sample belongs to (`Unknown` when not declared).
    pub fn kind_of(&self, sample_name: &str) -> MetricKind {
        if let Some(k) = self.types.get(sample_name) {
            return *k;
        }
        SUFFIXES
            .iter()
            .filter_map(|s| sample_name.strip_suffix(s))
            .find_map(|family| self.types.get(family).copied())
            .unwrap_or(MetricKind::Unknown)
    }
}

/// A line the parser refused; the whole scrape fails on it, as in Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number in the scraped body.
    pub line: usize,
    pub reason: LineError,
}

/// What is wrong with a refused line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("data after # EOF")]
    DataAfterEof,
    #[error("OpenMetrics data does not end with # EOF")]
    MissingEof,
    #[error("# TYPE without a metric name")]
    TypeWithoutName,
    #[error("# TYPE: {0:?} is not a valid metric name")]
    TypeInvalidName(String),
    #[error("# TYPE without a type")]
    TypeWithoutKind,
    #[error("# TYPE {name}: unknown metric type {kind:?}")]
    UnknownType { name: String, kind: String },
    #[error("expected a metric name at {0:?}")]
    ExpectedMetricName(String),
    #[error("{name}: label {label:?} appears twice")]
    DuplicateLabel { name: String, label: String },
    #[error("{0}: expected a space before the value")]
    NoSpaceBeforeValue(String),
    #[error("{0}: no value")]
    NoValue(String),
    #[error("{name}: invalid value {value:?}")]
    InvalidValue { name: String, value: String },
    #[error("{name}: invalid timestamp {value:?}")]
    InvalidTimestamp { name: String, value: String },
    #[error("{name}: unexpected {extra:?} after the timestamp")]
    TrailingField { name: String, extra: String },
    #[error("unterminated label set")]
    UnterminatedLabelSet,
    #[error("invalid label name at {0:?}")]
    InvalidLabelName(String),
    #[error("expected '=' after label {0}")]
    ExpectedEquals(String),
    #[error("expected '\"' to open the value of label {0}")]
    ExpectedQuote(String),
    #[error("unterminated value of label {0}")]
    UnterminatedValue(String),
    #[error("expected ',' or '}}' after label {0}")]
    ExpectedCommaOrBrace(String),
}

pub fn parse(body: &str, format: Format) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let mut seen_eof = false;
    for (i, raw) in body.split('\n').enumerate() {
        let line_no = i + 1;
        let err = |reason: LineError| ParseError {
            line: line_no,
            reason,
        };
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if seen_eof {
            if line.is_empty() {
                continue;
            }
            return Err(err(LineError::DataAfterEof));
        }
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.trim_end().is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            if format == Format::OpenMetrics && comment.trim_end() == " EOF" {
                seen_eof = true;
                continue;
            }
            metadata(comment, format, &mut out).map_err(err)?;
            continue;
        }
        let sample = sample_line(trimmed, format).map_err(err)?;
        out.samples.push(sample);
    }
    if format == Format::OpenMetrics && !seen_eof {
        return Err(ParseError {
            line: body.lines().count(),
            reason: LineError::MissingEof,
        });
    }
    Ok(out)
}

/// `# TYPE name type`, `# HELP ...`, `# UNIT ...`; other comments are ignored.
fn metadata(comment: &str, format: Format, out: &mut Exposition) -> Result<(), LineError> {
    let mut words = comment.split_ascii_whitespace();
    if words.next() != Some("TYPE") {
        return Ok(());
    }
    let name = words.next().ok_or(LineError::TypeWithoutName)?;
    if !is_metric_name(name) {
        return Err(LineError::TypeInvalidName(name.to_owned()));
    }
    let word = words.next().ok_or(LineError::TypeWithoutKind)?;
    let kind = MetricKind::parse(word, format).ok_or_else(|| LineError::UnknownType {
        name: name.to_owned(),
        kind: word.to_owned(),
    })?;
    out.types.insert(name.to_owned(), kind);
    Ok(())
}

/// A label name that occurs twice. Pairwise for the usual handful of labels; sorted for long
/// lists, so that a target sending one line with thousands of labels cannot make the check
/// quadratic.
fn duplicate_label(labels: &[(String, String)]) -> Option<&str> {
    if labels.len() <= 16 {
        return labels.iter().enumerate().find_map(|(i, (n, _))| {
            labels[..i]
                .iter()
                .any(|(m, _)| m == n)
                .then_some(n.as_str())
        });
    }
    let mut names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

fn sample_line(line: &str, format: Format) -> Result<Sample, LineError> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(LineError::ExpectedMetricName(shorten(line)));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    // The text format allows blanks between the name and `{`.
    let brace = match format {
        Format::Text => rest.trim_start_matches([' ', '\t']),
        Format::OpenMetrics => rest,
    };
    if let Some(inner) = brace.strip_prefix('{') {
        rest = label_pairs(inner, format, &mut labels)?;
    }
    if let Some(label) = duplicate_label(&labels) {
        return Err(LineError::DuplicateLabel {
            name: name.to_owned(),
            label: label.to_owned(),
        });
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(LineError::NoSpaceBeforeValue(name.to_owned()));
    }
    // An OpenMetrics exemplar follows " # "; Prometheus does not store it with the sample.
    let rest = match (format, rest.find(" # ")) {
        (Format::OpenMetrics, Some(at)) => &rest[..at],
        _ => rest,
    };
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| LineError::NoValue(name.to_owned()))?;
    let value = parse_float(value_text).ok_or_else(|| LineError::InvalidValue {
        name: name.to_owned(),
        value: value_text.to_owned(),
    })?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(
            parse_timestamp(t, format).ok_or_else(|| LineError::InvalidTimestamp {
                name: name.to_owned(),
                value: t.to_owned(),
            })?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(LineError::TrailingField {
            name: name.to_owned(),
            extra: extra.to_owned(),
        });
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `name="value",...}` and returns what follows the `}`.
fn label_pairs<'a>(
    mut rest: &'a str,
    format: Format,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, LineError> {
    let skip_ws = |s: &'a str| match format {
        Format::Text => s.trim_start_matches([' ', '\t']),
        Format::OpenMetrics => s,
    };
    loop {
        rest = skip_ws(rest);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or(LineError::UnterminatedLabelSet)?;
        let label = &rest[..end];
        if !is_label_name(label) {
            return Err(LineError::InvalidLabelName(shorten(rest)));
        }
        rest = skip_ws(&rest[end..]);
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| LineError::ExpectedEquals(label.to_owned()))?;
        rest = skip_ws(rest);
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| LineError::ExpectedQuote(label.to_owned()))?;
        let (value, after) =
            label_value(rest).ok_or_else(|| LineError::UnterminatedValue(label.to_owned()))?;
        labels.push((label.to_owned(), value));
        rest = skip_ws(after);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(LineError::ExpectedCommaOrBrace(label.to_owned()));
        }
    }
}

/// Decodes an escaped label value up to its closing quote: `\\`, `\"` and `\n` are decoded;
/// any other escape is kept as written, as Prometheus keeps it.
fn label_value(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                'n' => value.push('\n'),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            },
            c => value.push(c),
        }
    }
    None
}

/// A float as Go's `strconv.ParseFloat` reads exposition values (`NaN`, `+Inf`, `-Inf`, ...).
fn parse_float(s: &str) -> Option<f64> {
    // Rust also reads "infinity" and "nan" in any case, as Go does; it refuses `_` and hex.
    s.parse::<f64>().ok()
}

fn parse_timestamp(s: &str, format: Format) -> Option<i64> {
    match format {
        Format::Text => s.parse::<i64>().ok(),
        Format::OpenMetrics => {
            let secs = parse_float(s)?;
            let ms = (secs * 1000.0).round();
            (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
        }
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_twice_is_refused_in_short_and_long_label_lists() {
        let short = "m{a=\"1\",b=\"2\",a=\"3\"} 1\n";
        let many: Vec<String> = (0..5000).map(|i| format!("l{i}=\"v\"")).collect();
        let long = format!("m{{{},l4321=\"again\"}} 1\n", many.join(","));
        for (body, twice) in [(short, "a"), (long.as_str(), "l4321")] {
            match sample_line(body.trim_end(), Format::Text) {
                Err(LineError::DuplicateLabel { name, label }) => {
                    assert_eq!((name.as_str(), label.as_str()), ("m", twice));
                }
                other => panic!("expected a duplicate label, got {other:?}"),
            }
        }
        let distinct = format!("m{{{}}} 1", many.join(","));
        assert_eq!(
            sample_line(&distinct, Format::Text)
                .map(|s| s.labels.len())
                .ok(),
            Some(5000)
        );
    }

    fn labels(s: &Sample) -> Vec<(&str, &str)> {
        s.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn text_format_with_escapes_timestamps_and_types() {
        let body = "# HELP http_requests_total The total.\\nSecond line.\n\
# TYPE http_requests_total counter\n\
http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
http_requests_total{ method = \"get\" , path=\"/a,b=c\\\"d\\\\e\\nf\\tg\", } 3\n\
\n\
# A comment\n\
  rpc:latency_seconds_bucket{le=\"+Inf\"} +Inf\n\
nan_value NaN\n\
neg -Inf\n\
sci 1.5e-3\n";
        let e = parse(body, Format::Text).unwrap();
        assert_eq!(e.samples.len(), 6);
        let s = &e.samples[0];
        assert_eq!(s.name, "http_requests_total");
        assert_eq!(labels(s), [("method", "post"), ("code", "200")]);
        assert_eq!(s.value, 1027.0);
        assert_eq!(s.timestamp_ms, Some(1_395_066_363_000));
        assert_eq!(
            labels(&e.samples[1]),
            [("method", "get"), ("path", "/a,b=c\"d\\e\nf\\tg")]
        );
        assert_eq!(e.samples[2].name, "rpc:latency_seconds_bucket");
        assert_eq!(e.samples[2].value, f64::INFINITY);
        assert!(e.samples[3].value.is_nan());
        assert_eq!(e.samples[4].value, f64::NEG_INFINITY);
        assert_eq!(e.samples[5].value, 0.0015);
        assert_eq!(e.kind_of("http_requests_total"), MetricKind::Counter);
        assert_eq!(e.kind_of("sci"), MetricKind::Unknown);
    }

    #[test]
    fn openmetrics_needs_eof_and_skips_exemplars_and_reads_second_timestamps() {
        let body = "# TYPE foo counter\n\
# UNIT foo seconds\n\
foo_total{a=\"1\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
foo_created{a=\"1\"} 1520430000.123\n\
# TYPE h histogram\n\
h_bucket{le=\"0.5\"} 3 # {id=\"x\"} 0.2 1520879607.7\n\
h_bucket{le=\"+Inf\"} 4\n\
h_count 4\n\
h_sum 1.5\n\
# EOF\n";
        let e = parse(body, Format::OpenMetrics).unwrap();
        let names: Vec<&str> = e.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "foo_total",
                "foo_created",
                "h_bucket",
                "h_bucket",
                "h_count",
                "h_sum"
            ]
        );
        assert_eq!(e.samples[0].timestamp_ms, Some(1_520_879_607_789));
        assert_eq!(e.samples[0].value, 17.0);
        assert_eq!(e.samples[2].value, 3.0);
        assert_eq!(e.samples[2].timestamp_ms, None);
        assert_eq!(e.kind_of("foo_total"), MetricKind::Counter);
        assert_eq!(e.kind_of("foo_created"), MetricKind::Counter);
        assert_eq!(e.kind_of("h_bucket"), MetricKind::Histogram);

        let missing = parse("# TYPE foo gauge\nfoo 1\n", Format::OpenMetrics).unwrap_err();
        assert_eq!(missing.reason, LineError::MissingEof, "{missing}");
        let after = parse("foo 1\n# EOF\nbar 2\n", Format::OpenMetrics).unwrap_err();
        assert_eq!(after.line, 3);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line_number() {
        for (body, line) in [
            ("ok 1\nbad{a=\"1\" 2\n", 2),
            ("ok 1\n0bad 1\n", 2),
            ("x{a=\"1\",a=\"2\"} 1\n", 1),
            ("x{a=\"unterminated} 1\n", 1),
            ("x{1a=\"v\"} 1\n", 1),
            ("x notanumber\n", 1),
            ("x 1 1.5\n", 1),
            ("x 1 2 3\n", 1),
            ("x{a=\"1\"}1\n", 1),
            ("# TYPE x countr\n", 1),
            ("x\n", 1),
        ] {
            let e = parse(body, Format::Text).unwrap_err();
            assert_eq!(e.line, line, "{body:?}: {e}");
        }
    }

    #[test]
    fn content_type_decides_the_format() {
        assert_eq!(
            Format::from_content_type(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type(Some("text/plain; version=0.0.4")),
            Format::Text
        );
        assert_eq!(Format::from_content_type(None), Format::Text);
    }
}
