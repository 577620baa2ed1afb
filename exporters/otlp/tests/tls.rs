//! TLS to the backend: a TLS-terminating proxy (rcgen certificates) in front of the test
//! backend, reached over gRPC and HTTP.

use sluice_testkit::payloads as common;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sluice_core::{Exporter, SendOutcome, Signal};
use sluice_exporter_otlp::otlp::{self, Config, Protocol, TlsConfig};
use sluice_testkit::otlp::OtlpTestServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// A CA, a server certificate for `names` and a client certificate, written to a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl Pki {
    fn new(names: &[&str]) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Sluice Test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let server_cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&server_key, &*ca)
            .unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(vec!["sluice-client".to_string()]).unwrap();
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &*ca).unwrap();

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("client.pem"), client_cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca_der: ca.der().clone(),
            server_chain: vec![server_cert.der().clone()],
            server_key: server_key.serialize_der(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_config(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::try_from(self.server_key.clone()).unwrap();
        let mut config = builder
            .with_single_cert(self.server_chain.clone(), key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Terminates TLS and forwards the plaintext stream to `backend`.
async fn tls_proxy(backend: SocketAddr, config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut upstream) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                }
            });
        }
    });
    addr
}

struct Setup {
    server: OtlpTestServer,
    grpc: SocketAddr,
    http: SocketAddr,
}

async fn setup(pki: &Pki, require_client_cert: bool) -> Setup {
    let server = OtlpTestServer::start().await;
    let grpc = tls_proxy(server.grpc_addr(), pki.server_config(require_client_cert)).await;
    let http = tls_proxy(server.http_addr(), pki.server_config(require_client_cert)).await;
    Setup { server, grpc, http }
}

async fn send_via(setup: &Setup, protocol: Protocol, tls: Option<TlsConfig>) -> SendOutcome {
    let addr = match protocol {
        Protocol::Grpc => setup.grpc,
        Protocol::Http => setup.http,
    };
    let mut config = Config::new(format!("https://{addr}"));
    config.protocol = protocol;
    config.tls = tls;
    let exp = otlp::build(&config, "exporters.tls").expect("build");
    let b = batch(Signal::Traces, None, vec![trace_item(&traces("tls", 5, 2))]);
    let requests = exp.build_requests(&b);
    exp.send(&requests[0]).await
}

fn with_ca(pki: &Pki) -> TlsConfig {
    TlsConfig {
        ca_file: Some(pki.path("ca.pem")),
        ..Default::default()
    }
}

fn is_tls_failure(outcome: &SendOutcome) -> bool {
    matches!(
        outcome,
        SendOutcome::Retryable {
            reason: "connect" | "transport",
            ..
        }
    )
}

#[tokio::test]
async fn verified_tls_with_ca_file() {
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    let setup = setup(&pki, false).await;
    for protocol in [Protocol::Grpc, Protocol::Http] {
        assert_eq!(
            send_via(&setup, protocol, Some(with_ca(&pki))).await,
            SendOutcome::Sent,
            "{protocol:?}"
        );
        // Without our CA the webpki roots refuse the certificate: retryable, nothing sent.
        let outcome = send_via(&setup, protocol, None).await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Retryable {
                    reason: "connect",
                    ..
                }
            ),
            "{protocol:?}: {outcome:?}"
        );
        // insecure_skip_verify accepts it.
        let insecure = TlsConfig {
            insecure_skip_verify: true,
            ..Default::default()
        };
        assert_eq!(
            send_via(&setup, protocol, Some(insecure)).await,
            SendOutcome::Sent,
            "{protocol:?}"
        );
    }
    assert_eq!(setup.server.span_count(), 8);
}

#[tokio::test]
async fn server_name_overrides_the_endpoint_host() {
    let pki = Pki::new(&["otlp.test"]);
    let setup = setup(&pki, false).await;
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let outcome = send_via(&setup, protocol, Some(with_ca(&pki))).await;
        assert!(is_tls_failure(&outcome), "{protocol:?}: {outcome:?}");
        let named = TlsConfig {
            server_name: Some("otlp.test".into()),
            ..with_ca(&pki)
        };
        assert_eq!(
            send_via(&setup, protocol, Some(named)).await,
            SendOutcome::Sent,
            "{protocol:?}"
        );
    }
    assert_eq!(setup.server.span_count(), 4);
}

#[tokio::test]
async fn client_certificate_for_mutual_tls() {
    let pki = Pki::new(&["127.0.0.1"]);
    let setup = setup(&pki, true).await;
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let outcome = send_via(&setup, protocol, Some(with_ca(&pki))).await;
        assert!(is_tls_failure(&outcome), "{protocol:?}: {outcome:?}");
        let mtls = TlsConfig {
            cert_file: Some(pki.path("client.pem")),
            key_file: Some(pki.path("client.key")),
            ..with_ca(&pki)
        };
        assert_eq!(
            send_via(&setup, protocol, Some(mtls)).await,
            SendOutcome::Sent,
            "{protocol:?}"
        );
    }
    assert_eq!(setup.server.span_count(), 4);
}

#[tokio::test]
async fn missing_tls_files_fail_the_build_naming_the_key() {
    let mut config = Config::new("https://127.0.0.1:1");
    config.tls = Some(TlsConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    });
    for protocol in [Protocol::Grpc, Protocol::Http] {
        config.protocol = protocol;
        let err = otlp::build(&config, "exporters.t").err().expect("error");
        assert!(format!("{err:#}").contains("tls.ca_file"), "{err:#}");
    }
}
