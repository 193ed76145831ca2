//! The `[drills]` section: drill directories, the host agent that injects faults, announcement
//! lead time and the canary writer's names, credentials and rate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use niledr_probes::ProbeSpec;
use toml::Spanned;

use super::raw::RawDrills;
use super::{ConfigError, DnsConfig, Loader, Service};

/// The canary writes at least this often per store (DESIGN.md: ≥ 100 Hz).
pub const MIN_CANARY_RATE: u32 = 100;
const DEFAULT_ANNOUNCE: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Debug, Default)]
pub struct DrillsConfig {
    pub dirs: Vec<PathBuf>,
    /// Base URL of the host agent (`None`: drills that need a fault cannot run).
    pub agent: Option<String>,
    pub agent_token: Option<String>,
    pub announce_before: Duration,
    pub canary_rate: u32,
    pub canary_postgres: Option<CanaryTarget>,
    pub canary_redis: Option<CanaryTarget>,
}

/// A name the canary writes through, and the service whose credentials and port it uses.
#[derive(Clone, Debug)]
pub struct CanaryTarget {
    pub name: String,
    pub via: String,
}

impl Loader<'_> {
    pub(super) fn drills(
        &self,
        raw: Option<&Spanned<RawDrills>>,
        services: &BTreeMap<String, Service>,
        dns: Option<&DnsConfig>,
    ) -> Result<DrillsConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(DrillsConfig {
                announce_before: DEFAULT_ANNOUNCE,
                canary_rate: MIN_CANARY_RATE,
                ..DrillsConfig::default()
            });
        };
        let table = raw.span();
        let r = raw.get_ref();
        let agent = match &r.agent {
            None => None,
            Some(a) => {
                let url = a.get_ref().trim_end_matches('/').to_string();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(self.err(
                        a.span(),
                        format!("agent {url:?} must be an http:// or https:// URL"),
                    ));
                }
                Some(url)
            }
        };
        let agent_token = match &r.agent_token_file {
            None => None,
            Some(f) => {
                let p = self.resolve(f.get_ref());
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    self.err(
                        f.span(),
                        format!("cannot read agent token file {}: {e}", p.display()),
                    )
                })?;
                Some(text.trim().to_string())
            }
        };
        let canary_rate = match &r.canary_rate {
            None => MIN_CANARY_RATE,
            Some(v) if *v.get_ref() < MIN_CANARY_RATE || *v.get_ref() > 10_000 => {
                return Err(self.err(
                    v.span(),
                    format!(
                        "canary_rate {} is out of range: write {MIN_CANARY_RATE}..10000 writes per second",
                        v.get_ref()
                    ),
                ));
            }
            Some(v) => *v.get_ref(),
        };
        let canary_postgres = self.canary_target(
            (&r.canary_postgres, &r.canary_postgres_via),
            "postgres",
            services,
            dns,
            table.clone(),
        )?;
        let canary_redis = self.canary_target(
            (&r.canary_redis, &r.canary_redis_via),
            "redis",
            services,
            dns,
            table,
        )?;
        Ok(DrillsConfig {
            dirs: r.dirs.iter().map(|d| self.resolve(d.get_ref())).collect(),
            agent,
            agent_token,
            announce_before: r
                .announce_before
                .as_ref()
                .map_or(DEFAULT_ANNOUNCE, |d| d.get_ref().0),
            canary_rate,
            canary_postgres,
            canary_redis,
        })
    }

    fn canary_target(
        &self,
        (name, via): (&Option<Spanned<String>>, &Option<Spanned<String>>),
        kind: &str,
        services: &BTreeMap<String, Service>,
        dns: Option<&DnsConfig>,
        table: std::ops::Range<usize>,
    ) -> Result<Option<CanaryTarget>, ConfigError> {
        let (name, via) = match (name, via) {
            (None, None) => return Ok(None),
            (Some(n), Some(v)) => (n, v),
            (Some(n), None) => {
                return Err(self.err(
                    n.span(),
                    format!("canary_{kind} needs canary_{kind}_via: the {kind} service whose credentials and port the canary uses"),
                ));
            }
            (None, Some(_)) => {
                return Err(self.err(
                    table,
                    format!("canary_{kind}_via is set but canary_{kind} (the service name to write through) is not"),
                ));
            }
        };
        let Some(zone) = dns.map(|d| d.zone.as_str()) else {
            return Err(self.err(
                name.span(),
                "the canary resolves its names at the authoritative DNS: add a [dns] section",
            ));
        };
        if !name.get_ref().ends_with('.') || !name.get_ref().ends_with(zone) {
            return Err(self.err(
                name.span(),
                format!(
                    "canary name {:?} must be fully qualified and inside the zone {zone:?}",
                    name.get_ref()
                ),
            ));
        }
        let fits = services.get(via.get_ref()).is_some_and(|s| match &s.spec {
            ProbeSpec::Postgres(_) => kind == "postgres",
            ProbeSpec::Redis(_) => kind == "redis",
            _ => false,
        });
        if !fits {
            let known: Vec<&str> = services
                .values()
                .filter(|s| {
                    matches!(
                        (&s.spec, kind),
                        (ProbeSpec::Postgres(_), "postgres") | (ProbeSpec::Redis(_), "redis")
                    )
                })
                .map(|s| s.id.as_str())
                .collect();
            return Err(self.err(
                via.span(),
                format!(
                    "canary_{kind}_via {:?} is not a {kind} service; {kind} services: {}",
                    via.get_ref(),
                    niledr_runbooks::validate::list(known)
                ),
            ));
        }
        Ok(Some(CanaryTarget {
            name: name.get_ref().clone(),
            via: via.get_ref().clone(),
        }))
    }
}
