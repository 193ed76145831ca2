//! Fencing an old PostgreSQL primary so application clients cannot write, and its exact undo.
//!
//! `default_transaction_read_only` alone is a default: a client escapes it with
//! `SET default_transaction_read_only = off` or `BEGIN READ WRITE`. So the fence also takes the
//! login away from every application role (each role that can log in and is neither a
//! superuser, a replication role, a `pg_*` role nor niledr's own role) and terminates their
//! sessions: a client that cannot connect cannot write. Each role
//! it changes is marked with the role setting `niledr.fenced = on` in the same transaction, so
//! the undo restores LOGIN to exactly those roles and to no role that was NOLOGIN before.
//! Superusers keep their login and get read-only sessions: the fence stops applications, not a
//! determined administrator (documented in docs/runbooks.md).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use tokio::time::Instant;

use super::{POLL, PgTarget, in_recovery, scalar_text};

/// The role setting that marks a role whose LOGIN the fence took away.
const MARK: &str = "niledr.fenced";

/// What fencing did.
#[derive(Debug, Clone, PartialEq)]
pub enum FenceOutcome {
    Fenced {
        /// It was already read-only before this call (a retry or an in-doubt step).
        already_read_only: bool,
        /// The server was a standby (a returning old primary already demoted).
        was_in_recovery: bool,
        /// Application roles whose LOGIN is now taken away (by this call or an earlier one).
        roles: Vec<String>,
        /// Client sessions terminated.
        terminated: u64,
        took: Duration,
    },
    /// The old primary did not answer: nothing could be done to it. Whether the step may
    /// proceed is decided on evidence (its standby lost it too) or an operator's confirm.
    Unreachable { error: String },
}

impl FenceOutcome {
    pub fn summary(&self) -> String {
        match self {
            FenceOutcome::Fenced {
                already_read_only,
                roles,
                terminated,
                took,
                ..
            } => format!(
                "fenced: read-only{}, login taken from application role(s) [{}], \
                 {terminated} client session(s) terminated in {took:?}",
                if *already_read_only { " (already)" } else { "" },
                roles.join(", ")
            ),
            FenceOutcome::Unreachable { error } => {
                format!("unreachable: the old primary did not answer ({error})")
            }
        }
    }
}

async fn new_session_read_only(target: &PgTarget) -> Result<bool> {
    let mut c = target.connect().await?;
    let v = scalar_text(
        &mut c,
        "SELECT current_setting('default_transaction_read_only')",
    )
    .await?;
    let _ = c.close().await;
    Ok(v.as_deref() == Some("on"))
}

/// Wait until a new session sees `default_transaction_read_only = want` (the reload is
/// asynchronous: the postmaster re-reads the config when it handles SIGHUP).
async fn wait_setting(target: &PgTarget, want: bool) -> Result<()> {
    let r = crate::util::poll_until(Instant::now() + Duration::from_secs(10), POLL, || async {
        Ok(new_session_read_only(target).await? == want)
    })
    .await;
    match r {
        Ok(()) => Ok(()),
        Err(Some(e)) => Err(e),
        Err(None) => bail!(
            "{target}: default_transaction_read_only still not {want} 10 s after pg_reload_conf()"
        ),
    }
}

/// Our own session must be able to write the catalog even once the server is read-only.
async fn writable_session(target: &PgTarget) -> Result<PgConnection> {
    let mut conn = target.connect().await?;
    // A lock held by someone else (on pg_authid, say) must fail the attempt, not hang it.
    sqlx::raw_sql("SET default_transaction_read_only = off; SET lock_timeout = '5s'")
        .execute(&mut conn)
        .await
        .with_context(|| format!("{target}: SET default_transaction_read_only = off"))?;
    Ok(conn)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Take LOGIN from the application roles (one transaction, each marked); returns every role
/// now fenced by niledr, including those an earlier attempt fenced.
async fn fence_roles(conn: &mut PgConnection) -> Result<Vec<String>> {
    let candidates: Vec<String> = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE rolcanlogin AND NOT rolsuper \
         AND NOT rolreplication AND rolname <> current_user AND rolname !~ '^pg_' \
         ORDER BY rolname",
    )
    .fetch_all(&mut *conn)
    .await
    .context("listing application roles")?;
    let mut tx = conn.begin().await.context("BEGIN")?;
    for role in &candidates {
        let r = quote_ident(role);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER ROLE {r} NOLOGIN; ALTER ROLE {r} SET {MARK} = 'on'"
        )))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("ALTER ROLE {r} NOLOGIN"))?;
    }
    tx.commit().await.context("COMMIT of the role fence")?;
    fenced_roles(conn).await
}

/// Roles carrying niledr's fence mark.
async fn fenced_roles(conn: &mut PgConnection) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT r.rolname::text FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
         WHERE s.setdatabase = 0 AND 'niledr.fenced=on' = ANY(s.setconfig) ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .context("listing roles fenced by niledr")
}

/// LOGIN back to exactly the roles niledr marked, in one transaction; returns them. Also what
/// a newly promoted primary needs: the marks of a fence on the old primary reached it through
/// replication (catalog changes replicate; `ALTER SYSTEM` does not).
pub async fn give_back_logins(conn: &mut PgConnection, server: &PgTarget) -> Result<Vec<String>> {
    let roles = fenced_roles(conn).await?;
    if roles.is_empty() {
        return Ok(roles);
    }
    let mut tx = conn.begin().await.context("BEGIN")?;
    for role in &roles {
        let r = quote_ident(role);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER ROLE {r} LOGIN; ALTER ROLE {r} RESET {MARK}"
        )))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("{server}: ALTER ROLE {r} LOGIN"))?;
    }
    tx.commit().await.context("COMMIT of the role unfence")?;
    Ok(roles)
}

/// Fence the old primary: application roles lose their login, the server turns read-only
/// for every new session, and every other client session is terminated. Idempotent: a retry
/// repeats each part harmlessly and reports what is fenced.
pub async fn fence(primary: &PgTarget) -> Result<FenceOutcome> {
    let t0 = Instant::now();
    let mut conn = match writable_session(primary).await {
        Ok(c) => c,
        Err(e) => {
            return Ok(FenceOutcome::Unreachable {
                error: format!("{e:#}"),
            });
        }
    };
    let was_in_recovery = in_recovery(&mut conn).await?;
    let already_read_only = new_session_read_only(primary).await?;
    // A standby takes no writes and cannot change its catalog: read-only is enough there.
    let roles = if was_in_recovery {
        Vec::new()
    } else {
        fence_roles(&mut conn)
            .await
            .with_context(|| format!("{primary}: taking login from application roles"))?
    };
    // ALTER SYSTEM refuses to run in a transaction block: one statement per call.
    sqlx::raw_sql("ALTER SYSTEM SET default_transaction_read_only = on")
        .execute(&mut conn)
        .await
        .with_context(|| format!("{primary}: ALTER SYSTEM SET default_transaction_read_only"))?;
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut conn)
        .await
        .with_context(|| format!("{primary}: pg_reload_conf()"))?;
    wait_setting(primary, true).await?;
    // Only now: a terminated client that reconnects gets no login or a read-only session.
    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 1000)) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut conn)
    .await
    .with_context(|| format!("{primary}: terminating client sessions"))?;
    let _ = conn.close().await;
    Ok(FenceOutcome::Fenced {
        already_read_only,
        was_in_recovery,
        roles,
        terminated: u64::try_from(terminated).unwrap_or(0),
        took: t0.elapsed(),
    })
}

/// Undo `fence` exactly: LOGIN back to the roles niledr marked (and only those), the
/// read-only setting reset, config reloaded.
pub async fn unfence(primary: &PgTarget) -> Result<UnfenceOutcome> {
    let t0 = Instant::now();
    let was_read_only = new_session_read_only(primary).await?;
    let mut conn = writable_session(primary).await?;
    let roles = if in_recovery(&mut conn).await? {
        Vec::new()
    } else {
        give_back_logins(&mut conn, primary).await?
    };
    sqlx::raw_sql("ALTER SYSTEM RESET default_transaction_read_only")
        .execute(&mut conn)
        .await
        .with_context(|| format!("{primary}: ALTER SYSTEM RESET default_transaction_read_only"))?;
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut conn)
        .await
        .with_context(|| format!("{primary}: pg_reload_conf()"))?;
    let _ = conn.close().await;
    wait_setting(primary, false).await?;
    Ok(UnfenceOutcome {
        was_read_only,
        roles,
        took: t0.elapsed(),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnfenceOutcome {
    pub was_read_only: bool,
    /// Roles whose LOGIN was given back.
    pub roles: Vec<String>,
    pub took: Duration,
}
