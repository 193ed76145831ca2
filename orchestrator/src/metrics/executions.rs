//! Execution metrics: executions ended by runbook and outcome, their duration, step
//! durations, and the gauges of open executions and pending approvals (set on the engine's
//! tick from the executions it holds).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use super::families as f;
use crate::records::ExecutionRecordV1;

/// The states of an execution that has not ended (`runbooks::State::is_terminal` is false).
pub const OPEN_STATES: [&str; 8] = [
    "proposed",
    "awaiting_approval",
    "approved",
    "running",
    "paused",
    "verifying",
    "rolling_back",
    "needs_operator",
];

/// The final states of an execution (`runbooks::State::is_terminal`).
pub const OUTCOMES: [&str; 6] = [
    "succeeded",
    "failed",
    "rolled_back",
    "cancelled",
    "rejected",
    "expired",
];

/// Every runbook's `niledr_executions_total` series at 0, so the first execution that ends
/// shows as an increase instead of a new series.
pub fn executions_init<'a>(runbooks: impl IntoIterator<Item = &'a str>) {
    for rb in runbooks {
        for outcome in OUTCOMES {
            counter!(f::EXECUTIONS, "runbook" => rb.to_string(), "outcome" => outcome).increment(0);
        }
    }
}

/// An execution reached its final state `outcome`.
pub fn execution_ended(rec: &ExecutionRecordV1, outcome: &str) {
    let labels = [
        ("runbook", rec.runbook.clone()),
        ("outcome", outcome.to_string()),
    ];
    counter!(f::EXECUTIONS, &labels).increment(1);
    if let Some(took) = ran_for(rec, jiff::Timestamp::now()) {
        histogram!(f::EXECUTION_DURATION, &labels).record(took.as_secs_f64());
    }
}

/// From the first transition into `running` (the journal's timeline) to `now`; `None` for an
/// execution that never ran (rejected, expired, cancelled before its start).
pub(super) fn ran_for(rec: &ExecutionRecordV1, now: jiff::Timestamp) -> Option<Duration> {
    let started: jiff::Timestamp = rec
        .timeline
        .iter()
        .find(|t| t.event.ends_with("→ running"))?
        .at
        .parse()
        .ok()?;
    now.duration_since(started).try_into().ok()
}

/// A step's action finished: `outcome` is the step record's state (`succeeded`, `failed`,
/// `rolled_back`, `rollback_failed`), `kind` its step kind.
pub fn step_finished(runbook: &str, kind: &str, outcome: &str, took: Duration) {
    histogram!(
        f::STEP_DURATION,
        "runbook" => runbook.to_string(),
        "kind" => kind.to_string(),
        "outcome" => outcome.to_string()
    )
    .record(took.as_secs_f64());
}

/// One open execution as the engine holds it.
pub struct OpenExecution<'a> {
    pub runbook: &'a str,
    pub state: &'a str,
    /// When it was proposed, in the engine's clock (unix ms).
    pub created_ms: u64,
}

/// Set the open-execution gauges for every runbook in `runbooks` (0 where none is open, so
/// alerts see a series, not an absence) from `open`, at engine time `now_ms`.
pub fn open_executions<'a>(
    runbooks: impl IntoIterator<Item = &'a str>,
    open: impl IntoIterator<Item = OpenExecution<'a>>,
    now_ms: u64,
) {
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut oldest: BTreeMap<&str, u64> = BTreeMap::new();
    let mut names: BTreeSet<&str> = runbooks.into_iter().collect();
    for e in open {
        names.insert(e.runbook);
        *counts.entry((e.runbook, e.state)).or_default() += 1;
        if e.state == "awaiting_approval" {
            let age = now_ms.saturating_sub(e.created_ms);
            let o = oldest.entry(e.runbook).or_default();
            *o = (*o).max(age);
        }
    }
    for rb in names {
        for st in OPEN_STATES {
            let n = counts.get(&(rb, st)).copied().unwrap_or(0);
            gauge!(f::OPEN_EXECUTIONS, "runbook" => rb.to_string(), "state" => st).set(n as f64);
        }
        let pending = counts.get(&(rb, "awaiting_approval")).copied().unwrap_or(0);
        gauge!(f::PENDING_APPROVALS, "runbook" => rb.to_string()).set(pending as f64);
        let age = oldest.get(rb).copied().unwrap_or(0);
        gauge!(f::PENDING_APPROVAL_AGE, "runbook" => rb.to_string()).set(age as f64 / 1000.0);
    }
}
