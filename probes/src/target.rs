//! What to probe: a target's identity, kind-specific endpoint and timing. Built by the
//! orchestrator from its config; plain data with no I/O.

use std::net::SocketAddr;
use std::time::Duration;

/// One thing to probe on a fixed interval.
#[derive(Clone, Debug)]
pub struct Target {
    /// Service id from the config (e.g. `khartoum-postgres`).
    pub id: String,
    pub spec: ProbeSpec,
    pub interval: Duration,
    /// Hard deadline for one probe; a hung target is reported as failed after this.
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub enum ProbeSpec {
    Http(HttpSpec),
    Tcp { address: SocketAddr },
    Postgres(PgSpec),
    Redis(RedisSpec),
    Dns(DnsSpec),
}

impl ProbeSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Tcp { .. } => "tcp",
            ProbeSpec::Postgres(_) => "postgres",
            ProbeSpec::Redis(_) => "redis",
            ProbeSpec::Dns(_) => "dns",
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpSpec {
    pub url: String,
    pub expect_status: u16,
    pub body_contains: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgEndpoint {
    pub address: SocketAddr,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

#[derive(Clone, Debug)]
pub struct PgSpec {
    pub endpoint: PgEndpoint,
    /// The server this one replicates from per the config; lag is measured against its WAL
    /// position when the standby streams from no server of `peers`.
    pub upstream: Option<PgEndpoint>,
    /// The other configured PostgreSQL servers. A standby streaming from one of them (its
    /// `pg_stat_wal_receiver` sender host and port) is measured against that one.
    pub peers: Vec<PgEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisEndpoint {
    pub address: SocketAddr,
    pub password: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RedisSpec {
    pub endpoint: RedisEndpoint,
    /// The master per the config; used while the replica follows no server of `peers`.
    pub upstream: Option<RedisEndpoint>,
    /// The other configured Redis servers. A replica following one of them (`INFO
    /// replication` `master_host` and `master_port`) is measured against that one.
    pub peers: Vec<RedisEndpoint>,
}

#[derive(Clone, Debug)]
pub struct DnsSpec {
    /// Fully qualified name, e.g. `db.nilecare.sd.`
    pub name: String,
    /// Every authoritative server; each is asked directly (no recursion, no cache).
    pub servers: Vec<SocketAddr>,
    /// Expected A answer set; order does not matter.
    pub expect: Vec<std::net::Ipv4Addr>,
}
