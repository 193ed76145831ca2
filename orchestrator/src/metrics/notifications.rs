//! Notification metrics, for the outbox's delivery worker to call: attempts by receiver and
//! outcome, and what is still waiting per receiver.

use metrics::{counter, gauge};

use super::families as f;

/// One delivery attempt to `receiver` (a configured receiver name) ended with `outcome`:
/// `delivered`, `failed` (will be retried) or `gave_up` (no more attempts).
pub fn notification_attempt(receiver: &str, outcome: &'static str) {
    counter!(f::NOTIFICATIONS, "receiver" => receiver.to_string(), "outcome" => outcome)
        .increment(1);
}

/// Entries in the outbox not yet delivered to `receiver`.
pub fn notifications_pending(receiver: &str, pending: u64) {
    gauge!(f::NOTIFICATIONS_PENDING, "receiver" => receiver.to_string()).set(pending as f64);
}
