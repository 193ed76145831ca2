//! PostgreSQL actions: lag guard, fencing the old primary, promotion of the standby and the
//! switchover wait, each checking the server's own state first so a retry never acts twice.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::time::{Instant, sleep, timeout};

mod fence;
pub use fence::{FenceOutcome, UnfenceOutcome, fence, give_back_logins, unfence};

/// How long a connection attempt may take before the server counts as not answering.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `pg_promote(false)` returns at once; `pg_is_in_recovery()` is polled this often
/// (DESIGN.md: writes accepted after ~24 ms, against ~101 ms for `pg_promote(true)`).
const PROMOTE_POLL: Duration = Duration::from_millis(5);
const POLL: Duration = Duration::from_millis(10);

/// Where and as whom to connect (plain data: the executor builds it from the config).
#[derive(Clone)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        write!(
            f,
            "PgTarget({}@{}:{}/{})",
            self.user, self.host, self.port, self.database
        )
    }
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl PgTarget {
    /// Database `postgres`.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> PgTarget {
        PgTarget {
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
            database: "postgres".into(),
        }
    }

    pub fn with_database(mut self, database: impl Into<String>) -> PgTarget {
        self.database = database.into();
        self
    }

    pub(crate) fn options(&self) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .password(&self.password)
            .database(&self.database)
            .application_name("niledr")
            .disable_statement_logging()
    }

    /// Connect within `CONNECT_TIMEOUT`.
    pub async fn connect(&self) -> Result<PgConnection> {
        connect_with(&self.options(), &self.to_string()).await
    }
}

pub(crate) async fn connect_with(options: &PgConnectOptions, what: &str) -> Result<PgConnection> {
    match timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(anyhow!(e).context(format!("connecting to {what}"))),
        Err(_) => bail!("connecting to {what}: no answer within {CONNECT_TIMEOUT:?}"),
    }
}

/// A WAL position (`X/Y`), comparable as a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Lsn> {
        let (hi, lo) = s
            .split_once('/')
            .with_context(|| format!("not an LSN: {s:?}"))?;
        let hi = u64::from_str_radix(hi, 16).with_context(|| format!("not an LSN: {s:?}"))?;
        let lo = u64::from_str_radix(lo, 16).with_context(|| format!("not an LSN: {s:?}"))?;
        Ok(Lsn((hi << 32) | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// What a server says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PgState {
    pub in_recovery: bool,
    /// Timeline of the WAL being written (primary) or received/replayed (standby).
    pub timeline: u32,
    /// Current WAL position (primary) or last replayed position (standby).
    pub lsn: Lsn,
    /// Standby only: last WAL position received.
    pub receive_lsn: Option<Lsn>,
    /// `default_transaction_read_only` as a new session sees it (the fence).
    pub read_only: bool,
}

async fn scalar_text(conn: &mut PgConnection, sql: &'static str) -> Result<Option<String>> {
    sqlx::query_scalar::<_, Option<String>>(sql)
        .fetch_one(conn)
        .await
        .with_context(|| format!("running {sql:?}"))
}

async fn in_recovery(conn: &mut PgConnection) -> Result<bool> {
    sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
        .fetch_one(conn)
        .await
        .context("SELECT pg_is_in_recovery()")
}

fn lsn(v: Option<String>, what: &str) -> Result<Lsn> {
    v.with_context(|| format!("{what} is NULL"))?.parse()
}

/// The server's state on an open connection.
pub async fn state_of(conn: &mut PgConnection) -> Result<PgState> {
    let in_recovery = in_recovery(conn).await?;
    let read_only = scalar_text(
        conn,
        "SELECT current_setting('default_transaction_read_only')",
    )
    .await?
    .as_deref()
        == Some("on");
    if in_recovery {
        let replay = lsn(
            scalar_text(conn, "SELECT pg_last_wal_replay_lsn()::text").await?,
            "replay LSN",
        )?;
        let receive = scalar_text(conn, "SELECT pg_last_wal_receive_lsn()::text")
            .await?
            .map(|s| s.parse())
            .transpose()?;
        // The WAL receiver knows the timeline it streams; without one, the last checkpoint's.
        let timeline = sqlx::query_scalar::<_, i32>(
            "SELECT COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), \
             (SELECT timeline_id FROM pg_control_checkpoint()))",
        )
        .fetch_one(&mut *conn)
        .await
        .context("reading the standby's timeline")?;
        Ok(PgState {
            in_recovery,
            timeline: u32::try_from(timeline).context("negative timeline")?,
            lsn: replay,
            receive_lsn: receive,
            read_only,
        })
    } else {
        let (lsn_text, walfile): (String, String) = sqlx::query_as(
            "SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())",
        )
        .fetch_one(&mut *conn)
        .await
        .context("reading the current WAL position")?;
        // The first 8 hex digits of a WAL file name are its timeline.
        let timeline = walfile
            .get(..8)
            .and_then(|t| u32::from_str_radix(t, 16).ok())
            .with_context(|| format!("unexpected WAL file name {walfile:?}"))?;
        Ok(PgState {
            in_recovery,
            timeline,
            lsn: lsn_text.parse()?,
            receive_lsn: None,
            read_only,
        })
    }
}

/// Connect and read the server's state (in-doubt check for every PostgreSQL step).
pub async fn observe(target: &PgTarget) -> Result<PgState> {
    let mut conn = target.connect().await?;
    let s = state_of(&mut conn)
        .await
        .with_context(|| format!("observing {target}"));
    let _ = conn.close().await;
    s
}

// ---------------------------------------------------------------------------------------
// replication (whom a standby streams from, measured live)

/// A standby's WAL receiver as the standby itself reports it, and its lag against one
/// given upstream (both read now, not from the probes, whose config names one fixed
/// upstream per service: after a switchover the replication direction is reversed).
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    pub in_recovery: bool,
    /// `pg_stat_wal_receiver.status` (`streaming`, ...); `None` without a WAL receiver.
    pub receiver_status: Option<String>,
    /// `sender_host:sender_port` of the WAL receiver.
    pub sender: Option<String>,
    /// The sender is `upstream` (same host and port).
    pub from_upstream: bool,
    pub replay_lsn: Option<Lsn>,
    /// `upstream`'s current position (received position if it is itself a standby).
    pub upstream_lsn: Option<Lsn>,
    pub lag_bytes: Option<u64>,
}

impl Replication {
    /// In recovery and streaming from `upstream`.
    pub fn streaming(&self) -> bool {
        self.in_recovery
            && self.from_upstream
            && self.receiver_status.as_deref() == Some("streaming")
    }
}

impl fmt::Display for Replication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.in_recovery {
            return write!(f, "not in recovery");
        }
        write!(
            f,
            "WAL receiver {} from {}, lag {}",
            self.receiver_status.as_deref().unwrap_or("absent"),
            self.sender.as_deref().unwrap_or("nobody"),
            self.lag_bytes
                .map_or("unknown".to_string(), |b| format!("{b} bytes"))
        )
    }
}

/// The sender (`host`, `port`) a standby's WAL receiver is connected to, if it has one.
pub async fn wal_sender(standby: &PgTarget) -> Result<Option<(String, u16)>> {
    let r = receiver(standby).await?;
    Ok(r.2.zip(r.3))
}

/// Does `standby` stream WAL from `host:port` right now (its own `pg_stat_wal_receiver`)?
pub async fn streams_from(standby: &PgTarget, host: &str, port: u16) -> Result<(bool, String)> {
    let (in_recovery, status, shost, sport, _) = receiver(standby).await?;
    let from = shost.as_deref() == Some(host) && sport == Some(port);
    let streaming = in_recovery && from && status.as_deref() == Some("streaming");
    let seen = if in_recovery {
        format!(
            "WAL receiver {} from {}",
            status.as_deref().unwrap_or("absent"),
            shost.map_or("nobody".to_string(), |h| format!(
                "{h}:{}",
                sport.unwrap_or_default()
            ))
        )
    } else {
        "not in recovery (it is a primary)".to_string()
    };
    Ok((streaming, seen))
}

type ReceiverRow = (
    bool,
    Option<String>,
    Option<String>,
    Option<u16>,
    Option<Lsn>,
);

async fn receiver(standby: &PgTarget) -> Result<ReceiverRow> {
    let mut conn = standby.connect().await?;
    let row: (
        bool,
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT pg_is_in_recovery(), \
             (SELECT status FROM pg_stat_wal_receiver), \
             (SELECT sender_host FROM pg_stat_wal_receiver), \
             (SELECT sender_port FROM pg_stat_wal_receiver), \
             pg_last_wal_replay_lsn()::text",
    )
    .fetch_one(&mut conn)
    .await
    .with_context(|| format!("{standby}: reading pg_stat_wal_receiver"))?;
    let _ = conn.close().await;
    let replay = row.4.map(|s| s.parse()).transpose()?;
    Ok((
        row.0,
        row.1,
        row.2,
        row.3.and_then(|p| u16::try_from(p).ok()),
        replay,
    ))
}

/// Is `standby` streaming from `upstream`, and how far behind it is it?
pub async fn replication(standby: &PgTarget, upstream: &PgTarget) -> Result<Replication> {
    let (in_recovery, receiver_status, host, port, replay_lsn) = receiver(standby).await?;
    let from_upstream =
        host.as_deref() == Some(upstream.host.as_str()) && port == Some(upstream.port);
    let sender = host.map(|h| format!("{h}:{}", port.unwrap_or_default()));
    let up = observe(upstream)
        .await
        .with_context(|| format!("upstream {upstream}"))?;
    let upstream_lsn = if up.in_recovery {
        up.receive_lsn
    } else {
        Some(up.lsn)
    };
    let lag_bytes = match (upstream_lsn, replay_lsn) {
        (Some(u), Some(r)) if in_recovery => Some(u.0.saturating_sub(r.0)),
        _ => None,
    };
    Ok(Replication {
        in_recovery,
        receiver_status,
        sender,
        from_upstream,
        replay_lsn,
        upstream_lsn,
        lag_bytes,
    })
}

// ---------------------------------------------------------------------------------------
// check_lag

/// Result of the lag guard. A guard that does not hold is data, not an error.
#[derive(Debug, Clone, PartialEq)]
pub struct LagReport {
    pub standby_in_recovery: bool,
    pub standby_replay_lsn: Lsn,
    pub standby_receive_lsn: Option<Lsn>,
    /// `None` when the primary did not answer (`primary_error` says why).
    pub primary_lsn: Option<Lsn>,
    pub primary_error: Option<String>,
    /// Primary's current position minus the standby's replay position.
    pub lag_bytes: Option<u64>,
    /// 0 when caught up; otherwise the age of the last replayed transaction.
    pub lag_seconds: Option<f64>,
    pub within_bounds: bool,
    pub reason: String,
}

/// Is the standby within `max_bytes` and `max_seconds` of the primary? If the primary does
/// not answer the lag cannot be measured here: `within_bounds` is false and the reason says
/// so (the caller decides with the probes' last figure).
pub async fn check_lag(
    standby: &PgTarget,
    primary: &PgTarget,
    max_bytes: u64,
    max_seconds: f64,
) -> Result<LagReport> {
    let mut sconn = standby.connect().await?;
    let s = state_of(&mut sconn)
        .await
        .with_context(|| format!("standby {standby}"))?;
    let replay_age: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8",
    )
    .fetch_one(&mut sconn)
    .await
    .context("reading the standby's replay age")?;
    let _ = sconn.close().await;

    let primary_state = observe(primary).await;
    let mut report = LagReport {
        standby_in_recovery: s.in_recovery,
        standby_replay_lsn: s.lsn,
        standby_receive_lsn: s.receive_lsn,
        primary_lsn: None,
        primary_error: None,
        lag_bytes: None,
        lag_seconds: None,
        within_bounds: false,
        reason: String::new(),
    };
    if !s.in_recovery {
        report.reason = format!("standby {standby} is not in recovery (already promoted?)");
        return Ok(report);
    }
    let p = match primary_state {
        Ok(p) => p,
        Err(e) => {
            report.primary_error = Some(format!("{e:#}"));
            report.reason = format!(
                "primary {primary} does not answer: lag cannot be measured against it; use the probes' last figure"
            );
            return Ok(report);
        }
    };
    if p.in_recovery {
        report.reason = format!("primary {primary} is itself in recovery");
        return Ok(report);
    }
    let bytes = p.lsn.0.saturating_sub(s.lsn.0);
    let seconds = if bytes == 0 { Some(0.0) } else { replay_age };
    report.primary_lsn = Some(p.lsn);
    report.lag_bytes = Some(bytes);
    report.lag_seconds = seconds;
    report.within_bounds = bytes <= max_bytes && seconds.is_some_and(|s| s <= max_seconds);
    report.reason = format!(
        "lag {bytes} bytes (max {max_bytes}), {} (max {max_seconds} s)",
        seconds.map_or("unknown seconds".to_string(), |s| format!("{s:.3} s"))
    );
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// promote

/// What promotion did (or found already done).
#[derive(Debug, Clone, PartialEq)]
pub struct PromoteOutcome {
    /// It was not in recovery when we looked: nothing was done (never promote twice).
    pub already_promoted: bool,
    pub timeline_before: u32,
    pub timeline_after: u32,
    /// Replay position at the moment of promotion (the last WAL the standby had).
    pub lsn_before: Lsn,
    pub lsn_after: Lsn,
    /// From `pg_promote(false)` to `pg_is_in_recovery()` = false (zero if already promoted).
    pub promotion_time: Duration,
    /// Application roles given their LOGIN back: the old primary's fence had reached this
    /// server through replication before it was promoted.
    pub restored_logins: Vec<String>,
}

impl PromoteOutcome {
    pub fn summary(&self) -> String {
        let logins = if self.restored_logins.is_empty() {
            String::new()
        } else {
            format!(
                "; login given back to [{}] (fenced on the old primary, replicated here)",
                self.restored_logins.join(", ")
            )
        };
        if self.already_promoted {
            format!(
                "already promoted (timeline {}){logins}",
                self.timeline_after
            )
        } else {
            format!(
                "promoted in {:?}: timeline {} → {}, last replayed {}{logins}",
                self.promotion_time, self.timeline_before, self.timeline_after, self.lsn_before
            )
        }
    }
}

/// A new primary takes the application: roles fenced on the old primary (marked, replicated
/// here) get their LOGIN back.
async fn restore_logins(conn: &mut PgConnection, server: &PgTarget) -> Result<Vec<String>> {
    sqlx::raw_sql("SET default_transaction_read_only = off")
        .execute(&mut *conn)
        .await
        .with_context(|| format!("{server}: SET default_transaction_read_only = off"))?;
    give_back_logins(conn, server)
        .await
        .with_context(|| format!("{server}: giving application roles their login back"))
}

/// Promote the standby. Idempotent through `pg_is_in_recovery()`: if it already is a
/// primary, it reports "already promoted" with its timeline and does nothing. A promotion
/// already requested but not finished (in doubt after a crash) is simply awaited: a second
/// `pg_promote` while one is pending does not switch the timeline twice.
pub async fn promote(standby: &PgTarget, wait: Duration) -> Result<PromoteOutcome> {
    let mut conn = standby.connect().await?;
    let before = state_of(&mut conn)
        .await
        .with_context(|| format!("standby {standby}"))?;
    if !before.in_recovery {
        let restored = restore_logins(&mut conn, standby).await?;
        let _ = conn.close().await;
        return Ok(PromoteOutcome {
            restored_logins: restored,
            already_promoted: true,
            timeline_before: before.timeline,
            timeline_after: before.timeline,
            lsn_before: before.lsn,
            lsn_after: before.lsn,
            promotion_time: Duration::ZERO,
        });
    }
    let t0 = Instant::now();
    if let Err(e) = sqlx::raw_sql("SELECT pg_promote(false)")
        .execute(&mut conn)
        .await
    {
        // Someone (or a previous attempt) finished the promotion between our two queries.
        if in_recovery(&mut conn).await? {
            return Err(anyhow!(e).context(format!("{standby}: pg_promote(false)")));
        }
    }
    let deadline = t0 + wait;
    loop {
        if !in_recovery(&mut conn).await? {
            break;
        }
        if Instant::now() >= deadline {
            bail!("{standby}: still in recovery {wait:?} after pg_promote(false)");
        }
        sleep(PROMOTE_POLL).await;
    }
    let promotion_time = t0.elapsed();
    let after = state_of(&mut conn)
        .await
        .with_context(|| format!("new primary {standby}"))?;
    let restored = restore_logins(&mut conn, standby).await?;
    let _ = conn.close().await;
    Ok(PromoteOutcome {
        restored_logins: restored,
        already_promoted: false,
        timeline_before: before.timeline,
        timeline_after: after.timeline,
        lsn_before: before.lsn,
        lsn_after: after.lsn,
        promotion_time,
    })
}

// ---------------------------------------------------------------------------------------
// wait_caught_up

#[derive(Debug, Clone, PartialEq)]
pub struct CaughtUp {
    /// The read-only primary's WAL position when we started waiting.
    pub target_lsn: Lsn,
    pub replay_lsn: Lsn,
    pub waited: Duration,
}

/// Switchover: wait until the standby has replayed everything the (already read-only)
/// primary has written. Refuses if the primary is not fenced read-only, since writes could
/// otherwise land after the target position.
pub async fn wait_caught_up(
    standby: &PgTarget,
    primary: &PgTarget,
    wait: Duration,
) -> Result<CaughtUp> {
    let t0 = Instant::now();
    let p = observe(primary)
        .await
        .with_context(|| format!("primary {primary}"))?;
    if p.in_recovery {
        bail!("{primary} is in recovery: not the primary to catch up with");
    }
    if !p.read_only {
        bail!(
            "{primary} is not read-only: fence it first so no write lands after the target position"
        );
    }
    let target = p.lsn;
    let mut conn = standby.connect().await?;
    let deadline = t0 + wait;
    loop {
        let replay = lsn(
            scalar_text(&mut conn, "SELECT pg_last_wal_replay_lsn()::text").await?,
            "replay LSN (is it a standby?)",
        )?;
        if replay >= target {
            let _ = conn.close().await;
            return Ok(CaughtUp {
                target_lsn: target,
                replay_lsn: replay,
                waited: t0.elapsed(),
            });
        }
        if Instant::now() >= deadline {
            bail!(
                "{standby}: replayed up to {replay}, primary is at {target}; not caught up within {wait:?}"
            );
        }
        sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_and_orders() {
        let a: Lsn = "0/3000148".parse().unwrap_or(Lsn(0));
        assert_eq!(a, Lsn(0x0300_0148));
        assert_eq!(a.to_string(), "0/3000148");
        let b: Lsn = "1/0".parse().unwrap_or(Lsn(0));
        assert!(b > a);
        assert_eq!(b.0, 1 << 32);
        assert!("nonsense".parse::<Lsn>().is_err());
    }
}
