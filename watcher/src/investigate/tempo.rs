//! The Tempo check: the alert's trace (given, from the window, or searched by tag) and what
//! its spans say.

use super::{Investigator, Part, Subject, is_trace_id};
use crate::finding::{Evidence, Fact};
use std::time::Duration;

impl Investigator {
    pub(super) async fn tempo_check(
        &self,
        s: &Subject,
        trace_id: Option<&str>,
        since_ms: i64,
        timeout: Duration,
    ) -> Part {
        let mut part = Part::new("tempo");
        if self.backends.tempo.is_none() {
            part.skip("tempo_url not set");
            return part;
        }
        let start_s = since_ms / 1000;
        let end_s = crate::alert::now_ms() / 1000 + 1;
        let trace_id = match trace_id {
            Some(t) => Some(t.to_owned()),
            None => {
                self.search_trace(&mut part, s, (start_s, end_s), timeout)
                    .await
            }
        };
        let Some(id) = trace_id.filter(|t| is_trace_id(t)) else {
            return part;
        };
        match self
            .backends
            .tempo_trace(&id, start_s, end_s, timeout)
            .await
        {
            Ok(t) => {
                part.ok += 1;
                if s.execution_id.is_none()
                    && s.workflow_id.is_some()
                    && let Some(x) = &t.failed_execution
                {
                    part.failed_executions.push(x.clone());
                }
                let mut result = vec![format!("{} spans, {} with errors", t.spans, t.error_spans)];
                if let Some((name, ms)) = &t.slowest {
                    result.push(format!("slowest span {name} ({ms:.0} ms)"));
                }
                result.extend(t.error_messages.iter().map(|m| format!("error: {m}")));
                part.facts.push(Fact {
                    source: "tempo".into(),
                    interesting: t.error_spans > 0,
                    message: format!("trace {id}: {}", result.join("; ")),
                });
                part.evidence.push(Evidence {
                    source: "tempo".into(),
                    query: format!("GET /api/traces/{id}"),
                    result,
                    trace_ids: vec![id],
                    ..Default::default()
                });
            }
            Err(e) => part.fail(e),
        }
        part
    }

    /// A trace of the subject, searched by its agent, step or workflow tag (about a workflow:
    /// its failed executions, by the `awf.workflow` span's status).
    async fn search_trace(
        &self,
        part: &mut Part,
        s: &Subject,
        (start_s, end_s): (i64, i64),
        timeout: Duration,
    ) -> Option<String> {
        let pairs = [
            ("agent_id", &s.agent_id),
            ("step_id", &s.step_id),
            ("workflow_id", &s.workflow_id),
        ];
        let tag = pairs
            .iter()
            .find_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
            .filter(|(_, v)| {
                v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            });
        let Some((k, v)) = tag else {
            part.skip("no trace id, agent, step or workflow to look up");
            return None;
        };
        // About a workflow: its failed executions (the `awf.workflow` span's status).
        let tags = if k == "workflow_id" {
            format!("{k}={v} status=failed")
        } else {
            format!("{k}={v}")
        };
        match self
            .backends
            .tempo_search(&tags, start_s, end_s, 5, timeout)
            .await
        {
            Ok(ids) => {
                part.ok += 1;
                part.evidence.push(Evidence {
                    source: "tempo".into(),
                    query: format!("search tags={tags}"),
                    result: vec![format!("{} traces", ids.len())],
                    trace_ids: ids.clone(),
                    ..Default::default()
                });
                ids.into_iter().next()
            }
            Err(e) => {
                part.fail(e);
                None
            }
        }
    }
}
