//! The engine's supervised effect tasks: steps, undos, the end-to-end verification and the
//! readiness check each run as a tracked tokio task whose completion comes back as an event.
//! A task that panics or is aborted becomes a failure event (never a silent `running`
//! forever), and shutdown waits for tasks in flight up to a deadline, then journals what was
//! still running (in doubt: re-checked after the restart).

use std::future::Future;
use std::time::Duration;

use niledr_runbooks::{Action, Readiness, Rollback};

use super::steps::{self, StepError, StepOutcome};
use super::{Engine, EngineEvent, EngineTx};
use crate::failpoint;

/// What a tracked task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskKind {
    Step,
    Rollback,
    Verify,
    Ready,
}

impl TaskKind {
    fn name(self) -> &'static str {
        match self {
            TaskKind::Step => "step",
            TaskKind::Rollback => "rollback",
            TaskKind::Verify => "verification",
            TaskKind::Ready => "readiness check",
        }
    }
}

/// A task in flight: execution, step index (0 for verify/ready), kind.
pub type TaskKey = (String, usize, TaskKind);

/// The execution was approved by break-glass (a single approver with a written reason).
fn break_glass(rec: &crate::records::ExecutionRecordV1) -> bool {
    rec.approvals.iter().any(|a| {
        crate::records::ApprovalV1::decode(a).is_ok_and(|a| a.break_glass_reason.is_some())
    })
}

fn panic_text(e: &tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "the task was aborted".into();
    }
    "the task panicked (see the log)".into()
}

impl Engine {
    /// Spawn `fut` supervised: its event, or on panic/abort a `TaskCrashed` event.
    fn supervise<F>(&mut self, key: TaskKey, fut: F)
    where
        F: Future<Output = EngineEvent> + Send + 'static,
    {
        self.in_flight.insert(key.clone());
        let tx: EngineTx = self.tx.clone();
        let handle = self.rt.spawn(fut);
        self.rt.spawn(async move {
            let ev = match handle.await {
                Ok(ev) => ev,
                Err(e) => {
                    let error = panic_text(&e);
                    tracing::error!(id = %key.0, index = key.1, "{} task ended abnormally: {error}", key.2.name());
                    EngineEvent::TaskCrashed {
                        id: key.0,
                        index: key.1,
                        kind: key.2,
                        error,
                    }
                }
            };
            tx.send(ev).await;
        });
    }

    /// A task's completion arrived (or its crash).
    pub(super) fn task_ended(&mut self, id: &str, index: usize, kind: TaskKind) {
        self.in_flight.remove(&(id.to_string(), index, kind));
    }

    pub(super) fn spawn_step(&mut self, id: &str, index: usize, attempt: u32) {
        let Some(l) = self.live.get(id) else { return };
        let Some(step) = l.runbook.steps.get(index).cloned() else {
            return;
        };
        let run_with = steps::Attempt {
            execution: id.into(),
            timeout: Duration::from_millis(step.timeout_ms),
            generation: l.record.generation,
            break_glass: break_glass(&l.record),
        };
        let ctx = self.ctx.clone();
        let id = id.to_string();
        failpoint::hit(&format!("after_intent:{}", step.id));
        tracing::info!(%id, step = %step.id, attempt, "step starting");
        let key = (id.clone(), index, TaskKind::Step);
        self.supervise(key, async move {
            let started = tokio::time::Instant::now();
            let timeout = Duration::from_millis(step.timeout_ms);
            failpoint::delay(&step.id).await;
            let result = if failpoint::panics(&step.id) {
                panic!("failpoint panic:{}", step.id);
            } else if failpoint::skips(&step.id) {
                Ok(StepOutcome::Done(format!(
                    "failpoint skip:{}: reported done without acting",
                    step.id
                )))
            } else {
                match tokio::time::timeout(
                    timeout + Duration::from_secs(1),
                    steps::run(&ctx, &step.action, run_with),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(StepError {
                        error: format!("timed out after {timeout:?}"),
                        retryable: true,
                        untouched: false,
                    }),
                }
            };
            failpoint::hit(&format!("after_action:{}", step.id));
            EngineEvent::StepDone {
                id,
                index,
                rollback: false,
                result,
                took: started.elapsed(),
            }
        });
    }

    pub(super) fn spawn_rollback(&mut self, id: &str, index: usize) {
        let Some(l) = self.live.get(id) else { return };
        let Some(step) = l.runbook.steps.get(index).cloned() else {
            return;
        };
        let run_with = steps::Attempt {
            execution: id.into(),
            timeout: Duration::from_millis(step.timeout_ms),
            generation: l.record.generation,
            break_glass: false,
        };
        let ctx = self.ctx.clone();
        let id = id.to_string();
        tracing::warn!(%id, step = %step.id, "rolling back step");
        let key = (id.clone(), index, TaskKind::Rollback);
        self.supervise(key, async move {
            let started = tokio::time::Instant::now();
            let result = match &step.rollback {
                Rollback::Explicit(r) => steps::run(&ctx, &r.action, run_with).await,
                _ => steps::undo(&ctx, &step.action, run_with)
                    .await
                    .map(StepOutcome::Done),
            };
            EngineEvent::StepDone {
                id,
                index,
                rollback: true,
                result,
                took: started.elapsed(),
            }
        });
    }

    /// End-to-end verification: every promoted store answers as a primary and every cut-over
    /// name answers the new address on every authoritative server. Observe only: it never
    /// promotes or changes anything.
    pub(super) fn spawn_verify(&mut self, id: &str) {
        let Some(l) = self.live.get(id) else { return };
        let actions: Vec<Action> = l.runbook.steps.iter().map(|s| s.action.clone()).collect();
        let ctx = self.ctx.clone();
        let id = id.to_string();
        let key = (id.clone(), 0, TaskKind::Verify);
        self.supervise(key, async move {
            let mut seen = 0;
            let mut result = Ok(());
            for a in &actions {
                match steps::verify(&ctx, a).await {
                    None => {}
                    Some(Ok(_)) => seen += 1,
                    Some(Err(e)) => {
                        result = Err(e.error);
                        break;
                    }
                }
            }
            EngineEvent::VerifyDone {
                id,
                result: result
                    .map(|()| format!("{seen} checks passed (observed, nothing changed)")),
            }
        });
    }

    /// Before the first step: check every step ready against the real world.
    pub(super) fn spawn_readiness(&mut self, id: &str) {
        let Some(l) = self.live.get(id) else { return };
        let steps_list = l.runbook.steps.clone();
        let ctx = self.ctx.clone();
        let id = id.to_string();
        let key = (id.clone(), 0, TaskKind::Ready);
        self.supervise(key, async move {
            let mut readiness: Vec<Readiness> = Vec::new();
            for s in &steps_list {
                readiness.push(steps::ready(&ctx, s).await);
            }
            EngineEvent::ReadyDone { id, readiness }
        });
    }

    /// Shutdown: no new task starts; what is still in flight is listed.
    pub fn begin_stop(&mut self) {
        self.stopping = true;
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Journal, per execution, the tasks shutdown did not wait for: they are in doubt and
    /// are re-checked after the restart.
    pub fn journal_unfinished(&mut self) {
        let left: Vec<TaskKey> = self.in_flight.iter().cloned().collect();
        for (id, index, kind) in left {
            let what = match kind {
                TaskKind::Step | TaskKind::Rollback => self
                    .live
                    .get(&id)
                    .and_then(|l| l.runbook.steps.get(index))
                    .map_or_else(|| format!("step {index}"), |s| s.id.clone()),
                TaskKind::Verify | TaskKind::Ready => String::new(),
            };
            let detail = format!(
                "niledr stopped with the {} {what} still in flight: it is in doubt and re-checked after the restart",
                kind.name()
            );
            tracing::warn!(%id, "{detail}");
            self.note(&id, "shutdown_in_flight", &detail);
            if let Err(e) = self.save(&id, vec![]) {
                tracing::error!(%id, "journaling the in-flight work at shutdown failed: {e:#}");
            }
        }
    }
}
