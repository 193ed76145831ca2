//! The API's wire types (JSON). Field names here are the public contract.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
    /// The role the site holds now (`primary`, `hot_standby`, `cold_standby`), from the live
    /// topology; `role` stays the configured one.
    #[serde(default)]
    pub current_role: String,
    /// A site with backups configured (a cold site): their freshness.
    #[serde(default)]
    pub backups: Option<BackupFreshnessView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
    /// Firing pager alerts mapped to this service (`[[hooks.matchers]]`).
    #[serde(default)]
    pub alerts: Vec<AlertEvidenceView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ProbeView {
    pub at: String,
    pub ok: bool,
    pub latency_ms: f64,
    pub summary: String,
}

/// Replication state of a PostgreSQL or Redis service as last probed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
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

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DnsView {
    pub name: String,
    pub expected: Vec<String>,
    pub matches_expected: bool,
    pub servers: Vec<DnsServerView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DnsServerView {
    pub server: String,
    pub answers: Vec<String>,
    pub ttl: Option<u32>,
    pub authoritative: bool,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ServiceHistoryView {
    pub service: String,
    /// Newest first, bounded.
    pub probes: Vec<ProbeView>,
    /// Newest first.
    pub status_changes: Vec<StatusEventView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditVerifyView {
    pub ok: bool,
    pub entries: u64,
    pub head: String,
    pub broken_at: Option<u64>,
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// The authenticated caller, as the API reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PrincipalView {
    pub name: String,
    /// `viewer`, `operator`, `approver` or `admin`.
    pub role: String,
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RunbookSummaryView {
    pub name: String,
    pub description: String,
    pub file: String,
    pub services: Vec<String>,
    pub steps: usize,
    pub approval: ApprovalPolicyView,
}

/// `POST /api/v1/executions`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExecutionRequest {
    pub runbook: String,
    /// Why it should run (not blank).
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// `POST /api/v1/executions/{id}/approvals`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// `approve` or `reject`.
    #[schema(pattern = "^(approve|reject)$")]
    pub decision: String,
    #[serde(default)]
    pub comment: String,
    /// The plan digest the approver read; must match the execution's.
    pub plan_digest: Option<String>,
    /// Break-glass: a single approver with a written reason (only where the runbook allows).
    pub break_glass_reason: Option<String>,
}

/// `POST /api/v1/executions/{id}/confirm` (a manual step, or a step waiting for a confirm)
/// and `POST /api/v1/executions/{id}/retry` (roll forward from `needs_operator`: `step` is a
/// step id, or `verify`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub step: String,
    #[serde(default)]
    pub comment: String,
}

/// `POST .../cancel|pause|resume`
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    #[serde(default)]
    pub comment: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ExecutionView {
    pub id: String,
    pub runbook: String,
    pub reason: String,
    pub state: String,
    pub requester: String,
    pub created_at: String,
    pub plan_digest: String,
    pub approvals: Vec<ApprovalView>,
    pub steps: Vec<StepView>,
    pub timeline: Vec<TimelineView>,
    /// Set when the execution stopped in a state a person must look at.
    pub needs_operator: Option<String>,
    /// Grows with every journal commit of the execution: of two views of it, show the one
    /// with the higher revision (an HTTP answer can arrive after a newer SSE event).
    #[serde(default)]
    pub revision: u64,
    /// The plan as approved (its `readiness` is empty: that is checked at preview and start).
    pub plan: PlanView,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ApprovalView {
    pub user: String,
    pub tags: Vec<String>,
    pub decision: String,
    pub comment: String,
    pub at: String,
    pub break_glass_reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StepView {
    pub id: String,
    pub kind: String,
    /// `pending`, `running`, `succeeded`, `failed`, `rolled_back`, `skipped`, `waiting_confirmation`.
    pub state: String,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<f64>,
    pub detail: String,
    /// Why the step failed, if it did (kept after a rollback).
    pub error: Option<String>,
    pub rollback: Option<String>,
    /// niledr's own time around the step (journal commit, scheduling).
    pub overhead_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TimelineView {
    pub at: String,
    pub event: String,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DrillView {
    pub name: String,
    pub description: String,
    pub file: String,
    pub runbook: String,
    /// Cron (5 fields) in `timezone`; `None`: on demand only.
    pub schedule: Option<String>,
    pub timezone: String,
    /// `live` or `standing`.
    pub approval: String,
    pub digest: String,
    pub scenario: DrillScenarioView,
    pub objectives: DrillObjectivesView,
    /// Next scheduled slots: due, or skipped with the reason (blackout).
    pub upcoming: Vec<DrillSlotView>,
    /// The verdict of the last run (`met`, `missed`, `aborted`, `not_measured`), once drills
    /// have run.
    pub last_verdict: Option<String>,
    /// Id of the last run (finished or not), if any.
    pub last_run: Option<String>,
    /// Standing pre-approvals given for this drill file (any digest; `current` says whether
    /// it is for the file as loaded now).
    pub standing_approvals: Vec<StandingApprovalView>,
    /// `approval = "standing"` and the current digest has enough approvals to run unattended.
    pub standing_approved: bool,
    /// What a standing run still needs (empty when `standing_approved`).
    pub standing_needs: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StandingApprovalView {
    pub user: String,
    pub roles: Vec<String>,
    /// The drill digest the person approved.
    pub digest: String,
    pub at: String,
    pub comment: String,
    /// Approved digest equals the drill's digest as loaded now.
    pub current: bool,
}

/// `POST /api/v1/drills/{name}/approvals`: a standing pre-approval of the drill file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillApprovalRequest {
    /// The drill digest the approver read (`GET /api/v1/drills`); must match the file as loaded.
    pub digest: String,
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/drills/{name}/runs`: run a drill now.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillRunRequest {
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/v1/drills/{name}/runs/{id}/approvals`: a person's decision on one live drill
/// run before its fault.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillRunApprovalRequest {
    /// The drill digest the approver read on the run (`GET /api/v1/drill-runs/{id}`).
    pub digest: String,
    /// `approve` (default) or `reject`.
    #[serde(default = "approve")]
    #[schema(pattern = "^(approve|reject)$")]
    pub decision: String,
    #[serde(default)]
    pub comment: String,
}

fn approve() -> String {
    "approve".into()
}

/// A person's decision on a live drill run, given before its fault.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RunApprovalView {
    pub user: String,
    pub roles: Vec<String>,
    /// `approve` or `reject`.
    pub decision: String,
    pub digest: String,
    pub at: String,
    pub comment: String,
}

/// One drill run (or a scheduled slot that was missed or skipped).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DrillRunView {
    pub id: String,
    pub drill: String,
    /// The drill digest the run used.
    pub digest: String,
    /// `on_demand` or `schedule`.
    pub trigger: String,
    /// Who asked (a person, or `niledr-scheduler`).
    pub requested_by: String,
    /// `awaiting_approval` (a live drill: nothing injected until two people approve the run),
    /// `running`, `finished`, `aborted`, `failed`, `interrupted`, `rejected`, `expired`,
    /// `missed`, `skipped`.
    pub state: String,
    /// What the run is doing now (`approval`, `preflight`, `canary`, `fault`, `detection`,
    /// `decision`, `execution`, `measuring`, `cleanup`, `done`).
    pub phase: String,
    /// Live drills: the people's decisions on this run before its fault. (Defaults keep
    /// clients reading daemons that predate run approvals.)
    #[serde(default)]
    pub approvals: Vec<RunApprovalView>,
    /// While `awaiting_approval`: what is still needed before the fault, and how to give it.
    #[serde(default)]
    pub approval_needed: Option<String>,
    /// While `awaiting_approval`: when the request expires unapproved.
    #[serde(default)]
    pub approval_deadline: Option<String>,
    /// The scheduled slot this run was for (local time), if scheduled.
    pub scheduled_for: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The drill's runbook execution, once proposed.
    pub execution: Option<String>,
    pub cleanup_execution: Option<String>,
    /// Why the run failed, was skipped or missed.
    pub error: Option<String>,
    /// Overall verdict once finished: `met`, `missed`, `aborted`, `not_measured`.
    pub verdict: Option<String>,
    /// The full report once measured.
    pub report: Option<DrillReportView>,
    /// Progress notes, oldest first.
    pub notes: Vec<TimelineNoteView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TimelineNoteView {
    pub at: String,
    pub event: String,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DrillSlotView {
    /// Local time in the drill's time zone, with offset and zone.
    pub at: String,
    pub due: bool,
    pub skipped_because: Option<String>,
}

/// `GET /api/v1/cluster`: the members, who leads, this instance's lease, and each instance's
/// own view of every service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClusterView {
    /// `single` (one instance on redb) or `cluster` (etcd).
    pub mode: String,
    /// This instance's member name and site (cluster mode).
    pub this: Option<String>,
    pub site: Option<String>,
    pub is_leader: bool,
    pub leader: Option<ClusterLeaderView>,
    pub lease_ttl_ms: Option<u64>,
    /// How long this instance's lease is surely alive on the etcd side without a renewal.
    pub lease_remaining_ms: Option<u64>,
    /// Since this instance last heard from etcd.
    pub last_contact_ms: Option<u64>,
    pub last_error: Option<String>,
    pub members: Vec<ClusterMemberView>,
}

impl ClusterView {
    /// One instance on redb: it always leads.
    pub fn single() -> Self {
        ClusterView {
            mode: "single".into(),
            this: None,
            site: None,
            is_leader: true,
            leader: None,
            lease_ttl_ms: None,
            lease_remaining_ms: None,
            last_contact_ms: None,
            last_error: None,
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClusterLeaderView {
    pub name: String,
    pub site: String,
    pub advertise: String,
    pub since: String,
    /// The leader key's create revision: the fencing token of its writes.
    pub token: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClusterMemberView {
    pub name: String,
    pub site: String,
    pub advertise: String,
    pub leader: bool,
    /// When the member last published (RFC 3339) and how long ago by this instance's clock.
    pub at: String,
    pub age_ms: i64,
    pub services: std::collections::BTreeMap<String, MemberObservationView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MemberObservationView {
    pub status: String,
    pub ok: Option<bool>,
    pub summary: String,
    pub in_recovery: Option<bool>,
    pub wal_receiver: Option<bool>,
}

/// `GET /api/v1/audit` query: entries after `after` (a seq), oldest first, at most `limit`,
/// filtered by actor, execution and time (`since` inclusive, `until` exclusive, RFC 3339).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditQuery {
    pub after: u64,
    pub limit: usize,
    pub actor: Option<String>,
    pub execution: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// `shared` (default) or, in cluster mode, `local` (this instance's status-change chain).
    pub chain: Option<String>,
}

/// One audit entry as the API shows it (secrets redacted before it was written).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditEntryView {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    /// What happened: `execution.transition`, `approval.approved`, `status.changed`, …
    pub kind: String,
    /// The execution the entry is about, when it is about one.
    pub execution: Option<String>,
    /// The entry's detail fields; a value that is not a string is shown as compact JSON.
    pub detail: std::collections::BTreeMap<String, String>,
    pub prev_hash: String,
    pub hash: String,
}

/// A page of the audit chain: pass `next_after` as `after` for the next page (`None`: no more).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditPageView {
    /// `shared` or `local`.
    pub chain: String,
    pub entries: Vec<AuditEntryView>,
    pub next_after: Option<u64>,
    /// The newest entry's seq in the whole chain (0 when empty), filters aside.
    pub head_seq: u64,
}

/// `GET /api/v1/platform-mode` and SSE `event: platform-mode`: the platform's degradation
/// level as its DNS TXT record answers (what applications read, without reaching niledr).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlatformModeView {
    /// 0 normal, 4 database failover in progress (read-only, queue writes), 5 running in DR
    /// mode at another site; other levels are set outside niledr.
    pub level: u8,
    /// The level's standard wording.
    pub label: String,
    pub reason: String,
    /// The execution that set it.
    pub execution: Option<String>,
    pub since: Option<String>,
    /// The level it replaced (what a rollback of that execution restores).
    pub previous_level: Option<u8>,
    /// The TXT record's name; `None` when the config has no zone to publish in.
    pub record: Option<String>,
    /// Every authoritative server answered the same record.
    pub agree: bool,
    /// When niledr last read it; `None` before the first reading.
    pub observed_at: Option<String>,
    pub servers: Vec<PlatformServerView>,
}

impl PlatformModeView {
    /// Nothing published (no zone in the config, or a router test).
    pub fn unpublished() -> Self {
        PlatformModeView {
            level: 0,
            label: "normal operation".into(),
            reason: "not published: the config has no [dns] zone".into(),
            execution: None,
            since: None,
            previous_level: None,
            record: None,
            agree: true,
            observed_at: None,
            servers: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlatformServerView {
    pub server: String,
    /// `None` when the server did not answer or holds a record niledr cannot read.
    pub level: Option<u8>,
    pub error: Option<String>,
}

/// `POST /api/v1/session`: exchange a bearer token for a console session cookie.
#[derive(Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    #[schema(min_length = 1)]
    pub token: String,
}

impl std::fmt::Debug for SignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInRequest { token: <redacted> }")
    }
}

/// `POST /api/v1/session` and `GET /api/v1/session`: who the session is, and the token every
/// non-GET request authenticated by its cookie must send as `X-CSRF-Token`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SessionView {
    pub principal: PrincipalView,
    pub csrf_token: String,
    /// The session ends then at the latest (absolute lifetime).
    pub expires_at: String,
    /// The session ends after this long unused.
    pub idle_timeout_seconds: u64,
}

// Pager hooks (`/api/v1/hooks/*`): their payloads and answers, in `types/hooks.rs`.
mod drill;
mod hooks;
mod plan;
pub use drill::*;
pub use hooks::*;
pub use plan::*;

/// `GET /api/v1/notifications`: the configured receivers and the outbox, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NotificationsView {
    pub receivers: Vec<NotificationReceiverView>,
    pub notifications: Vec<NotificationView>,
}

/// A receiver as the API shows it: its URL as an origin only (a path may carry a token).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NotificationReceiverView {
    pub name: String,
    /// `webhook` or `pagerduty`.
    pub kind: String,
    pub url: String,
    pub events: Vec<String>,
}

/// One outbox entry and how its delivery went.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NotificationView {
    /// Also the `Idempotency-Key` / `X-Niledr-Delivery` a webhook receiver sees.
    pub id: String,
    pub receiver: String,
    pub event: String,
    /// The execution or drill run.
    pub subject: String,
    /// PagerDuty's `dedup_key` and `event_action`.
    pub dedup_key: String,
    pub action: String,
    pub severity: String,
    pub summary: String,
    pub details: Vec<String>,
    pub link: Option<String>,
    pub created_at: String,
    /// `pending`, `in_flight`, `delivered` or `failed` (given up).
    pub state: String,
    pub attempts: u32,
    pub max_attempts: u32,
    /// While pending: not before this time.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

// ---------------------------------------------------------------------------------------
// The live topology (issue 10 §1): where things are now, cold-site freshness, maintenance.

/// `GET /api/v1/topology`: where the PostgreSQL primary, the Redis master and each DNS name
/// are now, and the role each site holds next to its configured one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct TopologyView {
    pub postgres_primary: Option<PlacementView>,
    pub redis_master: Option<PlacementView>,
    pub dns: Vec<DnsPlacementView>,
    pub sites: Vec<SiteRoleView>,
    pub triggers: TriggersView,
}

/// A service and the site it runs at.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct PlacementView {
    pub service: String,
    pub site: Option<String>,
    /// The service's health status now.
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct DnsPlacementView {
    pub name: String,
    pub service: String,
    /// What the name should answer now (the last executed cutover's, else the configured one).
    pub expect: Vec<String>,
    pub expect_site: Option<String>,
    /// What every authoritative server answered, when they agree.
    pub answers: Option<Vec<String>>,
    pub answer_site: Option<String>,
    pub matches: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct SiteRoleView {
    pub site: String,
    pub role: String,
    pub current_role: String,
    pub status: String,
}

/// A cold site's backups against its objectives (ages in whole seconds).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct BackupFreshnessView {
    /// `up`, `degraded` (an objective exceeded) or `down` (no readable base backup).
    pub status: String,
    pub reason: String,
    pub checked_at: String,
    pub base_backup: Option<String>,
    pub base_backup_at: Option<String>,
    pub base_backup_age_seconds: Option<u64>,
    pub max_base_backup_age_seconds: Option<u64>,
    pub last_wal_segment: Option<String>,
    pub wal_archive_at: Option<String>,
    /// The cold site's RPO right now.
    pub wal_archive_age_seconds: Option<u64>,
    pub max_wal_archive_age_seconds: Option<u64>,
    pub restore_tested_at: Option<String>,
    pub restore_drill: Option<String>,
    pub restore_drill_run: Option<String>,
    pub restore_verdict: Option<String>,
    pub max_restore_test_age_seconds: Option<u64>,
}

/// `GET /api/v1/triggers`: maintenance mode.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct TriggersView {
    pub paused: bool,
    /// Who paused (or last resumed) the triggers, when, and why.
    pub by: Option<String>,
    pub at: Option<String>,
    pub reason: Option<String>,
}

/// `POST /api/v1/triggers/pause` and `/resume`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggersRequest {
    /// Why (not empty; audited).
    #[schema(min_length = 1)]
    pub reason: String,
}

/// The load-balancer endpoints' tiny body (200 when `status` is `up`, else 503).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct LbHealthView {
    pub status: String,
    pub site: Option<String>,
    pub service: Option<String>,
    /// `GET /api/v1/primary` and sites: the role held now.
    pub role: Option<String>,
    pub reason: String,
}

/// `GET /api/v1/cluster/vouch/{service}`: what this member sees of one service and whether it
/// knows of an execution acting, for a member that lost its lease and asks its peers before it
/// fences its own primary (public, like the load-balancer endpoints: two facts, no detail).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct VouchView {
    pub service: String,
    /// The service's status as this member sees it (`up`, `degraded`, `down`, `unknown`).
    pub status: String,
    /// An execution is approved or acting (or its state cannot be read): do not vouch.
    pub acting: bool,
}
