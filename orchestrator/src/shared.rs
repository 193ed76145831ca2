//! The state the API, steps and drills read and only the event loop writes: the health
//! model and the daemon's readiness; and whether this instance acts (always single-node,
//! while it leads in cluster mode).

use std::sync::RwLock;
use std::sync::atomic::AtomicBool;

use niledr_probes::HealthModel;

pub struct Shared {
    pub model: RwLock<HealthModel>,
    pub ready: AtomicBool,
    /// Cluster mode: this instance's hold on the leader key.
    pub leadership: Option<std::sync::Arc<crate::cluster::Leadership>>,
}

impl Shared {
    /// Whether this instance may act (run the drill scheduler, start drills, executions).
    pub fn acts(&self) -> bool {
        self.leadership.as_ref().is_none_or(|l| l.is_leader())
    }
}
