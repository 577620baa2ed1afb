//! The entry's line (`json`, `logfmt`, `raw`) and its structured metadata.

use super::attributes::{RecordAttrs, find};
use super::{MappingOptions, hex, non_zero, non_zero_hex, push_hex};
use crate::config::LineFormat;
use crate::logfmt::{self, LogfmtValue};
use crate::otlp::{InstrumentationScope, KeyValue, LogRecord};
use crate::value::{
    self, SortedMap, as_string, get, kind, write_json_map, write_json_str, write_json_value,
};
use std::fmt::Write;

/// The configured structured metadata of a record, and what of it leaves the line.
pub(super) struct Metadata<'k> {
    pub(super) pairs: Vec<(String, String)>,
    moved_rec: Vec<&'k str>,
    moved_res: Vec<&'k str>,
    trace_moved: bool,
    span_moved: bool,
}

impl Metadata<'_> {
    /// No resource attribute moved to metadata: the line's `resources` depend on the labels only.
    pub(super) fn moved_res_is_empty(&self) -> bool {
        self.moved_res.is_empty()
    }
}

/// `structured_metadata` keys found on the record (trace and span ids, attributes, else
/// resource attributes), skipping keys that already left the line as labels or hints.
pub(super) fn structured_metadata<'k>(
    opts: &'k MappingOptions,
    res_attrs: &[KeyValue],
    rec: &RecordAttrs,
    record: &LogRecord,
    removed_everywhere: &dyn Fn(&str) -> bool,
) -> Metadata<'k> {
    let mut m = Metadata {
        pairs: Vec::new(),
        moved_rec: Vec::new(),
        moved_res: Vec::new(),
        trace_moved: false,
        span_moved: false,
    };
    for (key, name) in &opts.structured_metadata {
        if key == "trace_id"
            && let Some(hex) = non_zero_hex(record.trace_id)
        {
            m.pairs.push((name.clone(), hex));
            m.trace_moved = true;
            continue;
        }
        if key == "span_id"
            && let Some(hex) = non_zero_hex(record.span_id)
        {
            m.pairs.push((name.clone(), hex));
            m.span_moved = true;
            continue;
        }
        if removed_everywhere(key) {
            continue;
        }
        if let Some(kv) = find(rec.all(), key) {
            let v = as_string(kv.value.as_ref());
            if !v.is_empty() {
                m.pairs.push((name.clone(), v.into_owned()));
                m.moved_rec.push(key);
            }
        } else if let Some(kv) = get(res_attrs, key) {
            let v = as_string(kv.value.as_ref());
            if !v.is_empty() {
                m.pairs.push((name.clone(), v.into_owned()));
                m.moved_res.push(key);
            }
        }
    }
    m
}

/// The `resources` object of a JSON line, or `None` when no resource attribute is left in it.
/// The same for every record of a resource whose labels and metadata take the same keys out.
pub(super) fn json_resources(
    res_attrs: &[KeyValue],
    removed_everywhere: &dyn Fn(&str) -> bool,
) -> Result<Option<String>, value::UnsupportedValue> {
    let mut left = res_attrs
        .iter()
        .filter(|kv| !removed_everywhere(kv.key))
        .peekable();
    if left.peek().is_none() {
        return Ok(None);
    }
    let mut out = String::with_capacity(64);
    write_json_map(&mut out, left)?;
    Ok(Some(out))
}

/// The line in `format`, from what is left of the record after labels and metadata.
/// `resources_json` is the record's [`json_resources`] when the caller already has it.
#[allow(clippy::too_many_arguments)]
pub(super) fn render_line(
    format: LineFormat,
    record: &LogRecord,
    scope: Option<&InstrumentationScope>,
    rec: &RecordAttrs,
    res_attrs: &[KeyValue],
    metadata: &Metadata,
    removed_everywhere: &dyn Fn(&str) -> bool,
    resources_json: Option<Result<Option<&str>, value::UnsupportedValue>>,
) -> Result<String, value::UnsupportedValue> {
    let line_rec = rec
        .all()
        .filter(|kv| !removed_everywhere(kv.key) && !metadata.moved_rec.contains(&kv.key));
    let line_res = res_attrs
        .iter()
        .filter(|kv| !removed_everywhere(kv.key) && !metadata.moved_res.contains(&kv.key));
    let trace_id = Some(record.trace_id).filter(|id| !metadata.trace_moved && non_zero(id));
    let span_id = Some(record.span_id).filter(|id| !metadata.span_moved && non_zero(id));
    Ok(match format {
        LineFormat::Json => {
            let resources = match resources_json {
                Some(cached) => cached?.map(std::borrow::Cow::Borrowed),
                None => json_resources(res_attrs, &|key| {
                    removed_everywhere(key) || metadata.moved_res.contains(&key)
                })?
                .map(std::borrow::Cow::Owned),
            };
            json_line(
                record,
                scope,
                trace_id,
                span_id,
                SortedMap::new(line_rec),
                resources.as_deref(),
            )?
        }
        LineFormat::Logfmt => logfmt_line(
            record,
            scope,
            trace_id.map(hex),
            span_id.map(hex),
            line_rec,
            line_res,
        ),
        LineFormat::Raw => as_string(record.body.as_ref()).into_owned(),
    })
}

/// Alloy's JSON line: `{"body":…,"traceid":…,"spanid":…,"severity":…,"flags":…,
/// "attributes":{…},"resources":{…},"instrumentation_scope":{"name":…,"version":…}}`, empty
/// fields omitted.
fn json_line(
    record: &LogRecord,
    scope: Option<&InstrumentationScope>,
    trace_id: Option<&[u8]>,
    span_id: Option<&[u8]>,
    attrs: SortedMap,
    resources: Option<&str>,
) -> Result<String, value::UnsupportedValue> {
    let mut out = String::with_capacity(json_line_capacity(record, &attrs, resources));
    out.push('{');
    let mut first = true;
    let mut field = |out: &mut String, name: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
    };
    if kind(record.body.as_ref()).is_some() {
        field(&mut out, "body");
        write_json_value(&mut out, record.body.as_ref())?;
    }
    // Hex needs no escaping.
    if let Some(id) = trace_id {
        field(&mut out, "traceid");
        out.push('"');
        push_hex(&mut out, id);
        out.push('"');
    }
    if let Some(id) = span_id {
        field(&mut out, "spanid");
        out.push('"');
        push_hex(&mut out, id);
        out.push('"');
    }
    if !record.severity_text.is_empty() {
        field(&mut out, "severity");
        write_json_str(&mut out, record.severity_text);
    }
    if record.flags != 0 {
        field(&mut out, "flags");
        let _ = write!(out, "{}", record.flags);
    }
    if !attrs.is_empty() {
        field(&mut out, "attributes");
        attrs.write(&mut out)?;
    }
    if let Some(resources) = resources {
        field(&mut out, "resources");
        out.push_str(resources);
    }
    if let Some(scope) = scope.filter(|s| !s.name.is_empty()) {
        field(&mut out, "instrumentation_scope");
        out.push_str("{\"name\":");
        write_json_str(&mut out, scope.name);
        if !scope.version.is_empty() {
            out.push_str(",\"version\":");
            write_json_str(&mut out, scope.version);
        }
        out.push('}');
    }
    out.push('}');
    Ok(out)
}

/// Roughly the length of the JSON line (the strings plus quotes and punctuation), so that
/// the line is written without growing its buffer.
fn json_line_capacity(record: &LogRecord, attrs: &SortedMap, resources: Option<&str>) -> usize {
    160 + value::json_len_estimate(record.body.as_ref())
        + record.severity_text.len()
        + attrs.json_len_estimate()
        + resources.map_or(0, str::len)
}

/// Alloy's logfmt line (contrib `EncodeLogfmt`).
fn logfmt_line<'a>(
    record: &LogRecord,
    scope: Option<&InstrumentationScope>,
    trace_id: Option<String>,
    span_id: Option<String>,
    attrs: impl Iterator<Item = &'a KeyValue<'a>>,
    resources: impl Iterator<Item = &'a KeyValue<'a>>,
) -> String {
    let mut kvs = logfmt::body_keyvals(record.body.as_ref());
    if let Some(t) = trace_id {
        logfmt::replace_or_append(&mut kvs, "traceID", LogfmtValue::Str(t));
    }
    if let Some(s) = span_id {
        logfmt::replace_or_append(&mut kvs, "spanID", LogfmtValue::Str(s));
    }
    if !record.severity_text.is_empty() {
        logfmt::replace_or_append(
            &mut kvs,
            "severity",
            LogfmtValue::Str(record.severity_text.to_owned()),
        );
    }
    if record.flags != 0 {
        logfmt::replace_or_append(
            &mut kvs,
            "flags",
            LogfmtValue::Uint(u64::from(record.flags)),
        );
    }
    logfmt::push_attributes("attribute_", attrs, &mut kvs);
    logfmt::push_attributes("resource_", resources, &mut kvs);
    if let Some(scope) = scope.filter(|s| !s.name.is_empty()) {
        let mut push = |k: &str, v: &str| {
            kvs.push(logfmt::KeyVal {
                key: k.to_owned(),
                replaceable: true,
                value: LogfmtValue::Str(v.to_owned()),
            })
        };
        push("instrumentation_scope_name", scope.name);
        if !scope.version.is_empty() {
            push("instrumentation_scope_version", scope.version);
        }
    }
    logfmt::encode(&kvs)
}
