//! Wire types of a plan (`GET /api/v1/runbooks/{name}/plan`, `ExecutionView.plan`) and of an
//! approval policy: what approvers read before they sign the digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A runbook resolved against the live world: every step with its targets, guards and
/// before → after, the warnings, the approval policy and the digest approvals are bound to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlanView {
    pub runbook: String,
    /// `unplanned` (the primary is gone: lag gates decide how much may be lost) or `planned`
    /// (both sides up: the standby catches up first).
    pub mode: String,
    /// Hex sha256 over the steps and their resolved targets (not measurements); approvals name it.
    pub digest: String,
    pub steps: Vec<PlannedStepView>,
    /// What approvers must read (lag, stale observations, a stored plan that no longer loads).
    pub warnings: Vec<String>,
    /// Every guard passes or is unknown, and every step was checked ready.
    pub ready: bool,
    /// The services the execution locks.
    pub lock_scope: Vec<String>,
    pub approval: ApprovalPolicyView,
    /// The snapshot approvals are bound to: drift beyond the tolerance voids them at start.
    pub preconditions: PreconditionsView,
    /// The first irreversible step: before it a failure rolls back, from it on nothing is.
    pub point_of_no_return: Option<String>,
    /// Per step, checked live against the real world (empty in an execution's stored plan).
    pub readiness: Vec<ReadinessView>,
}

/// One step as planned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlannedStepView {
    /// Position in the runbook, from 0.
    pub index: usize,
    pub id: String,
    /// The step kind as written in the runbook (`postgres.promote`, `dns.cutover`, …).
    pub kind: String,
    pub summary: String,
    pub targets: Vec<PlanTargetView>,
    pub guards: Vec<GuardView>,
    /// Before → after of what the step changes.
    pub changes: Vec<ChangeView>,
    /// Observations worth showing that are not guards (e.g. a wait's condition right now).
    pub notes: Vec<String>,
    pub rollback: String,
    pub verification: String,
    pub timeout_ms: u64,
    pub retries: u32,
    pub backoff_ms: u64,
    /// The step is the point of no return or comes after it: a failure stops for an operator.
    pub after_point_of_no_return: bool,
}

/// A concrete thing a step touches, resolved from the catalog.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlanTargetView {
    /// `service`, `site`, `dns_name`, `connstr` or `url`.
    pub kind: String,
    pub id: String,
    pub address: Option<String>,
}

/// A guard judged on the probes' latest results.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct GuardView {
    pub check: String,
    /// `pass`, `fail` or `unknown` (not observed: the executor checks again before acting).
    pub outcome: String,
    pub why: String,
}

/// What a step changes (secrets in connection strings are masked).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChangeView {
    pub what: String,
    pub before: String,
    pub after: String,
}

/// Whether a step can run as planned, checked against the real world before anything is touched.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ReadinessView {
    pub step: String,
    pub ready: bool,
    pub why: String,
}

/// Who may approve, how many, which roles, for how long, and break-glass.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ApprovalPolicyView {
    /// Distinct approvers needed (never the requester).
    pub required: u32,
    /// Roles that must each be covered by a different approver (may be empty).
    pub roles: Vec<String>,
    pub expires_after_ms: u64,
    /// A single approver with a written reason may approve alone.
    pub break_glass: bool,
    /// A trigger's proposal runs without people.
    pub auto_approve: bool,
    pub tolerance: ToleranceView,
}

/// How much the preconditions may move between approval and start before approvals are void.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ToleranceView {
    /// Extra standby lag allowed on top of the lag the approvers saw.
    pub lag_bytes: u64,
    pub lag_seconds: u64,
}

/// The world as the approvers saw it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PreconditionsView {
    /// Data stores the runbook names, by service id.
    pub services: BTreeMap<String, ServicePreconditionView>,
    /// DNS name → every address the authoritative servers answered.
    pub dns: BTreeMap<String, Vec<String>>,
    /// Connection-string file → its content (secrets masked); `null` when unreadable.
    pub connstr: BTreeMap<String, Option<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ServicePreconditionView {
    pub reachable: bool,
    /// `primary`, `standby` (PostgreSQL), `master`, `replica` (Redis); `null`: not observed.
    pub role: Option<String>,
    pub timeline: Option<u32>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
}
