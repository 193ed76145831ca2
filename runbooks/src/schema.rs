//! The checked runbook: what `parse_runbook` returns once every name, kind and rollback has
//! been verified against the catalog. Durations are milliseconds.

use serde::{Deserialize, Serialize};

use crate::approval::ApprovalPolicy;
use crate::catalog::Catalog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The primary is gone: lag gates decide how much may be lost.
    Unplanned,
    /// Both sides are up: the standby catches up first, so no write is lost.
    Planned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    pub mode: Mode,
    /// Lock scope: services (DNS names through their `dns` services) no other execution may
    /// act on while this one runs. Written in the file or derived from the steps.
    pub services: Vec<String>,
    pub approval: ApprovalPolicy,
    pub trigger: Option<Trigger>,
    pub steps: Vec<Step>,
    /// The part of the catalog the steps name (sites, services, targets), frozen at load so a
    /// plan can resolve addresses and the digest changes when they change.
    pub targets: Catalog,
}

/// A condition that opens a proposal for this runbook (deduplicated by the orchestrator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub service_down: String,
    /// How long the service must have been down.
    pub for_ms: u64,
    pub standby: Option<String>,
    /// Only propose while the standby's lag is within this bound.
    pub max_standby_lag_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub description: Option<String>,
    pub action: Action,
    pub timeout_ms: u64,
    /// Further attempts after the first when a failure is retryable.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff_ms: u64,
    /// Run the kind's verification after the action (see `Action::verification`).
    pub verify: bool,
    pub rollback: Rollback,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Rollback {
    /// The step changes nothing.
    None,
    /// The kind's own inverse: unfence, restore the previous value / TTL / answers / master.
    Inverse,
    /// A step written in the runbook.
    Explicit(RollbackStep),
    /// Declared as impossible to undo, with why.
    Irreversible { reason: String },
}

impl Rollback {
    /// Whether a rollback pass has something to run for this step.
    pub fn runs(&self) -> bool {
        matches!(self, Rollback::Inverse | Rollback::Explicit(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackStep {
    pub action: Action,
    pub timeout_ms: u64,
    pub retries: u32,
    pub backoff_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceMode {
    /// Application roles lose their login, `default_transaction_read_only` on for the rest,
    /// client sessions terminated.
    ReadOnly,
    /// The server is stopped.
    Stop,
}

/// What a `postgres.fence` does when the old primary does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnreachable {
    /// Proceed only when its standby confirms it lost the primary too (no WAL stream from
    /// it); otherwise wait for an operator's confirm within the step's timeout.
    #[default]
    RequireEvidence,
    /// Always wait for an operator's confirm.
    Confirm,
    /// Proceed, recording that nothing could be fenced.
    Proceed,
}

impl OnUnreachable {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnreachable::RequireEvidence => "require_evidence",
            OnUnreachable::Confirm => "confirm",
            OnUnreachable::Proceed => "proceed",
        }
    }
}

/// Where a DNS name should point: a site (its address) or a service (its IP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Site(String),
    Service(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum WaitCondition {
    ServiceUp {
        service: String,
    },
    ServiceDown {
        service: String,
    },
    /// `service` streams from `of`, optionally with its lag under a bound.
    Replicating {
        service: String,
        of: String,
        lag_below_bytes: Option<u64>,
    },
}

/// The degradation levels niledr owns (the platform's DR plan defines the others).
pub const PLATFORM_LEVELS: [u8; 3] = [0, 4, 5];
/// A `platform.mode` message travels in one TXT character-string.
pub const PLATFORM_MESSAGE_MAX: usize = 200;

/// The standard wording of a level niledr sets.
pub fn platform_level_label(level: u8) -> &'static str {
    match level {
        0 => "normal operation",
        4 => "database failover in progress: read-only mode, queue writes",
        5 => "regional outage: running in DR mode at another site",
        _ => "a level set outside niledr",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Action {
    #[serde(rename = "postgres.check_lag")]
    PostgresCheckLag {
        service: String,
        max_lag_bytes: u64,
        max_lag_seconds: Option<u64>,
        /// With the primary gone, the last lag the probes measured counts only if it was
        /// measured at most this long before the primary was last seen answering.
        /// `None`: three of the standby's probe intervals.
        #[serde(default)]
        max_lag_age_ms: Option<u64>,
    },
    #[serde(rename = "postgres.fence")]
    PostgresFence {
        service: String,
        mode: FenceMode,
        #[serde(default)]
        on_unreachable: OnUnreachable,
    },
    #[serde(rename = "postgres.promote")]
    PostgresPromote { service: String },
    #[serde(rename = "postgres.wait_caught_up")]
    PostgresWaitCaughtUp { service: String, of: String },
    /// `CLIENT PAUSE WRITE` on the master `service`, then wait until `replica` has every byte.
    #[serde(rename = "redis.fence")]
    RedisFence {
        service: String,
        replica: String,
        /// Unplanned failovers: a master that does not answer within this bound is skipped
        /// (recorded, nothing to fence). `None`: it must answer (planned switchover).
        #[serde(default)]
        unreachable_after_ms: Option<u64>,
    },
    #[serde(rename = "redis.promote")]
    RedisPromote { service: String },
    #[serde(rename = "redis.replicaof")]
    RedisReplicaOf {
        service: String,
        of: String,
        /// As for `redis.fence`: a server that does not answer within this bound is skipped.
        #[serde(default)]
        unreachable_after_ms: Option<u64>,
    },
    #[serde(rename = "connstr.swap")]
    ConnstrSwap { target: String, to_service: String },
    #[serde(rename = "dns.set_ttl")]
    DnsSetTtl { name: String, ttl: u32 },
    #[serde(rename = "dns.cutover")]
    DnsCutover {
        name: String,
        /// The answer expected before (compare-and-swap); `None`: whatever the plan observed.
        from: Option<Endpoint>,
        to: Endpoint,
    },
    #[serde(rename = "dns.verify")]
    DnsVerify { name: String, expect: Endpoint },
    #[serde(rename = "sql.check")]
    SqlCheck { name: String, via: String },
    #[serde(rename = "http.check")]
    HttpCheck {
        url: String,
        expect_status: Option<u16>,
    },
    #[serde(rename = "manual.confirm")]
    ManualConfirm { item: String },
    #[serde(rename = "wait")]
    Wait { until: WaitCondition },
    /// Publish the platform's degradation level (0 normal, 4 database failover in progress,
    /// 5 running in DR mode at another site) for applications, in the zone's TXT record.
    #[serde(rename = "platform.mode")]
    PlatformMode {
        level: u8,
        /// What applications show users; `None`: the level's standard wording.
        #[serde(default)]
        message: Option<String>,
    },
}

/// Step kinds as written in `kind = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepKind {
    PostgresCheckLag,
    PostgresFence,
    PostgresPromote,
    PostgresWaitCaughtUp,
    RedisFence,
    RedisPromote,
    RedisReplicaOf,
    ConnstrSwap,
    DnsSetTtl,
    DnsCutover,
    DnsVerify,
    SqlCheck,
    HttpCheck,
    ManualConfirm,
    Wait,
    PlatformMode,
}

impl StepKind {
    pub const ALL: [StepKind; 16] = [
        StepKind::PostgresCheckLag,
        StepKind::PostgresFence,
        StepKind::PostgresPromote,
        StepKind::PostgresWaitCaughtUp,
        StepKind::RedisFence,
        StepKind::RedisPromote,
        StepKind::RedisReplicaOf,
        StepKind::ConnstrSwap,
        StepKind::DnsSetTtl,
        StepKind::DnsCutover,
        StepKind::DnsVerify,
        StepKind::SqlCheck,
        StepKind::HttpCheck,
        StepKind::ManualConfirm,
        StepKind::Wait,
        StepKind::PlatformMode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::PostgresCheckLag => "postgres.check_lag",
            StepKind::PostgresFence => "postgres.fence",
            StepKind::PostgresPromote => "postgres.promote",
            StepKind::PostgresWaitCaughtUp => "postgres.wait_caught_up",
            StepKind::RedisFence => "redis.fence",
            StepKind::RedisPromote => "redis.promote",
            StepKind::RedisReplicaOf => "redis.replicaof",
            StepKind::ConnstrSwap => "connstr.swap",
            StepKind::DnsSetTtl => "dns.set_ttl",
            StepKind::DnsCutover => "dns.cutover",
            StepKind::DnsVerify => "dns.verify",
            StepKind::SqlCheck => "sql.check",
            StepKind::HttpCheck => "http.check",
            StepKind::ManualConfirm => "manual.confirm",
            StepKind::Wait => "wait",
            StepKind::PlatformMode => "platform.mode",
        }
    }

    pub fn parse(s: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Changes the world, so it needs a rollback or an explicit `irreversible = true`.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            StepKind::PostgresFence
                | StepKind::PostgresPromote
                | StepKind::RedisFence
                | StepKind::RedisPromote
                | StepKind::RedisReplicaOf
                | StepKind::ConnstrSwap
                | StepKind::DnsSetTtl
                | StepKind::DnsCutover
                | StepKind::PlatformMode
        )
    }

    /// Has an automatic inverse the executor knows how to run.
    pub fn has_inverse(self) -> bool {
        matches!(
            self,
            StepKind::PostgresFence
                | StepKind::RedisFence
                | StepKind::RedisReplicaOf
                | StepKind::ConnstrSwap
                | StepKind::DnsSetTtl
                | StepKind::DnsCutover
                | StepKind::PlatformMode
        )
    }

    /// The parameters this kind takes (besides the common id/kind/timeout/... keys).
    pub fn params(self) -> &'static [&'static str] {
        match self {
            StepKind::PostgresCheckLag => {
                &["service", "max_lag_bytes", "max_lag_seconds", "max_lag_age"]
            }
            StepKind::PostgresFence => &["service", "mode", "on_unreachable"],
            StepKind::RedisFence => &["service", "replica", "unreachable_after"],
            StepKind::PostgresPromote | StepKind::RedisPromote => &["service"],
            StepKind::PostgresWaitCaughtUp => &["service", "of"],
            StepKind::RedisReplicaOf => &["service", "of", "unreachable_after"],
            StepKind::ConnstrSwap => &["target", "to_service"],
            StepKind::DnsSetTtl => &["name", "ttl"],
            StepKind::DnsCutover => &["name", "from_site", "from_service", "to_site", "to_service"],
            StepKind::DnsVerify => &["name", "expect_site", "expect_service"],
            StepKind::SqlCheck => &["name", "via"],
            StepKind::HttpCheck => &["url", "expect_status"],
            StepKind::ManualConfirm => &["item"],
            StepKind::Wait => &["until"],
            StepKind::PlatformMode => &["level", "message"],
        }
    }

    pub fn default_timeout_ms(self) -> u64 {
        match self {
            StepKind::PostgresCheckLag
            | StepKind::RedisFence
            | StepKind::RedisPromote
            | StepKind::DnsSetTtl => 10_000,
            StepKind::PlatformMode => 30_000,
            StepKind::HttpCheck => 10_000,
            StepKind::PostgresFence
            | StepKind::RedisReplicaOf
            | StepKind::ConnstrSwap
            | StepKind::DnsCutover
            | StepKind::SqlCheck => 30_000,
            StepKind::PostgresPromote | StepKind::PostgresWaitCaughtUp | StepKind::DnsVerify => {
                60_000
            }
            StepKind::Wait => 600_000,
            StepKind::ManualConfirm => 3_600_000,
        }
    }

    pub fn default_retries(self) -> u32 {
        match self {
            // A person answers or not; waits already poll until their timeout.
            StepKind::ManualConfirm | StepKind::Wait | StepKind::PostgresWaitCaughtUp => 0,
            _ => 2,
        }
    }
}

impl Action {
    pub fn kind(&self) -> StepKind {
        match self {
            Action::PostgresCheckLag { .. } => StepKind::PostgresCheckLag,
            Action::PostgresFence { .. } => StepKind::PostgresFence,
            Action::PostgresPromote { .. } => StepKind::PostgresPromote,
            Action::PostgresWaitCaughtUp { .. } => StepKind::PostgresWaitCaughtUp,
            Action::RedisFence { .. } => StepKind::RedisFence,
            Action::RedisPromote { .. } => StepKind::RedisPromote,
            Action::RedisReplicaOf { .. } => StepKind::RedisReplicaOf,
            Action::ConnstrSwap { .. } => StepKind::ConnstrSwap,
            Action::DnsSetTtl { .. } => StepKind::DnsSetTtl,
            Action::DnsCutover { .. } => StepKind::DnsCutover,
            Action::DnsVerify { .. } => StepKind::DnsVerify,
            Action::SqlCheck { .. } => StepKind::SqlCheck,
            Action::HttpCheck { .. } => StepKind::HttpCheck,
            Action::ManualConfirm { .. } => StepKind::ManualConfirm,
            Action::Wait { .. } => StepKind::Wait,
            Action::PlatformMode { .. } => StepKind::PlatformMode,
        }
    }

    /// Every service the action names.
    pub fn services(&self) -> Vec<&str> {
        fn endpoint(e: &Endpoint) -> Option<&str> {
            match e {
                Endpoint::Service(s) => Some(s.as_str()),
                Endpoint::Site(_) => None,
            }
        }
        match self {
            Action::PostgresCheckLag { service, .. }
            | Action::PostgresFence { service, .. }
            | Action::PostgresPromote { service }
            | Action::RedisPromote { service } => vec![service],
            Action::PostgresWaitCaughtUp { service, of }
            | Action::RedisReplicaOf { service, of, .. }
            | Action::RedisFence {
                service,
                replica: of,
                ..
            } => {
                vec![service, of]
            }
            Action::ConnstrSwap { to_service, .. } => vec![to_service],
            Action::DnsSetTtl { .. }
            | Action::HttpCheck { .. }
            | Action::ManualConfirm { .. }
            | Action::PlatformMode { .. } => vec![],
            Action::DnsCutover { from, to, .. } => from
                .iter()
                .filter_map(endpoint)
                .chain(endpoint(to))
                .collect(),
            Action::DnsVerify { expect, .. } => endpoint(expect).into_iter().collect(),
            Action::SqlCheck { via, .. } => vec![via],
            Action::Wait { until } => match until {
                WaitCondition::ServiceUp { service } | WaitCondition::ServiceDown { service } => {
                    vec![service]
                }
                WaitCondition::Replicating { service, of, .. } => vec![service, of],
            },
        }
    }

    /// The service whose state the action changes, if any.
    pub fn acts_on(&self) -> Option<&str> {
        match self {
            Action::PostgresFence { service, .. }
            | Action::PostgresPromote { service }
            | Action::RedisFence { service, .. }
            | Action::RedisPromote { service }
            | Action::RedisReplicaOf { service, .. } => Some(service),
            _ => None,
        }
    }

    /// The DNS name the action reads or changes, if any.
    pub fn dns_name(&self) -> Option<&str> {
        match self {
            Action::DnsSetTtl { name, .. }
            | Action::DnsCutover { name, .. }
            | Action::DnsVerify { name, .. }
            | Action::SqlCheck { name, .. } => Some(name),
            _ => None,
        }
    }

    /// What the executor checks after the action to call it done.
    pub fn verification(&self) -> &'static str {
        match self {
            Action::PostgresCheckLag { .. } => "the lag measurement is the check",
            Action::PostgresFence {
                mode: FenceMode::ReadOnly,
                ..
            } => "a write on the fenced server is refused",
            Action::PostgresFence {
                mode: FenceMode::Stop,
                ..
            } => "the server no longer accepts connections",
            Action::PostgresPromote { .. } => "pg_is_in_recovery() is false and a write commits",
            Action::PostgresWaitCaughtUp { .. } => {
                "the standby's replay LSN equals the primary's current LSN"
            }
            Action::RedisFence { .. } => {
                "the replica's replication offset equals the paused master's"
            }
            Action::RedisPromote { .. } => "ROLE answers master",
            Action::RedisReplicaOf { .. } => "ROLE answers slave with the expected master, link up",
            Action::ConnstrSwap { .. } => "the target reads back the new value",
            Action::DnsSetTtl { .. } => "every authoritative server answers the new TTL",
            Action::DnsCutover { .. } | Action::DnsVerify { .. } => {
                "every authoritative server answers the new set; time to converge recorded"
            }
            Action::SqlCheck { .. } => "a row written through the name reads back",
            Action::HttpCheck { .. } => "the expected HTTP status",
            Action::ManualConfirm { .. } => "a person ticked the item",
            Action::Wait { .. } => "the condition holds",
            Action::PlatformMode { .. } => {
                "every authoritative server answers the new level in the platform-mode TXT record"
            }
        }
    }
}
