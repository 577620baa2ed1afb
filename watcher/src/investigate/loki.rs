//! The Loki check: the subject's error log lines, and a workflow's failed executions.

use super::{Investigator, Part, Subject};
use crate::finding::{Evidence, Fact};
use crate::template::escape_query_string;
use std::time::Duration;

impl Investigator {
    pub(super) async fn loki_check(&self, s: &Subject, since_ms: i64, timeout: Duration) -> Part {
        let mut part = Part::new("loki");
        if self.backends.loki.is_none() {
            part.skip("loki_url not set");
            return part;
        }
        let filters: Vec<String> = [
            ("execution_id", &s.execution_id),
            ("agent_id", &s.agent_id),
            ("step_id", &s.step_id),
            ("provider", &s.provider),
            ("workflow_id", &s.workflow_id),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| format!(" | {k}=\"{}\"", escape_query_string(v)))
        })
        .collect();
        if filters.is_empty() && s.service.is_none() {
            part.skip("no execution/agent/step/provider/workflow/service label");
            return part;
        }
        let selector = match &s.service {
            Some(svc) => format!("{{service_name=\"{}\"}}", escape_query_string(svc)),
            None => "{service_name=~\".+\"}".to_owned(),
        };
        let logql = format!("{selector}{} | severity_text=\"ERROR\"", filters.concat());
        let end_ns = crate::alert::now_ms().saturating_mul(1_000_000);
        match self
            .backends
            .loki_query(
                &logql,
                since_ms.saturating_mul(1_000_000),
                end_ns,
                50,
                timeout,
            )
            .await
        {
            Ok(lines) => {
                part.ok += 1;
                if s.execution_id.is_none() && s.workflow_id.is_some() {
                    // Newest first, as Loki answered.
                    for l in &lines {
                        if loki_field(l, "event_type").as_deref() == Some("workflow.failed")
                            && let Some(x) = loki_field(l, "execution_id")
                            && !part.failed_executions.contains(&x)
                        {
                            part.failed_executions.push(x);
                        }
                    }
                }
                part.facts.push(Fact {
                    source: "loki".into(),
                    interesting: !lines.is_empty(),
                    message: format!(
                        "{}{} error log lines since the lookback start",
                        lines.len(),
                        if lines.len() >= 50 { "+" } else { "" }
                    ),
                });
                part.evidence.push(Evidence {
                    source: "loki".into(),
                    query: logql,
                    result: vec![format!("{} lines", lines.len())],
                    log_lines: lines
                        .iter()
                        .take(10)
                        .map(|l| l.line.chars().take(300).collect())
                        .collect(),
                    ..Default::default()
                });
            }
            Err(e) => part.fail(e),
        }
        part
    }
}

/// A field of a Loki line: a stream label or structured metadata (Loki returns both as the
/// stream's labels), else a key of the line as JSON or logfmt.
pub(super) fn loki_field(l: &crate::backends::LokiLine, key: &str) -> Option<String> {
    if let Some(v) = l.labels.get(key) {
        return Some(v.clone());
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(&l.line) {
        return match o.get(key)? {
            serde_json::Value::String(v) => Some(v.clone()),
            other => Some(other.to_string()),
        };
    }
    l.line.split_whitespace().find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.trim_matches('"').to_owned())
    })
}
