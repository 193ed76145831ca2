//! The state the API, steps and drills read and only the event loop writes: the health
//! model and the daemon's readiness.

use std::sync::RwLock;
use std::sync::atomic::AtomicBool;

use niledr_probes::HealthModel;

pub struct Shared {
    pub model: RwLock<HealthModel>,
    pub ready: AtomicBool,
}
