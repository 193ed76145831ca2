//! The checked drill definition (`Drill`) and its parts, as produced by `parse_drill`.

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Time;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL the primary PostgreSQL.
    KillPrimaryPostgres,
    /// SIGSTOP the primary PostgreSQL: detection must come from timeouts.
    HangPrimaryPostgres,
    StopRedis,
    /// Every service of the site down at once.
    SiteDown,
    /// No fault: the runbook moves the primary role on purpose.
    PlannedSwitchover,
    /// Restore the latest base backup + WAL archive at a cold site.
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
