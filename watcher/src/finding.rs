//! The structured result of an investigation.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub started_at_ms: i64,
    pub took_ms: u64,
    /// Every source consulted (or skipped) and how it went.
    pub checked: Vec<SourceCheck>,
    /// What was noticed; `interesting` marks what points at the cause.
    pub facts: Vec<Fact>,
    /// Queries and their results, trace ids, log lines.
    pub evidence: Vec<Evidence>,
    pub hypothesis: Hypothesis,
    /// A source was down, slow or out of budget: the finding may be incomplete.
    pub degraded: bool,
    /// Machine-readable conclusions rules match on and parameters may use: `cause`,
    /// `agent_id`, `step_id`, `provider`, `execution_id`, `error_type`, `trace_id`,
    /// `hypothesis`.
    pub signals: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Degraded,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceCheck {
    pub source: String,
    pub status: CheckStatus,
    pub took_ms: u64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub source: String,
    pub interesting: bool,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub source: String,
    /// The query or request made (PromQL, LogQL, trace lookup).
    pub query: String,
    /// Result in short: series with values, counts.
    pub result: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_lines: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// `agent_errors`, `provider_timeout`, `step_timeout`, `cost_surge`, `bad_input`,
    /// `workflow_failure`, `unknown`.
    pub cause: String,
    pub summary: String,
    /// 0..=1.
    pub confidence: f64,
}
