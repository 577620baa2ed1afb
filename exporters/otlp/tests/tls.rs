//! TLS to the backend: a TLS-terminating proxy (rcgen certificates) in front of the test
//! backend, reached over gRPC and HTTP.

use sluice_testkit::payloads as common;

use common::*;
use sluice_core::{Exporter, SendOutcome, Signal};
use sluice_exporter_otlp::otlp::{self, Config, Protocol, TlsConfig};
use sluice_testkit::otlp::OtlpTestServer;
use sluice_testkit::tls::{Pki, tls_proxy};
use std::net::SocketAddr;

const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

struct Setup {
    server: OtlpTestServer,
    grpc: SocketAddr,
    http: SocketAddr,
}

async fn setup(pki: &Pki, require_client_cert: bool) -> Setup {
    let server = OtlpTestServer::start().await;
    let grpc = tls_proxy(
        server.grpc_addr(),
        pki.server_config(require_client_cert, ALPN),
    )
    .await;
    let http = tls_proxy(
        server.http_addr(),
        pki.server_config(require_client_cert, ALPN),
    )
    .await;
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
