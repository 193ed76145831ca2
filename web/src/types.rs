//! The API's wire types (JSON). Field names here are the public contract.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SiteView {
    pub id: String,
    /// `primary`, `hot_standby` or `cold_standby`.
    pub role: String,
    pub country: String,
    pub description: Option<String>,
    /// `up`, `degraded`, `down` or `unknown`.
    pub status: String,
    pub reason: String,
    pub since: String,
    pub services: Vec<ServiceView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceView {
    pub id: String,
    pub site: Option<String>,
    pub kind: String,
    pub critical: bool,
    pub status: String,
    pub reason: String,
    pub since: String,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_probe: Option<ProbeView>,
    pub replication: Option<ReplicationView>,
    pub dns: Option<DnsView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeView {
    pub at: String,
    pub ok: bool,
    pub latency_ms: f64,
    pub summary: String,
}

/// Replication state of a PostgreSQL or Redis service as last probed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct ReplicationView {
    /// PostgreSQL: `primary` / `standby`; Redis: `master` / `slave`.
    pub role: String,
    pub upstream: Option<String>,
    pub timeline: Option<i64>,
    pub current_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    pub replay_paused: Option<bool>,
    pub streaming: Option<bool>,
    /// PostgreSQL: bytes of WAL behind the upstream. Redis: replication offset behind.
    pub lag_bytes: Option<u64>,
    pub replay_delay_seconds: Option<f64>,
    pub repl_offset: Option<u64>,
    pub master_link_up: Option<bool>,
    pub upstream_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DnsView {
    pub name: String,
    pub expected: Vec<String>,
    pub matches_expected: bool,
    pub servers: Vec<DnsServerView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DnsServerView {
    pub server: String,
    pub answers: Vec<String>,
    pub ttl: Option<u32>,
    pub authoritative: bool,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceHistoryView {
    pub service: String,
    /// Newest first, bounded.
    pub probes: Vec<ProbeView>,
    /// Newest first.
    pub status_changes: Vec<StatusEventView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusEventView {
    pub seq: u64,
    pub at: String,
    /// `service` or `site`.
    pub scope: String,
    pub id: String,
    pub site: Option<String>,
    pub from: String,
    pub to: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditVerifyView {
    pub ok: bool,
    pub entries: u64,
    pub head: String,
    pub broken_at: Option<u64>,
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: String,
}
