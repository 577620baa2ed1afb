//! Push mode: the simulator `POST`s its events, in order and in JSON arrays, to a push
//! endpoint (an AWF node pushing to its Sluice sidecar). Refusals are retried, honouring
//! `Retry-After`; events are never reordered.

use super::Sim;
use sluice_core::DurationStr;
use sluice_core::retry::{Backoff, RetryConfig, parse_retry_after};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub(crate) async fn run(
    sim: Arc<Sim>,
    mut rx: mpsc::Receiver<Arc<str>>,
    url: String,
    mut stop: watch::Receiver<bool>,
) {
    let client = reqwest::Client::new();
    let max = sim.cfg.push_batch;
    let mut batch: Vec<Arc<str>> = Vec::with_capacity(max);
    loop {
        // Wait for the first event, then gather more for up to 50 ms.
        let first = tokio::select! {
            e = rx.recv() => e,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(first) = first else { return };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                _ => break,
            }
        }
        let mut body = String::with_capacity(batch.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        body.push('[');
        for (i, e) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(e);
        }
        body.push(']');
        if !send(&sim, &client, &url, body, &mut stop).await {
            sim.push_dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        batch.clear();
    }
}

/// Sends one batch until it is accepted, refused for good, or the simulator stops.
async fn send(
    sim: &Sim,
    client: &reqwest::Client,
    url: &str,
    body: String,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    // The core backoff (jittered): 100 ms doubling up to 5 s, at least the `Retry-After`.
    let mut backoff = Backoff::new(&RetryConfig {
        initial_interval: DurationStr(Duration::from_millis(100)),
        max_interval: DurationStr(Duration::from_secs(5)),
        multiplier: 2.0,
        ..RetryConfig::default()
    });
    loop {
        let mut req = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(30))
            .body(body.clone());
        if let Some(t) = &sim.cfg.push_token {
            req = req.bearer_auth(t);
        }
        let wait = match req.send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => {
                let status = r.status().as_u16();
                let retryable = matches!(status, 408 | 429) || status >= 500;
                if !retryable {
                    let text = r.text().await.unwrap_or_default();
                    tracing::warn!(status, body = %text, "push endpoint refused a batch for good");
                    return false;
                }
                let retry_after = r
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                backoff.next_delay(retry_after)
            }
            Err(e) => {
                tracing::debug!(error = %e, "push failed; retrying");
                backoff.next_delay(None)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
    }
}
