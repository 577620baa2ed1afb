//! Metric and label names, unit suffixes and value formatting (OpenTelemetry
//! specification, Prometheus and OpenMetrics Compatibility, "Metric Metadata").
//!
//! Mirrors `prometheus/otlptranslator` with underscore escaping: metric names are split into
//! tokens of `[a-zA-Z0-9:]` (so `_` runs collapse), unit tokens are appended unless already
//! present, counters end in `_total` and unit-`1` gauges in `_ratio`.

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

/// What a metric becomes in Prometheus; decides the `_total` / `_ratio` suffixes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// Monotonic cumulative (or accumulated delta) sum.
    Counter,
    /// Gauge (but not a non-monotonic sum: `_ratio` is for OTLP gauges only).
    Gauge,
    /// Anything else: non-monotonic sums, histograms, summaries.
    Other,
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// Main and per parts of a unit, mapped but not yet sanitised. Parts holding `{…}` annotations
/// are dropped: `{request}` → nothing, `{packet}/s` → `per_second`.
fn unit_suffixes(unit: &str) -> (String, String) {
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit, None),
    };
    let main = main.trim();
    let main_suffix = if main.is_empty() || main.contains(['{', '}']) {
        String::new()
    } else {
        unit_word(main).to_owned()
    };
    let per_suffix = match per.map(str::trim) {
        Some(p) if !p.is_empty() && !p.contains(['{', '}']) => {
            let word = per_unit_word(p);
            if word.is_empty() {
                String::new()
            } else {
                format!("per_{word}")
            }
        }
        _ => String::new(),
    };
    (main_suffix, per_suffix)
}

/// Replaces characters outside `[a-zA-Z0-9:]` with `_`, collapses `_` runs and drops one
/// leading `_` (otlptranslator `cleanUpUnit`).
fn clean_unit(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut prev_underscore = false;
    for c in unit.chars() {
        let c = if is_metric_char(c) { c } else { '_' };
        if c == '_' {
            if prev_underscore {
                continue;
            }
            prev_underscore = true;
        } else {
            prev_underscore = false;
        }
        out.push(c);
    }
    match out.strip_prefix('_') {
        Some(rest) => rest.to_owned(),
        None => out,
    }
}

/// The Prometheus metric name for an OTLP metric, or `None` when nothing valid remains (the
/// metric is then dropped).
pub fn metric_name(name: &str, unit: &str, kind: NameKind, add_suffixes: bool) -> Option<String> {
    let tokens: Vec<&str> = name
        .split(|c: char| !is_metric_char(c))
        .filter(|t| !t.is_empty())
        .collect();
    let mut owned_suffixes: Vec<String> = Vec::new();
    if add_suffixes {
        let (main, per) = unit_suffixes(unit);
        let mut main = clean_unit(&main);
        let mut per = clean_unit(&per);
        if tokens.contains(&main.as_str()) {
            main.clear();
        }
        if per == "per_" {
            per.clear();
        } else {
            if per.ends_with('_') {
                per.pop();
            }
            if tokens.contains(&per.as_str()) {
                per.clear();
            }
        }
        if !per.is_empty() && main.ends_with('_') {
            main.pop();
        }
        if !main.is_empty() {
            owned_suffixes.push(main);
        }
        if !per.is_empty() {
            owned_suffixes.push(per);
        }
    }
    let mut joined = tokens;
    joined.extend(owned_suffixes.iter().map(String::as_str));
    if add_suffixes {
        let marker = match kind {
            NameKind::Counter => Some("total"),
            NameKind::Gauge if unit == "1" => Some("ratio"),
            _ => None,
        };
        if let Some(marker) = marker {
            joined.retain(|t| *t != marker);
            joined.push(marker);
        }
    }
    let mut out = joined.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.is_empty() || out.chars().all(|c| c == '_') {
        return None;
    }
    Some(out)
}

/// The UNIT metadata: main and per parts joined, sanitised, without outer underscores.
pub fn metadata_unit(unit: &str) -> String {
    let (main, per) = unit_suffixes(unit);
    let (main, per) = (clean_unit(&main), clean_unit(&per));
    let joined = match (main.is_empty(), per.is_empty()) {
        (false, false) => format!("{main}_{per}"),
        (false, true) => main,
        _ => per,
    };
    joined.trim_matches('_').to_owned()
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// The Prometheus label name for an attribute key, or `None` when nothing valid remains.
///
/// Characters outside `[a-zA-Z0-9]` become `_` and runs collapse, except that a reserved name
/// (`__x__`, at least 4 bytes) keeps its double underscores around a sanitised middle. A
/// leading digit gets a `key_` prefix.
pub fn label_name(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let reserved = key.len() >= 4 && key.starts_with("__") && key.ends_with("__");
    let middle = if reserved {
        key.get(2..key.len() - 2).unwrap_or("")
    } else {
        key
    };
    let mut out = String::with_capacity(key.len() + 4);
    if reserved {
        out.push_str("__");
    }
    let mut prev_underscore = false;
    for c in middle.chars() {
        if is_label_char(c) {
            out.push(c);
            prev_underscore = false;
        } else if !prev_underscore {
            out.push('_');
            prev_underscore = true;
        }
    }
    if reserved {
        out.push_str("__");
    }
    if out.chars().all(|c| c == '_') {
        return None;
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    Some(out)
}

/// Go `strconv.FormatFloat(v, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
/// Used for `le` and `quantile` values.
pub fn format_plain(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's `Display` for f64 is shortest round-trip and positional, like Go's 'f', -1
        // (including "-0" for negative zero).
        format!("{v}")
    }
}

/// pdata `Value.AsString()` for a double: positional between 1e-6 and 1e21, otherwise Go's
/// exponent form (`1e-7`, `1.5e+21`), as JavaScript prints numbers.
fn format_attr_double(v: f64) -> String {
    if !v.is_finite() {
        return format_plain(v);
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if exp.starts_with('-') => format!("{mantissa}e{exp}"),
            Some((mantissa, exp)) => {
                let exp = if exp.len() < 2 {
                    format!("0{exp}")
                } else {
                    exp.to_owned()
                };
                format!("{mantissa}e+{exp}")
            }
            None => s,
        }
    } else {
        format!("{v}")
    }
}

fn any_value_to_json(value: &AnyValue) -> serde_json::Value {
    use base64::Engine;
    use serde_json::Value as J;
    match &value.value {
        // A string-table index only means something inside profiles.
        None | Some(any_value::Value::StringValueStrindex(_)) => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(format_plain(*d))),
        Some(any_value::Value::BytesValue(b)) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(any_value::Value::ArrayValue(a)) => {
            J::Array(a.values.iter().map(any_value_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            // serde_json's map is ordered by key, as Go's encoder orders map keys.
            let map = kv
                .values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map(any_value_to_json).unwrap_or(J::Null);
                    (kv.key.clone(), v)
                })
                .collect();
            J::Object(map)
        }
    }
}

/// pdata `Value.AsString()`: strings as they are, numbers in decimal, `true`/`false`, bytes in
/// base64, arrays and maps as JSON.
pub fn any_value_string(value: Option<&AnyValue>) -> String {
    use base64::Engine;
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        return String::new();
    };
    match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::StringValueStrindex(_) => String::new(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => format_attr_double(*d),
        any_value::Value::BytesValue(b) => base64::engine::general_purpose::STANDARD.encode(b),
        any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) => {
            let v = AnyValue {
                value: Some(value.clone()),
            };
            any_value_to_json(&v).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, unit: &str, kind: NameKind) -> String {
        metric_name(n, unit, kind, true).unwrap_or_else(|| "<dropped>".into())
    }

    #[test]
    fn spec_examples() {
        assert_eq!(
            name("http.server.duration", "s", NameKind::Other),
            "http_server_duration_seconds"
        );
        assert_eq!(
            name("system.network.io", "By", NameKind::Counter),
            "system_network_io_bytes_total"
        );
        assert_eq!(
            name("process.cpu.utilization", "1", NameKind::Gauge),
            "process_cpu_utilization_ratio"
        );
        assert_eq!(
            name("http.server.requests", "{request}", NameKind::Counter),
            "http_server_requests_total"
        );
    }

    #[test]
    fn odd_units() {
        assert_eq!(
            name("net.rx", "{packet}/s", NameKind::Gauge),
            "net_rx_per_second"
        );
        assert_eq!(
            name("net.rx", "By/s", NameKind::Gauge),
            "net_rx_bytes_per_second"
        );
        assert_eq!(
            name("dist", "m/mo", NameKind::Other),
            "dist_meters_per_month"
        );
        assert_eq!(name("temp", "Cel", NameKind::Gauge), "temp_celsius");
        assert_eq!(name("load", "%", NameKind::Gauge), "load_percent");
        assert_eq!(name("mem", "MiBy", NameKind::Gauge), "mem_mebibytes");
        // Unmapped units pass through, sanitised.
        assert_eq!(name("x", "Mbit", NameKind::Gauge), "x_Mbit");
        assert_eq!(name("x", "kB.s", NameKind::Gauge), "x_kB_s");
        assert_eq!(
            name("x", "m/parsec", NameKind::Gauge),
            "x_meters_per_parsec"
        );
        // Unit already a token of the name: not repeated.
        assert_eq!(
            name("request.duration.seconds", "s", NameKind::Other),
            "request_duration_seconds"
        );
        // Ratio only for unit-1 gauges, never counters; an existing `ratio` token moves last.
        assert_eq!(
            name("cpu.ratio.used", "1", NameKind::Gauge),
            "cpu_used_ratio"
        );
        assert_eq!(name("items", "1", NameKind::Counter), "items_total");
        assert_eq!(name("items", "1", NameKind::Other), "items");
        // `total` tokens are moved to the end for counters.
        assert_eq!(
            name("total.requests", "", NameKind::Counter),
            "requests_total"
        );
        // Blank or whitespace unit adds nothing; a trailing slash adds nothing.
        assert_eq!(name("x", " ", NameKind::Gauge), "x");
        assert_eq!(name("x", "s/", NameKind::Gauge), "x_seconds");
        assert_eq!(name("x", "/s", NameKind::Gauge), "x_per_second");
    }

    #[test]
    fn odd_names() {
        assert_eq!(name("a__b..c", "", NameKind::Gauge), "a_b_c");
        assert_eq!(name("2xx.count", "", NameKind::Gauge), "_2xx_count");
        assert_eq!(name("ns:metric", "", NameKind::Gauge), "ns:metric");
        assert_eq!(name("größe.temp", "", NameKind::Gauge), "gr_e_temp");
        assert_eq!(name("日本語", "", NameKind::Gauge), "<dropped>");
        assert_eq!(name("日本語", "s", NameKind::Gauge), "seconds");
        assert_eq!(name("__", "", NameKind::Gauge), "<dropped>");
    }

    #[test]
    fn suffixes_off() {
        assert_eq!(
            metric_name("http.server.duration", "s", NameKind::Counter, false).unwrap(),
            "http_server_duration"
        );
        assert_eq!(
            metric_name("cpu", "1", NameKind::Gauge, false).unwrap(),
            "cpu"
        );
    }

    #[test]
    fn metadata_units() {
        assert_eq!(metadata_unit("s"), "seconds");
        assert_eq!(metadata_unit("By/s"), "bytes_per_second");
        assert_eq!(metadata_unit("{packet}/s"), "per_second");
        assert_eq!(metadata_unit("1"), "");
        assert_eq!(metadata_unit("{request}"), "");
    }

    #[test]
    fn label_names() {
        let l = |k: &str| label_name(k).unwrap_or_else(|| "<invalid>".into());
        assert_eq!(l("http.method"), "http_method");
        assert_eq!(l("2cents"), "key_2cents");
        assert_eq!(l("a..b"), "a_b");
        assert_eq!(l("a__b"), "a_b");
        assert_eq!(l("_private"), "_private");
        assert_eq!(l("__name__"), "__name__");
        assert_eq!(l("__a.b__"), "__a_b__");
        assert_eq!(l("__x"), "_x");
        assert_eq!(l("name (of the host)"), "name_of_the_host_");
        assert_eq!(l("ключ"), "<invalid>");
        assert_eq!(l("ключ1"), "_1");
        assert_eq!(l(""), "<invalid>");
        assert_eq!(l("___"), "<invalid>");
    }

    #[test]
    fn plain_floats() {
        assert_eq!(format_plain(0.005), "0.005");
        assert_eq!(format_plain(1_000_000.0), "1000000");
        assert_eq!(format_plain(1e21), "1000000000000000000000");
        assert_eq!(format_plain(-0.0), "-0");
        assert_eq!(format_plain(0.0), "0");
        assert_eq!(format_plain(2.5), "2.5");
        assert_eq!(format_plain(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_plain(1e-7), "0.0000001");
        assert_eq!(format_plain(f64::INFINITY), "+Inf");
    }

    #[test]
    fn attribute_strings() {
        use any_value::Value;
        let s = |v: Value| any_value_string(Some(&AnyValue { value: Some(v) }));
        assert_eq!(s(Value::IntValue(-3)), "-3");
        assert_eq!(s(Value::BoolValue(true)), "true");
        assert_eq!(s(Value::DoubleValue(2.5)), "2.5");
        assert_eq!(s(Value::DoubleValue(1e21)), "1e+21");
        assert_eq!(s(Value::DoubleValue(1.5e-7)), "1.5e-7");
        assert_eq!(s(Value::DoubleValue(100.0)), "100");
        assert_eq!(s(Value::BytesValue(vec![1, 2, 3])), "AQID");
        let arr = Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Value::StringValue("a".into())),
                },
                AnyValue {
                    value: Some(Value::IntValue(1)),
                },
            ],
        });
        assert_eq!(s(arr), r#"["a",1]"#);
        assert_eq!(any_value_string(None), "");
    }
}
