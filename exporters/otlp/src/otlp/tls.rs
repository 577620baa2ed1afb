//! Client TLS for both transports, built from one [`TlsConfig`] so that gRPC and HTTP verify
//! servers the same way (roots, client identity, `server_name`, `insecure_skip_verify`).

use super::config::TlsConfig;
use anyhow::Context as _;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Several rustls providers can be compiled in; pick ring explicitly so that building a config
/// never depends on a process-wide default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("tls.{key}: cannot read {}", path.display()))
}

fn parse_certs(pem: &[u8], path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.{key}: {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls.{key}: {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Client certificate chain and key, as PEM (for tonic) and parsed (for rustls).
pub(crate) struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

pub(crate) fn load_identity(tls: &TlsConfig) -> anyhow::Result<Option<ClientIdentity>> {
    let (Some(cert_path), Some(key_path)) = (&tls.cert_file, &tls.key_file) else {
        return Ok(None);
    };
    let cert_pem = read(cert_path, "cert_file")?;
    let key_pem = read(key_path, "key_file")?;
    let certs = parse_certs(&cert_pem, cert_path, "cert_file")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "tls.key_file: {} holds no usable private key: {e}",
            key_path.display()
        )
    })?;
    Ok(Some(ClientIdentity {
        cert_pem,
        key_pem,
        certs,
        key,
    }))
}

/// The verifier both transports use. It checks the chain against `ca_file` (or the webpki
/// roots) for the name the transport passes in; [`VerifyAs`] substitutes `server_name` where
/// the transport cannot be told another name.
pub(crate) fn verifier(
    tls: &TlsConfig,
    override_name: bool,
) -> anyhow::Result<Arc<dyn ServerCertVerifier>> {
    let provider = provider();
    if tls.insecure_skip_verify {
        return Ok(Arc::new(AcceptAnyCert(provider)));
    }
    let mut roots = RootCertStore::empty();
    if sluice_http_client::trusts_web_roots(tls.ca_file.as_deref()) {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &tls.ca_file {
        for cert in parse_certs(&read(path, "ca_file")?, path, "ca_file")? {
            roots.add(cert).with_context(|| {
                format!("tls.ca_file: {} has a bad certificate", path.display())
            })?;
        }
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .context("tls: cannot build the certificate verifier")?;
    match (&tls.server_name, override_name) {
        (Some(name), true) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| anyhow::anyhow!("tls.server_name: {name:?} is not a valid name"))?;
            Ok(Arc::new(VerifyAs {
                inner: webpki,
                name,
            }))
        }
        _ => Ok(webpki),
    }
}

/// rustls config for the HTTP client (reqwest takes it as is).
pub(crate) fn http_client_config(tls: &TlsConfig) -> anyhow::Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("tls: no usable protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier(tls, true)?);
    let mut config = match load_identity(tls)? {
        Some(id) => builder
            .with_client_auth_cert(id.certs, id.key)
            .context("tls: cert_file and key_file do not form a usable identity")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `insecure_skip_verify`: any certificate is accepted, but handshake signatures are still
/// checked so the connection is at least to the holder of the presented key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the certificate for a fixed name instead of the URL's host (`tls.server_name`
/// over HTTP, where reqwest always passes the URL's host).
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
