//! What we store: versioned record types, separate from the in-memory structs, so the file
//! format changes only on purpose. Every record is JSON with a `v` field; a reader refuses a
//! version it does not know instead of guessing.

use std::collections::BTreeMap;

use niledr_runbooks::{Approval, Decision, ObservedRole, Preconditions, ServicePrecondition};
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

/// One link of the audit chain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditRecordV1 {
    pub v: u32,
    pub seq: u64,
    /// RFC 3339 UTC.
    pub at: String,
    /// Who: `niledr` for the daemon itself, a user name for people.
    pub actor: String,
    /// What: `config.loaded`, `daemon.started`, `status.changed`, ...
    pub action: String,
    pub detail: serde_json::Value,
    /// Hex sha256 of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// Hex sha256 over `prev_hash` and this record's content (see `audit::entry_hash`).
    pub hash: String,
}

/// A service or site changed status.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusChangeV1 {
    pub v: u32,
    pub seq: u64,
    pub at: String,
    /// `service` or `site`.
    pub scope: String,
    pub id: String,
    /// The site of a service, if it has one.
    pub site: Option<String>,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// One probe result kept in a service's bounded history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeRecordV1 {
    pub v: u32,
    pub at: String,
    pub ok: bool,
    pub latency_ms: f64,
    pub summary: String,
    /// Replication lag in bytes (postgres) or offset (redis), when measured.
    pub lag: Option<u64>,
}

pub fn check_version(v: u32, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        v == 1,
        "{what} record has version {v}, which this niledr does not know; upgrade niledr"
    );
    Ok(())
}

/// One execution of a runbook, rewritten (fsync'd, with its audit entries) at every
/// transition and before every step's effect: the journal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExecutionRecordV1 {
    pub v: u32,
    pub id: String,
    pub runbook: String,
    pub reason: String,
    pub requester: String,
    pub created_at: String,
    /// Lifecycle state name (`awaiting_approval`, `running`, ...).
    pub state: String,
    /// The serialized state machine (resumed after a restart).
    pub machine: serde_json::Value,
    pub plan_digest: String,
    pub plan: serde_json::Value,
    /// What the approvers saw: roles, lag, DNS answers (a `PreconditionsV1`; kept as raw
    /// JSON here so one unreadable field refuses its execution, naming it, instead of making
    /// the whole journal unreadable).
    pub preconditions: serde_json::Value,
    /// `ApprovalV1` each, raw for the same reason.
    pub approvals: Vec<serde_json::Value>,
    pub steps: Vec<StepRecordV1>,
    pub timeline: Vec<TimelineEntryV1>,
    pub needs_operator: Option<String>,
    /// Failover generation this execution holds (fencing token), once it has started.
    pub generation: Option<u64>,
    /// An irreversible step succeeded or may have partly applied: the old side is kept
    /// fenced from now on, whatever state the execution ends in.
    #[serde(default)]
    pub past_point_of_no_return: bool,
    /// Counts the commits of this record (each save adds one): a client holding two views of
    /// the execution keeps the higher (an answer can arrive after a newer SSE event).
    #[serde(default)]
    pub revision: u64,
    /// The proposal expires at this engine time (unix ms on niledr's monotonic-anchored
    /// clock) if not approved by then.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct StepRecordV1 {
    pub id: String,
    pub kind: String,
    /// `pending`, `running`, `succeeded`, `failed`, `rolling_back`, `rolled_back`, `skipped`,
    /// `waiting_confirmation`.
    pub state: String,
    pub attempts: u32,
    /// Set (and committed) before the action starts.
    pub intent_at: Option<String>,
    /// Set (and committed) when the action's outcome is known. Intent without outcome after a
    /// restart means the step is in doubt: the action checks the world before acting.
    pub outcome_at: Option<String>,
    pub duration_ms: Option<f64>,
    pub detail: String,
    /// niledr's own time for this step (journal commits, scheduling), excluding the action.
    pub overhead_ms: Option<f64>,
    /// Why the step's last attempt failed (kept when the step is later rolled back).
    #[serde(default)]
    pub error: Option<String>,
    /// What the rollback of this step did.
    #[serde(default)]
    pub rollback_detail: Option<String>,
    /// A retry is scheduled for this time (RFC 3339): after a restart it is re-armed.
    #[serde(default)]
    pub retry_due_at: Option<String>,
    /// Waiting for an operator's confirm until this time (RFC 3339), then the step fails.
    #[serde(default)]
    pub confirm_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimelineEntryV1 {
    pub at: String,
    pub event: String,
    pub detail: String,
}

/// A standing pre-approval of a drill file, bound to the drill's digest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StandingApprovalV1 {
    pub v: u32,
    pub drill: String,
    pub user: String,
    pub roles: Vec<String>,
    /// The drill digest the person approved.
    pub digest: String,
    pub at: String,
    pub comment: String,
}

/// A person's decision on one live drill run, given before its fault.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunApprovalV1 {
    pub user: String,
    pub roles: Vec<String>,
    /// `approve` or `reject`.
    pub decision: String,
    /// The drill digest the person read (always the run's digest: others are refused).
    pub digest: String,
    pub at: String,
    pub comment: String,
}

/// One drill run, or a scheduled slot that was missed or skipped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DrillRunRecordV1 {
    pub v: u32,
    /// UUIDv7: sorts by creation time.
    pub id: String,
    pub drill: String,
    pub digest: String,
    /// `on_demand` or `schedule`.
    pub trigger: String,
    pub requested_by: String,
    /// `awaiting_approval`, `running`, `finished`, `aborted`, `failed`, `interrupted`,
    /// `rejected`, `expired`, `missed`, `skipped`.
    pub state: String,
    pub phase: String,
    pub scheduled_for: Option<String>,
    /// Live drills: the decisions of people on this run before its fault. Records written
    /// before runs were approved have none.
    #[serde(default)]
    pub approvals: Vec<RunApprovalV1>,
    /// Live drills: when a run still awaiting approval expires (RFC 3339).
    #[serde(default)]
    pub approval_deadline: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub execution: Option<String>,
    pub cleanup_execution: Option<String>,
    pub error: Option<String>,
    pub verdict: Option<String>,
    /// `niledr_drills::DrillReport` as JSON.
    pub report: Option<serde_json::Value>,
    pub notes: Vec<TimelineEntryV1>,
}

// ---------------------------------------------------------------------------------------
// Snapshots inside an execution record. They are owned here, not dumps of `runbooks` types:
// renaming a field there cannot silently change what is stored, and a stored snapshot that
// does not decode is an error naming the field (never a default such as "no drift").

/// What the approvers saw (v1 of the `preconditions` field).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreconditionsV1 {
    pub services: BTreeMap<String, ServicePreconditionV1>,
    /// DNS name → every address the authoritative servers answered.
    pub dns: BTreeMap<String, Vec<String>>,
    pub connstr: BTreeMap<String, Option<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServicePreconditionV1 {
    pub reachable: bool,
    /// `primary`, `standby`, `master`, `replica`.
    pub role: Option<String>,
    pub timeline: Option<u32>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
}

/// One person's decision (v1 of an element of the `approvals` field).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApprovalV1 {
    pub user: String,
    pub roles: Vec<String>,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub at_ms: u64,
    pub digest: String,
    pub break_glass_reason: Option<String>,
}

const ROLES: [ObservedRole; 4] = [
    ObservedRole::Primary,
    ObservedRole::Standby,
    ObservedRole::Master,
    ObservedRole::Replica,
];

impl PreconditionsV1 {
    pub fn of(p: &Preconditions) -> PreconditionsV1 {
        PreconditionsV1 {
            services: p
                .services
                .iter()
                .map(|(id, s)| {
                    let v = ServicePreconditionV1 {
                        reachable: s.reachable,
                        role: s.role.map(|r| r.as_str().to_string()),
                        timeline: s.timeline,
                        lag_bytes: s.lag_bytes,
                        lag_seconds: s.lag_seconds,
                    };
                    (id.clone(), v)
                })
                .collect(),
            dns: p.dns.clone(),
            connstr: p.connstr.clone(),
        }
    }

    pub fn to_value(p: &Preconditions) -> serde_json::Value {
        // Plain maps, strings and numbers: serialising cannot fail.
        serde_json::to_value(PreconditionsV1::of(p)).unwrap_or(serde_json::Value::Null)
    }

    /// The stored field back, or what is wrong with it.
    pub fn decode(v: &serde_json::Value) -> Result<Preconditions, String> {
        let s: PreconditionsV1 = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        let mut services = BTreeMap::new();
        for (id, p) in s.services {
            let role = match p.role.as_deref() {
                None => None,
                Some(r) => Some(
                    ROLES
                        .into_iter()
                        .find(|x| x.as_str() == r)
                        .ok_or_else(|| format!("services.{id}.role: unknown role {r:?}"))?,
                ),
            };
            let sp = ServicePrecondition {
                reachable: p.reachable,
                role,
                timeline: p.timeline,
                lag_bytes: p.lag_bytes,
                lag_seconds: p.lag_seconds,
            };
            services.insert(id, sp);
        }
        Ok(Preconditions {
            services,
            dns: s.dns,
            connstr: s.connstr,
        })
    }
}

impl ApprovalV1 {
    pub fn to_value(a: &Approval) -> serde_json::Value {
        let v = ApprovalV1 {
            user: a.user.clone(),
            roles: a.roles.clone(),
            decision: match a.decision {
                Decision::Approve => "approve".into(),
                Decision::Reject => "reject".into(),
            },
            comment: a.comment.clone(),
            at_ms: a.at_ms,
            digest: a.digest.clone(),
            break_glass_reason: a.break_glass_reason.clone(),
        };
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
    }

    pub fn decode(v: &serde_json::Value) -> Result<Approval, String> {
        let a: ApprovalV1 = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        let decision = match a.decision.as_str() {
            "approve" => Decision::Approve,
            "reject" => Decision::Reject,
            other => return Err(format!("decision {other:?} is neither approve nor reject")),
        };
        Ok(Approval {
            user: a.user,
            roles: a.roles,
            decision,
            comment: a.comment,
            at_ms: a.at_ms,
            digest: a.digest,
            break_glass_reason: a.break_glass_reason,
        })
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_refuse_what_does_not_decode() {
        let mut p = Preconditions::default();
        p.services.insert(
            "khartoum-postgres".into(),
            ServicePrecondition {
                reachable: true,
                role: Some(ObservedRole::Primary),
                timeline: Some(1),
                lag_bytes: None,
                lag_seconds: None,
            },
        );
        p.dns
            .insert("db.nilecare.sd.".into(), vec!["127.0.1.1".into()]);
        let v = PreconditionsV1::to_value(&p);
        assert_eq!(PreconditionsV1::decode(&v), Ok(p));
        let e = PreconditionsV1::decode(
            &serde_json::json!({ "services": "x", "dns": {}, "connstr": {} }),
        );
        assert!(e.is_err());
        let mut bad = v.clone();
        bad["services"]["khartoum-postgres"]["role"] = "leader".into();
        assert!(
            PreconditionsV1::decode(&bad)
                .unwrap_err()
                .contains("unknown role")
        );
        assert!(PreconditionsV1::decode(&serde_json::Value::Null).is_err());
        let a = Approval {
            user: "amira".into(),
            roles: vec!["incident_commander".into()],
            decision: Decision::Approve,
            comment: None,
            at_ms: 7,
            digest: "d".into(),
            break_glass_reason: None,
        };
        assert_eq!(ApprovalV1::decode(&ApprovalV1::to_value(&a)), Ok(a));
        let mut bad = ApprovalV1::to_value(&Approval {
            user: "x".into(),
            roles: vec![],
            decision: Decision::Reject,
            comment: None,
            at_ms: 1,
            digest: "d".into(),
            break_glass_reason: None,
        });
        bad["decision"] = "maybe".into();
        assert!(ApprovalV1::decode(&bad).is_err());
    }
}

/// One message in the notifications outbox: what to tell one receiver, and how its delivery
/// went. Written in the same store transaction as the fact it announces (an execution's
/// transition, an approval, a drill's verdict), then only by the delivery worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NotificationV1 {
    pub v: u32,
    /// UUIDv7 (sorts by creation time): also the dedup key a webhook receiver sees.
    pub id: String,
    /// The configured receiver's name.
    pub receiver: String,
    /// `proposal_waiting`, `approval_given`, `step_failed`, `needs_operator`, `succeeded`,
    /// `ended`, `drill_verdict`.
    pub event: String,
    /// The execution or drill run it is about.
    pub subject: String,
    /// PagerDuty `dedup_key` (the execution id; `drill:<name>` for drill verdicts).
    pub dedup_key: String,
    /// PagerDuty `event_action`: `trigger`, `acknowledge` or `resolve`.
    pub action: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: String,
    /// One line: what happened and what is needed.
    pub summary: String,
    /// More lines (who is still needed, the error, the link).
    pub details: Vec<String>,
    /// Where a person acts on it (the console).
    pub link: Option<String>,
    pub created_at: String,
    /// `pending`, `in_flight`, `delivered`, `failed` (given up after the last attempt).
    pub state: String,
    /// Attempts started so far (an attempt is counted before it is sent).
    pub attempts: u32,
    /// Not before this time (RFC 3339).
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    /// While `in_flight`: the delivery worker (one per daemon run) sending it. An entry in
    /// flight for a worker that no longer runs is in doubt: resent with the same dedup key.
    pub in_flight_by: Option<String>,
}
