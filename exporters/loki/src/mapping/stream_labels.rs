//! A record's stream labels: candidates in Alloy's merge order, then Loki's name and size
//! limits.

use super::attributes::{RecordAttrs, hint_names, lookup};
use super::{
    ADJ_DUPLICATE_LABEL_NAME, ADJ_INVALID_LABEL_NAME, ADJ_LABEL_NAME_TOO_LONG,
    ADJ_LABEL_VALUE_TRUNCATED, ADJ_MAX_LABEL_NAMES, ADJ_RESERVED_LABEL_NAME, HINT_RESOURCES,
    HINT_TENANT, LEVEL, MappingOptions, MappingReport, SERVICE_NAME,
};
use crate::labels::{is_valid_name, normalize_label, truncate_at_char};
use crate::otlp::KeyValue;
use crate::value::{as_string, get};

/// The labels a record asks for, in Alloy's merge order: the default labels, then the
/// resource hint and list, the attribute hint and list, then the tenant hint's attribute.
pub(super) fn candidate_labels(
    opts: &MappingOptions,
    res_attrs: &[KeyValue],
    rec: &RecordAttrs,
    attr_hint_names: &[String],
    level_active: bool,
) -> Candidates {
    let defaults = opts.default_labels;
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
    if let Some(kv) = get(rec.attrs, HINT_RESOURCES) {
        promote(&mut cands, &hint_names(kv.value.as_ref()), true);
    }
    promote(&mut cands, attr_hint_names, false);
    promote(&mut cands, &opts.attribute_labels, false);
    if let Some(kv) = get(res_attrs, HINT_TENANT) {
        promote(&mut cands, &hint_names(kv.value.as_ref()), true);
    } else if let Some(kv) = get(rec.attrs, HINT_TENANT) {
        promote(&mut cands, &hint_names(kv.value.as_ref()), false);
    }
    cands
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
pub(super) struct Candidates(Vec<Candidate>);

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

/// A candidate that passed Loki's name and value checks.
struct Label {
    name: String,
    value: String,
    source: Option<String>,
    rank: Option<u8>,
    /// Its attribute leaves the line (not when the value was truncated).
    removes_attr: bool,
}

/// `max_label_names` (`service_name` not counted): the default labels are kept first, then
/// by name.
fn limit_label_count(labels: &mut Vec<Label>, opts: &MappingOptions, report: &mut MappingReport) {
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
}

/// Normalizes names, drops what Loki would refuse and applies the label-count limit. Returns
/// the sorted labels and the attribute keys of labels that were kept (or were empty, which
/// Loki treats as absent) — those leave the line.
pub(super) fn fit_labels(
    opts: &MappingOptions,
    cands: Candidates,
    report: &mut MappingReport,
) -> (Vec<(String, String)>, Vec<String>) {
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
    limit_label_count(&mut labels, opts, report);
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
pub(super) fn add_external_labels(
    labels: &mut Vec<(String, String)>,
    external: &[(String, String)],
) {
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
