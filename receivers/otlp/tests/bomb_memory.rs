//! A gzip bomb must not make the process allocate past the decompression cap. Alone in its own
//! test binary so the process's peak RSS (VmHWM) reflects only this test.

mod common;

use common::*;
use reqwest::StatusCode;

/// Peak resident set size of this process, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test]
async fn gzip_bombs_are_refused_without_allocating_past_the_cap() {
    let Some(_) = peak_rss() else {
        eprintln!("no /proc/self/status: skipping the memory assertion");
        return;
    };
    let rx = start_with(TestConsumer::new(), "", "max_decompressed_size = \"8MiB\"").await;
    let bomb = gzip_zeros(200 * 1024 * 1024);
    // Warm up the connection machinery so its allocations are in the baseline.
    let response = reqwest::Client::new()
        .post(rx.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let before = peak_rss().unwrap();

    for _ in 0..3 {
        let response = reqwest::Client::new()
            .post(rx.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(bomb.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    let grown = peak_rss().unwrap().saturating_sub(before);
    // The cap is 8 MiB; inflating the 200 MiB would grow the peak by far more.
    assert!(
        grown < 40 * 1024 * 1024,
        "peak RSS grew by {} MiB",
        grown / (1024 * 1024)
    );

    // Many at once: decodes are bounded in number, so memory is too.
    let before = peak_rss().unwrap();
    let sends = (0..32).map(|_| {
        let url = rx.http_url("/v1/traces");
        let bomb = bomb.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "gzip")
                .body(bomb)
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for status in futures::future::join_all(sends).await {
        assert_eq!(status.unwrap(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let grown = peak_rss().unwrap().saturating_sub(before);
    // 32 × 8 MiB would be 256 MiB; decodes run a few at a time.
    assert!(
        grown < 120 * 1024 * 1024,
        "peak RSS grew by {} MiB",
        grown / (1024 * 1024)
    );
    rx.stop().await;
}
