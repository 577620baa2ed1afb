//! Outbound notes: the approval webhook (Slack-compatible `{"text": …}`) and Grafana
//! annotations (one per action, de-duplicated by tag because the API has no idempotency key).

use serde_json::json;
use sluice_http_client::body::BodyError;
use std::time::Duration;

/// A failed call to a service the watcher notifies or asks (`to` names the service and, where
/// it helps, the request).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{to}: {source}")]
    Request {
        to: &'static str,
        source: reqwest::Error,
    },
    #[error("{to}: HTTP {status}")]
    Status {
        to: &'static str,
        status: reqwest::StatusCode,
    },
    #[error("{to}: {source}")]
    Body { to: &'static str, source: BodyError },
    /// The answer arrived but does not say what was asked.
    #[error("{to}: {problem}")]
    Answer { to: &'static str, problem: String },
}

impl CallError {
    pub(crate) fn request(to: &'static str) -> impl FnOnce(reqwest::Error) -> CallError {
        move |source| CallError::Request { to, source }
    }
}

/// Refuses a response whose status is not a success.
pub(crate) fn success(
    to: &'static str,
    resp: reqwest::Response,
) -> Result<reqwest::Response, CallError> {
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(CallError::Status {
            to,
            status: resp.status(),
        })
    }
}

pub async fn approval_webhook(
    http: &reqwest::Client,
    url: &str,
    text: &str,
) -> Result<(), CallError> {
    const TO: &str = "approval webhook";
    let resp = http
        .post(url)
        .json(&json!({ "text": text }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(CallError::request(TO))?;
    success(TO, resp)?;
    Ok(())
}

pub struct Grafana {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Grafana {
    /// Posts an organization annotation unless one with all of `tags` exists. Returns whether
    /// one was created.
    pub async fn annotate(
        &self,
        tags: &[String],
        text: &str,
        time_ms: i64,
    ) -> Result<bool, CallError> {
        const GET: &str = "grafana GET /api/annotations";
        const POST: &str = "grafana POST /api/annotations";
        let base = self.url.trim_end_matches('/');
        let mut q: Vec<(&str, String)> = tags.iter().map(|t| ("tags", t.clone())).collect();
        q.push(("limit", "1".into()));
        q.push(("type", "annotation".into()));
        let resp = self
            .http
            .get(format!("{base}/api/annotations"))
            .query(&q)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(CallError::request(GET))?;
        let existing: serde_json::Value = success(GET, resp)?
            .json()
            .await
            .map_err(CallError::request(GET))?;
        if existing.as_array().is_some_and(|a| !a.is_empty()) {
            return Ok(false);
        }
        let resp = self
            .http
            .post(format!("{base}/api/annotations"))
            .bearer_auth(&self.token)
            .json(&json!({ "time": time_ms, "tags": tags, "text": text }))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(CallError::request(POST))?;
        success(POST, resp)?;
        Ok(true)
    }
}
