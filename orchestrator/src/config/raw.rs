//! The config file exactly as written: serde types with spans, refusing unknown keys. Turned
//! into the checked `Config` by `load`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub probe: RawProbe,
    #[serde(default)]
    pub sites: BTreeMap<Spanned<String>, RawSite>,
    #[serde(default)]
    pub services: BTreeMap<Spanned<String>, Spanned<RawService>>,
    pub dns: Option<Spanned<RawDns>>,
    pub auth: Option<RawAuth>,
    pub runbooks: Option<RawRunbooks>,
    pub drills: Option<Spanned<RawDrills>>,
    #[serde(default)]
    pub connstr: BTreeMap<Spanned<String>, Spanned<RawConnstr>>,
    pub cluster: Option<Spanned<super::cluster::RawCluster>>,
    pub notifications: Option<Spanned<super::notifications::RawNotifications>>,
    pub hooks: Option<super::hooks::RawHooks>,
    pub api: Option<RawApi>,
}

/// `[api]`: what the HTTP API serves without a principal.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `/metrics` without a token (default true: Prometheus scrapes it as it scrapes others).
    pub metrics_public: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Users and their hashed tokens (`niledr user add`).
    pub users_file: Spanned<String>,
    /// Failed attempts per client address per `failure_window` before 429.
    pub failures_per_client: Option<Spanned<u32>>,
    /// Failed attempts per (client address, user name) per `failure_window` before 429.
    pub failures_per_client_user: Option<Spanned<u32>>,
    pub failure_window: Option<Spanned<Dur>>,
    /// argon2 verifications that may run at once.
    pub verify_workers: Option<Spanned<u32>>,
    /// Console sessions (`config/sessions.rs`): idle timeout, absolute lifetime, `Secure`.
    pub session_idle_timeout: Option<Spanned<Dur>>,
    pub session_lifetime: Option<Spanned<Dur>>,
    pub session_secure_cookie: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunbooks {
    /// Directories of runbook TOML files.
    pub dirs: Vec<Spanned<String>>,
}

/// `[drills]`: where drill files live, the host agent that injects faults, the canary.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrills {
    /// Directories of drill TOML files.
    pub dirs: Vec<Spanned<String>>,
    /// Base URL of the host agent that injects faults and re-seeds servers.
    pub agent: Option<Spanned<String>>,
    pub agent_token_file: Option<Spanned<String>>,
    /// How long before a scheduled drill it is announced.
    pub announce_before: Option<Spanned<Dur>>,
    /// Canary writes per second per store (at least 100).
    pub canary_rate: Option<Spanned<u32>>,
    /// Service names the canary writes through (resolved at the authoritative DNS).
    pub canary_postgres: Option<Spanned<String>>,
    /// The postgres service whose credentials and port the canary uses.
    pub canary_postgres_via: Option<Spanned<String>>,
    pub canary_redis: Option<Spanned<String>>,
    pub canary_redis_via: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ConnstrKind {
    File,
    Pgbouncer,
}

/// A place applications read their database address from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnstr {
    pub kind: Spanned<ConnstrKind>,
    /// file: the file to rewrite atomically.
    pub path: Option<Spanned<String>>,
    /// file: its content, with `{host}` and `{port}` filled from the target service.
    pub template: Option<Spanned<String>>,
    /// file: run after a swap, e.g. ["systemctl", "reload", "app"].
    pub reload_command: Option<Vec<String>>,
    /// pgbouncer: its ini file.
    pub ini: Option<Spanned<String>>,
    /// pgbouncer: the `[databases]` entry to point elsewhere.
    pub database: Option<Spanned<String>>,
    /// pgbouncer: the database name on the server side (default: postgres).
    pub dbname: Option<String>,
    /// pgbouncer: admin console address.
    pub admin: Option<Spanned<Addr>>,
    pub user: Option<String>,
    pub password_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub listen: Option<Spanned<Addr>>,
    pub store: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub interval: Option<Spanned<Dur>>,
    pub timeout: Option<Spanned<Dur>>,
    pub failure_threshold: Option<Spanned<u32>>,
    pub success_threshold: Option<Spanned<u32>>,
    pub history: Option<Spanned<u32>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum SiteRole {
    Primary,
    HotStandby,
    ColdStandby,
}

impl SiteRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteRole::Primary => "primary",
            SiteRole::HotStandby => "hot_standby",
            SiteRole::ColdStandby => "cold_standby",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub role: SiteRole,
    /// The site's service address (what DNS names point at when traffic is at this site).
    pub address: Option<Spanned<String>>,
    pub country: Spanned<String>,
    pub description: Option<String>,
    pub backup_dir: Option<String>,
    pub wal_archive: Option<String>,
    /// Cold-site objectives (`docs/config.md`): the newest base backup, the WAL archive's last
    /// segment and the last restore drill may be at most this old, else the site is degraded.
    pub max_base_backup_age: Option<Spanned<Dur>>,
    pub max_wal_archive_age: Option<Spanned<Dur>>,
    pub max_restore_test_age: Option<Spanned<Dur>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Postgres,
    Redis,
    Http,
    Tcp,
    Dns,
}

/// One flat table for every kind so each key keeps its own span; `load` refuses keys that do
/// not belong to the service's kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub kind: Spanned<Kind>,
    pub site: Option<Spanned<String>>,
    #[serde(default)]
    pub critical: bool,
    pub address: Option<Spanned<Addr>>,
    pub user: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub database: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<u16>>,
    pub body_contains: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub expect: Option<Spanned<Vec<Spanned<String>>>>,
    pub probe: Option<RawProbe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub zone: Spanned<String>,
    pub servers: Spanned<Vec<Spanned<Addr>>>,
    pub tsig_key_file: Option<Spanned<String>>,
    /// Owner of the platform-mode TXT record, relative to the zone (`_platform-mode`).
    pub platform_mode_record: Option<Spanned<String>>,
}

/// A duration written like `500ms`, `1s`, `2m`.
#[derive(Clone, Copy, Debug)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "bad duration {s:?} ({e}); write it like \"500ms\", \"1s\" or \"2m\""
            ))
        })
    }
}

/// A socket address written like `127.0.1.1:5432`.
#[derive(Clone, Copy, Debug)]
pub struct Addr(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Addr).map_err(|_| {
            serde::de::Error::custom(format!(
                "bad address {s:?}; write IP:PORT, for example \"127.0.1.1:5432\""
            ))
        })
    }
}
