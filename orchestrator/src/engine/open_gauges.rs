//! The engine's metrics: open executions and pending approvals from the executions it holds
//! (on every tick), cleared when the engine stops (a deposed leader reports none).

use super::Engine;
use crate::metrics::{self, OpenExecution};

impl Engine {
    /// Set the open-execution and pending-approval gauges from `live`.
    pub(super) fn publish_gauges(&self) {
        let open = self.live.values().map(|l| OpenExecution {
            runbook: &l.record.runbook,
            state: l.machine.state().name(),
            created_ms: created_ms(&l.record.created_at),
        });
        metrics::open_executions(
            self.runbooks.keys().map(String::as_str),
            open,
            self.clock.now_ms(),
        );
    }

    /// This engine stops acting: every open-execution gauge reads 0 on this instance.
    pub fn clear_gauges(&self) {
        metrics::open_executions(self.runbooks.keys().map(String::as_str), [], 0);
    }
}

/// The proposal's creation time in unix ms (0 if the record's time does not parse, which
/// reads as "waiting since long ago": an alert, not a silence).
fn created_ms(created_at: &str) -> u64 {
    created_at
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
        .unwrap_or(0)
}
