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

use crate::config::{Config, DefaultLabels, LineFormat, LineTooLong};
use crate::labels::{is_valid_name, label_string, normalize_label, truncate_at_char};
use crate::logfmt::{self, LogfmtValue};
use crate::value::{self, as_string, get, kind, write_json_map, write_json_str, write_json_value};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use std::collections::BTreeMap;
use std::fmt::Write;

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
    groups: BTreeMap<Option<String>, BTreeMap<String, Stream>>,
    report: MappingReport,
}

impl<'o> Mapper<'o> {
    /// `now_ns` is the timestamp of records with neither time nor observed time.
    pub fn new(opts: &'o MappingOptions, now_ns: u64) -> Self {
        Mapper {
            opts,
            now_ns,
            groups: BTreeMap::new(),
            report: MappingReport::default(),
        }
    }

    pub fn add_request(&mut self, req: &ExportLogsServiceRequest) {
        for rl in &req.resource_logs {
            let res_attrs = rl
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            for sl in &rl.scope_logs {
                for record in &sl.log_records {
                    self.add_record(res_attrs, sl.scope.as_ref(), record);
                }
            }
        }
    }

    fn add_record(
        &mut self,
        res_attrs: &[KeyValue],
        scope: Option<&InstrumentationScope>,
        record: &LogRecord,
    ) {
        match map_record(
            self.opts,
            res_attrs,
            scope,
            record,
            self.now_ns,
            &mut self.report,
        ) {
            Ok(mapped) => {
                self.report.mapped += 1;
                let streams = self.groups.entry(mapped.tenant).or_default();
                let label_string = label_string(&mapped.labels);
                match streams.get_mut(&label_string) {
                    Some(stream) => stream.entries.push(mapped.entry),
                    None => {
                        streams.insert(
                            label_string.clone(),
                            Stream {
                                labels: mapped.labels,
                                label_string,
                                entries: vec![mapped.entry],
                            },
                        );
                    }
                }
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
            .map(|(tenant, streams)| TenantStreams {
                tenant,
                streams: streams
                    .into_values()
                    .map(|mut s| {
                        s.entries.sort_by_key(|e| e.timestamp_ns);
                        s
                    })
                    .collect(),
            })
            .collect();
        (tenants, self.report)
    }
}

/// Maps a whole request (tests and benchmarks).
pub fn map_request(
    opts: &MappingOptions,
    req: &ExportLogsServiceRequest,
    now_ns: u64,
) -> (Vec<TenantStreams>, MappingReport) {
    let mut m = Mapper::new(opts, now_ns);
    m.add_request(req);
    m.finish()
}

struct MappedRecord {
    tenant: Option<String>,
    labels: Vec<(String, String)>,
    entry: Entry,
}

/// Record attributes as Alloy sees them after it adds the `level` attribute.
struct RecordAttrs<'a> {
    attrs: &'a [KeyValue],
    synth_level: Option<KeyValue>,
}

impl RecordAttrs<'_> {
    fn all(&self) -> impl Iterator<Item = &KeyValue> + Clone {
        self.attrs.iter().chain(self.synth_level.iter())
    }
}

fn find<'a>(attrs: impl Iterator<Item = &'a KeyValue>, key: &str) -> Option<&'a KeyValue> {
    attrs.into_iter().find(|kv| kv.key == key)
}

/// `convertAttributesToLabels` lookup: the key as is, else a dotted path into map values.
fn lookup<'a>(
    attrs: impl Iterator<Item = &'a KeyValue> + Clone,
    path: &str,
) -> Option<&'a KeyValue> {
    if let Some(kv) = find(attrs.clone(), path) {
        return Some(kv);
    }
    lookup_nested(attrs, path)
}

fn lookup_nested<'a>(
    attrs: impl Iterator<Item = &'a KeyValue>,
    path: &str,
) -> Option<&'a KeyValue> {
    let (left, right) = path.split_once('.').unwrap_or((path, ""));
    let kv = find(attrs, left)?;
    if right.is_empty() {
        return Some(kv);
    }
    match kind(kv.value.as_ref()) {
        Some(Value::KvlistValue(list)) => lookup_nested(list.values.iter(), right),
        _ => None,
    }
}

/// `parseAttributeNames`: a comma-separated string, an array, or any other value as text.
fn hint_names(v: Option<&AnyValue>) -> Vec<String> {
    match kind(v) {
        Some(Value::StringValue(s)) => s.split(',').map(|n| n.trim().to_owned()).collect(),
        Some(Value::ArrayValue(arr)) => arr
            .values
            .iter()
            .map(|item| {
                let text = match kind(Some(item)) {
                    Some(Value::DoubleValue(f)) => value::go_float(*f),
                    _ => as_string(Some(item)).into_owned(),
                };
                text.trim().to_owned()
            })
            .collect(),
        _ => vec![as_string(v).trim().to_owned()],
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

/// A label before normalization. `source` is the attribute key Alloy removes from the line
/// when the label is kept (`None` for Sluice's own `service_name`).
struct Candidate {
    source: Option<String>,
    value: String,
    /// Position among the default labels, which a label limit keeps first.
    default_rank: Option<u8>,
}

#[derive(Default)]
struct Candidates(Vec<Candidate>);

impl Candidates {
    /// `model.LabelSet.Merge`: a later value for the same key replaces the earlier one.
    fn merge(&mut self, key: &str, value: String, default_rank: Option<u8>) {
        self.0.retain(|c| c.source.as_deref() != Some(key));
        self.0.push(Candidate {
            source: Some(key.to_owned()),
            value,
            default_rank,
        });
    }
}

fn non_zero_hex(id: &[u8]) -> Option<String> {
    (!id.is_empty() && id.iter().any(|b| *b != 0)).then(|| hex::encode(id))
}

fn map_record(
    opts: &MappingOptions,
    res_attrs: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    record: &LogRecord,
    now_ns: u64,
    report: &mut MappingReport,
) -> Result<MappedRecord, &'static str> {
    let defaults = opts.default_labels;
    // Alloy adds `level` as an attribute plus an attribute-label hint for it.
    let level_active = defaults.level && record.severity_number != 0;
    let attr_hint = get(&record.attributes, HINT_ATTRIBUTES).map(|kv| kv.value.as_ref());
    let mut attr_hint_names = attr_hint.map(hint_names).unwrap_or_default();
    let mut synth_level = None;
    if level_active {
        let hint_extendable = match attr_hint {
            None => true,
            Some(v) => matches!(
                kind(v),
                Some(Value::StringValue(_)) | Some(Value::ArrayValue(_))
            ),
        };
        if hint_extendable {
            attr_hint_names.push(LEVEL.to_owned());
        }
        if get(&record.attributes, LEVEL).is_none() {
            synth_level = Some(KeyValue {
                key: LEVEL.to_owned(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(
                        severity_level(record.severity_number).to_owned(),
                    )),
                }),
                ..Default::default()
            });
        }
    }
    let rec = RecordAttrs {
        attrs: &record.attributes,
        synth_level,
    };

    let format = match get(res_attrs, HINT_FORMAT).or_else(|| get(&record.attributes, HINT_FORMAT))
    {
        Some(kv) => {
            LineFormat::from_hint(&as_string(kv.value.as_ref())).ok_or(DROP_INVALID_FORMAT)?
        }
        None => opts.line_format,
    };

    // 1. Candidate labels in Alloy's merge order.
    let mut cands = Candidates::default();
    if defaults.exporter {
        cands.merge("exporter", "OTLP".to_owned(), Some(0));
    }
    let service_name = get(res_attrs, "service.name").map(|kv| as_string(kv.value.as_ref()));
    if defaults.job
        && let Some(name) = &service_name
    {
        let job = match get(res_attrs, "service.namespace") {
            Some(ns) => format!("{}/{name}", as_string(ns.value.as_ref())),
            None => name.clone().into_owned(),
        };
        cands.merge("job", job, Some(1));
    }
    if defaults.instance
        && let Some(inst) = get(res_attrs, "service.instance.id")
    {
        cands.merge(
            "instance",
            as_string(inst.value.as_ref()).into_owned(),
            Some(2),
        );
    }
    if defaults.service_name
        && let Some(name) = &service_name
    {
        cands
            .0
            .retain(|c| c.source.as_deref() != Some(SERVICE_NAME));
        cands.0.push(Candidate {
            source: None,
            value: name.clone().into_owned(),
            default_rank: Some(4),
        });
    }
    let promote = |cands: &mut Candidates, names: &[String], from_resource: bool| {
        for name in names {
            let found = if from_resource {
                lookup(res_attrs.iter(), name)
            } else {
                lookup(rec.all(), name)
            };
            if let Some(kv) = found {
                let rank = (!from_resource && name == LEVEL && level_active).then_some(3);
                cands.merge(name, as_string(kv.value.as_ref()).into_owned(), rank);
            }
        }
    };
    if let Some(kv) = get(res_attrs, HINT_RESOURCES) {
        promote(&mut cands, &hint_names(kv.value.as_ref()), true);
    }
    promote(&mut cands, &opts.resource_labels, true);
    if let Some(kv) = get(&record.attributes, HINT_RESOURCES) {
        promote(&mut cands, &hint_names(kv.value.as_ref()), true);
    }
    promote(&mut cands, &attr_hint_names, false);
    promote(&mut cands, &opts.attribute_labels, false);
    if let Some(kv) = get(res_attrs, HINT_TENANT) {
        promote(&mut cands, &hint_names(kv.value.as_ref()), true);
    } else if let Some(kv) = get(&record.attributes, HINT_TENANT) {
        promote(&mut cands, &hint_names(kv.value.as_ref()), false);
    }

    // 2. Normalize and fit Loki's limits. `kept_sources` leave the line.
    let (mut labels, kept_sources) = fit_labels(opts, cands, report);
    add_external_labels(&mut labels, &opts.external_labels);

    // 3. Structured metadata.
    let removed_everywhere =
        |key: &str| HINTS.contains(&key) || kept_sources.iter().any(|s| s == key);
    let mut metadata = Vec::new();
    let mut moved_rec: Vec<&str> = Vec::new();
    let mut moved_res: Vec<&str> = Vec::new();
    let mut trace_moved = false;
    let mut span_moved = false;
    for (key, name) in &opts.structured_metadata {
        if key == "trace_id"
            && let Some(hex) = non_zero_hex(&record.trace_id)
        {
            metadata.push((name.clone(), hex));
            trace_moved = true;
            continue;
        }
        if key == "span_id"
            && let Some(hex) = non_zero_hex(&record.span_id)
        {
            metadata.push((name.clone(), hex));
            span_moved = true;
            continue;
        }
        if removed_everywhere(key) {
            continue;
        }
        if let Some(kv) = find(rec.all(), key) {
            let v = as_string(kv.value.as_ref());
            if !v.is_empty() {
                metadata.push((name.clone(), v.into_owned()));
                moved_rec.push(key);
            }
        } else if let Some(kv) = get(res_attrs, key) {
            let v = as_string(kv.value.as_ref());
            if !v.is_empty() {
                metadata.push((name.clone(), v.into_owned()));
                moved_res.push(key);
            }
        }
    }

    // 4. The line.
    let line_rec = rec
        .all()
        .filter(|kv| !removed_everywhere(&kv.key) && !moved_rec.contains(&kv.key.as_str()));
    let line_res = res_attrs
        .iter()
        .filter(|kv| !removed_everywhere(&kv.key) && !moved_res.contains(&kv.key.as_str()));
    let trace_id = (!trace_moved)
        .then(|| non_zero_hex(&record.trace_id))
        .flatten();
    let span_id = (!span_moved)
        .then(|| non_zero_hex(&record.span_id))
        .flatten();
    let mut line = match format {
        LineFormat::Json => json_line(record, scope, trace_id, span_id, line_rec, line_res)
            .map_err(|_| DROP_UNSUPPORTED_VALUE)?,
        LineFormat::Logfmt => logfmt_line(record, scope, trace_id, span_id, line_rec, line_res),
        LineFormat::Raw => as_string(record.body.as_ref()).into_owned(),
    };
    if opts.max_line_size > 0 && line.len() > opts.max_line_size {
        match opts.line_too_long {
            LineTooLong::Drop => return Err(DROP_LINE_TOO_LONG),
            LineTooLong::Truncate => {
                truncate_at_char(&mut line, opts.max_line_size);
                report.adjust(ADJ_LINE_TRUNCATED);
            }
        }
    }

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
            structured_metadata: metadata,
        },
    })
}

/// Normalizes names, drops what Loki would refuse and applies the label-count limit. Returns
/// the sorted labels and the attribute keys of labels that were kept (or were empty, which
/// Loki treats as absent) — those leave the line.
fn fit_labels(
    opts: &MappingOptions,
    cands: Candidates,
    report: &mut MappingReport,
) -> (Vec<(String, String)>, Vec<String>) {
    struct Label {
        name: String,
        value: String,
        source: Option<String>,
        rank: Option<u8>,
        removes_attr: bool,
    }
    let mut labels: Vec<Label> = Vec::with_capacity(cands.0.len());
    let mut removed_empty = Vec::new();
    for c in cands.0 {
        let name = match &c.source {
            Some(src) => normalize_label(src),
            None => SERVICE_NAME.to_owned(),
        };
        if c.value.is_empty() {
            // Loki drops empty labels; Alloy still takes the attribute out of the line.
            removed_empty.extend(c.source);
            continue;
        }
        if !is_valid_name(&name) {
            report.adjust(ADJ_INVALID_LABEL_NAME);
            continue;
        }
        if name.starts_with("__") {
            report.adjust(ADJ_RESERVED_LABEL_NAME);
            continue;
        }
        if name.len() > opts.max_label_name_length {
            report.adjust(ADJ_LABEL_NAME_TOO_LONG);
            continue;
        }
        let mut value = c.value;
        let mut removes_attr = true;
        if value.len() > opts.max_label_value_length {
            truncate_at_char(&mut value, opts.max_label_value_length);
            report.adjust(ADJ_LABEL_VALUE_TRUNCATED);
            removes_attr = false;
        }
        // Two keys normalizing to one name: the later one wins.
        if let Some(pos) = labels.iter().position(|l| l.name == name) {
            if labels[pos].value != value {
                report.adjust(ADJ_DUPLICATE_LABEL_NAME);
            }
            labels.remove(pos);
        }
        labels.push(Label {
            name,
            value,
            source: c.source,
            rank: c.default_rank,
            removes_attr,
        });
    }
    let counted = labels.iter().filter(|l| l.name != SERVICE_NAME).count();
    if counted > opts.max_label_names {
        labels.sort_by(|a, b| {
            (a.rank.unwrap_or(u8::MAX), &a.name).cmp(&(b.rank.unwrap_or(u8::MAX), &b.name))
        });
        let mut seen = 0;
        labels.retain(|l| {
            if l.name == SERVICE_NAME {
                return true;
            }
            seen += 1;
            if seen > opts.max_label_names {
                report.adjust(ADJ_MAX_LABEL_NAMES);
                false
            } else {
                true
            }
        });
    }
    let mut kept_sources = removed_empty;
    kept_sources.extend(
        labels
            .iter()
            .filter(|l| l.removes_attr)
            .filter_map(|l| l.source.clone()),
    );
    let mut out: Vec<(String, String)> = labels.into_iter().map(|l| (l.name, l.value)).collect();
    if out.is_empty() {
        // Loki refuses a stream without labels; this is the name Loki itself falls back to.
        out.push((SERVICE_NAME.to_owned(), "unknown_service".to_owned()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (out, kept_sources)
}

/// Alloy's `loki.write` merges its `external_labels` under the stream's labels: a stream label
/// of the same name wins. Keeps `labels` sorted by name.
fn add_external_labels(labels: &mut Vec<(String, String)>, external: &[(String, String)]) {
    if external.is_empty() {
        return;
    }
    for (name, value) in external {
        if !labels.iter().any(|(n, _)| n == name) {
            labels.push((name.clone(), value.clone()));
        }
    }
    labels.sort_by(|a, b| a.0.cmp(&b.0));
}

/// `GetTenantFromTenantHint`: the hint (resource first) names the attribute (resource first)
/// whose string value is the tenant.
fn tenant_from_hint(res_attrs: &[KeyValue], rec_attrs: &[KeyValue]) -> Option<String> {
    let hint = get(res_attrs, HINT_TENANT).or_else(|| get(rec_attrs, HINT_TENANT))?;
    let Some(Value::StringValue(attr)) = kind(hint.value.as_ref()) else {
        return None;
    };
    let tenant_kv = get(res_attrs, attr).or_else(|| get(rec_attrs, attr))?;
    match kind(tenant_kv.value.as_ref()) {
        Some(Value::StringValue(t)) if !t.is_empty() => Some(t.clone()),
        _ => None,
    }
}

/// Alloy's JSON line: `{"body":…,"traceid":…,"spanid":…,"severity":…,"flags":…,
/// "attributes":{…},"resources":{…},"instrumentation_scope":{"name":…,"version":…}}`, empty
/// fields omitted.
fn json_line<'a>(
    record: &LogRecord,
    scope: Option<&InstrumentationScope>,
    trace_id: Option<String>,
    span_id: Option<String>,
    attrs: impl Iterator<Item = &'a KeyValue> + Clone,
    resources: impl Iterator<Item = &'a KeyValue> + Clone,
) -> Result<String, value::UnsupportedValue> {
    let mut out = String::with_capacity(128);
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
    if let Some(t) = trace_id {
        field(&mut out, "traceid");
        write_json_str(&mut out, &t);
    }
    if let Some(s) = span_id {
        field(&mut out, "spanid");
        write_json_str(&mut out, &s);
    }
    if !record.severity_text.is_empty() {
        field(&mut out, "severity");
        write_json_str(&mut out, &record.severity_text);
    }
    if record.flags != 0 {
        field(&mut out, "flags");
        let _ = write!(out, "{}", record.flags);
    }
    if attrs.clone().next().is_some() {
        field(&mut out, "attributes");
        write_json_map(&mut out, attrs)?;
    }
    if resources.clone().next().is_some() {
        field(&mut out, "resources");
        write_json_map(&mut out, resources)?;
    }
    if let Some(scope) = scope.filter(|s| !s.name.is_empty()) {
        field(&mut out, "instrumentation_scope");
        out.push_str("{\"name\":");
        write_json_str(&mut out, &scope.name);
        if !scope.version.is_empty() {
            out.push_str(",\"version\":");
            write_json_str(&mut out, &scope.version);
        }
        out.push('}');
    }
    out.push('}');
    Ok(out)
}

/// Alloy's logfmt line (contrib `EncodeLogfmt`).
fn logfmt_line<'a>(
    record: &LogRecord,
    scope: Option<&InstrumentationScope>,
    trace_id: Option<String>,
    span_id: Option<String>,
    attrs: impl Iterator<Item = &'a KeyValue>,
    resources: impl Iterator<Item = &'a KeyValue>,
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
            LogfmtValue::Str(record.severity_text.clone()),
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
        push("instrumentation_scope_name", &scope.name);
        if !scope.version.is_empty() {
            push("instrumentation_scope_version", &scope.version);
        }
    }
    logfmt::encode(&kvs)
}
