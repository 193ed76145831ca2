//! Approvals of one live drill run before its fault. A live drill's run request is recorded
//! as `awaiting_approval` and injects nothing; people approve (or reject) that run under the
//! same policy as standing approvals and executions of the drill's runbook (distinct people,
//! the requester never counts, one per required role, approvals expire). The approval that
//! completes the policy starts the run; a request nobody approves expires. A scheduled slot of
//! a live drill has nobody to ask and is skipped. At T0 the runner checks again that an
//! approval covers the digest (`authorised`), so no path injects a fault without one.

use std::sync::Arc;

use anyhow::Context;
use niledr_drills::{ApprovalMode, Drill};
use niledr_runbooks::{Approval, Decision, Status};
use niledr_web::ApiError;
use niledr_web::types::{DrillRunApprovalRequest, DrillRunView, PrincipalView};

use super::standing::describe_missing;
use super::{DrillService, internal, now_str, push_note, run_view};
use crate::records::{DrillRunRecordV1, RunApprovalV1};
use crate::store::AuditEvent;

const AWAITING: &str = "awaiting_approval";

fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

fn ms_of(at: &str) -> anyhow::Result<u64> {
    let t: jiff::Timestamp = at.parse().with_context(|| format!("timestamp {at:?}"))?;
    Ok(u64::try_from(t.as_millisecond()).unwrap_or(0))
}

/// `reject`, or else `approve` (the API admits only these two).
fn decision(word: &str) -> Decision {
    if word == "reject" {
        Decision::Reject
    } else {
        Decision::Approve
    }
}

/// The run's recorded decisions, as the approval policy sees them. A decision whose time does
/// not read back is an error, never "no approval".
fn approvals_of(rec: &DrillRunRecordV1) -> anyhow::Result<Vec<Approval>> {
    rec.approvals
        .iter()
        .map(|a| {
            Ok(Approval {
                user: a.user.clone(),
                roles: a.roles.clone(),
                decision: decision(&a.decision),
                comment: None,
                at_ms: ms_of(&a.at).with_context(|| format!("approval of run {}", rec.id))?,
                digest: a.digest.clone(),
                break_glass_reason: None,
            })
        })
        .collect()
}

fn who_approved(rec: &DrillRunRecordV1) -> String {
    let who: Vec<String> = rec
        .approvals
        .iter()
        .filter(|a| a.decision == "approve")
        .map(|a| format!("{} ({})", a.user, a.roles.join(", ")))
        .collect();
    who.join(", ")
}

impl DrillService {
    /// Why a scheduled slot of a live drill is skipped.
    pub(super) fn unattended_live(&self, drill: &Drill) -> String {
        let policy = self.run_policy(drill);
        let roles = if policy.roles.is_empty() {
            String::new()
        } else {
            format!(", one each: {}", policy.roles.join(", "))
        };
        format!(
            "live drill {name} injects its fault only after {n} people approve the run{roles}; a scheduled slot has nobody to ask, so nothing was injected. Run it on demand (niledr drill run {name}) and have the run approved, or set approval = \"standing\" and pre-approve the file",
            name = drill.name,
            n = policy.required
        )
    }

    /// Record a live drill's run request as awaiting approval (fsync'd with its audit entry)
    /// and answer with what it still needs. One request per drill at a time.
    pub(super) fn request_approval(
        &self,
        mut rec: DrillRunRecordV1,
        drill: &Drill,
    ) -> Result<DrillRunView, ApiError> {
        self.expire_stale();
        let waiting = self
            .store
            .drill_runs()
            .map_err(internal)?
            .into_iter()
            .find(|r| r.drill == drill.name && r.state == AWAITING);
        if let Some(w) = waiting {
            return Err(ApiError::Conflict(format!(
                "drill run {id} of {name} (requested by {by}) already awaits approval until {until}: approve that run (niledr drill approve {name} --run {id}) instead of requesting another",
                id = w.id,
                name = drill.name,
                by = w.requested_by,
                until = w.approval_deadline.as_deref().unwrap_or("its deadline"),
            )));
        }
        let policy = self.run_policy(drill);
        let deadline = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_millis(
                i64::try_from(policy.expires_after_ms).unwrap_or(i64::MAX / 2),
            ))
            .map_err(|e| ApiError::Internal(format!("approval deadline: {e}")))?;
        rec.state = AWAITING.into();
        rec.phase = "approval".into();
        rec.approval_deadline = Some(deadline.to_string());
        push_note(
            &mut rec,
            AWAITING,
            &format!(
                "nothing is injected until the run is approved; it expires unapproved at {deadline}"
            ),
        );
        self.store
            .save_drill_run(
                &rec,
                vec![AuditEvent {
                    actor: &rec.requested_by,
                    action: "drill.requested",
                    detail: serde_json::json!({ "run": rec.id, "drill": rec.drill, "digest": rec.digest, "deadline": rec.approval_deadline }),
                }],
            )
            .map_err(internal)?;
        tracing::info!(run = %rec.id, drill = %rec.drill, "live drill run awaits approval before its fault");
        self.publish(
            &rec.drill,
            "idle",
            AWAITING,
            &format!("drill run {} awaits approval", rec.id),
        );
        Ok(self.view_of(&rec))
    }

    /// `POST /api/v1/drills/{name}/runs/{id}/approvals`.
    pub fn approve_run(
        self: &Arc<Self>,
        who: &PrincipalView,
        name: &str,
        id: &str,
        req: &DrillRunApprovalRequest,
    ) -> Result<DrillRunView, ApiError> {
        let r = self.approve_run_inner(who, name, id, req);
        if let Err(e) = &r {
            let what = format!("{} drill run {id} of {name}", req.decision);
            self.audit_refusal(who, &what, e);
        }
        r
    }

    fn approve_run_inner(
        self: &Arc<Self>,
        who: &PrincipalView,
        name: &str,
        id: &str,
        req: &DrillRunApprovalRequest,
    ) -> Result<DrillRunView, ApiError> {
        crate::engine::require(who, crate::engine::Need::Approver, "approve drill runs")?;
        let drill = self.checked(name)?;
        // Decisions on runs and starts are serialized: two approvals cannot both start it.
        let guard = self.lock_runs()?;
        let mut rec = self.awaiting_run(name, id)?;
        check_digests(req, &rec, &drill)?;
        let at = jiff::Timestamp::now();
        let now = u64::try_from(at.as_millisecond()).unwrap_or(0);
        let (new, entry) = decision_of(who, req, at);
        let existing = read_approvals(&rec)?;
        let status = niledr_runbooks::add_approval(
            &self.run_policy(&drill),
            &rec.requested_by,
            &existing,
            new,
            &rec.digest,
            now,
        )
        .map_err(crate::engine::approval_error)?;
        if matches!(status, Status::Approved { .. }) {
            // Refused before it is recorded: the approver approves again once it can start.
            self.check_startable(guard.as_deref(), &drill).map_err(|e| {
                ApiError::Conflict(format!(
                    "your approval would start run {id}, which cannot start now: {}; approve again once that is resolved",
                    e.message()
                ))
            })?;
        }
        rec.approvals.push(entry);
        let decided = AuditEvent {
            actor: &who.name,
            action: "drill.run_decision",
            detail: serde_json::json!({ "run": id, "drill": name, "digest": rec.digest, "decision": req.decision, "comment": req.comment }),
        };
        tracing::info!(run = %id, drill = %name, user = %who.name, decision = %req.decision, "decision on live drill run");
        match status {
            Status::Approved { .. } => {
                let by = who_approved(&rec);
                push_note(
                    &mut rec,
                    "approved",
                    &format!("approved before the fault by {by}"),
                );
                self.launch(guard, rec, drill, vec![decided])
            }
            Status::Rejected { by, .. } => {
                let why = format!("rejected by {by} before the fault: {}", req.comment);
                self.close(&mut rec, "rejected", &why, decided)
            }
            pending @ Status::Pending { .. } => {
                let needs = describe_missing(&read_approvals(&rec)?, &pending);
                push_note(
                    &mut rec,
                    "approval",
                    &format!("{} approved; {needs}", who.name),
                );
                self.store
                    .save_drill_run(&rec, vec![decided])
                    .map_err(internal)?;
                Ok(self.view_of(&rec))
            }
        }
    }

    /// Run `id` of drill `name` while it awaits approval (one past its deadline is expired
    /// first and refused).
    fn awaiting_run(&self, name: &str, id: &str) -> Result<DrillRunRecordV1, ApiError> {
        let mut rec = self
            .store
            .drill_run(id)
            .map_err(internal)?
            .filter(|r| r.drill == name)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "drill {name} has no run {id:?} (its runs: GET /api/v1/drill-runs?drill={name})"
                ))
            })?;
        if rec.state == AWAITING && self.past_deadline(&rec) {
            self.expire(&mut rec);
        }
        if rec.state != AWAITING {
            return Err(ApiError::Conflict(format!(
                "drill run {id} is {}: only a run awaiting approval takes decisions{}",
                rec.state,
                if matches!(rec.state.as_str(), "expired" | "rejected") {
                    format!("; request a new run (niledr drill run {name})")
                } else {
                    String::new()
                }
            )));
        }
        Ok(rec)
    }

    fn past_deadline(&self, rec: &DrillRunRecordV1) -> bool {
        match rec.approval_deadline.as_deref().map(ms_of) {
            Some(Ok(deadline)) => now_ms() >= deadline,
            // An unreadable deadline must not keep a request open forever.
            Some(Err(e)) => {
                tracing::error!(run = %rec.id, "unreadable approval deadline: {e:#}");
                true
            }
            None => false,
        }
    }

    fn expire(&self, rec: &mut DrillRunRecordV1) {
        let why = format!(
            "not approved by {}: nothing was injected",
            rec.approval_deadline.as_deref().unwrap_or("its deadline")
        );
        let entry = AuditEvent {
            actor: "niledr",
            action: "drill.expired",
            detail: serde_json::json!({ "run": rec.id, "drill": rec.drill }),
        };
        if let Err(e) = self.close(rec, "expired", &why, entry) {
            tracing::error!(run = %rec.id, "cannot record the expiry: {}", e.message());
        }
    }

    /// End a run that never started (`rejected`, `expired`), durably with its audit entry.
    fn close(
        &self,
        rec: &mut DrillRunRecordV1,
        state: &str,
        why: &str,
        entry: AuditEvent<'_>,
    ) -> Result<DrillRunView, ApiError> {
        rec.state = state.into();
        rec.phase = "done".into();
        rec.error = Some(why.to_string());
        rec.finished_at = Some(now_str());
        push_note(rec, state, why);
        self.store
            .save_drill_run(rec, vec![entry])
            .map_err(internal)?;
        tracing::info!(run = %rec.id, drill = %rec.drill, "drill run {state}: {why}");
        self.publish(
            &rec.drill,
            AWAITING,
            state,
            &format!("drill run {}: {why}", rec.id),
        );
        Ok(self.view_of(rec))
    }

    /// Expire every request whose deadline passed (at start, and from the scheduler).
    pub fn expire_awaiting(&self) {
        match self.lock_runs() {
            Ok(_guard) => self.expire_stale(),
            Err(e) => tracing::error!("cannot expire drill run requests: {}", e.message()),
        }
    }

    /// `expire_awaiting` for a caller that holds the drill lock.
    fn expire_stale(&self) {
        let runs = match self.store.drill_runs() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read drill runs to expire requests: {e:#}");
                return;
            }
        };
        for mut rec in runs {
            if rec.state == AWAITING && self.past_deadline(&rec) {
                self.expire(&mut rec);
            }
        }
    }

    /// At T0: the approval that covers this run's digest, or why there is none.
    pub(super) fn authorised(
        &self,
        drill: &Drill,
        rec: &DrillRunRecordV1,
    ) -> Result<String, String> {
        if rec.digest != drill.digest {
            return Err(format!(
                "the run is for digest {} but the drill is {}",
                rec.digest, drill.digest
            ));
        }
        if drill.approval == ApprovalMode::Standing {
            let (ok, needs) = self.standing_status(drill);
            return if ok {
                Ok(format!("standing approval of digest {}", drill.digest))
            } else {
                Err(needs)
            };
        }
        let approvals = approvals_of(rec).map_err(|e| format!("{e:#}"))?;
        match niledr_runbooks::approval::status(
            &self.run_policy(drill),
            &approvals,
            &rec.digest,
            now_ms(),
        ) {
            Status::Approved { .. } => Ok(format!("run approved by {}", who_approved(rec))),
            other => Err(describe_missing(&approvals, &other)),
        }
    }

    /// The run as the API shows it; a run awaiting approval says what it still needs.
    pub(super) fn view_of(&self, rec: &DrillRunRecordV1) -> DrillRunView {
        let mut v = run_view(rec);
        if rec.state != AWAITING {
            return v;
        }
        let Some(loaded) = self.drills.get(&rec.drill) else {
            return v;
        };
        let needed = match approvals_of(rec) {
            Ok(approvals) => {
                let policy = self.run_policy(&loaded.drill);
                let status =
                    niledr_runbooks::approval::status(&policy, &approvals, &rec.digest, now_ms());
                describe_missing(&approvals, &status)
            }
            Err(e) => format!("the run's approvals do not read back: {e:#}"),
        };
        v.approval_needed = Some(format!(
            "{needed}; approve with `niledr drill approve {d} --run {id}` (POST /api/v1/drills/{d}/runs/{id}/approvals with the run's digest)",
            d = rec.drill,
            id = rec.id
        ));
        v
    }
}

/// A person's decision, as the policy sees it and as it is recorded.
fn decision_of(
    who: &PrincipalView,
    req: &DrillRunApprovalRequest,
    at: jiff::Timestamp,
) -> (Approval, RunApprovalV1) {
    let policy_view = Approval {
        user: who.name.clone(),
        roles: who.tags.clone(),
        decision: decision(&req.decision),
        comment: None,
        at_ms: u64::try_from(at.as_millisecond()).unwrap_or(0),
        digest: req.digest.clone(),
        break_glass_reason: None,
    };
    let record = RunApprovalV1 {
        user: who.name.clone(),
        roles: who.tags.clone(),
        decision: req.decision.clone(),
        digest: req.digest.clone(),
        at: at.to_string(),
        comment: req.comment.clone(),
    };
    (policy_view, record)
}

fn read_approvals(rec: &DrillRunRecordV1) -> Result<Vec<Approval>, ApiError> {
    approvals_of(rec).map_err(|e| internal(e.context("reading the run's approvals")))
}

/// The approver read the run's digest, and the drill as loaded still has it.
fn check_digests(
    req: &DrillRunApprovalRequest,
    rec: &DrillRunRecordV1,
    drill: &Drill,
) -> Result<(), ApiError> {
    let id = &rec.id;
    if req.digest != rec.digest {
        return Err(ApiError::Conflict(format!(
            "you approved digest {} but run {id} is for digest {}: read the run again (GET /api/v1/drill-runs/{id}) and approve what is there",
            req.digest, rec.digest
        )));
    }
    if rec.digest != drill.digest {
        return Err(ApiError::Conflict(format!(
            "drill {} is now digest {} but run {id} was requested for {}: request a new run",
            drill.name, drill.digest, rec.digest
        )));
    }
    Ok(())
}
