//! Plan resolution, a dry run that is really dry: every step resolved to concrete targets,
//! guards evaluated against a `WorldSnapshot`, before → after of what each step changes,
//! warnings approvers must read, and the digest approvals are bound to.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::approval::ApprovalPolicy;
use crate::catalog::{ServiceKind, host_of};
use crate::preconditions::{Preconditions, preconditions};
use crate::schema::{
    Action, Endpoint, FenceMode, Mode, OnUnreachable, Rollback, Runbook, Step, StepKind,
    WaitCondition,
};
use crate::world::{DnsObservation, ObservedRole, ServiceObservation, WorldSnapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardOutcome {
    Pass,
    Fail,
    /// Not observed: the executor checks again before acting.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    pub check: String,
    pub outcome: GuardOutcome,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub what: String,
    pub before: String,
    pub after: String,
}

/// A concrete thing a step touches. Resolved from the catalog, not from measurements, so it
/// is part of the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `service`, `site`, `dns_name`, `connstr`, `url`.
    pub kind: String,
    pub id: String,
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub index: usize,
    pub id: String,
    pub kind: StepKind,
    pub summary: String,
    pub targets: Vec<Target>,
    pub guards: Vec<Guard>,
    pub changes: Vec<Change>,
    /// Observations worth showing that are not guards (e.g. a wait's condition right now).
    pub notes: Vec<String>,
    pub rollback: String,
    pub verification: String,
    pub timeout_ms: u64,
    pub retries: u32,
    pub backoff_ms: u64,
    /// This step is the first irreversible one or comes after it: once the point of no return
    /// is passed nothing is rolled back, a failure stops for an operator (retry or failback).
    #[serde(default)]
    pub after_point_of_no_return: bool,
}

/// Whether a step can run as planned, checked against the real world (files, PgBouncer,
/// TSIG accepted, current DNS answers, targets answering) before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub step: String,
    pub ready: bool,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub runbook: String,
    pub mode: Mode,
    /// Hex sha256 over the runbook's steps and their resolved targets (not measurements).
    pub digest: String,
    pub steps: Vec<PlannedStep>,
    pub warnings: Vec<String>,
    /// Every guard passes or is unknown.
    pub ready: bool,
    pub lock_scope: Vec<String>,
    pub approval: ApprovalPolicy,
    pub preconditions: Preconditions,
    /// The first irreversible step: before it a failure rolls back, from it on nothing is.
    #[serde(default)]
    pub point_of_no_return: Option<String>,
    /// Per step, checked live by the orchestrator (empty when not checked: a pure plan).
    #[serde(default)]
    pub readiness: Vec<Readiness>,
}

/// Index of the first step declared irreversible.
pub fn point_of_no_return(runbook: &Runbook) -> Option<usize> {
    runbook
        .steps
        .iter()
        .position(|s| matches!(s.rollback, Rollback::Irreversible { .. }))
}

/// Resolve `runbook` against `world`. Pure: the world is data, nothing is probed or changed.
pub fn plan(runbook: &Runbook, world: &WorldSnapshot) -> Plan {
    let mut p = Planner {
        rb: runbook,
        proj: world.clone(),
        warnings: Vec::new(),
    };
    let ponr = point_of_no_return(runbook);
    let steps: Vec<PlannedStep> = runbook
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| PlannedStep {
            after_point_of_no_return: ponr.is_some_and(|p| i >= p),
            ..p.step(i, s)
        })
        .collect();
    let ready = steps
        .iter()
        .all(|s| s.guards.iter().all(|g| g.outcome != GuardOutcome::Fail));
    Plan {
        runbook: runbook.name.clone(),
        mode: runbook.mode,
        digest: digest(runbook, &steps),
        steps,
        warnings: p.warnings,
        ready,
        lock_scope: runbook.services.clone(),
        approval: runbook.approval.clone(),
        preconditions: preconditions(runbook, world),
        point_of_no_return: ponr.map(|i| runbook.steps[i].id.clone()),
        readiness: Vec::new(),
    }
}

/// The canonical input of the digest: what will be done, to what.
#[derive(Serialize)]
struct DigestInput<'a> {
    version: u32,
    runbook: &'a str,
    mode: Mode,
    steps: Vec<DigestStep<'a>>,
}

#[derive(Serialize)]
struct DigestStep<'a> {
    step: &'a Step,
    targets: &'a [Target],
}

fn digest(runbook: &Runbook, planned: &[PlannedStep]) -> String {
    let input = DigestInput {
        version: 1,
        runbook: &runbook.name,
        mode: runbook.mode,
        steps: runbook
            .steps
            .iter()
            .zip(planned)
            .map(|(step, p)| DigestStep {
                step,
                targets: &p.targets,
            })
            .collect(),
    };
    // Structs serialize in declaration order and maps are BTreeMaps: the bytes are canonical.
    let bytes = serde_json::to_vec(&input).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

struct Planner<'a> {
    rb: &'a Runbook,
    /// The world as it will be after the steps planned so far.
    proj: WorldSnapshot,
    warnings: Vec<String>,
}

fn role_str(o: Option<&ServiceObservation>) -> String {
    match o {
        None => "not observed".into(),
        Some(o) if !o.reachable => "not answering".into(),
        Some(o) => o.role.map_or("unknown role", ObservedRole::as_str).into(),
    }
}

fn answers_str(a: &[String]) -> String {
    if a.is_empty() {
        "no answer".into()
    } else {
        a.join(", ")
    }
}

fn guard(check: impl Into<String>, outcome: GuardOutcome, why: impl Into<String>) -> Guard {
    Guard {
        check: check.into(),
        outcome,
        why: why.into(),
    }
}

impl Planner<'_> {
    /// The catalog address of a service.
    fn service_address(&self, id: &str) -> Option<String> {
        self.rb
            .targets
            .services
            .get(id)
            .and_then(|s| s.address.clone())
    }

    /// The address a site's names answer with: the site's own, else the IP of a data store
    /// (PostgreSQL first) at the site.
    fn site_address(&self, site: &str) -> Option<String> {
        if let Some(a) = self
            .rb
            .targets
            .sites
            .get(site)
            .and_then(|s| s.address.clone())
        {
            return Some(a);
        }
        let mut at_site: Vec<(&String, &crate::catalog::CatalogService)> = self
            .rb
            .targets
            .services
            .iter()
            .filter(|(_, s)| s.site.as_deref() == Some(site) && s.address.is_some())
            .collect();
        at_site.sort_by_key(|(id, s)| (s.kind != ServiceKind::Postgres, (*id).clone()));
        at_site
            .first()
            .and_then(|(_, s)| s.address.as_deref())
            .map(|a| host_of(a).to_string())
    }

    fn endpoint_ip(&self, e: &Endpoint) -> Option<String> {
        match e {
            Endpoint::Site(s) => self.site_address(s),
            Endpoint::Service(s) => self.service_address(s).map(|a| host_of(&a).to_string()),
        }
    }

    fn endpoint_target(&self, e: &Endpoint) -> Target {
        match e {
            Endpoint::Site(s) => Target {
                kind: "site".into(),
                id: s.clone(),
                address: self.site_address(s),
            },
            Endpoint::Service(s) => self.service_target(s),
        }
    }

    fn service_target(&self, id: &str) -> Target {
        Target {
            kind: "service".into(),
            id: id.into(),
            address: self.service_address(id),
        }
    }

    fn obs(&self, id: &str) -> Option<&ServiceObservation> {
        self.proj.services.get(id)
    }

    fn answers(&self, id: &str) -> Guard {
        match self.obs(id) {
            Some(o) if o.reachable => {
                guard(format!("{id} answers"), GuardOutcome::Pass, "probe ok")
            }
            Some(_) => guard(
                format!("{id} answers"),
                GuardOutcome::Fail,
                "the last probe failed",
            ),
            None => guard(
                format!("{id} answers"),
                GuardOutcome::Unknown,
                "no probe result",
            ),
        }
    }

    fn role_guard(&self, id: &str, want: ObservedRole, done: ObservedRole) -> Guard {
        let check = format!("{id} is a {}", want.as_str());
        match self.obs(id).filter(|o| o.reachable).and_then(|o| o.role) {
            Some(r) if r == want => guard(check, GuardOutcome::Pass, "as expected"),
            Some(r) if r == done => guard(
                check,
                GuardOutcome::Pass,
                format!("already {}: the step will be a no-op", done.as_str()),
            ),
            Some(r) => guard(check, GuardOutcome::Fail, format!("it is {}", r.as_str())),
            None => guard(check, GuardOutcome::Unknown, "role not observed"),
        }
    }

    fn dns(&self, name: &str) -> DnsObservation {
        self.proj.dns.get(name).cloned().unwrap_or_default()
    }

    fn set_answers(&mut self, name: &str, to: Vec<String>) {
        let entry = self.proj.dns.entry(name.to_string()).or_default();
        if entry.answers.is_empty() {
            entry.answers.insert("*".into(), to);
        } else {
            for v in entry.answers.values_mut() {
                *v = to.clone();
            }
        }
    }

    fn step(&mut self, index: usize, step: &Step) -> PlannedStep {
        let mut s = PlannedStep {
            index,
            id: step.id.clone(),
            kind: step.action.kind(),
            summary: String::new(),
            targets: Vec::new(),
            guards: Vec::new(),
            changes: Vec::new(),
            notes: Vec::new(),
            rollback: match &step.rollback {
                Rollback::None => "nothing to undo".into(),
                Rollback::Inverse => inverse_text(&step.action),
                Rollback::Explicit(r) => format!("runs {}", r.action.kind().as_str()),
                Rollback::Irreversible { reason } => format!("IRREVERSIBLE: {reason}"),
            },
            verification: if step.verify {
                step.action.verification().into()
            } else {
                "none (verify = false)".into()
            },
            timeout_ms: step.timeout_ms,
            after_point_of_no_return: false,
            retries: step.retries,
            backoff_ms: step.backoff_ms,
        };
        if let Rollback::Irreversible { reason } = &step.rollback {
            self.warnings.push(format!(
                "step {} ({}) cannot be undone: {reason}",
                step.id,
                step.action.kind().as_str()
            ));
        }
        match &step.action {
            Action::PostgresCheckLag {
                service,
                max_lag_bytes,
                max_lag_seconds,
                ..
            } => {
                s.summary = format!("check that {service} lags at most {max_lag_bytes} bytes");
                s.targets.push(self.service_target(service));
                s.guards.push(self.answers(service));
                s.guards.push(self.role_guard(
                    service,
                    ObservedRole::Standby,
                    ObservedRole::Standby,
                ));
                let o = self.obs(service).filter(|o| o.reachable);
                let check = format!("lag ≤ {max_lag_bytes} bytes");
                s.guards.push(match o.and_then(|o| o.lag_bytes) {
                    Some(l) if l <= *max_lag_bytes => {
                        guard(check, GuardOutcome::Pass, format!("lag {l} bytes"))
                    }
                    Some(l) => guard(check, GuardOutcome::Fail, format!("lag {l} bytes")),
                    None => guard(check, GuardOutcome::Unknown, "lag not measured"),
                });
                if let Some(max) = max_lag_seconds {
                    let check = format!("lag ≤ {max} s");
                    s.guards.push(match o.and_then(|o| o.lag_seconds) {
                        Some(l) if l <= *max as f64 => {
                            guard(check, GuardOutcome::Pass, format!("lag {l:.1} s"))
                        }
                        Some(l) => guard(check, GuardOutcome::Fail, format!("lag {l:.1} s")),
                        None => guard(check, GuardOutcome::Unknown, "lag not measured"),
                    });
                }
            }
            Action::PostgresFence {
                service,
                mode,
                on_unreachable,
            } => {
                let how = match mode {
                    FenceMode::ReadOnly => {
                        "application roles lose their login, read-only for the rest, sessions terminated"
                    }
                    FenceMode::Stop => "stopped",
                };
                s.summary = format!("fence {service} ({how})");
                s.targets.push(self.service_target(service));
                let reachable = self.obs(service).is_some_and(|o| o.reachable);
                if reachable {
                    let before = match self.obs(service).and_then(|o| o.read_only) {
                        Some(true) => "already read-only",
                        _ => "accepts writes",
                    };
                    s.changes.push(Change {
                        what: format!("{service} writes"),
                        before: before.into(),
                        after: match mode {
                            FenceMode::ReadOnly => "refused (read-only)".into(),
                            FenceMode::Stop => "server stopped".into(),
                        },
                    });
                    if let Some(o) = self.proj.services.get_mut(service) {
                        o.read_only = Some(true);
                        if *mode == FenceMode::Stop {
                            o.reachable = false;
                        }
                    }
                } else {
                    let then = match on_unreachable {
                        OnUnreachable::RequireEvidence => {
                            "the step proceeds only if its standby has lost it too, else it waits for an operator's confirm"
                        }
                        OnUnreachable::Confirm => "the step waits for an operator's confirm",
                        OnUnreachable::Proceed => {
                            "the step proceeds (on_unreachable = proceed): it cannot be fenced now"
                        }
                    };
                    self.warnings.push(format!(
                        "old primary {service} does not answer: {then}; if it comes back it is fenced again and must not take writes"
                    ));
                    s.notes.push(format!(
                        "{service} does not answer: on_unreachable = {}",
                        on_unreachable.as_str()
                    ));
                }
            }
            Action::PostgresPromote { service } => {
                s.summary = format!("promote {service} to primary (pg_promote)");
                s.targets.push(self.service_target(service));
                s.guards.push(self.answers(service));
                s.guards.push(self.role_guard(
                    service,
                    ObservedRole::Standby,
                    ObservedRole::Primary,
                ));
                self.split_brain(service, ServiceKind::Postgres);
                let o = self.obs(service).cloned().unwrap_or_default();
                s.changes.push(Change {
                    what: format!("{service} role"),
                    before: role_str(self.obs(service)),
                    after: "primary".into(),
                });
                if let Some(t) = o.timeline {
                    s.changes.push(Change {
                        what: format!("{service} timeline"),
                        before: t.to_string(),
                        after: (t + 1).to_string(),
                    });
                }
                if let Some(lsn) = &o.lsn {
                    s.changes.push(Change {
                        what: format!("{service} LSN"),
                        before: format!("{lsn} (replayed)"),
                        after: format!("writes continue from {lsn}"),
                    });
                }
                let e = self.proj.services.entry(service.clone()).or_default();
                e.role = Some(ObservedRole::Primary);
                e.timeline = e.timeline.map(|t| t + 1);
                e.lag_bytes = None;
                e.lag_seconds = None;
                e.upstream = None;
                e.read_only = Some(false);
            }
            Action::PostgresWaitCaughtUp { service, of } => {
                s.summary = format!("wait until {service} has replayed everything {of} wrote");
                s.targets.push(self.service_target(service));
                s.targets.push(self.service_target(of));
                s.guards.push(self.answers(service));
                s.guards.push(self.answers(of));
                s.guards.push(self.role_guard(
                    service,
                    ObservedRole::Standby,
                    ObservedRole::Standby,
                ));
                let lsn = |id: &str| {
                    self.obs(id)
                        .and_then(|o| o.lsn.clone())
                        .unwrap_or_else(|| "unknown".into())
                };
                s.notes.push(format!(
                    "now: {service} replayed {}, {of} at {}",
                    lsn(service),
                    lsn(of)
                ));
            }
            Action::RedisFence {
                service, replica, ..
            } => {
                s.summary = format!(
                    "fence {service} (CLIENT PAUSE WRITE), wait until {replica} has every write"
                );
                s.targets.push(self.service_target(service));
                s.targets.push(self.service_target(replica));
                s.guards.push(self.answers(service));
                s.guards.push(self.answers(replica));
                s.guards
                    .push(self.role_guard(service, ObservedRole::Master, ObservedRole::Master));
                s.guards.push(self.role_guard(
                    replica,
                    ObservedRole::Replica,
                    ObservedRole::Replica,
                ));
                let before = match self.obs(service).and_then(|o| o.read_only) {
                    Some(true) => "already paused",
                    _ => "accepted",
                };
                s.changes.push(Change {
                    what: format!("{service} writes"),
                    before: before.into(),
                    after: "paused (CLIENT PAUSE WRITE; reads continue)".into(),
                });
                let lag = self
                    .obs(replica)
                    .filter(|o| o.reachable)
                    .and_then(|o| o.lag_bytes)
                    .map_or_else(|| "not measured".to_string(), |l| format!("{l} bytes"));
                s.notes
                    .push(format!("now: {replica} replication offset lag {lag}"));
                s.notes.push(format!(
                    "writes blocked by the pause fail with READONLY once {service} follows the new master: none acknowledged is lost"
                ));
                if let Some(o) = self.proj.services.get_mut(service) {
                    o.read_only = Some(true);
                }
            }
            Action::RedisPromote { service } => {
                s.summary = format!("promote {service} (REPLICAOF NO ONE)");
                s.targets.push(self.service_target(service));
                s.guards.push(self.answers(service));
                s.guards.push(self.role_guard(
                    service,
                    ObservedRole::Replica,
                    ObservedRole::Master,
                ));
                self.split_brain(service, ServiceKind::Redis);
                s.changes.push(Change {
                    what: format!("{service} role"),
                    before: role_str(self.obs(service)),
                    after: "master".into(),
                });
                let e = self.proj.services.entry(service.clone()).or_default();
                e.role = Some(ObservedRole::Master);
                e.upstream = None;
            }
            Action::RedisReplicaOf { service, of, .. } => {
                let of_addr = self.service_address(of);
                s.summary = format!(
                    "make {service} a replica of {of} ({})",
                    of_addr.as_deref().unwrap_or("address unknown")
                );
                s.targets.push(self.service_target(service));
                s.targets.push(self.service_target(of));
                s.guards.push(self.answers(service));
                s.guards.push(self.answers(of));
                let before = match self.obs(service) {
                    Some(o) if o.role == Some(ObservedRole::Replica) => {
                        format!("replica of {}", o.upstream.as_deref().unwrap_or("unknown"))
                    }
                    other => role_str(other),
                };
                let after = format!("replica of {}", of_addr.as_deref().unwrap_or(of));
                s.changes.push(Change {
                    what: format!("{service} role"),
                    before,
                    after,
                });
                let e = self.proj.services.entry(service.clone()).or_default();
                e.role = Some(ObservedRole::Replica);
                e.upstream = of_addr;
            }
            Action::ConnstrSwap { target, to_service } => {
                let kind = self.rb.targets.connstr_targets.get(target).copied();
                let to = self.service_address(to_service);
                s.summary = format!("point connection string {target} at {to_service}");
                s.targets.push(Target {
                    kind: "connstr".into(),
                    id: target.clone(),
                    address: None,
                });
                s.targets.push(self.service_target(to_service));
                s.guards.push(self.answers(to_service));
                let before = self.proj.connstr.get(target).cloned().flatten();
                let after = to.clone().unwrap_or_else(|| "unknown".into());
                let what = match kind {
                    Some(crate::catalog::ConnstrKind::Pgbouncer) => {
                        format!("pgbouncer target {target}")
                    }
                    _ => format!("connection-string file {target}"),
                };
                s.changes.push(Change {
                    what,
                    before: before.unwrap_or_else(|| "unknown".into()),
                    after: after.clone(),
                });
                self.proj.connstr.insert(target.clone(), Some(after));
            }
            Action::DnsSetTtl { name, ttl } => {
                s.summary = format!("set the TTL of {name} to {ttl} s");
                s.targets.push(self.name_target(name));
                let current = self.dns(name).ttl;
                if current == Some(*ttl) {
                    s.notes.push(format!("TTL already {ttl} s: nothing to do"));
                } else {
                    s.changes.push(Change {
                        what: format!("{name} TTL"),
                        before: current.map_or("unknown".into(), |t| format!("{t} s")),
                        after: format!("{ttl} s"),
                    });
                    if let Some(old) = current.filter(|t| t > ttl) {
                        self.warnings.push(format!(
                            "{name} has TTL {old} s: resolvers may keep the old answer up to {old} s after this step"
                        ));
                    }
                }
                self.proj.dns.entry(name.clone()).or_default().ttl = Some(*ttl);
            }
            Action::DnsCutover { name, from, to } => {
                let to_ip = self.endpoint_ip(to);
                s.summary = format!(
                    "point {name} at {} ({})",
                    endpoint_str(to),
                    to_ip.as_deref().unwrap_or("address unknown")
                );
                s.targets.push(self.name_target(name));
                if let Some(f) = from {
                    s.targets.push(self.endpoint_target(f));
                }
                s.targets.push(self.endpoint_target(to));
                let obs = self.dns(name);
                let now = obs.union();
                let check = "servers agree".to_string();
                s.guards.push(if obs.answers.is_empty() {
                    guard(check, GuardOutcome::Unknown, "no DNS observation")
                } else if obs.servers_agree() {
                    guard(
                        check,
                        GuardOutcome::Pass,
                        format!("all answer {}", answers_str(&now)),
                    )
                } else {
                    guard(
                        check,
                        GuardOutcome::Fail,
                        format!("servers answer differently: {:?}", obs.answers),
                    )
                });
                let Some(to_ip) = to_ip else {
                    s.guards.push(guard(
                        format!("{} has an address", endpoint_str(to)),
                        GuardOutcome::Fail,
                        "no address in the config for the target; give the site an address",
                    ));
                    return s;
                };
                let target = vec![to_ip.clone()];
                if let Some(f) = from {
                    let check = format!("{name} answers {} now", endpoint_str(f));
                    s.guards.push(match self.endpoint_ip(f) {
                        _ if obs.answers.is_empty() => {
                            guard(check, GuardOutcome::Unknown, "no DNS observation")
                        }
                        _ if now == target => guard(
                            check,
                            GuardOutcome::Pass,
                            format!("already answers {to_ip}: the step will be a no-op"),
                        ),
                        Some(ip) if now == vec![ip.clone()] => {
                            guard(check, GuardOutcome::Pass, format!("answers {ip}"))
                        }
                        Some(ip) => guard(
                            check,
                            GuardOutcome::Fail,
                            format!(
                                "answers {} instead of {ip}: the compare-and-swap would stop",
                                answers_str(&now)
                            ),
                        ),
                        None => guard(check, GuardOutcome::Unknown, "no address for `from`"),
                    });
                } else {
                    s.notes.push(format!(
                        "compare-and-swap expects the answer observed now: {}",
                        answers_str(&now)
                    ));
                }
                s.changes.push(Change {
                    what: format!("{name} answers"),
                    before: answers_str(&now),
                    after: to_ip,
                });
                if let Some(ttl) = obs.ttl.filter(|t| *t > 60) {
                    self.warnings.push(format!(
                        "{name} has TTL {ttl} s: clients may use the old answer up to {ttl} s after the cutover"
                    ));
                }
                self.set_answers(name, target);
            }
            Action::DnsVerify { name, expect } => {
                let ip = self.endpoint_ip(expect);
                s.summary = format!(
                    "verify every authoritative server answers {name} with {} ({})",
                    endpoint_str(expect),
                    ip.as_deref().unwrap_or("address unknown")
                );
                s.targets.push(self.name_target(name));
                s.targets.push(self.endpoint_target(expect));
                let projected = self.dns(name).union();
                let check = format!("after the steps before it, {name} answers the expected set");
                s.guards.push(match ip {
                    Some(ip) if projected == vec![ip.clone()] => {
                        guard(check, GuardOutcome::Pass, ip.clone())
                    }
                    Some(ip) if projected.is_empty() => guard(
                        check,
                        GuardOutcome::Unknown,
                        format!("expects {ip}; no DNS observation"),
                    ),
                    Some(ip) => guard(
                        check,
                        GuardOutcome::Fail,
                        format!("expects {ip}, would answer {}", answers_str(&projected)),
                    ),
                    None => guard(
                        check,
                        GuardOutcome::Unknown,
                        "no address for the expectation",
                    ),
                });
            }
            Action::SqlCheck { name, via } => {
                let resolved = self.dns(name).union();
                s.summary = format!(
                    "write and read back through {name} (resolving to {} after the steps before it), with {via}'s credentials",
                    answers_str(&resolved)
                );
                s.targets.push(self.name_target(name));
                s.targets.push(self.service_target(via));
            }
            Action::HttpCheck { url, expect_status } => {
                s.summary = format!(
                    "GET {url}, expect {}",
                    expect_status.map_or("2xx".into(), |c| c.to_string())
                );
                s.targets.push(Target {
                    kind: "url".into(),
                    id: url.clone(),
                    address: None,
                });
            }
            Action::ManualConfirm { item } => {
                s.summary = format!("a person confirms: {item}");
            }
            Action::Wait { until } => {
                let (text, holds) = match until {
                    WaitCondition::ServiceUp { service } => {
                        s.targets.push(self.service_target(service));
                        (
                            format!("{service} answers"),
                            self.obs(service).map(|o| o.reachable),
                        )
                    }
                    WaitCondition::ServiceDown { service } => {
                        s.targets.push(self.service_target(service));
                        (
                            format!("{service} does not answer"),
                            self.obs(service).map(|o| !o.reachable),
                        )
                    }
                    WaitCondition::Replicating {
                        service,
                        of,
                        lag_below_bytes,
                    } => {
                        s.targets.push(self.service_target(service));
                        s.targets.push(self.service_target(of));
                        let of_addr = self.service_address(of);
                        let holds = self.obs(service).map(|o| {
                            o.reachable
                                && matches!(
                                    o.role,
                                    Some(ObservedRole::Standby | ObservedRole::Replica)
                                )
                                && (o.upstream.is_none() || o.upstream == of_addr)
                                && lag_below_bytes
                                    .is_none_or(|max| o.lag_bytes.is_some_and(|l| l < max))
                        });
                        let lag = lag_below_bytes
                            .map(|b| format!(" with lag below {b} bytes"))
                            .unwrap_or_default();
                        (format!("{service} replicates from {of}{lag}"), holds)
                    }
                };
                s.summary = format!("wait until {text}");
                s.notes.push(match holds {
                    Some(true) => "holds now".into(),
                    Some(false) => "does not hold now".into(),
                    None => "not observed".into(),
                });
            }
            Action::PlatformMode { level, message } => {
                self.platform_mode(&mut s, *level, message.as_deref())
            }
        }
        s
    }

    /// `platform.mode`: the level applications read, before → after.
    fn platform_mode(&mut self, s: &mut PlannedStep, level: u8, message: Option<&str>) {
        let record = self
            .rb
            .targets
            .platform_mode_record
            .clone()
            .unwrap_or_else(|| "the platform-mode record".into());
        s.summary = format!(
            "tell the applications: platform level {level} ({})",
            message.unwrap_or(crate::schema::platform_level_label(level))
        );
        s.targets.push(Target {
            kind: "dns_txt".into(),
            id: record.clone(),
            address: None,
        });
        let level_str = |l: Option<u8>| {
            l.map_or("unknown (no record observed)".to_string(), |l| {
                format!("level {l} ({})", crate::schema::platform_level_label(l))
            })
        };
        let now = self.proj.platform_level;
        if now == Some(level) {
            s.notes.push(format!("{record} already says level {level}"));
        }
        s.changes.push(Change {
            what: format!("platform level ({record})"),
            before: level_str(now),
            after: level_str(Some(level)),
        });
        self.proj.platform_level = Some(level);
    }

    fn name_target(&self, name: &str) -> Target {
        Target {
            kind: "dns_name".into(),
            id: name.into(),
            address: None,
        }
    }

    /// Promoting while another data store of the kind still takes writes makes two primaries.
    fn split_brain(&mut self, promoting: &str, kind: ServiceKind) {
        let others: Vec<String> = self
            .rb
            .targets
            .services
            .iter()
            .filter(|(id, s)| s.kind == kind && id.as_str() != promoting)
            .map(|(id, _)| id.clone())
            .collect();
        for other in others {
            if let Some(o) = self.obs(&other)
                && o.reachable
                && o.role.is_some_and(ObservedRole::is_writable)
                && o.read_only != Some(true)
            {
                self.warnings.push(format!(
                    "{other} still answers as a writable {} when {promoting} is promoted: two writable primaries until DNS and connection strings move",
                    o.role.map_or("primary", ObservedRole::as_str)
                ));
            }
        }
    }
}

fn endpoint_str(e: &Endpoint) -> String {
    match e {
        Endpoint::Site(s) => format!("site {s}"),
        Endpoint::Service(s) => s.clone(),
    }
}

fn inverse_text(a: &Action) -> String {
    match a {
        Action::PostgresFence { service, .. } => {
            format!("unfence {service} (writes accepted again)")
        }
        Action::RedisReplicaOf { service, .. } => {
            format!("restore {service}'s previous role and master")
        }
        Action::RedisFence { service, .. } => {
            format!("unpause {service} (CLIENT UNPAUSE: writes accepted again)")
        }
        Action::ConnstrSwap { target, .. } => format!("restore the previous value of {target}"),
        Action::DnsSetTtl { name, .. } => format!("restore the previous TTL of {name}"),
        Action::DnsCutover { name, .. } => format!("cut {name} back to its previous answers"),
        Action::PlatformMode { .. } => "restore the previous platform level".into(),
        other => format!("inverse of {}", other.kind().as_str()),
    }
}
