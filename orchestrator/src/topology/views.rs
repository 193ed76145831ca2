//! The wire views of the live topology for `api.rs`: `GET /api/v1/topology`, each site's
//! current role and backups, and the load-balancer answers (`up` → 200, anything else → 503).

use niledr_probes::{HealthModel, Observation, ServiceHealth, Status};
use niledr_web::types::{
    BackupFreshnessView, DnsPlacementView, LbHealthView, PlacementView, SiteRoleView, TopologyView,
};

use super::backups::Freshness;
use super::{LiveTopology, Published};
use crate::config::Config;

fn secs(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| d.as_secs())
}

pub fn freshness_view(f: &Freshness) -> BackupFreshnessView {
    let base = f
        .scan
        .base_backup
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .and_then(|o| o.as_ref());
    let wal = f
        .scan
        .wal_segment
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .and_then(|o| o.as_ref());
    BackupFreshnessView {
        status: f.status.to_string(),
        reason: f.reason.clone(),
        checked_at: f.checked_at.to_string(),
        base_backup: base.map(|(p, _)| p.display().to_string()),
        base_backup_at: base.map(|(_, t)| t.to_string()),
        base_backup_age_seconds: secs(f.base_backup_age()),
        max_base_backup_age_seconds: secs(f.objectives.max_base_backup_age),
        last_wal_segment: wal.map(|(n, _)| n.clone()),
        wal_archive_at: wal.map(|(_, t)| t.to_string()),
        wal_archive_age_seconds: secs(f.wal_archive_age()),
        max_wal_archive_age_seconds: secs(f.objectives.max_wal_archive_age),
        restore_tested_at: f.restore.as_ref().map(|r| r.at.to_string()),
        restore_drill: f.restore.as_ref().map(|r| r.drill.clone()),
        restore_drill_run: f.restore.as_ref().map(|r| r.run.clone()),
        restore_verdict: f.restore.as_ref().and_then(|r| r.verdict.clone()),
        max_restore_test_age_seconds: secs(f.objectives.max_restore_test_age),
    }
}

/// The role `site` holds now, falling back to the configured one before the first derivation.
pub fn current_role(live: &LiveTopology, config: &Config, site: &str) -> String {
    live.role(site)
        .map(str::to_string)
        .or_else(|| config.sites.get(site).map(|s| s.role.as_str().to_string()))
        .unwrap_or_default()
}

fn placement(model: &HealthModel, id: &Option<String>) -> Option<PlacementView> {
    let id = id.as_ref()?;
    let svc = model.services.get(id);
    Some(PlacementView {
        service: id.clone(),
        site: svc.and_then(|s| s.site.clone()),
        status: svc.map_or("unknown".into(), |s| s.status.to_string()),
    })
}

pub fn topology(config: &Config, published: &Published, model: &HealthModel) -> TopologyView {
    let live = published.live();
    TopologyView {
        postgres_primary: placement(model, &live.postgres_primary),
        redis_master: placement(model, &live.redis_master),
        dns: live
            .dns
            .iter()
            .map(|(name, d)| DnsPlacementView {
                name: name.clone(),
                service: d.service.clone(),
                expect: d.expect.iter().map(|a| a.to_string()).collect(),
                expect_site: d.expect_site.clone(),
                answers: d
                    .answers
                    .as_ref()
                    .map(|a| a.iter().map(|x| x.to_string()).collect()),
                answer_site: d.answer_site.clone(),
                matches: d.answers.as_ref() == Some(&d.expect),
            })
            .collect(),
        sites: config
            .sites
            .values()
            .map(|s| SiteRoleView {
                site: s.id.clone(),
                role: s.role.as_str().into(),
                current_role: current_role(&live, config, &s.id),
                status: model
                    .sites
                    .get(&s.id)
                    .map_or("unknown".into(), |h| h.status.to_string()),
            })
            .collect(),
        triggers: published.paused().view(),
    }
}

fn writable(svc: &ServiceHealth) -> bool {
    svc.status != Status::Down
        && svc.last.as_ref().is_some_and(|r| {
            r.ok && matches!(&r.observation, Observation::Postgres(pg) if !pg.in_recovery)
        })
}

/// `GET /api/v1/primary`: up when the live primary answers as a writable primary now.
pub fn primary(published: &Published, model: &HealthModel) -> LbHealthView {
    let live = published.live();
    if let Some(v) = unprobed_primary_site(&live, model) {
        return v;
    }
    let Some(id) = live.postgres_primary.clone() else {
        return LbHealthView {
            status: "unknown".into(),
            reason: "no PostgreSQL primary is known".into(),
            ..Default::default()
        };
    };
    let svc = model.services.get(&id);
    let up = svc.is_some_and(writable);
    LbHealthView {
        status: if up { "up" } else { "down" }.into(),
        site: svc.and_then(|s| s.site.clone()),
        service: Some(id.clone()),
        role: Some("primary".into()),
        reason: match (up, svc) {
            (true, Some(s)) => s.reason.clone(),
            (false, Some(s)) => format!(
                "{id} (the primary) is not writable now: {} ({})",
                s.status, s.reason
            ),
            _ => format!("{id} is not a probed service"),
        },
    }
}

/// The primary role is at a site with no PostgreSQL service configured (a cold site restored
/// by hand, DNS cut over to it): niledr cannot check that it takes writes, so it never says
/// `up`, and it names the site and what to configure rather than blaming the old primary.
fn unprobed_primary_site(live: &LiveTopology, model: &HealthModel) -> Option<LbHealthView> {
    let (site, _) = live.roles.iter().find(|(_, role)| *role == "primary")?;
    let has_postgres = model
        .services
        .values()
        .any(|s| s.kind == "postgres" && s.site.as_deref() == Some(site.as_str()));
    if has_postgres {
        return None;
    }
    Some(LbHealthView {
        status: "unknown".into(),
        site: Some(site.clone()),
        service: None,
        role: Some("primary".into()),
        reason: format!(
            "site {site} holds the primary role (traffic was cut over to it), but no PostgreSQL \
             service is configured at {site}, so niledr cannot check that it takes writes; add a \
             [services.<id>] kind = \"postgres\", site = \"{site}\" to have it probed"
        ),
    })
}

pub fn site(
    config: &Config,
    published: &Published,
    model: &HealthModel,
    id: &str,
) -> Option<LbHealthView> {
    let h = model.sites.get(id)?;
    Some(LbHealthView {
        status: h.status.to_string(),
        site: Some(id.to_string()),
        service: None,
        role: Some(current_role(&published.live(), config, id)),
        reason: h.reason.clone(),
    })
}

pub fn service(model: &HealthModel, id: &str) -> Option<LbHealthView> {
    let s = model.services.get(id)?;
    Some(LbHealthView {
        status: s.status.to_string(),
        site: s.site.clone(),
        service: Some(id.to_string()),
        role: None,
        reason: s.reason.clone(),
    })
}

#[cfg(test)]
mod tests {
    use niledr_probes::{HealthModel, ServiceHealth, Thresholds};

    use super::*;

    fn live(primary_site: &str) -> LiveTopology {
        LiveTopology {
            v: 1,
            postgres_primary: Some("khartoum-postgres".into()),
            redis_master: None,
            dns: Default::default(),
            roles: [("khartoum", "hot_standby"), ("dr-cold", "cold_standby")]
                .into_iter()
                .map(|(s, r)| {
                    let r = if s == primary_site { "primary" } else { r };
                    (s.to_string(), r.to_string())
                })
                .collect(),
        }
    }

    fn model(services: &[(&str, &str)]) -> HealthModel {
        let t = Thresholds {
            failure: 3,
            success: 2,
        };
        let now = jiff::Timestamp::now();
        HealthModel::new(
            ["khartoum".to_string(), "dr-cold".to_string()],
            services
                .iter()
                .map(|(id, site)| ServiceHealth::new(id, Some(site), "postgres", true, t, now)),
            now,
        )
    }

    /// A cold site activated by hand (no PostgreSQL configured there) is named as the primary
    /// site, never reported `up`, and the old primary is not blamed.
    #[test]
    fn a_primary_site_without_postgres_is_named_and_never_up() {
        let m = model(&[("khartoum-postgres", "khartoum")]);
        let v = unprobed_primary_site(&live("dr-cold"), &m).expect("the cold site is named");
        assert_eq!(
            (v.status.as_str(), v.site.as_deref()),
            ("unknown", Some("dr-cold"))
        );
        assert!(
            v.reason
                .contains("no PostgreSQL service is configured at dr-cold"),
            "{}",
            v.reason
        );
        // With a PostgreSQL service there, or the primary at a site that has one, the probes
        // decide as usual.
        let m = model(&[
            ("khartoum-postgres", "khartoum"),
            ("dr-postgres", "dr-cold"),
        ]);
        assert!(unprobed_primary_site(&live("dr-cold"), &m).is_none());
        assert!(unprobed_primary_site(&live("khartoum"), &m).is_none());
    }
}
