//! `WorldSnapshot`: what the probes observed, as plain data the orchestrator fills in. Plans
//! and preconditions are computed from it; nothing here is ever measured by this crate.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedRole {
    /// PostgreSQL not in recovery.
    Primary,
    /// PostgreSQL in recovery.
    Standby,
    /// Redis `ROLE` master.
    Master,
    /// Redis `ROLE` slave.
    Replica,
}

impl ObservedRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedRole::Primary => "primary",
            ObservedRole::Standby => "standby",
            ObservedRole::Master => "master",
            ObservedRole::Replica => "replica",
        }
    }

    /// Takes writes.
    pub fn is_writable(self) -> bool {
        matches!(self, ObservedRole::Primary | ObservedRole::Master)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceObservation {
    pub reachable: bool,
    pub role: Option<ObservedRole>,
    /// PostgreSQL timeline.
    pub timeline: Option<u32>,
    /// PostgreSQL: current LSN (primary) or replay LSN (standby), e.g. "0/3000148".
    pub lsn: Option<String>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// `IP:PORT` it answered on.
    pub address: Option<String>,
    /// For replicas: the address they replicate from.
    pub upstream: Option<String>,
    /// PostgreSQL `default_transaction_read_only` / fenced.
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsObservation {
    /// Authoritative server (`IP:PORT`) → the addresses it answers (sorted).
    pub answers: BTreeMap<String, Vec<String>>,
    pub ttl: Option<u32>,
}

impl DnsObservation {
    /// Every address any server answers, sorted and deduplicated.
    pub fn union(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self.answers.values().flatten().collect();
        all.into_iter().cloned().collect()
    }

    /// Every server answers the same set.
    pub fn servers_agree(&self) -> bool {
        let mut sets = self.answers.values().map(|v| {
            let mut v = v.clone();
            v.sort();
            v
        });
        match sets.next() {
            Some(first) => sets.all(|s| s == first),
            None => true,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorldSnapshot {
    /// Service id → what its probe saw.
    pub services: BTreeMap<String, ServiceObservation>,
    /// Fully qualified name (`db.nilecare.sd.`) → answers per authoritative server.
    pub dns: BTreeMap<String, DnsObservation>,
    /// Connection-string target id → its current value (`None`: could not be read).
    pub connstr: BTreeMap<String, Option<String>>,
    /// The platform's degradation level as its TXT record answers now (`None`: not observed,
    /// or no record yet).
    #[serde(default)]
    pub platform_level: Option<u8>,
}
