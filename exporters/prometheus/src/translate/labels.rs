//! Building a series' label set from its layers (OpenTelemetry specification, Prometheus and
//! OpenMetrics Compatibility, "Metric Attributes" and "Resource Attributes"), with Prometheus'
//! precedence: attributes < promoted resource attributes (only where absent) < scope labels <
//! `job`/`instance` < `__name__`/`le`/`quantile`; external labels only fill gaps.

use super::naming::{any_value_string, label_name};
use crate::remote_write::v1::Label;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use std::sync::{Arc, OnceLock};

/// Sanitises attribute keys and joins the values of keys that collide after sanitising with
/// `;`, in the byte order of the original keys (the spec's MUST). Keys that sanitise to
/// nothing are skipped. The result is sorted by name, without empty values.
pub fn sanitize_attributes(attrs: &[KeyValue], skip: impl Fn(&str) -> bool) -> Vec<Label> {
    let mut sorted: Vec<&KeyValue> = attrs.iter().filter(|kv| !skip(&kv.key)).collect();
    sorted.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    // The same key twice is invalid OTLP; keep only its last occurrence, as pdata would.
    sorted.dedup_by(|later, earlier| {
        if later.key == earlier.key {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });
    let mut out: Vec<Label> = Vec::with_capacity(sorted.len());
    for kv in sorted {
        let Some(name) = label_name(&kv.key) else {
            continue;
        };
        let value = any_value_string(kv.value.as_ref());
        match out.iter_mut().find(|l| l.name == name) {
            Some(existing) => {
                existing.value.push(';');
                existing.value.push_str(&value);
            }
            None => out.push(Label { name, value }),
        }
    }
    out.retain(|l| !l.value.is_empty());
    out.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    out
}

/// A label set under construction: sorted by name bytes, names unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSet(pub Vec<Label>);

impl LabelSet {
    pub fn from_sorted(labels: Vec<Label>) -> LabelSet {
        LabelSet(labels)
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|l| l.name.as_bytes().cmp(name.as_bytes()))
    }

    /// Sets `name`, replacing any existing value. An empty value removes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match (self.position(name), value.is_empty()) {
            (Ok(i), true) => {
                self.0.remove(i);
            }
            (Ok(i), false) => value.clone_into(&mut self.0[i].value),
            (Err(_), true) => {}
            (Err(i), false) => self.0.insert(
                i,
                Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                },
            ),
        }
    }

    /// Sets `name` only if it is not there yet.
    pub fn set_if_absent(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        if let Err(i) = self.position(name) {
            self.0.insert(
                i,
                Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                },
            );
        }
    }

    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| self.0[i].value.as_str())
    }

    /// The set with `extras` set (overriding), for a point with a single series: saves the
    /// copy [`LabelSet::with`] makes, which showed in translation profiles.
    pub fn into_with(mut self, extras: &[(&str, &str)]) -> Vec<Label> {
        for (name, value) in extras {
            self.set(name, value);
        }
        self.0
    }

    /// A copy with `extras` set (overriding), for one derived series (`__name__`, `le`, ...).
    pub fn with(&self, extras: &[(&str, &str)]) -> Vec<Label> {
        let mut out = LabelSet(Vec::with_capacity(self.0.len() + extras.len()));
        out.0.extend_from_slice(&self.0);
        for (name, value) in extras {
            out.set(name, value);
        }
        out.0
    }
}

/// A series' final label set, shared by the translator's series cache and every batch that
/// carries the series. It is kept as its remote-write 1.0 encoding, which is what requests are
/// written from and about a third of the memory of owned strings (the cache holds up to
/// 100,000 of these); the labels are decoded from it only where needed (RW2, tests).
#[derive(Clone)]
pub struct SeriesLabels(Arc<Shared>);

struct Shared {
    /// The labels as the `labels` entries (field 1) of an RW1 `TimeSeries`.
    v1: Box<[u8]>,
    decoded: OnceLock<Vec<Label>>,
}

impl SeriesLabels {
    pub fn new(labels: Vec<Label>) -> SeriesLabels {
        let mut v1 = Vec::new();
        for label in &labels {
            crate::remote_write::put_message(1, label, &mut v1);
        }
        SeriesLabels(Arc::new(Shared {
            v1: v1.into_boxed_slice(),
            decoded: OnceLock::new(),
        }))
    }

    /// The labels as the `labels` entries (field 1) of an RW1 `TimeSeries`, exactly as prost
    /// encodes them.
    pub fn v1_encoded(&self) -> &[u8] {
        &self.0.v1
    }
}

impl From<Vec<Label>> for SeriesLabels {
    fn from(labels: Vec<Label>) -> SeriesLabels {
        SeriesLabels::new(labels)
    }
}

impl std::ops::Deref for SeriesLabels {
    type Target = [Label];
    fn deref(&self) -> &[Label] {
        self.0.decoded.get_or_init(|| {
            use prost::Message;
            // The bytes were encoded from labels just above; they always decode.
            crate::remote_write::v1::TimeSeries::decode(&self.0.v1[..])
                .map(|ts| ts.labels)
                .unwrap_or_default()
        })
    }
}

/// Equal encodings are equal label sets: labels are sorted, names unique and values never
/// empty, so the encoding is one-to-one.
impl PartialEq for SeriesLabels {
    fn eq(&self, other: &SeriesLabels) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.v1 == other.0.v1
    }
}

impl std::fmt::Debug for SeriesLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

    /// A string attribute (shared by the translator's unit tests).
    pub(in crate::translate) fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn pairs(labels: &[Label]) -> Vec<(&str, &str)> {
        labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn collisions_join_in_original_key_order() {
        // "a.b" < "a/b" < "a_b" in byte order, whatever order they arrive in.
        let attrs = vec![kv("a_b", "3"), kv("a.b", "1"), kv("a/b", "2"), kv("z", "x")];
        let out = sanitize_attributes(&attrs, |_| false);
        assert_eq!(pairs(&out), vec![("a_b", "1;2;3"), ("z", "x")]);
    }

    #[test]
    fn empty_values_and_invalid_keys_are_dropped() {
        let attrs = vec![
            kv("empty", ""),
            kv("ключ", "v"),
            kv("Zone", "eu"),
            kv("__x", "1"),
        ];
        let out = sanitize_attributes(&attrs, |_| false);
        // `Zone` (0x5A) sorts before `_x` (0x5F).
        assert_eq!(pairs(&out), vec![("Zone", "eu"), ("_x", "1")]);
    }

    #[test]
    fn duplicate_keys_keep_the_last() {
        let attrs = vec![kv("k", "first"), kv("k", "second")];
        let out = sanitize_attributes(&attrs, |_| false);
        assert_eq!(pairs(&out), vec![("k", "second")]);
    }

    #[test]
    fn set_keeps_byte_order_and_overrides() {
        let mut set = LabelSet::from_sorted(sanitize_attributes(
            &[kv("job", "from-attr"), kv("b", "1")],
            |_| false,
        ));
        set.set("job", "svc");
        set.set_if_absent("b", "ignored");
        set.set_if_absent("Zone", "eu");
        let out = set.with(&[("__name__", "m"), ("le", "+Inf")]);
        assert_eq!(
            set.clone().into_with(&[("__name__", "m"), ("le", "+Inf")]),
            out
        );
        assert_eq!(
            pairs(&out),
            vec![
                ("Zone", "eu"),
                ("__name__", "m"),
                ("b", "1"),
                ("job", "svc"),
                ("le", "+Inf")
            ]
        );
        set.set("b", "");
        assert_eq!(set.get("b"), None);
    }

    #[test]
    fn series_labels_keep_only_the_encoding_and_read_back_the_same() {
        use prost::Message;
        let labels = sanitize_attributes(
            &[kv("__name__", "up"), kv("job", "a/b"), kv("ünï", "ço")],
            |_| false,
        );
        let shared = SeriesLabels::new(labels.clone());
        let encoded = crate::remote_write::v1::TimeSeries {
            labels: labels.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(shared.v1_encoded(), &encoded[..]);
        assert_eq!(&*shared, &labels[..]);
        assert_eq!(shared, SeriesLabels::new(labels.clone()));
        assert_ne!(shared, SeriesLabels::new(labels[..1].to_vec()));
        assert_eq!(format!("{shared:?}"), format!("{labels:?}"));
    }
}
