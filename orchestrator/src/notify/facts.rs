//! What a commit announces: read from the record as committed and the audit entries of the same
//! commit (each audit entry is written exactly once, so each fact is found exactly once). Pure:
//! no I/O; the wording an on-call engineer reads at 03:00 is decided here, and so is what a
//! PagerDuty incident does (trigger, acknowledge, resolve: see `docs/notifications.md`).

use niledr_runbooks::{Approval, ApprovalPolicy, Status};

use super::EventKind;
use crate::records::{ApprovalV1, DrillRunRecordV1, ExecutionRecordV1};
use crate::store::AuditEvent;

/// PagerDuty Events v2 `event_action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Trigger,
    Acknowledge,
    Resolve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Acknowledge => "acknowledge",
            Action::Resolve => "resolve",
        }
    }
}

/// One thing worth telling people.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub kind: EventKind,
    /// The execution or drill run id.
    pub subject: String,
    pub dedup_key: String,
    pub action: Action,
    pub severity: &'static str,
    pub summary: String,
    pub details: Vec<String>,
    pub link: Option<String>,
}

/// The console page of an execution (its route is `#/executions/<id>`).
pub fn execution_link(console: &str, id: &str) -> String {
    format!("{}/#/executions/{id}", console.trim_end_matches('/'))
}

/// Facts of one execution commit, in the order of its audit entries.
pub fn for_execution(
    rec: &ExecutionRecordV1,
    audit: &[AuditEvent<'_>],
    console: &str,
) -> Vec<Fact> {
    let mut out = Vec::new();
    for e in audit {
        let fact = match e.action {
            "execution.transition" => {
                let to = e.detail["to"].as_str().unwrap_or_default();
                let to = to.split('{').next().unwrap_or_default();
                transition(rec, to)
            }
            "approval.approved" => Some(approval_given(rec, e.actor)),
            "approval.break_glass" => Some(break_glass(rec, e.actor, &e.detail)),
            "step.outcome" => step_failed(rec, &e.detail),
            "step.awaiting_confirm" => Some(awaiting_confirm(rec, &e.detail)),
            "execution.record_unreadable" => Some(unreadable(rec)),
            _ => None,
        };
        if let Some(f) = fact {
            out.push(Fact {
                link: Some(execution_link(console, &rec.id)),
                ..f
            });
        }
    }
    out
}

fn fact(rec: &ExecutionRecordV1, kind: EventKind, action: Action, severity: &'static str) -> Fact {
    Fact {
        kind,
        subject: rec.id.clone(),
        dedup_key: rec.id.clone(),
        action,
        severity,
        summary: String::new(),
        details: Vec::new(),
        link: None,
    }
}

fn transition(rec: &ExecutionRecordV1, to: &str) -> Option<Fact> {
    let who = format!("{} (execution {})", rec.runbook, rec.id);
    match to {
        "awaiting_approval" => {
            let need = still_needed(rec);
            let mut f = fact(rec, EventKind::ProposalWaiting, Action::Trigger, "critical");
            f.summary = format!("niledr: {} waits for approval: {need}", rec.runbook);
            f.details = vec![
                format!("Proposed by {}: {}", rec.requester, rec.reason),
                format!("Still needed: {need}"),
                format!("Read the plan and approve or reject: {who}"),
            ];
            Some(f)
        }
        "needs_operator" => {
            let mut f = fact(rec, EventKind::NeedsOperator, Action::Trigger, "critical");
            f.summary = format!("niledr: {} stopped and needs an operator", rec.runbook);
            f.details = vec![rec.needs_operator.clone().unwrap_or_else(|| who.clone())];
            Some(f)
        }
        "succeeded" => {
            let mut f = fact(rec, EventKind::Succeeded, Action::Resolve, "info");
            f.summary = format!("niledr: {} succeeded", rec.runbook);
            f.details = vec![format!("{who} finished every step and its verification.")];
            Some(f)
        }
        "failed" | "rolled_back" | "cancelled" | "rejected" | "expired" => Some(ended(rec, to)),
        _ => None,
    }
}

/// A failure or rollback leaves the outage in place: the page stays open (trigger). A person's
/// cancel or rejection closes it; so does an expiry (the proposal is gone; a trigger that
/// still sees the outage opens a new proposal, and pages again).
fn ended(rec: &ExecutionRecordV1, to: &str) -> Fact {
    let (action, severity, what) = match to {
        "failed" => (Action::Trigger, "critical", "failed"),
        "rolled_back" => (Action::Trigger, "error", "failed and was rolled back"),
        "cancelled" => (Action::Resolve, "info", "was cancelled"),
        "rejected" => (Action::Resolve, "info", "was rejected"),
        _ => (
            Action::Resolve,
            "warning",
            "expired without enough approvals",
        ),
    };
    let mut f = fact(rec, EventKind::Ended, action, severity);
    f.summary = format!("niledr: {} {what}", rec.runbook);
    f.details = vec![format!("Execution {} ended {to}.", rec.id)];
    if let Some(why) = &rec.needs_operator {
        f.details.push(why.clone());
    }
    f
}

fn approval_given(rec: &ExecutionRecordV1, approver: &str) -> Fact {
    let complete = approval_status(rec).is_some_and(|s| matches!(s, Status::Approved { .. }));
    let need = still_needed(rec);
    let (action, severity) = if complete {
        (Action::Acknowledge, "warning")
    } else {
        (Action::Trigger, "critical")
    };
    let mut f = fact(rec, EventKind::ApprovalGiven, action, severity);
    f.summary = if complete {
        format!(
            "niledr: {} approved by {approver}; it starts now",
            rec.runbook
        )
    } else {
        format!("niledr: {approver} approved {}; {need}", rec.runbook)
    };
    f.details = vec![format!("Still needed: {need}")];
    f
}

/// A journal record that does not decode stops its execution for a person.
fn unreadable(rec: &ExecutionRecordV1) -> Fact {
    let mut f = fact(rec, EventKind::NeedsOperator, Action::Trigger, "critical");
    f.summary = format!(
        "niledr: the journal record of {} does not decode; it needs an operator",
        rec.runbook
    );
    f.details = rec.needs_operator.iter().cloned().collect();
    f
}

/// A single person overrode the two-person rule: loud, whatever it completes.
fn break_glass(rec: &ExecutionRecordV1, approver: &str, detail: &serde_json::Value) -> Fact {
    let reason = detail["break_glass_reason"]
        .as_str()
        .unwrap_or("no reason given");
    let mut f = fact(rec, EventKind::ApprovalGiven, Action::Trigger, "critical");
    f.summary = format!(
        "niledr: BREAK-GLASS: {approver} approved {} alone: {reason}",
        rec.runbook
    );
    f.details = vec![
        "The two-person rule was overridden; the approval is audited as approval.break_glass."
            .into(),
    ];
    f
}

fn step_failed(rec: &ExecutionRecordV1, detail: &serde_json::Value) -> Option<Fact> {
    let id = detail["step"].as_str()?;
    let step = rec.steps.iter().find(|s| s.id == id)?;
    if step.state != "failed" {
        return None;
    }
    let mut f = fact(rec, EventKind::StepFailed, Action::Trigger, "error");
    f.summary = format!(
        "niledr: step {id} of {} failed (attempt {})",
        rec.runbook, step.attempts
    );
    f.details = vec![step.error.clone().unwrap_or_else(|| step.detail.clone())];
    if step.retry_due_at.is_some() {
        f.details.push("niledr retries it.".into());
    }
    Some(f)
}

fn awaiting_confirm(rec: &ExecutionRecordV1, detail: &serde_json::Value) -> Fact {
    let step = detail["step"].as_str().unwrap_or("a manual step");
    let mut f = fact(rec, EventKind::NeedsOperator, Action::Trigger, "critical");
    f.summary = format!(
        "niledr: {} waits for an operator to confirm step {step}",
        rec.runbook
    );
    f.details = vec![format!(
        "Confirm with `niledr confirm {} {step}` once done.",
        rec.id
    )];
    f
}

/// The approval policy (from the stored plan) against the approvals so far; `None` when either
/// does not decode.
fn approval_status(rec: &ExecutionRecordV1) -> Option<Status> {
    let policy: ApprovalPolicy = serde_json::from_value(rec.plan.get("approval")?.clone()).ok()?;
    let approvals: Vec<Approval> = rec
        .approvals
        .iter()
        .map(ApprovalV1::decode)
        .collect::<Result<_, _>>()
        .ok()?;
    // "Now" is the newest decision: every approval given within its lifetime counts.
    let now = approvals.iter().map(|a| a.at_ms).max().unwrap_or(0);
    Some(niledr_runbooks::status(
        &policy,
        &approvals,
        &rec.plan_digest,
        now,
    ))
}

/// Who must still approve, in words: "2 more approvers (incident_commander, engineering_lead);
/// not khalid (the requester)".
pub fn still_needed(rec: &ExecutionRecordV1) -> String {
    match approval_status(rec) {
        None => "see the console (the approval policy could not be read)".into(),
        Some(Status::Approved { by, .. }) => format!("nobody (approved by {})", by.join(", ")),
        Some(Status::Rejected { by, .. }) => format!("nobody (rejected by {by})"),
        Some(Status::Pending {
            missing_roles,
            have,
            need,
        }) => {
            let more = need.saturating_sub(have);
            let people = if more == 1 { "approver" } else { "approvers" };
            let roles = if missing_roles.is_empty() {
                String::new()
            } else {
                format!(" with the roles {}", missing_roles.join(" and "))
            };
            let given: Vec<String> = rec
                .approvals
                .iter()
                .filter_map(|a| ApprovalV1::decode(a).ok())
                .map(|a| a.user)
                .collect();
            let so_far = if given.is_empty() {
                String::new()
            } else {
                format!("; approved so far by {}", given.join(", "))
            };
            format!(
                "{more} more {people}{roles}, not {} (the requester){so_far}",
                rec.requester
            )
        }
    }
}

/// Facts of one drill run commit: a live run waiting for people before its fault, their
/// decisions, and the verdict when the run ends.
pub fn for_drill_run(rec: &DrillRunRecordV1, audit: &[AuditEvent<'_>], console: &str) -> Vec<Fact> {
    let mut out: Vec<Fact> = audit
        .iter()
        .filter_map(|e| match e.action {
            "drill.requested" => Some(run_waiting(rec)),
            "drill.run_decision" => Some(run_decided(rec, e.actor)),
            "drill.expired" => Some(run_closed(rec, "expired", "warning")),
            _ => None,
        })
        .collect();
    let ends = audit.iter().any(|e| {
        matches!(
            e.action,
            "drill.finished" | "drill.failed" | "drill.interrupted"
        )
    });
    if ends {
        out.push(verdict(rec));
    }
    let link = format!("{}/#/drills/runs/{}", console.trim_end_matches('/'), rec.id);
    out.into_iter()
        .map(|f| Fact {
            link: Some(link.clone()),
            ..f
        })
        .collect()
}

/// One incident per live run awaiting approval (`drill-run:<id>`): opened by the request,
/// resolved once the run is approved, rejected or expired.
fn run_fact(
    rec: &DrillRunRecordV1,
    kind: EventKind,
    action: Action,
    severity: &'static str,
) -> Fact {
    Fact {
        kind,
        subject: rec.id.clone(),
        dedup_key: format!("drill-run:{}", rec.id),
        action,
        severity,
        summary: String::new(),
        details: Vec::new(),
        link: None,
    }
}

fn approve_hint(rec: &DrillRunRecordV1) -> String {
    format!(
        "Read the drill, then approve or reject: niledr drill approve {} --run {} (expires {})",
        rec.drill,
        rec.id,
        rec.approval_deadline
            .as_deref()
            .unwrap_or("at its deadline")
    )
}

fn run_waiting(rec: &DrillRunRecordV1) -> Fact {
    let mut f = run_fact(rec, EventKind::ProposalWaiting, Action::Trigger, "critical");
    f.summary = format!(
        "niledr: live drill {} waits for approval before its fault (run {})",
        rec.drill, rec.id
    );
    f.details = vec![
        format!(
            "Requested by {} (the requester never counts).",
            rec.requested_by
        ),
        "Nothing is injected until the run is approved.".into(),
        approve_hint(rec),
    ];
    f
}

fn run_decided(rec: &DrillRunRecordV1, who: &str) -> Fact {
    match rec.state.as_str() {
        "awaiting_approval" => {
            let mut f = run_fact(rec, EventKind::ApprovalGiven, Action::Trigger, "critical");
            f.summary = format!(
                "niledr: {who} approved live drill run {} of {}; more approvals needed",
                rec.id, rec.drill
            );
            f.details = rec
                .notes
                .last()
                .map(|n| n.detail.clone())
                .into_iter()
                .collect();
            f.details.push(approve_hint(rec));
            f
        }
        "rejected" => run_closed(rec, "rejected", "info"),
        _ => {
            let mut f = run_fact(rec, EventKind::ApprovalGiven, Action::Resolve, "info");
            f.summary = format!(
                "niledr: live drill run {} of {} approved by {who}; it runs now",
                rec.id, rec.drill
            );
            f.details = vec![format!("Run {} is {}.", rec.id, rec.state)];
            f
        }
    }
}

fn run_closed(rec: &DrillRunRecordV1, how: &str, severity: &'static str) -> Fact {
    let mut f = run_fact(rec, EventKind::Ended, Action::Resolve, severity);
    f.summary = format!(
        "niledr: live drill run {} of {} {how}; nothing was injected",
        rec.id, rec.drill
    );
    f.details = rec.error.iter().cloned().collect();
    f
}

fn verdict(rec: &DrillRunRecordV1) -> Fact {
    let verdict = rec.verdict.clone().unwrap_or_else(|| rec.state.clone());
    let met = verdict == "met";
    let mut details = vec![format!("Run {} ended {}.", rec.id, rec.state)];
    if let Some(e) = &rec.error {
        details.push(e.clone());
    }
    Fact {
        kind: EventKind::DrillVerdict,
        subject: rec.id.clone(),
        // One incident per drill: a failed run opens it, the next run that meets every
        // objective resolves it.
        dedup_key: format!("drill:{}", rec.drill),
        action: if met {
            Action::Resolve
        } else {
            Action::Trigger
        },
        severity: if met { "info" } else { "warning" },
        summary: format!("niledr: drill {} verdict: {verdict}", rec.drill),
        details,
        link: None,
    }
}

#[cfg(test)]
mod tests {
    use niledr_runbooks::Decision;

    use super::*;

    fn record() -> ExecutionRecordV1 {
        let policy = ApprovalPolicy {
            required: 2,
            roles: vec!["incident_commander".into(), "engineering_lead".into()],
            ..ApprovalPolicy::default()
        };
        ExecutionRecordV1 {
            v: 1,
            id: "exec-1".into(),
            runbook: "regional-failover".into(),
            reason: "khartoum is down".into(),
            requester: "khalid".into(),
            created_at: "2026-12-01T03:00:00Z".into(),
            state: "awaiting_approval".into(),
            machine: serde_json::Value::Null,
            plan_digest: "d1".into(),
            plan: serde_json::json!({ "approval": policy }),
            preconditions: serde_json::Value::Null,
            approvals: vec![],
            steps: vec![],
            timeline: vec![],
            needs_operator: None,
            generation: None,
            past_point_of_no_return: false,
            revision: 0,
            expires_at_ms: None,
        }
    }

    fn approval(user: &str, role: &str) -> serde_json::Value {
        ApprovalV1::to_value(&Approval {
            user: user.into(),
            roles: vec![role.into()],
            decision: Decision::Approve,
            comment: None,
            at_ms: 1000,
            digest: "d1".into(),
            break_glass_reason: None,
        })
    }

    fn transition(to: &str) -> AuditEvent<'static> {
        AuditEvent {
            actor: "khalid",
            action: "execution.transition",
            detail: serde_json::json!({ "id": "exec-1", "from": "proposed", "to": to }),
        }
    }

    #[test]
    fn a_waiting_proposal_says_who_is_still_needed_and_links_the_console() {
        let rec = record();
        let f = for_execution(
            &rec,
            &[transition("awaiting_approval")],
            "https://c.example/",
        );
        let [f] = &f[..] else { panic!("{f:?}") };
        assert_eq!(
            (f.kind, f.action),
            (EventKind::ProposalWaiting, Action::Trigger)
        );
        assert_eq!(f.dedup_key, "exec-1");
        assert_eq!(
            f.link.as_deref(),
            Some("https://c.example/#/executions/exec-1")
        );
        assert!(
            f.summary.contains(
                "2 more approvers with the roles incident_commander and engineering_lead, not khalid (the requester)"
            ),
            "{}",
            f.summary
        );
        // One approval in: the next message names the role still missing and who approved.
        let mut rec = record();
        rec.approvals.push(approval("amira", "incident_commander"));
        let given = AuditEvent {
            actor: "amira",
            action: "approval.approved",
            detail: serde_json::json!({ "id": "exec-1" }),
        };
        let f = for_execution(&rec, &[given], "https://c.example");
        assert_eq!(
            (f[0].kind, f[0].action),
            (EventKind::ApprovalGiven, Action::Trigger)
        );
        assert!(
            f[0].summary.contains(
                "amira approved regional-failover; 1 more approver with the roles engineering_lead"
            ) && f[0].summary.contains("approved so far by amira"),
            "{}",
            f[0].summary
        );
        // The second completes the policy: acknowledge (people are on it).
        rec.approvals.push(approval("omar", "engineering_lead"));
        let given = AuditEvent {
            actor: "omar",
            action: "approval.approved",
            detail: serde_json::json!({ "id": "exec-1" }),
        };
        let f = for_execution(&rec, &[given], "https://c.example");
        assert_eq!(f[0].action, Action::Acknowledge);
        assert!(
            f[0].summary.contains("approved by omar; it starts now"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn endings_map_to_what_an_on_call_engineer_expects() {
        let rec = record();
        let cases = [
            ("succeeded", EventKind::Succeeded, Action::Resolve),
            (
                "needs_operator{step: 3}",
                EventKind::NeedsOperator,
                Action::Trigger,
            ),
            ("rolled_back", EventKind::Ended, Action::Trigger),
            (
                "failed{needs_operator: false}",
                EventKind::Ended,
                Action::Trigger,
            ),
            ("cancelled", EventKind::Ended, Action::Resolve),
            ("rejected", EventKind::Ended, Action::Resolve),
            ("expired", EventKind::Ended, Action::Resolve),
        ];
        for (to, kind, action) in cases {
            let f = for_execution(&rec, &[transition(to)], "http://c");
            assert_eq!(f.len(), 1, "{to}");
            assert_eq!((f[0].kind, f[0].action), (kind, action), "{to}");
        }
        let unreadable = AuditEvent {
            actor: "niledr",
            action: "execution.record_unreadable",
            detail: serde_json::json!({ "id": "exec-1", "field": "plan" }),
        };
        let f = for_execution(&rec, &[unreadable], "http://c");
        assert_eq!(
            (f[0].kind, f[0].action),
            (EventKind::NeedsOperator, Action::Trigger)
        );
        // Transitions nobody is paged for, and unrelated audit entries, announce nothing.
        for to in [
            "approved",
            "running{step: 0}",
            "verifying",
            "rolling_back{step: 1}",
        ] {
            assert!(
                for_execution(&rec, &[transition(to)], "http://c").is_empty(),
                "{to}"
            );
        }
    }

    #[test]
    fn break_glass_is_loud_and_drill_verdicts_share_one_incident_per_drill() {
        let rec = record();
        let bg = AuditEvent {
            actor: "amira",
            action: "approval.break_glass",
            detail: serde_json::json!({ "id": "exec-1", "break_glass_reason": "nobody else reachable" }),
        };
        let f = for_execution(&rec, &[bg], "http://c");
        assert_eq!((f[0].action, f[0].severity), (Action::Trigger, "critical"));
        assert!(
            f[0].summary.contains(
                "BREAK-GLASS: amira approved regional-failover alone: nobody else reachable"
            ),
            "{}",
            f[0].summary
        );

        let mut run: DrillRunRecordV1 = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "run-1", "drill": "pg-primary-kill", "digest": "d", "trigger": "schedule",
            "requested_by": "niledr", "state": "finished", "phase": "done", "scheduled_for": null,
            "started_at": "t", "finished_at": "t", "execution": null, "cleanup_execution": null,
            "error": null, "verdict": "missed", "report": null, "notes": []
        }))
        .unwrap();
        let end = |a: &'static str| AuditEvent {
            actor: "niledr",
            action: a,
            detail: serde_json::json!({}),
        };
        assert!(for_drill_run(&run, &[end("drill.phase")], "http://c").is_empty());
        let f = for_drill_run(&run, &[end("drill.finished")], "http://c");
        assert_eq!(
            (f[0].kind, f[0].action, f[0].dedup_key.as_str()),
            (
                EventKind::DrillVerdict,
                Action::Trigger,
                "drill:pg-primary-kill"
            )
        );
        assert!(f[0].summary.contains("verdict: missed"));
        run.verdict = Some("met".into());
        let f = for_drill_run(&run, &[end("drill.finished")], "http://c");
        assert_eq!(
            (f[0].action, f[0].dedup_key.as_str()),
            (Action::Resolve, "drill:pg-primary-kill")
        );
    }

    /// A live drill run waiting for people pages like a proposal, under its own incident,
    /// until it is approved, rejected or expired.
    #[test]
    fn a_live_drill_run_waiting_for_approval_pages_until_decided() {
        let mut run: DrillRunRecordV1 = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "run-2", "drill": "pg-primary-kill", "digest": "d", "trigger": "on_demand",
            "requested_by": "khalid", "state": "awaiting_approval", "phase": "approval",
            "approval_deadline": "2026-12-01T20:00:00Z", "scheduled_for": null,
            "started_at": "t", "finished_at": null, "execution": null, "cleanup_execution": null,
            "error": null, "verdict": null, "report": null,
            "notes": [{"at": "t", "event": "approval", "detail": "amira approved; one more approver (engineering_lead)"}]
        }))
        .unwrap();
        let entry = |a: &'static str| AuditEvent {
            actor: "amira",
            action: a,
            detail: serde_json::json!({}),
        };
        let one = |run: &DrillRunRecordV1, a| {
            let f = for_drill_run(run, &[entry(a)], "http://c");
            assert_eq!(f.len(), 1, "{a}: {f:?}");
            assert_eq!(f[0].dedup_key, "drill-run:run-2");
            assert_eq!(f[0].link.as_deref(), Some("http://c/#/drills/runs/run-2"));
            f[0].clone()
        };
        let f = one(&run, "drill.requested");
        assert_eq!(
            (f.kind, f.action),
            (EventKind::ProposalWaiting, Action::Trigger)
        );
        assert!(
            f.summary
                .contains("live drill pg-primary-kill waits for approval"),
            "{}",
            f.summary
        );
        assert!(
            f.details
                .iter()
                .any(|d| d.contains("niledr drill approve pg-primary-kill --run run-2")),
            "{:?}",
            f.details
        );
        let f = one(&run, "drill.run_decision");
        assert_eq!(
            (f.kind, f.action),
            (EventKind::ApprovalGiven, Action::Trigger)
        );
        assert!(
            f.details[0].contains("one more approver (engineering_lead)"),
            "{:?}",
            f.details
        );
        run.state = "running".into();
        let f = one(&run, "drill.run_decision");
        assert_eq!(
            (f.kind, f.action),
            (EventKind::ApprovalGiven, Action::Resolve)
        );
        run.state = "rejected".into();
        assert_eq!(one(&run, "drill.run_decision").action, Action::Resolve);
        run.state = "expired".into();
        let f = one(&run, "drill.expired");
        assert_eq!((f.kind, f.action), (EventKind::Ended, Action::Resolve));
    }

    #[test]
    fn a_failed_step_is_announced_once_with_its_error() {
        let mut rec = record();
        rec.steps.push(crate::records::StepRecordV1 {
            id: "dns-cutover".into(),
            state: "failed".into(),
            attempts: 2,
            error: Some("TSIG authentication failed".into()),
            ..Default::default()
        });
        let outcome = AuditEvent {
            actor: "niledr",
            action: "step.outcome",
            detail: serde_json::json!({ "id": "exec-1", "step": "dns-cutover" }),
        };
        let f = for_execution(&rec, &[outcome], "http://c");
        assert_eq!(f[0].kind, EventKind::StepFailed);
        assert!(
            f[0].summary
                .contains("step dns-cutover of regional-failover failed (attempt 2)")
        );
        assert_eq!(f[0].details[0], "TSIG authentication failed");
        rec.steps[0].state = "succeeded".into();
        let outcome = AuditEvent {
            actor: "niledr",
            action: "step.outcome",
            detail: serde_json::json!({ "id": "exec-1", "step": "dns-cutover" }),
        };
        assert!(for_execution(&rec, &[outcome], "http://c").is_empty());
    }
}
