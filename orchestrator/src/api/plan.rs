//! Plans and approval policies (`niledr_runbooks`) → their wire views (`niledr_web::types`).
//! The views are unredacted here; callers mask what they show (`redact::view`).

use niledr_runbooks::plan::{Change, Guard, PlannedStep, Readiness, Target};
use niledr_runbooks::{
    ApprovalPolicy, GuardOutcome, Mode, Plan, Preconditions, ServicePrecondition, Tolerance,
};
use niledr_web::types::{
    ApprovalPolicyView, ChangeView, GuardView, PlanTargetView, PlanView, PlannedStepView,
    PreconditionsView, ReadinessView, ServicePreconditionView, ToleranceView,
};

pub fn plan_view(p: &Plan) -> PlanView {
    PlanView {
        runbook: p.runbook.clone(),
        mode: mode(p.mode).into(),
        digest: p.digest.clone(),
        steps: p.steps.iter().map(step_view).collect(),
        warnings: p.warnings.clone(),
        ready: p.ready,
        lock_scope: p.lock_scope.clone(),
        approval: approval_policy_view(&p.approval),
        preconditions: preconditions_view(&p.preconditions),
        point_of_no_return: p.point_of_no_return.clone(),
        readiness: p.readiness.iter().map(readiness_view).collect(),
    }
}

/// An execution record's plan (stored as JSON). A plan that no longer decodes is shown as
/// such, with the record's digest and a warning saying why, never as an empty plan.
pub fn stored_plan_view(v: &serde_json::Value, runbook: &str, digest: &str) -> PlanView {
    match serde_json::from_value::<Plan>(v.clone()) {
        Ok(p) => plan_view(&p),
        Err(e) => PlanView {
            runbook: runbook.into(),
            mode: String::new(),
            digest: digest.into(),
            steps: Vec::new(),
            warnings: vec![format!(
                "the stored plan does not load ({e}); read it with `niledr execution --json`"
            )],
            ready: false,
            lock_scope: Vec::new(),
            approval: approval_policy_view(&ApprovalPolicy::default()),
            preconditions: PreconditionsView::default(),
            point_of_no_return: None,
            readiness: Vec::new(),
        },
    }
}

pub fn approval_policy_view(a: &ApprovalPolicy) -> ApprovalPolicyView {
    ApprovalPolicyView {
        required: a.required,
        roles: a.roles.clone(),
        expires_after_ms: a.expires_after_ms,
        break_glass: a.break_glass,
        auto_approve: a.auto_approve,
        tolerance: tolerance_view(&a.tolerance),
    }
}

fn tolerance_view(t: &Tolerance) -> ToleranceView {
    ToleranceView {
        lag_bytes: t.lag_bytes,
        lag_seconds: t.lag_seconds,
    }
}

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Unplanned => "unplanned",
        Mode::Planned => "planned",
    }
}

fn step_view(s: &PlannedStep) -> PlannedStepView {
    PlannedStepView {
        index: s.index,
        id: s.id.clone(),
        kind: s.kind.as_str().into(),
        summary: s.summary.clone(),
        targets: s.targets.iter().map(target_view).collect(),
        guards: s.guards.iter().map(guard_view).collect(),
        changes: s.changes.iter().map(change_view).collect(),
        notes: s.notes.clone(),
        rollback: s.rollback.clone(),
        verification: s.verification.clone(),
        timeout_ms: s.timeout_ms,
        retries: s.retries,
        backoff_ms: s.backoff_ms,
        after_point_of_no_return: s.after_point_of_no_return,
    }
}

fn target_view(t: &Target) -> PlanTargetView {
    PlanTargetView {
        kind: t.kind.clone(),
        id: t.id.clone(),
        address: t.address.clone(),
    }
}

fn guard_view(g: &Guard) -> GuardView {
    GuardView {
        check: g.check.clone(),
        outcome: match g.outcome {
            GuardOutcome::Pass => "pass",
            GuardOutcome::Fail => "fail",
            GuardOutcome::Unknown => "unknown",
        }
        .into(),
        why: g.why.clone(),
    }
}

fn change_view(c: &Change) -> ChangeView {
    ChangeView {
        what: c.what.clone(),
        before: c.before.clone(),
        after: c.after.clone(),
    }
}

fn readiness_view(r: &Readiness) -> ReadinessView {
    ReadinessView {
        step: r.step.clone(),
        ready: r.ready,
        why: r.why.clone(),
    }
}

fn preconditions_view(p: &Preconditions) -> PreconditionsView {
    PreconditionsView {
        services: p
            .services
            .iter()
            .map(|(id, s)| (id.clone(), service_precondition_view(s)))
            .collect(),
        dns: p.dns.clone(),
        connstr: p.connstr.clone(),
    }
}

fn service_precondition_view(s: &ServicePrecondition) -> ServicePreconditionView {
    ServicePreconditionView {
        reachable: s.reachable,
        role: s.role.map(|r| r.as_str().to_string()),
        timeline: s.timeline,
        lag_bytes: s.lag_bytes,
        lag_seconds: s.lag_seconds,
    }
}

#[cfg(test)]
mod tests {
    use niledr_runbooks::{ObservedRole, ServiceObservation};

    use super::*;
    use crate::test_fixtures::{RUNBOOK, catalog};

    fn a_plan() -> Plan {
        let rb =
            niledr_runbooks::parse_runbook(std::path::Path::new("t.toml"), RUNBOOK, &catalog())
                .expect("the runbook validates");
        let mut world = niledr_runbooks::WorldSnapshot::default();
        world.services.insert(
            "beta-pg".into(),
            ServiceObservation {
                reachable: true,
                role: Some(ObservedRole::Standby),
                lag_bytes: Some(10),
                ..Default::default()
            },
        );
        niledr_runbooks::plan(&rb, &world)
    }

    /// The wire view carries everything the plan's own JSON does, under the same names; step
    /// kinds are written as in the runbook file (`postgres.promote`).
    #[test]
    fn the_plan_view_has_the_plans_json_shape() {
        let p = a_plan();
        let mut own = serde_json::to_value(&p).expect("serializes");
        let wire = serde_json::to_value(plan_view(&p)).expect("serializes");
        for (i, s) in p.steps.iter().enumerate() {
            own["steps"][i]["kind"] = s.kind.as_str().into();
        }
        own["preconditions"]["services"]["beta-pg"]["role"] = "standby".into();
        assert_eq!(wire, own);
        assert_eq!(wire["point_of_no_return"], "promote");
        assert_eq!(wire["steps"][2]["kind"], "postgres.promote");
    }

    #[test]
    fn a_stored_plan_that_does_not_load_says_so() {
        let v = stored_plan_view(&serde_json::json!({"steps": 3}), "rb", "d1");
        assert_eq!((v.runbook.as_str(), v.digest.as_str()), ("rb", "d1"));
        assert!(!v.ready);
        assert!(v.warnings[0].contains("does not load"), "{:?}", v.warnings);
    }
}
