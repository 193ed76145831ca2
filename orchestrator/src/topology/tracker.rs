//! The event loop's side of the live topology: re-reads the journal when it changed, derives
//! the topology from it and the model on every flush tick, publishes and persists a change
//! (store meta `live_topology`, with a `topology.changed` audit entry), re-judges DNS probe
//! results against it, and judges the cold sites' backups. In cluster mode only the acting
//! instance derives and persists; the others adopt what it persisted, so every member shows
//! the same topology.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use niledr_probes::{HealthModel, Observation, ProbeResult, Status};
use niledr_runbooks::Runbook;

use super::backups::{self, Freshness, Objectives, RestoreTest, Scan};
use super::derive::{self, Intent, Layout, LiveTopology, Observed};
use crate::config::{Config, Kind};
use crate::shared::Shared;
use crate::store::{AuditEvent, Store};

/// Meta key of the persisted live topology.
pub const KEY: &str = "live_topology";
/// How often a member that does not act re-reads what the acting one persisted.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);
/// How often the last restore drill is looked up when this handle wrote no drill run.
const RESTORE_EVERY: Duration = Duration::from_secs(30);

pub struct Tracker {
    layout: Layout,
    runbooks: BTreeMap<String, Runbook>,
    /// Site → the drills that restore it (an `[[automate]]` `restore` step or a
    /// `cold_restore` fault targeting it).
    restore_drills: BTreeMap<String, Vec<String>>,
    objectives: BTreeMap<String, Objectives>,
    intent: Intent,
    /// The store's write counter when the journal was last folded.
    journal_at: Option<u64>,
    restore: BTreeMap<String, RestoreTest>,
    restore_at: Option<(u64, Instant)>,
    persisted: Option<LiveTopology>,
    followed_at: Option<Instant>,
    acting: bool,
}

pub fn layout(config: &Config) -> Layout {
    let mut l = Layout::default();
    for s in config.sites.values() {
        l.sites
            .insert(s.id.clone(), (s.role.as_str().to_string(), s.address));
    }
    for svc in config.services.values() {
        let ip = |a: std::net::SocketAddr| match a.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        };
        match (&svc.kind, &svc.spec) {
            (Kind::Postgres, niledr_probes::ProbeSpec::Postgres(p)) => {
                if let Some(a) = ip(p.endpoint.address) {
                    l.postgres.insert(svc.id.clone(), (svc.site.clone(), a));
                }
            }
            (Kind::Redis, niledr_probes::ProbeSpec::Redis(r)) => {
                if let Some(a) = ip(r.endpoint.address) {
                    l.redis.insert(svc.id.clone(), (svc.site.clone(), a));
                }
            }
            (Kind::Dns, niledr_probes::ProbeSpec::Dns(d)) => {
                let mut expect = d.expect.clone();
                expect.sort();
                expect.dedup();
                l.dns.insert(d.name.clone(), (svc.id.clone(), expect));
            }
            _ => {}
        }
    }
    l
}

/// Which drills restore which site, from the loaded drill files.
pub fn restore_drills<'a>(
    drills: impl IntoIterator<Item = &'a niledr_drills::Drill>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in drills {
        let mut sites: Vec<String> = d
            .automate
            .iter()
            .filter(|a| a.action == niledr_drills::schema::HostAction::Restore)
            .filter_map(|a| a.target.clone())
            .collect();
        if d.scenario.fault == niledr_drills::schema::FaultKind::ColdRestore {
            sites.push(d.scenario.target.clone());
        }
        sites.sort();
        sites.dedup();
        for s in sites {
            out.entry(s).or_default().push(d.name.clone());
        }
    }
    out
}

impl Tracker {
    pub fn new(
        config: &Config,
        runbooks: BTreeMap<String, Runbook>,
        restore_drills: BTreeMap<String, Vec<String>>,
    ) -> Self {
        Tracker {
            layout: layout(config),
            runbooks,
            restore_drills,
            objectives: config
                .sites
                .values()
                .map(|s| (s.id.clone(), s.backups))
                .collect(),
            intent: Intent::default(),
            journal_at: None,
            restore: BTreeMap::new(),
            restore_at: None,
            persisted: None,
            followed_at: None,
            acting: false,
        }
    }

    /// At start: the persisted topology and maintenance state, then the journal's intent.
    pub fn start(&mut self, store: &Store, shared: &Shared) {
        self.persisted = read_persisted(store);
        match super::maintenance::load(store) {
            Ok(p) => shared.topology.set_paused(p),
            Err(e) => tracing::error!("{e:#}; triggers run until it is set again"),
        }
        self.refresh_intent(store);
        let live = match shared.model.read() {
            Ok(m) => self.derive(&m),
            Err(_) => return,
        };
        self.publish(shared, live);
    }

    fn refresh_intent(&mut self, store: &Store) {
        let at = store.writes();
        if self.journal_at == Some(at) {
            return;
        }
        match store.executions() {
            Ok(all) => {
                self.intent = derive::intent(&all, |n| self.runbooks.get(n), &self.layout);
                self.journal_at = Some(at);
            }
            Err(e) => tracing::warn!("reading the journal for the live topology failed: {e:#}"),
        }
    }

    fn derive(&self, model: &HealthModel) -> LiveTopology {
        derive::derive(
            &self.layout,
            &self.intent,
            &observed(model),
            self.persisted.as_ref(),
        )
    }

    fn publish(&self, shared: &Shared, live: LiveTopology) {
        super::metrics::roles(&live);
        if let Ok(mut g) = shared.topology.live.write() {
            *g = live;
        }
    }

    /// On every flush tick.
    pub fn tick(&mut self, store: &Store, shared: &Shared) {
        // Gauges set again each tick: the recorder may be installed after the first ones.
        super::metrics::paused(shared.topology.triggers_paused());
        super::metrics::roles(&shared.topology.live());
        let acts = shared.acts();
        if !acts {
            self.acting = false;
            self.follow(store, shared);
            return;
        }
        if !self.acting {
            // Just took over (or single-node start): the shared state may have moved.
            self.acting = true;
            self.persisted = read_persisted(store);
            if let Ok(p) = super::maintenance::load(store) {
                shared.topology.set_paused(p);
            }
        }
        self.refresh_intent(store);
        let live = match shared.model.read() {
            Ok(m) => self.derive(&m),
            Err(_) => return,
        };
        if shared.topology.live() != live {
            self.publish(shared, live.clone());
        }
        // Only what is decided is persisted; answers are probe data, seen again each probe.
        if self
            .persisted
            .as_ref()
            .is_none_or(|p| p.decided_differs(&live))
        {
            self.persist(store, &live);
        }
    }

    /// A change of roles or expectations: persisted with its audit entry.
    fn persist(&mut self, store: &Store, live: &LiveTopology) {
        let Ok(value) = serde_json::to_string(live) else {
            return;
        };
        let detail = serde_json::json!({
            "roles": live.roles,
            "postgres_primary": live.postgres_primary,
            "redis_master": live.redis_master,
            "dns_expect": live.dns.iter().map(|(n, d)| (n.clone(), d.expect_site.clone())).collect::<BTreeMap<_, _>>(),
        });
        tracing::info!("live topology: {detail}");
        let audit = vec![AuditEvent {
            actor: "niledr",
            action: "topology.changed",
            detail,
        }];
        match store.set_meta_audited(KEY, &value, audit) {
            Ok(()) => self.persisted = Some(live.clone()),
            Err(e) => tracing::warn!("persisting the live topology failed: {e:#}"),
        }
    }

    /// A member that does not act shows what the acting one decided (re-read every
    /// `FOLLOW_EVERY`), with the DNS answers its own probes see.
    fn follow(&mut self, store: &Store, shared: &Shared) {
        if self.followed_at.is_none_or(|t| t.elapsed() >= FOLLOW_EVERY) {
            self.followed_at = Some(Instant::now());
            if let Some(p) = read_persisted(store) {
                self.persisted = Some(p);
            }
            if let Ok(p) = super::maintenance::load(store) {
                shared.topology.set_paused(p);
            }
        }
        let Some(decided) = self.persisted.clone() else {
            return;
        };
        let live = match shared.model.read() {
            Ok(m) => decided.with_answers(&self.layout, &observed(&m)),
            Err(_) => return,
        };
        if shared.topology.live() != live {
            self.publish(shared, live);
        }
    }

    /// A DNS result is compared with the live expectation before it is folded into the model.
    pub fn rejudge(&self, shared: &Shared, r: &mut ProbeResult) {
        let Observation::Dns(d) = &mut r.observation else {
            return;
        };
        let Ok(live) = shared.topology.live.read() else {
            return;
        };
        if let Some(expect) = live.dns_expect(&d.name)
            && expect != d.expected.as_slice()
        {
            d.rejudge(expect);
        }
    }

    /// The cold sites' scans → their freshness (published) and each site's evidence for the
    /// health model.
    pub fn backups(
        &mut self,
        store: &Store,
        shared: &Shared,
        scans: Vec<(String, Scan)>,
    ) -> Vec<(String, (Status, String))> {
        self.refresh_restores(store);
        let now = jiff::Timestamp::now();
        let mut out = Vec::new();
        for (site, scan) in scans {
            let objectives = self.objectives.get(&site).copied().unwrap_or_default();
            let restore = self.restore.get(&site).cloned();
            let (status, reason) = backups::judge(now, &scan, restore.as_ref(), &objectives);
            let f = Freshness {
                site: site.clone(),
                scan,
                restore,
                objectives,
                checked_at: now,
                status,
                reason: reason.clone(),
            };
            super::metrics::backups(&f);
            if let Ok(mut g) = shared.topology.backups.write() {
                g.insert(site.clone(), f);
            }
            out.push((site, (status, format!("backups: {reason}"))));
        }
        out
    }

    fn refresh_restores(&mut self, store: &Store) {
        let writes = store.writes();
        let fresh = self
            .restore_at
            .is_some_and(|(w, t)| w == writes && t.elapsed() < RESTORE_EVERY);
        if fresh || self.restore_drills.is_empty() {
            return;
        }
        let runs = match store.drill_runs() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("reading drill runs for restore tests failed: {e:#}");
                return;
            }
        };
        self.restore_at = Some((writes, Instant::now()));
        for (site, drills) in &self.restore_drills {
            let last = runs
                .iter()
                .filter(|r| r.state == "finished" && drills.contains(&r.drill))
                .filter_map(|r| {
                    let at = r.finished_at.as_deref()?.parse().ok()?;
                    Some(RestoreTest {
                        run: r.id.clone(),
                        drill: r.drill.clone(),
                        at,
                        verdict: r.verdict.clone(),
                    })
                })
                .max_by_key(|t| t.at);
            match last {
                Some(t) => self.restore.insert(site.clone(), t),
                None => self.restore.remove(site),
            };
        }
    }
}

fn read_persisted(store: &Store) -> Option<LiveTopology> {
    match store.meta(KEY) {
        Ok(Some(v)) => match serde_json::from_str(&v) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(
                    "the persisted live topology ({KEY}) does not decode ({e}); deriving it from the journal and the probes"
                );
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("reading the persisted live topology failed: {e:#}");
            None
        }
    }
}

/// What the probes saw last, per kind (services whose last probe failed are left out).
fn observed(model: &HealthModel) -> Observed {
    let mut o = Observed::default();
    for svc in model.services.values() {
        let Some(r) = svc.last.as_ref().filter(|r| r.ok) else {
            continue;
        };
        match &r.observation {
            Observation::Postgres(pg) => {
                o.postgres.insert(svc.id.clone(), !pg.in_recovery);
            }
            Observation::Redis(rd) => {
                o.redis.insert(svc.id.clone(), rd.role == "master");
            }
            Observation::Dns(d) => {
                o.dns.insert(d.name.clone(), d.agreed().map(<[_]>::to_vec));
            }
            _ => {}
        }
    }
    o
}
