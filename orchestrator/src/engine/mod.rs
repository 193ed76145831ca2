//! The execution engine, driven by the event loop: loads runbooks, turns API commands into
//! state-machine events, journals every transition (fsync, with its audit entries) before the
//! effect it starts, runs steps as async tasks whose completions come back as events, enforces
//! one execution per service, and resumes in-doubt steps after a restart.

mod commands;
mod drill_hooks;
mod fencing;
pub mod steps;
mod triggers;
mod view;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use niledr_runbooks::{Action, Catalog, Effect, Event as MEvent, Level, Machine, Runbook, State};
use niledr_web::types::{ExecutionView, PrincipalView, RunbookSummaryView, StatusEventView};
use niledr_web::{ApiError, Command};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::Config;
use crate::event_loop::{Event, Shared};
use crate::failpoint;
use crate::records::{ExecutionRecordV1, StepRecordV1, TimelineEntryV1};
use crate::store::{AuditEvent, Store};
pub(crate) use commands::{Need, approval_error, require};
pub use drill_hooks::{StandingApproval, drill_principal};
use steps::{StepContext, StepError};
pub use view::execution_view;

/// Events the engine handles (wrapped in the loop's `Event::Engine`).
#[derive(Debug)]
pub enum EngineEvent {
    Command {
        who: PrincipalView,
        command: Command,
        reply: oneshot::Sender<Result<ExecutionView, ApiError>>,
    },
    StepDone {
        id: String,
        index: usize,
        rollback: bool,
        result: Result<String, StepError>,
        took: Duration,
    },
    RetryDue {
        id: String,
        index: usize,
    },
    VerifyDone {
        id: String,
        result: Result<String, String>,
    },
    /// A drill proposes its runbook (or adopts a trigger's pending proposal for the outage it
    /// caused) and, with a standing approval, applies the approvals given to the drill file.
    DrillPropose {
        drill: String,
        runbook: String,
        reason: String,
        standing: Vec<StandingApproval>,
        reply: oneshot::Sender<Result<ExecutionView, ApiError>>,
    },
    /// A drill started (`Some`) or ended (`None`).
    DrillActive {
        drill: Option<String>,
    },
    /// A returning old primary was fenced again.
    Refenced {
        service: String,
        result: Result<String, String>,
    },
}

/// What a new execution record is made of.
struct NewRecord<'a> {
    id: &'a str,
    who: &'a PrincipalView,
    runbook: &'a Runbook,
    reason: &'a str,
    plan: &'a niledr_runbooks::Plan,
    pre: &'a niledr_runbooks::Preconditions,
    machine: &'a Machine,
}

pub struct LoadedRunbook {
    pub runbook: Runbook,
    pub file: PathBuf,
}

/// Parse every `*.toml` in the configured runbook directories; the first invalid file refuses
/// the whole load with its file:line:column message.
pub fn load_runbooks(
    config: &Config,
    catalog: &Catalog,
) -> Result<BTreeMap<String, LoadedRunbook>> {
    let mut out = BTreeMap::new();
    for dir in &config.runbook_dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read runbook directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            let rb = parse_file(&file, catalog)?;
            if let Some(prev) = out.get(&rb.name) {
                let prev: &LoadedRunbook = prev;
                anyhow::bail!(
                    "{}: runbook name {:?} is also used by {}",
                    file.display(),
                    rb.name,
                    prev.file.display()
                );
            }
            out.insert(rb.name.clone(), LoadedRunbook { runbook: rb, file });
        }
    }
    Ok(out)
}

pub fn parse_file(file: &Path, catalog: &Catalog) -> Result<Runbook> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read runbook {}", file.display()))?;
    niledr_runbooks::parse_runbook(file, &text, catalog).map_err(|e| anyhow::anyhow!("{e}"))
}

struct Live {
    machine: Machine,
    record: ExecutionRecordV1,
    runbook: Runbook,
}

pub struct Engine {
    config: Arc<Config>,
    store: Arc<Store>,
    shared: Arc<Shared>,
    catalog: Catalog,
    runbooks: BTreeMap<String, LoadedRunbook>,
    live: BTreeMap<String, Live>,
    tx: mpsc::Sender<Event>,
    rt: tokio::runtime::Handle,
    ctx: Arc<StepContext>,
    events: broadcast::Sender<StatusEventView>,
    /// Runbook → the start of the outage it last proposed for (one proposal per outage).
    triggered: BTreeMap<String, u64>,
    /// Audit entries to commit with the next journal write (step intents and outcomes).
    pending_audit: Vec<(String, String, serde_json::Value)>,
    /// Old primaries a succeeded failover fenced: kept read-only if they come back.
    keep_fenced: std::collections::BTreeSet<String>,
    /// Service → the up-episode (status `since`, ms) it was last re-fenced in.
    fencing: BTreeMap<String, i64>,
    /// The drill running now, if any: triggers do not propose for the outage it causes.
    drill_active: Option<String>,
}

/// Engine-internal errors surface in the loop as anyhow errors.
fn api(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

pub fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

fn now_str() -> String {
    jiff::Timestamp::now().to_string()
}

/// What the engine is built from.
pub struct EngineDeps {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    pub catalog: Catalog,
    pub tx: mpsc::Sender<Event>,
    pub rt: tokio::runtime::Handle,
    pub events: broadcast::Sender<StatusEventView>,
}

impl Engine {
    pub fn new(d: EngineDeps, runbooks: BTreeMap<String, LoadedRunbook>) -> Self {
        let ctx = Arc::new(StepContext {
            config: d.config.clone(),
            shared: d.shared.clone(),
            store: d.store.clone(),
        });
        Engine {
            config: d.config,
            store: d.store,
            shared: d.shared,
            catalog: d.catalog,
            runbooks,
            live: BTreeMap::new(),
            tx: d.tx,
            rt: d.rt,
            ctx,
            events: d.events,
            triggered: BTreeMap::new(),
            pending_audit: Vec::new(),
            keep_fenced: Default::default(),
            fencing: Default::default(),
            drill_active: None,
        }
    }

    pub fn runbook_summaries(
        runbooks: &BTreeMap<String, LoadedRunbook>,
    ) -> Vec<RunbookSummaryView> {
        runbooks
            .values()
            .map(|l| RunbookSummaryView {
                name: l.runbook.name.clone(),
                description: l.runbook.description.clone(),
                file: l.file.display().to_string(),
                services: l.runbook.services.clone(),
                steps: l.runbook.steps.len(),
                approval: serde_json::to_value(&l.runbook.approval).unwrap_or_default(),
            })
            .collect()
    }

    /// After a restart: take back every execution that had not ended, and re-run what was in
    /// flight. Steps with intent but no outcome are in doubt; their actions check the world
    /// before acting, so nothing runs twice blindly.
    pub fn resume(&mut self) -> Result<()> {
        self.refresh_fence_list();
        for rec in self.store.executions()? {
            let machine: Machine = match serde_json::from_value(rec.machine.clone()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(id = %rec.id, "cannot resume execution: its state machine does not load: {e}");
                    continue;
                }
            };
            if machine.state().is_terminal() {
                continue;
            }
            let Some(loaded) = self.runbooks.get(&rec.runbook) else {
                tracing::error!(id = %rec.id, runbook = %rec.runbook, "cannot resume execution: runbook no longer loaded");
                continue;
            };
            let runbook = loaded.runbook.clone();
            let id = rec.id.clone();
            tracing::warn!(%id, state = %machine.state(), "resuming execution after restart");
            let state = machine.state().clone();
            self.live.insert(
                id.clone(),
                Live {
                    machine,
                    record: rec,
                    runbook,
                },
            );
            self.note(
                &id,
                "resumed",
                "niledr restarted; re-checking in-flight work",
            );
            match state {
                State::Running { step } => {
                    let in_doubt = self.live.get(&id).is_some_and(|l| {
                        l.record
                            .steps
                            .get(step)
                            .is_some_and(|s| s.intent_at.is_some() && s.outcome_at.is_none())
                    });
                    let waiting = self.live.get(&id).is_some_and(|l| {
                        l.record
                            .steps
                            .get(step)
                            .is_some_and(|s| s.state == "waiting_confirmation")
                    });
                    if in_doubt && !waiting {
                        self.note(&id, "in_doubt", &format!("step {step} had intent but no outcome: re-checking the world, then acting only if needed"));
                        let attempt = self
                            .live
                            .get(&id)
                            .and_then(|l| l.record.steps.get(step))
                            .map_or(1, |s| s.attempts.max(1));
                        self.save(&id, vec![])?;
                        self.spawn_step(&id, step, attempt);
                    } else {
                        self.save(&id, vec![])?;
                    }
                }
                State::RollingBack { step } => {
                    self.save(&id, vec![])?;
                    self.spawn_rollback(&id, step);
                }
                State::Verifying {} => {
                    self.save(&id, vec![])?;
                    self.spawn_verify(&id);
                }
                State::Approved {} => {
                    self.save(&id, vec![])?;
                    self.start_approved(&id).map_err(api)?;
                }
                _ => self.save(&id, vec![])?,
            }
        }
        Ok(())
    }

    pub fn handle(&mut self, ev: EngineEvent) -> Result<()> {
        match ev {
            EngineEvent::Command {
                who,
                command,
                reply,
            } => {
                let r = self.command(&who, command);
                let _ = reply.send(r);
            }
            EngineEvent::StepDone {
                id,
                index,
                rollback,
                result,
                took,
            } => self.step_done(&id, index, rollback, result, took)?,
            EngineEvent::DrillPropose {
                drill,
                runbook,
                reason,
                standing,
                reply,
            } => {
                let r = self.drill_propose(&drill, &runbook, &reason, &standing);
                if let Err(e) = &r {
                    let entry = crate::store::AuditEvent {
                        actor: &drill,
                        action: "drill.propose_refused",
                        detail: serde_json::json!({ "runbook": runbook, "refused": format!("{e:?}") }),
                    };
                    self.store.append_audit(vec![entry])?;
                }
                let _ = reply.send(r);
            }
            EngineEvent::DrillActive { drill } => self.set_drill_active(drill),
            EngineEvent::RetryDue { id, index } => {
                if self.live.contains_key(&id) {
                    self.apply(&id, MEvent::RetryDue { index }).map_err(api)?;
                }
            }
            EngineEvent::Refenced { service, result } => {
                let entry = crate::store::AuditEvent {
                    actor: "niledr",
                    action: "fence.returning_primary.outcome",
                    detail: serde_json::json!({ "service": service, "result": format!("{result:?}") }),
                };
                self.store.append_audit(vec![entry])?;
                match result {
                    Ok(d) => tracing::warn!(%service, "returning old primary fenced: {d}"),
                    Err(e) => {
                        tracing::error!(%service, "could not fence the returning old primary: {e}")
                    }
                }
            }
            EngineEvent::VerifyDone { id, result } => {
                if self.live.contains_key(&id) {
                    let ev = match result {
                        Ok(detail) => {
                            self.note(&id, "verified", &detail);
                            MEvent::VerifySucceeded
                        }
                        Err(error) => MEvent::VerifyFailed { error },
                    };
                    self.apply(&id, ev).map_err(api)?;
                }
            }
        }
        Ok(())
    }

    /// Timer: expire proposals whose approval window passed.
    pub fn tick(&mut self) -> Result<()> {
        self.check_triggers();
        self.check_returning_primaries();
        let now = now_ms();
        let expired: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| matches!(l.machine.state(), State::AwaitingApproval {}))
            .filter(|(_, l)| {
                let created =
                    jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.fZ", &l.record.created_at)
                        .ok()
                        .or_else(|| l.record.created_at.parse().ok())
                        .map_or(0, |t: jiff::Timestamp| {
                            u64::try_from(t.as_millisecond()).unwrap_or(0)
                        });
                now > created + l.runbook.approval.expires_after_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.note(&id, "expired", "no approval in time");
            self.apply(&id, MEvent::Expire).map_err(api)?;
        }
        Ok(())
    }

    fn note(&mut self, id: &str, event: &str, detail: &str) {
        if let Some(l) = self.live.get_mut(id) {
            l.record.timeline.push(TimelineEntryV1 {
                at: now_str(),
                event: event.into(),
                detail: detail.into(),
            });
        }
    }

    /// Persist the record (fsync) with audit entries.
    fn save(
        &mut self,
        id: &str,
        mut audit: Vec<(String, String, serde_json::Value)>,
    ) -> Result<()> {
        let Some(l) = self.live.get_mut(id) else {
            return Ok(());
        };
        audit.append(&mut self.pending_audit);
        l.record.state = l.machine.state().name().to_string();
        l.record.machine = serde_json::to_value(&l.machine)?;
        let events = audit
            .iter()
            .map(|(actor, action, detail)| AuditEvent {
                actor,
                action,
                detail: detail.clone(),
            })
            .collect();
        self.store.save_execution(&l.record, events)
    }

    /// Feed one event to an execution's machine: journal the transitions, then perform the
    /// effects. A refused event changes nothing and is reported as a conflict.
    fn apply(&mut self, id: &str, event: MEvent) -> Result<(), ApiError> {
        self.apply_as(id, "niledr", event)
    }

    fn apply_as(&mut self, id: &str, actor: &str, event: MEvent) -> Result<(), ApiError> {
        let Some(l) = self.live.get_mut(id) else {
            return Err(ApiError::NotFound(format!("no active execution {id}")));
        };
        let outbox = l.machine.handle(&event);
        if let Some(why) = outbox.refused {
            return Err(ApiError::Conflict(why));
        }
        let event_name = serde_json::to_value(&event)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default();
        let mut audit = Vec::new();
        for t in &outbox.transitions {
            l.record.timeline.push(TimelineEntryV1 {
                at: now_str(),
                event: format!("{} → {}", t.from.name(), t.to.name()),
                detail: event_name.clone(),
            });
            audit.push((
                actor.to_string(),
                "execution.transition".to_string(),
                serde_json::json!({ "id": id, "from": t.from.to_string(), "to": t.to.to_string(), "event": event_name }),
            ));
        }
        // Mark intent for every step about to start, in the same commit (journal before effect).
        for e in &outbox.effects {
            match e {
                Effect::RunStep { index, attempt, .. } => {
                    let manual = matches!(
                        l.runbook.steps.get(*index).map(|s| &s.action),
                        Some(Action::ManualConfirm { .. })
                    );
                    audit.push((
                        "niledr".to_string(),
                        "step.intent".to_string(),
                        serde_json::json!({ "id": id, "step": l.runbook.steps.get(*index).map(|s| s.id.clone()), "attempt": attempt }),
                    ));
                    if let Some(s) = l.record.steps.get_mut(*index) {
                        s.attempts = *attempt;
                        s.intent_at = Some(now_str());
                        s.outcome_at = None;
                        s.state = if manual {
                            "waiting_confirmation".into()
                        } else {
                            "running".into()
                        };
                    }
                }
                Effect::RollbackStep { index, .. } => {
                    audit.push((
                        "niledr".to_string(),
                        "step.rollback_intent".to_string(),
                        serde_json::json!({ "id": id, "step": l.runbook.steps.get(*index).map(|s| s.id.clone()) }),
                    ));
                    if let Some(s) = l.record.steps.get_mut(*index) {
                        s.state = "rolling_back".into();
                        s.intent_at = Some(now_str());
                        s.outcome_at = None;
                    }
                }
                Effect::Notify { level, message } => {
                    l.record.timeline.push(TimelineEntryV1 {
                        at: now_str(),
                        event: format!("notify.{level:?}").to_lowercase(),
                        detail: message.clone(),
                    });
                }
                _ => {}
            }
        }
        if let State::Failed {
            needs_operator: true,
        } = l.machine.state()
        {
            l.record.needs_operator = Some(
                l.machine
                    .execution()
                    .failure
                    .clone()
                    .unwrap_or_else(|| "rollback failed".into()),
            );
        }
        let transitions = outbox.transitions.clone();
        self.save(id, audit)
            .map_err(|e| ApiError::Internal(format!("journal: {e:#}")))?;
        for t in &transitions {
            let _ = self.events.send(StatusEventView {
                seq: 0,
                at: now_str(),
                scope: "execution".into(),
                id: id.to_string(),
                site: None,
                from: t.from.name().into(),
                to: t.to.name().into(),
                reason: event_name.clone(),
            });
        }
        for e in outbox.effects {
            self.perform(id, e);
        }
        if self
            .live
            .get(id)
            .is_some_and(|l| l.machine.state().is_terminal())
            && let Some(l) = self.live.remove(id)
        {
            tracing::info!(%id, state = %l.machine.state(), "execution ended");
            self.refresh_fence_list();
        }
        Ok(())
    }

    fn perform(&mut self, id: &str, effect: Effect) {
        match effect {
            Effect::RunStep { index, attempt, .. } => {
                let manual = self.live.get(id).is_some_and(|l| {
                    matches!(
                        l.runbook.steps.get(index).map(|s| &s.action),
                        Some(Action::ManualConfirm { .. })
                    )
                });
                if !manual {
                    self.spawn_step(id, index, attempt);
                }
            }
            Effect::ScheduleRetry {
                index, after_ms, ..
            } => {
                let tx = self.tx.clone();
                let id = id.to_string();
                self.rt.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(after_ms)).await;
                    let _ = tx
                        .send(Event::Engine(Box::new(EngineEvent::RetryDue { id, index })))
                        .await;
                });
            }
            Effect::RollbackStep { index, .. } => self.spawn_rollback(id, index),
            Effect::Verify => self.spawn_verify(id),
            Effect::Notify { level, message } => match level {
                Level::Info => tracing::info!(%id, "{message}"),
                Level::Warning => tracing::warn!(%id, "{message}"),
                Level::Critical => tracing::error!(%id, "NEEDS AN OPERATOR: {message}"),
            },
        }
    }

    fn spawn_step(&self, id: &str, index: usize, attempt: u32) {
        let Some(l) = self.live.get(id) else { return };
        let Some(step) = l.runbook.steps.get(index).cloned() else {
            return;
        };
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        let id = id.to_string();
        failpoint::hit(&format!("after_intent:{}", step.id));
        tracing::info!(%id, step = %step.id, attempt, "step starting");
        self.rt.spawn(async move {
            let started = Instant::now();
            let timeout = Duration::from_millis(step.timeout_ms);
            let result = match tokio::time::timeout(
                timeout + Duration::from_secs(1),
                steps::run(&ctx, &step.action, timeout),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(StepError {
                    error: format!("timed out after {timeout:?}"),
                    retryable: true,
                }),
            };
            failpoint::hit(&format!("after_action:{}", step.id));
            let _ = tx
                .send(Event::Engine(Box::new(EngineEvent::StepDone {
                    id,
                    index,
                    rollback: false,
                    result,
                    took: started.elapsed(),
                })))
                .await;
        });
    }

    fn spawn_rollback(&self, id: &str, index: usize) {
        let Some(l) = self.live.get(id) else { return };
        let Some(step) = l.runbook.steps.get(index).cloned() else {
            return;
        };
        let detail = l
            .record
            .steps
            .get(index)
            .map(|s| s.detail.clone())
            .unwrap_or_default();
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        let id = id.to_string();
        tracing::warn!(%id, step = %step.id, "rolling back step");
        self.rt.spawn(async move {
            let started = Instant::now();
            let timeout = Duration::from_millis(step.timeout_ms);
            let action = match &step.rollback {
                niledr_runbooks::Rollback::Explicit(r) => r.action.clone(),
                _ => step.action.clone(),
            };
            let result = match &step.rollback {
                niledr_runbooks::Rollback::Explicit(_) => steps::run(&ctx, &action, timeout).await,
                _ => steps::rollback(&ctx, &action, &detail, timeout).await,
            };
            let _ = tx
                .send(Event::Engine(Box::new(EngineEvent::StepDone {
                    id,
                    index,
                    rollback: true,
                    result,
                    took: started.elapsed(),
                })))
                .await;
        });
    }

    /// End-to-end verification: every promoted store answers as a primary and every cut-over
    /// name answers the new address on every authoritative server.
    fn spawn_verify(&self, id: &str) {
        let Some(l) = self.live.get(id) else { return };
        let checks: Vec<Action> = l
            .runbook
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::DnsCutover { name, to, .. } => Some(Action::DnsVerify {
                    name: name.clone(),
                    expect: to.clone(),
                }),
                Action::PostgresPromote { .. } | Action::RedisPromote { .. } => {
                    Some(s.action.clone())
                }
                _ => None,
            })
            .collect();
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        let id = id.to_string();
        self.rt.spawn(async move {
            let mut seen = Vec::new();
            let mut result = Ok(());
            for a in &checks {
                // Promotions are idempotent: on a promoted store they only confirm it.
                match steps::run(&ctx, a, Duration::from_secs(10)).await {
                    Ok(d) => seen.push(d),
                    Err(e) => {
                        result = Err(e.error);
                        break;
                    }
                }
            }
            let result = result.map(|()| format!("{} checks passed", seen.len()));
            let _ = tx
                .send(Event::Engine(Box::new(EngineEvent::VerifyDone {
                    id,
                    result,
                })))
                .await;
        });
    }

    fn step_done(
        &mut self,
        id: &str,
        index: usize,
        rollback: bool,
        result: Result<String, StepError>,
        took: Duration,
    ) -> Result<()> {
        let step_id = self
            .live
            .get(id)
            .and_then(|l| l.runbook.steps.get(index))
            .map(|s| s.id.clone())
            .unwrap_or_default();
        failpoint::hit(&format!("before_outcome:{step_id}"));
        let journal_start = Instant::now();
        let Some(l) = self.live.get_mut(id) else {
            return Ok(());
        };
        if let Some(s) = l.record.steps.get_mut(index) {
            s.outcome_at = Some(now_str());
            let text = match &result {
                Ok(d) => d.clone(),
                Err(e) => e.error.clone(),
            };
            if rollback {
                s.rollback_detail = Some(text);
            } else {
                s.duration_ms = Some(took.as_secs_f64() * 1000.0);
                if result.is_err() {
                    s.error = Some(text.clone());
                }
                s.detail = text;
            }
            s.state = match (rollback, result.is_ok()) {
                (false, true) => "succeeded",
                (false, false) => "failed",
                (true, true) => "rolled_back",
                (true, false) => "rollback_failed",
            }
            .into();
        }
        let outcome = l
            .record
            .steps
            .get(index)
            .map(|s| (s.state.clone(), s.detail.clone(), s.rollback_detail.clone()));
        self.pending_audit.push((
            "niledr".to_string(),
            if rollback {
                "step.rollback_outcome"
            } else {
                "step.outcome"
            }
            .to_string(),
            serde_json::json!({ "id": id, "step": step_id, "outcome": outcome }),
        ));
        let ev = match (rollback, result) {
            (false, Ok(_)) => MEvent::StepSucceeded { index },
            (false, Err(e)) => MEvent::StepFailed {
                index,
                retryable: e.retryable,
                error: e.error,
            },
            (true, Ok(_)) => MEvent::RollbackStepDone { index },
            (true, Err(e)) => MEvent::RollbackStepFailed {
                index,
                error: e.error,
            },
        };
        if let Err(e) = self.apply(id, ev) {
            tracing::error!(%id, "journal of step {index} outcome failed: {e:?}");
        }
        if let Some(l) = self.live.get_mut(id)
            && let Some(s) = l.record.steps.get_mut(index)
        {
            s.overhead_ms = Some(journal_start.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(())
    }

    /// Approved: check the world did not drift past tolerance, take a fencing generation, go.
    fn start_approved(&mut self, id: &str) -> Result<(), ApiError> {
        let Some(l) = self.live.get(id) else {
            return Ok(());
        };
        let approved: niledr_runbooks::Preconditions =
            serde_json::from_value(l.record.preconditions.clone()).unwrap_or_default();
        let world = self.world();
        let now = niledr_runbooks::preconditions(&l.runbook, &world);
        let drift = niledr_runbooks::drift(&approved, &now, &l.runbook.approval.tolerance);
        if !drift.is_empty() {
            self.note(id, "preconditions_drifted", &drift.join("; "));
            if let Some(l) = self.live.get_mut(id) {
                l.record.preconditions = serde_json::to_value(&now).unwrap_or_default();
                // Approvals given for the old picture no longer count.
                l.record.approvals.clear();
            }
            return self.apply(id, MEvent::PreconditionsDrifted { details: drift });
        }
        let generation = self
            .store
            .next_generation()
            .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
        if let Some(l) = self.live.get_mut(id) {
            l.record.generation = Some(generation);
        }
        self.note(id, "started", &format!("fencing generation {generation}"));
        self.apply(id, MEvent::Start)
    }

    fn world(&self) -> niledr_runbooks::WorldSnapshot {
        match self.shared.model.read() {
            Ok(m) => crate::world::snapshot(&self.config, &m),
            Err(p) => crate::world::snapshot(&self.config, &p.into_inner()),
        }
    }

    fn new_record(&self, p: NewRecord<'_>) -> ExecutionRecordV1 {
        let NewRecord {
            id,
            who,
            runbook,
            reason,
            plan,
            pre,
            machine,
        } = p;
        ExecutionRecordV1 {
            v: 1,
            id: id.to_string(),
            runbook: runbook.name.clone(),
            reason: reason.to_string(),
            requester: who.name.clone(),
            created_at: now_str(),
            state: machine.state().name().into(),
            machine: serde_json::to_value(machine).unwrap_or_default(),
            plan_digest: plan.digest.clone(),
            plan: serde_json::to_value(plan).unwrap_or_default(),
            preconditions: serde_json::to_value(pre).unwrap_or_default(),
            approvals: Vec::new(),
            steps: runbook
                .steps
                .iter()
                .map(|s| StepRecordV1 {
                    id: s.id.clone(),
                    kind: s.action.kind().as_str().into(),
                    state: "pending".into(),
                    ..Default::default()
                })
                .collect(),
            timeline: Vec::new(),
            needs_operator: None,
            generation: None,
        }
    }
}
