//! Notifications out: the outbox and its delivery. `facts.rs` reads what a store commit
//! announces (an execution's transition, an approval, a failed step, a drill's verdict) from
//! the record and the audit entries of that same commit; `Outbox` turns each fact into one
//! `NotificationV1` per receiver that wants its kind, written in that commit (so a crash can
//! neither lose nor duplicate it); `worker.rs` delivers them off the event loop (one task per
//! receiver, in order, with backoff, every attempt audited); `payload.rs` builds the
//! Slack-compatible webhook body and the PagerDuty Events v2 body; `backoff.rs` the retry delays.
//! What is guaranteed is written down in `docs/notifications.md`.

pub mod backoff;
pub mod facts;
pub mod payload;
pub mod view;
pub mod worker;

use std::sync::{Arc, OnceLock};

use crate::config::notifications::NotificationsConfig;
use crate::records::{DrillRunRecordV1, ExecutionRecordV1, NotificationV1};
use crate::store::AuditEvent;
pub use facts::Fact;

/// What a receiver can be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A proposal waits for approval (says who is still needed).
    ProposalWaiting,
    /// A person approved (says who is still needed, or that it starts).
    ApprovalGiven,
    StepFailed,
    /// An execution stopped for a person (or a manual step waits for a confirm).
    NeedsOperator,
    Succeeded,
    /// Any other end: failed, rolled back, cancelled, rejected, expired.
    Ended,
    DrillVerdict,
}

const ALL: [EventKind; 7] = [
    EventKind::ProposalWaiting,
    EventKind::ApprovalGiven,
    EventKind::StepFailed,
    EventKind::NeedsOperator,
    EventKind::Succeeded,
    EventKind::Ended,
    EventKind::DrillVerdict,
];

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ProposalWaiting => "proposal_waiting",
            EventKind::ApprovalGiven => "approval_given",
            EventKind::StepFailed => "step_failed",
            EventKind::NeedsOperator => "needs_operator",
            EventKind::Succeeded => "succeeded",
            EventKind::Ended => "ended",
            EventKind::DrillVerdict => "drill_verdict",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Every kind, comma-separated (for error messages and docs).
    pub fn names() -> String {
        ALL.map(EventKind::as_str).join(", ")
    }
}

/// Turns committed facts into outbox entries and wakes the delivery worker. Empty (nothing
/// enqueued) until `configure` is called with the config's receivers.
pub struct Outbox {
    config: OnceLock<Arc<NotificationsConfig>>,
    /// The console's base URL for links in messages.
    console: OnceLock<String>,
    /// Bumped after every commit that enqueued something: a watch never misses a wake.
    wake: tokio::sync::watch::Sender<u64>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            config: OnceLock::new(),
            console: OnceLock::new(),
            wake: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Outbox {
    pub fn configure(&self, config: Arc<NotificationsConfig>, console: String) {
        let _ = self.config.set(config);
        let _ = self.console.set(console);
    }

    /// Outbox entries for an execution commit (none when no receiver wants them).
    pub fn for_execution(
        &self,
        rec: &ExecutionRecordV1,
        audit: &[AuditEvent<'_>],
    ) -> Vec<NotificationV1> {
        match (self.config.get(), self.console.get()) {
            (Some(c), Some(console)) if !c.receivers.is_empty() => {
                entries(c, facts::for_execution(rec, audit, console))
            }
            _ => Vec::new(),
        }
    }

    /// Outbox entries for a drill run commit.
    pub fn for_drill_run(
        &self,
        rec: &DrillRunRecordV1,
        audit: &[AuditEvent<'_>],
    ) -> Vec<NotificationV1> {
        match (self.config.get(), self.console.get()) {
            (Some(c), Some(console)) if !c.receivers.is_empty() => {
                entries(c, facts::for_drill_run(rec, audit, console))
            }
            _ => Vec::new(),
        }
    }

    /// Called after a commit that wrote `n` entries.
    pub fn enqueued(&self, n: usize) {
        if n > 0 {
            self.wake.send_modify(|c| *c = c.wrapping_add(1));
        }
    }

    /// A delivery task's wake-up: `changed()` resolves after the next enqueue.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

/// One entry per (fact, receiver that wants its kind), ids in order.
fn entries(config: &NotificationsConfig, facts: Vec<Fact>) -> Vec<NotificationV1> {
    let now = jiff::Timestamp::now().to_string();
    let mut out = Vec::new();
    for f in facts {
        for r in config
            .receivers
            .iter()
            .filter(|r| r.events.contains(&f.kind))
        {
            out.push(NotificationV1 {
                v: 1,
                id: uuid::Uuid::now_v7().to_string(),
                receiver: r.name.clone(),
                event: f.kind.as_str().to_string(),
                subject: f.subject.clone(),
                dedup_key: f.dedup_key.clone(),
                action: f.action.as_str().to_string(),
                severity: f.severity.to_string(),
                summary: f.summary.clone(),
                details: f.details.clone(),
                link: f.link.clone(),
                created_at: now.clone(),
                state: "pending".into(),
                attempts: 0,
                next_attempt_at: now.clone(),
                last_error: None,
                delivered_at: None,
                in_flight_by: None,
            });
        }
    }
    out
}
