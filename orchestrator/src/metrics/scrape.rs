//! Gauges read from the daemon's state when `/metrics` is scraped: readiness, each site's
//! status and role, each service's static facts, cluster leadership. Reading at scrape time keeps them exact without a
//! writer of their own.

use std::sync::atomic::Ordering;

use metrics::gauge;

use super::families as f;
use super::probes::one_hot;
use crate::api::DaemonBackend;
use crate::config::SiteRole;

/// Every role a site can have (one-hot in `niledr_site_role`).
const ROLES: [SiteRole; 3] = [
    SiteRole::Primary,
    SiteRole::HotStandby,
    SiteRole::ColdStandby,
];

/// Set the scrape-time gauges from `b`'s state.
pub fn refresh(b: &DaemonBackend) {
    gauge!(f::READY).set(if b.shared.ready.load(Ordering::Relaxed) {
        1.0
    } else {
        0.0
    });
    {
        let model = b.shared.model.read().unwrap_or_else(|p| p.into_inner());
        for site in model.sites.values() {
            one_hot(f::SITE_STATUS, "site", &site.id, site.status);
        }
    }
    for s in b.config.services.values() {
        gauge!(
            f::SERVICE_INFO,
            "service" => s.id.clone(),
            "site" => s.site.clone().unwrap_or_default(),
            "kind" => s.spec.kind(),
            "critical" => if s.critical { "true" } else { "false" }
        )
        .set(1.0);
    }
    for (site, kind, role) in site_roles(b) {
        for r in ROLES {
            let hit = r.as_str() == role;
            gauge!(f::SITE_ROLE, "site" => site.clone(), "role" => r.as_str(), "kind" => kind)
                .set(if hit { 1.0 } else { 0.0 });
        }
    }
    if let Some(c) = &b.cluster {
        let view = c.view();
        gauge!(f::CLUSTER_LEADER).set(if c.is_leader() { 1.0 } else { 0.0 });
        gauge!(f::CLUSTER_LEADER_KNOWN).set(if view.leader.is_some() { 1.0 } else { 0.0 });
        gauge!(f::CLUSTER_MEMBERS).set(view.members.len() as f64);
    }
}

/// (site, kind, role) for `niledr_site_role`: `kind="configured"`, from the config. The role
/// a site holds now (`kind="current"`) is recorded by the live topology when it changes.
fn site_roles(b: &DaemonBackend) -> Vec<(String, &'static str, String)> {
    b.config
        .sites
        .values()
        .map(|s| (s.id.clone(), "configured", s.role.as_str().to_string()))
        .collect()
}
