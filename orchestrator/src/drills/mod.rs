//! Drills in the daemon: the loaded definitions (`catalog`), standing pre-approvals
//! (`standing`), approvals of one live run before its fault (`run_approval`), starting a run
//! and keeping its durable record (this file), the run itself (`runner`), the timetable
//! (`scheduler`) and the host agent client (`agent`).

pub mod agent;
mod catalog;
mod report;
mod run_approval;
mod runner;
pub mod scheduler;
mod standing;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use niledr_drills::{ApprovalMode, FaultKind};
use niledr_runbooks::{ApprovalPolicy, Catalog};
use niledr_web::ApiError;
use niledr_web::types::{
    DrillRunRequest, DrillRunView, DrillView, PrincipalView, RunApprovalView, StatusEventView,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use catalog::{LoadedDrill, drill_view, load_drills, runbook_infos};

use crate::config::Config;
use crate::event_loop::{Event, Shared};
use crate::records::{DrillRunRecordV1, SCHEMA_VERSION, TimelineEntryV1};
use crate::store::{AuditEvent, Store};

/// Who scheduled runs are attributed to.
pub const SCHEDULER: &str = "niledr-scheduler";

pub struct DrillService {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    pub engine_tx: mpsc::Sender<Event>,
    pub events: broadcast::Sender<StatusEventView>,
    pub catalog: Catalog,
    pub drills: BTreeMap<String, LoadedDrill>,
    /// Runbook → its approval policy (standing approvals are checked against the drill's
    /// runbook's policy).
    pub policies: BTreeMap<String, ApprovalPolicy>,
    pub agent: Option<agent::Agent>,
    pub shutdown: CancellationToken,
    /// The run in progress, if any: never two drills at once.
    running: Mutex<Option<String>>,
}

fn internal(e: anyhow::Error) -> ApiError {
    ApiError::Internal(format!("{e:#}"))
}

pub fn now_str() -> String {
    jiff::Timestamp::now().to_string()
}

pub struct DrillDeps {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    pub engine_tx: mpsc::Sender<Event>,
    pub events: broadcast::Sender<StatusEventView>,
    pub catalog: Catalog,
    pub shutdown: CancellationToken,
}

impl DrillService {
    pub fn new(
        d: DrillDeps,
        drills: BTreeMap<String, LoadedDrill>,
        policies: BTreeMap<String, ApprovalPolicy>,
    ) -> anyhow::Result<DrillService> {
        let agent = match &d.config.drills.agent {
            Some(url) => Some(agent::Agent::new(url, d.config.drills.agent_token.clone())?),
            None => None,
        };
        let svc = DrillService {
            config: d.config,
            store: d.store,
            shared: d.shared,
            engine_tx: d.engine_tx,
            events: d.events,
            catalog: d.catalog,
            drills,
            policies,
            agent,
            shutdown: d.shutdown,
            running: Mutex::new(None),
        };
        svc.interrupted_after_restart()?;
        svc.expire_awaiting();
        Ok(svc)
    }

    /// Runs recorded as `running` when niledr stopped did not finish: say so, durably.
    fn interrupted_after_restart(&self) -> anyhow::Result<()> {
        for mut rec in self.store.drill_runs()? {
            if rec.state != "running" {
                continue;
            }
            tracing::warn!(run = %rec.id, drill = %rec.drill, phase = %rec.phase, "drill run was interrupted by a restart");
            rec.state = "interrupted".into();
            rec.error = Some(format!(
                "niledr stopped during phase {}; the fault may still be in effect and any execution resumes under the engine: check the topology before the next drill",
                rec.phase
            ));
            rec.finished_at = Some(now_str());
            push_note(&mut rec, "interrupted", "niledr restarted during the run");
            self.store.save_drill_run(
                &rec,
                vec![AuditEvent {
                    actor: "niledr",
                    action: "drill.interrupted",
                    detail: serde_json::json!({ "run": rec.id, "drill": rec.drill, "phase": rec.phase }),
                }],
            )?;
        }
        Ok(())
    }

    pub fn views(&self) -> Vec<DrillView> {
        let now = jiff::Timestamp::now();
        let runs = self.store.drill_runs().unwrap_or_default();
        self.drills
            .values()
            .map(|d| {
                let mut v = drill_view(d, now, 3);
                let last = runs.iter().rev().find(|r| {
                    r.drill == d.drill.name && !matches!(r.state.as_str(), "missed" | "skipped")
                });
                v.last_run = last.map(|r| r.id.clone());
                v.last_verdict = runs
                    .iter()
                    .rev()
                    .find(|r| r.drill == d.drill.name && r.verdict.is_some())
                    .and_then(|r| r.verdict.clone());
                self.standing_into_view(&d.drill, &mut v);
                v
            })
            .collect()
    }

    pub fn view(&self, name: &str) -> Result<DrillView, ApiError> {
        self.views()
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> ApiError {
        ApiError::NotFound(format!(
            "no drill {name:?}; known drills: {}",
            niledr_runbooks::validate::list(self.drills.keys())
        ))
    }

    pub fn runs(&self, drill: Option<&str>, limit: usize) -> Result<Vec<DrillRunView>, ApiError> {
        let mut all = self.store.drill_runs().map_err(internal)?;
        all.reverse();
        Ok(all
            .iter()
            .filter(|r| drill.is_none_or(|d| r.drill == d))
            .take(limit)
            .map(|r| self.view_of(r))
            .collect())
    }

    pub fn run(&self, id: &str) -> Result<DrillRunView, ApiError> {
        self.store
            .drill_run(id)
            .map_err(internal)?
            .map(|r| self.view_of(&r))
            .ok_or_else(|| ApiError::NotFound(format!("no drill run {id:?}")))
    }

    pub fn markdown(&self, id: &str) -> Result<String, ApiError> {
        let rec = self
            .store
            .drill_run(id)
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound(format!("no drill run {id:?}")))?;
        report::markdown(&rec)
    }

    /// Check everything a run needs and record it durably. A standing drill starts at once; a
    /// live drill's run awaits two approvals of the run itself (`run_approval`) and nothing is
    /// injected before. Refusals are 4xx with what to do, audited, and nothing is injected.
    pub fn start(
        self: &Arc<Self>,
        who: &PrincipalView,
        name: &str,
        request: &DrillRunRequest,
        scheduled_for: Option<String>,
    ) -> Result<DrillRunView, ApiError> {
        let r = self.start_inner(who, name, request, scheduled_for);
        if let Err(e) = &r {
            self.audit_refusal(who, &format!("run drill {name}"), e);
        }
        r
    }

    fn start_inner(
        self: &Arc<Self>,
        who: &PrincipalView,
        name: &str,
        request: &DrillRunRequest,
        scheduled_for: Option<String>,
    ) -> Result<DrillRunView, ApiError> {
        crate::engine::require(who, crate::engine::Need::Operator, "run drills")?;
        let drill = self.checked(name)?;
        if drill.approval == ApprovalMode::Live && scheduled_for.is_some() {
            return Err(ApiError::Conflict(self.unattended_live(&drill)));
        }
        let guard = self.lock_runs()?;
        self.check_startable(guard.as_deref(), &drill)?;
        if drill.approval == ApprovalMode::Live {
            let rec = new_run(who, &drill, request, scheduled_for, "requested");
            return self.request_approval(rec, &drill);
        }
        let (ok, needs) = self.standing_status(&drill);
        if !ok {
            return Err(ApiError::Conflict(format!(
                "drill {name} runs on a standing approval, which it does not have for digest {}: {needs}",
                drill.digest
            )));
        }
        let rec = new_run(who, &drill, request, scheduled_for, "started");
        self.launch(guard, rec, drill, Vec::new())
    }

    /// The drill as loaded, checked again against the catalog.
    fn checked(&self, name: &str) -> Result<niledr_drills::Drill, ApiError> {
        let loaded = self.drills.get(name).ok_or_else(|| self.unknown(name))?;
        catalog::reload(loaded, &self.catalog)
            .map_err(|e| ApiError::Conflict(format!("the drill file no longer validates: {e:#}")))
    }

    /// The one-drill lock; held while a run is started or decided on, so two requests never
    /// both start one.
    fn lock_runs(&self) -> Result<MutexGuard<'_, Option<String>>, ApiError> {
        self.running
            .lock()
            .map_err(|_| ApiError::Internal("drill lock poisoned".into()))
    }

    /// What a run needs to start now: no other drill, no active execution, the host agent
    /// when the drill acts through it, a canary to measure with.
    fn check_startable(
        &self,
        running: Option<&str>,
        drill: &niledr_drills::Drill,
    ) -> Result<(), ApiError> {
        if let Some(other) = running {
            return Err(ApiError::Conflict(format!(
                "drill run {other} is in progress; one drill at a time"
            )));
        }
        let active: Vec<String> = self
            .store
            .executions()
            .map_err(internal)?
            .into_iter()
            .filter(|e| !is_terminal(&e.state))
            .map(|e| format!("{} ({}, {})", e.id, e.runbook, e.state))
            .collect();
        if !active.is_empty() {
            return Err(ApiError::Conflict(format!(
                "no drill while an execution is active: {}",
                active.join(", ")
            )));
        }
        let needs_agent = drill.scenario.fault != FaultKind::PlannedSwitchover
            || drill.scenario.lag_before_fault_ms.is_some()
            || !drill.automate.is_empty();
        if needs_agent && self.agent.is_none() {
            return Err(ApiError::Conflict(format!(
                "drill {} injects faults or performs steps through the host agent, and [drills] agent is not configured",
                drill.name
            )));
        }
        if self.config.drills.canary_postgres.is_none() && self.config.drills.canary_redis.is_none()
        {
            return Err(ApiError::Conflict(
                "no canary is configured ([drills] canary_postgres / canary_redis): nothing could measure RTO or RPO".into(),
            ));
        }
        Ok(())
    }

    /// Record the run as running (with `audit` and `drill.started` in one fsync'd commit),
    /// take the one-drill lock and start the run task. Only called once an approval covers
    /// the drill's digest (standing, or the run's own).
    fn launch(
        self: &Arc<Self>,
        mut guard: MutexGuard<'_, Option<String>>,
        mut rec: DrillRunRecordV1,
        drill: niledr_drills::Drill,
        audit: Vec<AuditEvent<'_>>,
    ) -> Result<DrillRunView, ApiError> {
        rec.state = "running".into();
        rec.phase = "preflight".into();
        rec.approval_deadline = None;
        let who = rec.requested_by.clone();
        let approvers: Vec<&str> = rec.approvals.iter().map(|a| a.user.as_str()).collect();
        let started = AuditEvent {
            actor: &who,
            action: "drill.started",
            detail: serde_json::json!({ "run": rec.id, "drill": rec.drill, "digest": rec.digest, "trigger": rec.trigger, "request": rec.notes.first().map(|n| &n.detail), "approved_by": approvers }),
        };
        let audit: Vec<AuditEvent<'_>> = audit.into_iter().chain([started]).collect();
        self.store.save_drill_run(&rec, audit).map_err(internal)?;
        *guard = Some(rec.id.clone());
        drop(guard);
        self.publish(
            &rec.drill,
            "idle",
            "running",
            &format!("drill run {} started", rec.id),
        );
        let view = self.view_of(&rec);
        let svc = self.clone();
        let id = rec.id.clone();
        let run = tokio::spawn(async move { runner::run(svc, rec, drill).await });
        // A panicking run must not hold the one-drill lock forever nor leave triggers paused.
        let svc = self.clone();
        tokio::spawn(async move {
            if let Err(e) = run.await {
                svc.run_task_ended(&id, &e).await;
            }
        });
        Ok(view)
    }

    async fn run_task_ended(&self, id: &str, e: &tokio::task::JoinError) {
        tracing::error!(run = %id, "drill run task ended abnormally: {e}");
        if let Ok(Some(mut rec)) = self.store.drill_run(id) {
            rec.state = "failed".into();
            rec.error = Some(format!(
                "the run task ended abnormally ({e}); check the topology"
            ));
            rec.finished_at = Some(now_str());
            self.save(&rec, Some("drill.failed"));
        }
        let _ = self
            .engine_tx
            .send(Event::Engine(Box::new(
                crate::engine::EngineEvent::DrillActive { drill: None },
            )))
            .await;
        self.release(id);
    }

    /// Every refused request is in the audit log, with who asked and why it was refused.
    fn audit_refusal(&self, who: &PrincipalView, request: &str, e: &ApiError) {
        let entry = AuditEvent {
            actor: &who.name,
            action: "request.refused",
            detail: serde_json::json!({ "request": request, "refused": format!("{e:?}") }),
        };
        if let Err(err) = self.store.append_audit(vec![entry]) {
            tracing::error!("audit of a refused request failed: {err:#}");
        }
    }

    /// Commit the record (fsync) with an audit entry when `action` is given.
    fn save(&self, rec: &DrillRunRecordV1, action: Option<&str>) {
        let audit = action
            .map(|a| {
                vec![AuditEvent {
                    actor: "niledr",
                    action: a,
                    detail: serde_json::json!({ "run": rec.id, "drill": rec.drill, "phase": rec.phase, "state": rec.state }),
                }]
            })
            .unwrap_or_default();
        if let Err(e) = self.store.save_drill_run(rec, audit) {
            tracing::error!(run = %rec.id, "cannot record drill run: {e:#}");
        }
    }

    fn release(&self, id: &str) {
        if let Ok(mut g) = self.running.lock()
            && g.as_deref() == Some(id)
        {
            *g = None;
        }
    }

    pub fn running(&self) -> Option<String> {
        self.running.lock().ok().and_then(|g| g.clone())
    }

    /// Drill news on the event stream (scope `drill`).
    fn publish(&self, drill: &str, from: &str, to: &str, reason: &str) {
        let _ = self.events.send(StatusEventView {
            seq: 0,
            at: now_str(),
            scope: "drill".into(),
            id: drill.to_string(),
            site: None,
            from: from.into(),
            to: to.into(),
            reason: reason.into(),
        });
    }
}

pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "succeeded" | "failed" | "rolled_back" | "cancelled" | "rejected" | "expired"
    )
}

pub fn push_note(rec: &mut DrillRunRecordV1, event: &str, detail: &str) {
    rec.notes.push(TimelineEntryV1 {
        at: now_str(),
        event: event.into(),
        detail: detail.into(),
    });
}

/// A new run record with its first note (`event`); state and phase set by the caller's path.
fn new_run(
    who: &PrincipalView,
    drill: &niledr_drills::Drill,
    request: &DrillRunRequest,
    scheduled_for: Option<String>,
    event: &str,
) -> DrillRunRecordV1 {
    let trigger = if scheduled_for.is_some() {
        "schedule"
    } else {
        "on_demand"
    };
    let mut rec = DrillRunRecordV1 {
        v: SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        drill: drill.name.clone(),
        digest: drill.digest.clone(),
        trigger: trigger.into(),
        requested_by: who.name.clone(),
        state: "running".into(),
        phase: "preflight".into(),
        scheduled_for,
        approvals: Vec::new(),
        approval_deadline: None,
        started_at: now_str(),
        finished_at: None,
        execution: None,
        cleanup_execution: None,
        error: None,
        verdict: None,
        report: None,
        notes: Vec::new(),
    };
    let reason = request.reason.trim();
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    push_note(
        &mut rec,
        event,
        &format!("{trigger} run of {} by {}{why}", drill.name, who.name),
    );
    rec
}

pub fn run_view(r: &DrillRunRecordV1) -> DrillRunView {
    // A stored report that no longer loads is named in `error`, not dropped silently.
    let (report, unreadable) = match r
        .report
        .as_ref()
        .map(crate::api::drills::stored_report_view)
    {
        Some(Ok(v)) => (Some(v), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    DrillRunView {
        id: r.id.clone(),
        drill: r.drill.clone(),
        digest: r.digest.clone(),
        trigger: r.trigger.clone(),
        requested_by: r.requested_by.clone(),
        state: r.state.clone(),
        phase: r.phase.clone(),
        approvals: r
            .approvals
            .iter()
            .map(|a| RunApprovalView {
                user: a.user.clone(),
                roles: a.roles.clone(),
                decision: a.decision.clone(),
                digest: a.digest.clone(),
                at: a.at.clone(),
                comment: a.comment.clone(),
            })
            .collect(),
        approval_needed: None,
        approval_deadline: r.approval_deadline.clone(),
        scheduled_for: r.scheduled_for.clone(),
        started_at: r.started_at.clone(),
        finished_at: r.finished_at.clone(),
        execution: r.execution.clone(),
        cleanup_execution: r.cleanup_execution.clone(),
        error: match (&r.error, unreadable) {
            (Some(e), Some(u)) => Some(format!("{e}; {u}")),
            (e, u) => e.clone().or(u),
        },
        verdict: r.verdict.clone(),
        report,
        notes: r
            .notes
            .iter()
            .map(|n| niledr_web::types::TimelineNoteView {
                at: n.at.clone(),
                event: n.event.clone(),
                detail: n.detail.clone(),
            })
            .collect(),
    }
}
