//! Running an action and verifying its effect.

use super::*;
use crate::alert::now_ms;
use crate::exec::ExecResult;
use crate::live_window::Dim;
use crate::remediation_catalogue::{RenderedAction, VerifyMode, VerifySpec};
use crate::selftel::{SpanData, TraceCtx};
use crate::stats;
use crate::store::{ActionRecord, Incident, Outcome, Record, Stage, Verification};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Shared {
    /// Runs an action (its gates re-checked here), records it, then verifies.
    pub(crate) async fn act(
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

    pub(crate) fn annotate(
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

    pub(crate) async fn verify_and_close(
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

    pub(crate) async fn verify_promql(&self, query: &str) -> Verification {
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
                last_err.map_or_else(|| "no answer".to_owned(), |e| e.to_string())
            );
        }
        v
    }

    pub(crate) async fn verify_execution(&self, execution_id: &str) -> Verification {
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
}
