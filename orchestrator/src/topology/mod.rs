//! The live topology, not the configured one: where the PostgreSQL primary, the Redis master
//! and each DNS name are now (`derive`, pure), kept current by the event loop (`tracker`) and
//! persisted so a restart does not revert; a cold site's health from its backups (`backups`);
//! maintenance mode (`maintenance`); the views the API and load balancers read (`views`).

pub mod backups;
pub mod derive;
pub mod maintenance;
mod metrics;
pub mod tracker;
pub mod views;

#[cfg(test)]
mod derive_tests;

use std::collections::BTreeMap;
use std::sync::RwLock;

pub use derive::LiveTopology;
pub use tracker::Tracker;

/// What the event loop (and the maintenance commands) publish for everyone else to read.
#[derive(Debug, Default)]
pub struct Published {
    pub live: RwLock<LiveTopology>,
    /// Cold site → its backups' freshness, as last checked.
    pub backups: RwLock<BTreeMap<String, backups::Freshness>>,
    pub paused: RwLock<maintenance::PauseV1>,
}

impl Published {
    pub fn live(&self) -> LiveTopology {
        self.live.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// Maintenance mode: triggers stay quiet.
    pub fn triggers_paused(&self) -> bool {
        self.paused.read().map(|p| p.paused).unwrap_or(false)
    }

    pub fn paused(&self) -> maintenance::PauseV1 {
        self.paused.read().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn set_paused(&self, p: maintenance::PauseV1) {
        metrics::paused(p.paused);
        if let Ok(mut g) = self.paused.write() {
            *g = p;
        }
    }

    pub fn freshness(&self, site: &str) -> Option<backups::Freshness> {
        self.backups.read().ok()?.get(site).cloned()
    }
}
