//! Connection-string steps: the atomic swap of an application's file or a PgBouncer
//! `[databases]` entry (previous value kept), its undo (only before the point of no return)
//! and readiness side by side.

use super::context::{StepContext, StepError, admin, fatal, stale_fatal};
use super::took;
use crate::actions;
use crate::config::ConnstrTarget;

pub async fn swap(
    ctx: &StepContext,
    target: &str,
    to_service: &str,
    generation: Option<u64>,
) -> Result<String, StepError> {
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
                generation,
            )
            .await
            .map_err(stale_fatal)?;
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
            let r = actions::pgbouncer::swap(ini, database, &old, &new, &admin, generation)
                .await
                .map_err(stale_fatal)?;
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

pub async fn undo_swap(
    ctx: &StepContext,
    target: &str,
    to_service: &str,
    generation: Option<u64>,
) -> Result<String, StepError> {
    let (new, t) = ctx.connstr_value(target, to_service)?;
    match t {
        ConnstrTarget::File {
            path,
            reload_command,
            ..
        } => {
            let r =
                actions::connstr::rollback_file(path, &new, reload_command.as_deref(), generation)
                    .await
                    .map_err(stale_fatal)?;
            Ok(format!(
                "{}: previous value restored{}",
                r.path.display(),
                took(r.took)
            ))
        }
        ConnstrTarget::Pgbouncer { ini, database, .. } => {
            let admin = admin(t).ok_or_else(|| fatal("pgbouncer admin missing"))?;
            let r = actions::pgbouncer::rollback(ini, database, &new, &admin, generation)
                .await
                .map_err(stale_fatal)?;
            Ok(format!(
                "pgbouncer [{}]: restored {}{}",
                r.database,
                r.after,
                took(r.took)
            ))
        }
    }
}

/// Ready to swap: the file exists and can be replaced, or PgBouncer answers and has the entry.
pub async fn ready(ctx: &StepContext, target: &str) -> Result<String, String> {
    let t = ctx.connstr_target(target).map_err(|e| format!("{e:#}"))?;
    let r = match t {
        ConnstrTarget::File { path, .. } => actions::connstr::ready_file(path).await,
        ConnstrTarget::Pgbouncer { ini, database, .. } => {
            let admin = admin(t).ok_or_else(|| "pgbouncer admin missing".to_string())?;
            actions::pgbouncer::ready(ini, database, &admin).await
        }
    };
    r.map_err(|e| format!("{e:#}"))
}
