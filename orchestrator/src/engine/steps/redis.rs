//! Redis steps: fencing a master (`CLIENT PAUSE WRITE` until the replica has every byte),
//! promotion and re-pointing — forward, undo, observe-only verification and readiness side by
//! side. In an unplanned failover a master that does not answer within a short bound is
//! skipped with what was seen recorded.

use std::time::Duration;

use super::context::{StepContext, StepError, fatal, untouched};
use super::took;
use crate::actions::{self, redis::RedisRole, redis::RedisTarget};

/// How much longer than its step's timeout a `redis.fence` pause lasts: time for the promote
/// and `replicaof` steps that follow it.
const REDIS_PAUSE_MARGIN: Duration = Duration::from_secs(30);

/// `Some(why)` when a bound is set and `target` does not answer `ROLE` within it.
async fn skipped_unreachable(target: &RedisTarget, bound_ms: Option<u64>) -> Option<String> {
    let bound = Duration::from_millis(bound_ms?);
    let t0 = tokio::time::Instant::now();
    match tokio::time::timeout(bound, actions::redis::role(target)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!(
            "{target} does not answer ({e:#}) after {:.0} ms",
            t0.elapsed().as_secs_f64() * 1000.0
        )),
        Err(_) => Some(format!(
            "{target} did not answer within {} ms",
            bound.as_millis()
        )),
    }
}

pub async fn fence(
    ctx: &StepContext,
    service: &str,
    replica: &str,
    unreachable_after_ms: Option<u64>,
    timeout: Duration,
) -> Result<String, StepError> {
    let master = ctx.redis(service)?;
    if let Some(why) = skipped_unreachable(&master, unreachable_after_ms).await {
        return Ok(format!(
            "skipped: {why}; nothing to fence (it takes no writes while it does not answer)"
        ));
    }
    // The pause must outlast this wait and the promote + replicaof that follow; once the
    // master is a replica `replicaof` lifts it (held writes fail with READONLY).
    let pause_ms = u64::try_from((timeout + REDIS_PAUSE_MARGIN).as_millis()).unwrap_or(u64::MAX);
    let r = actions::redis::fence(&master, &ctx.redis(replica)?, pause_ms, timeout).await?;
    Ok(r.summary(service, replica))
}

pub async fn unpause(ctx: &StepContext, service: &str) -> Result<String, StepError> {
    let r = actions::redis::unpause(&ctx.redis(service)?).await?;
    Ok(format!(
        "{service} unpaused (CLIENT UNPAUSE), now {}{}",
        r.role,
        took(r.took)
    ))
}

pub async fn promote(ctx: &StepContext, service: &str) -> Result<String, StepError> {
    let target = ctx.redis(service).map_err(untouched)?;
    let r = actions::redis::promote(&target).await?;
    Ok(role_change(&r))
}

pub async fn replicaof(
    ctx: &StepContext,
    service: &str,
    of: &str,
    unreachable_after_ms: Option<u64>,
) -> Result<String, StepError> {
    let target = ctx.redis(service)?;
    if let Some(why) = skipped_unreachable(&target, unreachable_after_ms).await {
        return Ok(format!(
            "skipped: {why}; it must be re-pointed when it returns"
        ));
    }
    let up = ctx.service_addr(of)?;
    let r = actions::redis::replicaof(&target, &up.ip().to_string(), up.port()).await?;
    Ok(role_change(&r))
}

/// Verification of a promotion: `ROLE` answers master. Observe only.
pub async fn verify_promoted(ctx: &StepContext, service: &str) -> Result<String, StepError> {
    match actions::redis::role(&ctx.redis(service)?).await? {
        RedisRole::Primary { replicas } => {
            Ok(format!("{service} is a master ({replicas} replica(s))"))
        }
        other => Err(fatal(format!("{service} is {other}, not a master"))),
    }
}

pub async fn ready_answers(ctx: &StepContext, service: &str) -> Result<String, String> {
    let target = ctx.redis(service).map_err(|e| format!("{e:#}"))?;
    match actions::redis::role(&target).await {
        Ok(role) => Ok(format!("{service} answers ({role})")),
        Err(e) => Err(format!("{service} does not answer: {e:#}")),
    }
}

fn role_change(r: &actions::redis::RoleChange) -> String {
    format!(
        "{} → {}{}{}",
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
