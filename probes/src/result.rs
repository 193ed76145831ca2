//! What a probe saw: a result is data (ok or failed, latency, detail), never an error.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ProbeResult {
    pub target: String,
    pub kind: &'static str,
    pub ok: bool,
    pub started_at: jiff::Timestamp,
    pub latency: Duration,
    /// How late the probe started against its schedule.
    pub schedule_lag: Duration,
    /// Why it failed (`None` when ok).
    pub error: Option<String>,
    pub observation: Observation,
}

impl ProbeResult {
    /// One line for logs, audit and the API.
    pub fn summary(&self) -> String {
        match (&self.error, &self.observation) {
            (Some(e), _) => e.clone(),
            (None, obs) => obs.summary(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub enum Observation {
    #[default]
    None,
    Http {
        status: u16,
    },
    Tcp,
    Postgres(PgObservation),
    Redis(RedisObservation),
    Dns(DnsObservation),
}

impl Observation {
    pub fn summary(&self) -> String {
        match self {
            Observation::None => String::new(),
            Observation::Http { status } => format!("HTTP {status}"),
            Observation::Tcp => "connected".into(),
            Observation::Postgres(pg) => pg.summary(),
            Observation::Redis(r) => r.summary(),
            Observation::Dns(d) => d.summary(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PgObservation {
    pub in_recovery: bool,
    pub timeline: Option<i64>,
    /// Primary: `pg_current_wal_lsn()`. Standby: last received LSN.
    pub current_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    pub replay_paused: bool,
    /// Standby only: is the WAL receiver streaming?
    pub wal_receiver_streaming: Option<bool>,
    /// Upstream WAL position minus our replay position, when an upstream is known and answered.
    pub lag_bytes: Option<u64>,
    /// The server `lag_bytes` is measured against: the one the standby streams from, or else
    /// its configured upstream.
    pub lag_against: Option<std::net::SocketAddr>,
    /// Standby: `pg_stat_wal_receiver`'s sender (host as PostgreSQL reports it, port).
    pub sender: Option<(String, u16)>,
    /// Seconds since the last replayed transaction while there is WAL left to replay; 0 when caught up.
    pub replay_delay_seconds: Option<f64>,
    /// Why the lag is unknown (upstream unreachable, ...).
    pub upstream_error: Option<String>,
}

impl PgObservation {
    pub fn summary(&self) -> String {
        let role = if self.in_recovery {
            "standby"
        } else {
            "primary"
        };
        let mut s = role.to_string();
        if let Some(tl) = self.timeline {
            s.push_str(&format!(", timeline {tl}"));
        }
        if let Some(lsn) = self.current_lsn.filter(|_| !self.in_recovery) {
            s.push_str(&format!(", lsn {}", format_lsn(lsn)));
        }
        if let Some(lsn) = self.replay_lsn {
            s.push_str(&format!(", replay {}", format_lsn(lsn)));
        }
        if let Some(lag) = self.lag_bytes {
            s.push_str(&format!(", lag {lag} B"));
        }
        if self.replay_paused {
            s.push_str(", replay paused");
        }
        if self.wal_receiver_streaming == Some(false) {
            s.push_str(", WAL receiver not streaming");
        }
        if let Some(e) = &self.upstream_error {
            s.push_str(&format!(", upstream: {e}"));
        }
        s
    }
}

/// `16/B374D848` → 0x16_B374D848.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return None;
    }
    Some((hi << 32) | lo)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisObservation {
    /// `master` or `slave` as Redis reports it.
    pub role: String,
    pub master_link_up: Option<bool>,
    /// master_repl_offset (primary) or slave_repl_offset (replica).
    pub repl_offset: Option<u64>,
    pub connected_replicas: Option<u64>,
    pub offset_lag: Option<u64>,
    /// The server `offset_lag` is measured against (the master it follows, or else the
    /// configured upstream).
    pub lag_against: Option<std::net::SocketAddr>,
    /// Replica: the master it follows (`master_host`, `master_port`).
    pub master: Option<(String, u16)>,
    pub upstream_error: Option<String>,
}

impl RedisObservation {
    pub fn summary(&self) -> String {
        let mut s = self.role.clone();
        if let Some(up) = self.master_link_up {
            s.push_str(if up { ", link up" } else { ", link DOWN" });
        }
        if let Some(o) = self.repl_offset {
            s.push_str(&format!(", offset {o}"));
        }
        if let Some(l) = self.offset_lag {
            s.push_str(&format!(", lag {l}"));
        }
        if let Some(e) = &self.upstream_error {
            s.push_str(&format!(", upstream: {e}"));
        }
        s
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DnsObservation {
    pub name: String,
    pub expected: Vec<Ipv4Addr>,
    pub servers: Vec<DnsServerAnswer>,
    /// Every server answered exactly the expected set.
    pub matches_expected: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DnsServerAnswer {
    pub server: SocketAddr,
    /// Sorted A answers, empty on error.
    pub answers: Vec<Ipv4Addr>,
    pub ttl: Option<u32>,
    pub authoritative: bool,
    pub error: Option<String>,
}

impl DnsObservation {
    /// Compare the answers again with `expected` (the live topology's expectation, which
    /// follows executed cutovers): every server must have answered exactly that set.
    pub fn rejudge(&mut self, expected: &[Ipv4Addr]) {
        let mut expected = expected.to_vec();
        expected.sort();
        expected.dedup();
        self.matches_expected = self
            .servers
            .iter()
            .all(|s| s.error.is_none() && s.answers == expected);
        self.expected = expected;
    }

    /// The answer set every server agreed on; `None` when any failed or they differ.
    pub fn agreed(&self) -> Option<&[Ipv4Addr]> {
        let first = self.servers.first()?;
        let same = self
            .servers
            .iter()
            .all(|s| s.error.is_none() && s.answers == first.answers);
        same.then_some(first.answers.as_slice())
    }

    pub fn summary(&self) -> String {
        let per: Vec<String> = self
            .servers
            .iter()
            .map(|a| match &a.error {
                Some(e) => format!("{}: {e}", a.server),
                None => format!(
                    "{}: {} ttl {}",
                    a.server,
                    join(&a.answers),
                    a.ttl.map_or("-".into(), |t| t.to_string())
                ),
            })
            .collect();
        if self.matches_expected {
            format!(
                "{} = {} ({})",
                self.name,
                join(&self.expected),
                per.join("; ")
            )
        } else {
            format!(
                "{} MISMATCH: expected {} ({})",
                self.name,
                join(&self.expected),
                per.join("; ")
            )
        }
    }
}

fn join(a: &[Ipv4Addr]) -> String {
    if a.is_empty() {
        return "(none)".into();
    }
    a.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("garbage"), None);
        assert_eq!(parse_lsn("1/"), None);
        assert_eq!(parse_lsn("100000000/0"), None);
    }
}
