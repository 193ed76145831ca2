//! The store: what niledr keeps durably, behind one handle. `redb.rs` is the embedded store
//! (everything in single-node mode); `etcd.rs` keeps what the cluster shares (executions'
//! journal, approvals, drill runs, standing drill approvals, the fencing generation, meta and
//! the audit chain) in etcd, every write guarded by the leader's fencing token. Probe history
//! and this instance's status changes stay local in redb either way.

pub mod etcd;
mod redb;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use crate::audit::VerifyReport;
use crate::records::{
    AuditRecordV1, DrillRunRecordV1, ExecutionRecordV1, NotificationV1, ProbeRecordV1,
    StandingApprovalV1, StatusChangeV1,
};
pub use redb::{RedbStore, verify_file};

/// One audit entry to append.
pub struct AuditEvent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub detail: serde_json::Value,
}

/// A write refused because this instance does not hold the leader key (any more): the caller
/// must stop acting. Found with `anyhow::Error::downcast_ref::<NotLeader>()`.
#[derive(Debug, thiserror::Error)]
#[error("not the cluster leader: {0}")]
pub struct NotLeader(pub String);

/// What the cluster shares. Every write commits (fsync'd in redb, a raft commit in etcd)
/// before it returns; in etcd every write but a plain audit append is refused with
/// `NotLeader` unless this instance still leads.
pub trait SharedStore: Send + Sync {
    /// Append audit entries in one transaction; returns them as written.
    fn append_audit(&self, events: Vec<AuditEvent<'_>>) -> Result<Vec<AuditRecordV1>>;
    /// Write an execution and its audit entries in one transaction (journal before effect).
    fn save_execution(&self, rec: &ExecutionRecordV1, audit: Vec<AuditEvent<'_>>) -> Result<()> {
        self.save_execution_notifying(rec, audit, &[])
    }
    /// `save_execution` plus the outbox entries announcing it, in the same transaction.
    fn save_execution_notifying(
        &self,
        rec: &ExecutionRecordV1,
        audit: Vec<AuditEvent<'_>>,
        outbox: &[NotificationV1],
    ) -> Result<()>;
    /// Every execution, oldest first (ids are UUIDv7, so they sort by creation time).
    fn executions(&self) -> Result<Vec<ExecutionRecordV1>>;
    fn execution(&self, id: &str) -> Result<Option<ExecutionRecordV1>>;
    fn save_drill_run(&self, rec: &DrillRunRecordV1, audit: Vec<AuditEvent<'_>>) -> Result<()> {
        self.save_drill_run_notifying(rec, audit, &[])
    }
    /// `save_drill_run` plus the outbox entries announcing it, in the same transaction.
    fn save_drill_run_notifying(
        &self,
        rec: &DrillRunRecordV1,
        audit: Vec<AuditEvent<'_>>,
        outbox: &[NotificationV1],
    ) -> Result<()>;
    /// Every drill run, oldest first.
    fn drill_runs(&self) -> Result<Vec<DrillRunRecordV1>>;
    fn drill_run(&self, id: &str) -> Result<Option<DrillRunRecordV1>>;
    fn standing_approvals(&self, drill: &str) -> Result<Vec<StandingApprovalV1>>;
    /// Replace a drill's standing approvals (with the audit entry) in one transaction.
    fn save_standing_approvals(
        &self,
        drill: &str,
        list: &[StandingApprovalV1],
        audit: Vec<AuditEvent<'_>>,
    ) -> Result<()>;
    fn meta(&self, key: &str) -> Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    /// Write a meta key and its audit entries in one transaction.
    fn set_meta_audited(&self, key: &str, value: &str, audit: Vec<AuditEvent<'_>>) -> Result<()>;
    /// Take the next failover generation (fencing token), durably.
    fn next_generation(&self) -> Result<u64>;
    fn audit_entries(&self) -> Result<Vec<AuditRecordV1>>;
    /// The notifications outbox, oldest first.
    fn notifications(&self) -> Result<Vec<NotificationV1>>;
    /// Rewrite one outbox entry (its delivery state) with its audit entries, in one
    /// transaction; in etcd only while this instance leads.
    fn save_notification(&self, n: &NotificationV1, audit: Vec<AuditEvent<'_>>) -> Result<()>;
    /// Remove outbox entries (finished ones beyond what is kept).
    fn delete_notifications(&self, ids: &[String]) -> Result<()>;
}

/// The daemon's store: local redb plus the shared part (the same redb when single-node).
pub struct Store {
    local: Arc<RedbStore>,
    shared: Arc<dyn SharedStore>,
    clustered: bool,
    outbox: crate::notify::Outbox,
    /// Bumped by every execution and drill-run write through this handle, so readers that
    /// fold the journal (the live topology) re-read it only when it changed.
    writes: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Single-node: everything in one redb file.
    pub fn open(path: &Path) -> Result<Store> {
        let local = Arc::new(RedbStore::open(path)?);
        Ok(Store {
            shared: local.clone(),
            local,
            clustered: false,
            outbox: Default::default(),
            writes: Default::default(),
        })
    }

    /// Cluster mode: local redb for this instance's own observations, `shared` for the rest.
    pub fn clustered(path: &Path, shared: Arc<dyn SharedStore>) -> Result<Store> {
        Ok(Store {
            local: Arc::new(RedbStore::open(path)?),
            shared,
            clustered: true,
            outbox: Default::default(),
            writes: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        self.local.path()
    }

    pub fn is_clustered(&self) -> bool {
        self.clustered
    }

    pub fn record_status_changes(
        &self,
        changes: Vec<StatusChangeV1>,
    ) -> Result<Vec<StatusChangeV1>> {
        self.local.record_status_changes(changes)
    }

    pub fn append_probes(
        &self,
        batch: Vec<(String, ProbeRecordV1)>,
        limits: &HashMap<String, u32>,
    ) -> Result<()> {
        self.local.append_probes(batch, limits)
    }

    pub fn probe_history(&self, id: &str, limit: usize) -> Result<Vec<ProbeRecordV1>> {
        self.local.probe_history(id, limit)
    }

    pub fn status_changes(&self, id: Option<&str>, limit: usize) -> Result<Vec<StatusChangeV1>> {
        self.local.status_changes(id, limit)
    }

    pub fn append_audit(&self, events: Vec<AuditEvent<'_>>) -> Result<Vec<AuditRecordV1>> {
        self.shared.append_audit(events)
    }

    /// The execution, its audit entries and the notifications they announce (if any receiver
    /// wants them), in one transaction.
    pub fn save_execution(
        &self,
        rec: &ExecutionRecordV1,
        audit: Vec<AuditEvent<'_>>,
    ) -> Result<()> {
        let outbox = self.outbox.for_execution(rec, &audit);
        self.shared.save_execution_notifying(rec, audit, &outbox)?;
        self.outbox.enqueued(outbox.len());
        self.bump();
        Ok(())
    }

    pub fn executions(&self) -> Result<Vec<ExecutionRecordV1>> {
        self.shared.executions()
    }

    pub fn execution(&self, id: &str) -> Result<Option<ExecutionRecordV1>> {
        self.shared.execution(id)
    }

    pub fn save_drill_run(&self, rec: &DrillRunRecordV1, audit: Vec<AuditEvent<'_>>) -> Result<()> {
        let outbox = self.outbox.for_drill_run(rec, &audit);
        self.shared.save_drill_run_notifying(rec, audit, &outbox)?;
        self.outbox.enqueued(outbox.len());
        self.bump();
        Ok(())
    }

    /// What turns committed facts into outbox entries (set once at start by `serve`).
    pub fn outbox(&self) -> &crate::notify::Outbox {
        &self.outbox
    }

    pub fn notifications(&self) -> Result<Vec<NotificationV1>> {
        self.shared.notifications()
    }

    pub fn save_notification(&self, n: &NotificationV1, audit: Vec<AuditEvent<'_>>) -> Result<()> {
        self.shared.save_notification(n, audit)
    }

    pub fn delete_notifications(&self, ids: &[String]) -> Result<()> {
        self.shared.delete_notifications(ids)
    }

    pub fn drill_runs(&self) -> Result<Vec<DrillRunRecordV1>> {
        self.shared.drill_runs()
    }

    pub fn drill_run(&self, id: &str) -> Result<Option<DrillRunRecordV1>> {
        self.shared.drill_run(id)
    }

    pub fn standing_approvals(&self, drill: &str) -> Result<Vec<StandingApprovalV1>> {
        self.shared.standing_approvals(drill)
    }

    pub fn save_standing_approvals(
        &self,
        drill: &str,
        list: &[StandingApprovalV1],
        audit: Vec<AuditEvent<'_>>,
    ) -> Result<()> {
        self.shared.save_standing_approvals(drill, list, audit)
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.shared.meta(key)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.shared.set_meta(key, value)
    }

    pub fn set_meta_audited(
        &self,
        key: &str,
        value: &str,
        audit: Vec<AuditEvent<'_>>,
    ) -> Result<()> {
        self.shared.set_meta_audited(key, value, audit)
    }

    /// Changes whenever this handle wrote an execution or a drill run.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// This instance's own state (never shared): e.g. its self-fence.
    pub fn local_meta(&self, key: &str) -> Result<Option<String>> {
        self.local.meta(key)
    }

    pub fn set_local_meta(&self, key: &str, value: &str) -> Result<()> {
        self.local.set_meta(key, value)
    }

    pub fn next_generation(&self) -> Result<u64> {
        self.shared.next_generation()
    }

    /// The shared audit chain (in cluster mode, the one in etcd).
    pub fn audit_entries(&self) -> Result<Vec<AuditRecordV1>> {
        self.shared.audit_entries()
    }

    /// This instance's own chain (in cluster mode its status changes; single-node, the one chain).
    pub fn local_audit_entries(&self) -> Result<Vec<AuditRecordV1>> {
        SharedStore::audit_entries(self.local.as_ref())
    }

    /// Verify the shared chain and, in cluster mode, this instance's local chain of status
    /// changes too: the report counts both and names the first broken link of either.
    pub fn verify_audit(&self) -> Result<VerifyReport> {
        let shared = crate::audit::verify(&self.shared.audit_entries()?);
        if !self.clustered {
            return Ok(shared);
        }
        let local = self.local.verify_audit()?;
        Ok(VerifyReport {
            entries: shared.entries + local.entries,
            head: shared.head,
            broken: shared.broken.or(local
                .broken
                .map(|(seq, why)| (seq, format!("local chain: {why}")))),
        })
    }
}
