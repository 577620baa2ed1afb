//! AWF workflow events: SSE client, push endpoint, conversion to OTLP. The simulator of the
//! AWF API is a separate tool, `tools/awf-sim`; the SSE parser is `sluice_http_client::sse`.
//!
//! * [`event`] — the `WorkflowEvent` model (lenient JSON parsing).
//! * [`convert`] — events → OTLP spans, cumulative metrics and log records.
//! * [`receiver`] — the `type = "awf"` receiver component ([`build`]).

pub mod aggregate;
pub mod attrs;
pub mod config;
pub mod convert;
pub mod deliver;
pub mod discovery;
pub mod event;
pub mod ids;
pub mod push;
pub mod receiver;
pub mod redact;
pub mod seen_set;
pub mod stream;
// Not a calendar (that is `sluice_core::time`, on jiff): AWF's own timestamp forms, epoch
// numbers of guessed unit and RFC 3339 strings as Unix nanoseconds.
mod time;

pub use receiver::{AwfReceiver, Config, SIGNALS, TYPE_NAME, build};

impl sluice_core::ComponentConfig for Config {
    fn listen_endpoints(&self) -> Vec<(&'static str, &str)> {
        self.push
            .iter()
            .map(|p| ("push.endpoint", p.endpoint.as_str()))
            .collect()
    }
}
