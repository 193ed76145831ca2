//! Self-fencing (Patroni's demote-on-lock-loss): the instance at a site whose PostgreSQL
//! server is a primary, when it has not renewed its lease in etcd for longer than the site's
//! bound (below the lease TTL, so before the majority can act on its lease expiring), fences
//! that primary itself — application roles lose their login, new sessions are read-only,
//! sessions are terminated — and remembers it locally (a restart keeps it). It lifts the fence
//! only after it has rejoined (renews again, a leader is known) and the shared journal confirms
//! the site still holds the primary: no execution past its point of no return fenced it and no
//! standby of it was promoted. Kept or lifted, the decision is audited in the shared chain.
//!
//! Failsafe: when a majority of the members (this one included) answer directly and see the
//! primary up, this instance lost etcd but not the majority, which cannot judge the primary
//! down: it is left alone (this covers etcd itself being down: Patroni's failsafe mode).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use niledr_probes::Observation;

use super::Cluster;
use crate::config::Config;
use crate::shared::Shared;
use crate::store::{AuditEvent, Store};

const TICK: Duration = Duration::from_millis(250);
/// Local meta key: service → when this instance fenced it (Unix ms).
const KEY: &str = "self_fenced";

pub struct SelfFence {
    pub cluster: Arc<Cluster>,
    pub shared: Arc<Shared>,
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    pub runbooks: BTreeMap<String, niledr_runbooks::Runbook>,
    pub stop: tokio_util::sync::CancellationToken,
}

impl SelfFence {
    /// Runs until `stop` when this instance's site has a bound; returns at once otherwise.
    pub async fn run(self) {
        let Some(bound) = self
            .cluster
            .config
            .self_fence
            .get(&self.cluster.config.site)
            .copied()
        else {
            return;
        };
        let mut fenced = self.load();
        let mut kept_noted: BTreeMap<String, String> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let silent = self
                .cluster
                .view()
                .renewed_at
                .map_or(Duration::MAX, |t| t.elapsed());
            if silent > bound {
                self.fence_local(&mut fenced, silent).await;
            } else if !fenced.is_empty() && self.cluster.view().leader.is_some() {
                self.rejoined(&mut fenced, &mut kept_noted).await;
            }
        }
    }

    fn load(&self) -> BTreeMap<String, i64> {
        match self.store.local_meta(KEY) {
            Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    }

    fn save(&self, fenced: &BTreeMap<String, i64>) {
        let v = serde_json::to_string(fenced).unwrap_or_default();
        if let Err(e) = self.store.set_local_meta(KEY, &v) {
            tracing::error!("recording the self-fence locally failed: {e:#}");
        }
    }

    /// PostgreSQL services at this site whose last probe found a writable primary.
    fn local_primaries(&self) -> Vec<String> {
        let model = self.shared.model.read().unwrap_or_else(|p| p.into_inner());
        model
            .services
            .values()
            .filter(|s| s.site.as_deref() == Some(self.cluster.config.site.as_str()))
            .filter(|s| {
                s.last.as_ref().is_some_and(|r| {
                    r.ok && matches!(&r.observation, Observation::Postgres(pg) if !pg.in_recovery)
                })
            })
            .map(|s| s.id.clone())
            .collect()
    }

    async fn fence_local(&self, fenced: &mut BTreeMap<String, i64>, silent: Duration) {
        let todo: Vec<String> = self
            .local_primaries()
            .into_iter()
            .filter(|s| !fenced.contains_key(s))
            .collect();
        for service in todo {
            if self.majority_vouches(&service).await {
                continue;
            }
            let outcome = match crate::engine::steps::pg_target(&self.config, &service) {
                Ok(t) => crate::actions::postgres::fence(&t).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(o @ crate::actions::postgres::FenceOutcome::Fenced { .. }) => {
                    tracing::error!(%service, "SELF-FENCED: no lease renewal for {silent:?} (bound {:?}): {}", self.bound(), o.summary());
                    fenced.insert(service, jiff::Timestamp::now().as_millisecond());
                    self.save(fenced);
                }
                Ok(o) => tracing::warn!(%service, "self-fence did not take: {}", o.summary()),
                Err(e) => tracing::error!(%service, "self-fence failed: {e:#}"),
            }
        }
    }

    fn bound(&self) -> Option<Duration> {
        self.cluster
            .config
            .self_fence
            .get(&self.cluster.config.site)
            .copied()
    }

    /// A majority of the last-known members (this one included) answer directly and see
    /// `service` up: the majority cannot judge it down, so this is not a partition from the
    /// majority but a lost etcd connection (or etcd itself down: Patroni's failsafe mode).
    async fn majority_vouches(&self, service: &str) -> bool {
        let members = self.cluster.view().members;
        let others: Vec<(String, String)> = members
            .iter()
            .filter(|m| m.name != self.cluster.config.name)
            .map(|m| (m.name.clone(), m.advertise.clone()))
            .collect();
        let total = members.len().max(others.len() + 1).max(2);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap_or_default();
        let mut vouching = vec![self.cluster.config.name.clone()];
        for (name, url) in others {
            // The member's public vouch endpoint: no token is needed to ask it (a member cut
            // off from etcd has no other way to reach its peers' view).
            let v = get_json(&client, &format!("{url}/api/v1/cluster/vouch/{service}")).await;
            let sees_up = v.as_ref().is_some_and(|v| {
                v["status"]
                    .as_str()
                    .is_some_and(|s| s != "down" && s != "unknown")
            });
            // A member that knows of an execution acting (or about to act), or cannot say,
            // does not vouch: a failover approved by people may be under way.
            let acting = v.as_ref().is_none_or(|v| v["acting"] != false);
            if sees_up && !acting {
                vouching.push(name);
            }
        }
        let vouched = vouching.len() * 2 > total;
        if vouched {
            tracing::warn!(%service, ?vouching, "no lease renewal, but a majority of the members reach {service} and see it up: not fencing it");
        }
        vouched
    }

    /// Back in touch with the cluster: lift each fence the journal does not hold, keep (and
    /// say once why) the others.
    async fn rejoined(
        &self,
        fenced: &mut BTreeMap<String, i64>,
        kept_noted: &mut BTreeMap<String, String>,
    ) {
        let store = self.store.clone();
        let execs = match tokio::task::spawn_blocking(move || store.executions()).await {
            Ok(Ok(e)) => e,
            _ => return,
        };
        let obligations =
            crate::engine::fencing::fence_obligations(&execs, |n| self.runbooks.get(n));
        for (service, since) in fenced.clone() {
            if self.is_standby_now(&service) {
                // Re-seeded as a standby (the failback runbook): nothing is left to lift.
                fenced.remove(&service);
                self.save(fenced);
                self.audit(
                    "cluster.self_fence_cleared",
                    &service,
                    since,
                    "the server is a standby now",
                )
                .await;
                continue;
            }
            let keep = if obligations.contains(&service) {
                Some("an execution past its point of no return failed over from it".to_string())
            } else {
                self.promoted_standby_of(&service)
                    .map(|s| format!("its standby {s} is a primary now"))
            };
            match keep {
                Some(why) => {
                    if kept_noted.get(&service) != Some(&why) {
                        tracing::warn!(%service, "self-fence kept after rejoining: {why}");
                        self.audit("cluster.self_fence_kept", &service, since, &why)
                            .await;
                        kept_noted.insert(service, why);
                    }
                }
                None => match self.lift(&service).await {
                    Ok(()) => {
                        fenced.remove(&service);
                        self.save(fenced);
                        self.audit(
                            "cluster.self_fence_lifted",
                            &service,
                            since,
                            "rejoined; the journal confirms this site still holds the primary",
                        )
                        .await;
                    }
                    Err(e) => tracing::error!(%service, "lifting the self-fence failed: {e:#}"),
                },
            }
        }
    }

    fn is_standby_now(&self, service: &str) -> bool {
        let model = self.shared.model.read().unwrap_or_else(|p| p.into_inner());
        model
            .services
            .get(service)
            .and_then(|s| s.last.as_ref())
            .is_some_and(|r| {
                r.ok && matches!(&r.observation, Observation::Postgres(pg) if pg.in_recovery)
            })
    }

    async fn lift(&self, service: &str) -> Result<()> {
        let t = crate::engine::steps::pg_target(&self.config, service)?;
        let o = crate::actions::postgres::unfence(&t).await?;
        tracing::warn!(%service, roles = ?o.roles, "self-fence lifted: rejoined the cluster, still the primary's site");
        Ok(())
    }

    /// A standby of `service` that some vantage point sees out of recovery.
    fn promoted_standby_of(&self, service: &str) -> Option<String> {
        let standbys: Vec<&String> = self
            .config
            .services
            .values()
            .filter(|s| s.upstream.as_deref() == Some(service))
            .map(|s| &s.id)
            .collect();
        let view = self.cluster.view();
        let model = self.shared.model.read().unwrap_or_else(|p| p.into_inner());
        standbys.into_iter().find_map(|sb| {
            let mine = model
                .services
                .get(sb)
                .and_then(|s| s.last.as_ref())
                .is_some_and(|r| {
                    r.ok && matches!(&r.observation, Observation::Postgres(pg) if !pg.in_recovery)
                });
            let theirs = view.members.iter().any(|m| {
                m.services
                    .get(sb)
                    .is_some_and(|o| o.ok == Some(true) && o.in_recovery == Some(false))
            });
            (mine || theirs).then(|| sb.clone())
        })
    }

    async fn audit(&self, action: &'static str, service: &str, since: i64, why: &str) {
        let store = self.store.clone();
        let detail = serde_json::json!({
            "member": self.cluster.config.name,
            "site": self.cluster.config.site,
            "service": service,
            "fenced_at_ms": since,
            "why": why,
        });
        let r = tokio::task::spawn_blocking(move || {
            store.append_audit(vec![AuditEvent {
                actor: "niledr",
                action,
                detail,
            }])
        })
        .await;
        if !matches!(r, Ok(Ok(_))) {
            tracing::warn!(%service, "auditing {action} failed");
        }
    }
}

/// An execution in `state` is approved or acting (or about to act): a peer knowing of one
/// does not vouch for the old primary.
pub fn is_acting(state: &str) -> bool {
    const QUIET: [&str; 7] = [
        "awaiting_approval",
        "succeeded",
        "failed",
        "rolled_back",
        "cancelled",
        "rejected",
        "expired",
    ];
    !QUIET.contains(&state)
}

/// GET a JSON document from another member; `None` if it does not answer with one.
async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    serde_json::from_slice(&r.bytes().await.ok()?).ok()
}
