//! `postgres` probe: reachable, in recovery or not, timeline, WAL positions, and for a standby
//! the lag in bytes against its upstream and the replay delay in seconds.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use super::Outcome;
use crate::result::{Observation, PgObservation, parse_lsn};
use crate::target::{PgEndpoint, PgSpec};

/// One round trip that works on a primary and on a standby.
const OBSERVE: &str = "
SELECT pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
            ELSE pg_current_wal_lsn() END::text AS current_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       CASE WHEN pg_is_in_recovery()
            THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver)::int8,
                          (SELECT timeline_id FROM pg_control_checkpoint())::int8)
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8
       END AS timeline,
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() <> 'not paused'
            ELSE false END AS replay_paused,
       CASE WHEN pg_is_in_recovery()
            THEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
       END AS streaming,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0.0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS replay_delay,
       (SELECT sender_host FROM pg_stat_wal_receiver) AS sender_host,
       (SELECT sender_port FROM pg_stat_wal_receiver)::int8 AS sender_port";

const UPSTREAM_LSN: &str = "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                                   ELSE pg_current_wal_lsn() END::text";

pub struct PgProber {
    spec: PgSpec,
    conn: Option<PgConnection>,
    upstream: Option<PgConnection>,
    /// Whom `upstream` is connected to.
    upstream_addr: Option<std::net::SocketAddr>,
}

impl PgProber {
    pub fn new(spec: PgSpec) -> Self {
        Self {
            spec,
            conn: None,
            upstream: None,
            upstream_addr: None,
        }
    }

    /// The server a standby's lag is measured against: the configured peer it streams from
    /// now, or else its configured upstream.
    fn upstream_for(&self, obs: &PgObservation) -> Option<&PgEndpoint> {
        let streamed = obs.sender.as_ref().and_then(|(host, port)| {
            self.spec
                .peers
                .iter()
                .find(|e| e.address.port() == *port && e.address.ip().to_string() == *host)
        });
        streamed.or(self.spec.upstream.as_ref())
    }

    pub fn reset(&mut self) {
        self.conn = None;
        self.upstream = None;
    }

    /// Observe the server, then (a standby) its upstream's WAL position for the lag. The
    /// upstream part gets at most half of `timeout`: an unreachable upstream is reported in
    /// the observation (`upstream_error`), it does not turn the standby's own answer — its WAL
    /// receiver state, which is the evidence that the upstream is gone — into a timeout.
    pub async fn run(&mut self, timeout: std::time::Duration) -> Outcome {
        let mut obs = match observe(&mut self.conn, &self.spec.endpoint).await {
            Ok(obs) => obs,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        // A primary lags behind nobody: after a failover the promoted server's configured
        // upstream is the old primary, and measuring against it would report a false lag.
        if let Some(up) = self.upstream_for(&obs).filter(|_| obs.in_recovery).cloned() {
            if self.upstream_addr != Some(up.address) {
                self.upstream = None;
                self.upstream_addr = Some(up.address);
            }
            obs.lag_against = Some(up.address);
            let up = &up;
            let bounded = tokio::time::timeout(timeout / 2, upstream_lsn(&mut self.upstream, up));
            let answer = bounded.await.unwrap_or_else(|_| {
                Err(format!(
                    "{} did not answer within {} ms",
                    up.address,
                    (timeout / 2).as_millis()
                ))
            });
            match answer {
                Ok(up_lsn) => {
                    let ours = obs.replay_lsn.or(obs.current_lsn).unwrap_or(0);
                    obs.lag_bytes = Some(up_lsn.saturating_sub(ours));
                }
                Err(e) => {
                    self.upstream = None;
                    obs.upstream_error = Some(e);
                }
            }
        }
        Ok(Observation::Postgres(obs))
    }
}

async fn connection<'a>(
    slot: &'a mut Option<PgConnection>,
    ep: &PgEndpoint,
) -> Result<&'a mut PgConnection, String> {
    if slot.is_none() {
        let mut opts = PgConnectOptions::new()
            .host(&ep.address.ip().to_string())
            .port(ep.address.port())
            .username(&ep.user)
            .database(&ep.database)
            .application_name("niledr-probe")
            .disable_statement_logging();
        if let Some(pw) = &ep.password {
            opts = opts.password(pw);
        }
        let conn = PgConnection::connect_with(&opts)
            .await
            .map_err(|e| format!("connect {}: {e}", ep.address))?;
        *slot = Some(conn);
    }
    slot.as_mut()
        .ok_or_else(|| "connection vanished".to_string())
}

async fn observe(
    slot: &mut Option<PgConnection>,
    ep: &PgEndpoint,
) -> Result<PgObservation, String> {
    let conn = connection(slot, ep).await?;
    let row = sqlx::query(OBSERVE)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| format!("query {}: {e}", ep.address))?;
    let get_lsn = |col: &str| -> Option<u64> {
        row.try_get::<Option<String>, _>(col)
            .ok()
            .flatten()
            .and_then(|s| parse_lsn(&s))
    };
    let in_recovery: bool = row
        .try_get("in_recovery")
        .map_err(|e| format!("decode: {e}"))?;
    Ok(PgObservation {
        in_recovery,
        timeline: row.try_get::<Option<i64>, _>("timeline").ok().flatten(),
        current_lsn: get_lsn("current_lsn"),
        replay_lsn: get_lsn("replay_lsn"),
        replay_paused: row.try_get("replay_paused").unwrap_or(false),
        wal_receiver_streaming: row.try_get::<Option<bool>, _>("streaming").ok().flatten(),
        lag_bytes: None,
        lag_against: None,
        replay_delay_seconds: row.try_get::<Option<f64>, _>("replay_delay").ok().flatten(),
        upstream_error: None,
        sender: sender(&row),
    })
}

fn sender(row: &sqlx::postgres::PgRow) -> Option<(String, u16)> {
    let host: String = row
        .try_get::<Option<String>, _>("sender_host")
        .ok()
        .flatten()?;
    let port: i64 = row
        .try_get::<Option<i64>, _>("sender_port")
        .ok()
        .flatten()?;
    Some((host, u16::try_from(port).ok()?))
}

async fn upstream_lsn(slot: &mut Option<PgConnection>, ep: &PgEndpoint) -> Result<u64, String> {
    let conn = connection(slot, ep).await?;
    let lsn: Option<String> = sqlx::query_scalar(UPSTREAM_LSN)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| format!("query {}: {e}", ep.address))?;
    lsn.as_deref()
        .and_then(parse_lsn)
        .ok_or_else(|| format!("{} reported no WAL position", ep.address))
}
