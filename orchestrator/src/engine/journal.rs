//! The journal: every machine event is committed (fsync, with its audit entries) before the
//! effects it starts are performed, a step's intent before its action and its outcome before
//! the next effect. Also the completions of step tasks coming back.

use std::time::{Duration, Instant};

use niledr_runbooks::{Action, Effect, Event as MEvent, Level, State};
use niledr_web::ApiError;
use niledr_web::types::StatusEventView;

use super::steps::{StepError, StepOutcome};
use super::{Engine, EngineEvent, now_str};
use crate::failpoint;
use crate::records::TimelineEntryV1;
use crate::store::AuditEvent;

/// Audit entries as (actor, action, detail).
pub(super) type Audit = Vec<(String, String, serde_json::Value)>;

impl Engine {
    /// Persist the record (fsync) with audit entries.
    pub(super) fn save(&mut self, id: &str, mut audit: Audit) -> anyhow::Result<()> {
        let Some(l) = self.live.get_mut(id) else {
            return Ok(());
        };
        audit.append(&mut self.pending_audit);
        l.record.state = l.machine.state().name().to_string();
        l.record.past_point_of_no_return = l.machine.execution().past_point_of_no_return;
        l.record.machine = serde_json::to_value(&l.machine)?;
        l.record.revision += 1;
        let events = audit
            .iter()
            .map(|(actor, action, detail)| AuditEvent {
                actor,
                action,
                detail: detail.clone(),
            })
            .collect();
        self.store.save_execution(&l.record, events)?;
        // Committed: now the console may see it.
        let _ = self.executions.send(super::execution_view(&l.record));
        Ok(())
    }

    /// Feed one event to an execution's machine: journal the transitions, then perform the
    /// effects. A refused event changes nothing and is reported as a conflict.
    pub(super) fn apply(&mut self, id: &str, event: MEvent) -> Result<(), ApiError> {
        self.apply_as(id, "niledr", event)
    }

    pub(super) fn apply_as(
        &mut self,
        id: &str,
        actor: &str,
        event: MEvent,
    ) -> Result<(), ApiError> {
        let Some(l) = self.live.get_mut(id) else {
            return Err(ApiError::NotFound(format!("no active execution {id}")));
        };
        let outbox = l.machine.handle(&event);
        if let Some(why) = outbox.refused {
            return Err(ApiError::Conflict(why));
        }
        let event_name = serde_json::to_value(&event)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default();
        let mut audit = Vec::new();
        for t in &outbox.transitions {
            l.record.timeline.push(TimelineEntryV1 {
                at: now_str(),
                event: format!("{} → {}", t.from.name(), t.to.name()),
                detail: event_name.clone(),
            });
            audit.push((
                actor.to_string(),
                "execution.transition".to_string(),
                serde_json::json!({ "id": id, "from": t.from.to_string(), "to": t.to.to_string(), "event": event_name }),
            ));
        }
        // Mark intent for every step about to start, in the same commit (journal before effect).
        for e in &outbox.effects {
            match e {
                Effect::RunStep { index, attempt, .. } => {
                    let manual = matches!(
                        l.runbook.steps.get(*index).map(|s| &s.action),
                        Some(Action::ManualConfirm { .. })
                    );
                    audit.push((
                        "niledr".to_string(),
                        "step.intent".to_string(),
                        serde_json::json!({ "id": id, "step": l.runbook.steps.get(*index).map(|s| s.id.clone()), "attempt": attempt }),
                    ));
                    if let Some(s) = l.record.steps.get_mut(*index) {
                        s.attempts = *attempt;
                        s.intent_at = Some(now_str());
                        s.outcome_at = None;
                        s.retry_due_at = None;
                        s.confirm_by = None;
                        s.state = if manual {
                            "waiting_confirmation".into()
                        } else {
                            "running".into()
                        };
                    }
                }
                Effect::RollbackStep { index, .. } => {
                    audit.push((
                        "niledr".to_string(),
                        "step.rollback_intent".to_string(),
                        serde_json::json!({ "id": id, "step": l.runbook.steps.get(*index).map(|s| s.id.clone()) }),
                    ));
                    if let Some(s) = l.record.steps.get_mut(*index) {
                        s.state = "rolling_back".into();
                        s.intent_at = Some(now_str());
                        s.outcome_at = None;
                    }
                }
                Effect::ScheduleRetry {
                    index, after_ms, ..
                } => {
                    if let Some(s) = l.record.steps.get_mut(*index) {
                        let due = jiff::Timestamp::now()
                            + jiff::SignedDuration::from_millis(
                                i64::try_from(*after_ms).unwrap_or(i64::MAX),
                            );
                        s.retry_due_at = Some(due.to_string());
                    }
                }
                Effect::Notify { level, message } => {
                    l.record.timeline.push(TimelineEntryV1 {
                        at: now_str(),
                        event: format!("notify.{level:?}").to_lowercase(),
                        detail: message.clone(),
                    });
                }
                _ => {}
            }
        }
        l.record.needs_operator =
            needs_operator_text(id, l.machine.state(), l.machine.execution(), &l.runbook);
        let transitions = outbox.transitions.clone();
        self.save(id, audit)
            .map_err(|e| ApiError::Internal(format!("journal: {e:#}")))?;
        for t in &transitions {
            let _ = self.events.send(StatusEventView {
                seq: 0,
                at: now_str(),
                scope: "execution".into(),
                id: id.to_string(),
                site: None,
                from: t.from.name().into(),
                to: t.to.name().into(),
                reason: event_name.clone(),
            });
        }
        for e in outbox.effects {
            self.perform(id, e);
        }
        if self
            .live
            .get(id)
            .is_some_and(|l| l.machine.state().is_terminal())
            && let Some(l) = self.live.remove(id)
        {
            tracing::info!(%id, state = %l.machine.state(), "execution ended");
            crate::metrics::execution_ended(&l.record, l.machine.state().name());
            self.refresh_fence_list();
        }
        Ok(())
    }

    fn perform(&mut self, id: &str, effect: Effect) {
        let acts = matches!(
            effect,
            Effect::RunStep { .. } | Effect::RollbackStep { .. } | Effect::Verify
        );
        if self.stopping && acts {
            // Shutting down: the intent is journaled, so the restart re-checks and runs it.
            self.note(
                id,
                "shutdown",
                &format!("not started before the stop: {effect:?}"),
            );
            if let Err(e) = self.save(id, vec![]) {
                tracing::error!(%id, "journaling the stop failed: {e:#}");
            }
            return;
        }
        match effect {
            Effect::RunStep { index, attempt, .. } => {
                let manual = self.live.get(id).is_some_and(|l| {
                    matches!(
                        l.runbook.steps.get(index).map(|s| &s.action),
                        Some(Action::ManualConfirm { .. })
                    )
                });
                if !manual {
                    self.spawn_step(id, index, attempt);
                }
            }
            Effect::ScheduleRetry {
                index,
                after_ms,
                step,
                ..
            } => {
                // The due time is journaled already: a crash here must not lose the retry.
                failpoint::hit(&format!("retry_scheduled:{step}"));
                self.arm_retry(id, index, Duration::from_millis(after_ms));
            }
            Effect::RollbackStep { index, .. } => self.spawn_rollback(id, index),
            Effect::Verify => self.spawn_verify(id),
            Effect::Notify { level, message } => match level {
                Level::Info => tracing::info!(%id, "{message}"),
                Level::Warning => tracing::warn!(%id, "{message}"),
                Level::Critical => tracing::error!(%id, "NEEDS AN OPERATOR: {message}"),
            },
        }
    }

    pub(super) fn step_done(
        &mut self,
        id: &str,
        index: usize,
        rollback: bool,
        result: Result<StepOutcome, StepError>,
        took: Duration,
    ) -> anyhow::Result<()> {
        let step_id = self
            .live
            .get(id)
            .and_then(|l| l.runbook.steps.get(index))
            .map(|s| s.id.clone())
            .unwrap_or_default();
        failpoint::hit(&format!("before_outcome:{step_id}"));
        let journal_start = Instant::now();
        let result = match result {
            Ok(StepOutcome::AwaitConfirm(why)) if !rollback => {
                return self.await_confirm(id, index, &step_id, why, took);
            }
            Ok(StepOutcome::Done(d) | StepOutcome::AwaitConfirm(d)) => Ok(d),
            Err(e) => Err(e),
        };
        let Some(l) = self.live.get_mut(id) else {
            return Ok(());
        };
        if let Some(s) = l.record.steps.get_mut(index) {
            record_outcome(s, rollback, &result, took);
            crate::metrics::step_finished(&l.record.runbook, &s.kind, &s.state, took);
        }
        let outcome = l
            .record
            .steps
            .get(index)
            .map(|s| (s.state.clone(), s.detail.clone(), s.rollback_detail.clone()));
        self.pending_audit.push((
            "niledr".to_string(),
            if rollback {
                "step.rollback_outcome"
            } else {
                "step.outcome"
            }
            .to_string(),
            serde_json::json!({ "id": id, "step": step_id, "outcome": outcome }),
        ));
        let ev = match (rollback, result) {
            (false, Ok(_)) => MEvent::StepSucceeded { index },
            (false, Err(e)) => MEvent::StepFailed {
                index,
                retryable: e.retryable,
                error: e.error,
                untouched: e.untouched,
            },
            (true, Ok(_)) => MEvent::RollbackStepDone { index },
            (true, Err(e)) => MEvent::RollbackStepFailed {
                index,
                error: e.error,
            },
        };
        if let Err(e) = self.apply(id, ev) {
            tracing::error!(%id, "journal of step {index} outcome failed: {e:?}");
        }
        if let Some(l) = self.live.get_mut(id)
            && let Some(s) = l.record.steps.get_mut(index)
        {
            s.overhead_ms = Some(journal_start.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(())
    }

    /// The step cannot decide alone: it waits (journaled) for an operator's confirm until
    /// its timeout, then fails.
    fn await_confirm(
        &mut self,
        id: &str,
        index: usize,
        step_id: &str,
        why: String,
        took: Duration,
    ) -> anyhow::Result<()> {
        let Some(l) = self.live.get_mut(id) else {
            return Ok(());
        };
        let timeout = l
            .runbook
            .steps
            .get(index)
            .map_or(Duration::from_secs(60), |s| {
                Duration::from_millis(s.timeout_ms)
            });
        let by = jiff::Timestamp::now()
            + jiff::SignedDuration::try_from(timeout).unwrap_or(jiff::SignedDuration::ZERO);
        if let Some(s) = l.record.steps.get_mut(index) {
            s.state = "waiting_confirmation".into();
            s.detail = why.clone();
            s.duration_ms = Some(took.as_secs_f64() * 1000.0);
            s.confirm_by = Some(by.to_string());
        }
        tracing::error!(%id, step = %step_id, "NEEDS AN OPERATOR: {why} (confirm by {by})");
        let audit = vec![(
            "niledr".to_string(),
            "step.awaiting_confirm".to_string(),
            serde_json::json!({ "id": id, "step": step_id, "why": why, "confirm_by": by.to_string() }),
        )];
        self.save(id, audit)?;
        self.arm_confirm_timeout(id, index, timeout);
        Ok(())
    }

    pub(super) fn arm_confirm_timeout(&mut self, id: &str, index: usize, after: Duration) {
        let tx = self.tx.clone();
        let id = id.to_string();
        let attempt = self.attempt_of(&id, index);
        self.rt.spawn(async move {
            tokio::time::sleep(after).await;
            tx.send(EngineEvent::ConfirmDue { id, index, attempt })
                .await;
        });
    }

    pub(super) fn arm_retry(&mut self, id: &str, index: usize, after: Duration) {
        let tx = self.tx.clone();
        let id = id.to_string();
        self.rt.spawn(async move {
            tokio::time::sleep(after).await;
            tx.send(EngineEvent::RetryDue { id, index }).await;
        });
    }

    fn attempt_of(&self, id: &str, index: usize) -> u32 {
        self.live
            .get(id)
            .and_then(|l| l.record.steps.get(index))
            .map_or(0, |s| s.attempts)
    }

    /// No confirm came in time: the step fails (it changed nothing).
    pub(super) fn confirm_due(&mut self, id: &str, index: usize, attempt: u32) {
        let waiting = self.live.get(id).is_some_and(|l| {
            l.record
                .steps
                .get(index)
                .is_some_and(|s| s.state == "waiting_confirmation" && s.attempts == attempt)
                && matches!(l.machine.state(), State::Running { step } if *step == index)
        });
        if !waiting {
            return;
        }
        let why = self
            .live
            .get(id)
            .and_then(|l| l.record.steps.get(index))
            .map(|s| s.detail.clone())
            .unwrap_or_default();
        let err = StepError {
            error: format!("no operator confirmed in time: {why}"),
            retryable: false,
            untouched: true,
        };
        if let Err(e) = self.step_done(id, index, false, Err(err), Duration::ZERO) {
            tracing::error!(%id, "journal of an unconfirmed step failed: {e:#}");
        }
    }
}

fn record_outcome(
    s: &mut crate::records::StepRecordV1,
    rollback: bool,
    result: &Result<String, StepError>,
    took: Duration,
) {
    s.outcome_at = Some(now_str());
    s.confirm_by = None;
    let text = match result {
        Ok(d) => d.clone(),
        Err(e) => e.error.clone(),
    };
    if rollback {
        s.rollback_detail = Some(text);
    } else {
        s.duration_ms = Some(took.as_secs_f64() * 1000.0);
        if result.is_err() {
            s.error = Some(text.clone());
        }
        s.detail = text;
    }
    s.state = match (rollback, result.is_ok()) {
        (false, true) => "succeeded",
        (false, false) => "failed",
        (true, true) => "rolled_back",
        (true, false) => "rollback_failed",
    }
    .into();
}

/// What an operator must know about an execution that stopped for them, with the ways
/// forward; `None` when nothing waits for a person.
fn needs_operator_text(
    id: &str,
    state: &State,
    x: &niledr_runbooks::Execution,
    runbook: &niledr_runbooks::Runbook,
) -> Option<String> {
    let why = x.failure.clone().unwrap_or_default();
    match state {
        State::NeedsOperator { step } => {
            let retry = runbook
                .steps
                .get(*step)
                .map_or_else(|| "verify".to_string(), |s| s.id.clone());
            Some(if x.past_point_of_no_return {
                format!(
                    "{why}. Past the point of no return: nothing was rolled back and the old side stays fenced. \
                     Ways forward: fix the cause, then `niledr retry {id} {retry}` (roll forward); or `niledr cancel {id}` \
                     (closes it, undoes nothing) and run the failback runbook."
                )
            } else {
                format!(
                    "{why}. Before the point of no return. Ways forward: `niledr retry {id} {retry}`, or `niledr cancel {id}` (rolls back)."
                )
            })
        }
        State::Failed {
            needs_operator: true,
        } => Some(if why.is_empty() {
            "rollback failed".into()
        } else {
            why
        }),
        _ => None,
    }
}
