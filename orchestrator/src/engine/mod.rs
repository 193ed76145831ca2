//! The execution engine, driven by the event loop: loads runbooks, turns API commands into
//! state-machine events, journals every transition (fsync, with its audit entries) before the
//! effect it starts, runs steps as async tasks whose completions come back as events, enforces
//! one execution per service, and resumes in-doubt steps after a restart.

pub mod clock;
mod commands;
mod drill_hooks;
pub mod fencing;
mod hooks;
mod journal;
mod open_gauges;
mod resume;
mod start;
pub mod steps;
mod tasks;
mod triggers;
mod verdicts;
mod view;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use niledr_runbooks::{Catalog, Event as MEvent, Machine, Readiness, Runbook, State};
use niledr_web::types::{ExecutionView, PrincipalView, RunbookSummaryView, StatusEventView};
use niledr_web::{ApiError, Command};
use tokio::sync::{broadcast, oneshot};

use crate::config::Config;
use crate::records::{ExecutionRecordV1, StepRecordV1, TimelineEntryV1};
use crate::shared::Shared;
use crate::store::Store;
pub(crate) use commands::{Need, approval_error, require};
pub use drill_hooks::{StandingApproval, drill_principal};
use steps::{StepContext, StepError, StepOutcome};
pub use tasks::TaskKind;
pub use view::execution_view;

type SendFn = dyn Fn(EngineEvent) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// How the engine's tasks report back to the loop that owns the engine. Built by the event
/// loop (`event_loop::engine_tx`), so the engine does not know the loop's `Event` type.
#[derive(Clone)]
pub struct EngineTx(Arc<SendFn>);

impl EngineTx {
    pub fn new(
        f: impl Fn(EngineEvent) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static,
    ) -> Self {
        EngineTx(Arc::new(f))
    }

    /// Deliver `ev` to the loop (dropped when the loop has stopped).
    pub async fn send(&self, ev: EngineEvent) {
        (self.0)(ev).await;
    }
}

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
        result: Result<StepOutcome, StepError>,
        took: Duration,
    },
    /// A supervised task panicked or was aborted.
    TaskCrashed {
        id: String,
        index: usize,
        kind: TaskKind,
        error: String,
    },
    /// The readiness check before the first step finished.
    ReadyDone {
        id: String,
        readiness: Vec<Readiness>,
    },
    /// A step waiting for an operator's confirm ran out of time (if still at `attempt`).
    ConfirmDue {
        id: String,
        index: usize,
        attempt: u32,
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
    /// A pager hook call's alerts, verified and routed (`crate::hooks`); answered once
    /// committed.
    Hook {
        source: niledr_web::HookSource,
        alerts: Vec<crate::hooks::RoutedAlert>,
        reply: oneshot::Sender<Vec<niledr_web::types::HookAlertResultView>>,
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

#[derive(Clone)]
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
    tx: EngineTx,
    rt: tokio::runtime::Handle,
    ctx: Arc<StepContext>,
    events: broadcast::Sender<StatusEventView>,
    /// Each execution's view after every journal write (SSE `event: execution`).
    executions: broadcast::Sender<niledr_web::types::ExecutionView>,
    /// Runbook → the start of the outage it last proposed for (one proposal per outage).
    triggered: BTreeMap<String, u64>,
    /// Runbook → (outage start, monotonic time this process first saw it): the debounce.
    down_seen: BTreeMap<String, (u64, Duration)>,
    /// Time: wall clock anchored once, advanced monotonically.
    clock: clock::Clock,
    /// Audit entries to commit with the next journal write (step intents and outcomes).
    pending_audit: Vec<(String, String, serde_json::Value)>,
    /// Old primaries a succeeded failover fenced: kept read-only if they come back.
    keep_fenced: std::collections::BTreeSet<String>,
    /// Service → the up-episode (status `since`, ms) it was last re-fenced in.
    fencing: BTreeMap<String, i64>,
    /// Service → (failed re-fence attempts, not before): retried with backoff.
    refence_retry: BTreeMap<String, (u32, Instant)>,
    /// Live executions past their point of no return at the last fence-list refresh.
    fence_list_passed: usize,
    /// The drill running now, if any: triggers do not propose for the outage it causes.
    drill_active: Option<String>,
    /// Supervised tasks running now.
    in_flight: std::collections::BTreeSet<tasks::TaskKey>,
    /// Shutting down: no new step, rollback or verification starts.
    stopping: bool,
    /// Pager alerts seen (`crate::hooks::memory`), kept in the store.
    alert_memory: crate::hooks::memory::Memory,
}

/// Engine-internal errors surface in the loop as anyhow errors.
fn api(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
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
    pub tx: EngineTx,
    pub rt: tokio::runtime::Handle,
    pub events: broadcast::Sender<StatusEventView>,
    pub executions: broadcast::Sender<niledr_web::types::ExecutionView>,
}

impl Engine {
    pub fn new(d: EngineDeps, runbooks: BTreeMap<String, LoadedRunbook>) -> Self {
        let triggered = Engine::load_triggered(&d.store);
        let alert_memory = Engine::load_alert_memory(&d.store);
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
            executions: d.executions,
            triggered,
            down_seen: BTreeMap::new(),
            clock: clock::Clock::system(),
            pending_audit: Vec::new(),
            keep_fenced: Default::default(),
            fencing: Default::default(),
            refence_retry: BTreeMap::new(),
            fence_list_passed: 0,
            drill_active: None,
            in_flight: Default::default(),
            stopping: false,
            alert_memory,
        }
        .with_alert_evidence()
    }

    fn with_alert_evidence(self) -> Self {
        self.publish_alert_evidence();
        self
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
                approval: crate::api::plan::approval_policy_view(&l.runbook.approval),
            })
            .collect()
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
            } => {
                let kind = if rollback {
                    TaskKind::Rollback
                } else {
                    TaskKind::Step
                };
                self.task_ended(&id, index, kind);
                self.step_done(&id, index, rollback, result, took)?;
            }
            EngineEvent::TaskCrashed {
                id,
                index,
                kind,
                error,
            } => {
                self.task_ended(&id, index, kind);
                self.task_crashed(&id, index, kind, error);
            }
            EngineEvent::ReadyDone { id, readiness } => {
                self.task_ended(&id, 0, TaskKind::Ready);
                self.ready_done(&id, readiness);
            }
            EngineEvent::ConfirmDue { id, index, attempt } => {
                self.confirm_due(&id, index, attempt);
            }
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
                self.refenced(&service, result);
            }
            EngineEvent::Hook {
                source,
                alerts,
                reply,
            } => {
                let results = self.hook(source, alerts);
                let _ = reply.send(results);
            }
            EngineEvent::VerifyDone { id, result } => {
                self.task_ended(&id, 0, TaskKind::Verify);
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
        let now = self.clock.now_ms();
        let expired: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| matches!(l.machine.state(), State::AwaitingApproval {}))
            .filter(|(_, l)| {
                let deadline = l.record.expires_at_ms.unwrap_or_else(|| {
                    let created = l
                        .record
                        .created_at
                        .parse()
                        .ok()
                        .map_or(0, |t: jiff::Timestamp| {
                            u64::try_from(t.as_millisecond()).unwrap_or(0)
                        });
                    created + l.runbook.approval.expires_after_ms
                });
                now > deadline
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.note(&id, "expired", "no approval in time");
            self.apply(&id, MEvent::Expire).map_err(api)?;
        }
        self.publish_gauges();
        Ok(())
    }

    pub(super) fn note(&mut self, id: &str, event: &str, detail: &str) {
        if let Some(l) = self.live.get_mut(id) {
            l.record.timeline.push(TimelineEntryV1 {
                at: now_str(),
                event: event.into(),
                detail: detail.into(),
            });
        }
    }

    fn world(&self) -> niledr_runbooks::WorldSnapshot {
        let level = self.shared.platform.observed_level();
        match self.shared.model.read() {
            Ok(m) => crate::world::snapshot(&self.config, &m, level),
            Err(p) => crate::world::snapshot(&self.config, &p.into_inner(), level),
        }
    }

    /// The journal record of a new proposal. A part that does not serialise is an error,
    /// never a `null` that would read back as "nothing".
    fn new_record(&self, p: NewRecord<'_>) -> Result<ExecutionRecordV1, serde_json::Error> {
        let NewRecord {
            id,
            who,
            runbook,
            reason,
            plan,
            pre,
            machine,
        } = p;
        Ok(ExecutionRecordV1 {
            v: 1,
            id: id.to_string(),
            runbook: runbook.name.clone(),
            reason: reason.to_string(),
            requester: who.name.clone(),
            created_at: now_str(),
            state: machine.state().name().into(),
            machine: serde_json::to_value(machine)?,
            plan_digest: plan.digest.clone(),
            plan: serde_json::to_value(plan)?,
            preconditions: crate::records::PreconditionsV1::to_value(pre),
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
            past_point_of_no_return: false,
            revision: 0,
            expires_at_ms: Some(
                self.clock
                    .now_ms()
                    .saturating_add(runbook.approval.expires_after_ms),
            ),
        })
    }
}
