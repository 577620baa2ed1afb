//! Names and helpers for Sluice's self-metrics, so every component reports the same way.
//!
//! Every series carries `component_id` (`receivers.otlp`, `exporters.tempo`, ...). Every drop or
//! refusal carries a `reason`.

use crate::item::Signal;
use std::time::Duration;

pub const RECEIVER_ACCEPTED: &str = "sluice_receiver_accepted_items_total";
pub const RECEIVER_REFUSED: &str = "sluice_receiver_refused_items_total";
pub const RECEIVER_REQUESTS: &str = "sluice_receiver_requests_total";
pub const RECEIVER_DURATION: &str = "sluice_receiver_request_duration_seconds";
pub const PROCESSOR_DROPPED: &str = "sluice_processor_dropped_items_total";
pub const EXPORTER_SENT: &str = "sluice_exporter_sent_items_total";
pub const EXPORTER_SENT_REQUESTS: &str = "sluice_exporter_sent_requests_total";
pub const EXPORTER_RETRIES: &str = "sluice_exporter_retries_total";
pub const EXPORTER_DROPPED: &str = "sluice_exporter_dropped_items_total";
pub const EXPORTER_DURATION: &str = "sluice_exporter_send_duration_seconds";
pub const EXPORTER_BATCH_ITEMS: &str = "sluice_exporter_batch_items";

/// A receiver accepted `n` items of `signal`.
pub fn receiver_accepted(component_id: &str, signal: Signal, n: u64) {
    metrics::counter!(RECEIVER_ACCEPTED, "component_id" => component_id.to_owned(), "signal" => signal.as_str()).increment(n);
}

/// A receiver refused `n` items (or one request whose items it could not count) for `reason`.
pub fn receiver_refused(component_id: &str, signal: Option<Signal>, reason: &'static str, n: u64) {
    let signal = signal.map(Signal::as_str).unwrap_or("unknown");
    metrics::counter!(RECEIVER_REFUSED, "component_id" => component_id.to_owned(), "signal" => signal, "reason" => reason)
        .increment(n);
}

/// One request answered by a receiver, by protocol and status.
pub fn receiver_request(
    component_id: &str,
    protocol: &'static str,
    status: String,
    took: Duration,
) {
    metrics::counter!(RECEIVER_REQUESTS, "component_id" => component_id.to_owned(), "protocol" => protocol, "status" => status)
        .increment(1);
    metrics::histogram!(RECEIVER_DURATION, "component_id" => component_id.to_owned(), "protocol" => protocol)
        .record(took.as_secs_f64());
}

/// A processor dropped `n` items deliberately.
pub fn processor_dropped(component_id: &str, reason: &'static str, n: u64) {
    metrics::counter!(PROCESSOR_DROPPED, "component_id" => component_id.to_owned(), "reason" => reason).increment(n);
}

/// An exporter dropped `n` items for good (conversion impossible, backend refusal, expiry).
pub fn exporter_dropped(component_id: &str, signal: Signal, reason: &'static str, n: u64) {
    metrics::counter!(EXPORTER_DROPPED, "component_id" => component_id.to_owned(), "signal" => signal.as_str(), "reason" => reason)
        .increment(n);
}
