//! Optional LLM ranking of a rule's candidates (OpenAI-compatible `/chat/completions`).
//!
//! The model only reorders: ids it invents are dropped, ids it leaves out keep the rule's
//! order after the ones it ranked, and approval requirements come from the catalogue, never
//! from the model. Any error or timeout keeps the rule's order.

use crate::config::LlmConfig;
use crate::finding::Finding;
use crate::notify::{CallError, success};
use serde_json::{Value, json};
use sluice_http_client::body::read_body;

/// Candidates reordered by the model's answer (see the module docs for the guarantees).
pub fn merge_ranking(candidates: &[String], ranked: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(candidates.len());
    for id in ranked {
        if candidates.contains(id) && !out.contains(id) {
            out.push(id.clone());
        }
    }
    for c in candidates {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// The first JSON array of strings in `text` (models like to wrap answers in prose).
fn parse_ids(text: &str) -> Option<Vec<String>> {
    let start = text.find('[')?;
    let end = text.rfind(']')?;
    let arr: Vec<Value> = serde_json::from_str(text.get(start..=end)?).ok()?;
    Some(
        arr.into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    )
}

pub async fn rank(
    http: &reqwest::Client,
    cfg: &LlmConfig,
    alertname: &str,
    finding: &Finding,
    candidates: &[(String, String)],
) -> Result<Vec<String>, CallError> {
    const TO: &str = "llm";
    let list: Vec<String> = candidates
        .iter()
        .map(|(id, d)| format!("- {id}: {d}"))
        .collect();
    let facts: Vec<String> = finding
        .facts
        .iter()
        .filter(|f| f.interesting)
        .take(10)
        .map(|f| format!("- [{}] {}", f.source, f.message))
        .collect();
    let user = format!(
        "Alert: {alertname}\nHypothesis ({:.0}% confident): {}\nFacts:\n{}\n\nCandidate actions:\n{}\n\n\
         Answer only with a JSON array of the candidate ids, best first.",
        finding.hypothesis.confidence * 100.0,
        finding.hypothesis.summary,
        facts.join("\n"),
        list.join("\n")
    );
    let body = json!({
        "model": cfg.model,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "You rank remediation actions for an incident. \
              You may only reorder the given ids; never add one."},
            {"role": "user", "content": user},
        ],
    });
    let url = format!("{}/chat/completions", cfg.url.trim_end_matches('/'));
    let mut req = http.post(url).json(&body).timeout(cfg.timeout.get());
    if let Some(k) = &cfg.api_key {
        req = req.bearer_auth(k);
    }
    let resp = success(TO, req.send().await.map_err(CallError::request(TO))?)?;
    let bytes = read_body(resp, 1 << 20)
        .await
        .map_err(|source| CallError::Body { to: TO, source })?;
    let answer = |problem: String| CallError::Answer { to: TO, problem };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| answer(e.to_string()))?;
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| answer("no message content".into()))?;
    parse_ids(content).ok_or_else(|| answer("no JSON array in the answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_never_adds() {
        let c: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = merge_ranking(&c, &["c".into(), "rm_rf".into(), "c".into()]);
        assert_eq!(r, ["c", "a", "b"]);
        assert_eq!(
            parse_ids("Sure! [\"b\", 3, \"a\"] is best").unwrap(),
            ["b", "a"]
        );
        assert!(parse_ids("no").is_none());
    }
}
