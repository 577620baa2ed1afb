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
        .filter_map(|(k, v)| v.as_ref().map(|v| field_filter(k, v)))
        .collect();
        if filters.is_empty() && s.service.is_none() {
            part.skip("no execution/agent/step/provider/workflow/service label");
            return part;
        }
        let selector = match &s.service {
            Some(svc) => format!("{{service_name=\"{}\"}}", escape_query_string(svc)),
            None => "{service_name=~\".+\"}".to_owned(),
        };
        let logql = format!("{selector} | json{}{ERROR_LINES}", filters.concat());
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

/// Error records: `severity_text` is structured metadata on the native OTLP endpoint and
/// `severity` a key of the push mapping's JSON line.
const ERROR_LINES: &str = r#" | (severity_text="ERROR" or severity="ERROR")"#;

/// A LogQL label filter (after `| json`) for a record attribute under either mapping of OTLP
/// logs to Loki: a stream label or structured metadata (Loki's native OTLP endpoint, or an
/// attribute promoted to a label), or the attribute inside the JSON line of the push API's
/// default mapping (`{"attributes":{"key":…}}`, which `| json` flattens to `attributes_key`).
/// On a line that is not JSON, `| json` only adds `__error__`; the line stays, and so do its
/// labels and structured metadata.
fn field_filter(key: &str, value: &str) -> String {
    let v = escape_query_string(value);
    format!(" | ({key}=\"{v}\" or attributes_{key}=\"{v}\")")
}

/// A field of a Loki line: a stream label, structured metadata or a label `| json` extracted
/// (Loki returns them all as the stream's labels), else a key of the line as JSON (top level,
/// then the push mapping's `attributes` and `resources`) or logfmt.
pub(super) fn loki_field(l: &crate::backends::LokiLine, key: &str) -> Option<String> {
    for k in [key.to_owned(), format!("attributes_{key}")] {
        if let Some(v) = l.labels.get(&k) {
            return Some(v.clone());
        }
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(&l.line) {
        let v = o
            .get(key)
            .or_else(|| o.get("attributes")?.get(key))
            .or_else(|| o.get("resources")?.get(key))?;
        return match v {
            serde_json::Value::String(v) => Some(v.clone()),
            other => Some(other.to_string()),
        };
    }
    l.line.split_whitespace().find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.trim_matches('"').to_owned())
    })
}
