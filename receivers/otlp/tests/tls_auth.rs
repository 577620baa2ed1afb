//! Server TLS, client certificates (mTLS) and bearer/basic auth per tenant, with real clients:
//! tonic over gRPC and reqwest over HTTP, against certificates made at test time (rcgen).

mod common;

use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use sluice_testkit::tls::Pki;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A CA with a server certificate for localhost and a client certificate, as PEM files.
fn pki() -> Pki {
    Pki::new(&["localhost", "127.0.0.1"])
}

fn read(pki: &Pki, name: &str) -> String {
    std::fs::read_to_string(pki.path(name)).unwrap()
}

fn recorder() -> PrometheusHandle {
    PrometheusBuilder::new()
        .install_recorder()
        .expect("install the metrics recorder")
}

fn counted(handle: &PrometheusHandle, name: &str, labels: &[&str]) -> f64 {
    handle
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn config(server: &Pki) -> String {
    let tls = format!(
        "tls = {{ cert_file = {:?}, key_file = {:?}, client_ca_file = {:?} }}",
        server.path("server.pem"),
        server.path("server.key"),
        server.path("ca.pem")
    );
    format!(
        "tenant_header = \"X-Scope-OrgID\"\n\
         [grpc]\nendpoint = \"127.0.0.1:0\"\n{tls}\n\
         [http]\nendpoint = \"127.0.0.1:0\"\n{tls}\n\
         [auth]\nbearer_token = \"all-tenants-token\"\n\
         [auth.tenants.team-a]\nbasic_auth = {{ username = \"team-a\", password = \"pa\" }}\n"
    )
}

/// A client trusting `server`'s CA, presenting `identity`'s client certificate if given.
fn https_client(server: &Pki, identity: Option<&Pki>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(read(server, "ca.pem").as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca);
    if let Some(identity) = identity {
        let pem = read(identity, "client.pem") + &read(identity, "client.key");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn grpc_client(
    server: &Pki,
    port: u16,
    identity: &Pki,
) -> Result<TraceServiceClient<Channel>, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(server, "ca.pem")))
        .identity(Identity::from_pem(
            read(identity, "client.pem"),
            read(identity, "client.key"),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(TraceServiceClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_and_credentials_per_tenant() {
    let metrics = recorder();
    let (good, rogue) = (pki(), pki());
    let component = "receivers.secure";
    let rx = start_config(TestConsumer::new(), component, &config(&good)).await;
    let url = format!("https://localhost:{}/v1/traces", rx.http.port());
    let body = traces(2).encode_to_vec();
    let post = |client: &reqwest::Client| {
        client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
    };

    // HTTP: a trusted client certificate plus the all-tenants token.
    let client = https_client(&good, Some(&good));
    let ok = post(&client)
        .bearer_auth("all-tenants-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Tenant credentials are good for their tenant only.
    let team_a = post(&client)
        .basic_auth("team-a", Some("pa"))
        .header("X-Scope-OrgID", "team-a");
    assert_eq!(team_a.send().await.unwrap().status(), 200);
    let team_b = post(&client)
        .basic_auth("team-a", Some("pa"))
        .header("X-Scope-OrgID", "team-b");
    let refused = team_b.send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    let status = sluice_otlp::rpc::Status::decode(refused.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 16, "UNAUTHENTICATED");
    assert_eq!(post(&client).send().await.unwrap().status(), 401);
    assert_eq!(
        post(&client)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let tenants: Vec<Option<String>> = rx
        .consumer
        .take()
        .iter()
        .map(|i| i.tenant.as_deref().map(str::to_owned))
        .collect();
    assert_eq!(
        tenants,
        vec![None, Some("team-a".to_owned())],
        "only the authorized requests arrived"
    );

    // No client certificate, or one from another CA: the handshake is refused.
    assert!(
        post(&https_client(&good, None))
            .bearer_auth("all-tenants-token")
            .send()
            .await
            .is_err()
    );
    assert!(
        post(&https_client(&good, Some(&rogue)))
            .bearer_auth("all-tenants-token")
            .send()
            .await
            .is_err()
    );
    // Plain HTTP to the TLS port is not served either.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", rx.http.port()))
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    // gRPC: the same rules.
    let mut grpc = grpc_client(&good, rx.grpc.port(), &good).await.unwrap();
    let mut request = tonic::Request::new(traces(3));
    request
        .metadata_mut()
        .insert("authorization", "Bearer all-tenants-token".parse().unwrap());
    grpc.export(request).await.unwrap();
    let denied = grpc.export(traces(1)).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    let mut wrong_tenant = tonic::Request::new(traces(1));
    wrong_tenant.metadata_mut().insert(
        "authorization",
        format!("Basic {}", base64_pair("team-a", "pa"))
            .parse()
            .unwrap(),
    );
    wrong_tenant
        .metadata_mut()
        .insert("x-scope-orgid", "team-b".parse().unwrap());
    assert_eq!(
        grpc.export(wrong_tenant).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let rogue_refused = match grpc_client(&good, rx.grpc.port(), &rogue).await {
        Ok(mut client) => client.export(traces(1)).await.is_err(),
        Err(_) => true,
    };
    assert!(rogue_refused, "a certificate from another CA was accepted");
    let counts: Vec<u32> = rx.consumer.take().iter().map(|i| i.count).collect();
    assert_eq!(counts, vec![3]);

    // Refusals are counted by reason.
    let refused = |reason: &str| {
        counted(
            &metrics,
            "sluice_receiver_refused_items_total",
            &[
                &format!("component_id=\"{component}\""),
                &format!("reason=\"{reason}\""),
            ],
        )
    };
    assert!(refused("auth_missing") >= 2.0);
    assert!(refused("auth_invalid") >= 1.0);
    assert!(refused("auth_wrong_tenant") >= 2.0);
    let handshakes = counted(
        &metrics,
        "sluice_listener_connections_refused_total",
        &[
            &format!("component_id=\"{component}\""),
            "reason=\"tls_handshake\"",
        ],
    );
    assert!(handshakes >= 3.0, "{handshakes}");
    rx.stop().await;
}

fn base64_pair(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn bad_tls_files_fail_the_build_naming_the_key() {
    let text = "[http]\nendpoint = \"127.0.0.1:0\"\ntls = { cert_file = \"/nonexistent/cert.pem\", key_file = \"/nonexistent/key.pem\" }\n";
    let config: sluice_receiver_otlp::Config = toml::from_str(text).unwrap();
    let err = sluice_receiver_otlp::build(&config, "receivers.otlp")
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("http.tls.cert_file") && text.contains("/nonexistent/cert.pem"),
        "{text}"
    );
    let config: sluice_receiver_otlp::Config =
        toml::from_str("tenant_header = \"X\"\n[grpc]\n[auth.tenants.a]\n").unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.starts_with("auth.tenants.a"), "{err}");
}
