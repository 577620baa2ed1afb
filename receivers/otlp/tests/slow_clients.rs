//! Slow and idle clients: thousands of connections that never finish their headers, or send
//! nothing, do not keep a normal client from being served; the header-read and idle timeouts
//! close them; the connection limit refuses the excess with a clear answer, counted.

mod common;

use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections held open by the first test: HTTP slowloris + silent HTTP + silent gRPC.
const SLOW_CONNECTIONS: usize = 3000;
/// Upper bound for things that must happen "eventually" (a liveness bound, not a measure).
const EVENTUALLY: Duration = Duration::from_secs(60);

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("install the metrics recorder")
    })
}

/// The value of the series of `name` whose labels include every `labels` pair.
fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = recorder().render();
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Each test process may hold as many sockets as its hard limit allows.
fn raise_open_file_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            limit.rlim_cur = needed.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
    }
    assert!(
        limit.rlim_cur >= needed,
        "this test needs {needed} open files; the hard limit is {}",
        limit.rlim_max
    );
}

async fn connect(addr: SocketAddr) -> TcpStream {
    for _ in 0..100 {
        match TcpStream::connect(addr).await {
            Ok(stream) => return stream,
            // The accept backlog may be briefly full while thousands connect at once.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("cannot connect to {addr}");
}

/// Opens `n` connections to `addr`, each sending `prefix` (possibly nothing) and then holding.
async fn hold(addr: SocketAddr, n: usize, prefix: &'static [u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(100) {
        let batch = (chunk * 100..n.min(chunk * 100 + 100)).map(|_| async move {
            let mut stream = connect(addr).await;
            stream.write_all(prefix).await.unwrap();
            stream
        });
        held.extend(futures::future::join_all(batch).await);
    }
    held
}

/// Waits until the server closes `stream` (EOF or reset); `false` if it stays open.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(EVENTUALLY, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

async fn export_http(rx: &Running) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(rx.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(traces(3).encode_to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

const SLOWLORIS: &[u8] =
    b"POST /v1/traces HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/x-protobuf\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_slow_connections_while_a_normal_client_is_served() {
    recorder();
    raise_open_file_limit(2 * SLOW_CONNECTIONS as u64 + 1000);
    let component = "receivers.slow";
    let rx = start_config(
        TestConsumer::new(),
        component,
        "[grpc]\nendpoint = \"127.0.0.1:0\"\n[http]\nendpoint = \"127.0.0.1:0\"\n",
    )
    .await;

    let third = SLOW_CONNECTIONS / 3;
    let mut held = hold(rx.http, third, SLOWLORIS).await;
    held.extend(hold(rx.http, third, b"").await);
    held.extend(hold(rx.grpc, SLOW_CONNECTIONS - 2 * third, b"").await);

    // Every slow connection was accepted and is being held...
    let open = |listener| {
        metric(
            "sluice_listener_connections_open",
            &[("component_id", component), ("listener", listener)],
        )
    };
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while open("http") + open("grpc") < SLOW_CONNECTIONS as f64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} + {} connections accepted",
            open("http"),
            open("grpc")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // ...and normal clients of both protocols are served meanwhile.
    assert_eq!(export_http(&rx).await, reqwest::StatusCode::OK);
    let mut client = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    client.export(traces(2)).await.unwrap();
    let counts: Vec<u32> = rx.consumer.take().iter().map(|i| i.count).collect();
    assert_eq!(counts.len(), 2, "both exports arrived: {counts:?}");
    assert!(counts.contains(&3) && counts.contains(&2), "{counts:?}");

    // The slow ones are still held (the defaults give them a minute), not refused.
    assert_eq!(
        metric(
            "sluice_listener_connections_refused_total",
            &[("component_id", component)]
        ),
        0.0
    );
    drop(held);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_and_idle_timeouts_close_slow_connections() {
    recorder();
    let component = "receivers.timeouts";
    let rx = start_config(
        TestConsumer::new(),
        component,
        "[grpc]\nendpoint = \"127.0.0.1:0\"\nidle_timeout = \"1s\"\n[http]\nendpoint = \"127.0.0.1:0\"\nread_header_timeout = \"1s\"\nidle_timeout = \"3s\"\n",
    )
    .await;
    let mut slowloris = hold(rx.http, 20, SLOWLORIS).await;
    let mut silent_http = hold(rx.http, 20, b"").await;
    let mut silent_grpc = hold(rx.grpc, 20, b"").await;
    let all = slowloris
        .iter_mut()
        .chain(&mut silent_http)
        .chain(&mut silent_grpc);
    for stream in all {
        assert!(
            closed_by_server(stream).await,
            "a slow connection stayed open"
        );
    }

    // A keep-alive connection that served a request and then went quiet is closed too.
    let mut idle = connect(rx.http).await;
    let body = traces(1).encode_to_vec();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    idle.write_all(head.as_bytes()).await.unwrap();
    idle.write_all(&body).await.unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(
        closed_by_server(&mut idle).await,
        "an idle keep-alive connection stayed open"
    );

    let closed = |listener, reason| {
        metric(
            "sluice_listener_connections_closed_total",
            &[
                ("component_id", component),
                ("listener", listener),
                ("reason", reason),
            ],
        )
    };
    // The kept-alive connection waits for its next request's head: either timer may end it.
    assert!(closed("http", "header_timeout") >= 20.0);
    assert!(closed("http", "idle_timeout") >= 20.0);
    assert!(closed("http", "header_timeout") + closed("http", "idle_timeout") >= 41.0);
    assert!(closed("grpc", "idle_timeout") >= 20.0);
    assert_eq!(export_http(&rx).await, reqwest::StatusCode::OK);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_clearly_and_counts() {
    recorder();
    let component = "receivers.limited";
    let rx = start_config(
        TestConsumer::new(),
        component,
        "[grpc]\nendpoint = \"127.0.0.1:0\"\nmax_connections = 5\n[http]\nendpoint = \"127.0.0.1:0\"\nmax_connections = 5\n",
    )
    .await;
    let held = hold(rx.http, 5, b"").await;
    let open = || {
        metric(
            "sluice_listener_connections_open",
            &[("component_id", component), ("listener", "http")],
        )
    };
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while open() < 5.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held connections not accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let response = reqwest::Client::new()
        .post(rx.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(traces(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let text = response.text().await.unwrap();
    assert!(text.contains("max_connections = 5"), "{text}");
    assert!(
        metric(
            "sluice_listener_connections_refused_total",
            &[
                ("component_id", component),
                ("listener", "http"),
                ("reason", "connection_limit")
            ],
        ) >= 1.0
    );
    assert!(
        rx.consumer.take().is_empty(),
        "the refused request delivered nothing"
    );

    // Freed slots serve again.
    drop(held);
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while open() > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "closed connections still counted open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(export_http(&rx).await, reqwest::StatusCode::OK);

    // gRPC over its limit: the connection is closed, the client sees UNAVAILABLE (retryable).
    let grpc_held = hold(rx.grpc, 5, b"").await;
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while metric(
        "sluice_listener_connections_open",
        &[("component_id", component), ("listener", "grpc")],
    ) < 5.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held gRPC connections not accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = match TraceServiceClient::connect(rx.grpc_url()).await {
        Ok(mut client) => client.export(traces(1)).await.unwrap_err().code(),
        Err(_) => tonic::Code::Unavailable,
    };
    assert_eq!(refused, tonic::Code::Unavailable);
    assert!(
        metric(
            "sluice_listener_connections_refused_total",
            &[
                ("component_id", component),
                ("listener", "grpc"),
                ("reason", "connection_limit")
            ],
        ) >= 1.0
    );
    drop(grpc_held);
    rx.stop().await;
}
