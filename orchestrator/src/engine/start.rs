//! Starting an approved execution: the approved preconditions must still hold (drift voids
//! the approvals), a fencing generation is taken, and every step is checked ready against the
//! real world before the first one runs — an execution that is not ready stops untouched,
//! saying which step and why. Also what a crashed task turns into.

use niledr_runbooks::{Event as MEvent, Readiness};
use niledr_web::ApiError;

use super::{Engine, TaskKind};
use crate::records::PreconditionsV1;

impl Engine {
    /// Approved: check the world did not drift past tolerance, take a fencing generation,
    /// check every step ready; the readiness answer (`ready_done`) starts the run.
    pub(super) fn start_approved(&mut self, id: &str) -> Result<(), ApiError> {
        let Some(l) = self.live.get(id) else {
            return Ok(());
        };
        let approved = match PreconditionsV1::decode(&l.record.preconditions) {
            Ok(p) => p,
            Err(e) => {
                return self.refuse_unreadable(id, &format!("preconditions: {e}"));
            }
        };
        let world = self.world();
        let now = niledr_runbooks::preconditions(&l.runbook, &world);
        let drift = niledr_runbooks::drift(&approved, &now, &l.runbook.approval.tolerance);
        if !drift.is_empty() {
            self.note(id, "preconditions_drifted", &drift.join("; "));
            let snapshot = PreconditionsV1::to_value(&now);
            if let Some(l) = self.live.get_mut(id) {
                l.record.preconditions = snapshot;
                // Approvals given for the old picture no longer count.
                l.record.approvals.clear();
            }
            return self.apply(id, MEvent::PreconditionsDrifted { details: drift });
        }
        let held = self.live.get(id).and_then(|l| l.record.generation);
        let generation = match held {
            Some(g) => g,
            None => self
                .store
                .next_generation()
                .map_err(|e| ApiError::Internal(format!("{e:#}")))?,
        };
        if let Some(l) = self.live.get_mut(id) {
            l.record.generation = Some(generation);
        }
        self.note(
            id,
            "checking_readiness",
            &format!("fencing generation {generation}; checking every step ready before the first"),
        );
        self.save(id, vec![])
            .map_err(|e| ApiError::Internal(format!("journal: {e:#}")))?;
        self.spawn_readiness(id);
        Ok(())
    }

    /// The readiness check answered: start, or stop untouched naming each step not ready.
    pub(super) fn ready_done(&mut self, id: &str, readiness: Vec<Readiness>) {
        if !self.live.contains_key(id) {
            return;
        }
        let lines: Vec<String> = readiness
            .iter()
            .map(|r| {
                format!(
                    "{} {}: {}",
                    if r.ready { "ready" } else { "NOT READY" },
                    r.step,
                    r.why
                )
            })
            .collect();
        self.note(id, "readiness", &lines.join("\n"));
        let failing: Vec<String> = readiness
            .iter()
            .filter(|r| !r.ready)
            .map(|r| format!("step {}: {}", r.step, r.why))
            .collect();
        let ev = if failing.is_empty() {
            MEvent::Start
        } else {
            MEvent::NotReady { details: failing }
        };
        if let Err(e) = self.apply(id, ev) {
            tracing::error!(%id, "starting after the readiness check failed: {e:?}");
        }
    }

    /// A stored field of the execution does not decode: it cannot be trusted, so the
    /// execution does not start, its approvals are void, and the reason is journaled.
    pub(super) fn refuse_unreadable(&mut self, id: &str, what: &str) -> Result<(), ApiError> {
        let why = format!(
            "the journal record does not decode (field {what}): refusing to start; approvals voided"
        );
        tracing::error!(%id, "NEEDS AN OPERATOR: {why}");
        if let Some(l) = self.live.get_mut(id) {
            l.record.approvals.clear();
        }
        self.pending_audit.push((
            "niledr".into(),
            "execution.record_unreadable".into(),
            serde_json::json!({ "id": id, "field": what }),
        ));
        self.apply(id, MEvent::NotReady { details: vec![why] })
    }

    /// A supervised task ended abnormally: the failure becomes an event for its execution.
    pub(super) fn task_crashed(&mut self, id: &str, index: usize, kind: TaskKind, error: String) {
        if !self.live.contains_key(id) {
            return;
        }
        if let Some(l) = self.live.get_mut(id)
            && let Some(s) = l.record.steps.get_mut(index)
            && matches!(kind, TaskKind::Step | TaskKind::Rollback)
        {
            s.outcome_at = Some(super::now_str());
            s.state = "crashed".into();
            s.error = Some(error.clone());
        }
        let ev = match kind {
            TaskKind::Step => MEvent::StepCrashed { index, error },
            TaskKind::Rollback => MEvent::RollbackStepFailed { index, error },
            TaskKind::Verify => MEvent::VerifyFailed { error },
            TaskKind::Ready => MEvent::NotReady {
                details: vec![format!("the readiness check ended abnormally: {error}")],
            },
        };
        if let Err(e) = self.apply(id, ev) {
            tracing::error!(%id, "journal of a crashed task failed: {e:?}");
        }
    }
}
