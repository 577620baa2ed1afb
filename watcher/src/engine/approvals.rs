//! Approval requests, decisions and expiry.

use super::*;
use crate::alert::now_ms;
use crate::remediation_catalogue::RenderedAction;
use crate::stats;
use crate::store::{Approval, ApprovalState, Incident, Outcome, Record, Stage};
use serde_json::json;
use std::sync::Arc;

impl Shared {
    pub(crate) async fn request_approval(
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

    pub(crate) fn pending_approvals(&self) -> Vec<Approval> {
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

    pub(crate) fn approval(&self, id: &str) -> Option<Approval> {
        self.state.lock().approvals.get(id).map(Approval::redacted)
    }

    /// Approves and starts the action. Refused when not pending, expired, or the incident is
    /// no longer waiting.
    pub(crate) async fn approve(
        self: &Arc<Self>,
        approval_id: &str,
        by: &str,
        comment: Option<String>,
    ) -> Result<Approval, ApiError> {
        self.decide_approval(approval_id, by, true, comment).await
    }

    pub(crate) async fn reject(
        self: &Arc<Self>,
        approval_id: &str,
        by: &str,
        reason: Option<String>,
    ) -> Result<Approval, ApiError> {
        self.decide_approval(approval_id, by, false, reason).await
    }

    pub(crate) async fn decide_approval(
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

    pub(crate) async fn on_expired(self: &Arc<Self>, a: &Approval, inc: &Incident) {
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
    pub(crate) async fn expire_due(self: &Arc<Self>) {
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
}
