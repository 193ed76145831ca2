//! Runs one step's action (or its undo, its observe-only verification, its readiness check)
//! against the infrastructure, dispatching to one module per family (postgres, redis, dns,
//! connstr, checks), each with forward, undo, verify and ready side by side. Every action is
//! idempotent and checks the world first, so a step found in doubt after a crash is simply
//! run again: a promoted standby reports "already promoted", a DNS name already holding the new
//! answer is left alone, a connection string already swapped is not swapped twice.

mod checks;
mod connstr;
mod context;
mod dns;
mod platform;
mod postgres;
mod redis;

use std::net::Ipv4Addr;
use std::time::Duration;

use niledr_runbooks::{Action, Readiness, Step};

pub use context::{StepContext, StepError, StepOutcome, fatal, pg_target};

/// What one attempt of a step runs with, from its execution.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The execution the step belongs to (`platform.mode` records it with the level).
    pub execution: std::sync::Arc<str>,
    pub timeout: Duration,
    /// The fencing generation the execution holds (checked and written by DNS cutovers and
    /// connection-string swaps: a stale execution's change is refused).
    pub generation: Option<u64>,
    /// Approved by break-glass: a person accepted acting on stale evidence.
    pub break_glass: bool,
}

/// Run `action` once.
pub async fn run(
    ctx: &StepContext,
    action: &Action,
    attempt: Attempt,
) -> Result<StepOutcome, StepError> {
    let Attempt {
        execution,
        timeout,
        generation,
        break_glass,
    } = attempt;
    let done = match action {
        Action::PostgresCheckLag {
            service,
            max_lag_bytes,
            max_lag_seconds,
            max_lag_age_ms,
        } => {
            let gate = postgres::LagGate {
                max_lag_bytes: *max_lag_bytes,
                max_lag_seconds: *max_lag_seconds,
                max_lag_age_ms: *max_lag_age_ms,
                break_glass,
            };
            postgres::check_lag(ctx, service, gate).await
        }
        Action::PostgresFence {
            service,
            mode,
            on_unreachable,
        } => return postgres::fence(ctx, service, *mode, *on_unreachable, timeout).await,
        Action::PostgresPromote { service } => postgres::promote(ctx, service, timeout).await,
        Action::PostgresWaitCaughtUp { service, of } => {
            postgres::wait_caught_up(ctx, service, of, timeout).await
        }
        Action::RedisFence {
            service,
            replica,
            unreachable_after_ms,
        } => redis::fence(ctx, service, replica, *unreachable_after_ms, timeout).await,
        Action::RedisPromote { service } => redis::promote(ctx, service).await,
        Action::RedisReplicaOf {
            service,
            of,
            unreachable_after_ms,
        } => redis::replicaof(ctx, service, of, *unreachable_after_ms).await,
        Action::ConnstrSwap { target, to_service } => {
            connstr::swap(ctx, target, to_service, generation).await
        }
        Action::DnsSetTtl { name, ttl } => dns::set_ttl(ctx, name, *ttl).await,
        Action::DnsCutover { name, from, to } => {
            dns::cutover(ctx, name, from.as_ref(), to, generation).await
        }
        Action::DnsVerify { name, expect } => dns::verify(ctx, name, expect, timeout).await,
        Action::SqlCheck { name, via } => checks::sql_check(ctx, name, via).await,
        Action::HttpCheck { url, expect_status } => checks::http_check(url, *expect_status).await,
        Action::ManualConfirm { item } => Err(fatal(format!(
            "manual step {item:?} is confirmed by a person, not run"
        ))),
        Action::Wait { until } => checks::wait(ctx, until, timeout).await,
        Action::PlatformMode { level, message } => {
            platform::set(ctx, *level, message.as_deref(), &execution, timeout).await
        }
    };
    done.map(StepOutcome::Done)
}

/// Undo a step that succeeded (the kind's inverse). Only ever before the point of no return.
pub async fn undo(
    ctx: &StepContext,
    action: &Action,
    attempt: Attempt,
) -> Result<String, StepError> {
    let Attempt {
        execution,
        timeout,
        generation,
        ..
    } = attempt;
    match action {
        Action::PostgresFence { service, .. } => postgres::unfence(ctx, service).await,
        Action::RedisFence { service, .. } => redis::unpause(ctx, service).await,
        Action::ConnstrSwap { target, to_service } => {
            connstr::undo_swap(ctx, target, to_service, generation).await
        }
        Action::DnsCutover { name, from, to } => {
            dns::undo_cutover(ctx, name, from.as_ref(), to, generation).await
        }
        Action::PlatformMode { .. } => platform::restore(ctx, &execution).await,
        Action::RedisPromote { .. } | Action::PostgresPromote { .. } => Err(fatal(
            "a promotion cannot be undone automatically; plan a failback",
        )),
        other => {
            let _ = timeout;
            Ok(format!("nothing to undo for {}", other.kind().as_str()))
        }
    }
}

/// End-to-end verification of what a step did: observe only, never act. `None` when the
/// step's kind has nothing to verify at the end.
pub async fn verify(ctx: &StepContext, action: &Action) -> Option<Result<String, StepError>> {
    Some(match action {
        Action::PostgresPromote { service } => postgres::verify_promoted(ctx, service).await,
        Action::RedisPromote { service } => redis::verify_promoted(ctx, service).await,
        Action::DnsCutover { name, to, .. } => {
            dns::verify(ctx, name, to, Duration::from_secs(10)).await
        }
        _ => return None,
    })
}

/// Can `step` run as planned, checked against the real world without changing it?
pub async fn ready(ctx: &StepContext, step: &Step) -> Readiness {
    let r = match &step.action {
        Action::PostgresCheckLag { service, .. } | Action::PostgresPromote { service } => {
            postgres::ready_answers(ctx, service).await
        }
        Action::PostgresWaitCaughtUp { service, of } => {
            match postgres::ready_answers(ctx, service).await {
                Ok(a) => postgres::ready_answers(ctx, of)
                    .await
                    .map(|b| format!("{a}; {b}")),
                Err(e) => Err(e),
            }
        }
        Action::RedisPromote { service } => redis::ready_answers(ctx, service).await,
        Action::RedisReplicaOf {
            service,
            unreachable_after_ms: None,
            ..
        } => redis::ready_answers(ctx, service).await,
        Action::RedisFence {
            replica,
            unreachable_after_ms,
            service,
        } => match unreachable_after_ms {
            None => redis::ready_answers(ctx, service).await,
            Some(_) => redis::ready_answers(ctx, replica).await,
        },
        Action::ConnstrSwap { target, .. } => connstr::ready(ctx, target).await,
        Action::DnsCutover { name, from, to } => {
            dns::ready_cutover(ctx, name, from.as_ref(), to).await
        }
        Action::DnsSetTtl { .. } => dns::ready_tsig(ctx).await,
        Action::PlatformMode { .. } => platform::ready(ctx).await,
        Action::PostgresFence { service, .. } => Ok(format!(
            "{service}: fenced if it answers, else decided on evidence (no precondition)"
        )),
        other => Ok(format!("{}: no precondition", other.kind().as_str())),
    };
    Readiness {
        step: step.id.clone(),
        ready: r.is_ok(),
        why: r.unwrap_or_else(|e| e),
    }
}

pub(crate) fn took(d: Duration) -> String {
    format!(" in {:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn addrs(a: &[Ipv4Addr]) -> String {
    a.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
