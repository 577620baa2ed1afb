//! Inbound listener machinery shared by every HTTP and gRPC server of Sluice (the OTLP
//! receiver, the AWF push endpoint, the admin and webhook servers):
//!
//! * [`ConnectionLimits`]: a header-read timeout, an idle timeout and a connection limit, so
//!   slow or half-open clients cannot hold the server's connections or memory;
//! * server TLS with optional client certificates ([`tls::acceptor`]);
//! * bearer/basic client authentication, per tenant ([`auth::Authenticator`]);
//! * counters of what was refused and why ([`metrics`]).

pub mod auth;
pub mod config;
mod conn;
pub mod metrics;
mod serve;
pub mod tls;

pub use auth::{AuthRefusal, Authenticator};
pub use config::{
    BasicCredentials, ConnectionLimits, Credentials, ServerAuthConfig, ServerTlsConfig,
};
pub use conn::ServerIo;
pub use hyper_util::service::TowerToHyperService;
pub use metrics::Labels;
pub use serve::{Listener, serve_http};
