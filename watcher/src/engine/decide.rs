//! Investigation, decision and dispatch of one incident.

use super::*;
use crate::alert::{Alert, now_ms};
use crate::exec::ExecResult;
use crate::finding::Finding;
use crate::investigate::QUERY_ANNOTATION;
use crate::remediation_catalogue::{ParamSources, RenderedAction, Resolution};
use crate::selftel::{SpanData, TraceCtx};
use crate::stats;
use crate::store::{ActionRecord, Decision, Incident, Outcome, Refusal, Stage};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

impl Shared {
    /// Runs (or resumes) one incident up to its next wait (approval) or its end.
    pub(crate) async fn drive(self: Arc<Self>, id: String) {
        let Some(inc) = self.incident(&id) else {
            return;
        };
        match inc.stage {
            Stage::Queued | Stage::Investigating => self.investigate_and_decide(&id).await,
            Stage::Verifying => {
                let last = inc.actions.last().cloned();
                let exec = last.as_ref().map(|a| ExecResult {
                    outcome: "ok",
                    status: a.status,
                    exit_code: a.exit_code,
                    response: a.response.clone(),
                    result: a.result.clone(),
                });
                match (last, exec) {
                    (Some(a), Some(exec)) => {
                        let approved = a.approved_by.is_some();
                        self.verify_and_close(&id, &a.script, &exec, approved).await
                    }
                    _ => self.close(&id, Outcome::Interrupted, None).await,
                }
            }
            Stage::Acting | Stage::AwaitingApproval | Stage::Closed => {}
        }
    }

    /// The PromQL of the alert's signal: the annotation, else the first label-matching rule's.
    pub(crate) fn alert_query(&self, alert: &Alert, decision: Option<&Decision>) -> Option<String> {
        if let Some(q) = decision.and_then(|d| d.verify_query.clone()) {
            return Some(q);
        }
        if let Some(q) = alert
            .annotations
            .get(QUERY_ANNOTATION)
            .filter(|q| !q.trim().is_empty())
        {
            return Some(q.clone());
        }
        self.rules
            .first_match(&alert.labels, &BTreeMap::new())
            .and_then(|r| r.verify_query(&alert.labels))
    }

    pub(crate) async fn investigate_and_decide(self: &Arc<Self>, id: &str) {
        let Some(inc) = self
            .update(id, |i| {
                i.stage = Stage::Investigating;
                i.clone()
            })
            .await
        else {
            return;
        };
        let query = self.alert_query(&inc.alert, None);
        // Bounds concurrent investigations (not waits for approvals or verifications).
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let t0 = Instant::now();
        let start_ms = now_ms();
        let finding = self
            .investigator
            .investigate(&inc.alert, query.as_deref())
            .await;
        drop(permit);
        stats::investigation(
            &self.component_id,
            finding.degraded,
            t0.elapsed().as_secs_f64(),
        );
        self.emit_investigation_spans(&inc, &finding, start_ms);
        let Some(inc) = self
            .update(id, |i| {
                i.finding = Some(finding.clone());
                i.clone()
            })
            .await
        else {
            return;
        };
        self.audit(
            "finding",
            Some(&inc),
            json!({"hypothesis": finding.hypothesis, "degraded": finding.degraded,
                   "took_ms": finding.took_ms, "checked": finding.checked,
                   "signals": finding.signals}),
        )
        .await;
        if inc.resolved_at_ms.is_some() {
            return self.close(id, Outcome::Cancelled, None).await;
        }
        let decision = self.decide(&inc, &finding).await;
        let Some(inc) = self
            .update(id, |i| {
                i.decision = Some(decision.clone());
                i.clone()
            })
            .await
        else {
            return;
        };
        self.audit(
            "decision",
            Some(&inc),
            json!({"rule": decision.rule, "candidates": decision.candidates,
                   "ranked_by": decision.ranked_by, "chosen": decision.chosen,
                   "requires_approval": decision.requires_approval, "reason": decision.reason,
                   "action": decision.action.as_ref().map(RenderedAction::redacted)}),
        )
        .await;
        if let Some(r) = &decision.refused {
            stats::action_refused(&self.component_id, "param_invalid");
            self.audit(
                "action_refused",
                Some(&inc),
                json!({"script": r.script, "param": r.param, "source": r.source,
                       "value": r.value, "reason": r.reason}),
            )
            .await;
            return self.close(id, Outcome::Refused, None).await;
        }
        let (Some(script), Some(action)) = (decision.chosen.clone(), decision.action.clone())
        else {
            return self.close(id, Outcome::NoAction, None).await;
        };
        self.dispatch(id, &script, action, decision.requires_approval, None)
            .await;
    }

    /// Chooses the action: first matching rule → candidates (optionally LLM-ranked) → first
    /// candidate whose parameters all resolve.
    pub(crate) async fn decide(&self, inc: &Incident, finding: &Finding) -> Decision {
        let labels = &inc.alert.labels;
        let Some(rule) = self.rules.first_match(labels, &finding.signals) else {
            return Decision {
                reason: "no rule matches this alert and finding".into(),
                ranked_by: "rule".into(),
                ..Default::default()
            };
        };
        let mut d = Decision {
            rule: Some(rule.rule.name.clone()),
            candidates: rule.rule.actions.clone(),
            ranked_by: "rule".into(),
            escalate: rule.rule.escalate.clone(),
            verify_query: rule
                .verify_query(labels)
                .or_else(|| inc.alert.annotations.get(QUERY_ANNOTATION).cloned()),
            ..Default::default()
        };
        if let Some(llm) = &self.cfg.llm
            && d.candidates.len() > 1
        {
            let described: Vec<(String, String)> = d
                .candidates
                .iter()
                .map(|c| {
                    let desc = self
                        .catalogue
                        .get(c)
                        .map(|s| s.script.description.clone())
                        .unwrap_or_default();
                    (c.clone(), desc)
                })
                .collect();
            let alertname = labels.get("alertname").cloned().unwrap_or_default();
            match crate::llm::rank(&self.http, llm, &alertname, finding, &described).await {
                Ok(ranked) => {
                    d.candidates = crate::llm::merge_ranking(&d.candidates, &ranked);
                    d.ranked_by = "llm".into();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watcher: LLM ranking failed; keeping the rule's order");
                    d.reason = format!("LLM ranking unavailable ({e}); ");
                }
            }
        }
        let sources = ParamSources {
            labels,
            signals: &finding.signals,
        };
        let mut missing = Vec::new();
        for c in d.candidates.clone() {
            let Some(script) = self.catalogue.get(&c) else {
                continue;
            };
            match script.resolve(&sources) {
                Resolution::Ready(params) => match script.render(&self.catalogue.vars, &params) {
                    Ok(action) => {
                        d.requires_approval = script.script.requires_approval;
                        d.reason
                            .push_str(&format!("rule {:?} chose {c}", rule.rule.name));
                        d.chosen = Some(c);
                        d.action = Some(action);
                        return d;
                    }
                    Err(e) => missing.push(format!("{c}: {e}")),
                },
                Resolution::Missing(p) => missing.push(format!("{c}: no value for {p}")),
                Resolution::Refused {
                    param,
                    source,
                    value,
                    reason,
                } => {
                    // Fail closed: a hostile value stops the whole decision, it does not
                    // fall through to another script.
                    d.reason
                        .push_str(&format!("refused {c}: {param} from {source} {reason}"));
                    d.refused = Some(Refusal {
                        script: c,
                        param,
                        source,
                        value,
                        reason: reason.to_string(),
                    });
                    return d;
                }
            }
        }
        d.reason.push_str(&format!(
            "rule {:?} matched but no candidate applies ({})",
            rule.rule.name,
            missing.join("; ")
        ));
        d
    }

    /// Runs the action now, or asks for approval first.
    pub(crate) async fn dispatch(
        self: &Arc<Self>,
        id: &str,
        script: &str,
        action: RenderedAction,
        requires_approval: bool,
        escalated_from: Option<Outcome>,
    ) {
        let finished = |o: Outcome| escalated_from.unwrap_or(o);
        if self.cfg.dry_run {
            let rec = ActionRecord {
                script: script.into(),
                action: Some(action.clone()),
                started_at_ms: now_ms(),
                finished_at_ms: Some(now_ms()),
                outcome: Some("dry_run".into()),
                escalation: escalated_from.is_some(),
                ..Default::default()
            };
            let inc = self
                .update(id, |i| {
                    i.actions.push(rec);
                    i.clone()
                })
                .await;
            stats::action(&self.component_id, script, "dry_run");
            self.audit(
                "action_dry_run",
                inc.as_ref(),
                json!({"script": script, "action": action.redacted(),
                       "would_require_approval": requires_approval}),
            )
            .await;
            return self.close(id, finished(Outcome::DryRun), None).await;
        }
        let kill_switch = self.state.lock().kill_switch;
        if kill_switch {
            stats::action_refused(&self.component_id, "kill_switch");
            let inc = self.incident(id);
            self.audit(
                "action_blocked",
                inc.as_ref(),
                json!({"script": script, "reason": "kill switch engaged"}),
            )
            .await;
            return self.close(id, finished(Outcome::KillSwitch), None).await;
        }
        if requires_approval {
            return self
                .request_approval(id, script, action, escalated_from)
                .await;
        }
        self.act(id, script, action, None, escalated_from).await;
    }

    pub(crate) async fn escalate_or_close(self: &Arc<Self>, id: &str, ran: &str, outcome: Outcome) {
        let Some(inc) = self.incident(id) else {
            return;
        };
        let esc = inc
            .decision
            .as_ref()
            .and_then(|d| d.escalate.clone())
            .filter(|e| e != ran);
        let Some(esc) = esc else {
            return self.close(id, outcome, None).await;
        };
        let Some(script) = self.catalogue.get(&esc) else {
            return self.close(id, outcome, None).await;
        };
        let empty = BTreeMap::new();
        let signals = inc.finding.as_ref().map(|f| &f.signals).unwrap_or(&empty);
        let sources = ParamSources {
            labels: &inc.alert.labels,
            signals,
        };
        match script.resolve(&sources) {
            Resolution::Ready(params) => match script.render(&self.catalogue.vars, &params) {
                Ok(action) => {
                    self.audit(
                        "escalation",
                        Some(&inc),
                        json!({"script": esc, "after": outcome.as_str()}),
                    )
                    .await;
                    let needs = script.script.requires_approval;
                    Box::pin(self.dispatch(id, &esc, action, needs, Some(outcome))).await
                }
                Err(e) => {
                    self.audit(
                        "escalation_failed",
                        Some(&inc),
                        json!({"script": esc, "error": e.to_string()}),
                    )
                    .await;
                    self.close(id, outcome, None).await
                }
            },
            Resolution::Missing(p) => {
                self.audit(
                    "escalation_failed",
                    Some(&inc),
                    json!({"script": esc, "error": format!("no value for {p}")}),
                )
                .await;
                self.close(id, outcome, None).await
            }
            Resolution::Refused {
                param,
                source,
                value,
                reason,
            } => {
                stats::action_refused(&self.component_id, "param_invalid");
                self.audit(
                    "action_refused",
                    Some(&inc),
                    json!({"script": esc, "param": param, "source": source, "value": value,
                           "reason": reason.to_string()}),
                )
                .await;
                self.close(id, outcome, None).await
            }
        }
    }

    pub(crate) fn emit_investigation_spans(&self, inc: &Incident, f: &Finding, start_ms: i64) {
        let ctx = TraceCtx::for_incident(&inc.key);
        let inv = ctx.child("investigate");
        let mut spans = vec![SpanData {
            name: "watcher.investigate".into(),
            span_id: inv,
            parent: Some(ctx.root_span),
            start_ms,
            end_ms: start_ms + i64::try_from(f.took_ms).unwrap_or(0),
            attrs: vec![
                ("cause".into(), f.hypothesis.cause.clone()),
                ("confidence".into(), f.hypothesis.confidence.to_string()),
                ("degraded".into(), f.degraded.to_string()),
            ],
            error: None,
        }];
        for c in &f.checked {
            spans.push(SpanData {
                name: format!("watcher.source.{}", c.source),
                span_id: ctx.child(&format!("source:{}", c.source)),
                parent: Some(inv),
                start_ms,
                end_ms: start_ms + i64::try_from(c.took_ms).unwrap_or(0),
                attrs: vec![("status".into(), format!("{:?}", c.status).to_lowercase())],
                error: (c.status == crate::finding::CheckStatus::Degraded)
                    .then(|| c.detail.clone()),
            });
        }
        self.selftel.spans(ctx, spans);
    }
}
