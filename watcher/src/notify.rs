//! Outbound notes: the approval webhook (Slack-compatible `{"text": …}`) and Grafana
//! annotations (one per action, de-duplicated by tag because the API has no idempotency key).

use serde_json::json;
use std::time::Duration;

pub async fn approval_webhook(http: &reqwest::Client, url: &str, text: &str) -> Result<(), String> {
    let resp = http
        .post(url)
        .json(&json!({ "text": text }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("approval webhook: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("approval webhook: HTTP {}", resp.status()));
    }
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
    ) -> Result<bool, String> {
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
            .map_err(|e| format!("grafana: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "grafana GET /api/annotations: HTTP {}",
                resp.status()
            ));
        }
        let existing: serde_json::Value = resp.json().await.map_err(|e| format!("grafana: {e}"))?;
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
            .map_err(|e| format!("grafana: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "grafana POST /api/annotations: HTTP {}",
                resp.status()
            ));
        }
        Ok(true)
    }
}
