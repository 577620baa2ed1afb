//! Building (binding, config errors) and stopping (stop accepting, finish in-flight requests).

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use sluice_core::Receiver;
use sluice_receiver_otlp::{Config, TYPE_NAME, build};
use std::time::Duration;

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

#[test]
fn type_name_is_otlp() {
    assert_eq!(TYPE_NAME, "otlp");
}

#[test]
fn an_address_in_use_fails_the_build_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();

    let err = build(
        &config(&format!("[grpc]\nendpoint = \"{addr}\"\n")),
        "receivers.otlp",
    )
    .err()
    .expect("the gRPC port is taken");
    let text = format!("{err:#}");
    assert!(text.contains(&addr), "{text}");
    assert!(text.contains("grpc.endpoint"), "{text}");
    assert!(text.contains("receivers.otlp"), "{text}");

    let err = build(
        &config(&format!(
            "[grpc]\nendpoint = \"127.0.0.1:0\"\n[http]\nendpoint = \"{addr}\"\n"
        )),
        "receivers.edge",
    )
    .err()
    .expect("the HTTP port is taken");
    let text = format!("{err:#}");
    assert!(
        text.contains(&addr) && text.contains("http.endpoint"),
        "{text}"
    );
}

#[test]
fn build_refuses_invalid_configs() {
    let err = build(
        &config("tenant_header = \"X-Scope-OrgID\"\n"),
        "receivers.otlp",
    )
    .err()
    .unwrap();
    assert!(
        format!("{err}").contains("neither `grpc` nor `http`"),
        "{err}"
    );
    let err = build(
        &config("[http]\nendpoint = \"nowhere\"\n"),
        "receivers.otlp",
    )
    .err()
    .unwrap();
    assert!(format!("{err}").contains("http.endpoint"), "{err}");
}

#[test]
fn only_the_configured_servers_listen() {
    let receiver = build(
        &config("[http]\nendpoint = \"localhost:0\"\n"),
        "receivers.otlp",
    )
    .unwrap();
    assert!(receiver.grpc_addr().is_none());
    let http = receiver.http_addr().unwrap();
    assert!(http.ip().is_loopback() && http.port() != 0);
    assert_eq!(receiver.listen_addrs(), vec![http]);
}

#[tokio::test]
async fn stop_finishes_in_flight_requests_then_stops_listening() {
    let consumer = TestConsumer::new();
    let rx = start(consumer.clone()).await;
    consumer.delay_by(Duration::from_millis(700));

    let http_url = rx.http_url("/v1/traces");
    let http_request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(http_url)
            .header("content-type", "application/x-protobuf")
            .body(traces(2).encode_to_vec())
            .send()
            .await
            .map(|r| r.status())
    });
    consumer.started.notified().await;
    let mut grpc_client = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    let grpc_request = tokio::spawn(async move { grpc_client.export(traces(3)).await });
    consumer.started.notified().await;

    // Both requests are inside the pipeline now; stopping must let them finish.
    rx.request_stop();
    assert_eq!(
        http_request.await.unwrap().unwrap(),
        reqwest::StatusCode::OK
    );
    assert!(grpc_request.await.unwrap().is_ok());
    let (grpc, http) = (rx.grpc, rx.http);
    rx.stop().await;
    assert_eq!(consumer.take().len(), 2);

    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
}
