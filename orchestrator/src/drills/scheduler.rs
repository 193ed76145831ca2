//! The drill timetable in the daemon: announces each due run ahead of time (event + log
//! notification), starts it when due (never two at once, never during a real execution, never
//! a live drill, whose run needs people's approval first: a slot that cannot run is recorded
//! as skipped with the reason), records blackout skips, after a restart records the slots it
//! was down for as missed instead of running them late, and expires unapproved run requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use niledr_drills::Slot;
use niledr_web::types::{DrillRunRequest, PrincipalView};

use super::{DrillService, SCHEDULER, now_str, push_note};
use crate::records::{DrillRunRecordV1, SCHEMA_VERSION};
use crate::store::AuditEvent;

const TICK: Duration = Duration::from_secs(1);
/// How often the scheduler durably records that it was running (bounds missed-run detection).
const SEEN_EVERY: Duration = Duration::from_secs(30);
const SEEN_KEY: &str = "drills.scheduler_seen";

fn scheduler_principal() -> PrincipalView {
    PrincipalView {
        name: SCHEDULER.into(),
        role: "operator".into(),
        tags: Vec::new(),
    }
}

/// The next slot per drill, and whether it was announced.
struct Next {
    slot: Slot,
    announced: bool,
}

/// Run the timetable while this instance acts (always single-node; while it leads in cluster
/// mode: a follower waits, a deposed leader stops at its next tick and waits again).
pub async fn run(svc: Arc<DrillService>) {
    loop {
        while !svc.shared.acts() {
            tokio::select! {
                _ = svc.shutdown.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        run_while_acting(&svc).await;
        if svc.shutdown.is_cancelled() {
            return;
        }
    }
}

async fn run_while_acting(svc: &Arc<DrillService>) {
    let svc = svc.clone();
    let now = Timestamp::now();
    if let Err(e) = record_missed(&svc, now) {
        tracing::error!("cannot record missed drill runs: {e:#}");
    }
    let mut next: BTreeMap<String, Next> = BTreeMap::new();
    for (name, l) in &svc.drills {
        if let Some(slot) = first_after(&l.drill, now) {
            next.insert(
                name.clone(),
                Next {
                    slot,
                    announced: false,
                },
            );
        }
    }
    let mut last_seen_write = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = svc.shutdown.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
        if !svc.shared.acts() {
            tracing::warn!("drill scheduler paused: this instance no longer leads");
            return;
        }
        let now = Timestamp::now();
        for (name, n) in next.iter_mut() {
            let Some(l) = svc.drills.get(name) else {
                continue;
            };
            let at = n.slot.at().timestamp();
            if n.slot.is_due() && !n.announced {
                let lead = svc.config.drills.announce_before;
                let announce = niledr_drills::announce_at(n.slot.at(), lead).timestamp();
                if now >= announce {
                    n.announced = true;
                    announce_run(&svc, name, n.slot.at());
                }
            }
            if now < at {
                continue;
            }
            let slot_str = n.slot.at().to_string();
            match &n.slot {
                Slot::Skipped { reason, .. } => {
                    record_slot(&svc, name, &l.drill.digest, &slot_str, "skipped", reason);
                }
                Slot::Due { .. } => {
                    let req = DrillRunRequest {
                        reason: format!("scheduled for {slot_str}"),
                    };
                    if let Err(e) =
                        svc.start(&scheduler_principal(), name, &req, Some(slot_str.clone()))
                    {
                        let why = format!("could not start: {}", e.message());
                        tracing::warn!(drill = %name, "scheduled drill skipped: {why}");
                        record_slot(&svc, name, &l.drill.digest, &slot_str, "skipped", &why);
                    }
                }
            }
            match first_after(&l.drill, at) {
                Some(slot) => {
                    *n = Next {
                        slot,
                        announced: false,
                    }
                }
                None => n.announced = true,
            }
        }
        if last_seen_write.elapsed() >= SEEN_EVERY {
            last_seen_write = std::time::Instant::now();
            svc.expire_awaiting();
            if let Err(e) = svc.store.set_meta(SEEN_KEY, &now.to_string()) {
                tracing::error!("cannot record the scheduler's heartbeat: {e:#}");
            }
        }
    }
    let _ = svc.store.set_meta(SEEN_KEY, &Timestamp::now().to_string());
}

fn first_after(drill: &niledr_drills::Drill, after: Timestamp) -> Option<Slot> {
    drill.schedule.as_ref()?;
    match niledr_drills::next_runs(drill, after, 1) {
        Ok(slots) => slots.into_iter().next(),
        Err(e) => {
            tracing::error!(drill = %drill.name, "drill schedule does not evaluate: {e}");
            None
        }
    }
}

fn announce_run(svc: &DrillService, name: &str, at: &jiff::Zoned) {
    let msg = format!("drill {name} will run at {at}: faults will be injected into the topology");
    tracing::warn!(drill = %name, at = %at, "NOTIFY: {msg}");
    svc.publish(name, "scheduled", "announced", &msg);
    if let Err(e) = svc.store.append_audit(vec![AuditEvent {
        actor: SCHEDULER,
        action: "drill.announced",
        detail: serde_json::json!({ "drill": name, "at": at.to_string() }),
    }]) {
        tracing::error!("cannot audit the drill announcement: {e:#}");
    }
}

/// A slot that did not run: `skipped` (blackout, or could not start) or `missed` (down).
fn record_slot(svc: &DrillService, name: &str, digest: &str, slot: &str, state: &str, why: &str) {
    let mut rec = DrillRunRecordV1 {
        v: SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        drill: name.to_string(),
        digest: digest.to_string(),
        trigger: "schedule".into(),
        requested_by: SCHEDULER.into(),
        state: state.into(),
        phase: "done".into(),
        scheduled_for: Some(slot.to_string()),
        approvals: Vec::new(),
        approval_deadline: None,
        started_at: now_str(),
        finished_at: Some(now_str()),
        execution: None,
        cleanup_execution: None,
        error: Some(why.to_string()),
        verdict: None,
        report: None,
        notes: Vec::new(),
    };
    push_note(&mut rec, state, why);
    let action = format!("drill.{state}");
    if let Err(e) = svc.store.save_drill_run(
        &rec,
        vec![AuditEvent {
            actor: SCHEDULER,
            action: &action,
            detail: serde_json::json!({ "drill": name, "slot": slot, "why": why }),
        }],
    ) {
        tracing::error!("cannot record drill slot: {e:#}");
    }
    crate::metrics::drill_run_ended(name, state);
    svc.publish(name, "scheduled", state, &format!("{slot}: {why}"));
}

/// Slots between the last heartbeat and now that were neither run nor recorded.
fn record_missed(svc: &DrillService, now: Timestamp) -> anyhow::Result<()> {
    let Some(seen) = svc.store.meta(SEEN_KEY)? else {
        svc.store.set_meta(SEEN_KEY, &now.to_string())?;
        return Ok(());
    };
    let seen: Timestamp = seen.parse()?;
    let runs = svc.store.drill_runs()?;
    for (name, l) in &svc.drills {
        if l.drill.schedule.is_none() {
            continue;
        }
        for at in niledr_drills::missed_runs(&l.drill, seen, now)? {
            let local = at.to_zoned(jiff::tz::TimeZone::get(&l.drill.timezone)?);
            let slot = local.to_string();
            let handled = runs
                .iter()
                .any(|r| r.drill == *name && r.scheduled_for.as_deref() == Some(slot.as_str()));
            if handled {
                continue;
            }
            tracing::warn!(drill = %name, %slot, "scheduled drill missed while niledr was down");
            record_slot(
                svc,
                name,
                &l.drill.digest,
                &slot,
                "missed",
                &format!(
                    "niledr was not running at {slot} (last seen running {seen}); missed runs are recorded, never run late"
                ),
            );
        }
    }
    svc.store.set_meta(SEEN_KEY, &now.to_string())?;
    Ok(())
}
