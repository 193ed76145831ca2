//! Standing pre-approvals: people approve a drill file (its digest) ahead of time, under the
//! same rules as approving an execution of the drill's runbook (distinct people, the requester
//! never counts, one per required role). A changed file has a new digest and needs new
//! approvals. When the drill runs, these approvals are applied to its execution. The policy
//! and the description of what is missing are shared with run approvals (`run_approval`).

use niledr_drills::Drill;
use niledr_runbooks::{Approval, ApprovalPolicy, Decision, Status};
use niledr_web::ApiError;
use niledr_web::types::{DrillApprovalRequest, DrillView, PrincipalView, StandingApprovalView};

use super::{DrillService, internal, now_str};
use crate::engine::StandingApproval;
use crate::records::{SCHEMA_VERSION, StandingApprovalV1};
use crate::store::AuditEvent;

/// The pseudo-requester of a drill (never one of its approvers).
fn requester(drill: &str) -> String {
    crate::engine::drill_principal(drill).name
}

impl DrillService {
    /// The drill's runbook's approval policy (distinct people, one per required role, expiry),
    /// without break-glass: a drill is never an emergency. Run approvals use it as it is.
    pub(super) fn run_policy(&self, drill: &Drill) -> ApprovalPolicy {
        let mut p = self
            .policies
            .get(&drill.runbook)
            .cloned()
            .unwrap_or_default();
        p.break_glass = false;
        p
    }

    fn policy(&self, drill: &Drill) -> ApprovalPolicy {
        let mut p = self.run_policy(drill);
        // A standing approval lasts as long as the file is unchanged.
        p.expires_after_ms = u64::MAX / 4;
        p
    }

    /// Current-digest approvals, as the approval policy sees them.
    fn current(&self, drill: &Drill) -> Vec<StandingApprovalV1> {
        self.store
            .standing_approvals(&drill.name)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.digest == drill.digest)
            .collect()
    }

    /// Whether the current digest has enough approvals, and if not what is missing.
    pub(super) fn standing_status(&self, drill: &Drill) -> (bool, String) {
        let policy = self.policy(drill);
        let approvals: Vec<Approval> = self
            .current(drill)
            .iter()
            .map(|a| as_approval(a, &drill.digest))
            .collect();
        match niledr_runbooks::approval::status(&policy, &approvals, &drill.digest, 0) {
            Status::Approved { .. } => (true, String::new()),
            other => (false, describe_missing(&approvals, &other)),
        }
    }

    pub(super) fn standing_into_view(&self, drill: &Drill, v: &mut DrillView) {
        v.standing_approvals = self
            .store
            .standing_approvals(&drill.name)
            .unwrap_or_default()
            .into_iter()
            .map(|a| StandingApprovalView {
                current: a.digest == drill.digest,
                user: a.user,
                roles: a.roles,
                digest: a.digest,
                at: a.at,
                comment: a.comment,
            })
            .collect();
        if drill.approval == niledr_drills::ApprovalMode::Standing {
            let (ok, needs) = self.standing_status(drill);
            v.standing_approved = ok;
            v.standing_needs = (!ok).then_some(needs);
        }
    }

    /// `POST /api/v1/drills/{name}/approvals`.
    pub fn approve(
        &self,
        who: &PrincipalView,
        name: &str,
        req: &DrillApprovalRequest,
    ) -> Result<DrillView, ApiError> {
        let r = self.approve_inner(who, name, req);
        if let Err(e) = &r {
            self.audit_refusal(who, &format!("approve drill {name}"), e);
        }
        r
    }

    fn approve_inner(
        &self,
        who: &PrincipalView,
        name: &str,
        req: &DrillApprovalRequest,
    ) -> Result<DrillView, ApiError> {
        crate::engine::require(who, crate::engine::Need::Approver, "approve drills")?;
        let loaded = self.drills.get(name).ok_or_else(|| self.unknown(name))?;
        let drill = super::catalog::reload(loaded, &self.catalog).map_err(|e| {
            ApiError::Conflict(format!("the drill file no longer validates: {e:#}"))
        })?;
        if req.digest != drill.digest {
            return Err(ApiError::Conflict(format!(
                "you approved digest {} but the drill file is now {}: read it again (GET /api/v1/drills/{name}) and approve what is there",
                req.digest, drill.digest
            )));
        }
        let policy = self.policy(&drill);
        let existing: Vec<Approval> = self
            .current(&drill)
            .iter()
            .map(|a| as_approval(a, &drill.digest))
            .collect();
        let new = Approval {
            user: who.name.clone(),
            roles: who.tags.clone(),
            decision: Decision::Approve,
            comment: Some(req.comment.clone()).filter(|c| !c.is_empty()),
            at_ms: 0,
            digest: drill.digest.clone(),
            break_glass_reason: None,
        };
        niledr_runbooks::add_approval(&policy, &requester(name), &existing, new, &drill.digest, 0)
            .map_err(crate::engine::approval_error)?;
        let mut all = self.store.standing_approvals(name).map_err(internal)?;
        // Approvals of older digests are kept for the record; they no longer count.
        all.push(StandingApprovalV1 {
            v: SCHEMA_VERSION,
            drill: name.to_string(),
            user: who.name.clone(),
            roles: who.tags.clone(),
            digest: drill.digest.clone(),
            at: now_str(),
            comment: req.comment.clone(),
        });
        self.store
            .save_standing_approvals(
                name,
                &all,
                vec![AuditEvent {
                    actor: &who.name,
                    action: "drill.standing_approval",
                    detail: serde_json::json!({ "drill": name, "digest": drill.digest, "comment": req.comment }),
                }],
            )
            .map_err(internal)?;
        tracing::info!(drill = %name, user = %who.name, "standing approval of drill recorded");
        self.view(name)
    }

    /// The approvals to apply to a standing drill's executions.
    pub(super) fn standing_for_run(&self, drill: &Drill) -> Vec<StandingApproval> {
        self.current(drill)
            .into_iter()
            .map(|a| StandingApproval {
                comment: format!(
                    "standing approval of drill {} ({}) given {}{}",
                    drill.name,
                    drill.digest,
                    a.at,
                    if a.comment.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", a.comment)
                    }
                ),
                user: a.user,
                roles: a.roles,
            })
            .collect()
    }
}

fn as_approval(a: &StandingApprovalV1, digest: &str) -> Approval {
    Approval {
        user: a.user.clone(),
        roles: a.roles.clone(),
        decision: Decision::Approve,
        comment: None,
        at_ms: 0,
        digest: digest.to_string(),
        break_glass_reason: None,
    }
}

/// What a pending decision still needs, and who approved so far.
pub(super) fn describe_missing(approvals: &[Approval], status: &Status) -> String {
    let who: Vec<String> = approvals
        .iter()
        .map(|a| format!("{} ({})", a.user, a.roles.join(", ")))
        .collect();
    let so_far = if who.is_empty() {
        "nobody has approved yet".to_string()
    } else {
        format!("approved so far by {}", who.join("; "))
    };
    match status {
        Status::Pending {
            missing_roles,
            have,
            need,
        } => {
            let roles = if missing_roles.is_empty() {
                String::new()
            } else {
                format!(", still missing: {}", missing_roles.join(", "))
            };
            format!("{have} of {need} approvals{roles}; {so_far}")
        }
        Status::Rejected { by, .. } => format!("rejected by {by}"),
        Status::Approved { .. } => String::new(),
    }
}
