//! Returning old primaries: after an execution passed its point of no return (it promoted a
//! standby, whatever state it ended in), an old primary that comes back writable (it was down
//! when the failover fenced it) is fenced again at once, audited, and retried with backoff
//! until the fence holds — so it is never given writes without a failback plan.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use niledr_probes::Observation;
use niledr_runbooks::{Action, FenceMode, OnUnreachable};

use super::{Engine, EngineEvent, steps};

/// Backoff between re-fence attempts that failed: 1 s, doubled, at most 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// The services executions past their point of no return (or succeeded) fenced and no later
/// one promoted again, in journal order: they must stay fenced. Shared with self-fencing, which
/// lifts its own fence only when the journal does not hold the site's primary fenced.
pub fn fence_obligations<'a>(
    executions: &[crate::records::ExecutionRecordV1],
    runbook: impl Fn(&str) -> Option<&'a niledr_runbooks::Runbook>,
) -> BTreeSet<String> {
    let mut fenced = BTreeSet::new();
    let passed = executions
        .iter()
        .filter(|r| r.past_point_of_no_return || r.state == "succeeded");
    for rec in passed {
        let Some(rb) = runbook(&rec.runbook) else {
            continue;
        };
        for step in &rb.steps {
            match &step.action {
                Action::PostgresFence { service, .. } => {
                    fenced.insert(service.clone());
                }
                Action::PostgresPromote { service } => {
                    fenced.remove(service);
                }
                _ => {}
            }
        }
    }
    fenced
}

impl Engine {
    /// Services fenced by executions past their point of no return, and not promoted again
    /// by a later such execution (a failback ends the obligation).
    pub(super) fn refresh_fence_list(&mut self) {
        let Ok(all) = self.store.executions() else {
            return;
        };
        self.keep_fenced =
            fence_obligations(&all, |name| self.runbooks.get(name).map(|l| &l.runbook));
    }

    /// On each tick: re-fence any kept-fenced service seen writable again. Services an
    /// execution *acting* on them holds are left to it (a failback promotes the old primary
    /// on purpose); a proposal still waiting for approval, or an execution stopped for an
    /// operator, never blocks it. A service is
    /// re-fenced once per up-episode (the probes cannot tell read-only from writable), and
    /// again with backoff while attempts fail.
    pub(super) fn check_returning_primaries(&mut self) {
        self.refresh_fence_list_if_changed();
        let locked: BTreeSet<&String> = self
            .live
            .values()
            .filter(|l| {
                let s = l.machine.state();
                s.is_active() && !matches!(s, niledr_runbooks::State::NeedsOperator { .. })
            })
            .flat_map(|l| l.runbook.services.iter())
            .collect();
        let now = Instant::now();
        let writable: Vec<(String, i64)> = {
            let Ok(model) = self.shared.model.read() else {
                return;
            };
            self.keep_fenced
                .iter()
                .filter(|id| !locked.contains(id))
                .filter(|id| self.refence_retry.get(*id).is_none_or(|(_, at)| *at <= now))
                .filter_map(|id| {
                    let svc = model.services.get(id)?;
                    let primary = svc.last.as_ref().is_some_and(|r| {
                        r.ok && matches!(&r.observation, Observation::Postgres(pg) if !pg.in_recovery)
                    });
                    let episode = svc.since.as_millisecond();
                    (primary && self.fencing.get(id) != Some(&episode)).then(|| (id.clone(), episode))
                })
                .collect()
        };
        for (service, episode) in writable {
            self.fencing.insert(service.clone(), episode);
            self.refence(service);
        }
    }

    /// A probe just saw `service` answer as a writable primary.
    pub fn primary_seen(&mut self, service: &str) {
        if self.keep_fenced.contains(service) {
            self.check_returning_primaries();
        }
    }

    /// Executions change state only through the journal: refresh when one passed its point of
    /// no return since the last refresh.
    fn refresh_fence_list_if_changed(&mut self) {
        let passed = self
            .live
            .values()
            .filter(|l| l.machine.execution().past_point_of_no_return)
            .count();
        if passed != self.fence_list_passed {
            self.fence_list_passed = passed;
            self.refresh_fence_list();
        }
    }

    /// Fence it now (idempotent if it already is fenced), audited before acting.
    fn refence(&mut self, service: String) {
        let attempt = self.refence_retry.get(&service).map_or(1, |(n, _)| n + 1);
        tracing::warn!(%service, attempt, "an old primary a failover fenced answers as a primary: making it read-only (again)");
        let entry = crate::store::AuditEvent {
            actor: "niledr",
            action: "fence.returning_primary",
            detail: serde_json::json!({ "service": service, "attempt": attempt }),
        };
        if let Err(e) = self.store.append_audit(vec![entry]) {
            tracing::error!("audit of re-fencing {service} failed: {e:#}");
        }
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        self.rt.spawn(async move {
            let action = Action::PostgresFence {
                service: service.clone(),
                mode: FenceMode::ReadOnly,
                on_unreachable: OnUnreachable::Proceed,
            };
            let result = match steps::run(
                &ctx,
                &action,
                steps::Attempt {
                    execution: "re-fence".into(),
                    timeout: Duration::from_secs(15),
                    generation: None,
                    break_glass: false,
                },
            )
            .await
            {
                Ok(steps::StepOutcome::Done(d)) if d.starts_with("unreachable") => Err(d),
                Ok(steps::StepOutcome::Done(d) | steps::StepOutcome::AwaitConfirm(d)) => Ok(d),
                Err(e) => Err(e.error),
            };
            tx.send(EngineEvent::Refenced { service, result }).await;
        });
    }

    /// The outcome of a re-fence: a failure is retried with backoff until it holds.
    pub(super) fn refenced(&mut self, service: &str, result: Result<String, String>) {
        match result {
            Ok(d) => {
                self.refence_retry.remove(service);
                tracing::warn!(%service, "returning old primary fenced: {d}");
            }
            Err(e) => {
                let failures = self.refence_retry.get(service).map_or(1, |(n, _)| n + 1);
                let wait = backoff(failures);
                self.refence_retry
                    .insert(service.to_string(), (failures, Instant::now() + wait));
                // Not fenced: the next tick after the backoff tries again.
                self.fencing.remove(service);
                tracing::error!(%service, failures, "could not fence the returning old primary: {e}; retrying in {wait:?}");
            }
        }
    }
}
