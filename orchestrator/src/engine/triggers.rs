//! Runbook triggers: a service judged down (`verdicts.rs`: the quorum of vantage points and the
//! holistic check) long enough, with the standby's lag within bounds, opens a proposal for the
//! runbook, once per outage (remembered in the store across restarts),
//! announced and audited. A trigger stays quiet for a service an execution already failed
//! over from (it is kept fenced: that outage is handled). It runs without people only when
//! the runbook says `auto_approve = true`.

use std::collections::BTreeMap;

use niledr_web::types::PrincipalView;

use super::Engine;

/// The principal proposals opened by triggers are attributed to.
pub const TRIGGER: &str = "niledr-trigger";

impl Engine {
    /// Called on every timer tick.
    pub(super) fn check_triggers(&mut self) {
        // A drill runs, or maintenance mode (`crate::topology::maintenance`): stay quiet.
        if self.drill_active.is_some() || self.shared.topology.triggers_paused() {
            return;
        }
        let now = self.clock.mono();
        let mut due = Vec::new();
        {
            let Ok(model) = self.shared.model.read() else {
                return;
            };
            for (name, loaded) in &self.runbooks {
                let Some(t) = &loaded.runbook.trigger else {
                    continue;
                };
                if !model.services.contains_key(&t.service_down) {
                    continue;
                }
                let verdict = self.verdict(&t.service_down, &model);
                if !verdict.down
                    && model
                        .services
                        .get(&t.service_down)
                        .is_some_and(|s| s.status == niledr_probes::Status::Down)
                {
                    tracing::debug!(runbook = %name, "down here but not judged down: {}", verdict.reason);
                }
                if !verdict.down {
                    // The outage is over: the next one may propose again.
                    self.down_seen.remove(name);
                    if self.triggered.remove(name).is_some() {
                        self.save_triggered();
                    }
                    continue;
                }
                if self.keep_fenced.contains(&t.service_down) {
                    // A failover already moved away from it: this outage is handled.
                    continue;
                }
                let since = verdict
                    .since_ms
                    .and_then(|ms| u64::try_from(ms).ok())
                    .unwrap_or(u64::MAX);
                // The debounce runs on the monotonic clock from when this process first saw
                // this outage: a wall-clock step cannot skip it.
                let first_seen = match self.down_seen.get(name) {
                    Some((s, seen)) if *s == since => *seen,
                    _ => {
                        tracing::warn!(runbook = %name, service = %t.service_down, "judged down: {}; proposing if it lasts {} ms", verdict.reason, t.for_ms);
                        self.down_seen.insert(name.clone(), (since, now));
                        now
                    }
                };
                if !super::clock::debounced(first_seen, now, t.for_ms)
                    || self.triggered.get(name) == Some(&since)
                {
                    continue;
                }
                due.push((
                    name.clone(),
                    since,
                    t.standby.clone(),
                    t.max_standby_lag_bytes,
                    verdict,
                ));
            }
        }
        for (name, since, standby, max_lag, verdict) in due {
            self.triggered.insert(name.clone(), since);
            self.save_triggered();
            // Who saw what, before anything is proposed on it: the probes' verdict and the
            // pager alerts firing on the service (`hooks.rs`).
            let service = self
                .runbooks
                .get(&name)
                .and_then(|l| l.runbook.trigger.as_ref());
            let alerts = service
                .map(|t| self.alert_evidence(&t.service_down))
                .unwrap_or_default();
            let audit = self.store.append_audit(vec![crate::store::AuditEvent {
                actor: "niledr",
                action: "detection.verdict",
                detail: serde_json::json!({ "runbook": name, "verdict": verdict, "alerts": alerts }),
            }]);
            if let Err(e) = audit {
                tracing::error!("auditing the verdict failed: {e:#}");
            }
            if let Some(id) = self.alert_outage_execution(&name) {
                // A pager alert already proposed for this outage: one proposal per outage.
                tracing::info!(runbook = %name, %id, "judged down; a pager alert already opened execution {id} for this outage: no second proposal");
                continue;
            }
            let why = &verdict.reason;
            if let (Some(standby), Some(max)) = (&standby, max_lag) {
                let last = self
                    .store
                    .probe_history(standby, 500)
                    .ok()
                    .and_then(|h| h.into_iter().find_map(|p| p.lag));
                match last {
                    Some(lag) if lag <= max => {}
                    other => {
                        tracing::warn!(runbook = %name, "trigger fired but the standby's last lag {other:?} is not within {max} B: no proposal");
                        continue;
                    }
                }
            }
            let who = PrincipalView {
                name: TRIGGER.into(),
                role: "operator".into(),
                tags: Vec::new(),
            };
            let reason = format!("trigger: {why}");
            match self.create(&who, &name, &reason) {
                Ok(id) => {
                    tracing::warn!(runbook = %name, %id, "trigger opened a failover proposal: {reason}")
                }
                Err(e) => tracing::info!(runbook = %name, "trigger did not open a proposal: {e:?}"),
            }
        }
    }

    /// The outages triggers proposed for, kept in the store so a restart does not propose
    /// a second time for the same outage.
    pub(super) fn load_triggered(store: &crate::store::Store) -> BTreeMap<String, u64> {
        match store.meta(TRIGGERED_KEY) {
            Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_else(|e| {
                tracing::error!(
                    "the stored trigger memory does not decode ({e}): triggers start with none"
                );
                BTreeMap::new()
            }),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                tracing::error!("reading the trigger memory failed: {e:#}");
                BTreeMap::new()
            }
        }
    }

    fn save_triggered(&self) {
        let v = serde_json::to_string(&self.triggered).unwrap_or_default();
        if let Err(e) = self.store.set_meta(TRIGGERED_KEY, &v) {
            tracing::error!("saving the trigger memory failed: {e:#}");
        }
    }
}

/// Meta key of the trigger memory: runbook → start (ms) of the outage it proposed for.
const TRIGGERED_KEY: &str = "triggered";
