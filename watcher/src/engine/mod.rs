//! The incident engine: intake → investigation → decision → approval or action →
//! verification → close, with every step journaled before it is acted on.
//!
//! One task drives an incident at a time (guarded by its stage under the state lock), so an
//! action can never run twice for one incident key. Safety gates are checked right before an
//! action runs: alert still firing, kill switch off, not dry-run, rate limit, and — for scripts
//! that need it — an approval that is approved and not expired.

use crate::alert::{AlertSource, WebhookPayload, incident_id, now_ms};
use crate::auth::{ApproverAuth, IntakeAuth};
use crate::config::Config;
use crate::exec::Executor;
use crate::investigate::Investigator;
use crate::live_window::Window;
use crate::notify::Grafana;
use crate::remediation_catalogue::CompiledCatalogue;
use crate::rules::RuleSet;
use crate::selftel::{SelfTelemetry, SpanData, TraceCtx};
use crate::stats;
use crate::store::{Approval, ApprovalState, Audit, Incident, Journal, Outcome, Record, Stage};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    pub rate_limits: HashMap<String, crate::remediation_catalogue::RateLimit>,
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
/// Why a webhook's alerts were not queued: nothing new was made durable.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the watcher is stopping")]
    Stopping,
    #[error("cannot queue the alerts durably: {0}")]
    Queue(std::io::Error),
    #[error("cannot record the resolution durably: {0}")]
    Resolve(std::io::Error),
}

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

mod act;
mod approvals;
mod decide;

impl Shared {
    pub(crate) fn spawn(
        self: &Arc<Self>,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let h = tokio::spawn(fut);
        let mut t = self.tasks.lock();
        t.retain(|h| !h.is_finished());
        t.push(h);
    }

    pub(crate) fn drive_later(self: &Arc<Self>, id: String) {
        let me = self.clone();
        self.spawn(async move { me.drive(id).await });
    }

    pub(crate) async fn write(&self, records: Vec<Record>) -> std::io::Result<()> {
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
    pub(crate) async fn update<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Incident) -> R,
    ) -> Option<R> {
        let (r, snapshot) = {
            let mut st = self.state.lock();
            let inc = st.incidents.get_mut(id)?;
            let r = f(inc);
            (r, inc.clone())
        };
        let _ = self.write(vec![Record::Incident(Box::new(snapshot))]).await;
        Some(r)
    }

    pub(crate) fn incident(&self, id: &str) -> Option<Incident> {
        self.state.lock().incidents.get(id).cloned()
    }

    pub(crate) async fn audit(
        &self,
        kind: &str,
        inc: Option<&Incident>,
        detail: serde_json::Value,
    ) {
        let ctx = inc.map(|i| TraceCtx::for_incident(&i.key));
        let error = matches!(kind, "action_refused" | "action_failed" | "webhook_refused");
        self.selftel
            .log(ctx, kind, &format!("{kind}: {detail}"), error);
        self.audit
            .log(kind, inc.map(|i| i.id.as_str()), detail)
            .await;
    }

    pub(crate) fn update_gauges(&self) {
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

    /// Queues the alerts of one authenticated webhook request. `Err` means nothing new was
    /// made durable: answer 503 so the sender retries.
    pub(crate) async fn intake(
        self: &Arc<Self>,
        source: AlertSource,
        payload: WebhookPayload,
    ) -> Result<IntakeSummary, IntakeError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(IntakeError::Stopping);
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
            self.write(records).await.map_err(IntakeError::Queue)?;
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
            self.resolve(&id).await.map_err(IntakeError::Resolve)?;
        }
        Ok(summary)
    }

    /// A `resolved` notification: marks the incident, cancels a pending approval.
    pub(crate) async fn resolve(self: &Arc<Self>, id: &str) -> std::io::Result<()> {
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

    /// Closes the incident (cancelling any pending approval).
    pub(crate) async fn close(
        self: &Arc<Self>,
        id: &str,
        outcome: Outcome,
        autonomous: Option<bool>,
    ) {
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

    pub(crate) async fn after_close(&self, inc: &Incident) {
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

    /// Whether one more refused webhook may be written to the audit log this minute.
    pub(crate) fn audit_refusal_allowed(&self) -> bool {
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
    pub(crate) async fn housekeeping(self: &Arc<Self>) {
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

    pub(crate) async fn set_kill_switch(
        self: &Arc<Self>,
        engaged: bool,
        by: &str,
    ) -> std::io::Result<()> {
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

    /// Picks up unfinished work after a restart.
    pub(crate) async fn resume(self: &Arc<Self>) {
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
