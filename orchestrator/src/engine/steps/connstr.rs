//! Connection-string steps: the atomic swap of an application's file or a PgBouncer
//! `[databases]` entry (previous value kept), its undo (only before the point of no return)
//! and readiness side by side.

use super::context::{StepContext, StepError, admin, fatal};
use super::took;
use crate::actions;
use crate::config::ConnstrTarget;

pub async fn swap(ctx: &StepContext, target: &str, to_service: &str) -> Result<String, StepError> {
    let (new, t) = ctx.connstr_value(target, to_service)?;
    let old = ctx.current_connstr(t)?;
    match t {
        ConnstrTarget::File {
            path,
            reload_command,
            ..
        } => {
            let r =
                actions::connstr::swap_file(path, &old, &new, reload_command.as_deref()).await?;
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
            let r = actions::pgbouncer::swap(ini, database, &old, &new, &admin).await?;
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
) -> Result<String, StepError> {
    let (new, t) = ctx.connstr_value(target, to_service)?;
    match t {
        ConnstrTarget::File {
            path,
            reload_command,
            ..
        } => {
            let r = actions::connstr::rollback_file(path, &new, reload_command.as_deref()).await?;
            Ok(format!(
                "{}: previous value restored{}",
                r.path.display(),
                took(r.took)
            ))
        }
        ConnstrTarget::Pgbouncer { ini, database, .. } => {
            let admin = admin(t).ok_or_else(|| fatal("pgbouncer admin missing"))?;
            let r = actions::pgbouncer::rollback(ini, database, &new, &admin).await?;
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
    match t {
        ConnstrTarget::File { path, .. } => ready_file(path),
        ConnstrTarget::Pgbouncer { ini, database, .. } => {
            let admin = admin(t).ok_or_else(|| "pgbouncer admin missing".to_string())?;
            ready_file(ini)?;
            match actions::pgbouncer::show_database(&admin, database).await {
                Ok(Some(d)) => Ok(format!(
                    "PgBouncer answers; [{database}] → {}:{}",
                    d.host.unwrap_or_default(),
                    d.port
                )),
                Ok(None) => Err(format!("PgBouncer has no database entry [{database}]")),
                Err(e) => Err(format!("PgBouncer's admin console does not answer: {e:#}")),
            }
        }
    }
}

/// The file exists and can be replaced (written, and its directory takes the new file).
fn ready_file(path: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e} (create it before the failover)", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.permissions().readonly() {
        return Err(format!("{} is read-only", path.display()));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("{} cannot be opened for writing: {e}", path.display()))?;
    Ok(format!("{} exists and is writable", path.display()))
}
