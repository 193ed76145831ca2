//! Runs one step's action (or its rollback) against the infrastructure. Every action is
//! idempotent and checks the world first, so a step found in doubt after a crash is simply run
//! again: a promoted standby reports "already promoted", a DNS name already holding the new
//! answer is left alone, a connection string already swapped is not swapped twice.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use niledr_probes::{ProbeSpec, Status};
use niledr_runbooks::{Action, Endpoint, FenceMode, WaitCondition};

use crate::actions::{self, pgbouncer::PgBouncerAdmin, postgres::PgTarget, redis::RedisTarget};
use crate::config::{Config, ConnstrTarget};
use crate::event_loop::Shared;

/// What a step needs from the daemon: config (addresses, credentials) and live health.
pub struct StepContext {
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub store: Arc<crate::store::Store>,
}

/// A failed step says whether trying again could help.
#[derive(Debug)]
pub struct StepError {
    pub error: String,
    pub retryable: bool,
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError {
            error: format!("{e:#}"),
            retryable: true,
        }
    }
}

fn fatal(msg: impl Into<String>) -> StepError {
    StepError {
        error: msg.into(),
        retryable: false,
    }
}

impl StepContext {
    fn pg(&self, service: &str) -> Result<PgTarget> {
        match self.config.services.get(service).map(|s| &s.spec) {
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

    fn redis(&self, service: &str) -> Result<RedisTarget> {
        match self.config.services.get(service).map(|s| &s.spec) {
            Some(ProbeSpec::Redis(r)) => Ok(RedisTarget::new(
                r.endpoint.address.ip().to_string(),
                r.endpoint.address.port(),
                r.endpoint.password.clone(),
            )),
            _ => bail!("{service} is not a redis service in the config"),
        }
    }

    fn service_addr(&self, service: &str) -> Result<SocketAddr> {
        match self.config.services.get(service).map(|s| &s.spec) {
            Some(ProbeSpec::Postgres(p)) => Ok(p.endpoint.address),
            Some(ProbeSpec::Redis(r)) => Ok(r.endpoint.address),
            Some(ProbeSpec::Tcp { address }) => Ok(*address),
            _ => bail!("{service} has no address in the config"),
        }
    }

    /// Where a DNS name should point for an endpoint.
    fn endpoint_ip(&self, e: &Endpoint) -> Result<Ipv4Addr> {
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

    fn dns(&self) -> Result<&crate::config::DnsConfig> {
        self.config
            .dns
            .as_ref()
            .context("the config has no [dns] section")
    }

    fn tsig(&self) -> Result<&crate::config::tsig::TsigKey> {
        self.dns()?
            .tsig
            .as_ref()
            .context("[dns] has no tsig_key_file")
    }

    fn connstr_value(&self, target: &str, service: &str) -> Result<(String, &ConnstrTarget)> {
        let t = self
            .config
            .connstr
            .get(target)
            .with_context(|| format!("no connstr target {target} in the config"))?;
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

    fn current_connstr(&self, t: &ConnstrTarget) -> Result<String> {
        Ok(match t {
            ConnstrTarget::File { path, .. } => std::fs::read_to_string(path).unwrap_or_default(),
            ConnstrTarget::Pgbouncer { ini, database, .. } => {
                actions::pgbouncer::read_entry(ini, database)?.unwrap_or_default()
            }
        })
    }
}

fn admin(t: &ConnstrTarget) -> Option<PgBouncerAdmin> {
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

/// Run `action` once; returns a one-line account of what it found and did.
pub async fn run(
    ctx: &StepContext,
    action: &Action,
    timeout: Duration,
) -> Result<String, StepError> {
    match action {
        Action::PostgresCheckLag {
            service,
            max_lag_bytes,
            max_lag_seconds,
        } => {
            let standby = ctx.pg(service)?;
            // Whom it streams from right now; the config's `upstream` when it does not stream
            // (the primary is down). After a switchover the direction is reversed, so the
            // static config alone would measure against the wrong server.
            let upstream = match live_upstream(ctx, service).await {
                Some(u) => u,
                None => upstream_of(ctx, service)?,
            };
            let primary = ctx.pg(&upstream)?;
            let r = actions::postgres::check_lag(
                &standby,
                &primary,
                *max_lag_bytes,
                max_lag_seconds.map_or(f64::INFINITY, |s| s as f64),
            )
            .await?;
            if r.within_bounds {
                return Ok(r.reason);
            }
            if r.primary_error.is_none() {
                return Err(StepError {
                    error: format!("lag gate: {}", r.reason),
                    retryable: true,
                });
            }
            // The primary is gone, so the lag cannot be measured now: use the last lag the
            // probes measured while it was alive (that is what the standby has at most lost).
            let last = ctx
                .store
                .probe_history(service, 500)
                .map_err(|e| fatal(format!("reading probe history: {e:#}")))?
                .into_iter()
                .find_map(|p| p.lag.map(|l| (l, p.at)));
            match last {
                Some((lag, at)) if lag <= *max_lag_bytes => Ok(format!(
                    "primary unreachable ({}); last measured lag {lag} B at {at} is within {max_lag_bytes} B",
                    r.primary_error.unwrap_or_default()
                )),
                Some((lag, at)) => Err(fatal(format!(
                    "lag gate: last measured lag {lag} B at {at} exceeds {max_lag_bytes} B"
                ))),
                None => Err(fatal(
                    "lag gate: the primary is unreachable and no lag was ever measured".to_string(),
                )),
            }
        }
        Action::PostgresFence { service, mode } => {
            let mode = match mode {
                FenceMode::ReadOnly => actions::postgres::FenceMode::ReadOnly,
                FenceMode::Stop => {
                    return Err(fatal(
                        "fence mode `stop` needs shell access to the old primary's host, which niledr does not have; use `read_only`",
                    ));
                }
            };
            let r = actions::postgres::fence(&ctx.pg(service)?, mode).await?;
            Ok(r.summary())
        }
        Action::PostgresPromote { service } => {
            let r = actions::postgres::promote(&ctx.pg(service)?, timeout).await?;
            Ok(r.summary())
        }
        Action::PostgresWaitCaughtUp { service, of } => {
            let r =
                actions::postgres::wait_caught_up(&ctx.pg(service)?, &ctx.pg(of)?, timeout).await?;
            Ok(format!(
                "{service} replayed {} ≥ {of}'s {} after {:.1} ms",
                r.replay_lsn,
                r.target_lsn,
                r.waited.as_secs_f64() * 1000.0
            ))
        }
        Action::RedisFence { service, replica } => {
            // The pause must outlast this wait and the promote + replicaof that follow; once
            // the master is a replica `replicaof` lifts it (held writes fail with READONLY).
            let pause_ms =
                u64::try_from((timeout + REDIS_PAUSE_MARGIN).as_millis()).unwrap_or(u64::MAX);
            let r = actions::redis::fence(
                &ctx.redis(service)?,
                &ctx.redis(replica)?,
                pause_ms,
                timeout,
            )
            .await?;
            Ok(r.summary(service, replica))
        }
        Action::RedisPromote { service } => {
            let r = actions::redis::promote(&ctx.redis(service)?).await?;
            Ok(role_change(&r))
        }
        Action::RedisReplicaOf { service, of } => {
            let up = ctx.service_addr(of)?;
            let r =
                actions::redis::replicaof(&ctx.redis(service)?, &up.ip().to_string(), up.port())
                    .await?;
            Ok(role_change(&r))
        }
        Action::ConnstrSwap { target, to_service } => {
            let (new, t) = ctx.connstr_value(target, to_service)?;
            let old = ctx.current_connstr(t)?;
            match t {
                ConnstrTarget::File {
                    path,
                    reload_command,
                    ..
                } => {
                    let r = actions::connstr::swap_file(
                        path,
                        &old,
                        &new,
                        reload_command.as_deref(),
                        None,
                    )
                    .await?;
                    Ok(format!(
                        "{}: {} (previous kept as {}){}",
                        r.path.display(),
                        if r.already_done {
                            "already held the new value"
                        } else {
                            "swapped"
                        },
                        r.previous.display(),
                        took(r.took)
                    ))
                }
                ConnstrTarget::Pgbouncer { ini, database, .. } => {
                    let admin = admin(t).ok_or_else(|| fatal("pgbouncer admin missing"))?;
                    let r =
                        actions::pgbouncer::swap(ini, database, &old, &new, &admin, None).await?;
                    Ok(format!(
                        "pgbouncer [{}]: {} → {}{}{}",
                        r.database,
                        r.before,
                        r.after,
                        if r.already_done {
                            " (already done)"
                        } else {
                            ""
                        },
                        took(r.took)
                    ))
                }
            }
        }
        Action::DnsSetTtl { name, ttl } => {
            let dns = ctx.dns()?;
            let primary = *dns.servers.first().ok_or_else(|| fatal("no DNS servers"))?;
            let r = actions::dns::set_ttl(primary, &dns.zone, name, *ttl, ctx.tsig()?)
                .await
                .map_err(tsig_fatal)?;
            Ok(format!(
                "{} TTL {:?} → {}{}{}",
                r.name,
                r.ttl_before,
                r.ttl_after,
                if r.already_done { " (already set)" } else { "" },
                took(r.took)
            ))
        }
        Action::DnsCutover { name, from, to } => {
            let dns = ctx.dns()?;
            let primary = *dns.servers.first().ok_or_else(|| fatal("no DNS servers"))?;
            let new = vec![ctx.endpoint_ip(to)?];
            let old = match from {
                Some(e) => vec![ctx.endpoint_ip(e)?],
                None => actions::dns::query_a(primary, name).await?.addrs,
            };
            let ttl = actions::dns::query_a(primary, name)
                .await
                .ok()
                .and_then(|r| r.ttl)
                .unwrap_or(60);
            let r =
                actions::dns::cutover(primary, &dns.zone, name, &old, &new, ttl, ctx.tsig()?, None)
                    .await
                    .map_err(tsig_fatal)?;
            Ok(cutover(&r))
        }
        Action::DnsVerify { name, expect } => {
            let dns = ctx.dns()?;
            let want = vec![ctx.endpoint_ip(expect)?];
            let r = actions::dns::verify(&dns.servers, name, &want, timeout).await?;
            Ok(format!(
                "{name} answers {} on all {} authoritative servers; converged in {:.1} ms",
                addrs(&want),
                r.per_server.len(),
                r.converged_in.as_secs_f64() * 1000.0
            ))
        }
        Action::SqlCheck { name, via } => {
            let dns = ctx.dns()?;
            let server = *dns.servers.first().ok_or_else(|| fatal("no DNS servers"))?;
            let pg = match ctx.config.services.get(via).map(|s| &s.spec) {
                Some(ProbeSpec::Postgres(p)) => p.endpoint.clone(),
                _ => return Err(fatal(format!("{via} is not a postgres service"))),
            };
            let r = actions::checks::sql_check(
                server,
                name,
                pg.address.port(),
                &pg.user,
                pg.password.as_deref().unwrap_or(""),
                &pg.database,
            )
            .await?;
            Ok(format!(
                "{name} → {} ({}): wrote and read back row {}{}",
                addrs(&r.resolved),
                r.server,
                r.row_id,
                took(r.resolve_took + r.connect_took + r.write_took)
            ))
        }
        Action::HttpCheck { url, expect_status } => {
            let r = actions::checks::http_check(url, expect_status.unwrap_or(200)).await?;
            Ok(format!("{url}: HTTP {}{}", r.status, took(r.took)))
        }
        Action::ManualConfirm { item } => Err(fatal(format!(
            "manual step {item:?} is confirmed by a person, not run"
        ))),
        Action::Wait { until } => wait(ctx, until, timeout).await,
    }
}

/// Undo a step that succeeded (the kind's inverse).
pub async fn rollback(
    ctx: &StepContext,
    action: &Action,
    detail_before: &str,
    timeout: Duration,
) -> Result<String, StepError> {
    let _ = detail_before;
    match action {
        Action::PostgresFence { service, .. } => {
            let r = actions::postgres::unfence(&ctx.pg(service)?).await?;
            Ok(format!(
                "{service} writable again (was read-only: {}){}",
                r.was_read_only,
                took(r.took)
            ))
        }
        Action::RedisFence { service, .. } => {
            let r = actions::redis::unpause(&ctx.redis(service)?).await?;
            Ok(format!(
                "{service} unpaused (CLIENT UNPAUSE), now {}{}",
                r.role,
                took(r.took)
            ))
        }
        Action::ConnstrSwap { target, to_service } => {
            let (new, t) = ctx.connstr_value(target, to_service)?;
            match t {
                ConnstrTarget::File {
                    path,
                    reload_command,
                    ..
                } => {
                    let r = actions::connstr::rollback_file(
                        path,
                        &new,
                        reload_command.as_deref(),
                        None,
                    )
                    .await?;
                    Ok(format!(
                        "{}: previous value restored{}",
                        r.path.display(),
                        took(r.took)
                    ))
                }
                ConnstrTarget::Pgbouncer { ini, database, .. } => {
                    let admin = admin(t).ok_or_else(|| fatal("pgbouncer admin missing"))?;
                    let r = actions::pgbouncer::rollback(ini, database, &new, &admin, None).await?;
                    Ok(format!(
                        "pgbouncer [{}]: restored {}{}",
                        r.database,
                        r.after,
                        took(r.took)
                    ))
                }
            }
        }
        Action::DnsCutover { name, from, to } => {
            let dns = ctx.dns()?;
            let primary = *dns.servers.first().ok_or_else(|| fatal("no DNS servers"))?;
            let current = vec![ctx.endpoint_ip(to)?];
            let back = match from {
                Some(e) => vec![ctx.endpoint_ip(e)?],
                None => {
                    return Err(fatal(
                        "cannot cut back: the runbook gave no `from` for this cutover",
                    ));
                }
            };
            let r = actions::dns::cutover(
                primary,
                &dns.zone,
                name,
                &current,
                &back,
                60,
                ctx.tsig()?,
                None,
            )
            .await
            .map_err(tsig_fatal)?;
            Ok(cutover(&r))
        }
        Action::RedisPromote { .. } | Action::PostgresPromote { .. } => Err(fatal(
            "a promotion cannot be undone automatically; plan a failback",
        )),
        other => {
            let _ = timeout;
            Ok(format!("nothing to undo for {}", other.kind().as_str()))
        }
    }
}

/// How much longer than its step's timeout a `redis.fence` pause lasts: time for the promote
/// and `replicaof` steps that follow it.
const REDIS_PAUSE_MARGIN: Duration = Duration::from_secs(30);

fn took(d: Duration) -> String {
    format!(" in {:.1} ms", d.as_secs_f64() * 1000.0)
}

fn addrs(a: &[Ipv4Addr]) -> String {
    a.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn cutover(r: &actions::dns::CutoverOutcome) -> String {
    format!(
        "{}: {} → {}{}{}",
        r.name,
        addrs(&r.before),
        addrs(&r.after),
        if r.already_done {
            " (already done)"
        } else {
            ""
        },
        took(r.took)
    )
}

fn role_change(r: &actions::redis::RoleChange) -> String {
    format!(
        "{:?} → {:?}{}{}",
        r.before,
        r.after,
        if r.already_done {
            " (already done)"
        } else {
            ""
        },
        took(r.took)
    )
}

fn tsig_fatal(e: anyhow::Error) -> StepError {
    let error = format!("{e:#}");
    // A bad key or a refused compare-and-swap will not fix itself: do not retry.
    let retryable =
        !(error.contains("TSIG") || error.contains("prerequisite") || error.contains("expected"));
    StepError { error, retryable }
}

/// The configured PostgreSQL service `service`'s WAL receiver is connected to, if any.
async fn live_upstream(ctx: &StepContext, service: &str) -> Option<String> {
    let (host, port) = actions::postgres::wal_sender(&ctx.pg(service).ok()?)
        .await
        .ok()??;
    ctx.config
        .services
        .iter()
        .find_map(|(id, s)| match &s.spec {
            ProbeSpec::Postgres(p)
                if id != service
                    && p.endpoint.address.port() == port
                    && p.endpoint.address.ip().to_string() == host =>
            {
                Some(id.clone())
            }
            _ => None,
        })
}

fn upstream_of(ctx: &StepContext, service: &str) -> Result<String> {
    ctx.config
        .services
        .get(service)
        .and_then(|s| s.upstream.clone())
        .ok_or_else(|| anyhow!("{service} has no `upstream` in the config to measure lag against"))
}

async fn wait(
    ctx: &StepContext,
    until: &WaitCondition,
    timeout: Duration,
) -> Result<String, StepError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (ok, seen) = match until {
            WaitCondition::Replicating {
                service,
                of,
                lag_below_bytes,
            } => replicating(ctx, service, of, *lag_below_bytes).await?,
            WaitCondition::ServiceUp { service } | WaitCondition::ServiceDown { service } => {
                let model = ctx
                    .shared
                    .model
                    .read()
                    .map_err(|_| fatal("health model unavailable"))?;
                let want = if matches!(until, WaitCondition::ServiceUp { .. }) {
                    Status::Up
                } else {
                    Status::Down
                };
                match model.services.get(service) {
                    Some(s) => (
                        s.status == want,
                        format!("{service} {}: {}", s.status, s.reason),
                    ),
                    None => return Err(fatal(format!("unknown service {service}"))),
                }
            }
        };
        if ok {
            return Ok(seen);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StepError {
                error: format!("condition not met within {timeout:?}: {seen}"),
                retryable: true,
            });
        }
        tokio::time::sleep(REPLICATION_POLL).await;
    }
}

/// How often a wait re-checks (a replication check opens connections: not too often).
const REPLICATION_POLL: Duration = Duration::from_millis(250);

/// Is `service` replicating from `of`, checked live on the servers themselves (the probes'
/// lag is measured against the config's fixed `upstream`, which a switchover reverses)?
/// PostgreSQL: in recovery, WAL receiver streaming from `of`'s address, lag against `of`.
/// Redis: `ROLE` says replica of `of`'s address with the link connected.
async fn replicating(
    ctx: &StepContext,
    service: &str,
    of: &str,
    lag_below_bytes: Option<u64>,
) -> Result<(bool, String), StepError> {
    if let (Ok(standby), Ok(upstream)) = (ctx.pg(service), ctx.pg(of)) {
        return Ok(
            match actions::postgres::replication(&standby, &upstream).await {
                Ok(r) => {
                    let ok = r.streaming()
                        && r.lag_bytes
                            .is_some_and(|l| lag_below_bytes.is_none_or(|b| l <= b));
                    (ok, format!("{service}: {r} (of {of} at {upstream})"))
                }
                Err(e) => (false, format!("{service}: {e:#}")),
            },
        );
    }
    let (replica, up) = match (ctx.redis(service), ctx.service_addr(of)) {
        (Ok(r), Ok(a)) => (r, a),
        _ => {
            return Err(fatal(format!(
                "{service} and {of} are neither both postgres nor both redis services"
            )));
        }
    };
    let role = match actions::redis::role(&replica).await {
        Ok(r) => r,
        Err(e) => return Ok((false, format!("{service}: {e:#}"))),
    };
    let linked = matches!(&role, actions::redis::RedisRole::Replica { primary_host, primary_port, link }
        if *primary_host == up.ip().to_string() && *primary_port == up.port() && link == "connected");
    // A byte bound needs the probes' offset lag (measured against the config's upstream).
    let lag = {
        let model = ctx
            .shared
            .model
            .read()
            .map_err(|_| fatal("health model unavailable"))?;
        model
            .services
            .get(service)
            .and_then(|s| s.last.as_ref())
            .and_then(|r| match &r.observation {
                niledr_probes::Observation::Redis(r) => r.offset_lag,
                _ => None,
            })
    };
    let within = match lag_below_bytes {
        None => true,
        Some(b) => lag.is_some_and(|l| l <= b),
    };
    Ok((
        linked && within,
        format!("{service}: {role} (of {of} at {up}), offset lag {lag:?}"),
    ))
}
