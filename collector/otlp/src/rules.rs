//! Intake validation: what the backends are known to refuse, checked per item so one bad span,
//! log record or data point is refused alone instead of taking its request (and the batch it
//! would be merged into) down. The rules are documented in `docs/validation.md`.

use crate::{Signal, root};
use std::fmt;
use std::time::Duration;

/// The intake rules' settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Timestamps later than now plus this are refused (Mimir's and Loki's
    /// `creation_grace_period` defaults to 10 minutes).
    pub max_future: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_future: Duration::from_secs(10 * 60),
        }
    }
}

impl Rules {
    pub(crate) fn limits(&self) -> crate::walk::Limits {
        let max_future = u64::try_from(self.max_future.as_nanos()).unwrap_or(u64::MAX);
        crate::walk::Limits {
            latest_ns: sluice_core::time::now_unix_nanos().saturating_add(max_future),
        }
    }
}

/// The `reason` label of a refused item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    InvalidTraceId = 0,
    InvalidSpanId = 1,
    FutureTimestamp = 2,
    InvalidMetricName = 3,
    InvalidLabelName = 4,
}

impl Reason {
    pub const COUNT: usize = 5;
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::InvalidTraceId,
        Reason::InvalidSpanId,
        Reason::FutureTimestamp,
        Reason::InvalidMetricName,
        Reason::InvalidLabelName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidTraceId => "invalid_trace_id",
            Reason::InvalidSpanId => "invalid_span_id",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::InvalidMetricName => "invalid_metric_name",
            Reason::InvalidLabelName => "invalid_label_name",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProblemKind {
    MissingId,
    ZeroId,
    FutureTimestamp,
    MetricName,
    LabelName,
}

/// The first problem of a refused item, located in the request without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    pub(crate) kind: ProblemKind,
    pub(crate) field: &'static str,
    /// Index of the item in the request (0-based, in wire order).
    pub(crate) item: u32,
    /// Offending bytes in the request, for the message.
    pub(crate) at: usize,
    pub(crate) len: usize,
}

impl Problem {
    pub fn reason(&self) -> Reason {
        match self.kind {
            ProblemKind::MissingId | ProblemKind::ZeroId if self.field == "trace_id" => {
                Reason::InvalidTraceId
            }
            ProblemKind::MissingId | ProblemKind::ZeroId => Reason::InvalidSpanId,
            ProblemKind::FutureTimestamp => Reason::FutureTimestamp,
            ProblemKind::MetricName => Reason::InvalidMetricName,
            ProblemKind::LabelName => Reason::InvalidLabelName,
        }
    }

    /// An English description for `error_message`, quoting the offending value from `buf`
    /// (the request that was checked).
    pub fn describe(&self, signal: Signal, buf: &[u8], rules: &Rules) -> String {
        let value = buf.get(self.at..self.at + self.len).unwrap_or_default();
        let what = match signal {
            Signal::Traces => "span",
            Signal::Metrics => "data point",
            Signal::Logs => "log record",
        };
        let field = self.field;
        let detail = match self.kind {
            ProblemKind::MissingId => format!("{field} is missing"),
            ProblemKind::ZeroId => format!("{field} is all zeros"),
            ProblemKind::FutureTimestamp => {
                let mut le = [0u8; 8];
                if value.len() == 8 {
                    le.copy_from_slice(value);
                }
                format!(
                    "{field} {} is more than {}s in the future",
                    u64::from_le_bytes(le),
                    rules.max_future.as_secs()
                )
            }
            ProblemKind::MetricName => format!(
                "metric name {:?} has no letter, digit or colon, so it has no Prometheus name",
                String::from_utf8_lossy(value)
            ),
            ProblemKind::LabelName => format!(
                "attribute key {:?} has no letter or digit, so it has no Prometheus label name",
                String::from_utf8_lossy(value)
            ),
        };
        format!("{what} {} refused: {detail}", self.item)
    }
}

/// The verdict of [`check`] on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Items in the request.
    pub items: u32,
    /// Items refused by the rules.
    pub rejected: u32,
    /// The first refused item's problem.
    pub first: Option<Problem>,
    /// Refused items per [`Reason`] (indexed by `Reason as usize`).
    pub by_reason: [u32; Reason::COUNT],
    /// The limits applied, so [`filter`] refuses exactly the same items.
    pub(crate) limits: crate::walk::Limits,
}

impl Checked {
    /// Refusal counts by reason, skipping zeros.
    pub fn reasons(&self) -> impl Iterator<Item = (Reason, u32)> + '_ {
        Reason::ALL
            .into_iter()
            .map(|r| (r, self.by_reason[r as usize]))
            .filter(|(_, n)| *n > 0)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Like [`crate::validate`] (same wire checks, one pass, no allocation) and also applies the
/// intake rules to every item: span trace and span ids present and not all zeros; ids of log
/// records, links and exemplars not all zeros when present; timestamps not past
/// `rules.max_future`; metric names and data point attribute keys that have a Prometheus name.
pub fn check(signal: Signal, buf: &[u8], rules: &Rules) -> Result<Checked, crate::WireError> {
    let (schema, name) = root(signal);
    crate::walk::check(schema, buf, rules.limits()).map_err(|e| e.with_root(name))
}

/// Re-encodes `buf` without the items [`check`] refused (`checked` is its verdict on `buf`).
/// Only for requests where something was refused: it allocates and copies.
pub fn filter(signal: Signal, buf: &[u8], checked: &Checked) -> Result<Vec<u8>, crate::WireError> {
    let (schema, name) = root(signal);
    crate::walk::filter(schema, buf, checked.limits).map_err(|e| e.with_root(name))
}

/// A metric name Prometheus can use after the OTLP translation (which replaces characters
/// outside `[a-zA-Z0-9:]`, refusing names left empty: see docs/validation.md).
pub(crate) fn metric_name_ok(name: &[u8]) -> bool {
    name.iter().any(|b| b.is_ascii_alphanumeric() || *b == b':')
}

/// A label name Prometheus can use after the OTLP translation (characters outside
/// `[a-zA-Z0-9]` become `_`; a name left empty or all `_` is refused).
pub(crate) fn label_name_ok(key: &[u8]) -> bool {
    key.iter().any(|b| b.is_ascii_alphanumeric())
}
