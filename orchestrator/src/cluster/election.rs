//! Leader election by a leader key under this instance's lease. Every instance holds a lease
//! (renewed every third of the TTL) that also carries its member record; the one whose
//! create-if-absent transaction puts the leader key leads, and the key's create revision is
//! its fencing token. A leader steps down (tells the event loop, which drops the engine) when a
//! guarded write finds the key gone or someone else's, when the key is no longer its own, or
//! when it could not renew its lease in time: it stops a margin before etcd can expire the
//! lease, so the next leader can only start after this one stopped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Cluster, LeaderInfo, members};
use crate::event_loop::Event;
use crate::shared::Shared;

/// How often the elector campaigns or checks the key and publishes this member.
const TICK: Duration = Duration::from_millis(100);
/// Member records are republished this often.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// What the elector needs, and the tokens that stop it: `stop` ends campaigning (shutdown
/// began), `resign` gives the key up (after the event loop has drained its steps).
pub struct Elector {
    pub cluster: Arc<Cluster>,
    pub tx: mpsc::Sender<Event>,
    pub shared: Arc<Shared>,
    pub stop: CancellationToken,
    pub resign: CancellationToken,
}

/// How a held lease ended.
enum Ended {
    Lost(String),
    Resign,
}

impl Elector {
    /// Hold a lease and campaign until `resign`.
    pub async fn run(self) {
        loop {
            let lease = match self.grant().await {
                Ok(l) => l,
                Err(e) => {
                    self.note_error(&format!("{e:#}"));
                    tokio::select! {
                        _ = self.resign.cancelled() => return,
                        _ = tokio::time::sleep(TICK * 2) => continue,
                    }
                }
            };
            match self.hold(lease).await {
                Ended::Resign => {
                    self.give_up(lease).await;
                    return;
                }
                Ended::Lost(why) => {
                    self.step_down(&why).await;
                    self.note_error(&why);
                    // Best effort: a revoked lease frees the key at once instead of at expiry.
                    let clients = self.cluster.clients();
                    let revoke = clients.write(|mut c| async move { c.lease_revoke(lease).await });
                    let _ = tokio::time::timeout(TICK, revoke).await;
                }
            }
        }
    }

    async fn grant(&self) -> Result<i64> {
        let ttl = i64::try_from(self.cluster.config.lease_ttl.as_secs()).unwrap_or(5);
        let r = self
            .cluster
            .clients()
            .write(|mut c| async move { c.lease_grant(ttl, None).await })
            .await
            .context("etcd: granting a lease")?;
        Ok(r.id())
    }

    /// Renew `lease` (on its own task), campaign, watch the key, publish this member, until
    /// the lease is lost.
    async fn hold(&self, lease: i64) -> Ended {
        let ttl = self.cluster.config.lease_ttl;
        let margin = (ttl / 5).min(Duration::from_secs(1));
        let granted = Instant::now();
        self.cluster
            .update_view(|v| v.renewed_at = Some(granted.into_std()));
        let (expired_tx, mut expired) = tokio::sync::oneshot::channel::<String>();
        let renewer = tokio::spawn(renew(self.cluster.clone(), lease, expired_tx));
        let _abort = AbortOnDrop(renewer);
        let mut next_publish = Instant::now();
        let mut published = String::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let leading = self.cluster.is_leader();
            let renewed = self
                .cluster
                .view()
                .renewed_at
                .map_or(granted, Instant::from_std);
            let valid_until = renewed + ttl - margin;
            tokio::select! {
                _ = self.resign.cancelled() => return Ended::Resign,
                why = &mut expired => {
                    return Ended::Lost(why.unwrap_or_else(|_| "the lease renewal task ended".into()));
                }
                _ = self.cluster.leadership.deposed.notified() => {
                    self.step_down("a guarded write found the leader key gone or someone else's").await;
                }
                _ = tokio::time::sleep_until(valid_until), if leading => {
                    // Renewed meanwhile? The next round recomputes; otherwise stop leading now
                    // and let the key expire with this lease (a new lease campaigns afresh).
                    if self.cluster.view().renewed_at.map_or(granted, Instant::from_std) == renewed {
                        return Ended::Lost(format!("the lease was not renewed within {ttl:?} (less a {margin:?} margin)"));
                    }
                }
                _ = tick.tick() => {
                    if Instant::now() >= renewed + ttl + margin {
                        return Ended::Lost("the lease expired before it could be renewed".into());
                    }
                    if let Err(e) = self.campaign(lease).await {
                        self.note_error(&format!("{e:#}"));
                    }
                    // Publish at once when this instance's view of a service changed (the
                    // leader's verdict waits for it), else every PUBLISH_EVERY; read everyone's
                    // on every tick.
                    let statuses = members::fingerprint(&self.shared);
                    if Instant::now() >= next_publish || statuses != published {
                        next_publish = Instant::now() + PUBLISH_EVERY;
                        match members::publish(&self.cluster, &self.shared, lease).await {
                            Ok(()) => published = statuses,
                            Err(e) => self.note_error(&format!("{e:#}")),
                        }
                    }
                    if let Err(e) = self.read_members().await {
                        self.note_error(&format!("{e:#}"));
                    }
                }
            }
        }
    }

    /// Create the leader key if absent; otherwise learn who holds it (and step down if this
    /// instance thought it did but the key is not its own).
    async fn campaign(&self, lease: i64) -> Result<()> {
        let c = &self.cluster;
        let key = c.key("leader");
        let mine = LeaderInfo {
            name: c.config.name.clone(),
            site: c.config.site.clone(),
            advertise: c.config.advertise.clone(),
            since: jiff::Timestamp::now().to_string(),
            token: 0,
        };
        let may_take = !self.stop.is_cancelled();
        let txn = if may_take {
            Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    serde_json::to_vec(&mine)?,
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key.clone(), None)])
        } else {
            Txn::new().and_then([TxnOp::get(key.clone(), None)])
        };
        let resp = c
            .clients()
            .write(|mut cl| {
                let txn = txn.clone();
                async move { cl.txn(txn).await }
            })
            .await
            .context("etcd: campaigning")?;
        c.update_view(|v| v.last_contact = Some(std::time::Instant::now()));
        if may_take && resp.succeeded() {
            let token = resp.header().map(|h| h.revision()).unwrap_or_default();
            if token <= 0 {
                bail!("etcd answered the campaign without a revision");
            }
            self.take(LeaderInfo { token, ..mine }).await;
            return Ok(());
        }
        let mut holder_lease = 0;
        let holder = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                holder_lease = kv.lease();
                serde_json::from_slice::<LeaderInfo>(kv.value()).map(|info| LeaderInfo {
                    token: kv.create_revision(),
                    ..info
                })
            }),
            _ => None,
        });
        let holder = holder
            .transpose()
            .context("the leader key does not decode")?;
        // A campaign whose answer was lost (a timed-out write that was applied) left the key
        // under this very lease: it is ours.
        if may_take
            && c.leadership.token().is_none()
            && holder_lease == lease
            && let Some(h) = &holder
        {
            self.take(h.clone()).await;
            return Ok(());
        }
        if let Some(token) = c.leadership.token()
            && holder.as_ref().is_none_or(|h| h.token != token)
        {
            self.step_down("the leader key is no longer this instance's")
                .await;
        }
        c.update_view(|v| v.leader = holder);
        Ok(())
    }

    async fn take(&self, info: LeaderInfo) {
        tracing::warn!(token = info.token, "this instance now leads the cluster");
        self.cluster.leadership.set(Some(info.token));
        self.cluster.update_view(|v| v.leader = Some(info.clone()));
        let _ = self.tx.send(Event::Leadership(Some(info))).await;
    }

    async fn step_down(&self, why: &str) {
        let was = self.cluster.leadership.token().is_some();
        self.cluster.leadership.set(None);
        if was {
            tracing::error!("stepping down as leader: {why}");
            let _ = self.tx.send(Event::Leadership(None)).await;
        }
        self.cluster.update_view(|v| {
            if v.leader
                .as_ref()
                .is_some_and(|l| l.name == self.cluster.config.name)
            {
                v.leader = None;
            }
        });
    }

    async fn read_members(&self) -> Result<()> {
        let all = members::read_all(&self.cluster).await?;
        self.cluster.update_view(|v| {
            v.members = all;
            v.last_error = None;
        });
        Ok(())
    }

    /// Leaving: delete the leader key if it is still ours and revoke the lease, so another
    /// instance takes over at once instead of after the TTL.
    async fn give_up(&self, lease: i64) {
        if let Some(token) = self.cluster.leadership.token() {
            self.cluster.leadership.set(None);
            let key = self.cluster.key("leader");
            let txn = Txn::new()
                .when([Compare::create_revision(
                    key.clone(),
                    CompareOp::Equal,
                    token,
                )])
                .and_then([TxnOp::delete(key, None)]);
            let _ = self
                .cluster
                .clients()
                .write(|mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await;
            tracing::info!("resigned the leadership");
        }
        let _ = self
            .cluster
            .clients()
            .write(|mut c| async move { c.lease_revoke(lease).await })
            .await;
    }

    fn note_error(&self, e: &str) {
        tracing::warn!("cluster: {e}");
        self.cluster
            .update_view(|v| v.last_error = Some(e.to_string()));
    }
}

/// Aborts the task when the holder's scope ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keep `lease` alive: a renewal every sixth of the TTL (at least every 250 ms), each bounded
/// by the request timeout; after a failure the keep-alive stream is opened anew (so the
/// client's balancer can pick a member that answers). Reports etcd expiring the lease.
async fn renew(cluster: Arc<Cluster>, lease: i64, expired: tokio::sync::oneshot::Sender<String>) {
    let ttl = cluster.config.lease_ttl;
    let every = (ttl / 6).max(Duration::from_millis(250));
    let wait = (ttl / 5).clamp(Duration::from_millis(300), Duration::from_secs(2));
    loop {
        let (endpoint, mut client) = cluster.clients().pick();
        let opened = tokio::time::timeout(wait, client.lease_keep_alive(lease)).await;
        let (mut keeper, mut stream) = match opened {
            Ok(Ok(k)) => k,
            _ => {
                cluster.clients().failed(endpoint);
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        loop {
            let sent = Instant::now();
            let r = tokio::time::timeout(wait, async {
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await;
            match r {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                    cluster.update_view(|v| {
                        v.renewed_at = Some(sent.into_std());
                        v.last_contact = Some(std::time::Instant::now());
                    });
                    tokio::time::sleep_until(sent + every).await;
                }
                Ok(Ok(Some(_))) => {
                    let _ = expired.send("etcd expired this instance's lease".into());
                    return;
                }
                other => {
                    let why = match other {
                        Ok(Err(e)) => format!("etcd: renewing the lease: {e}"),
                        Ok(Ok(None)) => "the lease keep-alive stream closed".into(),
                        _ => format!("etcd: renewing the lease timed out after {wait:?}"),
                    };
                    tracing::warn!("cluster: {why}; reopening the keep-alive stream");
                    cluster.clients().failed(endpoint);
                    cluster.update_view(|v| v.last_error = Some(why));
                    break;
                }
            }
        }
    }
}
