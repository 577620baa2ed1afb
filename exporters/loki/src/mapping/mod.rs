//! OTLP log records → Loki streams, as Alloy's `otelcol.exporter.loki` maps them (contrib
//! `pkg/translator/loki`), plus Sluice's additions: a `service_name` label, configured label
//! promotion, structured metadata, and Loki's limits applied before sending so that one bad
//! record cannot get a whole stream refused.
//!
//! Per record:
//! 1. Labels: `exporter="OTLP"`, `job`, `instance`, `service_name`, `level` (through the
//!    attribute hint, as Alloy does), then the `loki.resource.labels` / `loki.attribute.labels`
//!    hints and the configured lists, then the `loki.tenant` attribute. Names are normalized.
//! 2. Attributes that became labels, and the hints, leave the line. Labels dropped by a limit
//!    keep their attribute in the line, so no data is lost.
//! 3. The line is rendered as `json`, `logfmt` or `raw` (`loki.format` hint, else the config).

//!
//! Modules: `attributes` (lookups and hints), `stream_labels` (candidates and Loki's label
//! limits), `line` (structured metadata and the line formats).

mod attributes;
mod line;
mod stream_labels;

use attributes::{RecordAttrs, hint_names, tenant_from_hint};
use line::{json_resources, render_line, structured_metadata};
use stream_labels::{add_external_labels, candidate_labels, fit_labels};

use crate::config::{Config, DefaultLabels, LineFormat, LineTooLong};
use crate::labels::{label_string, normalize_label, truncate_at_char};
use crate::otlp::{
    AnyValue, InstrumentationScope, KeyValue, LogRecord, LogsRequest, any_value::Value,
};
use crate::value::{UnsupportedValue, as_string, get, kind};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

pub const HINT_ATTRIBUTES: &str = "loki.attribute.labels";
pub const HINT_RESOURCES: &str = "loki.resource.labels";
pub const HINT_TENANT: &str = "loki.tenant";
pub const HINT_FORMAT: &str = "loki.format";
const HINTS: [&str; 4] = [HINT_ATTRIBUTES, HINT_RESOURCES, HINT_TENANT, HINT_FORMAT];

const LEVEL: &str = "level";
/// Loki does not count `service_name` towards `max_label_names_per_series`.
const SERVICE_NAME: &str = "service_name";

/// Reasons a record is dropped while mapping (`sluice_exporter_dropped_items_total`).
pub const DROP_INVALID_FORMAT: &str = "invalid_format";
pub const DROP_UNSUPPORTED_VALUE: &str = "unsupported_value";
pub const DROP_LINE_TOO_LONG: &str = "line_too_long";
/// Reasons a record was changed to fit Loki's limits (`sluice_exporter_loki_adjusted_total`).
pub const ADJ_LINE_TRUNCATED: &str = "line_truncated";
pub const ADJ_MAX_LABEL_NAMES: &str = "max_label_names";
pub const ADJ_LABEL_NAME_TOO_LONG: &str = "label_name_too_long";
pub const ADJ_LABEL_VALUE_TRUNCATED: &str = "label_value_truncated";
pub const ADJ_INVALID_LABEL_NAME: &str = "invalid_label_name";
pub const ADJ_RESERVED_LABEL_NAME: &str = "reserved_label_name";
pub const ADJ_DUPLICATE_LABEL_NAME: &str = "duplicate_label_name";

/// The mapping part of [`Config`].
#[derive(Debug, Clone)]
pub struct MappingOptions {
    pub default_labels: DefaultLabels,
    pub resource_labels: Vec<String>,
    pub attribute_labels: Vec<String>,
    /// Added to streams that lack them, after the limits (set by the operator, not the data).
    pub external_labels: Vec<(String, String)>,
    pub line_format: LineFormat,
    /// `(attribute key, metadata name)`.
    pub structured_metadata: Vec<(String, String)>,
    pub max_label_names: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// 0: unlimited.
    pub max_line_size: usize,
    pub line_too_long: LineTooLong,
}

impl MappingOptions {
    pub fn from_config(c: &Config) -> MappingOptions {
        MappingOptions {
            default_labels: c.default_labels_enabled,
            resource_labels: c
                .resource_labels
                .iter()
                .map(|s| s.trim().to_owned())
                .collect(),
            attribute_labels: c
                .attribute_labels
                .iter()
                .map(|s| s.trim().to_owned())
                .collect(),
            external_labels: c
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            line_format: c.line_format,
            structured_metadata: c
                .structured_metadata
                .iter()
                .map(|s| (s.trim().to_owned(), normalize_label(s.trim())))
                .collect(),
            max_label_names: c.max_label_names,
            max_label_name_length: c.max_label_name_length,
            max_label_value_length: c.max_label_value_length,
            max_line_size: c.max_line_size.as_usize(),
            line_too_long: c.line_too_long,
        }
    }
}

impl Default for MappingOptions {
    fn default() -> Self {
        MappingOptions::from_config(&Config::with_url("http://localhost:3100/loki/api/v1/push"))
    }
}

/// One Loki entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub timestamp_ns: u64,
    pub line: String,
    pub structured_metadata: Vec<(String, String)>,
}

/// One Loki stream: labels sorted by name, their label-set string, entries in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub labels: Vec<(String, String)>,
    pub label_string: String,
    pub entries: Vec<Entry>,
}

/// The streams of one tenant. `tenant` is `None` when no record named one (`loki.tenant`):
/// the exporter's default tenant applies.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantStreams {
    pub tenant: Option<String>,
    pub streams: Vec<Stream>,
}

impl TenantStreams {
    pub fn entry_count(&self) -> u64 {
        self.streams.iter().map(|s| s.entries.len() as u64).sum()
    }
}

/// What mapping did besides producing entries, for the exporter's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappingReport {
    pub mapped: u64,
    /// Records dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Labels or lines changed to fit Loki's limits, by reason.
    pub adjusted: BTreeMap<&'static str, u64>,
}

impl MappingReport {
    fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }
    fn adjust(&mut self, reason: &'static str) {
        *self.adjusted.entry(reason).or_default() += 1;
    }
}

/// Accumulates records into per-tenant, per-stream groups.
pub struct Mapper<'o> {
    opts: &'o MappingOptions,
    now_ns: u64,
    groups: BTreeMap<Option<String>, TenantGroup>,
    /// The labels and tenant of the previous record and the index of its stream: records of
    /// one resource that share cached labels go to it without looking their labels up.
    last: Option<(Rc<StreamLabels>, Option<String>, usize)>,
    report: MappingReport,
}

/// One tenant's streams in arrival order, found by their label-set string.
#[derive(Default)]
struct TenantGroup {
    streams: Vec<Stream>,
    by_labels: HashMap<String, usize, foldhash::fast::RandomState>,
}

impl<'o> Mapper<'o> {
    /// `now_ns` is the timestamp of records with neither time nor observed time.
    pub fn new(opts: &'o MappingOptions, now_ns: u64) -> Self {
        Mapper {
            opts,
            now_ns,
            groups: BTreeMap::new(),
            last: None,
            report: MappingReport::default(),
        }
    }

    pub fn add_request(&mut self, req: &LogsRequest) {
        for rl in &req.resource_logs {
            let res_attrs = rl
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            // The records of one resource mostly share their stream labels (see `LabelCache`).
            let mut cache = LabelCache::default();
            for sl in &rl.scope_logs {
                for record in &sl.log_records {
                    self.add_record(res_attrs, sl.scope.as_ref(), record, &mut cache);
                }
            }
        }
    }

    fn add_record(
        &mut self,
        res_attrs: &[KeyValue],
        scope: Option<&InstrumentationScope>,
        record: &LogRecord,
        cache: &mut LabelCache,
    ) {
        match map_record(
            self.opts,
            res_attrs,
            scope,
            record,
            self.now_ns,
            &mut self.report,
            cache,
        ) {
            Ok(mapped) => {
                self.report.mapped += 1;
                if let Some((labels, tenant, index)) = &self.last
                    && Rc::ptr_eq(labels, &mapped.labels)
                    && *tenant == mapped.tenant
                    && let Some(stream) = self
                        .groups
                        .get_mut(tenant)
                        .and_then(|g| g.streams.get_mut(*index))
                {
                    stream.entries.push(mapped.entry);
                    return;
                }
                let group = self.groups.entry(mapped.tenant.clone()).or_default();
                let labels = &mapped.labels;
                let index = match group.by_labels.get(&labels.label_string) {
                    Some(&index) => index,
                    None => {
                        let index = group.streams.len();
                        group.streams.push(Stream {
                            labels: labels.labels.clone(),
                            label_string: labels.label_string.clone(),
                            entries: Vec::new(),
                        });
                        group.by_labels.insert(labels.label_string.clone(), index);
                        index
                    }
                };
                if let Some(stream) = group.streams.get_mut(index) {
                    stream.entries.push(mapped.entry);
                }
                self.last = Some((mapped.labels, mapped.tenant, index));
            }
            Err(reason) => self.report.drop(reason),
        }
    }

    /// Streams per tenant (tenants and streams sorted; entries of a stream in time order,
    /// ties kept in arrival order).
    pub fn finish(self) -> (Vec<TenantStreams>, MappingReport) {
        let tenants = self
            .groups
            .into_iter()
            .map(|(tenant, group)| {
                let mut streams = group.streams;
                // Label-set strings are unique within a tenant.
                streams.sort_unstable_by(|a, b| a.label_string.cmp(&b.label_string));
                for s in &mut streams {
                    s.entries.sort_by_key(|e| e.timestamp_ns);
                }
                TenantStreams { tenant, streams }
            })
            .collect();
        (tenants, self.report)
    }
}

/// Maps a whole request (tests and benchmarks): encoded and decoded again as the exporter
/// decodes an item's payload.
pub fn map_request(
    opts: &MappingOptions,
    req: &ExportLogsServiceRequest,
    now_ns: u64,
) -> (Vec<TenantStreams>, MappingReport) {
    let mut m = Mapper::new(opts, now_ns);
    // A request built in code always encodes to a valid payload.
    let _ = crate::otlp::with_request(&req.encode_to_vec(), |req| m.add_request(req));
    m.finish()
}

struct MappedRecord {
    tenant: Option<String>,
    labels: Rc<StreamLabels>,
    entry: Entry,
}

/// A record's stream labels and what they take out of its line.
struct StreamLabels {
    /// Sorted by name, external labels included.
    labels: Vec<(String, String)>,
    label_string: String,
    /// Attribute keys that became labels (or were empty) and so leave the line.
    kept_sources: Vec<String>,
    /// The limit adjustments computing them made, counted again for every record that uses them.
    adjusted: Vec<&'static str>,
    /// The JSON line's `resources` object for records that share these labels and move no
    /// resource attribute to structured metadata (rendered once, on first use).
    resources_json: OnceCell<Result<Option<String>, UnsupportedValue>>,
}

/// Stream labels already computed for the records of one resource.
///
/// A record's labels depend on its own attributes only through the hint attributes, the
/// configured `attribute_labels` and `level`. A record with none of those (the usual case:
/// the labels come from the resource and the severity) gets the labels of the resource's
/// earlier records of the same severity, instead of building and normalizing them again —
/// that was a fifth of the Loki exporter's CPU.
#[derive(Default)]
struct LabelCache {
    /// Keyed by the severity number when `level` is a label, else by `None`.
    by_severity: Vec<(Option<i32>, Rc<StreamLabels>)>,
}

impl LabelCache {
    /// The key a record's labels are cached under, or `None` when they depend on its own
    /// attributes.
    fn key(opts: &MappingOptions, record: &LogRecord, level_active: bool) -> Option<Option<i32>> {
        if !opts.attribute_labels.is_empty()
            || record
                .attributes
                .iter()
                .any(|kv| kv.key == LEVEL || HINTS.contains(&kv.key))
        {
            return None;
        }
        Some(level_active.then_some(record.severity_number))
    }

    fn get(&self, key: Option<i32>) -> Option<&Rc<StreamLabels>> {
        self.by_severity
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, labels)| labels)
    }
}

/// Upper-case severity names for `level` (contrib `severityNumberToLevel`).
pub fn severity_level(n: i32) -> &'static str {
    const NAMES: [&str; 25] = [
        "UNSPECIFIED",
        "TRACE",
        "TRACE2",
        "TRACE3",
        "TRACE4",
        "DEBUG",
        "DEBUG2",
        "DEBUG3",
        "DEBUG4",
        "INFO",
        "INFO2",
        "INFO3",
        "INFO4",
        "WARN",
        "WARN2",
        "WARN3",
        "WARN4",
        "ERROR",
        "ERROR2",
        "ERROR3",
        "ERROR4",
        "FATAL",
        "FATAL2",
        "FATAL3",
        "FATAL4",
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("")
}

/// Whether a trace or span id is set: not empty and not all zero.
fn non_zero(id: &[u8]) -> bool {
    id.iter().any(|b| *b != 0)
}

/// Appends the lower-case hex of a trace or span id.
fn push_hex(out: &mut String, id: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(id.len() * 2);
    for b in id {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

fn hex(id: &[u8]) -> String {
    let mut out = String::new();
    push_hex(&mut out, id);
    out
}

/// Lower-case hex of a trace or span id, `None` when it is empty or all zero.
fn non_zero_hex(id: &[u8]) -> Option<String> {
    non_zero(id).then(|| hex(id))
}

fn map_record(
    opts: &MappingOptions,
    res_attrs: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    record: &LogRecord,
    now_ns: u64,
    report: &mut MappingReport,
    cache: &mut LabelCache,
) -> Result<MappedRecord, &'static str> {
    let (rec, level_active) = record_attributes(opts, record);
    let format = line_format(opts, res_attrs, record)?;

    let cache_key = LabelCache::key(opts, record, level_active);
    let labels = match cache_key.and_then(|key| cache.get(key)) {
        Some(cached) => {
            for reason in &cached.adjusted {
                report.adjust(reason);
            }
            cached.clone()
        }
        None => {
            let computed = Rc::new(stream_labels(
                opts,
                res_attrs,
                &rec,
                &attribute_hint_names(record, level_active),
                level_active,
                report,
            ));
            if let Some(key) = cache_key {
                cache.by_severity.push((key, computed.clone()));
            }
            computed
        }
    };
    let kept_sources = &labels.kept_sources;

    // 3. Structured metadata, 4. the line, without what became labels or metadata.
    // Keys compared as bytes: attribute keys are payload slices, read as text only when written.
    // Every hint starts with `loki.`: most keys are told apart by their first bytes.
    let removed_everywhere = |key: &str| {
        (key.starts_with("loki.") && HINTS.contains(&key)) || kept_sources.iter().any(|s| s == key)
    };
    let metadata = structured_metadata(opts, res_attrs, &rec, record, &removed_everywhere);
    // Shared only through the cache: uncached labels are used once.
    let resources_json = (format == LineFormat::Json
        && metadata.moved_res_is_empty()
        && Rc::strong_count(&labels) > 1)
        .then(|| {
            labels
                .resources_json
                .get_or_init(|| json_resources(res_attrs, &removed_everywhere))
                .as_ref()
                .map(|r| r.as_deref())
                .map_err(|e| *e)
        });
    let mut line = render_line(
        format,
        record,
        scope,
        &rec,
        res_attrs,
        &metadata,
        &removed_everywhere,
        resources_json,
    )
    .map_err(|_| DROP_UNSUPPORTED_VALUE)?;
    fit_line(opts, &mut line, report)?;

    let timestamp_ns = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else if record.observed_time_unix_nano != 0 {
        record.observed_time_unix_nano
    } else {
        now_ns
    };
    Ok(MappedRecord {
        tenant: tenant_from_hint(res_attrs, &record.attributes),
        labels,
        entry: Entry {
            timestamp_ns,
            line,
            structured_metadata: metadata.pairs,
        },
    })
}

/// Steps 1 and 2 of the mapping: candidate labels in Alloy's merge order, normalized and
/// fitted to Loki's limits.
fn stream_labels(
    opts: &MappingOptions,
    res_attrs: &[KeyValue],
    rec: &RecordAttrs,
    attr_hint_names: &[String],
    level_active: bool,
    report: &mut MappingReport,
) -> StreamLabels {
    let cands = candidate_labels(opts, res_attrs, rec, attr_hint_names, level_active);
    let mut made = MappingReport::default();
    let (mut labels, kept_sources) = fit_labels(opts, cands, &mut made);
    add_external_labels(&mut labels, &opts.external_labels);
    let mut adjusted = Vec::new();
    for (reason, n) in made.adjusted {
        for _ in 0..n {
            report.adjust(reason);
            adjusted.push(reason);
        }
    }
    StreamLabels {
        label_string: label_string(&labels),
        labels,
        kept_sources,
        adjusted,
        resources_json: OnceCell::new(),
    }
}

/// The attribute-label hint names of a record, plus the `level` Alloy adds to the hint when
/// `level` is active (only needed when its labels are not cached).
fn attribute_hint_names(record: &LogRecord, level_active: bool) -> Vec<String> {
    let attr_hint = get(&record.attributes, HINT_ATTRIBUTES).map(|kv| kv.value.as_ref());
    let mut attr_hint_names = attr_hint.map(hint_names).unwrap_or_default();
    let hint_extendable = match attr_hint {
        None => true,
        Some(v) => matches!(
            kind(v),
            Some(Value::StringValue(_)) | Some(Value::ArrayValue(_))
        ),
    };
    if level_active && hint_extendable {
        attr_hint_names.push(LEVEL.to_owned());
    }
    attr_hint_names
}

/// The record's attributes with the `level` Alloy adds (when the severity is set and the
/// default label is on), and whether `level` is active.
fn record_attributes<'r>(
    opts: &MappingOptions,
    record: &'r LogRecord<'r>,
) -> (RecordAttrs<'r>, bool) {
    // Alloy adds `level` as an attribute plus an attribute-label hint for it.
    let level_active = opts.default_labels.level && record.severity_number != 0;
    let mut synth_level = None;
    if level_active && get(&record.attributes, LEVEL).is_none() {
        synth_level = Some(KeyValue {
            key: LEVEL,
            value: Some(AnyValue {
                value: Some(Value::StringValue(severity_level(record.severity_number))),
            }),
        });
    }
    let rec = RecordAttrs {
        attrs: &record.attributes,
        synth_level,
    };
    (rec, level_active)
}

/// The `loki.format` hint (resource first), else the configured format.
fn line_format(
    opts: &MappingOptions,
    res_attrs: &[KeyValue],
    record: &LogRecord,
) -> Result<LineFormat, &'static str> {
    match get(res_attrs, HINT_FORMAT).or_else(|| get(&record.attributes, HINT_FORMAT)) {
        Some(kv) => LineFormat::from_hint(&as_string(kv.value.as_ref())).ok_or(DROP_INVALID_FORMAT),
        None => Ok(opts.line_format),
    }
}

/// `max_line_size`: a longer line is dropped or truncated, as configured.
fn fit_line(
    opts: &MappingOptions,
    line: &mut String,
    report: &mut MappingReport,
) -> Result<(), &'static str> {
    if opts.max_line_size > 0 && line.len() > opts.max_line_size {
        match opts.line_too_long {
            LineTooLong::Drop => return Err(DROP_LINE_TOO_LONG),
            LineTooLong::Truncate => {
                truncate_at_char(line, opts.max_line_size);
                report.adjust(ADJ_LINE_TRUNCATED);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::non_zero_hex;

    #[test]
    fn ids_in_lower_case_hex_unless_empty_or_zero() {
        assert_eq!(
            non_zero_hex(&[0x00, 0x01, 0xab, 0xff, 0x9c]).as_deref(),
            Some("0001abff9c")
        );
        assert_eq!(non_zero_hex(&[0; 16]), None);
        assert_eq!(non_zero_hex(&[]), None);
    }
}
