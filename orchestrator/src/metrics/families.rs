//! Every metric family niledr exposes, in one table: name, type, labels, HELP text and, for
//! histograms, the buckets. The recorder is built from it (`describe`, buckets) and
//! `docs/metrics.md` is checked against it, so a family cannot be added without both.

/// A family's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// Every label the family carries (each with a bounded set of values: config ids, runbook
    /// names, fixed enums, route patterns).
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Upper bounds of the buckets (histograms only).
    pub buckets: &'static [f64],
}

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        labels,
        help,
        buckets: &[],
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        labels,
        help,
        buckets: &[],
    }
}

const fn histogram(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    buckets: &'static [f64],
) -> Family {
    Family {
        name,
        kind: Kind::Histogram,
        labels,
        help,
        buckets,
    }
}

/// Probe runs: a hard timeout bounds them (seconds at most).
const PROBE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How late a probe run started against its schedule (milliseconds when healthy).
const LAG_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Steps: a DNS update takes milliseconds, a promotion seconds, a wait or a person's
/// confirm up to an hour.
const STEP_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
];
/// Executions, start to end: seconds for a cutover, an hour or more with manual steps.
const EXECUTION_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
];
/// API requests: reads are sub-millisecond, a token check (argon2) tens to hundreds of ms,
/// a forwarded or planned request can take seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub const BUILD_INFO: &str = "niledr_build_info";
pub const READY: &str = "niledr_ready";
pub const PROBE_UP: &str = "niledr_probe_up";
pub const PROBE_LATENCY: &str = "niledr_probe_latency_seconds";
pub const PROBE_SCHEDULE_LAG: &str = "niledr_probe_schedule_lag_seconds";
pub const PROBE_FAILURES: &str = "niledr_probe_failures_total";
pub const REPLICATION_LAG_BYTES: &str = "niledr_replication_lag_bytes";
pub const REPLICATION_LAG_SECONDS: &str = "niledr_replication_lag_seconds";
pub const SERVICE_STATUS: &str = "niledr_service_status";
pub const SERVICE_INFO: &str = "niledr_service_info";
pub const SITE_STATUS: &str = "niledr_site_status";
pub const SITE_ROLE: &str = "niledr_site_role";
pub const STATUS_CHANGES: &str = "niledr_status_changes_total";
pub const EXECUTIONS: &str = "niledr_executions_total";
pub const EXECUTION_DURATION: &str = "niledr_execution_duration_seconds";
pub const STEP_DURATION: &str = "niledr_step_duration_seconds";
pub const OPEN_EXECUTIONS: &str = "niledr_open_executions";
pub const PENDING_APPROVALS: &str = "niledr_pending_approvals";
pub const PENDING_APPROVAL_AGE: &str = "niledr_pending_approval_age_seconds";
pub const HTTP_DURATION: &str = "niledr_http_request_duration_seconds";
pub const AUTH_REFUSED: &str = "niledr_auth_refused_total";
pub const NOTIFICATIONS: &str = "niledr_notifications_total";
pub const AUDIT_CHAIN_VALID: &str = "niledr_audit_chain_valid";
pub const AUDIT_CHAIN_ENTRIES: &str = "niledr_audit_chain_entries";
pub const AUDIT_VERIFIED_AT: &str = "niledr_audit_last_verified_timestamp_seconds";
pub const CLUSTER_LEADER: &str = "niledr_cluster_leader";
pub const CLUSTER_LEADER_KNOWN: &str = "niledr_cluster_leader_known";
pub const CLUSTER_MEMBERS: &str = "niledr_cluster_members";
pub const TRIGGERS_PAUSED: &str = "niledr_triggers_paused";
pub const COLD_BACKUP_AGE: &str = "niledr_cold_backup_age_seconds";
pub const DRILL_RUNS: &str = "niledr_drill_runs_total";
pub const DRILL_RTO: &str = "niledr_drill_last_rto_seconds";
pub const DRILL_RPO: &str = "niledr_drill_last_rpo_seconds";
pub const DRILL_LOST_WRITES: &str = "niledr_drill_last_lost_writes";
pub const DRILL_VERDICT: &str = "niledr_drill_last_verdict";
pub const DRILL_LAST_RUN: &str = "niledr_drill_last_run_timestamp_seconds";

pub const FAMILIES: &[Family] = &[
    gauge(
        BUILD_INFO,
        &["version", "git_commit"],
        "Always 1; the labels say which niledr build runs (git_commit only when built with NILEDR_GIT_COMMIT set).",
    ),
    gauge(
        READY,
        &[],
        "1 once every configured service has reported at least once (what /readyz answers), else 0.",
    ),
    gauge(
        PROBE_UP,
        &["service", "kind"],
        "1 if the service's last probe succeeded, else 0.",
    ),
    histogram(
        PROBE_LATENCY,
        &["service", "kind"],
        "How long each probe run took, failed runs and timeouts included.",
        PROBE_BUCKETS,
    ),
    histogram(
        PROBE_SCHEDULE_LAG,
        &[],
        "How late probe runs started against their schedule (a loaded probe runtime shows here first).",
        LAG_BUCKETS,
    ),
    counter(
        PROBE_FAILURES,
        &["service", "kind"],
        "Probe runs that failed (error or timeout); divide by the latency histogram's _count for a failure ratio.",
    ),
    gauge(
        REPLICATION_LAG_BYTES,
        &["service"],
        "A standby's replication lag behind its upstream in bytes (PostgreSQL WAL, Redis offset).",
    ),
    gauge(
        REPLICATION_LAG_SECONDS,
        &["service"],
        "A PostgreSQL standby's replay delay in seconds.",
    ),
    gauge(
        SERVICE_STATUS,
        &["service", "status"],
        "One-hot: 1 for the service's current status (up, degraded, down, unknown), 0 for the others.",
    ),
    gauge(
        SERVICE_INFO,
        &["service", "site", "kind", "critical"],
        "Always 1 per configured service: its site (empty if none), probe kind and whether it is critical (true/false), for joins in alert rules.",
    ),
    gauge(
        SITE_STATUS,
        &["site", "status"],
        "One-hot: 1 for the site's current status (up, degraded, down, unknown), 0 for the others.",
    ),
    gauge(
        SITE_ROLE,
        &["site", "role", "kind"],
        "One-hot per kind: 1 for the role the site has (primary, hot_standby, cold_standby); kind=configured is the config, kind=current what it holds now.",
    ),
    counter(
        STATUS_CHANGES,
        &["scope", "id", "to"],
        "Committed status changes of services and sites, by the status changed to.",
    ),
    counter(
        EXECUTIONS,
        &["runbook", "outcome"],
        "Executions that ended, by runbook and final state (succeeded, failed, rolled_back, cancelled, rejected, expired).",
    ),
    histogram(
        EXECUTION_DURATION,
        &["runbook", "outcome"],
        "Executions that started running: from the start of the first step to the end.",
        EXECUTION_BUCKETS,
    ),
    histogram(
        STEP_DURATION,
        &["runbook", "kind", "outcome"],
        "Step actions by step kind and outcome (succeeded, failed, rolled_back, rollback_failed).",
        STEP_BUCKETS,
    ),
    gauge(
        OPEN_EXECUTIONS,
        &["runbook", "state"],
        "Executions not yet ended, by runbook and state (needs_operator means a person must act). Reported by the instance that runs executions.",
    ),
    gauge(
        PENDING_APPROVALS,
        &["runbook"],
        "Executions waiting for approval, by runbook. Reported by the instance that runs executions.",
    ),
    gauge(
        PENDING_APPROVAL_AGE,
        &["runbook"],
        "How long the oldest execution waiting for approval has waited (0 when none waits).",
    ),
    histogram(
        HTTP_DURATION,
        &["method", "route", "status"],
        "HTTP requests served, by method, route pattern and status code (time to the response head).",
        HTTP_BUCKETS,
    ),
    counter(
        AUTH_REFUSED,
        &["limit"],
        "Authentication attempts refused by a rate limit (per client, per client and user) or a busy verifier pool.",
    ),
    counter(
        NOTIFICATIONS,
        &["receiver", "outcome"],
        "Notification delivery attempts by receiver and outcome (delivered, failed, given_up).",
    ),
    gauge(
        AUDIT_CHAIN_VALID,
        &[],
        "1 if the last verification of the audit hash chain found every link intact, 0 if one is broken.",
    ),
    gauge(
        AUDIT_CHAIN_ENTRIES,
        &[],
        "Entries the last audit chain verification checked.",
    ),
    gauge(
        AUDIT_VERIFIED_AT,
        &[],
        "Unix time of the last audit chain verification.",
    ),
    gauge(
        CLUSTER_LEADER,
        &[],
        "Cluster mode: 1 while this instance holds the leader key, else 0.",
    ),
    gauge(
        CLUSTER_LEADER_KNOWN,
        &[],
        "Cluster mode: 1 if this instance knows of a leader (itself or another member), else 0.",
    ),
    gauge(
        CLUSTER_MEMBERS,
        &[],
        "Cluster mode: members this instance sees publishing their view.",
    ),
    gauge(
        TRIGGERS_PAUSED,
        &[],
        "1 while maintenance mode keeps the runbook triggers quiet, else 0.",
    ),
    gauge(
        COLD_BACKUP_AGE,
        &["site", "what"],
        "Cold site: age of the newest backup (what=base_backup) and of the WAL archive's last segment (what=wal_archive).",
    ),
    counter(
        DRILL_RUNS,
        &["drill", "state"],
        "Drill runs and scheduled slots that ended, by final state (finished, aborted, failed, missed, skipped, ...).",
    ),
    gauge(
        DRILL_RTO,
        &["drill"],
        "Recovery time measured by the drill's last finished run.",
    ),
    gauge(
        DRILL_RPO,
        &["drill", "store"],
        "Data loss window measured by the drill's last finished run, per store.",
    ),
    gauge(
        DRILL_LOST_WRITES,
        &["drill", "store"],
        "Acknowledged writes the drill's last finished run found missing, per store.",
    ),
    gauge(
        DRILL_VERDICT,
        &["drill", "verdict"],
        "One-hot: the verdict of the drill's last finished run (met, missed, aborted, not_measured).",
    ),
    gauge(
        DRILL_LAST_RUN,
        &["drill"],
        "Unix time the drill's last run finished (since this niledr started).",
    ),
];

/// The family named `name`.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}
