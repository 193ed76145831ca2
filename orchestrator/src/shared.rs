//! The state the API, steps and drills read and only the event loop writes: the health
//! model and the daemon's readiness; and whether this instance acts (always single-node,
//! while it leads in cluster mode).

use std::sync::RwLock;
use std::sync::atomic::AtomicBool;

use niledr_probes::HealthModel;

pub struct Shared {
    pub model: RwLock<HealthModel>,
    pub ready: AtomicBool,
    /// Cluster mode: leadership and what this instance knows of the other members.
    pub cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
    /// The platform's degradation level as the DNS record answers it.
    pub platform: crate::platform::PlatformWatch,
    /// Firing pager alerts per service (written by the engine, `engine/hooks.rs`).
    pub alerts:
        RwLock<std::collections::BTreeMap<String, Vec<niledr_web::types::AlertEvidenceView>>>,
    /// The live topology, cold-site freshness and maintenance mode (`crate::topology`).
    pub topology: crate::topology::Published,
}

impl Shared {
    /// Whether this instance may act (run the drill scheduler, start drills, executions).
    pub fn acts(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.is_leader())
    }
}
