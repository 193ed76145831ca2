//! What a step needs from the daemon (config: addresses, credentials; live health; the
//! store), and how a step's failure is described.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use niledr_probes::ProbeSpec;
use niledr_runbooks::Endpoint;

use crate::actions::{self, pgbouncer::PgBouncerAdmin, postgres::PgTarget, redis::RedisTarget};
use crate::config::{Config, ConnstrTarget};
use crate::shared::Shared;

pub struct StepContext {
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub store: Arc<crate::store::Store>,
}

/// A failed step says whether trying again could help, and whether it is certain it changed
/// nothing (an irreversible step that fails untouched does not pass the point of no return).
#[derive(Debug)]
pub struct StepError {
    pub error: String,
    pub retryable: bool,
    pub untouched: bool,
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError {
            error: format!("{e:#}"),
            retryable: true,
            untouched: false,
        }
    }
}

/// Not worth retrying.
pub fn fatal(msg: impl Into<String>) -> StepError {
    StepError {
        error: msg.into(),
        retryable: false,
        untouched: false,
    }
}

/// A newer fencing generation holds the target: this execution is stale, never retry.
pub fn stale_fatal(e: anyhow::Error) -> StepError {
    let stale = e.chain().any(|c| {
        c.downcast_ref::<crate::actions::dns::StaleGeneration>()
            .is_some()
    });
    StepError {
        error: format!("{e:#}"),
        retryable: !stale,
        untouched: stale,
    }
}

/// Failed before acting: certain nothing changed (retrying may help).
pub fn untouched(e: anyhow::Error) -> StepError {
    StepError {
        error: format!("{e:#}"),
        retryable: true,
        untouched: true,
    }
}

/// What a step ended with when it did not fail.
#[derive(Debug)]
pub enum StepOutcome {
    /// Done; a one-line account of what it found and did.
    Done(String),
    /// It cannot decide alone (an old primary that does not answer, without evidence that it
    /// is gone): an operator's confirm, within the step's timeout, lets it proceed.
    AwaitConfirm(String),
}

impl StepContext {
    pub fn pg(&self, service: &str) -> Result<PgTarget> {
        pg_target(&self.config, service)
    }

    pub fn redis(&self, service: &str) -> Result<RedisTarget> {
        match self.config.services.get(service).map(|s| &s.spec) {
            Some(ProbeSpec::Redis(r)) => Ok(RedisTarget::new(
                r.endpoint.address.ip().to_string(),
                r.endpoint.address.port(),
                r.endpoint.password.clone(),
            )),
            _ => bail!("{service} is not a redis service in the config"),
        }
    }

    pub fn service_addr(&self, service: &str) -> Result<SocketAddr> {
        match self.config.services.get(service).map(|s| &s.spec) {
            Some(ProbeSpec::Postgres(p)) => Ok(p.endpoint.address),
            Some(ProbeSpec::Redis(r)) => Ok(r.endpoint.address),
            Some(ProbeSpec::Tcp { address }) => Ok(*address),
            _ => bail!("{service} has no address in the config"),
        }
    }

    /// Where a DNS name should point for an endpoint.
    pub fn endpoint_ip(&self, e: &Endpoint) -> Result<Ipv4Addr> {
        match e {
            Endpoint::Site(site) => self
                .config
                .sites
                .get(site)
                .and_then(|s| s.address)
                .with_context(|| format!("site {site} has no `address` in the config")),
            Endpoint::Service(svc) => match self.service_addr(svc)?.ip() {
                std::net::IpAddr::V4(v4) => Ok(v4),
                other => bail!("{svc} has a non-IPv4 address {other}"),
            },
        }
    }

    pub fn dns(&self) -> Result<&crate::config::DnsConfig> {
        self.config
            .dns
            .as_ref()
            .context("the config has no [dns] section")
    }

    /// The server RFC 2136 updates are sent to (the first configured).
    pub fn dns_primary(&self) -> Result<SocketAddr, StepError> {
        Ok(*self
            .dns()?
            .servers
            .first()
            .ok_or_else(|| fatal("no DNS servers"))?)
    }

    pub fn tsig(&self) -> Result<&crate::config::tsig::TsigKey> {
        self.dns()?
            .tsig
            .as_ref()
            .context("[dns] has no tsig_key_file")
    }

    pub fn connstr_target(&self, target: &str) -> Result<&ConnstrTarget> {
        self.config
            .connstr
            .get(target)
            .with_context(|| format!("no connstr target {target} in the config"))
    }

    pub fn connstr_value(&self, target: &str, service: &str) -> Result<(String, &ConnstrTarget)> {
        let t = self.connstr_target(target)?;
        let addr = self.service_addr(service)?;
        let value = match t {
            ConnstrTarget::File { template, .. } => template
                .replace("{host}", &addr.ip().to_string())
                .replace("{port}", &addr.port().to_string()),
            ConnstrTarget::Pgbouncer { dbname, .. } => {
                format!("host={} port={} dbname={dbname}", addr.ip(), addr.port())
            }
        };
        Ok((value, t))
    }

    pub fn current_connstr(&self, t: &ConnstrTarget) -> Result<String> {
        Ok(match t {
            ConnstrTarget::File { path, .. } => std::fs::read_to_string(path).unwrap_or_default(),
            ConnstrTarget::Pgbouncer { ini, database, .. } => {
                actions::pgbouncer::read_entry(ini, database)?.unwrap_or_default()
            }
        })
    }
}

pub fn admin(t: &ConnstrTarget) -> Option<PgBouncerAdmin> {
    match t {
        ConnstrTarget::Pgbouncer {
            admin,
            user,
            password,
            ..
        } => Some(PgBouncerAdmin {
            host: admin.ip().to_string(),
            port: admin.port(),
            user: user.clone(),
            password: password.clone().unwrap_or_default(),
        }),
        ConnstrTarget::File { .. } => None,
    }
}

/// How niledr reaches PostgreSQL service `service` of the config.
pub fn pg_target(config: &crate::config::Config, service: &str) -> Result<PgTarget> {
    match config.services.get(service).map(|s| &s.spec) {
        Some(ProbeSpec::Postgres(p)) => Ok(PgTarget::new(
            p.endpoint.address.ip().to_string(),
            p.endpoint.address.port(),
            p.endpoint.user.clone(),
            p.endpoint.password.clone().unwrap_or_default(),
        )
        .with_database(p.endpoint.database.clone())),
        _ => bail!("{service} is not a postgres service in the config"),
    }
}
