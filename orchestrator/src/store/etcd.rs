//! The shared store in etcd (cluster mode). Keys under the configured prefix:
//! - `executions/<id>`, `drill_runs/<id>`, `drill_approvals/<drill>`: versioned JSON records;
//! - `meta/<key>`: `schema_version`, `generation` (the failover fencing token), triggers' and
//!   the drill scheduler's state;
//! - `notifications/<id>`: the outbox (`NotificationV1`), put in the same transaction as the
//!   execution or drill run it announces; only the leader delivers and rewrites it;
//! - `audit/<seq, 20 digits>`: the hash chain, appended with a compare on the next key's
//!   absence so two instances can never write the same link.
//!
//! Every write but a plain audit append is one etcd transaction that also compares the leader
//! key's create revision with this instance's token (`Leadership`): a deposed leader's write
//! fails with `NotLeader` and nothing of it is applied. The trait is synchronous (the event
//! loop is a thread); calls run on the cluster runtime and wait for its answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use etcd_client::{Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use serde::de::DeserializeOwned;

use super::{AuditEvent, NotLeader, SharedStore};
use crate::audit;
use crate::cluster::Leadership;
use crate::cluster::clients::EtcdClients;
use crate::records::{
    AuditRecordV1, DrillRunRecordV1, ExecutionRecordV1, NotificationV1, SCHEMA_VERSION,
    StandingApprovalV1, check_version,
};

/// How long a caller waits for etcd before the call fails (the etcd client's own request
/// timeout is shorter; this bounds a stuck runtime too).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Appends retried when another instance appended to the chain first.
const AUDIT_RACE_RETRIES: usize = 16;

pub struct EtcdStore {
    clients: Arc<EtcdClients>,
    rt: tokio::runtime::Handle,
    prefix: String,
    leadership: Arc<Leadership>,
}

/// An audit event owned, to cross into the runtime.
struct OwnedEvent {
    actor: String,
    action: String,
    detail: serde_json::Value,
}

impl EtcdStore {
    /// Connect the store to an etcd client (on `rt`) and check or set the schema version.
    pub fn open(
        clients: Arc<EtcdClients>,
        rt: tokio::runtime::Handle,
        prefix: &str,
        leadership: Arc<Leadership>,
    ) -> Result<EtcdStore> {
        let s = EtcdStore {
            clients,
            rt,
            prefix: prefix.to_string(),
            leadership,
        };
        s.init_schema()?;
        Ok(s)
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}/{kind}/{id}", self.prefix)
    }

    /// Run `f` on the cluster runtime and wait for it (callable from any thread).
    fn block<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv_timeout(CALL_TIMEOUT)
            .map_err(|_| anyhow!("etcd did not answer within {CALL_TIMEOUT:?}"))?
    }

    fn init_schema(&self) -> Result<()> {
        let key = self.key("meta", "schema_version");
        let c = self.clients.clone();
        let want = SCHEMA_VERSION.to_string();
        let have = self.block(async move {
            let r = kv_txn(
                &c,
                Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), want.clone(), None)])
                    .or_else([TxnOp::get(key, None)]),
            )
            .await
            .context("etcd: checking the schema version")?;
            Ok(get_values(&r).into_iter().next().unwrap_or(want))
        })?;
        if have != SCHEMA_VERSION.to_string() {
            bail!(
                "the cluster store under {} has schema version {have}; this niledr knows {SCHEMA_VERSION}",
                self.prefix
            );
        }
        Ok(())
    }

    /// Put `puts` and append `audit` in one transaction; guarded by the leader token unless
    /// `guarded` is false (plain audit appends from any instance).
    fn commit(
        &self,
        puts: Vec<(String, String)>,
        audit: Vec<AuditEvent<'_>>,
        guarded: bool,
    ) -> Result<Vec<AuditRecordV1>> {
        let token = if guarded {
            Some(
                self.leadership
                    .token()
                    .ok_or_else(|| NotLeader("this instance does not lead".into()))?,
            )
        } else {
            None
        };
        let events: Vec<OwnedEvent> = audit
            .into_iter()
            .map(|e| OwnedEvent {
                actor: e.actor.to_string(),
                action: e.action.to_string(),
                detail: e.detail,
            })
            .collect();
        let client = self.clients.clone();
        let prefix = self.prefix.clone();
        self.deposed_on_refusal(
            self.block(async move { commit(client, prefix, puts, events, token).await }),
        )
    }

    /// A guarded write refused as `NotLeader`: this instance stops acting at once.
    fn deposed_on_refusal<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r
            && e.downcast_ref::<NotLeader>().is_some()
        {
            self.leadership.deposed(&format!("{e:#}"));
        }
        r
    }

    fn get_json<T: DeserializeOwned + Send + 'static>(&self, key: String) -> Result<Option<T>> {
        let c = self.clients.clone();
        let raw = self.block(async move {
            let r = kv_get(&c, key.clone(), None)
                .await
                .with_context(|| format!("etcd: reading {key}"))?;
            Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
        })?;
        raw.map(|v| serde_json::from_slice(&v).map_err(Into::into))
            .transpose()
    }

    /// Every record under `kind/`, in key order.
    fn list_json<T: DeserializeOwned + Send + 'static>(&self, kind: &str) -> Result<Vec<T>> {
        let prefix = format!("{}/{kind}/", self.prefix);
        let c = self.clients.clone();
        let raw = self.block(async move {
            let r = kv_get(
                &c,
                prefix.clone(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Key, SortOrder::Ascend),
                ),
            )
            .await
            .with_context(|| format!("etcd: listing {prefix}"))?;
            Ok(r.kvs()
                .iter()
                .map(|kv| kv.value().to_vec())
                .collect::<Vec<_>>())
        })?;
        raw.iter()
            .map(|v| serde_json::from_slice(v).map_err(Into::into))
            .collect()
    }
}

/// The transaction behind every write: read the chain's head, link the new entries, and put
/// everything if the next link is still free and (when `token` is set) this instance still
/// holds the leader key. A lost race on the chain is retried; a lost leader key is `NotLeader`.
async fn commit(
    client: Arc<EtcdClients>,
    prefix: String,
    puts: Vec<(String, String)>,
    events: Vec<OwnedEvent>,
    token: Option<i64>,
) -> Result<Vec<AuditRecordV1>> {
    let leader_key = format!("{prefix}/leader");
    for _ in 0..AUDIT_RACE_RETRIES {
        let head = audit_head(&client, &prefix).await?;
        let mut prev = head;
        let mut written = Vec::with_capacity(events.len());
        for e in &events {
            let rec = audit::next_entry(
                prev.as_ref(),
                jiff::Timestamp::now(),
                &e.actor,
                &e.action,
                e.detail.clone(),
            );
            prev = Some(rec.clone());
            written.push(rec);
        }
        let mut compares = Vec::new();
        if let Some(first) = written.first() {
            compares.push(Compare::create_revision(
                audit_key(&prefix, first.seq),
                CompareOp::Equal,
                0,
            ));
        }
        if let Some(t) = token {
            compares.push(Compare::create_revision(
                leader_key.clone(),
                CompareOp::Equal,
                t,
            ));
        }
        let mut ops: Vec<TxnOp> = puts
            .iter()
            .map(|(k, v)| TxnOp::put(k.clone(), v.clone(), None))
            .collect();
        for r in &written {
            ops.push(TxnOp::put(
                audit_key(&prefix, r.seq),
                serde_json::to_string(r)?,
                None,
            ));
        }
        let resp = kv_txn(&client, Txn::new().when(compares).and_then(ops))
            .await
            .context("etcd: committing")?;
        if resp.succeeded() {
            return Ok(written);
        }
        if let Some(t) = token {
            let r = kv_get(&client, leader_key.clone(), None)
                .await
                .context("etcd: reading the leader key")?;
            match r.kvs().first() {
                Some(kv) if kv.create_revision() == t => {}
                Some(kv) => {
                    return Err(NotLeader(format!(
                        "the leader key now belongs to {}",
                        String::from_utf8_lossy(kv.value())
                    ))
                    .into());
                }
                None => {
                    return Err(NotLeader("the leader key is gone (lease expired)".into()).into());
                }
            }
        }
    }
    bail!("etcd: the audit chain kept moving under {AUDIT_RACE_RETRIES} attempts to append")
}

fn audit_key(prefix: &str, seq: u64) -> String {
    format!("{prefix}/audit/{seq:020}")
}

async fn audit_head(client: &EtcdClients, prefix: &str) -> Result<Option<AuditRecordV1>> {
    let r = kv_get(
        client,
        format!("{prefix}/audit/"),
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Descend)
                .with_limit(1),
        ),
    )
    .await
    .context("etcd: reading the audit head")?;
    r.kvs()
        .first()
        .map(|kv| serde_json::from_slice(kv.value()).map_err(Into::into))
        .transpose()
}

fn get_values(r: &etcd_client::TxnResponse) -> Vec<String> {
    r.op_responses()
        .into_iter()
        .filter_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => Some(
                g.kvs()
                    .iter()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

impl SharedStore for EtcdStore {
    fn append_audit(&self, events: Vec<AuditEvent<'_>>) -> Result<Vec<AuditRecordV1>> {
        self.commit(vec![], events, false)
    }

    fn save_execution_notifying(
        &self,
        rec: &ExecutionRecordV1,
        audit: Vec<AuditEvent<'_>>,
        outbox: &[NotificationV1],
    ) -> Result<()> {
        let mut puts = vec![(self.key("executions", &rec.id), serde_json::to_string(rec)?)];
        puts.extend(self.notification_puts(outbox)?);
        self.commit(puts, audit, true).map(drop)
    }

    fn executions(&self) -> Result<Vec<ExecutionRecordV1>> {
        let list: Vec<ExecutionRecordV1> = self.list_json("executions")?;
        for r in &list {
            check_version(r.v, "execution")?;
        }
        Ok(list)
    }

    fn execution(&self, id: &str) -> Result<Option<ExecutionRecordV1>> {
        let r: Option<ExecutionRecordV1> = self.get_json(self.key("executions", id))?;
        if let Some(r) = &r {
            check_version(r.v, "execution")?;
        }
        Ok(r)
    }

    fn save_drill_run_notifying(
        &self,
        rec: &DrillRunRecordV1,
        audit: Vec<AuditEvent<'_>>,
        outbox: &[NotificationV1],
    ) -> Result<()> {
        let mut puts = vec![(self.key("drill_runs", &rec.id), serde_json::to_string(rec)?)];
        puts.extend(self.notification_puts(outbox)?);
        self.commit(puts, audit, true).map(drop)
    }

    fn drill_runs(&self) -> Result<Vec<DrillRunRecordV1>> {
        let list: Vec<DrillRunRecordV1> = self.list_json("drill_runs")?;
        for r in &list {
            check_version(r.v, "drill run")?;
        }
        Ok(list)
    }

    fn drill_run(&self, id: &str) -> Result<Option<DrillRunRecordV1>> {
        let r: Option<DrillRunRecordV1> = self.get_json(self.key("drill_runs", id))?;
        if let Some(r) = &r {
            check_version(r.v, "drill run")?;
        }
        Ok(r)
    }

    fn standing_approvals(&self, drill: &str) -> Result<Vec<StandingApprovalV1>> {
        let list: Vec<StandingApprovalV1> = self
            .get_json(self.key("drill_approvals", drill))?
            .unwrap_or_default();
        for a in &list {
            check_version(a.v, "standing approval")?;
        }
        Ok(list)
    }

    fn save_standing_approvals(
        &self,
        drill: &str,
        list: &[StandingApprovalV1],
        audit: Vec<AuditEvent<'_>>,
    ) -> Result<()> {
        let put = (
            self.key("drill_approvals", drill),
            serde_json::to_string(list)?,
        );
        self.commit(vec![put], audit, true).map(drop)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let c = self.clients.clone();
        let key = self.key("meta", key);
        self.block(async move {
            let r = kv_get(&c, key.clone(), None)
                .await
                .with_context(|| format!("etcd: reading {key}"))?;
            Ok(r.kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.commit(
            vec![(self.key("meta", key), value.to_string())],
            vec![],
            true,
        )
        .map(drop)
    }

    fn set_meta_audited(&self, key: &str, value: &str, audit: Vec<AuditEvent<'_>>) -> Result<()> {
        self.commit(
            vec![(self.key("meta", key), value.to_string())],
            audit,
            true,
        )
        .map(drop)
    }

    /// Compare-and-swap on the generation key, guarded by the leader token.
    fn next_generation(&self) -> Result<u64> {
        let key = self.key("meta", "generation");
        let token = self
            .leadership
            .token()
            .ok_or_else(|| NotLeader("this instance does not lead".into()))?;
        let leader_key = format!("{}/leader", self.prefix);
        let c = self.clients.clone();
        let r = self.block(async move {
            let cur = kv_get(&c, key.clone(), None)
                .await
                .context("etcd: reading the generation")?;
            let (value, rev) = match cur.kvs().first() {
                Some(kv) => (
                    String::from_utf8_lossy(kv.value())
                        .parse::<u64>()
                        .context("generation")?,
                    kv.mod_revision(),
                ),
                None => (0, 0),
            };
            let next = value + 1;
            let resp = kv_txn(
                &c,
                Txn::new()
                    .when([
                        Compare::mod_revision(key.clone(), CompareOp::Equal, rev),
                        Compare::create_revision(leader_key, CompareOp::Equal, token),
                    ])
                    .and_then([TxnOp::put(key, next.to_string(), None)]),
            )
            .await
            .context("etcd: taking the next generation")?;
            if resp.succeeded() {
                Ok(next)
            } else {
                Err(NotLeader("the generation moved or the leader key changed".into()).into())
            }
        });
        self.deposed_on_refusal(r)
    }

    fn audit_entries(&self) -> Result<Vec<AuditRecordV1>> {
        let list: Vec<AuditRecordV1> = self.list_json("audit")?;
        for r in &list {
            check_version(r.v, "audit")?;
        }
        Ok(list)
    }

    fn notifications(&self) -> Result<Vec<NotificationV1>> {
        let list: Vec<NotificationV1> = self.list_json("notifications")?;
        for r in &list {
            check_version(r.v, "notification")?;
        }
        Ok(list)
    }

    fn save_notification(&self, n: &NotificationV1, audit: Vec<AuditEvent<'_>>) -> Result<()> {
        let puts = self.notification_puts(std::slice::from_ref(n))?;
        self.commit(puts, audit, true).map(drop)
    }

    /// Guarded by the leader token like every other write.
    fn delete_notifications(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let token = self
            .leadership
            .token()
            .ok_or_else(|| NotLeader("this instance does not lead".into()))?;
        let leader_key = format!("{}/leader", self.prefix);
        let keys: Vec<String> = ids.iter().map(|id| self.key("notifications", id)).collect();
        let c = self.clients.clone();
        let r = self.block(async move {
            let ops: Vec<TxnOp> = keys.into_iter().map(|k| TxnOp::delete(k, None)).collect();
            let resp = kv_txn(
                &c,
                Txn::new()
                    .when([Compare::create_revision(
                        leader_key,
                        CompareOp::Equal,
                        token,
                    )])
                    .and_then(ops),
            )
            .await
            .context("etcd: pruning the outbox")?;
            if resp.succeeded() {
                Ok(())
            } else {
                Err(NotLeader("the leader key changed".into()).into())
            }
        });
        self.deposed_on_refusal(r)
    }
}

impl EtcdStore {
    fn notification_puts(&self, outbox: &[NotificationV1]) -> Result<Vec<(String, String)>> {
        outbox
            .iter()
            .map(|n| Ok((self.key("notifications", &n.id), serde_json::to_string(n)?)))
            .collect()
    }
}

/// A read through the clients (tried on each endpoint in turn).
async fn kv_get(
    clients: &EtcdClients,
    key: String,
    options: Option<GetOptions>,
) -> Result<etcd_client::GetResponse, etcd_client::Error> {
    clients
        .read(|mut c| {
            let (key, options) = (key.clone(), options.clone());
            async move { c.get(key, options).await }
        })
        .await
}

/// A transaction through the clients (retried elsewhere only if it never left).
async fn kv_txn(
    clients: &EtcdClients,
    txn: Txn,
) -> Result<etcd_client::TxnResponse, etcd_client::Error> {
    clients
        .write(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
}
