//! API commands against executions: who may do what, and how each becomes a journaled event.

use niledr_runbooks::{
    Action, Approval, ApprovalError, Decision, Event as MEvent, Machine, State, Status,
};
use niledr_web::types::{ExecutionView, PrincipalView};
use niledr_web::{ApiError, Command};

use super::{Engine, Live, execution_view, parse_file};

#[derive(PartialEq, PartialOrd)]
pub(crate) enum Need {
    Operator,
    Approver,
}

pub(crate) fn require(who: &PrincipalView, need: Need, what: &str) -> Result<(), ApiError> {
    let rank = match who.role.as_str() {
        "admin" => 3,
        "approver" => 2,
        "operator" => 1,
        _ => 0,
    };
    let (min, name) = match need {
        Need::Operator => (1, "operator"),
        Need::Approver => (2, "approver"),
    };
    if rank >= min {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{} has role {}, which cannot {what}; it needs {name} or above",
            who.name, who.role
        )))
    }
}

/// A refused approval as the API answers it (403, 400 or 409, with the policy's message).
pub(crate) fn approval_error(e: ApprovalError) -> ApiError {
    let msg = e.to_string();
    match e.suggested_http_status() {
        403 => ApiError::Forbidden(msg),
        400 => ApiError::BadRequest(msg),
        _ => ApiError::Conflict(msg),
    }
}

impl Engine {
    pub(super) fn command(
        &mut self,
        who: &PrincipalView,
        command: Command,
    ) -> Result<ExecutionView, ApiError> {
        let what = format!("{command:?}");
        let r = self.command_inner(who, command);
        if let Err(e) = &r {
            // Refused requests are audited too: who tried what, and why it was refused.
            let entry = crate::store::AuditEvent {
                actor: &who.name,
                action: "request.refused",
                detail: serde_json::json!({ "request": what, "refused": format!("{e:?}") }),
            };
            if let Err(err) = self.store.append_audit(vec![entry]) {
                tracing::error!("audit of a refused request failed: {err:#}");
            }
        }
        r
    }

    fn command_inner(
        &mut self,
        who: &PrincipalView,
        command: Command,
    ) -> Result<ExecutionView, ApiError> {
        let id = match command {
            Command::Create(req) => self.create(who, &req.runbook, &req.reason)?,
            Command::Approve { id, request } => {
                require(who, Need::Approver, "approve or reject executions")?;
                self.approve(who, &id, request)?;
                id
            }
            Command::Cancel { id, request } => {
                require(who, Need::Operator, "cancel executions")?;
                self.control(who, &id, MEvent::Cancel, "cancel", &request.comment)?;
                id
            }
            Command::Pause { id, request } => {
                require(who, Need::Operator, "pause executions")?;
                self.control(who, &id, MEvent::Pause, "pause", &request.comment)?;
                id
            }
            Command::Resume { id, request } => {
                require(who, Need::Operator, "resume executions")?;
                self.control(who, &id, MEvent::Resume, "resume", &request.comment)?;
                id
            }
            Command::Confirm { id, request } => {
                require(who, Need::Operator, "confirm manual steps")?;
                self.confirm(who, &id, &request.step, &request.comment)?;
                id
            }
            Command::Retry { id, request } => {
                require(who, Need::Operator, "retry steps")?;
                self.retry(who, &id, &request.step, &request.comment)?;
                id
            }
        };
        let rec = match self.live.get(&id) {
            Some(l) => l.record.clone(),
            None => self
                .store
                .execution(&id)
                .map_err(|e| ApiError::Internal(format!("{e:#}")))?
                .ok_or_else(|| ApiError::NotFound(format!("no execution {id}")))?,
        };
        Ok(execution_view(&rec))
    }

    pub(super) fn create(
        &mut self,
        who: &PrincipalView,
        name: &str,
        reason: &str,
    ) -> Result<String, ApiError> {
        require(who, Need::Operator, "start executions")?;
        if reason.trim().is_empty() {
            return Err(ApiError::BadRequest(
                "reason is empty: say why this runbook should run".into(),
            ));
        }
        let Some(loaded) = self.runbooks.get(name) else {
            let known: Vec<&str> = self.runbooks.keys().map(String::as_str).collect();
            return Err(ApiError::NotFound(format!(
                "no runbook {name:?}; known runbooks: {}",
                known.join(", ")
            )));
        };
        let runbook = parse_file(&loaded.file, &self.catalog).map_err(|e| {
            ApiError::Conflict(format!("the runbook file no longer validates: {e:#}"))
        })?;
        // One execution per service at a time.
        for (other_id, l) in &self.live {
            if let Some(s) = runbook
                .services
                .iter()
                .find(|s| l.runbook.services.contains(s))
            {
                return Err(ApiError::Conflict(format!(
                    "service {s} is locked by execution {other_id} ({}, {}); wait for it to end or cancel it",
                    l.runbook.name,
                    l.machine.state().name()
                )));
            }
        }
        let world = self.world();
        let plan = niledr_runbooks::plan(&runbook, &world);
        let pre = niledr_runbooks::preconditions(&runbook, &world);
        let id = uuid::Uuid::now_v7().to_string();
        let machine = Machine::new(&runbook);
        let record = self
            .new_record(super::NewRecord {
                id: &id,
                who,
                runbook: &runbook,
                reason,
                plan: &plan,
                pre: &pre,
                machine: &machine,
            })
            .map_err(|e| ApiError::Internal(format!("the new execution record: {e}")))?;
        // Journal the proposal, then submit it for approval.
        self.live.insert(
            id.clone(),
            Live {
                machine,
                record,
                runbook,
            },
        );
        self.note(
            &id,
            "proposed",
            &format!("{} by {}: {reason}", name, who.name),
        );
        self.apply_as(
            &id,
            &who.name,
            MEvent::Submit {
                digest: plan.digest.clone(),
            },
        )?;
        let auto = self
            .live
            .get(&id)
            .is_some_and(|l| l.runbook.approval.auto_approve);
        if auto && who.name == super::triggers::TRIGGER {
            self.note(
                &id,
                "auto_approved",
                "the runbook allows automatic approval of trigger proposals",
            );
            self.apply(&id, MEvent::Approved)?;
            self.start_approved(&id)?;
        }
        Ok(id)
    }

    pub(super) fn approve(
        &mut self,
        who: &PrincipalView,
        id: &str,
        req: niledr_web::types::ApprovalRequest,
    ) -> Result<(), ApiError> {
        let decision = match req.decision.as_str() {
            "approve" => Decision::Approve,
            "reject" => Decision::Reject,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "decision must be \"approve\" or \"reject\", got {other:?}"
                )));
            }
        };
        let live = self.live.get(id).ok_or_else(|| self.not_live(id))?;
        if !matches!(live.machine.state(), State::AwaitingApproval {}) {
            return Err(ApiError::Conflict(format!(
                "execution {id} is {}, not awaiting approval",
                live.machine.state().name()
            )));
        }
        // The plan is recomputed from the runbook file as it is now: an edited runbook means a
        // new digest, and approvals of the old plan stop counting.
        let file = self
            .runbooks
            .get(&live.record.runbook)
            .map(|l| l.file.clone());
        if let Some(file) = file {
            let fresh = parse_file(&file, &self.catalog).map_err(|e| {
                ApiError::Conflict(format!("the runbook file no longer validates: {e:#}"))
            })?;
            let plan = niledr_runbooks::plan(&fresh, &self.world());
            let changed = self
                .live
                .get(id)
                .is_some_and(|l| l.record.plan_digest != plan.digest);
            if changed {
                if let Some(l) = self.live.get_mut(id) {
                    l.record.plan_digest = plan.digest.clone();
                    l.record.plan = serde_json::to_value(&plan)
                        .map_err(|e| ApiError::Internal(format!("plan does not serialise: {e}")))?;
                    l.runbook = fresh;
                }
                self.note(
                    id,
                    "plan_changed",
                    "the runbook changed: earlier approvals are void",
                );
                self.apply(
                    id,
                    MEvent::Submit {
                        digest: plan.digest.clone(),
                    },
                )?;
            }
        }
        let live = self.live.get(id).ok_or_else(|| self.not_live(id))?;
        let digest = live.record.plan_digest.clone();
        // Never drop what does not decode: an unreadable approval is an error someone sees.
        let existing: Vec<Approval> = live
            .record
            .approvals
            .iter()
            .enumerate()
            .map(|(i, a)| {
                crate::records::ApprovalV1::decode(a).map_err(|e| {
                    ApiError::Internal(format!(
                        "execution {id}: stored approval {i} does not decode ({e}); refusing to count approvals"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let approval = Approval {
            user: who.name.clone(),
            roles: who.tags.clone(),
            decision,
            comment: Some(req.comment.clone()).filter(|c| !c.is_empty()),
            at_ms: self.clock.now_ms(),
            digest: req.plan_digest.clone().unwrap_or_else(|| digest.clone()),
            break_glass_reason: req.break_glass_reason.clone(),
        };
        let status = niledr_runbooks::add_approval(
            &live.runbook.approval,
            &live.record.requester,
            &existing,
            approval.clone(),
            &digest,
            self.clock.now_ms(),
        )
        .map_err(approval_error)?;
        let break_glass = approval.break_glass_reason.is_some();
        let action = match (decision, break_glass) {
            (Decision::Reject, _) => "approval.rejected",
            (_, true) => "approval.break_glass",
            _ => "approval.approved",
        };
        if let Some(l) = self.live.get_mut(id) {
            l.record
                .approvals
                .push(crate::records::ApprovalV1::to_value(&approval));
        }
        if break_glass {
            tracing::warn!(%id, user = %who.name, reason = ?approval.break_glass_reason, "BREAK-GLASS approval: a single approver overrides the two-person rule");
        }
        self.note(
            id,
            action,
            &format!("{} ({}) {}", who.name, who.tags.join(", "), req.comment),
        );
        let audit = vec![(
            who.name.clone(),
            action.to_string(),
            serde_json::json!({ "id": id, "digest": digest, "comment": req.comment, "break_glass_reason": approval.break_glass_reason }),
        )];
        self.save(id, audit)
            .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
        match status {
            Status::Pending { .. } => Ok(()),
            Status::Rejected { .. } => self.apply_as(id, &who.name, MEvent::Rejected),
            Status::Approved { .. } => {
                self.apply_as(id, &who.name, MEvent::Approved)?;
                self.start_approved(id)
            }
        }
    }

    fn control(
        &mut self,
        who: &PrincipalView,
        id: &str,
        ev: MEvent,
        what: &str,
        comment: &str,
    ) -> Result<(), ApiError> {
        if !self.live.contains_key(id) {
            return Err(self.not_live(id));
        }
        self.note(id, what, &format!("{}: {comment}", who.name));
        let cancel = matches!(ev, MEvent::Cancel);
        // The person's request is audited in the commit that records it (a pause or cancel of
        // a running step takes effect when the step ends, with no transition of its own).
        self.pending_audit.push((
            who.name.clone(),
            format!("execution.{what}"),
            serde_json::json!({ "id": id, "comment": comment }),
        ));
        if let Err(e) = self.apply_as(id, &who.name, ev) {
            // Refused: nothing was committed, so neither is the request's entry.
            self.pending_audit.pop();
            return Err(e);
        }
        // A step waiting for a confirm ends now (untouched) instead of at its deadline.
        let waiting = self.live.get(id).and_then(|l| match l.machine.state() {
            State::Running { step } => l
                .record
                .steps
                .get(*step)
                .filter(|s| s.state == "waiting_confirmation")
                .map(|_| *step),
            _ => None,
        });
        if let (true, Some(index)) = (cancel, waiting) {
            let err = super::StepError {
                error: format!("cancelled by {} while waiting for a confirm", who.name),
                retryable: false,
                untouched: true,
            };
            self.step_done(id, index, false, Err(err), std::time::Duration::ZERO)
                .map_err(|e| ApiError::Internal(format!("journal: {e:#}")))?;
        }
        Ok(())
    }

    fn confirm(
        &mut self,
        who: &PrincipalView,
        id: &str,
        step: &str,
        comment: &str,
    ) -> Result<(), ApiError> {
        let live = self.live.get(id).ok_or_else(|| self.not_live(id))?;
        let State::Running { step: current } = *live.machine.state() else {
            return Err(ApiError::Conflict(format!(
                "execution {id} is {}; nothing waits for confirmation",
                live.machine.state().name()
            )));
        };
        let Some(s) = live.runbook.steps.get(current) else {
            return Err(ApiError::Conflict("no current step".into()));
        };
        let waiting = live
            .record
            .steps
            .get(current)
            .is_some_and(|r| r.state == "waiting_confirmation");
        if s.id != step || !(waiting || matches!(s.action, Action::ManualConfirm { .. })) {
            return Err(ApiError::Conflict(format!(
                "the current step is {:?} ({}), not a step {step:?} waiting for a confirm",
                s.id,
                s.action.kind().as_str()
            )));
        }
        if comment.trim().is_empty() && !matches!(s.action, Action::ManualConfirm { .. }) {
            return Err(ApiError::BadRequest(format!(
                "confirming {step} overrides a safety check: say why in `comment` (what you verified)"
            )));
        }
        let mut seen = String::new();
        if let Some(l) = self.live.get_mut(id)
            && let Some(rec) = l.record.steps.get_mut(current)
        {
            seen = std::mem::take(&mut rec.detail);
            rec.outcome_at = Some(jiff::Timestamp::now().to_string());
            rec.state = "succeeded".into();
            rec.confirm_by = None;
            rec.detail = if seen.is_empty() {
                format!("confirmed by {}: {comment}", who.name)
            } else {
                format!("confirmed by {}: {comment} (it said: {seen})", who.name)
            };
        }
        self.pending_audit.push((
            who.name.clone(),
            "step.confirmed".into(),
            serde_json::json!({ "id": id, "step": step, "comment": comment, "step_said": seen }),
        ));
        self.apply_as(id, &who.name, MEvent::StepSucceeded { index: current })
    }

    /// Roll forward from `needs_operator`: `step` (an id, or `verify`) runs again.
    fn retry(
        &mut self,
        who: &PrincipalView,
        id: &str,
        step: &str,
        comment: &str,
    ) -> Result<(), ApiError> {
        let live = self.live.get(id).ok_or_else(|| self.not_live(id))?;
        if !matches!(live.machine.state(), State::NeedsOperator { .. }) {
            return Err(ApiError::Conflict(format!(
                "execution {id} is {}; retry applies only when it needs an operator",
                live.machine.state().name()
            )));
        }
        let index = if step == "verify" {
            live.runbook.steps.len()
        } else {
            live.runbook
                .steps
                .iter()
                .position(|s| s.id == step)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        live.runbook.steps.iter().map(|s| s.id.as_str()).collect();
                    ApiError::BadRequest(format!(
                        "no step {step:?} in {}; steps: {}, or `verify`",
                        live.runbook.name,
                        known.join(", ")
                    ))
                })?
        };
        self.note(
            id,
            "retry",
            &format!("{} retries {step}: {comment}", who.name),
        );
        self.pending_audit.push((
            who.name.clone(),
            "execution.retry".into(),
            serde_json::json!({ "id": id, "step": step, "comment": comment }),
        ));
        self.apply_as(id, &who.name, MEvent::Retry { index })
    }

    fn not_live(&self, id: &str) -> ApiError {
        match self.store.execution(id) {
            Ok(Some(r)) => {
                ApiError::Conflict(format!("execution {id} already ended ({})", r.state))
            }
            _ => ApiError::NotFound(format!("no execution {id}")),
        }
    }
}
