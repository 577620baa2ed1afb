//! The watcher's self-metrics. Every series carries `component_id`.

pub const ALERTS_RECEIVED: &str = "sluice_watcher_alerts_received_total";
pub const WEBHOOK_REFUSED: &str = "sluice_watcher_webhook_refused_total";
pub const INVESTIGATIONS: &str = "sluice_watcher_investigations_total";
pub const INVESTIGATION_SECONDS: &str = "sluice_watcher_investigation_duration_seconds";
pub const ACTIONS: &str = "sluice_watcher_actions_total";
pub const ACTIONS_REFUSED: &str = "sluice_watcher_actions_refused_total";
pub const APPROVALS: &str = "sluice_watcher_approvals_total";
pub const APPROVALS_PENDING: &str = "sluice_watcher_approvals_pending";
pub const INCIDENTS: &str = "sluice_watcher_incidents_total";
pub const AUTONOMOUS_RATIO: &str = "sluice_watcher_autonomous_remediation_ratio";
pub const NOTIFY_ERRORS: &str = "sluice_watcher_notify_errors_total";

pub fn alert_received(c: &str, source: &'static str, status: &str, outcome: &'static str) {
    let status = match status {
        "firing" => "firing",
        "resolved" => "resolved",
        _ => "other",
    };
    metrics::counter!(ALERTS_RECEIVED, "component_id" => c.to_owned(), "source" => source,
        "status" => status, "outcome" => outcome)
    .increment(1);
}

pub fn webhook_refused(c: &str, reason: &'static str) {
    metrics::counter!(WEBHOOK_REFUSED, "component_id" => c.to_owned(), "reason" => reason)
        .increment(1);
}

pub fn investigation(c: &str, degraded: bool, seconds: f64) {
    let outcome = if degraded { "degraded" } else { "complete" };
    metrics::counter!(INVESTIGATIONS, "component_id" => c.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(INVESTIGATION_SECONDS, "component_id" => c.to_owned()).record(seconds);
}

pub fn action(c: &str, script: &str, outcome: &str) {
    metrics::counter!(ACTIONS, "component_id" => c.to_owned(), "script" => script.to_owned(),
        "outcome" => outcome.to_owned())
    .increment(1);
}

pub fn action_refused(c: &str, reason: &'static str) {
    metrics::counter!(ACTIONS_REFUSED, "component_id" => c.to_owned(), "reason" => reason)
        .increment(1);
}

pub fn approval(c: &str, state: &'static str) {
    metrics::counter!(APPROVALS, "component_id" => c.to_owned(), "state" => state).increment(1);
}

pub fn approvals_pending(c: &str, n: usize) {
    metrics::gauge!(APPROVALS_PENDING, "component_id" => c.to_owned()).set(n as f64);
}

pub fn incident_closed(c: &str, outcome: &'static str) {
    metrics::counter!(INCIDENTS, "component_id" => c.to_owned(), "outcome" => outcome).increment(1);
}

pub fn autonomous_ratio(c: &str, ratio: f64) {
    metrics::gauge!(AUTONOMOUS_RATIO, "component_id" => c.to_owned()).set(ratio);
}

pub fn notify_error(c: &str, target: &'static str) {
    metrics::counter!(NOTIFY_ERRORS, "component_id" => c.to_owned(), "target" => target)
        .increment(1);
}
