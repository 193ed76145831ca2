//! DNS steps: TTL, the compare-and-swap cutover (RFC 2136 + TSIG) and the wait until every
//! authoritative server answers — forward, undo (cut back, only before the point of no
//! return) and readiness side by side.

use std::net::Ipv4Addr;
use std::time::Duration;

use niledr_runbooks::Endpoint;

use super::context::{StepContext, StepError, fatal};
use super::{addrs, took};
use crate::actions;

pub async fn set_ttl(ctx: &StepContext, name: &str, ttl: u32) -> Result<String, StepError> {
    let dns = ctx.dns()?;
    let r = actions::dns::set_ttl(ctx.dns_primary()?, &dns.zone, name, ttl, ctx.tsig()?)
        .await
        .map_err(tsig_fatal)?;
    let before = r
        .ttl_before
        .map_or_else(|| "not answered".to_string(), |t| format!("{t} s"));
    Ok(format!(
        "{} TTL {before} → {} s{}{}",
        r.name,
        r.ttl_after,
        if r.already_done { " (already set)" } else { "" },
        took(r.took)
    ))
}

/// Point `name` from `from` (or whatever it answers now) to `to`, compare-and-swap.
pub async fn cutover(
    ctx: &StepContext,
    name: &str,
    from: Option<&Endpoint>,
    to: &Endpoint,
    generation: Option<u64>,
) -> Result<String, StepError> {
    let new = vec![ctx.endpoint_ip(to)?];
    let old = match from {
        Some(e) => vec![ctx.endpoint_ip(e)?],
        None => actions::dns::query_a(ctx.dns_primary()?, name).await?.addrs,
    };
    swap(ctx, name, &old, &new, None, generation).await
}

/// Cut back (the inverse of `cutover`): only a rollback before the point of no return.
pub async fn undo_cutover(
    ctx: &StepContext,
    name: &str,
    from: Option<&Endpoint>,
    to: &Endpoint,
    generation: Option<u64>,
) -> Result<String, StepError> {
    let current = vec![ctx.endpoint_ip(to)?];
    let Some(from) = from else {
        return Err(fatal(
            "cannot cut back: the runbook gave no `from` for this cutover",
        ));
    };
    let back = vec![ctx.endpoint_ip(from)?];
    swap(ctx, name, &current, &back, Some(60), generation).await
}

async fn swap(
    ctx: &StepContext,
    name: &str,
    old: &[Ipv4Addr],
    new: &[Ipv4Addr],
    ttl: Option<u32>,
    generation: Option<u64>,
) -> Result<String, StepError> {
    let dns = ctx.dns()?;
    let primary = ctx.dns_primary()?;
    let ttl = match ttl {
        Some(t) => t,
        None => actions::dns::query_a(primary, name)
            .await
            .ok()
            .and_then(|r| r.ttl)
            .unwrap_or(60),
    };
    let r = actions::dns::cutover(
        primary,
        &dns.zone,
        name,
        old,
        new,
        ttl,
        ctx.tsig()?,
        generation,
    )
    .await
    .map_err(tsig_fatal)?;
    Ok(format!(
        "{}: {} → {}{}{}{}",
        r.name,
        addrs(&r.before),
        addrs(&r.after),
        r.generation
            .map_or(String::new(), |g| format!(" (generation {g})")),
        if r.already_done {
            " (already done)"
        } else {
            ""
        },
        took(r.took)
    ))
}

/// Wait until every authoritative server answers `expect` for `name` (observe only).
pub async fn verify(
    ctx: &StepContext,
    name: &str,
    expect: &Endpoint,
    timeout: Duration,
) -> Result<String, StepError> {
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

/// The server updates go to accepts the TSIG key (a signed update whose prerequisite cannot
/// match: proves the key, changes nothing).
pub async fn ready_tsig(ctx: &StepContext) -> Result<String, String> {
    let dns = ctx.dns().map_err(|e| format!("{e:#}"))?;
    let primary = ctx.dns_primary().map_err(|e| e.error)?;
    let key = ctx.tsig().map_err(|e| format!("{e:#}"))?;
    actions::dns::prove_tsig(primary, &dns.zone, key)
        .await
        .map_err(|e| format!("{e:#}"))
}

/// Ready to cut over: the key is accepted and the primary server answers `from` now (or already `to`: an earlier
/// attempt did it).
pub async fn ready_cutover(
    ctx: &StepContext,
    name: &str,
    from: Option<&Endpoint>,
    to: &Endpoint,
) -> Result<String, String> {
    let e = |e: StepError| e.error;
    let key = ready_tsig(ctx).await?;
    let primary = ctx.dns_primary().map_err(e)?;
    let want_new = vec![ctx.endpoint_ip(to).map_err(|x| format!("{x:#}"))?];
    let now = actions::dns::query_a(primary, name)
        .await
        .map_err(|x| format!("{name}: {primary} does not answer: {x:#}"))?
        .addrs;
    if now == want_new {
        return Ok(format!("{key}; {name} already answers {}", addrs(&now)));
    }
    match from {
        Some(f) => {
            let want_old = vec![ctx.endpoint_ip(f).map_err(|x| format!("{x:#}"))?];
            if now == want_old {
                Ok(format!("{key}; {name} answers {} as expected", addrs(&now)))
            } else {
                Err(format!(
                    "{name} answers {} at {primary}, not the expected {}: the compare-and-swap would be refused",
                    addrs(&now),
                    addrs(&want_old)
                ))
            }
        }
        None => Ok(format!("{key}; {name} answers {}", addrs(&now))),
    }
}

/// A bad key or a refused compare-and-swap will not fix itself: do not retry.
fn tsig_fatal(e: anyhow::Error) -> StepError {
    if e.chain()
        .any(|c| c.downcast_ref::<actions::dns::StaleGeneration>().is_some())
    {
        return super::context::stale_fatal(e);
    }
    let error = format!("{e:#}");
    let retryable =
        !(error.contains("TSIG") || error.contains("prerequisite") || error.contains("expected"));
    StepError {
        error,
        retryable,
        untouched: false,
    }
}
