//! The OTLP receiver (`type = "otlp"`): OTLP/gRPC and OTLP/HTTP servers that check each request
//! with [`sluice_otlp::validate`] (or convert OTLP/JSON to protobuf) and hand it to the pipeline
//! as one [`sluice_core::Item`], answering with the status the OTLP specification defines for
//! the pipeline's verdict.

mod config;
mod decompress;
mod grpc;
mod http_server;
mod ingest;
mod server;

pub use config::{Config, GrpcConfig, HttpConfig, ValidationConfig};
/// The HTTP receiver's capped body decompression (public for the fuzz targets in `fuzz/`).
pub use decompress::{ContentEncoding, DecompressError, decompress};

use anyhow::{Context, anyhow};
use futures::future::BoxFuture;
use ingest::Ingest;
use sluice_core::{Receiver, ReceiverContext, ReceiverError};
use sluice_http_server::{Authenticator, Labels, Listener, tls};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;

/// The `type` of this receiver in the config file.
pub const TYPE_NAME: &str = "otlp";

/// A built OTLP receiver: its listeners are bound, serving starts in [`Receiver::run`].
pub struct OtlpReceiver {
    config: Config,
    grpc: Option<(TcpListener, SocketAddr)>,
    http: Option<(TcpListener, SocketAddr)>,
    grpc_tls: Option<tokio_rustls::TlsAcceptor>,
    http_tls: Option<tokio_rustls::TlsAcceptor>,
}

impl OtlpReceiver {
    /// The address the gRPC server is bound to (with the real port when `:0` was configured).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|(_, addr)| *addr)
    }

    /// The address the HTTP server is bound to.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(_, addr)| *addr)
    }
}

/// Checks `config` and binds its listeners, so an address in use fails here, naming it.
pub fn build(config: &Config, component_id: &str) -> anyhow::Result<OtlpReceiver> {
    config
        .validate()
        .map_err(|e| anyhow!("{component_id}: {e}"))?;
    let grpc = config
        .grpc
        .as_ref()
        .map(|grpc| bind(component_id, "grpc.endpoint", &grpc.endpoint))
        .transpose()?;
    let http = config
        .http
        .as_ref()
        .map(|http| bind(component_id, "http.endpoint", &http.endpoint))
        .transpose()?;
    // Certificates are read at start, so a bad file fails here, naming its key.
    let grpc_tls = config
        .grpc
        .as_ref()
        .and_then(|g| g.tls.as_ref())
        .map(|t| tls::acceptor(t, "grpc.", &[b"h2"]))
        .transpose()
        .map_err(|e| anyhow!("{component_id}: {e:#}"))?;
    let http_tls = config
        .http
        .as_ref()
        .and_then(|h| h.tls.as_ref())
        .map(|t| tls::acceptor(t, "http.", &[b"h2", b"http/1.1"]))
        .transpose()
        .map_err(|e| anyhow!("{component_id}: {e:#}"))?;
    Ok(OtlpReceiver {
        config: config.clone(),
        grpc,
        http,
        grpc_tls,
        http_tls,
    })
}

fn bind(
    component_id: &str,
    key: &str,
    endpoint: &str,
) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let addrs: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .with_context(|| format!("{component_id}: {key} {endpoint:?} does not resolve"))?
        .collect();
    let mut last_error = None;
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => {
                listener.set_nonblocking(true).with_context(|| {
                    format!("{component_id}: {key} {endpoint}: cannot make the socket non-blocking")
                })?;
                let bound = listener.local_addr().unwrap_or(addr);
                return Ok((listener, bound));
            }
            Err(e) => last_error = Some(e),
        }
    }
    let reason = last_error.map_or_else(|| "no address".to_owned(), |e| e.to_string());
    Err(anyhow!(
        "{component_id}: cannot listen on {endpoint} ({key}): {reason}"
    ))
}

impl Receiver for OtlpReceiver {
    fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.grpc_addr()
            .into_iter()
            .chain(self.http_addr())
            .collect()
    }

    fn run(self: Box<Self>, ctx: ReceiverContext) -> BoxFuture<'static, Result<(), ReceiverError>> {
        let OtlpReceiver {
            config,
            grpc: grpc_listener,
            http: http_listener,
            grpc_tls,
            http_tls,
        } = *self;
        Box::pin(async move {
            let ingest = Arc::new(Ingest {
                component_id: ctx.component_id.clone(),
                consumer: ctx.consumer.clone(),
                rules: config.validation.rules(),
                auth: config.auth.as_ref().map(Authenticator::new),
            });
            let tenant_header = config
                .tenant_header
                .as_deref()
                .and_then(|name| http::HeaderName::from_bytes(name.as_bytes()).ok());
            let limited = |listener: TcpListener, limits, tls, name| {
                Listener::new(listener, limits, tls, Labels::new(&ctx.component_id, name))
                    .map_err(|e| ReceiverError::new(format!("{name}.endpoint"), e))
            };
            let grpc_server = async {
                let (Some((listener, _)), Some(config)) = (grpc_listener, &config.grpc) else {
                    return Ok(());
                };
                let service = grpc::GrpcService {
                    ingest: ingest.clone(),
                    tenant_key: tenant_header.clone(),
                    max_recv_msg_size: config.max_recv_msg_size.as_usize(),
                };
                let limits = config.limits();
                let listener = limited(listener, limits, grpc_tls, "grpc")?;
                server::serve_grpc(listener, limits, service, ctx.clone()).await
            };
            let http_server = async {
                let (Some((listener, _)), Some(config)) = (http_listener, &config.http) else {
                    return Ok(());
                };
                let handler = Arc::new(http_server::HttpHandler {
                    ingest: ingest.clone(),
                    tenant_header: tenant_header.clone(),
                    max_request_body_size: config.max_request_body_size.as_usize(),
                    max_decompressed_size: config.max_decompressed_size.as_usize(),
                    decode_slots: http_server::decode_slots(),
                });
                let listener = limited(listener, config.limits(), http_tls, "http")?;
                server::serve_http(listener, handler, ctx.clone()).await
            };
            tokio::try_join!(grpc_server, http_server).map(|_| ())
        })
    }
}

impl sluice_core::ComponentConfig for Config {
    fn listen_endpoints(&self) -> Vec<(&'static str, &str)> {
        let grpc = self
            .grpc
            .iter()
            .map(|g| ("grpc.endpoint", g.endpoint.as_str()));
        let http = self
            .http
            .iter()
            .map(|h| ("http.endpoint", h.endpoint.as_str()));
        grpc.chain(http).collect()
    }
}
