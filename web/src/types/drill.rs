//! Wire types of a drill's scenario and objectives and of a drill run's report: the measured
//! RTO with its phases, the RPO per store, and a verdict per objective.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the drill does at T0.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DrillScenarioView {
    /// `kill_primary_postgres`, `hang_primary_postgres`, `stop_redis`, `site_down`,
    /// `planned_switchover` or `cold_restore`.
    pub fault: String,
    /// A catalog service, or a catalog site for `site_down` / `cold_restore`.
    pub target: String,
    /// Standby WAL receipt paused this long before the fault, so that RPO > 0 is measured.
    pub lag_before_fault_ms: Option<u64>,
}

/// What the drill must achieve.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DrillObjectivesView {
    /// T0 → first acknowledged write through the production path.
    pub rto_ms: u64,
    /// Per store (`postgres`, `redis`): the span of acknowledged writes that may be lost.
    pub rpo_ms: BTreeMap<String, u64>,
    /// No acknowledged write may be lost at all (planned switchover).
    pub no_lost_writes: bool,
}

/// When a drill is stopped and rolled back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AbortPolicyView {
    /// Abort when elapsed since T0 exceeds `rto_factor × objectives.rto_ms`.
    pub rto_factor: f64,
    /// Abort when more acknowledged writes than this are lost (any store).
    pub max_lost_writes: Option<u64>,
}

/// A drill run's report (`DrillRunView.report`; `?format=md` gives it as Markdown).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DrillReportView {
    pub drill: String,
    pub digest: String,
    pub fault: String,
    pub target: String,
    pub runbook: String,
    /// When the fault was injected (RFC 3339).
    pub t0: String,
    pub finished_at: Option<String>,
    /// How every number is obtained.
    pub method: String,
    pub probe_interval_ms: u64,
    pub dns_ttl_s: u32,
    pub canary_hz: u32,
    pub objectives: DrillObjectivesView,
    pub abort_policy: AbortPolicyView,
    /// `null`: no recovery was observed.
    pub rto: Option<RtoMeasurementView>,
    pub rpo: Vec<StoreLossView>,
    /// Cold-site restore drills: what the restored database holds.
    pub freshness: Option<FreshnessView>,
    pub cleanup: Option<CleanupRunView>,
    /// Why the drill was stopped and rolled back, if it was.
    pub aborted: Option<String>,
    pub verdicts: Vec<VerdictLineView>,
    /// `met`, `missed`, `aborted` or `not_measured`.
    pub overall: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RtoMeasurementView {
    /// T0 → first acknowledged write through the production path.
    pub total_ms: u64,
    pub first_write_at: String,
    pub phases: RtoPhasesView,
}

/// Where the RTO went; `null`: the phase did not happen or was not observed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RtoPhasesView {
    /// T0 → the orchestrator declared the service down.
    pub detection_ms: Option<u64>,
    /// Waiting for approvals (≈ 0 with a standing approval).
    pub decision_ms: Option<u64>,
    pub execution: Vec<StepTimingView>,
    /// DNS answer changed → the canary's resolver saw the new address.
    pub dns_convergence_ms: Option<u64>,
    pub verification_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StepTimingView {
    pub step: String,
    pub ms: u64,
}

/// Acknowledged writes lost in one store, by the canary's sequence markers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StoreLossView {
    /// `postgres` or `redis`.
    pub store: String,
    /// Markers the canary saw acknowledged during the run.
    pub acknowledged: u64,
    /// Acknowledged markers missing on the new primary.
    pub lost: u64,
    pub lost_seqs: Vec<SeqRangeView>,
    pub first_lost_at: Option<String>,
    pub last_lost_at: Option<String>,
    /// The newest marker that survived before the loss.
    pub last_surviving_at: Option<String>,
    pub lag_bytes_at_t0: Option<u64>,
}

/// An inclusive run of sequence numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SeqRangeView {
    pub first: u64,
    pub last: u64,
}

/// Cold-site restore: what the restored database holds and how long activation took.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct FreshnessView {
    pub activation_ms: u64,
    pub newest_recoverable_seq: Option<u64>,
    pub newest_recoverable_at: Option<String>,
    /// T0 − newest recoverable marker.
    pub age_at_t0_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CleanupRunView {
    pub runbook: String,
    pub duration_ms: Option<u64>,
    /// e.g. `succeeded`, `failed: …`.
    pub outcome: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct VerdictLineView {
    /// `rto`, `rpo_postgres`, `rpo_redis`, `no_lost_writes`.
    pub objective: String,
    pub target: String,
    pub measured: String,
    /// `met`, `missed`, `aborted` or `not_measured`.
    pub verdict: String,
}
