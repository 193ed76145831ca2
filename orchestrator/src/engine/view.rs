//! Execution records → the API's wire views.

use niledr_web::types::{ApprovalView, ExecutionView, StepView, TimelineView};

use crate::records::ExecutionRecordV1;

/// The record as the API shows it, redacted (the record keeps what approvers approved).
pub fn execution_view(r: &ExecutionRecordV1) -> ExecutionView {
    crate::redact::view(&raw_view(r))
}

fn raw_view(r: &ExecutionRecordV1) -> ExecutionView {
    ExecutionView {
        id: r.id.clone(),
        runbook: r.runbook.clone(),
        reason: r.reason.clone(),
        state: r.state.clone(),
        requester: r.requester.clone(),
        created_at: r.created_at.clone(),
        plan_digest: r.plan_digest.clone(),
        approvals: r
            .approvals
            .iter()
            // `resume` and `approve` refuse an execution whose approvals do not decode.
            .filter_map(|a| crate::records::ApprovalV1::decode(a).ok())
            .map(|a| ApprovalView {
                user: a.user,
                tags: a.roles,
                decision: match a.decision {
                    niledr_runbooks::Decision::Approve => "approve".into(),
                    niledr_runbooks::Decision::Reject => "reject".into(),
                },
                comment: a.comment.unwrap_or_default(),
                at: jiff::Timestamp::from_millisecond(a.at_ms as i64)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                break_glass_reason: a.break_glass_reason,
            })
            .collect(),
        steps: r
            .steps
            .iter()
            .map(|s| StepView {
                id: s.id.clone(),
                kind: s.kind.clone(),
                state: s.state.clone(),
                attempts: s.attempts,
                started_at: s.intent_at.clone(),
                ended_at: s.outcome_at.clone(),
                duration_ms: s.duration_ms,
                detail: s.detail.clone(),
                error: s.error.clone(),
                rollback: s.rollback_detail.clone(),
                overhead_ms: s.overhead_ms,
            })
            .collect(),
        timeline: r
            .timeline
            .iter()
            .map(|t| TimelineView {
                at: t.at.clone(),
                event: t.event.clone(),
                detail: t.detail.clone(),
            })
            .collect(),
        needs_operator: r.needs_operator.clone(),
        revision: r.revision,
        plan: crate::api::plan::stored_plan_view(&r.plan, &r.runbook, &r.plan_digest),
    }
}
