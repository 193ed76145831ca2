//! The checked drill definition (`Drill`) and its parts, as produced by `parse_drill`.

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Time;
use niledr_runbooks::{Catalog, ServiceKind, SiteRole};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A validated drill file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    pub name: String,
    pub description: String,
    /// Five-field cron expression in `timezone`; `None`: run on demand only.
    pub schedule: Option<String>,
    /// IANA name, checked against jiff's tz database (default `Africa/Khartoum`).
    pub timezone: String,
    /// Local-time windows in which scheduled runs are skipped (default 08:00-20:00).
    pub blackout: Vec<BlackoutWindow>,
    pub runbook: String,
    pub approval: ApprovalMode,
    pub scenario: Scenario,
    pub objectives: Objectives,
    pub abort: AbortPolicy,
    pub cleanup: Option<Cleanup>,
    /// The manual steps (`manual.confirm`) of `runbook` and of the cleanup runbook that the drill
    /// performs itself, through the host agent or by confirming them, instead of a person.
    /// Omitted from the canonical JSON when empty, so a file without `[[automate]]` keeps the
    /// digest it had before the key existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub automate: Vec<Automation>,
    /// `sha256:<hex>` of the canonical drill (everything above); standing approvals bind to it.
    pub digest: String,
}

impl Drill {
    /// The digest of the canonical form: every field except `digest`, as JSON with a fixed field
    /// order. Formatting, comments and key order in the file do not change it.
    pub fn compute_digest(&self) -> String {
        let mut canonical = self.clone();
        canonical.digest = String::new();
        let json = serde_json::to_vec(&canonical).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(b"niledr-drill-v1\n");
        h.update(&json);
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// How the drill performs the manual step `step` (of its runbook or its cleanup runbook), if
    /// the file says so. A step id both runbooks use is performed the same way in both.
    pub fn automation_for(&self, step: &str) -> Option<&Automation> {
        self.automate.iter().find(|a| a.step == step)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// People approve each run as it starts, like a real execution.
    Live,
    /// Two people approved the drill file (its digest) ahead of time; a changed file needs new
    /// approval.
    Standing,
}

/// A local time-of-day window `[start, end)`; `end < start` wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlackoutWindow {
    pub start: Time,
    pub end: Time,
}

impl BlackoutWindow {
    pub fn contains(&self, t: Time) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

impl fmt::Display for BlackoutWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )
    }
}

/// The fault a drill injects at T0. What each one asks of the host agent (and how the drill
/// undoes it before the cleanup runbook) is `Scenario::fault_actions`:
///
/// | fault                   | inject                                   | undo     |
/// |-------------------------|------------------------------------------|----------|
/// | `kill_primary_postgres` | `kill` the target service                | `start`  |
/// | `hang_primary_postgres` | `hang` the target service                | `resume` |
/// | `stop_redis`            | `stop` the target service                | `start`  |
/// | `site_down`             | `kill` the target site                   | `start`  |
/// | `planned_switchover`    | nothing                                  | nothing  |
/// | `cold_restore`          | `kill` every postgres service at a primary or hot-standby site | `start` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL the primary PostgreSQL: host agent `kill` on the target service (undo: `start`).
    KillPrimaryPostgres,
    /// SIGSTOP the primary PostgreSQL, so detection must come from timeouts: host agent `hang` on
    /// the target service (undo: `resume`).
    HangPrimaryPostgres,
    /// Stop the Redis server: host agent `stop` on the target service (undo: `start`).
    StopRedis,
    /// Every service of the site down at once: host agent `kill` on the target site (undo:
    /// `start`).
    SiteDown,
    /// No fault: the runbook moves the primary role on purpose. Nothing for the host agent.
    PlannedSwitchover,
    /// Restore the latest base backup + WAL archive at a cold site. So that the restored site is
    /// the only writable PostgreSQL, the drill first asks the host agent to `kill` every postgres
    /// service at a primary or hot-standby site (undo: `start`); the restore itself is the
    /// runbook's work (`restore`, `recover` in `[[automate]]`).
    ColdRestore,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::KillPrimaryPostgres,
        FaultKind::HangPrimaryPostgres,
        FaultKind::StopRedis,
        FaultKind::SiteDown,
        FaultKind::PlannedSwitchover,
        FaultKind::ColdRestore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::KillPrimaryPostgres => "kill_primary_postgres",
            FaultKind::HangPrimaryPostgres => "hang_primary_postgres",
            FaultKind::StopRedis => "stop_redis",
            FaultKind::SiteDown => "site_down",
            FaultKind::PlannedSwitchover => "planned_switchover",
            FaultKind::ColdRestore => "cold_restore",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether `lag_before_fault` (pausing the standby before the fault) makes sense.
    pub fn allows_lag_injection(self) -> bool {
        matches!(
            self,
            FaultKind::KillPrimaryPostgres | FaultKind::HangPrimaryPostgres | FaultKind::SiteDown
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub fault: FaultKind,
    /// A catalog service, or a catalog site for `site_down` / `cold_restore`.
    pub target: String,
    /// Pause standby WAL receipt this long before the fault, so that RPO > 0 can be measured.
    pub lag_before_fault_ms: Option<u64>,
}

impl Scenario {
    /// What the host agent does to inject the fault at T0, as `(target, inject, undo)`, in order;
    /// the undo actions run before the cleanup runbook (e.g. `start` the killed primary so the
    /// failback can re-seed it). Targets are catalog services or sites; `planned_switchover`
    /// injects nothing. `lag_before_fault` is not part of this list.
    pub fn fault_actions(&self, catalog: &Catalog) -> Vec<(String, HostAction, HostAction)> {
        let one = |inject, undo| vec![(self.target.clone(), inject, undo)];
        match self.fault {
            FaultKind::KillPrimaryPostgres => one(HostAction::Kill, HostAction::Start),
            FaultKind::HangPrimaryPostgres => one(HostAction::Hang, HostAction::Resume),
            FaultKind::StopRedis => one(HostAction::Stop, HostAction::Start),
            FaultKind::SiteDown => one(HostAction::Kill, HostAction::Start),
            FaultKind::PlannedSwitchover => Vec::new(),
            FaultKind::ColdRestore => catalog
                .services
                .iter()
                .filter(|(_, svc)| svc.kind == ServiceKind::Postgres)
                .filter(|(_, svc)| {
                    svc.site
                        .as_ref()
                        .and_then(|site| catalog.sites.get(site))
                        .is_some_and(|site| {
                            matches!(site.role, SiteRole::Primary | SiteRole::HotStandby)
                        })
                })
                .map(|(id, _)| (id.clone(), HostAction::Kill, HostAction::Start))
                .collect(),
        }
    }
}

/// What the drill asks the host agent (an HTTP service on the hosts) to do to a server or site,
/// or `confirm`: no host action, the drill confirms a manual step itself.
///
/// Which actions fit which targets (`fits_service`, `fits_site`):
/// - a postgres service: `kill`, `hang`, `resume`, `stop`, `start`, `detach_wal`, `attach_wal`,
///   `reseed` (with `of`, the postgres service to follow);
/// - a redis service: `kill`, `hang`, `resume`, `stop`, `start`;
/// - a primary or hot-standby site: `kill`, `start`;
/// - a cold-standby site: `restore`, `recover`, `retire`;
/// - `confirm` takes no target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostAction {
    /// SIGKILL the server (every server of a site).
    Kill,
    /// SIGSTOP the server: it holds its connections and answers nothing.
    Hang,
    /// SIGCONT a hung server.
    Resume,
    /// Stop the server cleanly.
    Stop,
    /// Start the server (every server of a site) again with its data as it is.
    Start,
    /// Stop the standby receiving WAL (replication lag on purpose).
    DetachWal,
    /// Let the standby receive WAL again.
    AttachWal,
    /// Rebuild the server as a streaming standby of `of` (pg_rewind or a fresh base backup)
    /// and start it.
    Reseed,
    /// Restore the latest base backup into a fresh data directory at a cold site.
    Restore,
    /// Replay the WAL archive to its end at a cold site, promote and start PostgreSQL there.
    Recover,
    /// Stop the restored PostgreSQL at a cold site: it goes back to backups only.
    Retire,
    /// No host action: the drill confirms the manual step itself (see `Automation::note`).
    Confirm,
}

impl HostAction {
    pub const ALL: [HostAction; 12] = [
        HostAction::Kill,
        HostAction::Hang,
        HostAction::Resume,
        HostAction::Stop,
        HostAction::Start,
        HostAction::DetachWal,
        HostAction::AttachWal,
        HostAction::Reseed,
        HostAction::Restore,
        HostAction::Recover,
        HostAction::Retire,
        HostAction::Confirm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostAction::Kill => "kill",
            HostAction::Hang => "hang",
            HostAction::Resume => "resume",
            HostAction::Stop => "stop",
            HostAction::Start => "start",
            HostAction::DetachWal => "detach_wal",
            HostAction::AttachWal => "attach_wal",
            HostAction::Reseed => "reseed",
            HostAction::Restore => "restore",
            HostAction::Recover => "recover",
            HostAction::Retire => "retire",
            HostAction::Confirm => "confirm",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the host agent can do this to a service of `kind`.
    pub fn fits_service(self, kind: ServiceKind) -> bool {
        use HostAction::*;
        match kind {
            ServiceKind::Postgres => matches!(
                self,
                Kill | Hang | Resume | Stop | Start | DetachWal | AttachWal | Reseed
            ),
            ServiceKind::Redis => matches!(self, Kill | Hang | Resume | Stop | Start),
            ServiceKind::Http | ServiceKind::Tcp | ServiceKind::Dns => false,
        }
    }

    /// Whether the host agent can do this to a whole site of `role`.
    pub fn fits_site(self, role: SiteRole) -> bool {
        use HostAction::*;
        match role {
            SiteRole::Primary | SiteRole::HotStandby => matches!(self, Kill | Start),
            SiteRole::ColdStandby => matches!(self, Restore | Recover | Retire),
        }
    }

    /// Every action but `confirm` acts on a `target`.
    pub fn needs_target(self) -> bool {
        self != HostAction::Confirm
    }

    /// Only `reseed` names the service to follow (`of`).
    pub fn needs_of(self) -> bool {
        self == HostAction::Reseed
    }
}

impl fmt::Display for HostAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[automate]]` table: a manual step the drill performs instead of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Automation {
    /// The id of a `manual.confirm` step of the drill's runbook or its cleanup runbook.
    pub step: String,
    /// The catalog service or site the host agent acts on; `None` for `confirm`.
    pub target: Option<String>,
    pub action: HostAction,
    /// For `reseed` only: the postgres service the target follows afterwards.
    pub of: Option<String>,
    /// Free text: why the step holds without a host action (for `confirm`), or any remark.
    pub note: Option<String>,
}

/// A data store the canary writes markers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    Postgres,
    Redis,
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::Postgres => "postgres",
            Store::Redis => "redis",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objectives {
    /// T0 → first acknowledged write through the production path.
    pub rto_ms: u64,
    /// Per store: the span of acknowledged writes that may be lost.
    pub rpo_ms: BTreeMap<Store, u64>,
    /// No acknowledged write may be lost at all (planned switchover).
    pub no_lost_writes: bool,
}

impl Objectives {
    pub fn rpo_for(&self, store: Store) -> Option<u64> {
        self.rpo_ms.get(&store).copied()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbortPolicy {
    /// Abort when elapsed since T0 exceeds `rto_factor × objectives.rto`.
    pub rto_factor: f64,
    /// Abort when more acknowledged writes than this are lost (any store).
    pub max_lost_writes: Option<u64>,
}

impl AbortPolicy {
    /// Elapsed time since T0 past which the drill is aborted.
    pub fn rto_bound_ms(&self, objectives: &Objectives) -> u64 {
        // Saturating float → int conversion is the intent: huge bounds mean "never".
        (objectives.rto_ms as f64 * self.rto_factor).ceil() as u64
    }

    /// Why the drill must stop now, if it must.
    pub fn check(
        &self,
        objectives: &Objectives,
        elapsed_ms: u64,
        lost_writes: u64,
    ) -> Option<String> {
        let bound = self.rto_bound_ms(objectives);
        if elapsed_ms > bound {
            return Some(format!(
                "elapsed {} since T0 passed the abort bound {} ({} × RTO objective {})",
                crate::report::fmt_ms(elapsed_ms),
                crate::report::fmt_ms(bound),
                self.rto_factor,
                crate::report::fmt_ms(objectives.rto_ms)
            ));
        }
        match self.max_lost_writes {
            Some(max) if lost_writes > max => Some(format!(
                "{lost_writes} acknowledged writes lost, past the abort bound of {max}"
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    /// The failback runbook that restores the normal topology; it is measured too.
    pub runbook: String,
}
