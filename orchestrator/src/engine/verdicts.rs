//! Gathers the votes for a detection verdict (`crate::detection`): this instance's own view
//! from the health model, in cluster mode every other live member's published view, and for
//! a PostgreSQL primary what its standbys report of their WAL receivers.

use niledr_probes::{HealthModel, Observation};

use super::Engine;
use crate::detection::{self, StandbyReport, Verdict, Vote};

impl Engine {
    /// Is `service` down, by the quorum of vantage points and the holistic check?
    pub(super) fn verdict(&self, service: &str, model: &HealthModel) -> Verdict {
        let now = jiff::Timestamp::now().as_millisecond();
        let me = self
            .shared
            .cluster
            .as_ref()
            .map_or_else(|| "niledr".to_string(), |c| c.config.name.clone());
        let mut votes = Vec::new();
        if let Some(s) = model.services.get(service) {
            votes.push(Vote {
                member: me.clone(),
                status: s.status.to_string(),
                at_ms: now,
                since_ms: s.since.as_millisecond(),
                failing: s.last.as_ref().is_some_and(|r| !r.ok),
            });
        }
        let members = self
            .shared
            .cluster
            .as_ref()
            .map(|c| c.view().members)
            .unwrap_or_default();
        for m in members.iter().filter(|m| m.name != me) {
            if let Some(o) = m.services.get(service) {
                votes.push(Vote {
                    member: m.name.clone(),
                    status: o.status.clone(),
                    at_ms: m.at_ms,
                    since_ms: o.since_ms,
                    failing: o.ok == Some(false),
                });
            }
        }
        // The holistic check is PostgreSQL's: a standby reports its own WAL receiver.
        let postgres = |id: &str| {
            self.config
                .services
                .get(id)
                .is_some_and(|s| s.kind == crate::config::Kind::Postgres)
        };
        let standbys: Vec<&String> = if postgres(service) {
            self.config
                .services
                .values()
                .filter(|s| s.upstream.as_deref() == Some(service) && postgres(&s.id))
                .map(|s| &s.id)
                .collect()
        } else {
            Vec::new()
        };
        let reports = (!standbys.is_empty()).then(|| {
            let mut r = Vec::new();
            for sb in &standbys {
                if let Some(last) = model.services.get(*sb).and_then(|s| s.last.as_ref())
                    && let Observation::Postgres(pg) = &last.observation
                {
                    r.push(StandbyReport {
                        standby: (*sb).clone(),
                        seen_by: me.clone(),
                        at_ms: last.started_at.as_millisecond(),
                        streaming: if last.ok {
                            pg.wal_receiver_streaming
                        } else {
                            None
                        },
                    });
                }
                for m in members.iter().filter(|m| m.name != me) {
                    if let Some(o) = m.services.get(*sb) {
                        r.push(StandbyReport {
                            standby: (*sb).clone(),
                            seen_by: m.name.clone(),
                            at_ms: m.at_ms,
                            streaming: if o.ok == Some(true) {
                                o.wal_receiver
                            } else {
                                None
                            },
                        });
                    }
                }
            }
            r
        });
        detection::judge(service, votes, reports, now)
    }
}
