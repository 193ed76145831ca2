//! Checking steps that change nothing: SQL and HTTP smoke tests through the production path
//! and waits on a condition (a service up or down, a standby replicating).

use std::time::Duration;

use niledr_probes::{ProbeSpec, Status};
use niledr_runbooks::WaitCondition;

use super::context::{StepContext, StepError, fatal};
use super::{addrs, took};
use crate::actions;
use crate::util::poll_until;

/// How often a wait re-checks (a replication check opens connections: not too often).
const REPLICATION_POLL: Duration = Duration::from_millis(250);

pub async fn sql_check(ctx: &StepContext, name: &str, via: &str) -> Result<String, StepError> {
    let server = ctx.dns_primary()?;
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

pub async fn http_check(url: &str, expect_status: Option<u16>) -> Result<String, StepError> {
    let r = actions::checks::http_check(url, expect_status.unwrap_or(200)).await?;
    Ok(format!("{url}: HTTP {}{}", r.status, took(r.took)))
}

pub async fn wait(
    ctx: &StepContext,
    until: &WaitCondition,
    timeout: Duration,
) -> Result<String, StepError> {
    let last = std::sync::Mutex::new(String::new());
    let deadline = tokio::time::Instant::now() + timeout;
    let r = poll_until(deadline, REPLICATION_POLL, || async {
        let (ok, seen) = condition(ctx, until).await?;
        if let Ok(mut l) = last.lock() {
            *l = seen;
        }
        Ok::<bool, StepError>(ok)
    })
    .await;
    let seen = last.into_inner().unwrap_or_default();
    match r {
        Ok(()) => Ok(seen),
        Err(Some(e)) => Err(e),
        Err(None) => Err(StepError {
            error: format!("condition not met within {timeout:?}: {seen}"),
            retryable: true,
            untouched: true,
        }),
    }
}

async fn condition(ctx: &StepContext, until: &WaitCondition) -> Result<(bool, String), StepError> {
    match until {
        WaitCondition::Replicating {
            service,
            of,
            lag_below_bytes,
        } => replicating(ctx, service, of, *lag_below_bytes).await,
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
                Some(s) => Ok((
                    s.status == want,
                    format!("{service} {}: {}", s.status, s.reason),
                )),
                None => Err(fatal(format!("unknown service {service}"))),
            }
        }
    }
}

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
        format!(
            "{service}: {role} (of {of} at {up}), offset lag {}",
            lag.map_or_else(|| "not measured".to_string(), |l| l.to_string())
        ),
    ))
}
