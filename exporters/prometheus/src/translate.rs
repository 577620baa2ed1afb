//! OTLP metrics → Prometheus series (OpenTelemetry specification, Prometheus and OpenMetrics
//! Compatibility).
//!
//! [`Translator::translate`] decodes every item of a batch, converts each data point into the
//! samples of its derived series (`_bucket`, `_sum`, `_count`, quantiles, native histograms),
//! merges series that occur in several items, and returns them with samples sorted by time.
//! Points that cannot be represented are counted per reason in [`Translation::dropped`].

pub mod delta;
mod exemplars;
mod labels;
pub mod naming;
mod native;
mod passthrough;
mod points;
mod raw;

use crate::remote_write::{MetricType, stale_nan, v1, v2};
use delta::DeltaAccumulator;
pub use labels::SeriesLabels;
use labels::{LabelSet, sanitize_attributes};
use naming::any_value_string;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use parking_lot::Mutex;
use prost::Message;
use sluice_core::Item;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u32 = 1;
/// `target_info` is repeated this often across a resource's time span, so that it stays within
/// Prometheus' 5-minute lookback (Prometheus uses `lookback_delta / 2`).
const TARGET_INFO_INTERVAL_MS: i64 = 150_000;
/// At most this many repetitions per resource and batch (covers 2.5 hours).
const MAX_TARGET_INFO_REPEATS: i64 = 60;
/// Bound on the per-series memory of `target_info` timestamps already sent.
const MAX_TARGET_INFO_SERIES: usize = 100_000;
/// Bounds on the series cache (see [`SeriesCache`]); a full cache starts over empty. Bytes are
/// bounded as well as entries: keys and labels come from the data, and a few large attribute
/// values must not make 100,000 entries weigh gigabytes.
const MAX_CACHED_SERIES: usize = 100_000;
const MAX_CACHED_SERIES_BYTES: usize = 64 << 20;
const MAX_CACHED_CONTEXTS: usize = 10_000;
const MAX_CACHED_CONTEXT_BYTES: usize = 8 << 20;

/// How OTLP is mapped; the translation part of the exporter's config.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslateOptions {
    pub add_metric_suffixes: bool,
    pub include_scope_labels: bool,
    pub include_target_info: bool,
    pub promote_resource_attributes: Vec<String>,
    /// Already valid label names; they never override a label the data has.
    pub external_labels: Vec<(String, String)>,
    pub send_native_histograms: bool,
    pub send_exemplars: bool,
    pub convert_delta_to_cumulative: bool,
    pub max_delta_series: usize,
    pub delta_series_expiry: Duration,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            add_metric_suffixes: true,
            include_scope_labels: true,
            include_target_info: true,
            promote_resource_attributes: Vec::new(),
            external_labels: Vec::new(),
            send_native_histograms: false,
            send_exemplars: true,
            convert_delta_to_cumulative: false,
            max_delta_series: 100_000,
            delta_series_expiry: Duration::from_secs(300),
        }
    }
}

/// Metadata of one metric family (`TYPE`, `HELP`, `UNIT`).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// One native histogram sample and its start time (ms, 0 = unknown) for RW2.
#[derive(Debug, Clone, PartialEq)]
pub struct NativePoint {
    pub histogram: v1::Histogram,
    pub start_timestamp: i64,
}

/// One Prometheus series with its samples, sorted by timestamp without duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Byte-sorted, unique, non-empty values, including `__name__`.
    pub labels: SeriesLabels,
    /// Hash of the label set: the series' identity for sharding.
    pub hash: u64,
    /// Index into [`Translation::families`].
    pub family: usize,
    /// RW2 samples (RW1 ignores `start_timestamp`).
    pub samples: Vec<v2::Sample>,
    pub histograms: Vec<NativePoint>,
    pub exemplars: Vec<v1::Exemplar>,
}

impl Series {
    pub fn name(&self) -> &str {
        self.labels
            .iter()
            .find(|l| l.name == "__name__")
            .map(|l| l.value.as_str())
            .unwrap_or("")
    }

    /// Float and histogram samples carried.
    pub fn sample_count(&self) -> u64 {
        (self.samples.len() + self.histograms.len()) as u64
    }
}

/// The result of translating one batch.
#[derive(Debug, Default)]
pub struct Translation {
    pub series: Vec<Series>,
    pub families: Vec<Family>,
    /// Data points left out, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
}

/// Translates batches; owns the state that outlives one batch (delta totals, `target_info`
/// timestamps), in memory only.
#[derive(Debug)]
pub struct Translator {
    options: TranslateOptions,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    deltas: DeltaAccumulator,
    /// Newest `target_info` timestamp sent per series, so that a later batch whose resource
    /// spans earlier times never sends an out-of-order `target_info` sample.
    target_info_sent: HashMap<u64, (i64, Instant)>,
    cache: SeriesCache,
}

/// The label sets of gauge and sum series seen before, across batches.
///
/// A series' labels depend only on its resource's `job`/`instance`/promoted labels, its
/// scope's labels, its metric name and its point's attributes; the same series comes back in
/// every export of its SDK. Building the set (sanitising, ordering, hashing) cost more than
/// everything else a point needs, so it is done once per series: the key is the point's
/// attributes exactly as encoded, behind an id of its resource-and-scope context and the
/// metric name. Keys are compared whole, so equal keys mean equal label sets.
///
/// An SDK also sends a metric's points in the same order every time, so the cache keeps each
/// metric's whole list too, keyed by all its points' attributes: one lookup per metric instead
/// of one per point, which showed in profiles as memory stalls once there were tens of
/// thousands of series.
#[derive(Debug, Default)]
struct SeriesCache {
    contexts: HashMap<Box<[u8]>, u32, foldhash::fast::FixedState>,
    series: HashMap<Box<[u8]>, (SeriesLabels, u64), foldhash::fast::FixedState>,
    metrics: HashMap<Box<[u8]>, MetricSeries, foldhash::fast::FixedState>,
    /// Keys of `contexts`.
    context_bytes: usize,
    /// Keys and label encodings of `series`, keys and point entries of `metrics`.
    series_bytes: usize,
}

/// The series of each point of a metric, in order; `None` where the attributes did not decode.
type MetricSeries = Arc<[Option<(SeriesLabels, u64)>]>;

impl SeriesCache {
    /// The id of a resource-and-scope context, given its labels written by [`context_key`].
    fn context(&mut self, key: &[u8]) -> u32 {
        if let Some(&id) = self.contexts.get(key) {
            return id;
        }
        if self.contexts.len() >= MAX_CACHED_CONTEXTS
            || self.context_bytes + key.len() > MAX_CACHED_CONTEXT_BYTES
        {
            // Series keys hold context ids: they go too. Only here, between scopes, may ids
            // be reused; a series insert never clears contexts.
            self.contexts.clear();
            self.context_bytes = 0;
            self.clear_series();
        }
        let id = self.contexts.len() as u32;
        self.context_bytes += key.len();
        self.contexts.insert(key.into(), id);
        id
    }

    fn clear_series(&mut self) {
        self.series.clear();
        self.metrics.clear();
        self.series_bytes = 0;
    }

    /// Makes room for `bytes` more of series and metric entries.
    fn reserve(&mut self, bytes: usize) {
        if self.series.len() >= MAX_CACHED_SERIES
            || self.series_bytes + bytes > MAX_CACHED_SERIES_BYTES
        {
            self.clear_series();
        }
        self.series_bytes += bytes;
    }

    fn get(&self, key: &[u8]) -> Option<&(SeriesLabels, u64)> {
        self.series.get(key)
    }

    fn insert(&mut self, key: &[u8], labels: SeriesLabels, hash: u64) {
        self.reserve(key.len() + labels.v1_encoded().len());
        self.series.insert(key.into(), (labels, hash));
    }

    fn metric(&self, key: &[u8]) -> Option<MetricSeries> {
        self.metrics.get(key).cloned()
    }

    fn insert_metric(&mut self, key: Box<[u8]>, series: MetricSeries) {
        self.reserve(key.len() + std::mem::size_of_val(&*series));
        self.metrics.insert(key, series);
    }
}

/// Appends `bytes` to a cache key, length first, so that concatenations cannot collide.
fn push_key_part(key: &mut Vec<u8>, bytes: &[u8]) {
    key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    key.extend_from_slice(bytes);
}

/// What of a resource and a scope goes into a point's labels, as a [`SeriesCache`] key.
fn context_key(ctx: &ResourceContext, scope: &[v1::Label]) -> Vec<u8> {
    let mut key = Vec::new();
    for part in [&ctx.job, &ctx.instance] {
        match part {
            Some(v) => {
                key.push(1);
                push_key_part(&mut key, v.as_bytes());
            }
            None => key.push(0),
        }
    }
    for labels in [&ctx.promoted[..], scope] {
        key.extend_from_slice(&(labels.len() as u32).to_le_bytes());
        for l in labels {
            push_key_part(&mut key, l.name.as_bytes());
            push_key_part(&mut key, l.value.as_bytes());
        }
    }
    key
}

impl Translator {
    pub fn new(options: TranslateOptions) -> Translator {
        let deltas = DeltaAccumulator::new(options.max_delta_series, options.delta_series_expiry);
        Translator {
            options,
            state: Mutex::new(State {
                deltas,
                target_info_sent: HashMap::new(),
                cache: SeriesCache::default(),
            }),
        }
    }

    pub fn options(&self) -> &TranslateOptions {
        &self.options
    }

    /// Running delta totals currently held.
    pub fn delta_series(&self) -> usize {
        self.state.lock().deltas.len()
    }

    /// Translates the items of one batch (all of one tenant). Items that are not OTLP metrics
    /// requests are counted as dropped with reason `decode_error`.
    pub fn translate(&self, items: &[Item], tenant: Option<&str>) -> Translation {
        let mut state = self.state.lock();
        let mut builder = Builder::new(&self.options, tenant, std::mem::take(&mut state.cache));
        // Mostly one series per point: sized up front, the index and the series list do not
        // regrow and rehash while the batch is translated (that showed in profiles).
        let points = items
            .iter()
            .map(|i| i.count as usize)
            .sum::<usize>()
            .min(1 << 20);
        builder.series.reserve(points);
        builder.index.reserve(points);
        for item in items {
            // Decoded from the shared `Bytes`: the raw parts are slices, not copies.
            match raw::Request::decode(item.payload.clone()) {
                Ok(request) => {
                    for resource in &request.resource_metrics {
                        builder.resource(resource);
                    }
                }
                Err(_) => builder.drop_points("decode_error", u64::from(item.count)),
            }
        }
        builder.finish(&mut state, Instant::now())
    }
}

/// Per-resource values shared by all its points.
struct ResourceContext {
    job: Option<String>,
    instance: Option<String>,
    promoted: Vec<v1::Label>,
    min_ms: Option<i64>,
    max_ms: Option<i64>,
}

struct PendingDelta {
    series: usize,
    start_ns: u64,
    time_ns: u64,
    value: f64,
    stale: bool,
}

struct Builder<'o> {
    opts: &'o TranslateOptions,
    tenant_hash: u64,
    cache: SeriesCache,
    /// Scratch for the cache key of the point at hand.
    key: Vec<u8>,
    series: Vec<Series>,
    index: ByHash<usize>,
    families: Vec<Family>,
    family_index: HashMap<String, usize>,
    dropped: BTreeMap<&'static str, u64>,
    pending_deltas: Vec<PendingDelta>,
    target_info_series: Vec<usize>,
}

/// Series identity within the process (shards, merge index, delta and `target_info` state):
/// a fixed seed keeps it stable for the process's life; foldhash because SipHash showed in
/// translation profiles and these keys need no protection against chosen collisions (a
/// collision only costs a probe, see `series_index`).
fn label_hasher() -> foldhash::fast::FoldHasher<'static> {
    foldhash::fast::FixedState::with_seed(0x5eed).build_hasher()
}

/// `HashMap` keyed by an already computed hash.
type ByHash<V> = HashMap<u64, V, foldhash::fast::FixedState>;

fn hash_labels(labels: &[v1::Label]) -> u64 {
    let mut h = label_hasher();
    for l in labels {
        h.write(l.name.as_bytes());
        h.write_u8(0xff);
        h.write(l.value.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

fn ms(time_unix_nano: u64) -> i64 {
    (time_unix_nano / 1_000_000) as i64
}

fn is_stale(flags: u32) -> bool {
    flags & FLAG_NO_RECORDED_VALUE != 0
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().rev().find(|kv| kv.key == key)
}

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

impl<'o> Builder<'o> {
    fn new(opts: &'o TranslateOptions, tenant: Option<&str>, cache: SeriesCache) -> Builder<'o> {
        let mut h = label_hasher();
        tenant.hash(&mut h);
        Builder {
            opts,
            tenant_hash: h.finish(),
            cache,
            key: Vec::new(),
            series: Vec::new(),
            index: ByHash::default(),
            families: Vec::new(),
            family_index: HashMap::new(),
            dropped: BTreeMap::new(),
            pending_deltas: Vec::new(),
            target_info_series: Vec::new(),
        }
    }

    fn drop_points(&mut self, reason: &'static str, n: u64) {
        if n > 0 {
            *self.dropped.entry(reason).or_insert(0) += n;
        }
    }

    fn family(&mut self, name: &str, metric_type: MetricType, help: &str, unit: &str) -> usize {
        if let Some(&i) = self.family_index.get(name) {
            return i;
        }
        let i = self.families.len();
        self.families.push(Family {
            name: name.to_owned(),
            metric_type,
            help: help.to_owned(),
            unit: unit.to_owned(),
        });
        self.family_index.insert(name.to_owned(), i);
        i
    }

    fn series_index(&mut self, labels: Vec<v1::Label>, family: usize) -> usize {
        let hash = hash_labels(&labels);
        self.series_index_hashed(SeriesLabels::new(labels), hash, family)
    }

    /// [`Builder::series_index`] for labels whose hash is known.
    fn series_index_hashed(&mut self, labels: SeriesLabels, hash: u64, family: usize) -> usize {
        let mut key = hash;
        loop {
            match self.index.get(&key) {
                Some(&i) if self.series[i].labels == labels => return i,
                // Two label sets with one 64-bit hash: probe the next key.
                Some(_) => key = key.wrapping_add(1),
                None => break,
            }
        }
        let i = self.series.len();
        self.index.insert(key, i);
        self.series.push(Series {
            labels,
            hash,
            family,
            samples: Vec::new(),
            histograms: Vec::new(),
            exemplars: Vec::new(),
        });
        i
    }

    fn push_sample(&mut self, series: usize, timestamp: i64, value: f64, start: i64) {
        if let Some(s) = self.series.get_mut(series) {
            s.samples.push(v2::Sample {
                value,
                timestamp,
                start_timestamp: start,
            });
        }
    }

    fn resource(&mut self, rm: &raw::ResourceMetrics) {
        let attrs: &[KeyValue] = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let job = attr(attrs, SERVICE_NAME).map(|name| {
            let name = any_value_string(name.value.as_ref());
            match attr(attrs, SERVICE_NAMESPACE) {
                Some(ns) => format!("{}/{name}", any_value_string(ns.value.as_ref())),
                None => name,
            }
        });
        let instance =
            attr(attrs, SERVICE_INSTANCE_ID).map(|kv| any_value_string(kv.value.as_ref()));
        let promote = &self.opts.promote_resource_attributes;
        let promoted = if promote.is_empty() {
            Vec::new()
        } else {
            sanitize_attributes(attrs, |k| !promote.iter().any(|p| p == k))
        };
        let mut ctx = ResourceContext {
            job,
            instance,
            promoted,
            min_ms: None,
            max_ms: None,
        };
        for sm in &rm.scope_metrics {
            if sm
                .scope
                .as_ref()
                .is_some_and(|s| s.name == sluice_core::prometheus::PASSTHROUGH_SCOPE)
            {
                for metric in &sm.metrics {
                    // A metric that does not decode counts as one point: its points cannot be
                    // counted without decoding it.
                    match opentelemetry_proto::tonic::metrics::v1::Metric::decode(metric.clone()) {
                        Ok(metric) => self.passthrough(&mut ctx, &metric),
                        Err(_) => self.drop_points("decode_error", 1),
                    }
                }
                continue;
            }
            let scope_labels = if self.opts.include_scope_labels {
                scope_labels(sm.scope.as_ref(), &sm.schema_url)
            } else {
                Vec::new()
            };
            let context = self.cache.context(&context_key(&ctx, &scope_labels));
            for metric in &sm.metrics {
                match raw::Metric::decode(metric.clone()) {
                    Ok(metric) => self.metric(&mut ctx, &scope_labels, context, &metric),
                    // As above: one point for a metric that does not decode.
                    Err(_) => self.drop_points("decode_error", 1),
                }
            }
        }
        if self.opts.include_target_info {
            self.target_info(&ctx, attrs);
        }
    }

    /// The labels every series of a point gets before its `__name__` (and `le`/`quantile`).
    fn point_labels(
        &self,
        ctx: &ResourceContext,
        scope: &[v1::Label],
        attrs: &[KeyValue],
    ) -> LabelSet {
        let mut set = LabelSet::from_sorted(sanitize_attributes(attrs, |_| false));
        for l in &ctx.promoted {
            set.set_if_absent(&l.name, &l.value);
        }
        for l in scope {
            set.set(&l.name, &l.value);
        }
        if let Some(job) = &ctx.job {
            set.set("job", job);
        }
        if let Some(instance) = &ctx.instance {
            set.set("instance", instance);
        }
        for (name, value) in &self.opts.external_labels {
            set.set_if_absent(name, value);
        }
        set
    }

    /// Checks a point's timestamp; records the resource's time span for `target_info`.
    fn point_time(&mut self, ctx: &mut ResourceContext, time_unix_nano: u64) -> Option<i64> {
        if time_unix_nano == 0 {
            // Epoch-0 samples are refused by every backend, taking their request with them.
            self.drop_points("missing_timestamp", 1);
            return None;
        }
        let t = ms(time_unix_nano);
        ctx.min_ms = Some(ctx.min_ms.map_or(t, |m| m.min(t)));
        ctx.max_ms = Some(ctx.max_ms.map_or(t, |m| m.max(t)));
        Some(t)
    }

    fn target_info(&mut self, ctx: &ResourceContext, attrs: &[KeyValue]) {
        let (Some(min), Some(max)) = (ctx.min_ms, ctx.max_ms) else {
            return;
        };
        if ctx.job.is_none() && ctx.instance.is_none() {
            return;
        }
        let identifying =
            |k: &str| k == SERVICE_NAME || k == SERVICE_NAMESPACE || k == SERVICE_INSTANCE_ID;
        let other = sanitize_attributes(attrs, identifying);
        if other.is_empty() {
            return;
        }
        let mut set = LabelSet::from_sorted(other);
        if let Some(job) = &ctx.job {
            set.set("job", job);
        }
        if let Some(instance) = &ctx.instance {
            set.set("instance", instance);
        }
        for (name, value) in &self.opts.external_labels {
            set.set_if_absent(name, value);
        }
        let family = self.family("target_info", MetricType::Gauge, "Target metadata", "");
        let series = self.series_index(set.into_with(&[("__name__", "target_info")]), family);
        // A resource spanning days (stray old timestamps) would otherwise yield a flood.
        let earliest = max.saturating_sub(MAX_TARGET_INFO_REPEATS * TARGET_INFO_INTERVAL_MS);
        let mut t = min.max(earliest);
        while t < max {
            self.push_sample(series, t, 1.0, 0);
            t = t.saturating_add(TARGET_INFO_INTERVAL_MS);
        }
        self.push_sample(series, max, 1.0, 0);
        self.target_info_series.push(series);
    }

    fn finish(mut self, state: &mut State, now: Instant) -> Translation {
        state.cache = std::mem::take(&mut self.cache);
        self.apply_deltas(&mut state.deltas, now);
        for s in &mut self.series {
            sort_and_dedup(s);
        }
        self.guard_target_info(&mut state.target_info_sent, now);
        let series: Vec<Series> = self
            .series
            .into_iter()
            .filter(|s| !s.samples.is_empty() || !s.histograms.is_empty())
            .collect();
        Translation {
            series,
            families: self.families,
            dropped: self.dropped,
        }
    }

    fn apply_deltas(&mut self, acc: &mut DeltaAccumulator, now: Instant) {
        if self.pending_deltas.is_empty() {
            return;
        }
        acc.expire_idle(now);
        let mut pending = std::mem::take(&mut self.pending_deltas);
        // Totals must grow in time order per series, whatever order the items came in.
        pending.sort_by_key(|d| (d.series, d.time_ns));
        for d in pending {
            let Some(hash) = self.series.get(d.series).map(|s| s.hash) else {
                continue;
            };
            let key = hash ^ self.tenant_hash.rotate_left(1);
            let t = ms(d.time_ns);
            if d.stale {
                acc.end(key);
                self.push_sample(d.series, t, stale_nan(), 0);
                continue;
            }
            match acc.add(key, d.start_ns, d.time_ns, d.value, now) {
                Ok(total) => self.push_sample(d.series, t, total.total, total.start_ms),
                Err(refusal) => self.drop_points(refusal.reason(), 1),
            }
        }
    }

    fn guard_target_info(&mut self, sent: &mut HashMap<u64, (i64, Instant)>, now: Instant) {
        if self.target_info_series.is_empty() {
            return;
        }
        let expiry = self.opts.delta_series_expiry.max(Duration::from_secs(600));
        if sent.len() >= MAX_TARGET_INFO_SERIES {
            sent.retain(|_, (_, seen)| now.duration_since(*seen) <= expiry);
        }
        let mut indices = std::mem::take(&mut self.target_info_series);
        indices.sort_unstable();
        indices.dedup();
        for i in indices {
            let tenant_hash = self.tenant_hash;
            let Some(s) = self.series.get_mut(i) else {
                continue;
            };
            let key = s.hash ^ tenant_hash.rotate_left(2);
            if let Some((last, _)) = sent.get(&key) {
                let last = *last;
                s.samples.retain(|x| x.timestamp > last);
            }
            if let Some(newest) = s.samples.last().map(|x| x.timestamp)
                && (sent.len() < MAX_TARGET_INFO_SERIES || sent.contains_key(&key))
            {
                sent.insert(key, (newest, now));
            }
        }
    }
}

fn scope_labels(scope: Option<&InstrumentationScope>, schema_url: &str) -> Vec<v1::Label> {
    let mut set = LabelSet::default();
    if let Some(scope) = scope {
        for kv in &scope.attributes {
            if let Some(name) = naming::label_name(&format!("otel_scope_{}", kv.key)) {
                set.set(&name, &any_value_string(kv.value.as_ref()));
            }
        }
        set.set("otel_scope_name", &scope.name);
        set.set("otel_scope_version", &scope.version);
    }
    set.set("otel_scope_schema_url", schema_url);
    set.0
}

/// Sorts a series' samples by time and keeps the last of equal timestamps (a replayed or
/// repeated point), since a backend refuses two different values at one timestamp.
fn sort_and_dedup(s: &mut Series) {
    if !s.samples.is_sorted_by_key(|x| x.timestamp) {
        s.samples.sort_by_key(|x| x.timestamp);
    }
    s.samples.dedup_by(|later, earlier| {
        if later.timestamp == earlier.timestamp {
            *earlier = *later;
            true
        } else {
            false
        }
    });
    if !s.histograms.is_sorted_by_key(|x| x.histogram.timestamp) {
        s.histograms.sort_by_key(|x| x.histogram.timestamp);
    }
    s.histograms.dedup_by(|later, earlier| {
        if later.histogram.timestamp == earlier.histogram.timestamp {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });
    s.exemplars.sort_by_key(|e| e.timestamp);
}

#[cfg(test)]
mod cache_tests;
