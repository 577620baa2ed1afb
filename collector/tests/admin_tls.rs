//! TLS on the admin server and on the separate webhooks listener, with certificates made at
//! test time (rcgen) and a real client (reqwest over rustls): the admin port answers HTTPS
//! only, the webhooks listener additionally requires a client certificate from its CA (as a
//! Grafana contact point with a client certificate would present), and a bad TLS flag stops
//! the start with the flag and the file named.

mod support;

use sluice_testkit::tls::Pki;
use std::time::Duration;
use support::{Sluice, free_port, watcher_config, write_config};

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files.
fn pki() -> Pki {
    Pki::new(&["localhost", "127.0.0.1"])
}

fn client(certs: &Pki, with_certificate: bool) -> reqwest::Client {
    let ca = std::fs::read(certs.path("ca.pem")).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(10));
    if with_certificate {
        let mut pem = std::fs::read(certs.path("client.pem")).unwrap();
        pem.extend(std::fs::read(certs.path("client.key")).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// Polls `url` until it answers 200 (`Sluice::start` waits over plain HTTP, which a TLS admin
/// server does not speak).
async fn wait_ready(http: &reqwest::Client, url: &str, sluice: &Sluice) {
    for _ in 0..300 {
        if let Ok(response) = http.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered 200; log:\n{}", sluice.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_webhook_listeners_serve_tls_and_the_webhooks_require_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pki();
    let path = write_config(
        dir.path(),
        "w.toml",
        &watcher_config(free_port(), free_port()),
    );
    let webhooks_port = free_port();
    let file = |name: &str| certs.path(name).display().to_string();
    let args = [
        format!("--server.http.tls.cert-file={}", file("server.pem")),
        format!("--server.http.tls.key-file={}", file("server.key")),
        format!("--server.webhooks.listen-addr=127.0.0.1:{webhooks_port}"),
        format!("--server.webhooks.tls.cert-file={}", file("server.pem")),
        format!("--server.webhooks.tls.key-file={}", file("server.key")),
        format!("--server.webhooks.tls.client-ca-file={}", file("ca.pem")),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sluice = Sluice::spawn(&path, &dir.path().join("data"), &args);
    let admin = sluice.admin.replace("http://", "https://");
    let https = client(&certs, false);
    wait_ready(&https, &format!("{admin}/-/ready"), &sluice).await;
    assert_eq!(
        https
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("{}/-/ready", sluice.admin))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.as_ref().is_ok_and(|r| r.status() == 400),
        "{plain:?}"
    );

    // The webhooks listener: no client certificate, no connection.
    let hook = format!("https://127.0.0.1:{webhooks_port}/webhooks/grafana-alerts");
    let refused = https
        .post(&hook)
        .bearer_auth("hook-secret")
        .body("{}")
        .send()
        .await;
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );
    // With one, the webhook's own auth still applies on top.
    let mtls = client(&certs, true);
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(mtls.post(&hook).body("{}").send().await.unwrap()),
        401
    );
    let payload = r#"{"receiver":"w","status":"firing","alerts":[],"version":"1"}"#;
    assert_eq!(
        status(
            mtls.post(&hook)
                .bearer_auth("hook-secret")
                .header("content-type", "application/json")
                .body(payload)
                .send()
                .await
                .unwrap()
        ),
        200
    );
    let metrics = https
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_listener_connections_accepted_total"),
        "{metrics}"
    );
}

#[test]
fn a_missing_key_file_stops_the_start_naming_the_flag_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pki();
    let path = write_config(
        dir.path(),
        "w.toml",
        &watcher_config(free_port(), free_port()),
    );
    let missing = dir.path().join("nope.key");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&path)
        .arg(format!(
            "--server.http.listen-addr=127.0.0.1:{}",
            free_port()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!(
            "--server.http.tls.cert-file={}",
            certs.path("server.pem").display()
        ))
        .arg(format!("--server.http.tls.key-file={}", missing.display()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--server.http.tls.key_file") && stderr.contains("nope.key"),
        "{stderr}"
    );

    // A certificate without its key is refused before anything starts.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&path)
        .arg(format!(
            "--server.http.listen-addr=127.0.0.1:{}",
            free_port()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data2").display()
        ))
        .arg(format!(
            "--server.webhooks.tls.cert-file={}",
            certs.path("server.pem").display()
        ))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--server.webhooks.tls.cert-file and --server.webhooks.tls.key-file"),
        "{stderr}"
    );
}
