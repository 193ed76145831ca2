//! Drill scenarios, objectives and reports (`niledr_drills`) → their wire views
//! (`niledr_web::types`).

use jiff::Timestamp;
use niledr_drills::report::CleanupRun;
use niledr_drills::{
    AbortPolicy, DrillReport, Freshness, Objectives, Phases, RtoMeasurement, Scenario, StoreLoss,
    VerdictLine,
};
use niledr_web::types::{
    AbortPolicyView, CleanupRunView, DrillObjectivesView, DrillReportView, DrillScenarioView,
    FreshnessView, RtoMeasurementView, RtoPhasesView, SeqRangeView, StepTimingView, StoreLossView,
    VerdictLineView,
};

pub fn scenario_view(s: &Scenario) -> DrillScenarioView {
    DrillScenarioView {
        fault: s.fault.as_str().into(),
        target: s.target.clone(),
        lag_before_fault_ms: s.lag_before_fault_ms,
    }
}

pub fn objectives_view(o: &Objectives) -> DrillObjectivesView {
    DrillObjectivesView {
        rto_ms: o.rto_ms,
        rpo_ms: o
            .rpo_ms
            .iter()
            .map(|(s, ms)| (s.to_string(), *ms))
            .collect(),
        no_lost_writes: o.no_lost_writes,
    }
}

/// A run record's report (stored as JSON). `Err` says why it does not load.
pub fn stored_report_view(v: &serde_json::Value) -> Result<DrillReportView, String> {
    serde_json::from_value::<DrillReport>(v.clone())
        .map(|r| report_view(&r))
        .map_err(|e| format!("the stored report does not load: {e}"))
}

pub fn report_view(r: &DrillReport) -> DrillReportView {
    DrillReportView {
        drill: r.drill.clone(),
        digest: r.digest.clone(),
        fault: r.fault.as_str().into(),
        target: r.target.clone(),
        runbook: r.runbook.clone(),
        t0: r.t0.to_string(),
        finished_at: at(r.finished_at),
        method: r.method.clone(),
        probe_interval_ms: r.probe_interval_ms,
        dns_ttl_s: r.dns_ttl_s,
        canary_hz: r.canary_hz,
        objectives: objectives_view(&r.objectives),
        abort_policy: abort_view(&r.abort_policy),
        rto: r.rto.as_ref().map(rto_view),
        rpo: r.rpo.iter().map(loss_view).collect(),
        freshness: r.freshness.as_ref().map(freshness_view),
        cleanup: r.cleanup.as_ref().map(cleanup_view),
        aborted: r.aborted.clone(),
        verdicts: r.verdicts.iter().map(verdict_view).collect(),
        overall: r.overall.name().into(),
    }
}

fn at(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

fn abort_view(a: &AbortPolicy) -> AbortPolicyView {
    AbortPolicyView {
        rto_factor: a.rto_factor,
        max_lost_writes: a.max_lost_writes,
    }
}

fn rto_view(r: &RtoMeasurement) -> RtoMeasurementView {
    RtoMeasurementView {
        total_ms: r.total_ms,
        first_write_at: r.first_write_at.to_string(),
        phases: phases_view(&r.phases),
    }
}

fn phases_view(p: &Phases) -> RtoPhasesView {
    RtoPhasesView {
        detection_ms: p.detection_ms,
        decision_ms: p.decision_ms,
        execution: p
            .execution
            .iter()
            .map(|s| StepTimingView {
                step: s.step.clone(),
                ms: s.ms,
            })
            .collect(),
        dns_convergence_ms: p.dns_convergence_ms,
        verification_ms: p.verification_ms,
    }
}

fn loss_view(l: &StoreLoss) -> StoreLossView {
    StoreLossView {
        store: l.store.to_string(),
        acknowledged: l.acknowledged,
        lost: l.lost,
        lost_seqs: l
            .lost_seqs
            .iter()
            .map(|r| SeqRangeView {
                first: r.first,
                last: r.last,
            })
            .collect(),
        first_lost_at: at(l.first_lost_at),
        last_lost_at: at(l.last_lost_at),
        last_surviving_at: at(l.last_surviving_at),
        lag_bytes_at_t0: l.lag_bytes_at_t0,
    }
}

fn freshness_view(f: &Freshness) -> FreshnessView {
    FreshnessView {
        activation_ms: f.activation_ms,
        newest_recoverable_seq: f.newest_recoverable_seq,
        newest_recoverable_at: at(f.newest_recoverable_at),
        age_at_t0_ms: f.age_at_t0_ms,
    }
}

fn cleanup_view(c: &CleanupRun) -> CleanupRunView {
    CleanupRunView {
        runbook: c.runbook.clone(),
        duration_ms: c.duration_ms,
        outcome: c.outcome.clone(),
    }
}

fn verdict_view(v: &VerdictLine) -> VerdictLineView {
    VerdictLineView {
        objective: v.objective.clone(),
        target: v.target.clone(),
        measured: v.measured.clone(),
        verdict: v.verdict.name().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire view writes what the report's own serde writes (the console and stored
    /// reports read these names), field for field.
    #[test]
    fn the_report_view_has_the_reports_json_shape() {
        let mut rpt: DrillReport = serde_json::from_value(serde_json::json!({
            "drill": "d", "digest": "x", "fault": "kill_primary_postgres", "target": "pg-khartoum",
            "runbook": "rb", "t0": "2026-12-01T10:00:00.25Z", "finished_at": null, "method": "m",
            "probe_interval_ms": 1000, "dns_ttl_s": 5, "canary_hz": 20,
            "objectives": {"rto_ms": 60000, "rpo_ms": {"postgres": 5000}, "no_lost_writes": false},
            "abort_policy": {"rto_factor": 3.0, "max_lost_writes": null},
            "rto": {"total_ms": 4200, "first_write_at": "2026-12-01T10:00:04.45Z",
                    "phases": {"detection_ms": 3000, "decision_ms": 0,
                               "execution": [{"step": "promote", "ms": 400}],
                               "dns_convergence_ms": null, "verification_ms": 80}},
            "rpo": [{"store": "postgres", "acknowledged": 90, "lost": 2,
                     "lost_seqs": [{"first": 88, "last": 89}],
                     "first_lost_at": "2026-12-01T10:00:00.1Z", "last_lost_at": "2026-12-01T10:00:00.2Z",
                     "last_surviving_at": "2026-12-01T10:00:00Z", "lag_bytes_at_t0": 512}],
            "freshness": null, "cleanup": {"runbook": "fb", "duration_ms": 900, "outcome": "succeeded"},
            "aborted": null, "verdicts": [], "overall": "not_measured"
        }))
        .unwrap();
        rpt.judge();
        let own = serde_json::to_value(&rpt).unwrap();
        let wire = serde_json::to_value(report_view(&rpt)).unwrap();
        assert_eq!(wire, own);
        assert_eq!(wire["verdicts"][0]["verdict"], "met");
    }

    #[test]
    fn a_stored_report_that_does_not_load_says_why() {
        let e = stored_report_view(&serde_json::json!({"drill": 1})).unwrap_err();
        assert!(e.contains("does not load"), "{e}");
    }
}
