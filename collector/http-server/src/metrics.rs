//! Self-metrics of a listener; every series carries `component_id` and `listener`.

use std::sync::Arc;

pub const CONNECTIONS_OPEN: &str = "sluice_listener_connections_open";
pub const CONNECTIONS_ACCEPTED: &str = "sluice_listener_connections_accepted_total";
pub const CONNECTIONS_REFUSED: &str = "sluice_listener_connections_refused_total";
pub const CONNECTIONS_CLOSED: &str = "sluice_listener_connections_closed_total";
pub const REQUESTS_UNAUTHENTICATED: &str = "sluice_listener_unauthenticated_requests_total";

/// The labels of one listener, e.g. `receivers.otlp` / `http`.
#[derive(Debug)]
pub struct Labels {
    pub component_id: Arc<str>,
    pub listener: &'static str,
}

impl Labels {
    pub fn new(component_id: &str, listener: &'static str) -> Arc<Labels> {
        Arc::new(Labels {
            component_id: Arc::from(component_id),
            listener,
        })
    }

    fn id(&self) -> String {
        self.component_id.to_string()
    }

    pub(crate) fn opened(&self) {
        metrics::gauge!(CONNECTIONS_OPEN, "component_id" => self.id(), "listener" => self.listener)
            .increment(1.0);
        metrics::counter!(CONNECTIONS_ACCEPTED, "component_id" => self.id(), "listener" => self.listener)
            .increment(1);
    }

    pub(crate) fn closed(&self) {
        metrics::gauge!(CONNECTIONS_OPEN, "component_id" => self.id(), "listener" => self.listener)
            .decrement(1.0);
    }

    /// A connection was turned away before serving anything: `connection_limit`,
    /// `tls_handshake`, `tls_handshake_timeout`.
    pub(crate) fn refused(&self, reason: &'static str) {
        metrics::counter!(CONNECTIONS_REFUSED, "component_id" => self.id(), "listener" => self.listener, "reason" => reason)
            .increment(1);
    }

    /// A connection was closed by the server: `idle_timeout`, `header_timeout`.
    pub(crate) fn closed_for(&self, reason: &'static str) {
        metrics::counter!(CONNECTIONS_CLOSED, "component_id" => self.id(), "listener" => self.listener, "reason" => reason)
            .increment(1);
    }

    /// A request was refused for its credentials (`auth_missing`, `auth_invalid`,
    /// `auth_wrong_tenant`).
    pub fn unauthenticated(&self, reason: &'static str) {
        metrics::counter!(REQUESTS_UNAUTHENTICATED, "component_id" => self.id(), "listener" => self.listener, "reason" => reason)
            .increment(1);
    }
}
