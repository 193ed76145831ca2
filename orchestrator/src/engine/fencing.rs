//! Returning old primaries: after a failover promoted a standby, an old primary that comes back
//! writable (it was down when the failover fenced it) is made read-only again at once, audited,
//! so it is never given writes without a failback plan.

use std::collections::BTreeSet;

use niledr_probes::Observation;
use niledr_runbooks::{Action, FenceMode};

use super::{Engine, EngineEvent, steps};
use crate::event_loop::Event;

impl Engine {
    /// Services fenced by the latest succeeded execution that promoted another server, and not
    /// promoted again since (a failback ends the obligation).
    pub(super) fn refresh_fence_list(&mut self) {
        let Ok(all) = self.store.executions() else {
            return;
        };
        let mut fenced = BTreeSet::new();
        for rec in all.iter().filter(|r| r.state == "succeeded") {
            let Some(rb) = self.runbooks.get(&rec.runbook) else {
                continue;
            };
            for step in &rb.runbook.steps {
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
        self.keep_fenced = fenced;
    }

    /// On each tick: re-fence any kept-fenced service seen writable again. Services an active
    /// execution holds are left to it (a failback promotes the old primary on purpose), and a
    /// service is re-fenced once per up-episode (the probes cannot tell read-only from writable).
    pub(super) fn check_returning_primaries(&mut self) {
        let locked: BTreeSet<&String> = self
            .live
            .values()
            .flat_map(|l| l.runbook.services.iter())
            .collect();
        let writable: Vec<(String, i64)> = {
            let Ok(model) = self.shared.model.read() else {
                return;
            };
            self.keep_fenced
                .iter()
                .filter(|id| !locked.contains(id))
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
            // Fence it now (idempotent if it already is read-only).
            self.fencing.insert(service.clone(), episode);
            tracing::warn!(%service, "an old primary a failover fenced answers as a primary: making it read-only (again)");
            let entry = crate::store::AuditEvent {
                actor: "niledr",
                action: "fence.returning_primary",
                detail: serde_json::json!({ "service": service }),
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
                };
                let result = steps::run(&ctx, &action, std::time::Duration::from_secs(15)).await;
                let _ = tx
                    .send(Event::Engine(Box::new(EngineEvent::Refenced {
                        service,
                        result: result.map_err(|e| e.error),
                    })))
                    .await;
            });
        }
    }
}
