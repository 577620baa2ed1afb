//! The incident engine: intake → investigation → decision → approval or action →
//! verification → close, with every step journaled before it is acted on.
//!
//! One task drives an incident at a time (guarded by its stage under the state lock), so an
//! action can never run twice for one incident key. Safety gates are checked right before an
//! action runs: alert still firing, kill switch off, not dry-run, rate limit, and — for scripts
//! that need it — an approval that is approved and not expired.

use crate::alert::{Alert, AlertSource, WebhookPayload, incident_id, now_ms};
use crate::auth::{ApproverAuth, IntakeAuth};
use crate::catalogue::{
    CompiledCatalogue, ParamSources, RenderedAction, Resolution, VerifyMode, VerifySpec,
};
use crate::config::Config;
use crate::exec::{ExecResult, Executor};
use crate::finding::Finding;
use crate::investigate::{Investigator, QUERY_ANNOTATION};
use crate::notify::Grafana;
use crate::rules::RuleSet;
use crate::selftel::{SelfTelemetry, SpanData, TraceCtx};
use crate::stats;
use crate::store::{
    ActionRecord, Approval, ApprovalState, Audit, Decision, Incident, Journal, Outcome, Record,
    Refusal, Stage, Verification,
};
use crate::window::{Dim, Window};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub(crate) struct State {
    pub incidents: HashMap<String, Incident>,
    pub by_key: HashMap<String, String>,
    pub approvals: HashMap<String, Approval>,
    pub kill_switch: bool,
    /// Script → start times (ms) of its recent runs.
    pub runs: HashMap<String, VecDeque<i64>>,
}

pub(crate) struct Shared {
    pub cfg: Config,
    pub component_id: Arc<str>,
    pub catalogue: CompiledCatalogue,
    pub rate_limits: HashMap<String, crate::catalogue::RateLimit>,
    pub rules: RuleSet,
    pub investigator: Investigator,
    pub executor: Executor,
    pub journal: Journal,
    pub audit: Audit,
    pub selftel: SelfTelemetry,
    pub grafana: Option<Grafana>,
    pub http: reqwest::Client,
    pub intake_auth: IntakeAuth,
    pub approver_auth: ApproverAuth,
    pub window: Arc<Window>,
    pub state: Mutex<State>,
    pub slots: Arc<Semaphore>,
    pub tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub stopping: AtomicBool,
    /// (minute, count) of refused webhooks written to the audit log, so unauthenticated
    /// floods cannot fill the disk.
    pub refusal_audits: Mutex<(i64, u32)>,
}

/// Refused webhook requests audited per minute, at most (the rest are only counted).
const REFUSAL_AUDITS_PER_MINUTE: u32 = 60;

/// Journal lines after which it is compacted while running.
const COMPACT_AFTER_LINES: u64 = 20_000;

/// What a webhook request did, for its answer.
#[derive(Debug, Default, serde::Serialize)]
pub struct IntakeSummary {
    pub new: usize,
    pub duplicates: usize,
    pub resolved: usize,
    pub ignored: usize,
    pub incidents: Vec<String>,
}

/// Why an approval request was refused (HTTP status + message).
pub type ApiError = (http::StatusCode, String);

impl Shared {
    pub fn spawn(self: &Arc<Self>, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let h = tokio::spawn(fut);
        let mut t = self.tasks.lock();
        t.retain(|h| !h.is_finished());
        t.push(h);
    }

    fn drive_later(self: &Arc<Self>, id: String) {
        let me = self.clone();
        self.spawn(async move { me.drive(id).await });
    }

    // ---------------------------------------------------------------- persistence helpers

    async fn write(&self, records: Vec<Record>) -> std::io::Result<()> {
        let r = self.journal.write(&records).await;
        if let Err(e) = &r {
            metrics::counter!("sluice_watcher_journal_errors_total",
                "component_id" => self.component_id.to_string())
            .increment(1);
            tracing::error!(error = %e, "watcher: journal write failed");
        }
        r
    }

    /// Applies `f` to the incident under the lock and journals the result.
    async fn update<R>(&self, id: &str, f: impl FnOnce(&mut Incident) -> R) -> Option<R> {
        let (r, snapshot) = {
            let mut st = self.state.lock();
            let inc = st.incidents.get_mut(id)?;
            let r = f(inc);
            (r, inc.clone())
        };
        let _ = self.write(vec![Record::Incident(Box::new(snapshot))]).await;
        Some(r)
    }

    fn incident(&self, id: &str) -> Option<Incident> {
        self.state.lock().incidents.get(id).cloned()
    }

    async fn audit(&self, kind: &str, inc: Option<&Incident>, detail: serde_json::Value) {
        let ctx = inc.map(|i| TraceCtx::for_incident(&i.key));
        let error = matches!(kind, "action_refused" | "action_failed" | "webhook_refused");
        self.selftel
            .log(ctx, kind, &format!("{kind}: {detail}"), error);
        self.audit
            .log(kind, inc.map(|i| i.id.as_str()), detail)
            .await;
    }

    fn update_gauges(&self) {
        let st = self.state.lock();
        let pending = st
            .approvals
            .values()
            .filter(|a| a.state == ApprovalState::Pending)
            .count();
        stats::approvals_pending(&self.component_id, pending);
        let decided: Vec<&Incident> = st
            .incidents
            .values()
            .filter(|i| i.is_closed())
            .filter(|i| i.decision.as_ref().is_some_and(|d| d.chosen.is_some()))
            .collect();
        if !decided.is_empty() {
            let autonomous = decided
                .iter()
                .filter(|i| i.outcome == Some(Outcome::Recovered) && i.autonomous == Some(true))
                .count();
            stats::autonomous_ratio(&self.component_id, autonomous as f64 / decided.len() as f64);
        }
    }

    // ---------------------------------------------------------------- intake

    /// Queues the alerts of one authenticated webhook request. `Err` means nothing new was
    /// made durable: answer 503 so the sender retries.
    pub async fn intake(
        self: &Arc<Self>,
        source: AlertSource,
        payload: WebhookPayload,
    ) -> Result<IntakeSummary, String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("the watcher is stopping".into());
        }
        let now = now_ms();
        let mut summary = IntakeSummary::default();
        let mut fresh: Vec<Incident> = Vec::new();
        let mut resolved_ids: Vec<String> = Vec::new();
        {
            let mut st = self.state.lock();
            for alert in payload.alerts {
                let status = alert.status.clone();
                if alert.is_test() {
                    summary.ignored += 1;
                    stats::alert_received(&self.component_id, source.as_str(), &status, "test");
                    continue;
                }
                let key = alert.incident_key();
                let id = incident_id(&key);
                let known = st.by_key.get(&key).cloned();
                match (known, alert.is_firing(), alert.is_resolved()) {
                    (Some(id), true, _) => {
                        if let Some(inc) = st.incidents.get_mut(&id) {
                            inc.last_seen_ms = now;
                            inc.repeats += 1;
                        }
                        summary.duplicates += 1;
                        summary.incidents.push(id);
                        stats::alert_received(
                            &self.component_id,
                            source.as_str(),
                            &status,
                            "duplicate",
                        );
                    }
                    (Some(id), _, true) => {
                        resolved_ids.push(id.clone());
                        summary.resolved += 1;
                        summary.incidents.push(id);
                        stats::alert_received(
                            &self.component_id,
                            source.as_str(),
                            &status,
                            "resolved",
                        );
                    }
                    (None, true, _) => {
                        if fresh.iter().any(|f| f.key == key) {
                            summary.duplicates += 1;
                            continue;
                        }
                        fresh.push(Incident {
                            id: id.clone(),
                            key,
                            source,
                            alert,
                            received_at_ms: now,
                            last_seen_ms: now,
                            repeats: 0,
                            stage: Stage::Queued,
                            outcome: None,
                            resolved_at_ms: None,
                            closed_at_ms: None,
                            finding: None,
                            decision: None,
                            approval_id: None,
                            actions: Vec::new(),
                            verification: None,
                            autonomous: None,
                            escalated_from: None,
                        });
                        summary.new += 1;
                        summary.incidents.push(id);
                        stats::alert_received(&self.component_id, source.as_str(), &status, "new");
                    }
                    _ => {
                        // Resolved for an unknown key, or an unknown status.
                        summary.ignored += 1;
                        stats::alert_received(
                            &self.component_id,
                            source.as_str(),
                            &status,
                            "ignored",
                        );
                    }
                }
            }
        }
        // Durable before the 2xx.
        if !fresh.is_empty() {
            let records = fresh
                .iter()
                .map(|i| Record::Incident(Box::new(i.clone())))
                .collect();
            self.write(records)
                .await
                .map_err(|e| format!("cannot queue the alerts durably: {e}"))?;
        }
        let mut spawned = Vec::new();
        {
            let mut st = self.state.lock();
            for inc in &fresh {
                if let Some(existing) = st.by_key.get(&inc.key).cloned() {
                    // A concurrent request queued it first: this one is a duplicate.
                    if let Some(i) = st.incidents.get_mut(&existing) {
                        i.repeats += 1;
                        i.last_seen_ms = now;
                    }
                    continue;
                }
                st.by_key.insert(inc.key.clone(), inc.id.clone());
                st.incidents.insert(inc.id.clone(), inc.clone());
                spawned.push(inc.id.clone());
            }
        }
        for inc in &fresh {
            if spawned.contains(&inc.id) {
                self.audit(
                    "alert",
                    Some(inc),
                    json!({"source": source.as_str(), "key": inc.key, "labels": inc.alert.labels,
                           "annotations": inc.alert.annotations, "starts_at": inc.alert.starts_at}),
                )
                .await;
            }
        }
        for id in spawned {
            self.drive_later(id);
        }
        for id in resolved_ids {
            self.resolve(&id)
                .await
                .map_err(|e| format!("cannot record the resolution durably: {e}"))?;
        }
        Ok(summary)
    }

    /// A `resolved` notification: marks the incident, cancels a pending approval.
    async fn resolve(self: &Arc<Self>, id: &str) -> std::io::Result<()> {
        let now = now_ms();
        let (records, cancelled, inc) = {
            let mut st = self.state.lock();
            let State {
                incidents,
                approvals,
                ..
            } = &mut *st;
            let Some(inc) = incidents.get_mut(id) else {
                return Ok(());
            };
            if inc.resolved_at_ms.is_some() {
                return Ok(());
            }
            inc.resolved_at_ms = Some(now);
            let mut records = Vec::new();
            let mut cancelled = None;
            if inc.stage == Stage::AwaitingApproval
                && let Some(aid) = &inc.approval_id
                && let Some(a) = approvals.get_mut(aid)
                && a.state == ApprovalState::Pending
            {
                a.state = ApprovalState::Cancelled;
                a.decided_at_ms = Some(now);
                a.reason = Some("the alert resolved".into());
                records.push(Record::Approval(Box::new(a.clone())));
                cancelled = Some(a.id.clone());
                inc.stage = Stage::Closed;
                inc.outcome = Some(inc.escalated_from.unwrap_or(Outcome::Cancelled));
                inc.closed_at_ms = Some(now);
            }
            records.push(Record::Incident(Box::new(inc.clone())));
            (records, cancelled, inc.clone())
        };
        self.write(records).await?;
        self.audit("resolved", Some(&inc), json!({"key": inc.key}))
            .await;
        if let Some(aid) = cancelled {
            stats::approval(&self.component_id, "cancelled");
            self.audit(
                "approval_cancelled",
                Some(&inc),
                json!({"approval_id": aid, "reason": "the alert resolved"}),
            )
            .await;
            self.after_close(&inc).await;
        }
        self.update_gauges();
        Ok(())
    }

    // ---------------------------------------------------------------- driving an incident

    /// Runs (or resumes) one incident up to its next wait (approval) or its end.
    pub async fn drive(self: Arc<Self>, id: String) {
        let Ok(_permit) = self.slots.clone().acquire_owned().await else {
            return;
        };
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
    fn alert_query(&self, alert: &Alert, decision: Option<&Decision>) -> Option<String> {
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

    async fn investigate_and_decide(self: &Arc<Self>, id: &str) {
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
        let t0 = Instant::now();
        let start_ms = now_ms();
        let finding = self
            .investigator
            .investigate(&inc.alert, query.as_deref())
            .await;
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
    async fn decide(&self, inc: &Incident, finding: &Finding) -> Decision {
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
    async fn dispatch(
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

    async fn request_approval(
        self: &Arc<Self>,
        id: &str,
        script: &str,
        action: RenderedAction,
        escalated_from: Option<Outcome>,
    ) {
        if self.cfg.approvers.is_empty() {
            stats::action_refused(&self.component_id, "no_approver");
            let inc = self.incident(id);
            self.audit(
                "action_blocked",
                inc.as_ref(),
                json!({"script": script, "reason": "needs approval and no approver is configured"}),
            )
            .await;
            return self
                .close(id, escalated_from.unwrap_or(Outcome::NoApprover), None)
                .await;
        }
        let now = now_ms();
        let expiry = i64::try_from(self.cfg.approval_expiry.get().as_millis()).unwrap_or(i64::MAX);
        let approval_id = format!("ap-{}", hex::encode(rand::random::<[u8; 8]>()));
        let Some(inc) = self.incident(id) else {
            return;
        };
        let hypothesis = inc
            .finding
            .as_ref()
            .map(|f| f.hypothesis.summary.clone())
            .unwrap_or_default();
        let summary = format!(
            "{}: {} — proposed {} ({})",
            inc.alert.label("alertname").unwrap_or("alert"),
            hypothesis,
            script,
            action.summary()
        );
        let approval = Approval {
            id: approval_id.clone(),
            incident_id: id.to_owned(),
            script: script.to_owned(),
            action,
            summary: summary.clone(),
            requested_at_ms: now,
            expires_at_ms: now.saturating_add(expiry),
            state: ApprovalState::Pending,
            decided_by: None,
            decided_at_ms: None,
            reason: None,
            escalation: escalated_from.is_some(),
        };
        let records = {
            let mut st = self.state.lock();
            match st.incidents.get_mut(id) {
                None => return,
                Some(i) if i.resolved_at_ms.is_some() => None,
                Some(i) => {
                    i.stage = Stage::AwaitingApproval;
                    i.approval_id = Some(approval_id.clone());
                    i.escalated_from = escalated_from;
                    let rec = vec![
                        Record::Approval(Box::new(approval.clone())),
                        Record::Incident(Box::new(i.clone())),
                    ];
                    st.approvals.insert(approval_id.clone(), approval.clone());
                    Some(rec)
                }
            }
        };
        let Some(records) = records else {
            return self
                .close(id, escalated_from.unwrap_or(Outcome::Cancelled), None)
                .await;
        };
        let _ = self.write(records).await;
        stats::approval(&self.component_id, "requested");
        self.update_gauges();
        self.audit(
            "approval_requested",
            Some(&inc),
            json!({"approval_id": approval_id, "script": script,
                   "action": approval.action.redacted(), "expires_at_ms": approval.expires_at_ms}),
        )
        .await;
        if let Some(url) = self.cfg.approval_webhook.clone() {
            let text = format!(
                "Sluice watcher needs approval {approval_id}: {summary}. \
                 POST /approvals/{approval_id}/approve or /reject (expires {}).",
                crate::alert::format_rfc3339_ms(approval.expires_at_ms)
            );
            let http = self.http.clone();
            let c = self.component_id.clone();
            self.spawn(async move {
                if let Err(e) = crate::notify::approval_webhook(&http, &url, &text).await {
                    stats::notify_error(&c, "approval_webhook");
                    tracing::warn!(error = %e, "watcher: approval notification failed");
                }
            });
        }
    }

    /// Runs an action (its gates re-checked here), records it, then verifies.
    async fn act(
        self: &Arc<Self>,
        id: &str,
        script: &str,
        action: RenderedAction,
        approved_by: Option<String>,
        escalated_from: Option<Outcome>,
    ) {
        let finished = |o: Outcome| escalated_from.unwrap_or(o);
        if self.stopping.load(Ordering::SeqCst) {
            // Left in its stage: the next start resumes it.
            return;
        }
        let now = now_ms();
        // Gates and the start record, atomically with respect to other tasks.
        let gate = {
            let mut st = self.state.lock();
            let State {
                incidents,
                runs,
                kill_switch,
                ..
            } = &mut *st;
            match incidents.get_mut(id) {
                None => Err(None),
                Some(i) if i.resolved_at_ms.is_some() && escalated_from.is_none() => {
                    Err(Some(Outcome::Cancelled))
                }
                Some(_) if *kill_switch => Err(Some(finished(Outcome::KillSwitch))),
                Some(i) => {
                    let limit = self.rate_limits.get(script).cloned().unwrap_or_default();
                    let per = i64::try_from(limit.per.get().as_millis()).unwrap_or(i64::MAX);
                    let q = runs.entry(script.to_owned()).or_default();
                    while q.front().is_some_and(|t| *t < now.saturating_sub(per)) {
                        q.pop_front();
                    }
                    if q.len() >= usize::try_from(limit.max).unwrap_or(usize::MAX) {
                        Err(Some(finished(Outcome::RateLimited)))
                    } else {
                        q.push_back(now);
                        i.stage = Stage::Acting;
                        i.actions.push(ActionRecord {
                            script: script.to_owned(),
                            action: Some(action.clone()),
                            started_at_ms: now,
                            approved_by: approved_by.clone(),
                            escalation: escalated_from.is_some(),
                            ..Default::default()
                        });
                        Ok(i.clone())
                    }
                }
            }
        };
        let inc = match gate {
            Ok(inc) => inc,
            Err(None) => return,
            Err(Some(outcome)) => {
                let reason = outcome.as_str();
                stats::action_refused(
                    &self.component_id,
                    match outcome {
                        Outcome::RateLimited => "rate_limited",
                        Outcome::KillSwitch => "kill_switch",
                        _ => "resolved",
                    },
                );
                let inc = self.incident(id);
                self.audit(
                    "action_blocked",
                    inc.as_ref(),
                    json!({"script": script, "reason": reason}),
                )
                .await;
                return self.close(id, outcome, None).await;
            }
        };
        // Written before the call: after a crash this action is known to have maybe run.
        if self
            .write(vec![Record::Incident(Box::new(inc.clone()))])
            .await
            .is_err()
        {
            return self.close(id, finished(Outcome::ActionFailed), None).await;
        }
        self.audit(
            "action_started",
            Some(&inc),
            json!({"script": script, "action": action.redacted(), "approved_by": approved_by}),
        )
        .await;
        let started = now_ms();
        let result = self.executor.run(&action).await;
        let ended = now_ms();
        stats::action(&self.component_id, script, result.outcome);
        let Some(inc) = self
            .update(id, |i| {
                if let Some(r) = i.actions.last_mut() {
                    r.finished_at_ms = Some(ended);
                    r.outcome = Some(result.outcome.to_owned());
                    r.status = result.status;
                    r.exit_code = result.exit_code;
                    r.response = result.response.clone();
                    r.result = result.result.clone();
                }
                i.clone()
            })
            .await
        else {
            return;
        };
        let ok = result.outcome == "ok";
        self.audit(
            if ok { "action_result" } else { "action_failed" },
            Some(&inc),
            json!({"script": script, "outcome": result.outcome, "status": result.status,
                   "exit_code": result.exit_code, "response": result.response,
                   "approved_by": approved_by, "escalation": escalated_from.is_some()}),
        )
        .await;
        let ctx = TraceCtx::for_incident(&inc.key);
        self.selftel.spans(
            ctx,
            vec![SpanData {
                name: "watcher.action".into(),
                span_id: ctx.child(&format!("action:{script}:{}", inc.actions.len())),
                parent: Some(ctx.root_span),
                start_ms: started,
                end_ms: ended,
                attrs: vec![
                    ("script".into(), script.into()),
                    ("outcome".into(), result.outcome.into()),
                    ("action".into(), action.summary()),
                ],
                error: (!ok).then(|| result.response.chars().take(200).collect()),
            }],
        );
        self.annotate(&inc, script, result.outcome, &action);
        if let Some(prior) = escalated_from {
            return self.close(id, prior, None).await;
        }
        if !ok {
            return self
                .escalate_or_close(id, script, Outcome::ActionFailed)
                .await;
        }
        self.verify_and_close(id, script, &result, approved_by.is_some())
            .await;
    }

    fn annotate(
        self: &Arc<Self>,
        inc: &Incident,
        script: &str,
        outcome: &str,
        action: &RenderedAction,
    ) {
        if self.grafana.is_none() {
            return;
        }
        let tag_key = inc.key.replace('@', "-");
        let tags = vec![
            "sluice-watcher".to_owned(),
            format!("watcher-incident:{tag_key}"),
            format!("watcher-action:{script}"),
        ];
        let text = format!(
            "Watcher ran {script} ({outcome}) for {}: {}",
            inc.alert.label("alertname").unwrap_or("alert"),
            action.summary()
        );
        let me = self.clone();
        self.spawn(async move {
            if let Some(g) = &me.grafana
                && let Err(e) = g.annotate(&tags, &text, now_ms()).await
            {
                stats::notify_error(&me.component_id, "grafana_annotation");
                tracing::warn!(error = %e, "watcher: Grafana annotation failed");
            }
        });
    }

    async fn escalate_or_close(self: &Arc<Self>, id: &str, ran: &str, outcome: Outcome) {
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
                        json!({"script": esc, "error": e}),
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

    async fn verify_and_close(
        self: &Arc<Self>,
        id: &str,
        script: &str,
        exec: &ExecResult,
        approved: bool,
    ) {
        let Some(inc) = self
            .update(id, |i| {
                i.stage = Stage::Verifying;
                i.clone()
            })
            .await
        else {
            return;
        };
        let started = now_ms();
        let spec = self
            .catalogue
            .get(script)
            .map(|s| s.script.verify.clone())
            .unwrap_or_default();
        let v = match spec {
            VerifySpec::Mode(VerifyMode::None) => Verification {
                method: "none".into(),
                detail: format!("{script} has no verification"),
                ..Default::default()
            },
            VerifySpec::Mode(VerifyMode::Alert) => {
                match self.alert_query(&inc.alert, inc.decision.as_ref()) {
                    Some(q) => self.verify_promql(&q).await,
                    None => Verification {
                        method: "none".into(),
                        detail: "no query to re-check: set the rule's verify_query or the alert's watcher_query annotation".into(),
                        ..Default::default()
                    },
                }
            }
            VerifySpec::Execution { execution_from } => {
                let new_id = exec
                    .result
                    .as_ref()
                    .and_then(|r| r.get(&execution_from))
                    .and_then(|v| v.as_str())
                    .filter(|s| {
                        !s.is_empty()
                            && s.len() <= 128
                            && s.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
                    })
                    .map(str::to_owned);
                match new_id {
                    Some(e) => self.verify_execution(&e).await,
                    None => Verification {
                        method: "execution".into(),
                        detail: format!("the response has no usable {execution_from:?}"),
                        ..Default::default()
                    },
                }
            }
        };
        let mut v = v;
        v.finished_at_ms = now_ms();
        let outcome = match v.recovered {
            Some(true) => Outcome::Recovered,
            Some(false) => Outcome::NotRecovered,
            None => Outcome::Done,
        };
        let Some(inc) = self
            .update(id, |i| {
                i.verification = Some(v.clone());
                i.clone()
            })
            .await
        else {
            return;
        };
        self.audit(
            "verification",
            Some(&inc),
            json!({"method": v.method, "query": v.query, "recovered": v.recovered,
                   "checks": v.checks, "detail": v.detail}),
        )
        .await;
        let ctx = TraceCtx::for_incident(&inc.key);
        self.selftel.spans(
            ctx,
            vec![SpanData {
                name: "watcher.verify".into(),
                span_id: ctx.child("verify"),
                parent: Some(ctx.root_span),
                start_ms: started,
                end_ms: v.finished_at_ms,
                attrs: vec![
                    ("method".into(), v.method.clone()),
                    ("recovered".into(), format!("{:?}", v.recovered)),
                ],
                error: (v.recovered == Some(false)).then(|| v.detail.clone()),
            }],
        );
        if outcome == Outcome::NotRecovered {
            return self.escalate_or_close(id, script, outcome).await;
        }
        self.close(id, outcome, Some(!approved)).await;
    }

    async fn verify_promql(&self, query: &str) -> Verification {
        let vc = &self.cfg.verification;
        let mut v = Verification {
            method: "promql".into(),
            query: query.to_owned(),
            ..Default::default()
        };
        let deadline = Instant::now() + vc.timeout.get();
        tokio::time::sleep(vc.delay.get().min(vc.timeout.get())).await;
        let mut last_err = None;
        let mut answered = false;
        loop {
            let t = now_ms() as f64 / 1000.0;
            match self
                .investigator
                .backends
                .prom_query(query, t, self.cfg.source_timeout.get())
                .await
            {
                Ok(samples) => {
                    v.checks += 1;
                    answered = true;
                    if samples.iter().all(|s| s.value == 0.0 || s.value.is_nan()) {
                        v.recovered = Some(true);
                        v.detail = format!(
                            "the query returned no firing series after {} checks",
                            v.checks
                        );
                        return v;
                    }
                    v.detail = format!(
                        "still firing: {}",
                        samples
                            .iter()
                            .take(3)
                            .map(|s| s.describe())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                Err(e) => last_err = Some(e),
            }
            if Instant::now() + vc.interval.get() > deadline {
                break;
            }
            tokio::time::sleep(vc.interval.get()).await;
        }
        if answered {
            v.recovered = Some(false);
        } else {
            v.detail = format!(
                "could not query: {}",
                last_err.unwrap_or_else(|| "no answer".into())
            );
        }
        v
    }

    async fn verify_execution(&self, execution_id: &str) -> Verification {
        let mut v = Verification {
            method: "execution".into(),
            query: format!("execution_id={execution_id} terminal event in the live window"),
            ..Default::default()
        };
        let deadline = Instant::now() + self.cfg.verification.timeout.get();
        loop {
            // Registered before looking, so an insert in between is not missed.
            let changed = self.window.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            v.checks += 1;
            for o in self.window.by(Dim::ExecutionId, execution_id, 0, 10_000) {
                let done = o.name == "workflow.completed" || (o.name == "awf.workflow" && !o.error);
                let failed = matches!(o.name.as_str(), "workflow.failed" | "workflow.cancelled")
                    || (o.name == "awf.workflow" && o.error);
                if done || failed {
                    v.recovered = Some(done);
                    v.detail = format!(
                        "execution {execution_id} ended with {}{}",
                        o.name,
                        o.error_message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    );
                    return v;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                v.detail = format!("execution {execution_id} did not end in time");
                v.recovered = Some(false);
                return v;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), changed).await;
        }
    }

    /// Closes the incident (cancelling any pending approval).
    async fn close(self: &Arc<Self>, id: &str, outcome: Outcome, autonomous: Option<bool>) {
        let now = now_ms();
        let (records, inc, cancelled) = {
            let mut st = self.state.lock();
            let State {
                incidents,
                approvals,
                ..
            } = &mut *st;
            let Some(i) = incidents.get_mut(id) else {
                return;
            };
            if i.is_closed() {
                return;
            }
            i.stage = Stage::Closed;
            i.outcome = Some(outcome);
            i.closed_at_ms = Some(now);
            i.autonomous = autonomous.or(i.autonomous);
            let mut records = vec![Record::Incident(Box::new(i.clone()))];
            let mut cancelled = None;
            if let Some(aid) = &i.approval_id
                && let Some(a) = approvals.get_mut(aid)
                && a.state == ApprovalState::Pending
            {
                a.state = ApprovalState::Cancelled;
                a.decided_at_ms = Some(now);
                records.push(Record::Approval(Box::new(a.clone())));
                cancelled = Some(aid.clone());
            }
            (records, i.clone(), cancelled)
        };
        let _ = self.write(records).await;
        if cancelled.is_some() {
            stats::approval(&self.component_id, "cancelled");
        }
        self.after_close(&inc).await;
        self.update_gauges();
    }

    async fn after_close(&self, inc: &Incident) {
        let outcome = inc.outcome.map(Outcome::as_str).unwrap_or("unknown");
        stats::incident_closed(
            &self.component_id,
            inc.outcome.map(Outcome::as_str).unwrap_or("unknown"),
        );
        self.audit(
            "closed",
            Some(inc),
            json!({"outcome": outcome, "autonomous": inc.autonomous,
                   "duration_ms": inc.closed_at_ms.unwrap_or(inc.received_at_ms) - inc.received_at_ms}),
        )
        .await;
        let ctx = TraceCtx::for_incident(&inc.key);
        let bad = matches!(
            inc.outcome,
            Some(
                Outcome::NotRecovered
                    | Outcome::ActionFailed
                    | Outcome::Refused
                    | Outcome::Interrupted
            )
        );
        self.selftel.spans(
            ctx,
            vec![SpanData {
                name: "watcher.incident".into(),
                span_id: ctx.root_span,
                parent: None,
                start_ms: inc.received_at_ms,
                end_ms: inc.closed_at_ms.unwrap_or_else(now_ms),
                attrs: vec![
                    ("incident_id".into(), inc.id.clone()),
                    ("incident_key".into(), inc.key.clone()),
                    (
                        "alertname".into(),
                        inc.alert.label("alertname").unwrap_or("").to_owned(),
                    ),
                    ("outcome".into(), outcome.to_owned()),
                ],
                error: bad.then(|| outcome.to_owned()),
            }],
        );
    }

    fn emit_investigation_spans(&self, inc: &Incident, f: &Finding, start_ms: i64) {
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

    // ---------------------------------------------------------------- approvals

    pub fn pending_approvals(&self) -> Vec<Approval> {
        let now = now_ms();
        let st = self.state.lock();
        let mut v: Vec<Approval> = st
            .approvals
            .values()
            .filter(|a| a.state == ApprovalState::Pending && a.expires_at_ms > now)
            .map(Approval::redacted)
            .collect();
        v.sort_by_key(|a| a.requested_at_ms);
        v
    }

    pub fn approval(&self, id: &str) -> Option<Approval> {
        self.state.lock().approvals.get(id).map(Approval::redacted)
    }

    /// Approves and starts the action. Refused when not pending, expired, or the incident is
    /// no longer waiting.
    pub async fn approve(
        self: &Arc<Self>,
        approval_id: &str,
        by: &str,
        comment: Option<String>,
    ) -> Result<Approval, ApiError> {
        self.decide_approval(approval_id, by, true, comment).await
    }

    pub async fn reject(
        self: &Arc<Self>,
        approval_id: &str,
        by: &str,
        reason: Option<String>,
    ) -> Result<Approval, ApiError> {
        self.decide_approval(approval_id, by, false, reason).await
    }

    async fn decide_approval(
        self: &Arc<Self>,
        approval_id: &str,
        by: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<Approval, ApiError> {
        use http::StatusCode;
        let now = now_ms();
        let note = note.map(|n| n.chars().take(1000).collect::<String>());
        let (records, approval, inc, expired_now) = {
            let mut st = self.state.lock();
            let State {
                incidents,
                approvals,
                ..
            } = &mut *st;
            let Some(a) = approvals.get_mut(approval_id) else {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("no approval {approval_id:?}"),
                ));
            };
            if a.state != ApprovalState::Pending {
                return Err((
                    StatusCode::CONFLICT,
                    format!("approval {approval_id} is already {}", a.state.as_str()),
                ));
            }
            let Some(inc) = incidents.get_mut(&a.incident_id) else {
                return Err((StatusCode::CONFLICT, "its incident is gone".into()));
            };
            let mut expired_now = false;
            if now >= a.expires_at_ms {
                a.state = ApprovalState::Expired;
                a.decided_at_ms = Some(now);
                expired_now = true;
            } else if approve {
                a.state = ApprovalState::Approved;
                inc.stage = Stage::Acting;
            } else {
                a.state = ApprovalState::Rejected;
            }
            if !expired_now {
                a.decided_by = Some(by.to_owned());
                a.decided_at_ms = Some(now);
                a.reason = note.clone();
            }
            (
                vec![
                    Record::Approval(Box::new(a.clone())),
                    Record::Incident(Box::new(inc.clone())),
                ],
                a.clone(),
                inc.clone(),
                expired_now,
            )
        };
        if expired_now {
            let _ = self.write(records).await;
            self.on_expired(&approval, &inc).await;
            return Err((StatusCode::GONE, format!("approval {approval_id} expired")));
        }
        if let Err(e) = self.write(records).await {
            // Not durable: undo so the approver's retry can succeed.
            let mut st = self.state.lock();
            if let Some(a) = st.approvals.get_mut(approval_id) {
                a.state = ApprovalState::Pending;
                a.decided_by = None;
                a.decided_at_ms = None;
                a.reason = None;
            }
            if let Some(i) = st.incidents.get_mut(&approval.incident_id) {
                i.stage = Stage::AwaitingApproval;
            }
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot record the decision: {e}"),
            ));
        }
        let state = if approve { "approved" } else { "rejected" };
        stats::approval(&self.component_id, state);
        self.update_gauges();
        self.audit(
            if approve {
                "approval_approved"
            } else {
                "approval_rejected"
            },
            Some(&inc),
            json!({"approval_id": approval_id, "by": by, "note": note, "script": approval.script}),
        )
        .await;
        let id = approval.incident_id.clone();
        if approve {
            let me = self.clone();
            let a = approval.clone();
            let by = by.to_owned();
            let prior = inc.escalated_from;
            self.spawn(async move {
                me.act(&id, &a.script, a.action.clone(), Some(by), prior)
                    .await;
            });
        } else {
            self.close(&id, inc.escalated_from.unwrap_or(Outcome::Rejected), None)
                .await;
        }
        Ok(approval.redacted())
    }

    async fn on_expired(self: &Arc<Self>, a: &Approval, inc: &Incident) {
        stats::approval(&self.component_id, "expired");
        self.audit(
            "approval_expired",
            Some(inc),
            json!({"approval_id": a.id, "script": a.script}),
        )
        .await;
        self.close(
            &a.incident_id,
            inc.escalated_from.unwrap_or(Outcome::Expired),
            None,
        )
        .await;
    }

    /// Expires every pending approval past its deadline.
    pub async fn expire_due(self: &Arc<Self>) {
        let now = now_ms();
        let due: Vec<(Approval, Incident, Vec<Record>)> = {
            let mut st = self.state.lock();
            let State {
                incidents,
                approvals,
                ..
            } = &mut *st;
            approvals
                .values_mut()
                .filter(|a| a.state == ApprovalState::Pending && a.expires_at_ms <= now)
                .filter_map(|a| {
                    a.state = ApprovalState::Expired;
                    a.decided_at_ms = Some(now);
                    let inc = incidents.get(&a.incident_id)?.clone();
                    Some((a.clone(), inc, vec![Record::Approval(Box::new(a.clone()))]))
                })
                .collect()
        };
        for (a, inc, records) in due {
            let _ = self.write(records).await;
            self.on_expired(&a, &inc).await;
        }
        let any = !self.state.lock().approvals.is_empty();
        if any {
            self.update_gauges();
        }
    }

    /// Whether one more refused webhook may be written to the audit log this minute.
    pub fn audit_refusal_allowed(&self) -> bool {
        let minute = now_ms() / 60_000;
        let mut r = self.refusal_audits.lock();
        if r.0 != minute {
            *r = (minute, 0);
        }
        r.1 += 1;
        r.1 <= REFUSAL_AUDITS_PER_MINUTE
    }

    /// Forgets finished incidents and decided approvals older than `dedup_ttl`, and compacts
    /// the journal once it has grown.
    pub async fn housekeeping(self: &Arc<Self>) {
        let now = now_ms();
        let ttl = i64::try_from(self.cfg.dedup_ttl.get().as_millis()).unwrap_or(i64::MAX);
        let old = |t: Option<i64>| t.is_some_and(|t| t.saturating_add(ttl) < now);
        {
            let mut st = self.state.lock();
            let State {
                incidents,
                by_key,
                approvals,
                ..
            } = &mut *st;
            incidents.retain(|_, i| !(i.is_closed() && old(i.closed_at_ms)));
            by_key.retain(|_, id| incidents.contains_key(id));
            approvals.retain(|_, a| {
                a.state == ApprovalState::Pending || !old(a.decided_at_ms.or(Some(a.expires_at_ms)))
            });
        }
        if self.journal.appended_since_compaction() < COMPACT_AFTER_LINES {
            return;
        }
        let me = self.clone();
        let r = tokio::task::spawn_blocking(move || {
            me.journal.compact_blocking(|| {
                let st = me.state.lock();
                let mut records: Vec<Record> = st
                    .incidents
                    .values()
                    .map(|i| Record::Incident(Box::new(i.clone())))
                    .collect();
                records.extend(
                    st.approvals
                        .values()
                        .map(|a| Record::Approval(Box::new(a.clone()))),
                );
                records.push(Record::KillSwitch {
                    engaged: st.kill_switch,
                    by: "compaction".into(),
                    at_ms: now_ms(),
                });
                records
            })
        })
        .await;
        if !matches!(r, Ok(Ok(()))) {
            metrics::counter!("sluice_watcher_journal_errors_total",
                "component_id" => self.component_id.to_string())
            .increment(1);
            tracing::error!("watcher: journal compaction failed; it keeps growing");
        }
    }

    pub async fn set_kill_switch(self: &Arc<Self>, engaged: bool, by: &str) -> std::io::Result<()> {
        let at_ms = now_ms();
        self.write(vec![Record::KillSwitch {
            engaged,
            by: by.to_owned(),
            at_ms,
        }])
        .await?;
        self.state.lock().kill_switch = engaged;
        self.audit("kill_switch", None, json!({"engaged": engaged, "by": by}))
            .await;
        Ok(())
    }

    // ---------------------------------------------------------------- restart

    /// Picks up unfinished work after a restart.
    pub async fn resume(self: &Arc<Self>) {
        let incidents: Vec<Incident> = self.state.lock().incidents.values().cloned().collect();
        for inc in incidents {
            match inc.stage {
                Stage::Queued | Stage::Investigating | Stage::Verifying => {
                    self.audit("resumed", Some(&inc), json!({"stage": inc.stage.as_str()}))
                        .await;
                    self.drive_later(inc.id.clone());
                }
                Stage::Acting => {
                    let running = inc.actions.last().filter(|a| a.outcome.is_none()).cloned();
                    if let Some(a) = running {
                        // It may or may not have taken effect: never repeat it blindly.
                        let _ = self
                            .update(&inc.id, |i| {
                                if let Some(r) = i.actions.last_mut() {
                                    r.outcome = Some("interrupted".into());
                                    r.finished_at_ms = Some(now_ms());
                                }
                            })
                            .await;
                        self.audit(
                            "action_interrupted",
                            Some(&inc),
                            json!({"script": a.script, "detail": "the watcher stopped while it ran; not repeated"}),
                        )
                        .await;
                        self.close(
                            &inc.id,
                            inc.escalated_from.unwrap_or(Outcome::Interrupted),
                            None,
                        )
                        .await;
                    } else {
                        // Approved, but the action had not started: start it now if the
                        // approval still stands.
                        let approval = {
                            let st = self.state.lock();
                            inc.approval_id
                                .as_ref()
                                .and_then(|a| st.approvals.get(a).cloned())
                                .filter(|a| a.state == ApprovalState::Approved)
                        };
                        match approval {
                            Some(a) => {
                                let me = self.clone();
                                let id = inc.id.clone();
                                let prior = inc.escalated_from;
                                self.spawn(async move {
                                    me.act(
                                        &id,
                                        &a.script,
                                        a.action.clone(),
                                        a.decided_by.clone(),
                                        prior,
                                    )
                                    .await;
                                });
                            }
                            None => {
                                self.close(
                                    &inc.id,
                                    inc.escalated_from.unwrap_or(Outcome::Interrupted),
                                    None,
                                )
                                .await
                            }
                        }
                    }
                }
                Stage::AwaitingApproval | Stage::Closed => {}
            }
        }
        self.update_gauges();
    }
}
