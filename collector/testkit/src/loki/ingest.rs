//! Validation and storage of received streams, as Loki's distributor and ingester do them.

use super::decode::{IncomingLabels, IncomingStream};
use super::labels::{LabelSyntaxError, parse_labels, valid_label_name};
use super::{LokiEntry, LokiServerOptions, State, StoredStream};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use thiserror::Error;

/// Why a stream or an entry was refused; the text is Loki's, as a 400 answer carries it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refused {
    #[error("Error parsing labels '{text}' with error: {source}")]
    LabelSyntax {
        text: String,
        source: LabelSyntaxError,
    },
    #[error("stream '{stream}' has duplicate label name: '{name}'")]
    DuplicateLabel { stream: String, name: String },
    #[error("error at least one label pair is required per stream")]
    NoLabels,
    #[error("entry for stream '{stream}' has {count} label names; limit {limit}")]
    TooManyLabels {
        stream: String,
        count: usize,
        limit: usize,
    },
    #[error("stream '{stream}' has label name too long: '{name}'")]
    LabelNameTooLong { stream: String, name: String },
    #[error("stream '{stream}' has label value too long: '{value}'")]
    LabelValueTooLong { stream: String, value: String },
    #[error(
        "Max entry size '{limit}' bytes exceeded for stream '{stream}' while adding an entry \
         with length '{len}' bytes"
    )]
    LineTooLong {
        stream: String,
        limit: usize,
        len: usize,
    },
    #[error(
        "entry for stream '{stream}' has timestamp too old: {timestamp_ns}, oldest acceptable \
         timestamp is: {oldest_ns}"
    )]
    TooOld {
        stream: String,
        timestamp_ns: i64,
        oldest_ns: i64,
    },
    #[error("entry for stream '{stream}' has timestamp too new: {timestamp_ns}")]
    TooNew { stream: String, timestamp_ns: i64 },
    #[error(
        "entry with timestamp {timestamp_ns} ignored, reason: 'entry too far behind, entry \
         timestamp is: {timestamp_ns}, oldest acceptable timestamp is: {cutoff_ns}', user \
         '{tenant}', for stream: {stream}"
    )]
    TooFarBehind {
        stream: String,
        tenant: String,
        timestamp_ns: i64,
        cutoff_ns: i64,
    },
}

/// Validates and stores streams as Loki's distributor + ingester do. Returns the number of
/// stored entries and what was refused (non-empty → 400).
pub(super) fn store(
    state: &mut State,
    options: &LokiServerOptions,
    tenant: &str,
    streams: Vec<IncomingStream>,
) -> (usize, Vec<Refused>) {
    let now = now_ns();
    let mut refused = Vec::new();
    let mut stored = 0;
    for s in streams {
        let labels = match stream_labels(options, s.labels) {
            Ok(l) => l,
            Err(e) => {
                refused.push(e);
                continue;
            }
        };
        let key = render_labels(
            &labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>(),
        );
        let stream = state
            .tenants
            .entry(tenant.to_owned())
            .or_default()
            .entry(key.clone())
            .or_insert_with(|| StoredStream {
                labels,
                entries: Vec::new(),
                newest_ns: i64::MIN,
                seen: HashSet::new(),
            });
        for e in s.entries {
            if let Err(why) = check_entry(options, now, stream.newest_ns, &e, &key, tenant) {
                refused.push(why);
                continue;
            }
            // Loki silently drops an exact duplicate (same time, same line).
            if !stream.seen.insert((e.timestamp_ns, e.line.clone())) {
                continue;
            }
            stream.newest_ns = stream.newest_ns.max(e.timestamp_ns);
            stream.entries.push(e);
            stored += 1;
        }
    }
    (stored, refused)
}

/// A stream's labels, parsed (label-string form) or checked (already split), then validated.
fn stream_labels(
    options: &LokiServerOptions,
    labels: IncomingLabels,
) -> Result<BTreeMap<String, String>, Refused> {
    let (text, parsed) = match labels {
        IncomingLabels::Text(t) => {
            let parsed = parse_labels(&t);
            (t, parsed)
        }
        IncomingLabels::Parsed(pairs) => {
            let text = render_labels(&pairs);
            let parsed = match pairs.iter().find(|(n, _)| !valid_label_name(n)) {
                Some((n, _)) => Err(LabelSyntaxError::InvalidName(n.clone())),
                None => Ok(pairs),
            };
            (text, parsed)
        }
    };
    match parsed {
        Ok(pairs) => validate_labels(options, &text, pairs),
        Err(source) => Err(Refused::LabelSyntax { text, source }),
    }
}

/// Loki's per-entry checks: line size, sample age, and the out-of-order window behind the
/// stream's newest entry (`newest_ns`).
fn check_entry(
    options: &LokiServerOptions,
    now: i64,
    newest_ns: i64,
    e: &LokiEntry,
    stream: &str,
    tenant: &str,
) -> Result<(), Refused> {
    let timestamp_ns = e.timestamp_ns;
    if options.max_line_size > 0 && e.line.len() > options.max_line_size {
        return Err(Refused::LineTooLong {
            stream: stream.to_owned(),
            limit: options.max_line_size,
            len: e.line.len(),
        });
    }
    if let Some(max_age) = options.reject_old_samples_max_age {
        let oldest_ns = now.saturating_sub(nanos(max_age));
        if timestamp_ns < oldest_ns {
            return Err(Refused::TooOld {
                stream: stream.to_owned(),
                timestamp_ns,
                oldest_ns,
            });
        }
    }
    if let Some(grace) = options.creation_grace_period
        && timestamp_ns > now.saturating_add(nanos(grace))
    {
        return Err(Refused::TooNew {
            stream: stream.to_owned(),
            timestamp_ns,
        });
    }
    let cutoff_ns = newest_ns.saturating_sub(nanos(options.out_of_order_window));
    if timestamp_ns < cutoff_ns {
        return Err(Refused::TooFarBehind {
            stream: stream.to_owned(),
            tenant: tenant.to_owned(),
            timestamp_ns,
            cutoff_ns,
        });
    }
    Ok(())
}

/// Loki's label validation (`validation.Validator.ValidateLabels`), after empty values are
/// removed as `syntax.ParseLabels` does.
fn validate_labels(
    options: &LokiServerOptions,
    text: &str,
    pairs: Vec<(String, String)>,
) -> Result<BTreeMap<String, String>, Refused> {
    let mut labels = BTreeMap::new();
    for (name, value) in pairs {
        if value.is_empty() {
            continue;
        }
        if labels.contains_key(&name) {
            return Err(Refused::DuplicateLabel {
                stream: text.to_owned(),
                name,
            });
        }
        labels.insert(name, value);
    }
    if labels.is_empty() {
        return Err(Refused::NoLabels);
    }
    let count = labels.len() - usize::from(labels.contains_key("service_name"));
    if count > options.max_label_names_per_series {
        return Err(Refused::TooManyLabels {
            stream: text.to_owned(),
            count,
            limit: options.max_label_names_per_series,
        });
    }
    for (name, value) in &labels {
        if name.len() > options.max_label_name_length {
            return Err(Refused::LabelNameTooLong {
                stream: text.to_owned(),
                name: name.clone(),
            });
        }
        if value.len() > options.max_label_value_length {
            return Err(Refused::LabelValueTooLong {
                stream: text.to_owned(),
                value: value.clone(),
            });
        }
    }
    Ok(labels)
}

/// Canonical rendering used as the stream key (sorted by name).
pub(super) fn render_labels(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    let inner: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Now, in Unix nanoseconds (what Loki compares sample ages with).
pub(super) fn now_ns() -> i64 {
    i64::try_from(sluice_core::time::now().as_nanosecond()).unwrap_or(i64::MAX)
}
