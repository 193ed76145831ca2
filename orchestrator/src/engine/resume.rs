//! After a restart: every execution that had not ended is taken back; what was in flight is
//! re-checked (steps with intent but no outcome are in doubt: their actions check the world
//! before acting), journaled retries and confirm deadlines are re-armed.

use std::time::Duration;

use anyhow::Result;
use niledr_runbooks::{Machine, State};

use super::{Engine, Live};

impl Engine {
    /// After a restart: take back every execution that had not ended, and re-run what was in
    /// flight. Steps with intent but no outcome are in doubt; their actions check the world
    /// before acting, so nothing runs twice blindly.
    pub fn resume(&mut self) -> Result<()> {
        self.refresh_fence_list();
        for rec in self.store.executions()? {
            let machine = match decode(&rec) {
                Ok(m) => m,
                Err(what) => {
                    self.refuse_unloadable(rec, &what)?;
                    continue;
                }
            };
            if machine.state().is_terminal() {
                continue;
            }
            let Some(loaded) = self.runbooks.get(&rec.runbook) else {
                tracing::error!(id = %rec.id, runbook = %rec.runbook, "cannot resume execution: runbook no longer loaded");
                continue;
            };
            let runbook = loaded.runbook.clone();
            let id = rec.id.clone();
            tracing::warn!(%id, state = %machine.state(), "resuming execution after restart");
            let state = machine.state().clone();
            self.live.insert(
                id.clone(),
                Live {
                    machine,
                    record: rec,
                    runbook,
                },
            );
            self.note(
                &id,
                "resumed",
                "niledr restarted; re-checking in-flight work",
            );
            self.save(&id, vec![])?;
            match state {
                State::Running { step } => self.resume_step(&id, step),
                State::RollingBack { step } => self.spawn_rollback(&id, step),
                State::Verifying {} => self.spawn_verify(&id),
                State::Approved {} => self
                    .start_approved(&id)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The step the machine is at: in doubt (intent, no outcome) → re-check and run; waiting
    /// for a confirm → re-arm its deadline; failed with a retry due → re-arm the retry.
    fn resume_step(&mut self, id: &str, step: usize) {
        let Some(s) = self
            .live
            .get(id)
            .and_then(|l| l.record.steps.get(step))
            .cloned()
        else {
            return;
        };
        let remaining = |at: &Option<String>| {
            at.as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| {
                    Duration::try_from(t.duration_since(jiff::Timestamp::now()))
                        .unwrap_or(Duration::ZERO)
                })
        };
        if s.state == "waiting_confirmation" {
            if let Some(left) = remaining(&s.confirm_by) {
                self.arm_confirm_timeout(id, step, left);
            }
            return;
        }
        if s.intent_at.is_some() && s.outcome_at.is_none() {
            self.note(id, "in_doubt", &format!("step {step} had intent but no outcome: re-checking the world, then acting only if needed"));
            self.spawn_step(id, step, s.attempts.max(1));
            return;
        }
        if let Some(left) = remaining(&s.retry_due_at) {
            self.note(
                id,
                "retry_rearmed",
                &format!(
                    "the retry of step {} journaled before the restart runs in {left:?}",
                    s.id
                ),
            );
            self.arm_retry(id, step, left);
        }
    }

    /// An execution whose state machine does not decode cannot be resumed or trusted: it is
    /// ended as failed, needing an operator, with the field named (journaled and audited).
    fn refuse_unloadable(
        &mut self,
        mut rec: crate::records::ExecutionRecordV1,
        what: &str,
    ) -> Result<()> {
        if matches!(
            rec.state.as_str(),
            "succeeded" | "failed" | "rolled_back" | "cancelled" | "rejected" | "expired"
        ) {
            return Ok(());
        }
        let why = format!(
            "the journal record does not decode (field {what}): niledr refuses to start or continue it; approvals voided"
        );
        tracing::error!(id = %rec.id, "NEEDS AN OPERATOR: {why}");
        rec.state = "failed".into();
        rec.needs_operator = Some(why.clone());
        rec.approvals.clear();
        rec.timeline.push(crate::records::TimelineEntryV1 {
            at: super::now_str(),
            event: "record_unreadable".into(),
            detail: why,
        });
        let id = rec.id.clone();
        rec.revision += 1;
        self.store.save_execution(
            &rec,
            vec![crate::store::AuditEvent {
                actor: "niledr",
                action: "execution.record_unreadable",
                detail: serde_json::json!({ "id": id, "field": what }),
            }],
        )
    }
}

/// Every typed field of a stored execution, decoded: the machine, or which field does not
/// decode and why. Nothing is defaulted: an unreadable snapshot is not "no drift".
fn decode(rec: &crate::records::ExecutionRecordV1) -> Result<Machine, String> {
    let machine: Machine =
        serde_json::from_value(rec.machine.clone()).map_err(|e| format!("machine: {e}"))?;
    if machine.state().is_terminal() {
        return Ok(machine);
    }
    crate::records::PreconditionsV1::decode(&rec.preconditions)
        .map_err(|e| format!("preconditions: {e}"))?;
    serde_json::from_value::<niledr_runbooks::Plan>(rec.plan.clone())
        .map_err(|e| format!("plan: {e}"))?;
    for (i, a) in rec.approvals.iter().enumerate() {
        crate::records::ApprovalV1::decode(a).map_err(|e| format!("approvals[{i}]: {e}"))?;
    }
    Ok(machine)
}
