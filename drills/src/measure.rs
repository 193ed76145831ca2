//! RTO and RPO from a canary log, by the method of DESIGN.md ("Measuring RTO and RPO").
//!
//! - RTO per store: T0 (the fault) → the first write acknowledged through the production path
//!   after the outage the canary saw; plus the canary's own view of the outage and the longest
//!   gap between two acknowledged writes.
//! - RPO per store: the markers present on the NEW primary are read back; lost = acknowledged
//!   seqs missing there (count + ranges); RPO time = ack time of the last lost seq − ack time
//!   of the last surviving seq before the first loss. Never estimated from timestamps alone:
//!   zero lost markers means an RPO of zero, whatever the clocks say.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::canary::{Ack, CanaryLog, Stage, Store, StoreLog};

const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The method, stated in every measurement.
pub const METHOD: &str = "independent canary writer at a fixed rate per store through the production path \
(service name resolved at the authoritative DNS on every reconnect, connect, write); \
RTO = T0 -> first acknowledged write after the outage; RPO = acknowledged markers missing on \
the new primary (read back), time = ack(last lost) - ack(last surviving before the loss)";

/// A run of consecutive seqs, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub first: i64,
    pub last: i64,
}

/// Compress ascending seqs into ranges.
pub fn ranges(seqs: impl IntoIterator<Item = i64>) -> Vec<SeqRange> {
    let mut out: Vec<SeqRange> = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(s) => r.last = s,
            _ => out.push(SeqRange { first: s, last: s }),
        }
    }
    out
}

/// The longest time between two consecutive acknowledged writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub length: Duration,
    pub before: Ack,
    pub after: Ack,
}

pub fn longest_gap(log: &StoreLog) -> Option<Gap> {
    log.acks
        .windows(2)
        .map(|w| Gap {
            length: w[1].at.saturating_sub(w[0].at),
            before: w[0],
            after: w[1],
        })
        .max_by_key(|g| g.length)
}

/// RTO of one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rto {
    pub store: Store,
    pub name: String,
    /// T0 on the canary's monotonic clock (offset since it started).
    pub t0: Duration,
    /// The canary saw at least one failure at or after T0.
    pub outage_observed: bool,
    /// Last acknowledged write at or before T0.
    pub last_ack_before: Option<Ack>,
    /// First failure at or after T0, relative to T0 (the canary's detection).
    pub first_failure_after_t0: Option<Duration>,
    /// First write acknowledged after the outage (after the first failure at/after T0).
    pub recovered_by: Option<Ack>,
    /// T0 → `recovered_by`; `None` if service never came back while the canary ran.
    pub rto: Option<Duration>,
    /// `last_ack_before` → `recovered_by`: the outage as clients saw it.
    pub outage_seen: Option<Duration>,
    pub longest_gap: Option<Gap>,
    pub failures_after_t0: u64,
    pub write_failures_after_t0: u64,
    pub reconnects_after_t0: u64,
}

/// RTO of one store for a fault at `t0` (offset on the log's clock; see `CanaryLog::offset_of`).
pub fn rto(log: &StoreLog, t0: Duration) -> Rto {
    let last_ack_before = log.acks.iter().rev().find(|a| a.at <= t0).copied();
    let after: Vec<_> = log.failures.iter().filter(|f| f.at >= t0).collect();
    let first_failure = after.first().map(|f| f.at);
    // After the outage: the first ack following the first failure; with no failure seen, the
    // first ack after T0 (a fault the clients never noticed).
    let from = first_failure.unwrap_or(t0);
    let recovered_by = log.acks.iter().find(|a| a.at > from).copied();
    Rto {
        store: log.store,
        name: log.name.clone(),
        t0,
        outage_observed: first_failure.is_some(),
        last_ack_before,
        first_failure_after_t0: first_failure.map(|f| f.saturating_sub(t0)),
        rto: recovered_by.map(|a| a.at.saturating_sub(t0)),
        outage_seen: match (last_ack_before, recovered_by) {
            (Some(b), Some(r)) => Some(r.at.saturating_sub(b.at)),
            _ => None,
        },
        recovered_by,
        longest_gap: longest_gap(log),
        failures_after_t0: after.len() as u64,
        write_failures_after_t0: after.iter().filter(|f| f.stage == Stage::Write).count() as u64,
        reconnects_after_t0: log.reconnects.iter().filter(|r| r.at >= t0).count() as u64,
    }
}

/// RPO of one store, from the markers present on the new primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rpo {
    pub store: Store,
    pub name: String,
    /// Where the markers were read back.
    pub checked_on: String,
    pub acknowledged: u64,
    /// Markers found there (acknowledged or not).
    pub markers_found: u64,
    pub lost: u64,
    pub lost_ranges: Vec<SeqRange>,
    pub last_lost: Option<Ack>,
    /// The last acknowledged seq present there before the first lost one.
    pub last_surviving_before_loss: Option<Ack>,
    /// `last_lost.at − last_surviving_before_loss.at` (monotonic clock); zero if none lost.
    pub rpo: Duration,
    /// No acknowledged write survived before the loss: `rpo` then runs from the first lost
    /// ack and is a lower bound.
    pub rpo_is_lower_bound: bool,
}

/// Compare the acknowledged seqs of `log` with the seqs `present` on the new primary.
pub fn rpo(log: &StoreLog, present: &BTreeSet<i64>, checked_on: &str) -> Rpo {
    let lost: Vec<&Ack> = log
        .acks
        .iter()
        .filter(|a| !present.contains(&a.seq))
        .collect();
    let first_lost = lost.first().map(|a| a.seq);
    let last_lost = lost.last().map(|a| **a);
    let survivor = first_lost.and_then(|first| {
        log.acks
            .iter()
            .rev()
            .find(|a| a.seq < first && present.contains(&a.seq))
            .copied()
    });
    let (rpo, lower_bound) = match (last_lost, survivor, lost.first()) {
        (Some(l), Some(s), _) => (l.at.saturating_sub(s.at), false),
        (Some(l), None, Some(f)) => (l.at.saturating_sub(f.at), true),
        _ => (Duration::ZERO, false),
    };
    Rpo {
        store: log.store,
        name: log.name.clone(),
        checked_on: checked_on.to_string(),
        acknowledged: log.acks.len() as u64,
        markers_found: present.len() as u64,
        lost: lost.len() as u64,
        lost_ranges: ranges(lost.iter().map(|a| a.seq)),
        last_lost,
        last_surviving_before_loss: survivor,
        rpo,
        rpo_is_lower_bound: lower_bound,
    }
}

/// RTO and RPO of one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeasurement {
    pub rto: Rto,
    pub rpo: Option<Rpo>,
}

/// Everything measured in one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    pub method: String,
    pub t0_wall: Option<Timestamp>,
    pub canary_interval: Duration,
    pub canary_timeout: Duration,
    pub canary_ran_for: Duration,
    pub postgres: Option<StoreMeasurement>,
    pub redis: Option<StoreMeasurement>,
}

/// Where to read the PostgreSQL markers back (the new primary).
#[derive(Clone)]
pub struct PgSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub table: String,
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgSource({}@{}:{}/{} table {})",
            self.user, self.host, self.port, self.database, self.table
        )
    }
}

/// Where to read the Redis markers back (the new primary).
#[derive(Clone)]
pub struct RedisSource {
    pub address: SocketAddr,
    pub password: Option<String>,
    pub key_prefix: String,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RedisSource({} prefix {})",
            self.address, self.key_prefix
        )
    }
}

/// `SELECT seq FROM table` on the given server.
pub async fn postgres_markers(src: &PgSource) -> Result<BTreeSet<i64>> {
    if !src
        .table
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || src.table.is_empty()
    {
        bail!("table {:?} is not a plain identifier", src.table);
    }
    let opts = PgConnectOptions::new_without_pgpass()
        .host(&src.host)
        .port(src.port)
        .username(&src.user)
        .password(&src.password)
        .database(&src.database)
        .application_name("niledr-measure");
    let what = format!("{}:{}", src.host, src.port);
    let mut conn = tokio::time::timeout(READ_TIMEOUT, PgConnection::connect_with(&opts))
        .await
        .with_context(|| format!("connecting to {what}: timed out"))?
        .with_context(|| format!("connecting to {what}"))?;
    // A restored database older than the table has no markers at all: every acknowledged
    // write is lost, which is a measurement, not an error.
    let exists: Option<String> = tokio::time::timeout(
        READ_TIMEOUT,
        sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&src.table)
            .fetch_one(&mut conn),
    )
    .await
    .with_context(|| format!("{what}: looking up {} timed out", src.table))?
    .with_context(|| format!("{what}: looking up {}", src.table))?;
    if exists.is_none() {
        let _ = conn.close().await;
        return Ok(BTreeSet::new());
    }
    let seqs: Vec<i64> = tokio::time::timeout(
        READ_TIMEOUT,
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT seq FROM {}",
            src.table
        )))
        .fetch_all(&mut conn),
    )
    .await
    .with_context(|| format!("{what}: reading {} timed out", src.table))?
    .with_context(|| format!("{what}: reading {}", src.table))?;
    let _ = conn.close().await;
    Ok(seqs.into_iter().collect())
}

/// `SCAN 0 MATCH {prefix}*` to the end; the seq is the key after the prefix.
pub async fn redis_markers(src: &RedisSource) -> Result<BTreeSet<i64>> {
    let SocketAddr::V4(v4) = src.address else {
        bail!("redis {}: IPv4 only", src.address);
    };
    let mut conn =
        crate::canary::redis_open(*v4.ip(), v4.port(), src.password.as_deref(), READ_TIMEOUT)
            .await
            .with_context(|| format!("connecting to redis {}", src.address))?;
    let pattern = format!("{}*", src.key_prefix);
    let mut cursor: u64 = 0;
    let mut out = BTreeSet::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .with_context(|| format!("redis {}: SCAN", src.address))?;
        for k in keys {
            if let Some(seq) = k
                .strip_prefix(&src.key_prefix)
                .and_then(|s| s.parse::<i64>().ok())
            {
                out.insert(seq);
            }
        }
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// Measure RTO per store for the fault at `t0`, and RPO per store for which a source (the
/// new primary) is given.
pub async fn measure(
    log: &CanaryLog,
    t0: Instant,
    postgres: Option<&PgSource>,
    redis: Option<&RedisSource>,
) -> Result<Measurement> {
    let offset = log.offset_of(t0);
    let t0_wall = log
        .started
        .checked_add(offset)
        .ok()
        .filter(|_| log.origin.is_some());
    let pg = match &log.postgres {
        None => None,
        Some(l) => {
            let rpo = match postgres {
                None => None,
                Some(src) => Some(rpo(
                    l,
                    &postgres_markers(src).await?,
                    &format!("{}:{}", src.host, src.port),
                )),
            };
            Some(StoreMeasurement {
                rto: rto(l, offset),
                rpo,
            })
        }
    };
    let rd = match &log.redis {
        None => None,
        Some(l) => {
            let rpo = match redis {
                None => None,
                Some(src) => Some(rpo(l, &redis_markers(src).await?, &src.address.to_string())),
            };
            Some(StoreMeasurement {
                rto: rto(l, offset),
                rpo,
            })
        }
    };
    Ok(Measurement {
        method: METHOD.to_string(),
        t0_wall,
        canary_interval: log.interval,
        canary_timeout: log.timeout,
        canary_ran_for: log.ran_for,
        postgres: pg,
        redis: rd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::Failure;

    fn ack(seq: i64, ms: u64) -> Ack {
        Ack {
            seq,
            at: Duration::from_millis(ms),
            wall: Timestamp::UNIX_EPOCH,
            server: SocketAddr::from(([127, 0, 1, 1], 5432)),
        }
    }

    fn log() -> StoreLog {
        // seq 1..=10 every 10 ms; fault at 95 ms; failures at 100 and 200 ms; 11.. from 300 ms.
        let mut acks: Vec<Ack> = (1..=9).map(|s| ack(s, s as u64 * 10)).collect();
        acks.extend((11..=13).map(|s| ack(s, 300 + (s as u64 - 11) * 10)));
        let fail = |ms| Failure {
            seq: None,
            at: Duration::from_millis(ms),
            wall: Timestamp::UNIX_EPOCH,
            stage: Stage::Connect,
            error: "refused".into(),
        };
        StoreLog {
            store: Store::Postgres,
            name: "db.nilecare.sd.".into(),
            attempts: 13,
            acks,
            failures: vec![fail(100), fail(200)],
            failure_count: 2,
            reconnects: Vec::new(),
            reconnect_count: 0,
        }
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(
            ranges([1, 2, 3, 7, 9, 10]),
            vec![
                SeqRange { first: 1, last: 3 },
                SeqRange { first: 7, last: 7 },
                SeqRange { first: 9, last: 10 }
            ]
        );
        assert!(ranges([]).is_empty());
    }

    #[test]
    fn rto_runs_from_t0_to_first_ack_after_the_outage() {
        let r = rto(&log(), Duration::from_millis(95));
        assert!(r.outage_observed);
        assert_eq!(r.rto, Some(Duration::from_millis(205)));
        assert_eq!(r.last_ack_before.map(|a| a.seq), Some(9));
        assert_eq!(r.recovered_by.map(|a| a.seq), Some(11));
        assert_eq!(r.outage_seen, Some(Duration::from_millis(210)));
        assert_eq!(r.first_failure_after_t0, Some(Duration::from_millis(5)));
        assert_eq!(
            r.longest_gap.map(|g| g.length),
            Some(Duration::from_millis(210))
        );
    }

    #[test]
    fn rpo_counts_missing_acknowledged_markers() {
        let l = log();
        let present: BTreeSet<i64> = (1..=6).chain(11..=13).collect();
        let r = rpo(&l, &present, "new");
        assert_eq!(r.lost, 3);
        assert_eq!(r.lost_ranges, vec![SeqRange { first: 7, last: 9 }]);
        assert_eq!(r.last_surviving_before_loss.map(|a| a.seq), Some(6));
        assert_eq!(r.rpo, Duration::from_millis(30));
        assert!(!r.rpo_is_lower_bound);

        let all: BTreeSet<i64> = (1..=20).collect();
        let r = rpo(&l, &all, "new");
        assert_eq!((r.lost, r.rpo), (0, Duration::ZERO));
    }
}
