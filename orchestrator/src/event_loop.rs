//! The one event loop: owns the health model's writes and the store's writes. Every trigger of
//! the daemon arrives as an `Event`; status changes are committed (fsync) to the store and the
//! audit chain before they are published to the API and event stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use niledr_probes::health::Scope;
use niledr_probes::{Observation, ProbeResult, StatusChange};
use niledr_web::types::StatusEventView;
use tokio::sync::{broadcast, mpsc};

use crate::metrics;
use crate::records::{ProbeRecordV1, StatusChangeV1};
use crate::store::{AuditEvent, Store};

/// Everything that can make the daemon do something.
#[derive(Debug)]
pub enum Event {
    /// A probe finished (ok or failed).
    Probe(Box<ProbeResult>),
    /// Time to write buffered probe history.
    Flush,
    /// Executions: API and drill commands (for whichever engine runs now).
    Engine(Box<crate::engine::EngineEvent>),
    /// Step completions, retries and timers of the engine started as `epoch` (dropped when
    /// that engine is gone: a deposed leader's late results never reach a new engine).
    EngineTask(u64, Box<crate::engine::EngineEvent>),
    /// Cluster mode: this instance took the leader key (`Some`) or lost it (`None`).
    Leadership(Option<crate::cluster::LeaderInfo>),
    /// The cold sites' backup directories as just read (site, scan).
    Backups(Vec<(String, crate::topology::backups::Scan)>),
    /// Stop: flush, audit the stop, exit.
    Shutdown,
}

pub use crate::shared::Shared;

/// How long shutdown waits for steps in flight.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The way back into this loop for the engine started as `epoch`.
pub fn engine_tx(tx: mpsc::Sender<Event>, epoch: u64) -> crate::engine::EngineTx {
    crate::engine::EngineTx::new(move |ev| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(Event::EngineTask(epoch, Box::new(ev))).await;
        })
    })
}

/// Builds an engine (with its way back into the loop); called once single-node, and each time
/// this instance becomes the leader in cluster mode.
pub type EngineFactory = Box<dyn FnMut(crate::engine::EngineTx) -> crate::engine::Engine + Send>;

pub struct EventLoop {
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    pub events: broadcast::Sender<StatusEventView>,
    pub history_limits: HashMap<String, u32>,
    pending: Vec<(String, ProbeRecordV1)>,
    engine: Option<crate::engine::Engine>,
    factory: Option<EngineFactory>,
    /// Which engine instance is current (task events of older ones are dropped).
    epoch: u64,
    tx: mpsc::Sender<Event>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The live topology and cold-site backups (`crate::topology`).
    topology: Option<crate::topology::Tracker>,
}

impl EventLoop {
    pub fn new(
        store: Arc<Store>,
        shared: Arc<Shared>,
        events: broadcast::Sender<StatusEventView>,
        history_limits: HashMap<String, u32>,
        tx: mpsc::Sender<Event>,
    ) -> Self {
        EventLoop {
            store,
            shared,
            events,
            history_limits,
            pending: Vec::new(),
            engine: None,
            factory: None,
            epoch: 0,
            tx,
            cluster: None,
            topology: None,
        }
    }

    /// Track the live topology; its persisted state is published at once, before the API
    /// answers anything.
    pub fn with_topology(mut self, mut tracker: crate::topology::Tracker) -> Self {
        tracker.start(&self.store, &self.shared);
        self.topology = Some(tracker);
        self
    }

    /// Executions run: from the start single-node, while leading in cluster mode.
    pub fn with_engine(mut self, factory: EngineFactory) -> Self {
        self.factory = Some(factory);
        self
    }

    pub fn with_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Build a new engine (a new epoch) and take back the journal's executions.
    fn start_engine(&mut self) -> anyhow::Result<()> {
        let Some(factory) = self.factory.as_mut() else {
            return Ok(());
        };
        self.epoch += 1;
        let mut engine = factory(engine_tx(self.tx.clone(), self.epoch));
        let r = engine.resume();
        self.engine = Some(engine);
        self.engine_result(r)
    }

    /// Drop the engine: nothing it started reaches the next one (its tasks' events carry its
    /// epoch). Steps already running finish on their own, but their outcomes cannot be
    /// journaled by a deposed leader and the next leader's resume treats them as in doubt.
    fn stop_engine(&mut self, why: &str) {
        if let Some(engine) = self.engine.take() {
            engine.clear_gauges();
            self.epoch += 1;
            tracing::error!("executions stopped on this instance: {why}");
        }
    }

    /// An engine error: fatal single-node (the local store failed); in cluster mode this
    /// instance cannot journal, so it stops acting and gives up the leadership.
    fn engine_result(&mut self, r: anyhow::Result<()>) -> anyhow::Result<()> {
        let Err(e) = r else { return Ok(()) };
        let Some(cluster) = &self.cluster else {
            return Err(e);
        };
        cluster
            .leadership
            .deposed(&format!("journal write failed: {e:#}"));
        self.stop_engine(&format!("journal write failed: {e:#}"));
        Ok(())
    }

    fn on_leadership(&mut self, info: Option<crate::cluster::LeaderInfo>) -> anyhow::Result<()> {
        match info {
            Some(info) => {
                let audit = self.store.append_audit(vec![AuditEvent {
                    actor: "niledr",
                    action: "cluster.leader_elected",
                    detail: serde_json::json!({ "name": info.name, "site": info.site, "token": info.token }),
                }]);
                if let Err(e) = audit {
                    tracing::warn!("auditing the election failed: {e:#}");
                }
                self.stop_engine("a new term began");
                self.start_engine()
            }
            None => {
                self.stop_engine("this instance lost the leadership");
                Ok(())
            }
        }
    }

    /// Run until `Shutdown` or until every sender is gone. Blocking: runs on its own thread so
    /// fsyncs never stall the async runtime.
    pub fn run(mut self, mut rx: mpsc::Receiver<Event>) -> anyhow::Result<()> {
        if self.cluster.is_none() {
            self.start_engine()?;
        }
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                Event::Probe(mut r) => {
                    if let Some(t) = &self.topology {
                        t.rejudge(&self.shared, &mut r);
                    }
                    let writable_primary = r.ok
                        && matches!(&r.observation, Observation::Postgres(pg) if !pg.in_recovery);
                    let id = r.target.clone();
                    self.on_probe(*r)?;
                    // A fenced old primary answering as a primary is fenced again now, not
                    // at the next tick.
                    if let (true, Some(engine)) = (writable_primary, self.engine.as_mut()) {
                        engine.primary_seen(&id);
                    }
                }
                Event::Flush => {
                    self.flush()?;
                    if let Some(t) = self.topology.as_mut() {
                        t.tick(&self.store, &self.shared);
                    }
                    if let Some(engine) = self.engine.as_mut() {
                        let r = engine.tick();
                        self.engine_result(r)?;
                    }
                }
                Event::Engine(ev) => match self.engine.as_mut() {
                    Some(engine) => {
                        let r = engine.handle(*ev);
                        self.engine_result(r)?;
                    }
                    None => self.no_engine(*ev),
                },
                Event::EngineTask(epoch, ev) => match self.engine.as_mut() {
                    Some(engine) if epoch == self.epoch => {
                        let r = engine.handle(*ev);
                        self.engine_result(r)?;
                    }
                    _ => tracing::warn!(epoch, "dropped an event of a stopped engine: {ev:?}"),
                },
                Event::Leadership(info) => self.on_leadership(info)?,
                Event::Backups(scans) => self.on_backups(scans)?,
                Event::Shutdown => {
                    self.drain(&mut rx)?;
                    break;
                }
            }
        }
        self.flush()?;
        let stopped = self.store.append_audit(vec![AuditEvent {
            actor: "niledr",
            action: "daemon.stopped",
            detail: serde_json::json!({ "pid": std::process::id() }),
        }]);
        match stopped {
            Err(e) if self.cluster.is_some() => {
                tracing::warn!("auditing the stop in etcd failed: {e:#}");
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// A command with no engine here: say why.
    fn no_engine(&self, ev: crate::engine::EngineEvent) {
        let crate::engine::EngineEvent::Command { reply, .. } = ev else {
            return;
        };
        let why = match (&self.cluster, &self.factory) {
            (_, None) => "no runbooks are configured ([runbooks] dirs)".to_string(),
            (Some(c), Some(_)) => match c.view().leader {
                Some(l) => format!(
                    "this instance does not lead; {} at {} does",
                    l.name, l.advertise
                ),
                None => "no instance leads the cluster right now".to_string(),
            },
            (None, Some(_)) => "executions are not running".to_string(),
        };
        let _ = reply.send(Err(niledr_web::ApiError::Unavailable(why)));
    }

    /// Shutdown: no new step starts; steps in flight get up to `DRAIN` to finish and journal
    /// their outcome; what is still running then is journaled as in doubt.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Event>) -> anyhow::Result<()> {
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        engine.begin_stop();
        let deadline = std::time::Instant::now() + DRAIN;
        while engine.in_flight() > 0 && std::time::Instant::now() < deadline {
            match rx.try_recv() {
                Ok(Event::Engine(ev)) => engine.handle(*ev)?,
                Ok(Event::EngineTask(epoch, ev)) if epoch == self.epoch => engine.handle(*ev)?,
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        engine.journal_unfinished();
        Ok(())
    }

    fn on_probe(&mut self, r: ProbeResult) -> anyhow::Result<()> {
        metrics::record_probe(&r);
        let id = r.target.clone();
        self.pending.push((r.target.clone(), probe_record(&r)));
        let mut model = self
            .shared
            .model
            .write()
            .map_err(|_| anyhow::anyhow!("health model lock poisoned"))?;
        let changes = model.apply(r);
        if !self.shared.ready.load(Ordering::Relaxed)
            && model.services.values().all(|s| s.last.is_some())
        {
            self.shared.ready.store(true, Ordering::Relaxed);
            tracing::info!("every service has reported: ready");
        }
        if let Some(svc) = model.services.get(&id) {
            metrics::record_status(&id, svc.status);
        }
        if changes.is_empty() {
            return Ok(());
        }
        // Journal before effect: the change is committed while readers still wait on the
        // lock, so the API never shows a status the store does not have.
        let written = self
            .store
            .record_status_changes(changes.iter().map(status_record).collect())?;
        drop(model);
        for c in written {
            tracing::info!(scope = %c.scope, id = %c.id, from = %c.from, to = %c.to, "status changed: {}", c.reason);
            metrics::status_changed(&c);
            let _ = self.events.send(event_view(&c));
        }
        Ok(())
    }

    /// Cold-site backups judged: each site's status follows them, committed like any change.
    fn on_backups(
        &mut self,
        scans: Vec<(String, crate::topology::backups::Scan)>,
    ) -> anyhow::Result<()> {
        let Some(t) = self.topology.as_mut() else {
            return Ok(());
        };
        let evidence = t.backups(&self.store, &self.shared, scans);
        let mut model = self
            .shared
            .model
            .write()
            .map_err(|_| anyhow::anyhow!("health model lock poisoned"))?;
        let at = jiff::Timestamp::now();
        let changes: Vec<StatusChange> = evidence
            .into_iter()
            .filter_map(|(site, e)| model.set_evidence(&site, Some(e), at))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let written = self
            .store
            .record_status_changes(changes.iter().map(status_record).collect())?;
        drop(model);
        for c in written {
            tracing::info!(scope = %c.scope, id = %c.id, from = %c.from, to = %c.to, "status changed: {}", c.reason);
            let _ = self.events.send(event_view(&c));
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut self.pending);
        self.store.append_probes(batch, &self.history_limits)
    }
}

fn probe_record(r: &ProbeResult) -> ProbeRecordV1 {
    let lag = match &r.observation {
        Observation::Postgres(pg) => pg.lag_bytes,
        Observation::Redis(rd) => rd.offset_lag,
        _ => None,
    };
    ProbeRecordV1 {
        v: 1,
        at: r.started_at.to_string(),
        ok: r.ok,
        latency_ms: r.latency.as_secs_f64() * 1000.0,
        summary: r.summary(),
        lag,
    }
}

fn status_record(c: &StatusChange) -> StatusChangeV1 {
    let (scope, id, site) = match &c.scope {
        Scope::Service { id, site } => ("service", id.clone(), site.clone()),
        Scope::Site { id } => ("site", id.clone(), None),
    };
    StatusChangeV1 {
        v: 1,
        seq: 0,
        at: c.at.to_string(),
        scope: scope.into(),
        id,
        site,
        from: c.from.to_string(),
        to: c.to.to_string(),
        reason: c.reason.clone(),
    }
}

pub fn event_view(c: &StatusChangeV1) -> StatusEventView {
    StatusEventView {
        seq: c.seq,
        at: c.at.clone(),
        scope: c.scope.clone(),
        id: c.id.clone(),
        site: c.site.clone(),
        from: c.from.clone(),
        to: c.to.clone(),
        reason: c.reason.clone(),
    }
}
