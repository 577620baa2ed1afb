//! The OTLP message schemas the walker checks against (opentelemetry-proto v1.x field numbers).
//!
//! Each schema is a table indexed by field number, so looking a field up is one bounds-checked
//! load. Every field prost knows is listed, because prost rejects a known field with the wrong
//! wire type and `validate` must be at least as strict as prost.

use Kind::*;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Not in the schema: skipped according to its wire type (forward compatibility).
    Unknown,
    /// int32, int64, uint32, uint64, sint32, bool, enum.
    Varint,
    /// fixed64, sfixed64, double.
    Fixed64,
    /// fixed32.
    Fixed32,
    /// string: must be UTF-8.
    Str,
    /// bytes without constraint.
    Bytes,
    /// trace or span id: exactly this many bytes, or empty; [`IdRule`] adds the intake rule.
    Id(usize, IdRule),
    /// A fixed64 timestamp in Unix nanoseconds that intake validation bounds in the future.
    Time,
    /// An attribute key that becomes a Prometheus label name (data point attributes).
    LabelKey,
    /// A nested message.
    Msg(&'static Schema),
    /// repeated fixed64 / double: packed (length-delimited) or one value per field.
    PackedFixed64,
    /// repeated uint64: packed or one value per field.
    PackedVarint,
}

/// What intake validation ([`crate::check`]) demands of an id besides its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdRule {
    /// Only the length (parent span ids: empty means a root span).
    Any,
    /// Optional, but not all zeros when present (log records, links, exemplars).
    NonZero,
    /// Present and not all zeros; the bit is this id's flag in `Schema::required_ids`.
    Required(u8),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) struct Schema {
    /// Each occurrence of this message is one counted item (span, data point, log record).
    pub is_item: bool,
    /// Holds items somewhere below (request, resource, scope, metric and its data), so
    /// filtering out refused items rewrites it.
    pub container: bool,
    /// A `Metric`: its name applies to every data point inside.
    pub metric: bool,
    /// Bits of the `IdRule::Required` ids an item must carry.
    pub required_ids: u8,
    /// A `KeyValue`: the walker may accept the common short-string attribute without walking
    /// it field by field (`walk::ShortStringAttribute`).
    pub key_value: bool,
    /// Indexed by field number; gaps are `UNKNOWN`.
    pub fields: &'static [Field],
}

pub(crate) const UNKNOWN: Field = Field {
    name: "",
    kind: Unknown,
};

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// Builds a table indexed by field number from `(number, field)` pairs.
const fn table<const N: usize, const M: usize>(entries: [(usize, Field); M]) -> [Field; N] {
    let mut out = [UNKNOWN; N];
    let mut i = 0;
    while i < M {
        out[entries[i].0] = entries[i].1;
        i += 1;
    }
    out
}

const fn message(fields: &'static [Field]) -> Schema {
    Schema {
        is_item: false,
        container: false,
        metric: false,
        required_ids: 0,
        key_value: false,
        fields,
    }
}

const fn container(fields: &'static [Field]) -> Schema {
    Schema {
        container: true,
        ..message(fields)
    }
}

const fn item(fields: &'static [Field]) -> Schema {
    Schema {
        is_item: true,
        ..message(fields)
    }
}

/// Span: trace id and span id are required.
const TRACE_ID_BIT: u8 = 1;
const SPAN_ID_BIT: u8 = 2;

// ---- common.v1 / resource.v1 ----

static ANY_VALUE_FIELDS: [Field; 9] = table([
    (1, f("string_value", Str)),
    (2, f("bool_value", Varint)),
    (3, f("int_value", Varint)),
    (4, f("double_value", Fixed64)),
    (5, f("array_value", Msg(&ARRAY_VALUE))),
    (6, f("kvlist_value", Msg(&KEY_VALUE_LIST))),
    (7, f("bytes_value", Bytes)),
    (8, f("string_value_strindex", Varint)),
]);
pub(crate) static ANY_VALUE: Schema = message(&ANY_VALUE_FIELDS);

static ARRAY_VALUE_FIELDS: [Field; 2] = table([(1, f("values", Msg(&ANY_VALUE)))]);
static ARRAY_VALUE: Schema = message(&ARRAY_VALUE_FIELDS);

static KEY_VALUE_LIST_FIELDS: [Field; 2] = table([(1, f("values", Msg(&KEY_VALUE)))]);
static KEY_VALUE_LIST: Schema = message(&KEY_VALUE_LIST_FIELDS);

static KEY_VALUE_FIELDS: [Field; 4] = table([
    (1, f("key", Str)),
    (2, f("value", Msg(&ANY_VALUE))),
    (3, f("key_strindex", Varint)),
]);
pub(crate) static KEY_VALUE: Schema = Schema {
    key_value: true,
    ..message(&KEY_VALUE_FIELDS)
};

/// A data point attribute: its key becomes a Prometheus label name.
static LABEL_KEY_VALUE_FIELDS: [Field; 4] = table([
    (1, f("key", LabelKey)),
    (2, f("value", Msg(&ANY_VALUE))),
    (3, f("key_strindex", Varint)),
]);
pub(crate) static LABEL_KEY_VALUE: Schema = Schema {
    key_value: true,
    ..message(&LABEL_KEY_VALUE_FIELDS)
};

static SCOPE_FIELDS: [Field; 5] = table([
    (1, f("name", Str)),
    (2, f("version", Str)),
    (3, f("attributes", Msg(&KEY_VALUE))),
    (4, f("dropped_attributes_count", Varint)),
]);
static SCOPE: Schema = message(&SCOPE_FIELDS);

static ENTITY_REF_FIELDS: [Field; 5] = table([
    (1, f("schema_url", Str)),
    (2, f("type", Str)),
    (3, f("id_keys", Str)),
    (4, f("description_keys", Str)),
]);
static ENTITY_REF: Schema = message(&ENTITY_REF_FIELDS);

static RESOURCE_FIELDS: [Field; 4] = table([
    (1, f("attributes", Msg(&KEY_VALUE))),
    (2, f("dropped_attributes_count", Varint)),
    (3, f("entity_refs", Msg(&ENTITY_REF))),
]);
static RESOURCE: Schema = message(&RESOURCE_FIELDS);

// ---- trace.v1 ----

static TRACE_REQUEST_FIELDS: [Field; 2] = table([(1, f("resource_spans", Msg(&RESOURCE_SPANS)))]);
pub(crate) static TRACE_REQUEST: Schema = container(&TRACE_REQUEST_FIELDS);

static RESOURCE_SPANS_FIELDS: [Field; 4] = table([
    (1, f("resource", Msg(&RESOURCE))),
    (2, f("scope_spans", Msg(&SCOPE_SPANS))),
    (3, f("schema_url", Str)),
]);
static RESOURCE_SPANS: Schema = container(&RESOURCE_SPANS_FIELDS);

static SCOPE_SPANS_FIELDS: [Field; 4] = table([
    (1, f("scope", Msg(&SCOPE))),
    (2, f("spans", Msg(&SPAN))),
    (3, f("schema_url", Str)),
]);
static SCOPE_SPANS: Schema = container(&SCOPE_SPANS_FIELDS);

static SPAN_FIELDS: [Field; 17] = table([
    (1, f("trace_id", Id(16, IdRule::Required(TRACE_ID_BIT)))),
    (2, f("span_id", Id(8, IdRule::Required(SPAN_ID_BIT)))),
    (3, f("trace_state", Str)),
    (4, f("parent_span_id", Id(8, IdRule::Any))),
    (5, f("name", Str)),
    (6, f("kind", Varint)),
    (7, f("start_time_unix_nano", Time)),
    (8, f("end_time_unix_nano", Time)),
    (9, f("attributes", Msg(&KEY_VALUE))),
    (10, f("dropped_attributes_count", Varint)),
    (11, f("events", Msg(&SPAN_EVENT))),
    (12, f("dropped_events_count", Varint)),
    (13, f("links", Msg(&SPAN_LINK))),
    (14, f("dropped_links_count", Varint)),
    (15, f("status", Msg(&SPAN_STATUS))),
    (16, f("flags", Fixed32)),
]);
static SPAN: Schema = Schema {
    required_ids: TRACE_ID_BIT | SPAN_ID_BIT,
    ..item(&SPAN_FIELDS)
};

static SPAN_EVENT_FIELDS: [Field; 5] = table([
    (1, f("time_unix_nano", Fixed64)),
    (2, f("name", Str)),
    (3, f("attributes", Msg(&KEY_VALUE))),
    (4, f("dropped_attributes_count", Varint)),
]);
static SPAN_EVENT: Schema = message(&SPAN_EVENT_FIELDS);

static SPAN_LINK_FIELDS: [Field; 7] = table([
    (1, f("trace_id", Id(16, IdRule::NonZero))),
    (2, f("span_id", Id(8, IdRule::NonZero))),
    (3, f("trace_state", Str)),
    (4, f("attributes", Msg(&KEY_VALUE))),
    (5, f("dropped_attributes_count", Varint)),
    (6, f("flags", Fixed32)),
]);
static SPAN_LINK: Schema = message(&SPAN_LINK_FIELDS);

static SPAN_STATUS_FIELDS: [Field; 4] = table([(2, f("message", Str)), (3, f("code", Varint))]);
static SPAN_STATUS: Schema = message(&SPAN_STATUS_FIELDS);

// ---- metrics.v1 ----

static METRICS_REQUEST_FIELDS: [Field; 2] =
    table([(1, f("resource_metrics", Msg(&RESOURCE_METRICS)))]);
pub(crate) static METRICS_REQUEST: Schema = container(&METRICS_REQUEST_FIELDS);

static RESOURCE_METRICS_FIELDS: [Field; 4] = table([
    (1, f("resource", Msg(&RESOURCE))),
    (2, f("scope_metrics", Msg(&SCOPE_METRICS))),
    (3, f("schema_url", Str)),
]);
static RESOURCE_METRICS: Schema = container(&RESOURCE_METRICS_FIELDS);

static SCOPE_METRICS_FIELDS: [Field; 4] = table([
    (1, f("scope", Msg(&SCOPE))),
    (2, f("metrics", Msg(&METRIC))),
    (3, f("schema_url", Str)),
]);
static SCOPE_METRICS: Schema = container(&SCOPE_METRICS_FIELDS);

static METRIC_FIELDS: [Field; 13] = table([
    (1, f("name", Str)),
    (2, f("description", Str)),
    (3, f("unit", Str)),
    (5, f("gauge", Msg(&GAUGE))),
    (7, f("sum", Msg(&SUM))),
    (9, f("histogram", Msg(&HISTOGRAM))),
    (10, f("exponential_histogram", Msg(&EXP_HISTOGRAM))),
    (11, f("summary", Msg(&SUMMARY))),
    (12, f("metadata", Msg(&KEY_VALUE))),
]);
static METRIC: Schema = Schema {
    metric: true,
    ..container(&METRIC_FIELDS)
};

static GAUGE_FIELDS: [Field; 2] = table([(1, f("data_points", Msg(&NUMBER_POINT)))]);
static GAUGE: Schema = container(&GAUGE_FIELDS);

static SUM_FIELDS: [Field; 4] = table([
    (1, f("data_points", Msg(&NUMBER_POINT))),
    (2, f("aggregation_temporality", Varint)),
    (3, f("is_monotonic", Varint)),
]);
static SUM: Schema = container(&SUM_FIELDS);

static HISTOGRAM_FIELDS: [Field; 3] = table([
    (1, f("data_points", Msg(&HISTOGRAM_POINT))),
    (2, f("aggregation_temporality", Varint)),
]);
static HISTOGRAM: Schema = container(&HISTOGRAM_FIELDS);

static EXP_HISTOGRAM_FIELDS: [Field; 3] = table([
    (1, f("data_points", Msg(&EXP_HISTOGRAM_POINT))),
    (2, f("aggregation_temporality", Varint)),
]);
static EXP_HISTOGRAM: Schema = container(&EXP_HISTOGRAM_FIELDS);

static SUMMARY_FIELDS: [Field; 2] = table([(1, f("data_points", Msg(&SUMMARY_POINT)))]);
static SUMMARY: Schema = container(&SUMMARY_FIELDS);

static NUMBER_POINT_FIELDS: [Field; 9] = table([
    (2, f("start_time_unix_nano", Fixed64)),
    (3, f("time_unix_nano", Time)),
    (4, f("as_double", Fixed64)),
    (5, f("exemplars", Msg(&EXEMPLAR))),
    (6, f("as_int", Fixed64)),
    (7, f("attributes", Msg(&LABEL_KEY_VALUE))),
    (8, f("flags", Varint)),
]);
static NUMBER_POINT: Schema = item(&NUMBER_POINT_FIELDS);

static HISTOGRAM_POINT_FIELDS: [Field; 13] = table([
    (2, f("start_time_unix_nano", Fixed64)),
    (3, f("time_unix_nano", Time)),
    (4, f("count", Fixed64)),
    (5, f("sum", Fixed64)),
    (6, f("bucket_counts", PackedFixed64)),
    (7, f("explicit_bounds", PackedFixed64)),
    (8, f("exemplars", Msg(&EXEMPLAR))),
    (9, f("attributes", Msg(&LABEL_KEY_VALUE))),
    (10, f("flags", Varint)),
    (11, f("min", Fixed64)),
    (12, f("max", Fixed64)),
]);
static HISTOGRAM_POINT: Schema = item(&HISTOGRAM_POINT_FIELDS);

static EXP_HISTOGRAM_POINT_FIELDS: [Field; 15] = table([
    (1, f("attributes", Msg(&LABEL_KEY_VALUE))),
    (2, f("start_time_unix_nano", Fixed64)),
    (3, f("time_unix_nano", Time)),
    (4, f("count", Fixed64)),
    (5, f("sum", Fixed64)),
    (6, f("scale", Varint)),
    (7, f("zero_count", Fixed64)),
    (8, f("positive", Msg(&EXP_BUCKETS))),
    (9, f("negative", Msg(&EXP_BUCKETS))),
    (10, f("flags", Varint)),
    (11, f("exemplars", Msg(&EXEMPLAR))),
    (12, f("min", Fixed64)),
    (13, f("max", Fixed64)),
    (14, f("zero_threshold", Fixed64)),
]);
static EXP_HISTOGRAM_POINT: Schema = item(&EXP_HISTOGRAM_POINT_FIELDS);

static EXP_BUCKETS_FIELDS: [Field; 3] = table([
    (1, f("offset", Varint)),
    (2, f("bucket_counts", PackedVarint)),
]);
static EXP_BUCKETS: Schema = message(&EXP_BUCKETS_FIELDS);

static SUMMARY_POINT_FIELDS: [Field; 9] = table([
    (2, f("start_time_unix_nano", Fixed64)),
    (3, f("time_unix_nano", Time)),
    (4, f("count", Fixed64)),
    (5, f("sum", Fixed64)),
    (6, f("quantile_values", Msg(&VALUE_AT_QUANTILE))),
    (7, f("attributes", Msg(&LABEL_KEY_VALUE))),
    (8, f("flags", Varint)),
]);
static SUMMARY_POINT: Schema = item(&SUMMARY_POINT_FIELDS);

static VALUE_AT_QUANTILE_FIELDS: [Field; 3] =
    table([(1, f("quantile", Fixed64)), (2, f("value", Fixed64))]);
static VALUE_AT_QUANTILE: Schema = message(&VALUE_AT_QUANTILE_FIELDS);

static EXEMPLAR_FIELDS: [Field; 8] = table([
    (2, f("time_unix_nano", Fixed64)),
    (3, f("as_double", Fixed64)),
    (4, f("span_id", Id(8, IdRule::NonZero))),
    (5, f("trace_id", Id(16, IdRule::NonZero))),
    (6, f("as_int", Fixed64)),
    (7, f("filtered_attributes", Msg(&KEY_VALUE))),
]);
static EXEMPLAR: Schema = message(&EXEMPLAR_FIELDS);

// ---- logs.v1 ----

static LOGS_REQUEST_FIELDS: [Field; 2] = table([(1, f("resource_logs", Msg(&RESOURCE_LOGS)))]);
pub(crate) static LOGS_REQUEST: Schema = container(&LOGS_REQUEST_FIELDS);

static RESOURCE_LOGS_FIELDS: [Field; 4] = table([
    (1, f("resource", Msg(&RESOURCE))),
    (2, f("scope_logs", Msg(&SCOPE_LOGS))),
    (3, f("schema_url", Str)),
]);
static RESOURCE_LOGS: Schema = container(&RESOURCE_LOGS_FIELDS);

static SCOPE_LOGS_FIELDS: [Field; 4] = table([
    (1, f("scope", Msg(&SCOPE))),
    (2, f("log_records", Msg(&LOG_RECORD))),
    (3, f("schema_url", Str)),
]);
static SCOPE_LOGS: Schema = container(&SCOPE_LOGS_FIELDS);

static LOG_RECORD_FIELDS: [Field; 13] = table([
    (1, f("time_unix_nano", Time)),
    (2, f("severity_number", Varint)),
    (3, f("severity_text", Str)),
    (5, f("body", Msg(&ANY_VALUE))),
    (6, f("attributes", Msg(&KEY_VALUE))),
    (7, f("dropped_attributes_count", Varint)),
    (8, f("flags", Fixed32)),
    (9, f("trace_id", Id(16, IdRule::NonZero))),
    (10, f("span_id", Id(8, IdRule::NonZero))),
    (11, f("observed_time_unix_nano", Time)),
    (12, f("event_name", Str)),
]);
static LOG_RECORD: Schema = item(&LOG_RECORD_FIELDS);
