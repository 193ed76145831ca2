//! What drills need from the engine: proposing a drill's runbook (or adopting the proposal a
//! trigger already opened for the same outage), applying a drill's standing pre-approval, and
//! keeping triggers quiet while a drill owns the outage it caused.

use niledr_runbooks::State;
use niledr_web::ApiError;
use niledr_web::types::{ApprovalRequest, ExecutionView, PrincipalView};

use super::{Engine, execution_view};

/// A standing approval to apply to a drill's execution: who gave it and what they said.
#[derive(Debug, Clone)]
pub struct StandingApproval {
    pub user: String,
    pub roles: Vec<String>,
    /// Says which drill digest was approved, and when.
    pub comment: String,
}

/// The principal drill proposals are attributed to.
pub fn drill_principal(drill: &str) -> PrincipalView {
    PrincipalView {
        name: format!("drill:{drill}"),
        role: "operator".into(),
        tags: Vec::new(),
    }
}

impl Engine {
    pub(super) fn drill_propose(
        &mut self,
        drill: &str,
        runbook: &str,
        reason: &str,
        standing: &[StandingApproval],
    ) -> Result<ExecutionView, ApiError> {
        let who = drill_principal(drill);
        let adopt = self
            .live
            .iter()
            .find(|(_, l)| {
                l.record.runbook == runbook
                    && l.record.requester == super::triggers::TRIGGER
                    && matches!(l.machine.state(), State::AwaitingApproval {})
            })
            .map(|(id, _)| id.clone());
        let id = match adopt {
            Some(id) => {
                self.note(
                    &id,
                    "adopted_by_drill",
                    &format!("drill {drill} caused this outage and takes over the proposal"),
                );
                self.save(&id, vec![])
                    .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
                id
            }
            None => self.create(&who, runbook, reason)?,
        };
        for a in standing {
            let still_waiting = self
                .live
                .get(&id)
                .is_some_and(|l| matches!(l.machine.state(), State::AwaitingApproval {}));
            if !still_waiting {
                break;
            }
            let approver = PrincipalView {
                name: a.user.clone(),
                role: "approver".into(),
                tags: a.roles.clone(),
            };
            self.approve(
                &approver,
                &id,
                ApprovalRequest {
                    decision: "approve".into(),
                    comment: a.comment.clone(),
                    plan_digest: None,
                    break_glass_reason: None,
                },
            )?;
        }
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

    /// `Some(drill)`: a drill is running and owns the outage it causes; triggers stay quiet.
    pub(super) fn set_drill_active(&mut self, drill: Option<String>) {
        match &drill {
            Some(d) => tracing::info!(drill = %d, "drill running: runbook triggers paused"),
            None => tracing::info!("no drill running: runbook triggers active"),
        }
        self.drill_active = drill;
    }
}
