//! The Tempo check: the alert's trace (given, from the window, or searched by tag) and what
//! its spans say.

use super::{Investigator, Part, Subject, is_trace_id};
use crate::backends::TraceSummary;
use crate::finding::{Evidence, Fact};
use std::time::{Duration, Instant};

/// Traces looked up per investigation: the newest failing ones may not be in Tempo yet.
const MAX_TRACE_LOOKUPS: usize = 3;

impl Investigator {
    /// Looks up the first of `candidates` (trace ids, most relevant first) that Tempo holds;
    /// without candidates, searches for one. A trace Tempo does not hold yet is an answer,
    /// not a failed source: spans reach Tempo after the pipeline's batching, while the
    /// watcher sees them live.
    pub(super) async fn tempo_check(
        &self,
        s: &Subject,
        candidates: &[String],
        since_ms: i64,
        timeout: Duration,
    ) -> Part {
        let mut part = Part::new("tempo");
        if self.backends.tempo.is_none() {
            part.skip("tempo_url not set");
            return part;
        }
        let deadline = Instant::now() + timeout;
        let start_s = since_ms / 1000;
        let end_s = crate::alert::now_ms() / 1000 + 1;
        let searched;
        let candidates = if candidates.is_empty() {
            searched = self
                .search_traces(&mut part, s, (start_s, end_s), timeout)
                .await;
            &searched[..]
        } else {
            candidates
        };
        let mut missing = Vec::new();
        for id in candidates
            .iter()
            .filter(|t| is_trace_id(t))
            .take(MAX_TRACE_LOOKUPS)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.backends.tempo_trace(id, start_s, end_s, left).await {
                Ok(Some(t)) => {
                    part.ok += 1;
                    trace_found(&mut part, s, id, &t);
                    return part;
                }
                Ok(None) => {
                    part.ok += 1;
                    missing.push(id.clone());
                }
                Err(e) => {
                    part.fail(e);
                    return part;
                }
            }
        }
        if !missing.is_empty() {
            part.evidence.push(Evidence {
                source: "tempo".into(),
                query: "GET /api/traces/<id> of each trace id".into(),
                result: vec![match missing.len() {
                    1 => "the trace is not in Tempo yet".to_owned(),
                    n => format!("none of the {n} traces is in Tempo yet"),
                }],
                trace_ids: missing,
                ..Default::default()
            });
        }
        part
    }

    /// Traces of the subject, searched by its agent, step or workflow tag (about a workflow:
    /// its failed executions, by the `awf.workflow` span's status).
    async fn search_traces(
        &self,
        part: &mut Part,
        s: &Subject,
        (start_s, end_s): (i64, i64),
        timeout: Duration,
    ) -> Vec<String> {
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
            return Vec::new();
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
                ids
            }
            Err(e) => {
                part.fail(e);
                Vec::new()
            }
        }
    }
}

/// The summary of a trace Tempo holds, as a fact and evidence.
fn trace_found(part: &mut Part, s: &Subject, id: &str, t: &TraceSummary) {
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
        trace_ids: vec![id.to_owned()],
        ..Default::default()
    });
}
