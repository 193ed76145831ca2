//! One drill run, start to end: canary up, optional lag injection, the fault (T0, only under an
//! approval that covers the digest, checked again right before), detection,
//! the runbook's execution (standing or live approvals; manual steps the drill automates are
//! done through the host agent), abort on the RTO bound, measurement (RTO with phases, RPO per
//! store read back from the new primary), the fault's undo, the measured cleanup runbook, and
//! the durable report. Every phase change is committed before the run acts on it.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use niledr_drills::canary::{
    Canary, CanaryConfig, CanaryHandle, CanaryLog, PgCanary, Ports, RedisCanary,
};
use niledr_drills::measure::{self, PgSource, RedisSource};
use niledr_drills::{ApprovalMode, Drill, FaultKind, HostAction};
use niledr_probes::{Observation, ProbeSpec, Status};
use niledr_web::Command;
use niledr_web::types::{ConfirmRequest, ControlRequest, ExecutionView};

use super::report::{self, Observed};
use super::{DrillService, now_str, push_note};
use crate::engine::{EngineEvent, drill_principal};
use crate::event_loop::Event;
use crate::records::{DrillRunRecordV1, ExecutionRecordV1};

const POLL: Duration = Duration::from_millis(20);
/// How long the canary must write before the fault, so the run starts from a healthy path.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(30);
/// After the runbook ends, how long to wait for writes to flow again through the path.
const RECOVERY_WAIT: Duration = Duration::from_secs(60);
/// Before a cold-restore fault, how long to wait for the archive to take canary markers.
const ARCHIVE_WAIT: Duration = Duration::from_secs(60);

pub(super) async fn run(svc: Arc<DrillService>, rec: DrillRunRecordV1, drill: Drill) {
    let name = drill.name.clone();
    let id = rec.id.clone();
    svc.engine_event(EngineEvent::DrillActive {
        drill: Some(name.clone()),
    })
    .await;
    let mut r = Run {
        svc: svc.clone(),
        rec,
        drill,
        undo: Vec::new(),
        canary: None,
    };
    let outcome = r.go().await;
    if let Err(e) = &outcome {
        tracing::error!(run = %id, drill = %name, "drill run failed: {e:#}");
        r.rec.state = "failed".into();
        r.rec.error = Some(format!("{e:#}"));
        push_note(&mut r.rec, "failed", &format!("{e:#}"));
        if let Some(c) = r.canary.take() {
            c.stop().await;
        }
        r.undo_faults().await;
    }
    r.rec.phase = "done".into();
    r.rec.finished_at = Some(now_str());
    svc.save(&r.rec, Some("drill.finished"));
    svc.engine_event(EngineEvent::DrillActive { drill: None })
        .await;
    svc.release(&id);
    crate::metrics::drill_finished(&r.rec);
    svc.publish(
        &name,
        "running",
        r.rec.verdict.as_deref().unwrap_or(&r.rec.state),
        &format!("drill run {id} ended: {}", r.rec.state),
    );
}

struct Run {
    svc: Arc<DrillService>,
    rec: DrillRunRecordV1,
    drill: Drill,
    /// Faults injected (or lag detached) and not yet undone: (target, undo action).
    undo: Vec<(String, HostAction)>,
    canary: Option<CanaryHandle>,
}

impl DrillService {
    async fn engine_event(&self, ev: EngineEvent) {
        if self
            .engine_tx
            .send(Event::Engine(Box::new(ev)))
            .await
            .is_err()
        {
            tracing::warn!("event loop gone: drill event dropped");
        }
    }
}

impl Run {
    fn phase(&mut self, phase: &str, detail: &str) {
        self.rec.phase = phase.into();
        push_note(&mut self.rec, phase, detail);
        tracing::info!(run = %self.rec.id, drill = %self.drill.name, phase, "{detail}");
        self.svc.save(&self.rec, Some("drill.phase"));
    }

    /// The approval covering the drill's digest before `what` is injected, or an error that
    /// stops the run with nothing of it injected.
    fn authorise(&self, what: &str) -> Result<String> {
        self.svc.authorised(&self.drill, &self.rec).map_err(|why| {
            anyhow!(
                "no approval covers digest {} before {what} ({why}): nothing of it was injected",
                self.drill.digest
            )
        })
    }

    fn note(&mut self, event: &str, detail: &str) {
        push_note(&mut self.rec, event, detail);
        tracing::info!(run = %self.rec.id, drill = %self.drill.name, event, "{detail}");
        self.svc.save(&self.rec, None);
    }

    async fn act(&mut self, target: &str, action: HostAction, of: Option<&str>) -> Result<String> {
        let agent = self
            .svc
            .agent
            .clone()
            .ok_or_else(|| anyhow!("no host agent configured ([drills] agent)"))?;
        let done = agent.act(target, action.as_str(), of).await?;
        let detail = format!(
            "host agent: {action} {target}{}: {} ({} ms)",
            of.map(|o| format!(" of {o}")).unwrap_or_default(),
            done.detail,
            done.took.as_millis()
        );
        self.note("host_action", &detail);
        Ok(detail)
    }

    async fn go(&mut self) -> Result<()> {
        if let Some(agent) = self.svc.agent.clone() {
            agent.health().await?;
        }
        // The canary writes through the production path from before the fault to after recovery.
        self.phase(
            "canary",
            &format!(
                "starting the canary writer at {} Hz per store",
                self.svc.config.drills.canary_rate
            ),
        );
        let canary = Canary::start(self.canary_config()?)?;
        let stores = self.canary_stores();
        let warm = self.svc.config.drills.canary_rate as u64 / 2;
        for store in &stores {
            wait_for(WARMUP_TIMEOUT, || canary.acked(*store) >= warm)
                .await
                .with_context(|| {
                    format!("the canary could not write to {store:?} through the production path before the fault; nothing was injected")
                })?;
        }
        self.canary = Some(canary);
        if self.drill.scenario.fault == FaultKind::ColdRestore {
            self.wait_archived().await;
        }

        // Lag before the fault: the standby stops receiving WAL, so acknowledged commits
        // never reach it.
        let scenario = self.drill.scenario.clone();
        if let Some(ms) = scenario.lag_before_fault_ms {
            self.authorise("the lag before the fault")?;
            let standby = self
                .standby_of(&scenario.target)
                .ok_or_else(|| anyhow!("no standby of {} to detach", scenario.target))?;
            self.phase(
                "lag",
                &format!("detaching {standby}'s WAL receipt for {ms} ms before the fault"),
            );
            self.act(&standby, HostAction::DetachWal, None).await?;
            self.undo.push((standby, HostAction::AttachWal));
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let lag = (self.probe_lag(true), self.probe_lag(false));

        // T0, only under an approval that covers the digest now.
        let actions = scenario.fault_actions(&self.svc.catalog);
        let approval = self.authorise("the fault")?;
        self.phase(
            "fault",
            &format!(
                "injecting {} on {} ({approval})",
                scenario.fault, scenario.target
            ),
        );
        let t0 = Instant::now();
        let t0_wall = jiff::Timestamp::now();
        for (target, inject, undo) in actions {
            self.act(&target, inject, None).await?;
            self.undo.push((target, undo));
        }
        let bound = Duration::from_millis(self.drill.abort.rto_bound_ms(&self.drill.objectives));

        // Detection, as the orchestrator's own probes see it.
        let detection_ms = match self.watched() {
            None => None,
            Some(watch) => {
                self.phase(
                    "detection",
                    &format!("waiting for niledr to see {watch} down"),
                );
                let deadline = t0 + bound;
                let since = loop {
                    if let Some(since) = self.down_since(&watch) {
                        break Some(since);
                    }
                    if Instant::now() > deadline {
                        break None;
                    }
                    tokio::time::sleep(POLL).await;
                };
                match since {
                    Some(s) => {
                        let ms = u64::try_from(s.duration_since(t0_wall).as_millis()).unwrap_or(0);
                        self.note("detected", &format!("{watch} down {ms} ms after T0"));
                        Some(ms)
                    }
                    None => {
                        let why = format!(
                            "{watch} was not seen down within the abort bound of {} ms",
                            bound.as_millis()
                        );
                        return self.abort_before_execution(t0, t0_wall, lag, &why).await;
                    }
                }
            }
        };

        // Decision and execution.
        self.phase("decision", &format!("proposing {}", self.drill.runbook));
        let main = self.propose(&self.drill.runbook.clone()).await?;
        self.rec.execution = Some(main.id.clone());
        self.svc.save(&self.rec, None);
        self.phase(
            "execution",
            &format!("execution {} ({})", main.id, main.state),
        );
        let (exec, aborted) = self.drive(&main.id, Some((t0, bound))).await?;

        // Measurement: writes must flow again; then stop the canary and read back markers.
        self.phase(
            "measuring",
            &format!("execution {} ended {}", exec.id, exec.state),
        );
        if exec.state == "succeeded" {
            self.wait_writes_flow(&stores).await;
        }
        let log = match self.canary.take() {
            Some(c) => c.stop().await,
            None => bail!("canary lost"),
        };
        self.undo_faults().await;
        let measured = self.measure(&log, t0).await;
        let mut observed = Observed {
            t0_wall,
            detection_ms,
            lag_bytes: lag,
            execution: Some(exec.clone()),
            measurement: measured.as_ref().ok().cloned(),
            aborted,
            cleanup: None,
        };
        if let Err(e) = &measured {
            self.note("measure_failed", &format!("{e:#}"));
        }
        if observed.aborted.is_none() && exec.state != "succeeded" {
            // A rejected, expired, cancelled or failed runbook recovered nothing: whatever the
            // canary saw is not this drill's RTO.
            let why = format!(
                "the drill's execution {} ended {}: the runbook did not complete",
                exec.id, exec.state
            );
            self.note("abort", &why);
            observed.aborted = Some(why);
        }
        if observed.aborted.is_none()
            && let Some(max) = self.drill.abort.max_lost_writes
        {
            let lost: u64 = observed
                .measurement
                .iter()
                .flat_map(|m| [&m.postgres, &m.redis])
                .flatten()
                .filter_map(|s| s.rpo.as_ref())
                .map(|r| r.lost)
                .sum();
            if lost > max {
                let why = format!(
                    "{lost} acknowledged writes lost, past the abort bound of {max}: stopping and restoring the normal topology"
                );
                self.note("abort", &why);
                observed.aborted = Some(why);
            }
        }

        // Cleanup: the failback that puts the topology back, itself measured.
        if let Some(cleanup) = self.drill.cleanup.clone() {
            if exec.state == "succeeded" {
                self.phase("cleanup", &format!("proposing {}", cleanup.runbook));
                let started = Instant::now();
                let outcome = match self.propose(&cleanup.runbook).await {
                    Ok(v) => {
                        self.rec.cleanup_execution = Some(v.id.clone());
                        self.svc.save(&self.rec, None);
                        match self.drive(&v.id, None).await {
                            Ok((done, _)) => done.state,
                            Err(e) => format!("failed: {e:#}"),
                        }
                    }
                    Err(e) => format!("not started: {e:#}"),
                };
                observed.cleanup = Some(niledr_drills::report::CleanupRun {
                    runbook: cleanup.runbook.clone(),
                    duration_ms: Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(0)),
                    outcome: outcome.clone(),
                });
                self.note("cleanup_done", &format!("{}: {outcome}", cleanup.runbook));
            } else {
                self.note(
                    "cleanup_skipped",
                    &format!(
                        "{} not run: the drill's execution ended {}, so the topology needs an operator (see execution {})",
                        cleanup.runbook, exec.state, exec.id
                    ),
                );
            }
        }
        let rpt = report::build(&self.svc, &self.drill, &observed, &log);
        self.finish(rpt);
        Ok(())
    }

    fn finish(&mut self, rpt: niledr_drills::DrillReport) {
        self.rec.state = if rpt.aborted.is_some() {
            "aborted".into()
        } else {
            "finished".into()
        };
        self.rec.verdict = Some(rpt.overall.name().to_string());
        self.rec.report = serde_json::to_value(&rpt).ok();
        let summary = format!(
            "verdict {}; RTO {}",
            rpt.overall.as_str(),
            rpt.rto
                .as_ref()
                .map_or("not observed".into(), |r| niledr_drills::report::fmt_ms(
                    r.total_ms
                ))
        );
        self.note("report", &summary);
    }

    /// The fault was never seen: stop, undo, report as aborted (nothing was executed).
    async fn abort_before_execution(
        &mut self,
        t0: Instant,
        t0_wall: jiff::Timestamp,
        lag: (Option<u64>, Option<u64>),
        why: &str,
    ) -> Result<()> {
        self.note("abort", why);
        let log = match self.canary.take() {
            Some(c) => c.stop().await,
            None => bail!("canary lost"),
        };
        self.undo_faults().await;
        let measurement = self.measure(&log, t0).await.ok();
        let observed = Observed {
            t0_wall,
            detection_ms: None,
            lag_bytes: lag,
            execution: None,
            measurement,
            aborted: Some(why.to_string()),
            cleanup: None,
        };
        let rpt = report::build(&self.svc, &self.drill, &observed, &log);
        self.finish(rpt);
        Ok(())
    }

    /// Undo every injected fault, newest first (best effort: failures are noted).
    async fn undo_faults(&mut self) {
        while let Some((target, action)) = self.undo.pop() {
            if let Err(e) = self.act(&target, action, None).await {
                self.note(
                    "undo_failed",
                    &format!("{action} {target}: {e:#}; an operator must restore it"),
                );
            }
        }
    }

    async fn propose(&mut self, runbook: &str) -> Result<ExecutionView> {
        let standing = match self.drill.approval {
            ApprovalMode::Standing => self.svc.standing_for_run(&self.drill),
            ApprovalMode::Live => Vec::new(),
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.svc
            .engine_event(EngineEvent::DrillPropose {
                drill: self.drill.name.clone(),
                runbook: runbook.to_string(),
                reason: format!(
                    "drill {} (run {}): {}",
                    self.drill.name, self.rec.id, self.drill.description
                ),
                standing,
                reply,
            })
            .await;
        let view = rx
            .await
            .map_err(|_| anyhow!("niledr is shutting down"))?
            .map_err(|e| anyhow!("proposing {runbook}: {e:?}"))?;
        let detail = match view.state.as_str() {
            "awaiting_approval" => format!(
                "execution {} of {runbook} awaits approval by people (live approval): POST /api/v1/executions/{}/approvals",
                view.id, view.id
            ),
            s => format!("execution {} of {runbook} is {s}", view.id),
        };
        self.note("proposed", &detail);
        Ok(view)
    }

    async fn command(&self, command: Command) -> Result<ExecutionView> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.svc
            .engine_event(EngineEvent::Command {
                who: drill_principal(&self.drill.name),
                command,
                reply,
            })
            .await;
        rx.await
            .map_err(|_| anyhow!("niledr is shutting down"))?
            .map_err(|e| anyhow!("{e:?}"))
    }

    /// Follow an execution to its end: perform the manual steps the drill automates, and
    /// cancel (roll back) when `abort` = (T0, bound) passes.
    async fn drive(
        &mut self,
        id: &str,
        abort: Option<(Instant, Duration)>,
    ) -> Result<(ExecutionRecordV1, Option<String>)> {
        let mut handled: BTreeSet<String> = BTreeSet::new();
        let mut aborted: Option<String> = None;
        loop {
            let exec = self
                .svc
                .store
                .execution(id)?
                .ok_or_else(|| anyhow!("execution {id} vanished"))?;
            if super::is_terminal(&exec.state) {
                return Ok((exec, aborted));
            }
            if let Some(step) = exec
                .steps
                .iter()
                .find(|s| s.state == "waiting_confirmation")
                .map(|s| s.id.clone())
                && handled.insert(step.clone())
            {
                self.manual_step(id, &step).await?;
            }
            if let Some((t0, bound)) = abort
                && aborted.is_none()
                && t0.elapsed() > bound
            {
                let why = format!(
                    "{} ms since T0 passed the abort bound of {} ms ({} × the RTO objective): cancelling execution {id}, which rolls back",
                    t0.elapsed().as_millis(),
                    bound.as_millis(),
                    self.drill.abort.rto_factor
                );
                self.note("abort", &why);
                if let Err(e) = self
                    .command(Command::Cancel {
                        id: id.to_string(),
                        request: ControlRequest {
                            comment: format!("drill abort: {why}"),
                        },
                    })
                    .await
                {
                    self.note("abort_failed", &format!("{e:#}"));
                }
                aborted = Some(why);
            }
            if self.svc.shutdown.is_cancelled() {
                bail!("niledr is shutting down during the drill");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn manual_step(&mut self, id: &str, step: &str) -> Result<()> {
        let Some(a) = self.drill.automation_for(step).cloned() else {
            self.note(
                "waiting_for_person",
                &format!("step {step} of execution {id} waits for a person (the drill does not automate it)"),
            );
            return Ok(());
        };
        let detail = match a.action {
            HostAction::Confirm => a.note.clone().unwrap_or_else(|| "done by the drill".into()),
            action => {
                let target = a
                    .target
                    .clone()
                    .ok_or_else(|| anyhow!("automation of {step} has no target"))?;
                match self.act(&target, action, a.of.as_deref()).await {
                    Ok(d) => d,
                    Err(e) => {
                        let why = format!("automated step {step} failed: {e:#}");
                        let _ = self
                            .command(Command::Cancel {
                                id: id.to_string(),
                                request: ControlRequest {
                                    comment: format!("drill: {why}"),
                                },
                            })
                            .await;
                        bail!(why);
                    }
                }
            }
        };
        self.command(Command::Confirm {
            id: id.to_string(),
            request: ConfirmRequest {
                step: step.to_string(),
                comment: format!("drill {}: {detail}", self.drill.name),
            },
        })
        .await
        .with_context(|| format!("confirming {step}"))?;
        Ok(())
    }

    /// Before a cold-restore fault: wait until the cold site's WAL archive holds a segment
    /// written after the canary started, so the restore can hold markers at all (the archive
    /// only takes completed segments; `archive_timeout` bounds how long that takes).
    async fn wait_archived(&mut self) {
        let Some(archive) = self
            .svc
            .config
            .sites
            .get(&self.drill.scenario.target)
            .and_then(|s| s.wal_archive.clone())
        else {
            return;
        };
        // The segment must be newer than the canary's first acknowledged PostgreSQL write (on a
        // loaded machine the canary may take a while to commit its first marker).
        if let Some(canary) = self.canary.as_ref() {
            let _ = wait_for(ARCHIVE_WAIT, || {
                canary.acked(niledr_drills::Store::Postgres) > 0
            })
            .await;
        }
        let since = std::time::SystemTime::now();
        self.note(
            "archive",
            &format!(
                "waiting (at most {} s) for {} to take a WAL segment written while the canary runs",
                ARCHIVE_WAIT.as_secs(),
                archive.display()
            ),
        );
        // Two WAL segments archived from now on: the archiver copies a segment some time after
        // it completed, so the first one may predate the canary's first write; the second was
        // completed after `since`, hence after that write, and holds WAL up to it at least.
        let segments_since = || -> usize {
            std::fs::read_dir(&archive).map_or(0, |dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit())
                    })
                    .filter_map(|e| e.metadata().ok()?.modified().ok())
                    .filter(|t| *t > since)
                    .count()
            })
        };
        let ok = wait_for(ARCHIVE_WAIT, || segments_since() >= 2).await;
        let detail = match ok {
            Ok(()) => "the archive took a segment with canary markers".to_string(),
            Err(_) => {
                "no new segment reached the archive: the restore may hold no markers".to_string()
            }
        };
        self.note("archive", &detail);
    }

    /// After the runbook: wait until each store has taken half a second of writes again.
    async fn wait_writes_flow(&mut self, stores: &[niledr_drills::Store]) {
        let Some(canary) = self.canary.as_ref() else {
            return;
        };
        let want = u64::from(self.svc.config.drills.canary_rate / 2);
        let start: Vec<u64> = stores.iter().map(|s| canary.acked(*s)).collect();
        let ok = wait_for(RECOVERY_WAIT, || {
            stores
                .iter()
                .zip(&start)
                .all(|(s, n)| canary.acked(*s) >= n + want)
        })
        .await;
        if ok.is_err() {
            self.note(
                "no_recovery",
                &format!(
                    "writes did not flow again through the production path within {} s",
                    RECOVERY_WAIT.as_secs()
                ),
            );
        }
    }

    async fn measure(&self, log: &CanaryLog, t0: Instant) -> Result<measure::Measurement> {
        let pg = match &self.svc.config.drills.canary_postgres {
            None => None,
            Some(c) => {
                let (ip, port, user, password, database) = self.pg_via(&c.name, &c.via).await?;
                Some(PgSource {
                    host: ip.to_string(),
                    port,
                    user,
                    password,
                    database,
                    table: self.canary_table(),
                })
            }
        };
        let redis = match &self.svc.config.drills.canary_redis {
            None => None,
            Some(c) => {
                let ip = self.resolve(&c.name).await?;
                let (ports, password) = self.redis_ports(&c.via);
                Some(RedisSource {
                    address: SocketAddr::from((ip, ports.at(ip))),
                    password,
                    key_prefix: self.canary_prefix(),
                })
            }
        };
        measure::measure(log, t0, pg.as_ref(), redis.as_ref()).await
    }

    async fn resolve(&self, name: &str) -> Result<Ipv4Addr> {
        let dns = self
            .svc
            .config
            .dns
            .as_ref()
            .ok_or_else(|| anyhow!("no [dns] section"))?;
        let server = *dns
            .servers
            .first()
            .ok_or_else(|| anyhow!("no DNS servers"))?;
        let r = crate::actions::dns::query_a(server, name).await?;
        r.addrs
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{name} has no A record at {server}"))
    }

    async fn pg_via(
        &self,
        name: &str,
        via: &str,
    ) -> Result<(Ipv4Addr, u16, String, String, String)> {
        let ip = self.resolve(name).await?;
        let (ports, user, password, database) = self.pg_ports(via)?;
        Ok((ip, ports.at(ip), user, password, database))
    }

    fn pg_ports(&self, via: &str) -> Result<(Ports, String, String, String)> {
        let cfg = &self.svc.config;
        let ProbeSpec::Postgres(p) = &cfg
            .services
            .get(via)
            .ok_or_else(|| anyhow!("no service {via}"))?
            .spec
        else {
            bail!("{via} is not a postgres service");
        };
        let mut ports = Ports::fixed(p.endpoint.address.port());
        for s in cfg.services.values() {
            if let ProbeSpec::Postgres(o) = &s.spec
                && let IpAddr::V4(ip) = o.endpoint.address.ip()
            {
                ports.by_address.insert(ip, o.endpoint.address.port());
            }
        }
        Ok((
            ports,
            p.endpoint.user.clone(),
            p.endpoint.password.clone().unwrap_or_default(),
            p.endpoint.database.clone(),
        ))
    }

    fn redis_ports(&self, via: &str) -> (Ports, Option<String>) {
        let cfg = &self.svc.config;
        let (port, password) = match cfg.services.get(via).map(|s| &s.spec) {
            Some(ProbeSpec::Redis(r)) => (r.endpoint.address.port(), r.endpoint.password.clone()),
            _ => (6379, None),
        };
        let mut ports = Ports::fixed(port);
        for s in cfg.services.values() {
            if let ProbeSpec::Redis(o) = &s.spec
                && let IpAddr::V4(ip) = o.endpoint.address.ip()
            {
                ports.by_address.insert(ip, o.endpoint.address.port());
            }
        }
        (ports, password)
    }

    /// Each run writes its own markers, so earlier runs' markers never count as survivors.
    fn canary_table(&self) -> String {
        format!("niledr_canary_{}", self.rec.id.replace('-', "_"))
    }

    fn canary_prefix(&self) -> String {
        format!("niledr:canary:{}:", self.rec.id)
    }

    fn canary_stores(&self) -> Vec<niledr_drills::Store> {
        let d = &self.svc.config.drills;
        let mut v = Vec::new();
        if d.canary_postgres.is_some() {
            v.push(niledr_drills::Store::Postgres);
        }
        if d.canary_redis.is_some() {
            v.push(niledr_drills::Store::Redis);
        }
        v
    }

    fn canary_config(&self) -> Result<CanaryConfig> {
        let cfg = &self.svc.config;
        let dns = cfg
            .dns
            .as_ref()
            .ok_or_else(|| anyhow!("the canary needs a [dns] section"))?;
        let mut c = CanaryConfig::new(dns.servers.clone());
        c.interval = Duration::from_micros(1_000_000 / u64::from(cfg.drills.canary_rate.max(1)));
        if let Some(t) = &cfg.drills.canary_postgres {
            let (ports, user, password, database) = self.pg_ports(&t.via)?;
            c.postgres = Some(PgCanary {
                name: t.name.clone(),
                ports,
                user,
                password,
                database,
                table: self.canary_table(),
            });
        }
        if let Some(t) = &cfg.drills.canary_redis {
            let (ports, password) = self.redis_ports(&t.via);
            c.redis = Some(RedisCanary {
                name: t.name.clone(),
                ports,
                password,
                key_prefix: self.canary_prefix(),
            });
        }
        Ok(c)
    }

    /// The service that replicates from `primary` (configured `upstream`).
    fn standby_of(&self, primary: &str) -> Option<String> {
        self.svc
            .config
            .services
            .values()
            .find(|s| s.upstream.as_deref() == Some(primary))
            .map(|s| s.id.clone())
    }

    /// Replication lag in bytes at T0 as the probes last saw it: (postgres, redis).
    fn probe_lag(&self, postgres: bool) -> Option<u64> {
        let model = self.svc.shared.model.read().ok()?;
        self.svc
            .config
            .services
            .values()
            .filter(|s| s.upstream.is_some())
            .filter_map(|s| model.services.get(&s.id))
            .find_map(|h| match h.last.as_ref().map(|r| &r.observation) {
                Some(Observation::Postgres(p)) if postgres => p.lag_bytes,
                Some(Observation::Redis(r)) if !postgres => r.offset_lag,
                _ => None,
            })
    }

    /// What detection waits for: the faulted service, or the site for `site_down`.
    fn watched(&self) -> Option<String> {
        match self.drill.scenario.fault {
            FaultKind::KillPrimaryPostgres
            | FaultKind::HangPrimaryPostgres
            | FaultKind::StopRedis
            | FaultKind::SiteDown => Some(self.drill.scenario.target.clone()),
            FaultKind::PlannedSwitchover | FaultKind::ColdRestore => None,
        }
    }

    /// When the service (or site) went down, if it is down now.
    fn down_since(&self, id: &str) -> Option<jiff::Timestamp> {
        let model = self.svc.shared.model.read().ok()?;
        if let Some(s) = model.services.get(id) {
            return (s.status == Status::Down).then_some(s.since);
        }
        model
            .sites
            .get(id)
            .filter(|s| s.status == Status::Down)
            .map(|s| s.since)
    }
}

async fn wait_for(within: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    crate::util::poll_until(deadline, POLL, || std::future::ready(Ok::<_, ()>(ok())))
        .await
        .map_err(|_| anyhow::anyhow!("not within {} s", within.as_secs()))
}
