//! Approval policy: who may approve a plan, how many, which roles, for how long, and
//! break-glass. Pure functions over the recorded approvals; time is `now_ms` (unix millis).

use serde::{Deserialize, Serialize};

/// How much the preconditions may move between approval and start before the approvals are void.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Extra standby lag allowed on top of the lag the approvers saw.
    pub lag_bytes: u64,
    pub lag_seconds: u64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            lag_bytes: 16 * 1024 * 1024,
            lag_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Distinct approvers needed (never the requester). At least `roles.len()`.
    pub required: u32,
    /// Roles that must each be covered by a different approver (may be empty).
    pub roles: Vec<String>,
    pub expires_after_ms: u64,
    /// A single approver with a written reason may approve alone.
    pub break_glass: bool,
    /// A trigger's proposal runs without people.
    pub auto_approve: bool,
    pub tolerance: Tolerance,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            required: 2,
            roles: Vec::new(),
            expires_after_ms: 30 * 60 * 1000,
            break_glass: false,
            auto_approve: false,
            tolerance: Tolerance::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub user: String,
    /// The approver's role tags from the users file.
    pub roles: Vec<String>,
    pub decision: Decision,
    pub comment: Option<String>,
    pub at_ms: u64,
    /// The plan digest this decision is about.
    pub digest: String,
    /// `Some` asks for break-glass; the text is the written reason.
    pub break_glass_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    Pending {
        missing_roles: Vec<String>,
        have: u32,
        need: u32,
    },
    Approved {
        by: Vec<String>,
        break_glass: bool,
    },
    Rejected {
        by: String,
        comment: Option<String>,
    },
}

/// Why an approval was refused. Suggested HTTP status in each variant's doc.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum ApprovalError {
    /// 403
    #[error("the requester of an execution cannot approve or reject it; ask someone else")]
    RequesterCannotApprove,
    /// 409
    #[error("{user} already decided on this plan")]
    AlreadyDecided { user: String },
    /// 403
    #[error("{user} holds none of the roles this runbook still needs ({missing})", missing = missing.join(", "))]
    WrongRole { user: String, missing: Vec<String> },
    /// 403
    #[error("the roles {user} holds are already covered; still needed: {missing}", missing = if missing.is_empty() { "nothing".to_string() } else { missing.join(", ") })]
    RoleAlreadyCovered { user: String, missing: Vec<String> },
    /// 409
    #[error(
        "this approval is for plan {approved}, but the plan is now {current}; read the new plan and approve it"
    )]
    DigestMismatch { approved: String, current: String },
    /// 403
    #[error("this runbook does not allow break-glass approval")]
    BreakGlassNotAllowed,
    /// 400
    #[error("break-glass needs a written reason")]
    BreakGlassNeedsReason,
    /// 409
    #[error("the execution was already rejected by {by}")]
    AlreadyRejected { by: String },
}

impl ApprovalError {
    /// The HTTP status the API layer should answer with.
    pub fn suggested_http_status(&self) -> u16 {
        match self {
            ApprovalError::RequesterCannotApprove
            | ApprovalError::WrongRole { .. }
            | ApprovalError::RoleAlreadyCovered { .. }
            | ApprovalError::BreakGlassNotAllowed => 403,
            ApprovalError::AlreadyDecided { .. }
            | ApprovalError::DigestMismatch { .. }
            | ApprovalError::AlreadyRejected { .. } => 409,
            ApprovalError::BreakGlassNeedsReason => 400,
        }
    }
}

impl Approval {
    /// Counts now: for the current plan and not expired.
    fn is_live(&self, policy: &ApprovalPolicy, current_digest: &str, now_ms: u64) -> bool {
        self.digest == current_digest && now_ms < self.at_ms.saturating_add(policy.expires_after_ms)
    }

    fn break_glass_reason(&self) -> Option<&str> {
        self.break_glass_reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
    }
}

/// Record `new` if the policy allows it and return the resulting status.
pub fn add_approval(
    policy: &ApprovalPolicy,
    requester: &str,
    existing: &[Approval],
    new: Approval,
    current_digest: &str,
    now_ms: u64,
) -> Result<Status, ApprovalError> {
    if new.user == requester {
        return Err(ApprovalError::RequesterCannotApprove);
    }
    if new.digest != current_digest {
        return Err(ApprovalError::DigestMismatch {
            approved: new.digest,
            current: current_digest.to_string(),
        });
    }
    let before = status(policy, existing, current_digest, now_ms);
    if let Status::Rejected { by, .. } = &before {
        return Err(ApprovalError::AlreadyRejected { by: by.clone() });
    }
    if existing
        .iter()
        .any(|a| a.user == new.user && a.is_live(policy, current_digest, now_ms))
    {
        return Err(ApprovalError::AlreadyDecided { user: new.user });
    }
    if new.decision == Decision::Approve {
        if let Some(reason) = &new.break_glass_reason {
            if !policy.break_glass {
                return Err(ApprovalError::BreakGlassNotAllowed);
            }
            if reason.trim().is_empty() {
                return Err(ApprovalError::BreakGlassNeedsReason);
            }
        } else if !policy.roles.is_empty() {
            let old = tally(policy, existing, current_digest, now_ms);
            let mut with_new = existing.to_vec();
            with_new.push(new.clone());
            let grown = tally(policy, &with_new, current_digest, now_ms);
            if grown.score <= old.score {
                let holds_policy_role = new.roles.iter().any(|r| policy.roles.contains(r));
                return Err(if holds_policy_role {
                    ApprovalError::RoleAlreadyCovered {
                        user: new.user,
                        missing: old.missing_roles,
                    }
                } else {
                    ApprovalError::WrongRole {
                        user: new.user,
                        missing: old.missing_roles,
                    }
                });
            }
        }
    }
    let mut all = existing.to_vec();
    all.push(new);
    Ok(status(policy, &all, current_digest, now_ms))
}

/// Where the decision stands. Expired approvals and approvals for another digest do not
/// count; a single rejection (of any plan version) ends it.
pub fn status(
    policy: &ApprovalPolicy,
    approvals: &[Approval],
    current_digest: &str,
    now_ms: u64,
) -> Status {
    if let Some(r) = approvals.iter().find(|a| a.decision == Decision::Reject) {
        return Status::Rejected {
            by: r.user.clone(),
            comment: r.comment.clone(),
        };
    }
    if policy.break_glass
        && let Some(a) = approvals.iter().find(|a| {
            a.decision == Decision::Approve
                && a.break_glass_reason().is_some()
                && a.is_live(policy, current_digest, now_ms)
        })
    {
        return Status::Approved {
            by: vec![a.user.clone()],
            break_glass: true,
        };
    }
    let t = tally(policy, approvals, current_digest, now_ms);
    if t.missing_roles.is_empty() && t.score >= t.need {
        Status::Approved {
            by: t.counted,
            break_glass: false,
        }
    } else {
        Status::Pending {
            missing_roles: t.missing_roles,
            have: t.score,
            need: t.need,
        }
    }
}

/// When the earliest approval that counts now expires (the orchestrator schedules `Expire`
/// or a re-check then). `None` when nothing counts.
pub fn expires_at(
    policy: &ApprovalPolicy,
    approvals: &[Approval],
    current_digest: &str,
    now_ms: u64,
) -> Option<u64> {
    approvals
        .iter()
        .filter(|a| a.decision == Decision::Approve && a.is_live(policy, current_digest, now_ms))
        .map(|a| a.at_ms.saturating_add(policy.expires_after_ms))
        .min()
}

struct Tally {
    /// Approvers that count towards `need`, in the order they approved.
    counted: Vec<String>,
    score: u32,
    need: u32,
    missing_roles: Vec<String>,
}

/// Assign approvers to roles (one person per role, best matching) and count the rest
/// against the remaining generic slots.
fn tally(policy: &ApprovalPolicy, approvals: &[Approval], digest: &str, now_ms: u64) -> Tally {
    let mut approvers: Vec<&Approval> = Vec::new();
    for a in approvals.iter().filter(|a| {
        a.decision == Decision::Approve
            && a.break_glass_reason.is_none()
            && a.is_live(policy, digest, now_ms)
    }) {
        if !approvers.iter().any(|b| b.user == a.user) {
            approvers.push(a);
        }
    }
    let roles = &policy.roles;
    let role_count = u32::try_from(roles.len()).unwrap_or(u32::MAX);
    let need = policy.required.max(role_count);
    // role index -> approver index
    let mut owner: Vec<Option<usize>> = vec![None; roles.len()];
    for who in 0..approvers.len() {
        let mut seen = vec![false; roles.len()];
        augment(who, &approvers, roles, &mut owner, &mut seen);
    }
    let matched: Vec<usize> = owner.iter().flatten().copied().collect();
    let missing_roles: Vec<String> = roles
        .iter()
        .zip(&owner)
        .filter(|(_, o)| o.is_none())
        .map(|(r, _)| r.clone())
        .collect();
    let generic_slots = (need - role_count) as usize;
    let mut counted = Vec::new();
    let mut generic = 0;
    for (i, a) in approvers.iter().enumerate() {
        if matched.contains(&i) {
            counted.push(a.user.clone());
        } else if generic < generic_slots {
            generic += 1;
            counted.push(a.user.clone());
        }
    }
    Tally {
        score: u32::try_from(counted.len()).unwrap_or(u32::MAX),
        counted,
        need,
        missing_roles,
    }
}

/// Kuhn's augmenting path: try to give approver `who` a role, moving others if needed.
fn augment(
    who: usize,
    approvers: &[&Approval],
    roles: &[String],
    owner: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    for (r, role) in roles.iter().enumerate() {
        if seen[r] || !approvers[who].roles.contains(role) {
            continue;
        }
        seen[r] = true;
        let free = match owner[r] {
            None => true,
            Some(other) => augment(other, approvers, roles, owner, seen),
        };
        if free {
            owner[r] = Some(who);
            return true;
        }
    }
    false
}
