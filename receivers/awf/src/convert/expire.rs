//! Timeouts: steps and executions whose end event never came are closed with an error status.

use super::step::StepEnd;
use super::workflow::{workflow_count, workflow_span};
use super::{Converter, KeyKind, Pending, Restore, nanos, span_key};
use crate::attrs::kv_str;
use crate::ids;

impl Converter {
    /// Closes steps and executions that outlived their timeouts at `now`.
    pub fn expire(&mut self, now: u64) -> Pending {
        let mut p = self.pending();
        let (expired_steps, expired_execs) = self.due(now);
        for (exec, step) in expired_steps {
            self.expire_step(&mut p, &exec, &step);
        }
        for exec in expired_execs {
            self.expire_execution(&mut p, &exec);
        }
        p
    }

    /// Open steps past `step_timeout` (of executions not expiring themselves) and executions
    /// past `execution_timeout`, at `now`.
    #[allow(clippy::type_complexity)]
    fn due(&self, now: u64) -> (Vec<(String, String)>, Vec<String>) {
        let step_timeout = nanos(self.cfg.step_timeout);
        let exec_timeout = nanos(self.cfg.execution_timeout);
        let mut expired_steps = Vec::new();
        let mut expired_execs = Vec::new();
        for (exec, state) in &self.executions {
            if now.saturating_sub(state.last_seen) >= exec_timeout {
                expired_execs.push(exec.clone());
                continue;
            }
            for (step, open) in &state.steps {
                if now.saturating_sub(open.opened_at) >= step_timeout {
                    expired_steps.push((exec.clone(), step.clone()));
                }
            }
        }
        (expired_steps, expired_execs)
    }

    /// Closes one step of a live execution, ended `step_timeout` after its start.
    fn expire_step(&mut self, p: &mut Pending, exec: &str, step: &str) {
        let Some(state) = self.executions.get_mut(exec) else {
            return;
        };
        let Some(open) = state.steps.remove(step) else {
            return;
        };
        let workflow_id = state.workflow_id.clone();
        p.restore.push(Restore::Step(
            exec.to_owned(),
            step.to_owned(),
            open.clone(),
        ));
        let msg = format!(
            "no end event within step_timeout ({:?})",
            self.cfg.step_timeout
        );
        let end = open.start.saturating_add(nanos(self.cfg.step_timeout));
        if self.close_step(p, exec, step, open, workflow_id, end, StepEnd::Timeout(msg)) {
            p.stats.timed_out_steps += 1;
        }
    }

    /// Forgets an execution that went quiet, closing its open steps and, when it had
    /// started, its workflow span (`status="timeout"`), at its last event's time.
    fn expire_execution(&mut self, p: &mut Pending, exec: &str) {
        let Some(mut state) = self.executions.remove(exec) else {
            return;
        };
        p.restore
            .push(Restore::Exec(exec.to_owned(), Box::new(state.clone())));
        let end = state.last_event_time;
        let workflow_id = state.workflow_id.clone();
        let timeout = self.cfg.execution_timeout;
        for (step, open) in std::mem::take(&mut state.steps) {
            let msg = format!("no event for the execution within execution_timeout ({timeout:?})");
            self.close_step(
                p,
                exec,
                &step,
                open,
                workflow_id.clone(),
                end,
                StepEnd::Timeout(msg),
            );
        }
        let Some(start) = state.workflow_start else {
            return;
        };
        if !self.claim(p, KeyKind::Identity, span_key(&ids::workflow_span_id(exec))) {
            return;
        }
        let msg = format!("no terminal event within execution_timeout ({timeout:?})");
        let mut attributes = vec![kv_str("execution_id", exec)];
        if let Some(w) = &workflow_id {
            attributes.push(kv_str("workflow_id", w.as_str()));
        }
        attributes.push(kv_str("status", "timeout"));
        p.spans
            .push(workflow_span(exec, start, end, attributes, Some(msg)));
        p.updates
            .push(workflow_count(exec, &workflow_id, "timeout", end));
        p.stats.timed_out_executions += 1;
    }
}
