//! The topology's Prometheus metrics: maintenance mode, each site's current role and the cold
//! sites' backup ages (`niledr_cold_backup_age_seconds`, used by the shipped alert rules).

use metrics::{describe_gauge, gauge};

use super::backups::Freshness;
use super::derive::{COLD_STANDBY, HOT_STANDBY, LiveTopology, PRIMARY};

fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        describe_gauge!("niledr_triggers_paused", "1 while maintenance mode keeps runbook triggers quiet");
        describe_gauge!(
            "niledr_site_role",
            "1 for the role a site holds (kind=current: the live topology; kind=configured: the config)"
        );
        describe_gauge!(
            "niledr_cold_backup_age_seconds",
            "Age of a cold site's newest base backup (what=base_backup) and last archived WAL segment (what=wal_archive)"
        );
    });
}

pub fn paused(p: bool) {
    describe();
    gauge!("niledr_triggers_paused").set(if p { 1.0 } else { 0.0 });
}

pub fn roles(live: &LiveTopology) {
    describe();
    for (site, role) in &live.roles {
        for r in [PRIMARY, HOT_STANDBY, COLD_STANDBY] {
            gauge!("niledr_site_role", "site" => site.clone(), "role" => r, "kind" => "current")
                .set(if r == role { 1.0 } else { 0.0 });
        }
    }
}

pub fn backups(f: &Freshness) {
    describe();
    for (what, age) in [
        ("base_backup", f.base_backup_age()),
        ("wal_archive", f.wal_archive_age()),
    ] {
        if let Some(a) = age {
            gauge!("niledr_cold_backup_age_seconds", "site" => f.site.clone(), "what" => what)
                .set(a.as_secs_f64());
        }
    }
}
