//! The embedded store (redb): everything in single-node mode; in cluster mode only what is
//! local to this instance (probe history, its status changes and their audit chain). What we
//! store, all as versioned JSON records (`records.rs`):
//! - `audit`: u64 seq → `AuditRecordV1`, the hash chain, append-only;
//! - `status_changes`: u64 seq → `StatusChangeV1`, every service/site status change;
//! - `probe_history`: (service id, u64 seq) → `ProbeRecordV1`, bounded per service;
//! - `meta`: `schema_version`;
//! - `notifications`: UUIDv7 id → `NotificationV1`, the outbox (written with the fact it
//!   announces, then by the delivery worker).
//!
//! Every write transaction commits with `Durability::Immediate` (fsync) before the caller acts
//! on it or acknowledges it. Only the event loop writes; API handlers read concurrently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use redb::{
    Database, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition,
};

use super::{AuditEvent, SharedStore};
use crate::audit::{self, VerifyReport};
use crate::records::{
    AuditRecordV1, DrillRunRecordV1, ExecutionRecordV1, NotificationV1, ProbeRecordV1,
    SCHEMA_VERSION, StandingApprovalV1, StatusChangeV1, check_version,
};

const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("audit");
const STATUS: TableDefinition<u64, &str> = TableDefinition::new("status_changes");
const PROBES: TableDefinition<(&str, u64), &str> = TableDefinition::new("probe_history");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const EXECUTIONS: TableDefinition<&str, &str> = TableDefinition::new("executions");
const DRILL_RUNS: TableDefinition<&str, &str> = TableDefinition::new("drill_runs");
/// Drill name → JSON list of `StandingApprovalV1`.
const DRILL_APPROVALS: TableDefinition<&str, &str> = TableDefinition::new("drill_approvals");
/// The notifications outbox: UUIDv7 id → `NotificationV1`.
const NOTIFICATIONS: TableDefinition<&str, &str> = TableDefinition::new("notifications");

pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl RedbStore {
    pub fn open(path: &Path) -> Result<RedbStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating store directory {}", dir.display()))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
                "store {} is already open by another niledr process",
                path.display()
            ),
            other => anyhow::anyhow!("opening store {}: {other}", path.display()),
        })?;
        let store = RedbStore {
            db,
            path: path.to_path_buf(),
        };
        store.init_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init_schema(&self) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut meta = tx.open_table(META)?;
            let existing = meta.get("schema_version")?.map(|v| v.value().to_string());
            match existing {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION.to_string().as_str())?;
                }
                Some(v) if v == SCHEMA_VERSION.to_string() => {}
                Some(v) => bail!(
                    "store {} has schema version {v}; this niledr knows {SCHEMA_VERSION}",
                    self.path.display()
                ),
            }
            tx.open_table(AUDIT)?;
            tx.open_table(STATUS)?;
            tx.open_table(PROBES)?;
            tx.open_table(EXECUTIONS)?;
            tx.open_table(DRILL_RUNS)?;
            tx.open_table(DRILL_APPROVALS)?;
            tx.open_table(NOTIFICATIONS)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Record status changes and their audit entries atomically, fsync'd.
    pub fn record_status_changes(
        &self,
        changes: Vec<StatusChangeV1>,
    ) -> Result<Vec<StatusChangeV1>> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        let mut out = Vec::with_capacity(changes.len());
        {
            let mut status = tx.open_table(STATUS)?;
            let first = status.last()?.map_or(1, |(k, _)| k.value() + 1);
            let mut events = Vec::new();
            for (seq, mut c) in (first..).zip(changes) {
                c.seq = seq;
                status.insert(c.seq, serde_json::to_string(&c)?.as_str())?;
                events.push(serde_json::to_value(&c)?);
                out.push(c);
            }
            let mut audit_t = tx.open_table(AUDIT)?;
            append_audit_in(
                &mut audit_t,
                events
                    .into_iter()
                    .map(|detail| AuditEvent {
                        actor: "niledr",
                        action: "status.changed",
                        detail,
                    })
                    .collect(),
            )?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// Append probe results, keeping at most `limits[id]` per service.
    pub fn append_probes(
        &self,
        batch: Vec<(String, ProbeRecordV1)>,
        limits: &HashMap<String, u32>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(PROBES)?;
            let mut next: HashMap<String, u64> = HashMap::new();
            for (id, rec) in &batch {
                let seq = match next.get(id) {
                    Some(s) => *s,
                    None => t
                        .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))?
                        .next_back()
                        .transpose()?
                        .map_or(1, |(k, _)| k.value().1 + 1),
                };
                t.insert((id.as_str(), seq), serde_json::to_string(rec)?.as_str())?;
                next.insert(id.clone(), seq + 1);
            }
            for (id, after_last) in next {
                let keep = u64::from(*limits.get(&id).unwrap_or(&500));
                let cut = after_last.saturating_sub(keep);
                if cut > 0 {
                    t.retain_in((id.as_str(), 0)..(id.as_str(), cut), |_, _| false)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Newest first.
    pub fn probe_history(&self, id: &str, limit: usize) -> Result<Vec<ProbeRecordV1>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(PROBES)?;
        let mut out = Vec::new();
        for item in t.range((id, 0)..=(id, u64::MAX))?.rev().take(limit) {
            let (_, v) = item?;
            let rec: ProbeRecordV1 = serde_json::from_str(v.value())?;
            check_version(rec.v, "probe")?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Newest first; `id` filters to one service or site.
    pub fn status_changes(&self, id: Option<&str>, limit: usize) -> Result<Vec<StatusChangeV1>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(STATUS)?;
        let mut out = Vec::new();
        for item in t.iter()?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item?;
            let rec: StatusChangeV1 = serde_json::from_str(v.value())?;
            check_version(rec.v, "status change")?;
            if id.is_none_or(|id| rec.id == id) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    pub fn verify_audit(&self) -> Result<VerifyReport> {
        Ok(audit::verify(&read_audit(&self.db)?))
    }
}

impl SharedStore for RedbStore {
    /// Append audit entries in one fsync'd transaction; returns them as written.
    fn append_audit(&self, events: Vec<AuditEvent<'_>>) -> Result<Vec<AuditRecordV1>> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        let written = {
            let mut t = tx.open_table(AUDIT)?;
            append_audit_in(&mut t, events)?
        };
        tx.commit()?;
        Ok(written)
    }

    /// Write an execution, its audit entries and its outbox entries in one fsync'd
    /// transaction. Called before the effect the new state starts (journal before effect).
    fn save_execution_notifying(
        &self,
        rec: &ExecutionRecordV1,
        audit: Vec<AuditEvent<'_>>,
        outbox: &[NotificationV1],
    ) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(EXECUTIONS)?;
            t.insert(rec.id.as_str(), serde_json::to_string(rec)?.as_str())?;
            let mut a = tx.open_table(AUDIT)?;
            append_audit_in(&mut a, audit)?;
            put_notifications(&mut tx.open_table(NOTIFICATIONS)?, outbox)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every execution, oldest first (ids are UUIDv7, so they sort by creation time).
    fn executions(&self) -> Result<Vec<ExecutionRecordV1>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(EXECUTIONS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            let rec: ExecutionRecordV1 = serde_json::from_str(v.value())?;
            check_version(rec.v, "execution")?;
            out.push(rec);
        }
        Ok(out)
    }

    fn execution(&self, id: &str) -> Result<Option<ExecutionRecordV1>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(EXECUTIONS)?;
        match t.get(id)? {
            None => Ok(None),
            Some(v) => {
                let rec: ExecutionRecordV1 = serde_json::from_str(v.value())?;
                check_version(rec.v, "execution")?;
                Ok(Some(rec))
            }
        }
    }

    /// Write a drill run, its audit entries and its outbox entries in one fsync'd transaction.
    fn save_drill_run_notifying(
        &self,
        rec: &DrillRunRecordV1,
        audit: Vec<AuditEvent<'_>>,
        outbox: &[NotificationV1],
    ) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(DRILL_RUNS)?;
            t.insert(rec.id.as_str(), serde_json::to_string(rec)?.as_str())?;
            let mut a = tx.open_table(AUDIT)?;
            append_audit_in(&mut a, audit)?;
            put_notifications(&mut tx.open_table(NOTIFICATIONS)?, outbox)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every drill run, oldest first.
    fn drill_runs(&self) -> Result<Vec<DrillRunRecordV1>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DRILL_RUNS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            let rec: DrillRunRecordV1 = serde_json::from_str(v.value())?;
            check_version(rec.v, "drill run")?;
            out.push(rec);
        }
        Ok(out)
    }

    fn drill_run(&self, id: &str) -> Result<Option<DrillRunRecordV1>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DRILL_RUNS)?;
        match t.get(id)? {
            None => Ok(None),
            Some(v) => {
                let rec: DrillRunRecordV1 = serde_json::from_str(v.value())?;
                check_version(rec.v, "drill run")?;
                Ok(Some(rec))
            }
        }
    }

    fn standing_approvals(&self, drill: &str) -> Result<Vec<StandingApprovalV1>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DRILL_APPROVALS)?;
        let list: Vec<StandingApprovalV1> = match t.get(drill)? {
            None => Vec::new(),
            Some(v) => serde_json::from_str(v.value())?,
        };
        for a in &list {
            check_version(a.v, "standing approval")?;
        }
        Ok(list)
    }

    /// Replace a drill's standing approvals (with the audit entry) in one fsync'd transaction.
    fn save_standing_approvals(
        &self,
        drill: &str,
        list: &[StandingApprovalV1],
        audit: Vec<AuditEvent<'_>>,
    ) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(DRILL_APPROVALS)?;
            t.insert(drill, serde_json::to_string(list)?.as_str())?;
            let mut a = tx.open_table(AUDIT)?;
            append_audit_in(&mut a, audit)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_string()))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(META)?;
            t.insert(key, value)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn set_meta_audited(&self, key: &str, value: &str, audit: Vec<AuditEvent<'_>>) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(META)?;
            t.insert(key, value)?;
            let mut a = tx.open_table(AUDIT)?;
            append_audit_in(&mut a, audit)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Take the next failover generation (fencing token), durably.
    fn next_generation(&self) -> Result<u64> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        let next = {
            let mut meta = tx.open_table(META)?;
            let current = meta
                .get("generation")?
                .and_then(|v| v.value().parse::<u64>().ok())
                .unwrap_or(0);
            let next = current + 1;
            meta.insert("generation", next.to_string().as_str())?;
            next
        };
        tx.commit()?;
        Ok(next)
    }

    fn audit_entries(&self) -> Result<Vec<AuditRecordV1>> {
        read_audit(&self.db)
    }

    fn notifications(&self) -> Result<Vec<NotificationV1>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NOTIFICATIONS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            let rec: NotificationV1 = serde_json::from_str(v.value())?;
            check_version(rec.v, "notification")?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Rewrite one outbox entry with its audit entries in one fsync'd transaction.
    fn save_notification(&self, n: &NotificationV1, audit: Vec<AuditEvent<'_>>) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            put_notifications(&mut tx.open_table(NOTIFICATIONS)?, std::slice::from_ref(n))?;
            let mut a = tx.open_table(AUDIT)?;
            append_audit_in(&mut a, audit)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_notifications(&self, ids: &[String]) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(NOTIFICATIONS)?;
            for id in ids {
                t.remove(id.as_str())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn put_notifications(t: &mut redb::Table<'_, &str, &str>, outbox: &[NotificationV1]) -> Result<()> {
    for n in outbox {
        t.insert(n.id.as_str(), serde_json::to_string(n)?.as_str())?;
    }
    Ok(())
}

/// Verify the chain of a store file that no daemon holds open.
pub fn verify_file(path: &Path) -> Result<VerifyReport> {
    if !path.exists() {
        bail!("no store at {}", path.display());
    }
    let db = ReadOnlyDatabase::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
            "store {} is open by a running niledr; ask it instead: GET /api/v1/audit/verify",
            path.display()
        ),
        other => anyhow::anyhow!("opening store {}: {other}", path.display()),
    })?;
    Ok(audit::verify(&read_audit(&db)?))
}

fn read_audit(db: &impl ReadableDatabase) -> Result<Vec<AuditRecordV1>> {
    let tx = db.begin_read()?;
    let t = tx.open_table(AUDIT)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (_, v) = item?;
        let rec: AuditRecordV1 = serde_json::from_str(v.value())?;
        check_version(rec.v, "audit")?;
        out.push(rec);
    }
    Ok(out)
}

fn append_audit_in(
    t: &mut redb::Table<'_, u64, &str>,
    events: Vec<AuditEvent<'_>>,
) -> Result<Vec<AuditRecordV1>> {
    let mut prev: Option<AuditRecordV1> = match t.last()? {
        Some((_, v)) => Some(serde_json::from_str(v.value())?),
        None => None,
    };
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let rec = audit::next_entry(
            prev.as_ref(),
            jiff::Timestamp::now(),
            e.actor,
            e.action,
            e.detail,
        );
        t.insert(rec.seq, serde_json::to_string(&rec)?.as_str())?;
        prev = Some(rec.clone());
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(i: u32) -> ProbeRecordV1 {
        ProbeRecordV1 {
            v: 1,
            at: format!("t{i}"),
            ok: true,
            latency_ms: 1.0,
            summary: format!("probe {i}"),
            lag: None,
        }
    }

    #[test]
    fn history_is_bounded_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let limits: HashMap<String, u32> = [("a".to_string(), 3)].into();
        {
            let s = RedbStore::open(&path).unwrap();
            for i in 0..5 {
                s.append_probes(
                    vec![("a".into(), probe(i)), ("b".into(), probe(i))],
                    &limits,
                )
                .unwrap();
            }
            let h = s.probe_history("a", 100).unwrap();
            assert_eq!(
                h.iter().map(|r| r.summary.as_str()).collect::<Vec<_>>(),
                ["probe 4", "probe 3", "probe 2"]
            );
            assert_eq!(s.probe_history("b", 100).unwrap().len(), 5);
            s.append_audit(vec![AuditEvent {
                actor: "niledr",
                action: "daemon.started",
                detail: serde_json::json!({}),
            }])
            .unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.probe_history("a", 100).unwrap().len(), 3);
        s.append_audit(vec![AuditEvent {
            actor: "niledr",
            action: "daemon.started",
            detail: serde_json::json!({}),
        }])
        .unwrap();
        let r = s.verify_audit().unwrap();
        assert_eq!((r.entries, r.broken), (2, None));
        drop(s);
        assert_eq!(verify_file(&path).unwrap().entries, 2);
    }

    #[test]
    fn second_writer_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _s = RedbStore::open(&path).unwrap();
        let e = RedbStore::open(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("already open"), "{e}");
        let e = verify_file(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("running niledr"), "{e}");
    }

    fn note(id: &str) -> NotificationV1 {
        NotificationV1 {
            v: 1,
            id: id.into(),
            receiver: "pd".into(),
            event: "proposal_waiting".into(),
            subject: "e1".into(),
            dedup_key: "e1".into(),
            action: "trigger".into(),
            severity: "critical".into(),
            summary: "s".into(),
            details: vec![],
            link: None,
            created_at: "t".into(),
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: "t".into(),
            last_error: None,
            delivered_at: None,
            in_flight_by: None,
        }
    }

    #[test]
    fn outbox_is_written_with_its_execution_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let exec: ExecutionRecordV1 = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "e1", "runbook": "r", "reason": "", "requester": "k",
            "created_at": "t", "state": "awaiting_approval", "machine": null, "plan_digest": "d",
            "plan": null, "preconditions": null, "approvals": [], "steps": [], "timeline": [],
            "needs_operator": null, "generation": null
        }))
        .unwrap();
        {
            let s = RedbStore::open(&path).unwrap();
            let audit = vec![AuditEvent {
                actor: "k",
                action: "execution.transition",
                detail: serde_json::json!({ "to": "awaiting_approval" }),
            }];
            s.save_execution_notifying(&exec, audit, &[note("01-a"), note("01-b")])
                .unwrap();
            let mut n = note("01-a");
            n.state = "delivered".into();
            n.attempts = 1;
            let audit = vec![AuditEvent {
                actor: "niledr",
                action: "notification.delivered",
                detail: serde_json::json!({ "id": "01-a" }),
            }];
            s.save_notification(&n, audit).unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert!(s.execution("e1").unwrap().is_some());
        let all = s.notifications().unwrap();
        let got: Vec<(&str, &str, u32)> = all
            .iter()
            .map(|n| (n.id.as_str(), n.state.as_str(), n.attempts))
            .collect();
        assert_eq!(got, [("01-a", "delivered", 1), ("01-b", "pending", 0)]);
        let actions: Vec<String> = s
            .audit_entries()
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(actions, ["execution.transition", "notification.delivered"]);
        s.delete_notifications(&["01-a".into()]).unwrap();
        assert_eq!(s.notifications().unwrap().len(), 1);
        assert_eq!(s.verify_audit().unwrap().broken, None);
    }
}
