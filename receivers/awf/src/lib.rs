//! AWF workflow events: SSE client, push endpoint, conversion to OTLP, and a simulator of the
//! AWF API.
//!
//! * [`event`] — the `WorkflowEvent` model (lenient JSON parsing).
//! * [`sse`] — an incremental WHATWG Server-Sent Events parser.
//! * [`convert`] — events → OTLP spans, cumulative metrics and log records.
//! * [`receiver`] — the `type = "awf"` receiver component.
//! * [`sim`] — the AWF simulator behind `sluice awf-sim`.

pub mod aggregate;
pub mod attrs;
pub mod convert;
pub mod event;
pub mod ids;
pub mod redact;
pub mod sse;
pub mod time;
pub mod window;
