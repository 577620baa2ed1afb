//! The admin port is safe to expose: with an admin token, `/-/reload` and the API's writes
//! need it; with a webhook listener, Grafana reaches the webhooks and approvals there, and
//! the admin port no longer serves them.

mod support;

use support::{Sluice, free_port, watcher_config, write_config};

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_api_writes_need_the_admin_token_and_webhooks_move_to_their_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "w.toml",
        &watcher_config(free_port(), free_port()),
    );
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "admin-s3cret\n").unwrap();
    let webhooks_port = free_port();
    let token_arg = format!("--server.http.admin-token-file={}", token_file.display());
    let webhooks_arg = format!("--server.webhooks.listen-addr=127.0.0.1:{webhooks_port}");
    let sluice = Sluice::start_with(
        &path,
        &dir.path().join("data"),
        &[&token_arg, &webhooks_arg],
    )
    .await;
    let http = reqwest::Client::new();
    let admin = &sluice.admin;

    // Reads stay open (Prometheus scrapes /metrics, probes read /-/ready).
    assert_eq!(status(http.get(format!("{admin}/-/ready"))).await, 200);
    assert_eq!(status(http.get(format!("{admin}/metrics"))).await, 200);
    assert_eq!(
        status(http.get(format!("{admin}/api/v1/status"))).await,
        200
    );

    // Writes need the token.
    let reload = format!("{admin}/-/reload");
    assert_eq!(status(http.post(&reload)).await, 401);
    assert_eq!(status(http.get(&reload)).await, 401);
    assert_eq!(status(http.post(&reload).bearer_auth("wrong")).await, 401);
    assert_eq!(
        status(http.post(&reload).bearer_auth("admin-s3cret")).await,
        200
    );
    let purge = format!("{admin}/api/v1/dead-letter");
    assert_eq!(status(http.delete(&purge)).await, 401);
    assert_eq!(
        status(http.delete(&purge).bearer_auth("admin-s3cret")).await,
        200
    );
    let replay = format!("{admin}/api/v1/dead-letter/nope/replay");
    assert_eq!(status(http.post(&replay)).await, 401);
    assert_eq!(
        status(http.post(&replay).bearer_auth("admin-s3cret")).await,
        404
    );

    // The UI's approvals keep their approver token (not the admin token).
    let pending = format!("{admin}/api/v1/approvals/pending");
    assert_eq!(
        status(http.get(&pending).bearer_auth("alice-token")).await,
        200
    );
    let approve = format!("{admin}/api/v1/approvals/nope/approve");
    assert_ne!(
        status(http.post(&approve).bearer_auth("alice-token")).await,
        401
    );

    // Webhooks and approvals live on their own listener, not on the admin port.
    let hooks = format!("http://127.0.0.1:{webhooks_port}");
    let on_admin = format!("{admin}/webhooks/grafana-alerts");
    assert_eq!(
        status(http.post(&on_admin).bearer_auth("hook-secret")).await,
        404
    );
    let hook = format!("{hooks}/webhooks/grafana-alerts");
    assert_eq!(status(http.post(&hook).body("{}")).await, 401);
    let approvals = format!("{hooks}/approvals/pending");
    assert_eq!(
        status(http.get(&approvals).bearer_auth("alice-token")).await,
        200
    );
    // ...and nothing of the admin API is reachable there.
    assert_eq!(status(http.post(format!("{hooks}/-/reload"))).await, 404);
    assert_eq!(status(http.get(format!("{hooks}/metrics"))).await, 404);

    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_admin_unauthorized_requests_total{reason=\"auth_missing\"}"),
        "{metrics}"
    );
    let log = sluice.log_text();
    assert!(!log.contains("admin-s3cret"), "the admin token was logged");
}
