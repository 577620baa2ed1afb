//! Discovery: poll the AWF executions listing and follow each running execution's event
//! stream until its terminal event (a body that ends before it is reconnected, see
//! [`crate::stream::follow`]).

use crate::config::{DiscoveryConfig, events_url};
use crate::deliver::Shared;
use crate::ids;
use crate::seen_set::SeenSet;
use crate::stream::{StreamEnd, StreamKind, StreamSettings, follow};
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

pub const DISCOVERY_POLLS: &str = "sluice_awf_discovery_polls_total";
/// Polls that found more running executions than `max_streams` allows.
pub const DISCOVERY_SKIPPED: &str = "sluice_awf_discovery_skipped_total";

/// Largest listing body read.
const MAX_LISTING_BYTES: usize = 32 * 1024 * 1024;

/// One entry of the executions listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedExecution {
    pub id: String,
    pub status: Option<String>,
    pub events_url: Option<String>,
}

impl ListedExecution {
    /// Unknown or missing statuses count as running: following a finished stream costs one
    /// short request, missing a running one loses its events.
    pub fn is_running(&self) -> bool {
        !self.status.as_deref().is_some_and(is_terminal_status)
    }
}

pub fn is_terminal_status(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "completed"
            | "complete"
            | "succeeded"
            | "success"
            | "failed"
            | "failure"
            | "error"
            | "cancelled"
            | "canceled"
            | "aborted"
            | "timed_out"
            | "timeout"
            | "stopped"
    )
}

/// Why a listing poll failed.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error("request failed: {0}")]
    Request(reqwest::Error),
    #[error("status {0}")]
    Status(u16),
    #[error("read failed: {0}")]
    Read(reqwest::Error),
    #[error("listing larger than {MAX_LISTING_BYTES} bytes")]
    TooLarge,
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    #[error("no array under executions/items/data/results")]
    NoArray,
    #[error("the listing is neither an array nor an object")]
    NotAListing,
}

/// Parses a listing: an array, or an object with the array under `executions`, `items` or
/// `data`. Entries are objects (`id`/`execution_id`, `status`, `events_url`) or bare ids.
pub fn parse_listing(body: &[u8]) -> Result<Vec<ListedExecution>, ListingError> {
    let value: Value = serde_json::from_slice(body).map_err(ListingError::Json)?;
    let entries =
        match value {
            Value::Array(a) => a,
            Value::Object(mut o) => match ["executions", "items", "data", "results"]
                .iter()
                .find_map(|k| match o.remove(*k) {
                    Some(Value::Array(a)) => Some(a),
                    _ => None,
                }) {
                Some(a) => a,
                None => return Err(ListingError::NoArray),
            },
            _ => return Err(ListingError::NotAListing),
        };
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(entries
        .iter()
        .filter_map(|e| match e {
            Value::Object(o) => Some(ListedExecution {
                id: text(o.get("execution_id")).or_else(|| text(o.get("id")))?,
                status: text(o.get("status")).or_else(|| text(o.get("state"))),
                events_url: text(o.get("events_url")),
            }),
            other => text(Some(other)).map(|id| ListedExecution {
                id,
                status: None,
                events_url: None,
            }),
        })
        .collect())
}

/// Runs discovery until shutdown.
pub async fn run(
    shared: Arc<Shared>,
    client: reqwest::Client,
    settings: Arc<StreamSettings>,
    cfg: DiscoveryConfig,
) {
    let mut tasks: JoinSet<(String, StreamEnd)> = JoinSet::new();
    let mut following: HashSet<String> = HashSet::new();
    let mut finished = SeenSet::new(100_000);
    // Executions listed before. One that first shows up already ended started and ended
    // between two polls: its stream is replayed (backfill). At the first poll, ended
    // executions are history and are left alone.
    let mut known = SeenSet::new(100_000);
    let mut first_poll = true;
    let mut tick = tokio::time::interval(cfg.interval.get());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let listed = match fetch_listing(&shared, &client, &settings, &cfg).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(url = cfg.url, reason = %e, "AWF executions listing failed");
                        continue;
                    }
                };
                let backfill = !first_poll;
                first_poll = false;
                for x in listed {
                    let new = known.insert(ids::key("exec", &[&x.id]));
                    let wanted = x.is_running() || (new && backfill);
                    if !wanted
                        || following.contains(&x.id)
                        || finished.contains(ids::key("exec", &[&x.id]))
                    {
                        continue;
                    }
                    if following.len() >= cfg.max_streams {
                        metrics::counter!(DISCOVERY_SKIPPED, "component_id" => shared.component_id().to_owned(), "reason" => "max_streams")
                            .increment(1);
                        tracing::warn!(max_streams = cfg.max_streams, "discovery.max_streams reached; not following more executions");
                        break;
                    }
                    let url = match &x.events_url {
                        // A relative `events_url` is resolved against the listing URL.
                        Some(u) => match reqwest::Url::parse(&cfg.url).and_then(|base| base.join(u)) {
                            Ok(joined) => joined.to_string(),
                            Err(_) => events_url(&cfg, &x.id),
                        },
                        None => events_url(&cfg, &x.id),
                    };
                    following.insert(x.id.clone());
                    let (shared, client, settings) = (shared.clone(), client.clone(), settings.clone());
                    tasks.spawn(async move {
                        // The stream is followed to its terminal event, reconnecting after a
                        // premature end; the listing's status plays no part any more.
                        let kind = StreamKind::Discovered { execution_id: x.id.clone() };
                        let end = follow(&shared, &client, &settings, &url, &kind, &mut String::new()).await;
                        (x.id, end)
                    });
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((id, end)) = done else { continue };
                following.remove(&id);
                match end {
                    // An abandoned stream (counted in `sluice_awf_streams_abandoned_total`) is
                    // not taken up again: its bound was spent on reconnects already.
                    StreamEnd::Finished | StreamEnd::Gone(_) | StreamEnd::Abandoned => {
                        finished.insert(ids::key("exec", &[&id]));
                    }
                    StreamEnd::Stopped => {}
                }
            }
            _ = shared.ctx.stopped() => break,
        }
    }
    // Streams see the shutdown themselves; give them a moment to return.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

async fn fetch_listing(
    shared: &Shared,
    client: &reqwest::Client,
    settings: &StreamSettings,
    cfg: &DiscoveryConfig,
) -> Result<Vec<ListedExecution>, ListingError> {
    let result = async {
        let resp = client
            .get(&cfg.url)
            .headers(settings.headers.clone())
            .header(http::header::ACCEPT, "application/json")
            .timeout(cfg.interval.get().max(Duration::from_secs(10)))
            .send()
            .await
            .map_err(ListingError::Request)?;
        if !resp.status().is_success() {
            return Err(ListingError::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ListingError::Read)?;
            if body.len() + chunk.len() > MAX_LISTING_BYTES {
                return Err(ListingError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse_listing(&body)
    }
    .await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!(DISCOVERY_POLLS, "component_id" => shared.component_id().to_owned(), "outcome" => outcome)
        .increment(1);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_shapes() {
        let l = parse_listing(br#"{"executions":[{"id":"a","status":"running"},{"execution_id":7,"status":"completed"},{"status":"x"}]}"#).unwrap();
        assert_eq!(l.len(), 2);
        assert!(l[0].is_running());
        assert_eq!(l[1].id, "7");
        assert!(!l[1].is_running());
        let l = parse_listing(br#"["a", 5, {"id":"c","state":"CANCELLED"}, null]"#).unwrap();
        assert_eq!(
            l.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
            vec!["a", "5", "c"]
        );
        assert!(l[0].is_running() && !l[2].is_running());
        assert!(parse_listing(b"{}").is_err());
        assert!(parse_listing(b"nope").is_err());
        assert!(parse_listing(b"42").is_err());
    }
}
