//! Runbook triggers: a service down long enough (with the standby's lag within bounds) opens a
//! proposal for the runbook, once per outage (remembered in the store across restarts),
//! announced and audited. A trigger stays quiet for a service an execution already failed
//! over from (it is kept fenced: that outage is handled). It runs without people only when
//! the runbook says `auto_approve = true`.

use std::collections::BTreeMap;

use niledr_probes::Status;
use niledr_web::types::PrincipalView;

use super::Engine;

/// The principal proposals opened by triggers are attributed to.
pub const TRIGGER: &str = "niledr-trigger";

impl Engine {
    /// Called on every timer tick.
    pub(super) fn check_triggers(&mut self) {
        if self.drill_active.is_some() {
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
                let Some(svc) = model.services.get(&t.service_down) else {
                    continue;
                };
                if svc.status != Status::Down {
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
                let since = u64::try_from(svc.since.as_millisecond()).unwrap_or(u64::MAX);
                // The debounce runs on the monotonic clock from when this process first saw
                // this outage: a wall-clock step cannot skip it.
                let first_seen = match self.down_seen.get(name) {
                    Some((s, seen)) if *s == since => *seen,
                    _ => {
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
                    svc.reason.clone(),
                ));
            }
        }
        for (name, since, standby, max_lag, why) in due {
            self.triggered.insert(name.clone(), since);
            self.save_triggered();
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
