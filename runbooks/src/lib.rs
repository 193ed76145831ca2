//! niledr-runbooks: pure logic for runbooks (schema and validation), plans, the execution state
//! machine and the approval policy. No I/O: text comes in as `&str`, time as unix millis.
//!
//! How the orchestrator uses it:
//! 1. `parse_runbook(path, text, &catalog)` for every file (errors render `FILE:LINE:COL`).
//! 2. `plan(&runbook, &world)` → `Plan` (targets, guards, before → after, warnings, `digest`,
//!    `preconditions`). Approvers read it; approvals carry `plan.digest`.
//! 3. `add_approval` / `status` decide; at start, `drift(&approved, &now, &policy.tolerance)`
//!    non-empty → `Event::PreconditionsDrifted`.
//! 4. `Machine::handle(&event)` → `Outbox`: journal `transitions`, then perform `effects`;
//!    persist the machine (serde) with each transition and resume it after a crash.
//!
//! Runbook files: top-level `name`, `description`, `mode = "unplanned" | "planned"`,
//! optional `services` (lock scope), `[approval]` (`required`, `roles`, `expires_after`,
//! `break_glass`, `auto_approve`, `[approval.tolerance]` `lag_bytes`/`lag_seconds`), optional
//! `[trigger]` (`service_down`, `for`, `standby`, `max_standby_lag_bytes`) and `[[steps]]`
//! (`id`, `kind`, kind parameters — see `StepKind::params` — plus `description`, `timeout`,
//! `retries`, `backoff`, `verify`, and `rollback = { kind = ..., ... }` or
//! `irreversible = true` + `reason`). The shipped files in `runbooks/nilecare/` are examples.

pub mod approval;
pub mod catalog;
pub mod error;
pub mod machine;
pub mod plan;
pub mod preconditions;
mod raw;
pub mod schema;
pub mod shipped;
pub mod validate;
pub mod world;

pub use approval::{
    Approval, ApprovalError, ApprovalPolicy, Decision, Status, Tolerance, add_approval, expires_at,
    status,
};
pub use catalog::{Catalog, CatalogService, CatalogSite, ConnstrKind, ServiceKind, SiteRole};
pub use error::RunbookError;
pub use machine::{
    Effect, Event, Execution, Level, Machine, Outbox, State, StepInfo, Transitioned, Undo,
};
pub use plan::{
    Change, Guard, GuardOutcome, Plan, PlannedStep, Readiness, Target, plan, point_of_no_return,
};
pub use preconditions::{Preconditions, ServicePrecondition, drift, preconditions};
pub use schema::{
    Action, Endpoint, FenceMode, Mode, OnUnreachable, Rollback, RollbackStep, Runbook, Step,
    StepKind, Trigger, WaitCondition,
};
pub use validate::{PHI_COUNTRY, parse_runbook};
pub use world::{DnsObservation, ObservedRole, ServiceObservation, WorldSnapshot};
