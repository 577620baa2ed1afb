//! Server TLS from PEM files, optionally requiring client certificates (mutual TLS).

use crate::config::ServerTlsConfig;
use anyhow::{Context, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;

/// Builds the acceptor; errors name the key (`<prefix>tls.cert_file`, ...) and the file.
/// `alpn` lists the protocols offered, most preferred first (e.g. `h2`, `http/1.1`).
pub fn acceptor(
    config: &ServerTlsConfig,
    prefix: &str,
    alpn: &[&[u8]],
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| anyhow!("{prefix}tls.cert_file: {}: {e}", config.cert_file.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "{prefix}tls.cert_file: {} holds no PEM certificate",
            config.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| anyhow!("{prefix}tls.key_file: {}: {e}", config.key_file.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &config.client_ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow!("{prefix}tls.client_ca_file: {}: {e}", path.display()))?;
            for ca in cas {
                roots
                    .add(ca)
                    .map_err(|e| anyhow!("{prefix}tls.client_ca_file: {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(anyhow!(
                    "{prefix}tls.client_ca_file: {} holds no PEM certificate",
                    path.display()
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| anyhow!("{prefix}tls.client_ca_file: {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| {
        anyhow!(
            "{prefix}tls: {} does not fit {}: {e}",
            config.key_file.display(),
            config.cert_file.display()
        )
    })?;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}
