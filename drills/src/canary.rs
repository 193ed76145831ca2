//! The canary writer: an async task, independent of niledr's probes, that commits sequence
//! markers to PostgreSQL (`(seq, ts)` rows) and Redis (`SET {prefix}{seq} ts`) at a fixed
//! rate through the production path — the service name is resolved at the authoritative DNS
//! (asked directly, no cache) on every (re)connect, then connect, then write.
//!
//! It records every acknowledged seq (monotonic + wall-clock ack time and the server that
//! took it), every failure and every reconnect. A seq whose write failed or timed out has an
//! unknown outcome and is never counted as acknowledged. `measure` turns the log into RTO/RPO.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::rdata::A;
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, timeout};

/// At most this many failures / reconnects are kept per store (the counters keep counting).
const MAX_EVENTS: usize = 100_000;

/// The two stores the canary writes to (the drill schema's `Store`).
pub use crate::schema::Store;

/// Which port to use at a resolved address (sites may listen on different ports in tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub default: u16,
    pub by_address: BTreeMap<Ipv4Addr, u16>,
}

impl Ports {
    pub fn fixed(port: u16) -> Ports {
        Ports {
            default: port,
            by_address: BTreeMap::new(),
        }
    }

    pub fn at(&self, ip: Ipv4Addr) -> u16 {
        self.by_address.get(&ip).copied().unwrap_or(self.default)
    }
}

/// PostgreSQL target: rows `(seq bigint primary key, ts timestamptz)` in `table`.
#[derive(Clone)]
pub struct PgCanary {
    /// Service name, e.g. `db.nilecare.sd.`.
    pub name: String,
    pub ports: Ports,
    pub user: String,
    pub password: String,
    pub database: String,
    /// Plain identifier (`[a-z_][a-z0-9_]*`); created if missing on first connect.
    pub table: String,
}

impl std::fmt::Debug for PgCanary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgCanary({}@{}/{} table {})",
            self.user, self.name, self.database, self.table
        )
    }
}

/// Redis target: `SET {key_prefix}{seq} {ts}`.
#[derive(Clone)]
pub struct RedisCanary {
    /// Service name, e.g. `cache.nilecare.sd.`.
    pub name: String,
    pub ports: Ports,
    pub password: Option<String>,
    /// e.g. `canary:`; `measure::redis_markers` scans `{key_prefix}*`.
    pub key_prefix: String,
}

impl std::fmt::Debug for RedisCanary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisCanary({} prefix {})", self.name, self.key_prefix)
    }
}

#[derive(Debug, Clone)]
pub struct CanaryConfig {
    /// Authoritative servers, asked in order until one answers.
    pub dns_servers: Vec<SocketAddr>,
    pub postgres: Option<PgCanary>,
    pub redis: Option<RedisCanary>,
    /// Time between writes per store (10 ms = 100 Hz).
    pub interval: Duration,
    /// Per DNS query, per connect and per write: a hung server is noticed this fast.
    pub timeout: Duration,
}

impl CanaryConfig {
    /// 100 Hz, 300 ms timeouts, no stores yet.
    pub fn new(dns_servers: Vec<SocketAddr>) -> CanaryConfig {
        CanaryConfig {
            dns_servers,
            postgres: None,
            redis: None,
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(300),
        }
    }
}

/// One acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: i64,
    /// Monotonic, since the canary started.
    pub at: Duration,
    pub wall: Timestamp,
    /// The server that acknowledged it.
    pub server: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Resolve,
    Connect,
    Write,
}

/// A failed attempt (a failed write's seq has an unknown outcome: not acknowledged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub seq: Option<i64>,
    pub at: Duration,
    pub wall: Timestamp,
    pub stage: Stage,
    pub error: String,
}

/// A (re)connect through the production path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconnect {
    pub at: Duration,
    pub wall: Timestamp,
    /// The authoritative server that answered.
    pub dns_server: SocketAddr,
    pub resolved: Vec<Ipv4Addr>,
    /// Where the connection went.
    pub connected: SocketAddr,
    /// Resolve + connect.
    pub took: Duration,
}

/// Everything one store's writer saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreLog {
    pub store: Store,
    pub name: String,
    /// Writes sent (seqs handed out).
    pub attempts: u64,
    /// In seq order.
    pub acks: Vec<Ack>,
    pub failures: Vec<Failure>,
    pub failure_count: u64,
    pub reconnects: Vec<Reconnect>,
    pub reconnect_count: u64,
}

impl StoreLog {
    fn new(store: Store, name: &str) -> StoreLog {
        StoreLog {
            store,
            name: name.to_string(),
            attempts: 0,
            acks: Vec::new(),
            failures: Vec::new(),
            failure_count: 0,
            reconnects: Vec::new(),
            reconnect_count: 0,
        }
    }

    fn fail(&mut self, origin: Instant, seq: Option<i64>, stage: Stage, error: String) {
        self.failure_count += 1;
        if self.failures.len() < MAX_EVENTS {
            self.failures.push(Failure {
                seq,
                at: origin.elapsed(),
                wall: Timestamp::now(),
                stage,
                error,
            });
        }
    }
}

/// What the canary recorded, per store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryLog {
    /// The monotonic origin of every `at` (not serialized).
    #[serde(skip)]
    pub origin: Option<std::time::Instant>,
    pub started: Timestamp,
    pub ran_for: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub postgres: Option<StoreLog>,
    pub redis: Option<StoreLog>,
}

impl CanaryLog {
    /// `at` as an offset on the log's monotonic clock (zero if before the start or unknown).
    pub fn offset_of(&self, at: std::time::Instant) -> Duration {
        self.origin
            .map_or(Duration::ZERO, |o| at.saturating_duration_since(o))
    }

    pub fn store(&self, store: Store) -> Option<&StoreLog> {
        match store {
            Store::Postgres => self.postgres.as_ref(),
            Store::Redis => self.redis.as_ref(),
        }
    }
}

/// The running canary.
pub struct Canary;

impl Canary {
    /// Start one writer task per configured store. Must be called inside a tokio runtime.
    pub fn start(config: CanaryConfig) -> Result<CanaryHandle> {
        if config.dns_servers.is_empty() {
            bail!("canary: no authoritative DNS server given");
        }
        if config.interval.is_zero() || config.timeout.is_zero() {
            bail!("canary: interval and timeout must be positive");
        }
        if let Some(pg) = &config.postgres {
            check_identifier(&pg.table)?;
        }
        let origin = Instant::now();
        let started = Timestamp::now();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = |name: &str, store| Shared {
            origin,
            stop: stop.clone(),
            acked: Arc::new(AtomicU64::new(0)),
            config: config.clone(),
            log: StoreLog::new(store, name),
        };
        let postgres = config.postgres.clone().map(|pg| {
            let s = shared(&pg.name, Store::Postgres);
            let acked = s.acked.clone();
            (tokio::spawn(run_postgres(s, pg)), acked)
        });
        let redis = config.redis.clone().map(|r| {
            let s = shared(&r.name, Store::Redis);
            let acked = s.acked.clone();
            (tokio::spawn(run_redis(s, r)), acked)
        });
        Ok(CanaryHandle {
            origin,
            started,
            stop,
            interval: config.interval,
            timeout: config.timeout,
            postgres,
            redis,
        })
    }
}

type Task = (JoinHandle<StoreLog>, Arc<AtomicU64>);

pub struct CanaryHandle {
    origin: Instant,
    started: Timestamp,
    stop: Arc<AtomicBool>,
    interval: Duration,
    timeout: Duration,
    postgres: Option<Task>,
    redis: Option<Task>,
}

impl std::fmt::Debug for CanaryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CanaryHandle(acked postgres {}, redis {})",
            self.acked(Store::Postgres),
            self.acked(Store::Redis)
        )
    }
}

impl CanaryHandle {
    /// The monotonic origin of the log's offsets.
    pub fn origin(&self) -> std::time::Instant {
        self.origin.into_std()
    }

    /// Acknowledged writes so far.
    pub fn acked(&self, store: Store) -> u64 {
        let task = match store {
            Store::Postgres => &self.postgres,
            Store::Redis => &self.redis,
        };
        task.as_ref().map_or(0, |(_, n)| n.load(Ordering::Relaxed))
    }

    /// Stop the writers (each finishes its write in flight, bounded by the timeout).
    pub async fn stop(self) -> CanaryLog {
        self.stop.store(true, Ordering::Relaxed);
        let join = |t: Option<Task>, store| async move {
            match t {
                None => None,
                Some((h, _)) => match h.await {
                    Ok(log) => Some(log),
                    Err(e) => {
                        tracing::error!("canary {store} writer ended abnormally: {e}");
                        None
                    }
                },
            }
        };
        let postgres = join(self.postgres, Store::Postgres).await;
        let redis = join(self.redis, Store::Redis).await;
        CanaryLog {
            origin: Some(self.origin.into_std()),
            started: self.started,
            ran_for: self.origin.elapsed(),
            interval: self.interval,
            timeout: self.timeout,
            postgres,
            redis,
        }
    }
}

struct Shared {
    origin: Instant,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    config: CanaryConfig,
    log: StoreLog,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn ack(&mut self, seq: i64, server: SocketAddr) {
        self.log.acks.push(Ack {
            seq,
            at: self.origin.elapsed(),
            wall: Timestamp::now(),
            server,
        });
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    fn reconnected(
        &mut self,
        t: Instant,
        dns_server: SocketAddr,
        resolved: Vec<Ipv4Addr>,
        to: SocketAddr,
    ) {
        self.log.reconnect_count += 1;
        if self.log.reconnects.len() < MAX_EVENTS {
            self.log.reconnects.push(Reconnect {
                at: self.origin.elapsed(),
                wall: Timestamp::now(),
                dns_server,
                resolved,
                connected: to,
                took: t.elapsed(),
            });
        }
    }

    /// Resolve the name; a failure is recorded and gives `None`.
    async fn resolve(&mut self, name: &str) -> Option<(SocketAddr, Vec<Ipv4Addr>)> {
        match resolve_a(&self.config.dns_servers, name, self.config.timeout).await {
            Ok(r) => Some(r),
            Err(e) => {
                self.log
                    .fail(self.origin, None, Stage::Resolve, format!("{e:#}"));
                None
            }
        }
    }

    fn ticker(&self) -> tokio::time::Interval {
        let mut t = tokio::time::interval(self.config.interval);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    }
}

fn check_identifier(s: &str) -> Result<()> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("canary table {s:?} is not a plain identifier");
    }
    Ok(())
}

/// Ask the authoritative servers in order (directly, no recursion, no cache) for the A
/// records of `name`; the first that answers with a non-empty set wins.
pub async fn resolve_a(
    servers: &[SocketAddr],
    name: &str,
    per_query: Duration,
) -> Result<(SocketAddr, Vec<Ipv4Addr>)> {
    let mut qname = Name::from_str(name).with_context(|| format!("bad DNS name {name:?}"))?;
    qname.set_fqdn(true);
    let mut errors = Vec::new();
    for &server in servers {
        let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
            .with_timeout(Some(per_query))
            .build();
        let (mut client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
        let bg = tokio::spawn(bg);
        let resp = timeout(
            per_query,
            client.query(qname.clone(), DNSClass::IN, RecordType::A),
        )
        .await;
        drop(client);
        bg.abort();
        let resp = match resp {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                errors.push(format!("{server}: {e}"));
                continue;
            }
            Err(_) => {
                errors.push(format!("{server}: no answer within {per_query:?}"));
                continue;
            }
        };
        if resp.response_code != ResponseCode::NoError {
            errors.push(format!("{server}: {}", resp.response_code));
            continue;
        }
        let addrs: Vec<Ipv4Addr> = resp
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect();
        if addrs.is_empty() {
            errors.push(format!("{server}: no A record"));
            continue;
        }
        return Ok((server, addrs));
    }
    Err(anyhow!("resolving {qname} A: {}", errors.join("; ")))
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

async fn pg_connect(s: &mut Shared, pg: &PgCanary) -> Option<(PgConnection, SocketAddr)> {
    let t = Instant::now();
    let (dns_server, resolved) = s.resolve(&pg.name).await?;
    let mut errors = Vec::new();
    for ip in &resolved {
        let port = pg.ports.at(*ip);
        let opts = PgConnectOptions::new_without_pgpass()
            .host(&ip.to_string())
            .port(port)
            .username(&pg.user)
            .password(&pg.password)
            .database(&pg.database)
            .application_name("niledr-canary");
        match timeout(s.config.timeout, PgConnection::connect_with(&opts)).await {
            Ok(Ok(c)) => {
                let to = SocketAddr::from((*ip, port));
                s.reconnected(t, dns_server, resolved.clone(), to);
                return Some((c, to));
            }
            Ok(Err(e)) => errors.push(format!("{ip}:{port}: {e}")),
            Err(_) => errors.push(format!(
                "{ip}:{port}: no answer within {:?}",
                s.config.timeout
            )),
        }
    }
    s.log.fail(
        s.origin,
        None,
        Stage::Connect,
        format!("{} → {resolved:?}: {}", pg.name, errors.join("; ")),
    );
    None
}

async fn run_postgres(mut s: Shared, pg: PgCanary) -> StoreLog {
    let insert = format!(
        "INSERT INTO {} (seq, ts) VALUES ($1, $2::text::timestamptz)",
        pg.table
    );
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {} (seq bigint PRIMARY KEY, ts timestamptz NOT NULL, \
         written_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        pg.table
    );
    let mut ticker = s.ticker();
    let mut conn: Option<(PgConnection, SocketAddr)> = None;
    let mut table_ready = false;
    let mut seq: i64 = 0;
    while !s.stopped() {
        ticker.tick().await;
        if conn.is_none() {
            conn = pg_connect(&mut s, &pg).await;
            // A new server (a promoted standby, a restored cold site) may not have the table
            // yet: a restore from an archive that predates it has none.
            table_ready = false;
        }
        let Some((c, server)) = conn.as_mut() else {
            continue;
        };
        let server = *server;
        if !table_ready {
            match timeout(
                s.config.timeout,
                sqlx::raw_sql(sqlx::AssertSqlSafe(create.as_str())).execute(&mut *c),
            )
            .await
            {
                Ok(Ok(_)) => table_ready = true,
                other => {
                    let e = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {:?}", s.config.timeout),
                    };
                    s.log.fail(
                        s.origin,
                        None,
                        Stage::Write,
                        format!("{server}: creating {}: {e}", pg.table),
                    );
                    conn = None;
                    continue;
                }
            }
        }
        seq += 1;
        s.log.attempts += 1;
        let ts = Timestamp::now().to_string();
        let res = timeout(
            s.config.timeout,
            sqlx::query(sqlx::AssertSqlSafe(insert.as_str()))
                .bind(seq)
                .bind(&ts)
                .execute(&mut *c),
        )
        .await;
        match res {
            Ok(Ok(_)) => s.ack(seq, server),
            other => {
                let e = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", s.config.timeout),
                };
                s.log
                    .fail(s.origin, Some(seq), Stage::Write, format!("{server}: {e}"));
                // Unknown outcome; drop the connection (no close handshake with a hung
                // server) and resolve again on the next tick.
                conn = None;
            }
        }
    }
    if let Some((c, _)) = conn.take() {
        let _ = timeout(s.config.timeout, c.close()).await;
    }
    s.log
}

// ---------------------------------------------------------------------------------------
// Redis

async fn redis_connect(
    s: &mut Shared,
    r: &RedisCanary,
) -> Option<(redis::aio::MultiplexedConnection, SocketAddr)> {
    let t = Instant::now();
    let (dns_server, resolved) = s.resolve(&r.name).await?;
    let mut errors = Vec::new();
    for ip in &resolved {
        let port = r.ports.at(*ip);
        match redis_open(*ip, port, r.password.as_deref(), s.config.timeout).await {
            Ok(c) => {
                let to = SocketAddr::from((*ip, port));
                s.reconnected(t, dns_server, resolved.clone(), to);
                return Some((c, to));
            }
            Err(e) => errors.push(format!("{ip}:{port}: {e:#}")),
        }
    }
    s.log.fail(
        s.origin,
        None,
        Stage::Connect,
        format!("{} → {resolved:?}: {}", r.name, errors.join("; ")),
    );
    None
}

/// A Redis connection with connect and response timeouts of `t`.
pub(crate) async fn redis_open(
    ip: Ipv4Addr,
    port: u16,
    password: Option<&str>,
    t: Duration,
) -> Result<redis::aio::MultiplexedConnection> {
    use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
    let mut settings = RedisConnectionInfo::default();
    if let Some(pw) = password {
        settings = settings.set_password(pw);
    }
    let info = ConnectionAddr::Tcp(ip.to_string(), port)
        .into_connection_info()
        .context("redis connection info")?
        .set_redis_settings(settings);
    let client = redis::Client::open(info).context("redis client")?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(t))
        .set_response_timeout(Some(t));
    let c = timeout(
        t + t,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| anyhow!("no answer within {t:?}"))??;
    Ok(c)
}

async fn run_redis(mut s: Shared, r: RedisCanary) -> StoreLog {
    let mut ticker = s.ticker();
    let mut conn: Option<(redis::aio::MultiplexedConnection, SocketAddr)> = None;
    let mut seq: i64 = 0;
    while !s.stopped() {
        ticker.tick().await;
        if conn.is_none() {
            conn = redis_connect(&mut s, &r).await;
        }
        let Some((c, server)) = conn.as_mut() else {
            continue;
        };
        let server = *server;
        seq += 1;
        s.log.attempts += 1;
        let key = format!("{}{seq}", r.key_prefix);
        let res = timeout(
            s.config.timeout,
            redis::cmd("SET")
                .arg(&key)
                .arg(Timestamp::now().to_string())
                .query_async::<redis::Value>(c),
        )
        .await;
        match res {
            Ok(Ok(redis::Value::Okay)) => s.ack(seq, server),
            other => {
                let e = match other {
                    Ok(Ok(v)) => format!("unexpected reply {v:?}"),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {:?}", s.config.timeout),
                };
                s.log
                    .fail(s.origin, Some(seq), Stage::Write, format!("{server}: {e}"));
                conn = None;
            }
        }
    }
    s.log
}
