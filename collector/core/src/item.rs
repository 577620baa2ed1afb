use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The three OTLP signals a pipeline can carry.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// What one counted unit of this signal is called in metrics and messages.
    pub fn unit(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data_points",
            Signal::Logs => "log_records",
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Signal::Traces => 1,
            Signal::Metrics => 2,
            Signal::Logs => 3,
        }
    }

    pub fn from_u8(v: u8) -> Option<Signal> {
        match v {
            1 => Some(Signal::Traces),
            2 => Some(Signal::Metrics),
            3 => Some(Signal::Logs),
            _ => None,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One unit of work in a pipeline.
///
/// `payload` is always a protobuf-encoded OTLP `Export{Trace,Metrics,Logs}ServiceRequest` that a
/// receiver has already validated. Concatenating two such encodings yields a valid request holding
/// both, which is how traces are batched without decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub signal: Signal,
    /// Tenant (`X-Scope-OrgID`) the data belongs to, when the receiver knows one.
    pub tenant: Option<Arc<str>>,
    pub payload: Bytes,
    /// Spans, data points or log records inside `payload`.
    pub count: u32,
}

impl Item {
    pub fn new(signal: Signal, payload: Bytes, count: u32) -> Item {
        Item {
            signal,
            tenant: None,
            payload,
            count,
        }
    }

    pub fn with_tenant(mut self, tenant: Option<Arc<str>>) -> Item {
        self.tenant = tenant;
        self
    }
}
