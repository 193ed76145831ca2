//! Membership: every instance publishes, under its lease, who it is and what its own probes
//! see of every service (so a dead instance's view expires with it), and reads everyone's.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use etcd_client::{GetOptions, PutOptions};
use serde::{Deserialize, Serialize};

use super::Cluster;
use crate::shared::Shared;

/// One instance's record under `members/<name>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemberRecord {
    pub name: String,
    pub site: String,
    pub advertise: String,
    /// When it was published (RFC 3339) and the same in Unix milliseconds.
    pub at: String,
    pub at_ms: i64,
    pub leader: bool,
    /// Service id → this instance's own view of it.
    pub services: BTreeMap<String, Observation>,
}

/// What one vantage point sees of one service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Observation {
    /// The health model's status (`up`, `degraded`, `down`, `unknown`).
    pub status: String,
    /// Since when it has had that status (Unix ms).
    #[serde(default)]
    pub since_ms: i64,
    /// The last probe answered.
    pub ok: Option<bool>,
    pub summary: String,
    /// A PostgreSQL server's own answer: in recovery (a standby) or not.
    pub in_recovery: Option<bool>,
    /// A standby's WAL receiver (streaming from its upstream) as seen by its last probe.
    pub wal_receiver: Option<bool>,
}

/// This instance's record now, from its health model.
pub fn own_record(cluster: &Cluster, shared: &Shared) -> MemberRecord {
    let now = jiff::Timestamp::now();
    let model = shared.model.read().unwrap_or_else(|p| p.into_inner());
    let services = model
        .services
        .values()
        .map(|s| {
            let pg = s.last.as_ref().and_then(|r| match &r.observation {
                niledr_probes::Observation::Postgres(pg) => Some(pg),
                _ => None,
            });
            (
                s.id.clone(),
                Observation {
                    status: s.status.to_string(),
                    since_ms: s.since.as_millisecond(),
                    ok: s.last.as_ref().map(|r| r.ok),
                    summary: s.last.as_ref().map(|r| r.summary()).unwrap_or_default(),
                    in_recovery: pg.map(|p| p.in_recovery),
                    wal_receiver: pg.and_then(|p| p.wal_receiver_streaming),
                },
            )
        })
        .collect();
    MemberRecord {
        name: cluster.config.name.clone(),
        site: cluster.config.site.clone(),
        advertise: cluster.config.advertise.clone(),
        at: now.to_string(),
        at_ms: now.as_millisecond(),
        leader: cluster.is_leader(),
        services,
    }
}

/// Every service's status and whether its latest probe answered, as one string (a change
/// means publish now: another member's verdict may wait for it).
pub fn fingerprint(shared: &Shared) -> String {
    let model = shared.model.read().unwrap_or_else(|p| p.into_inner());
    model
        .services
        .values()
        .map(|s| format!("{}={}/{:?};", s.id, s.status, s.last.as_ref().map(|r| r.ok)))
        .collect()
}

/// Publish this instance's record under `lease`.
pub async fn publish(cluster: &Arc<Cluster>, shared: &Shared, lease: i64) -> Result<()> {
    let rec = own_record(cluster, shared);
    let key = cluster.key(&format!("members/{}", rec.name));
    let value = serde_json::to_vec(&rec)?;
    cluster
        .clients()
        .write(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await
        .context("etcd: publishing this member")?;
    Ok(())
}

/// Every live member's record (expired leases have taken the others away), by name.
pub async fn read_all(cluster: &Arc<Cluster>) -> Result<Vec<MemberRecord>> {
    let prefix = cluster.key("members/");
    let r = cluster
        .clients()
        .read(|mut c| {
            let prefix = prefix.clone();
            async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })
        .await
        .context("etcd: reading members")?;
    let mut out: Vec<MemberRecord> = r
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
