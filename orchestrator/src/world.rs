//! Builds what the pure runbook logic needs from the live daemon: the `Catalog` (sites,
//! services, connection-string targets, DNS names, from the config) and a `WorldSnapshot`
//! (what the probes last saw, what the connection-string targets hold now).

use niledr_probes::{HealthModel, Observation};
use niledr_runbooks::world::{DnsObservation, ObservedRole, ServiceObservation, WorldSnapshot};
use niledr_runbooks::{Catalog, ConnstrKind, ServiceKind, SiteRole};

use crate::config::{self, Config, ConnstrTarget, Kind};

pub fn catalog(config: &Config) -> Catalog {
    let mut c = Catalog::default();
    for site in config.sites.values() {
        let role = match site.role {
            config::SiteRole::Primary => SiteRole::Primary,
            config::SiteRole::HotStandby => SiteRole::HotStandby,
            config::SiteRole::ColdStandby => SiteRole::ColdStandby,
        };
        c = c.with_site(&site.id, role, &site.country);
        if let (Some(addr), Some(s)) = (site.address, c.sites.get_mut(&site.id)) {
            s.address = Some(addr.to_string());
        }
    }
    for svc in config.services.values() {
        c = match (&svc.kind, &svc.spec) {
            (Kind::Dns, niledr_probes::ProbeSpec::Dns(d)) => c.with_dns_service(&svc.id, &d.name),
            (kind, spec) => {
                let address = match spec {
                    niledr_probes::ProbeSpec::Postgres(p) => Some(p.endpoint.address.to_string()),
                    niledr_probes::ProbeSpec::Redis(r) => Some(r.endpoint.address.to_string()),
                    niledr_probes::ProbeSpec::Tcp { address } => Some(address.to_string()),
                    _ => None,
                };
                c.with_service(
                    &svc.id,
                    service_kind(*kind),
                    svc.site.as_deref(),
                    address.as_deref(),
                )
            }
        };
    }
    for (id, t) in &config.connstr {
        let kind = match t {
            ConnstrTarget::File { .. } => ConnstrKind::File,
            ConnstrTarget::Pgbouncer { .. } => ConnstrKind::Pgbouncer,
        };
        c = c.with_connstr(id, kind);
    }
    c.platform_mode_record = config.dns.as_ref().map(|d| d.platform_mode_record.clone());
    c
}

fn service_kind(k: Kind) -> ServiceKind {
    match k {
        Kind::Postgres => ServiceKind::Postgres,
        Kind::Redis => ServiceKind::Redis,
        Kind::Http => ServiceKind::Http,
        Kind::Tcp => ServiceKind::Tcp,
        Kind::Dns => ServiceKind::Dns,
    }
}

/// The world as the probes last saw it, plus the current connection-string values and the
/// platform level the watcher last read.
pub fn snapshot(config: &Config, model: &HealthModel, platform_level: Option<u8>) -> WorldSnapshot {
    let mut w = WorldSnapshot {
        platform_level,
        ..WorldSnapshot::default()
    };
    for svc in model.services.values() {
        let reachable = svc.last.as_ref().is_some_and(|r| r.ok);
        let mut obs = ServiceObservation {
            reachable,
            ..Default::default()
        };
        if let Some(cfg) = config.services.get(&svc.id) {
            obs.address = match &cfg.spec {
                niledr_probes::ProbeSpec::Postgres(p) => Some(p.endpoint.address.to_string()),
                niledr_probes::ProbeSpec::Redis(r) => Some(r.endpoint.address.to_string()),
                _ => None,
            };
        }
        match svc.last.as_ref().filter(|r| r.ok).map(|r| &r.observation) {
            Some(Observation::Postgres(pg)) => {
                obs.role = Some(if pg.in_recovery {
                    ObservedRole::Standby
                } else {
                    ObservedRole::Primary
                });
                obs.timeline = pg.timeline.and_then(|t| u32::try_from(t).ok());
                obs.lsn = pg
                    .replay_lsn
                    .filter(|_| pg.in_recovery)
                    .or(pg.current_lsn)
                    .map(niledr_probes::result::format_lsn);
                obs.lag_bytes = pg.lag_bytes;
                obs.lag_seconds = pg.replay_delay_seconds;
            }
            Some(Observation::Redis(r)) => {
                obs.role = Some(if r.role == "master" {
                    ObservedRole::Master
                } else {
                    ObservedRole::Replica
                });
                obs.lag_bytes = r.offset_lag;
            }
            Some(Observation::Dns(d)) => {
                w.dns.insert(
                    d.name.clone(),
                    DnsObservation {
                        answers: d
                            .servers
                            .iter()
                            .filter(|a| a.error.is_none())
                            .map(|a| {
                                (
                                    a.server.to_string(),
                                    a.answers.iter().map(|x| x.to_string()).collect(),
                                )
                            })
                            .collect(),
                        ttl: d.servers.iter().filter_map(|a| a.ttl).min(),
                    },
                );
            }
            _ => {}
        }
        w.services.insert(svc.id.clone(), obs);
    }
    for (id, t) in &config.connstr {
        let value = match t {
            ConnstrTarget::File { path, .. } => std::fs::read_to_string(path).ok(),
            ConnstrTarget::Pgbouncer { ini, database, .. } => {
                crate::actions::pgbouncer::read_entry(ini, database)
                    .ok()
                    .flatten()
            }
        };
        w.connstr.insert(id.clone(), value);
    }
    w
}
