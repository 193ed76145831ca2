//! What we store: versioned record types, separate from the in-memory structs, so the file
//! format changes only on purpose. Every record is JSON with a `v` field; a reader refuses a
//! version it does not know instead of guessing.

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

/// One link of the audit chain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditRecordV1 {
    pub v: u32,
    pub seq: u64,
    /// RFC 3339 UTC.
    pub at: String,
    /// Who: `niledr` for the daemon itself, a user name for people.
    pub actor: String,
    /// What: `config.loaded`, `daemon.started`, `status.changed`, ...
    pub action: String,
    pub detail: serde_json::Value,
    /// Hex sha256 of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// Hex sha256 over `prev_hash` and this record's content (see `audit::entry_hash`).
    pub hash: String,
}

/// A service or site changed status.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusChangeV1 {
    pub v: u32,
    pub seq: u64,
    pub at: String,
    /// `service` or `site`.
    pub scope: String,
    pub id: String,
    /// The site of a service, if it has one.
    pub site: Option<String>,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// One probe result kept in a service's bounded history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeRecordV1 {
    pub v: u32,
    pub at: String,
    pub ok: bool,
    pub latency_ms: f64,
    pub summary: String,
    /// Replication lag in bytes (postgres) or offset (redis), when measured.
    pub lag: Option<u64>,
}

pub fn check_version(v: u32, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        v == 1,
        "{what} record has version {v}, which this niledr does not know; upgrade niledr"
    );
    Ok(())
}

/// One execution of a runbook, rewritten (fsync'd, with its audit entries) at every
/// transition and before every step's effect: the journal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExecutionRecordV1 {
    pub v: u32,
    pub id: String,
    pub runbook: String,
    pub reason: String,
    pub requester: String,
    pub created_at: String,
    /// Lifecycle state name (`awaiting_approval`, `running`, ...).
    pub state: String,
    /// The serialized state machine (resumed after a restart).
    pub machine: serde_json::Value,
    pub plan_digest: String,
    pub plan: serde_json::Value,
    /// What the approvers saw: roles, lag, DNS answers.
    pub preconditions: serde_json::Value,
    pub approvals: Vec<serde_json::Value>,
    pub steps: Vec<StepRecordV1>,
    pub timeline: Vec<TimelineEntryV1>,
    pub needs_operator: Option<String>,
    /// Failover generation this execution holds (fencing token), once it has started.
    pub generation: Option<u64>,
    /// An irreversible step succeeded or may have partly applied: the old side is kept
    /// fenced from now on, whatever state the execution ends in.
    #[serde(default)]
    pub past_point_of_no_return: bool,
    /// The proposal expires at this engine time (unix ms on niledr's monotonic-anchored
    /// clock) if not approved by then.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct StepRecordV1 {
    pub id: String,
    pub kind: String,
    /// `pending`, `running`, `succeeded`, `failed`, `rolling_back`, `rolled_back`, `skipped`,
    /// `waiting_confirmation`.
    pub state: String,
    pub attempts: u32,
    /// Set (and committed) before the action starts.
    pub intent_at: Option<String>,
    /// Set (and committed) when the action's outcome is known. Intent without outcome after a
    /// restart means the step is in doubt: the action checks the world before acting.
    pub outcome_at: Option<String>,
    pub duration_ms: Option<f64>,
    pub detail: String,
    /// niledr's own time for this step (journal commits, scheduling), excluding the action.
    pub overhead_ms: Option<f64>,
    /// Why the step's last attempt failed (kept when the step is later rolled back).
    #[serde(default)]
    pub error: Option<String>,
    /// What the rollback of this step did.
    #[serde(default)]
    pub rollback_detail: Option<String>,
    /// A retry is scheduled for this time (RFC 3339): after a restart it is re-armed.
    #[serde(default)]
    pub retry_due_at: Option<String>,
    /// Waiting for an operator's confirm until this time (RFC 3339), then the step fails.
    #[serde(default)]
    pub confirm_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimelineEntryV1 {
    pub at: String,
    pub event: String,
    pub detail: String,
}

/// A standing pre-approval of a drill file, bound to the drill's digest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StandingApprovalV1 {
    pub v: u32,
    pub drill: String,
    pub user: String,
    pub roles: Vec<String>,
    /// The drill digest the person approved.
    pub digest: String,
    pub at: String,
    pub comment: String,
}

/// A person's decision on one live drill run, given before its fault.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunApprovalV1 {
    pub user: String,
    pub roles: Vec<String>,
    /// `approve` or `reject`.
    pub decision: String,
    /// The drill digest the person read (always the run's digest: others are refused).
    pub digest: String,
    pub at: String,
    pub comment: String,
}

/// One drill run, or a scheduled slot that was missed or skipped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DrillRunRecordV1 {
    pub v: u32,
    /// UUIDv7: sorts by creation time.
    pub id: String,
    pub drill: String,
    pub digest: String,
    /// `on_demand` or `schedule`.
    pub trigger: String,
    pub requested_by: String,
    /// `awaiting_approval`, `running`, `finished`, `aborted`, `failed`, `interrupted`,
    /// `rejected`, `expired`, `missed`, `skipped`.
    pub state: String,
    pub phase: String,
    pub scheduled_for: Option<String>,
    /// Live drills: the decisions of people on this run before its fault. Records written
    /// before runs were approved have none.
    #[serde(default)]
    pub approvals: Vec<RunApprovalV1>,
    /// Live drills: when a run still awaiting approval expires (RFC 3339).
    #[serde(default)]
    pub approval_deadline: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub execution: Option<String>,
    pub cleanup_execution: Option<String>,
    pub error: Option<String>,
    pub verdict: Option<String>,
    /// `niledr_drills::DrillReport` as JSON.
    pub report: Option<serde_json::Value>,
    pub notes: Vec<TimelineEntryV1>,
}
