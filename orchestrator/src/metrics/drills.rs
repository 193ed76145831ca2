//! Drill metrics: runs and scheduled slots that ended, and the last finished run's RTO, RPO,
//! lost writes and verdict per drill.

use metrics::{counter, gauge};

use super::families as f;
use crate::records::DrillRunRecordV1;

/// The verdicts a drill report can give (one-hot in `niledr_drill_last_verdict`).
const VERDICTS: [&str; 4] = ["met", "missed", "aborted", "not_measured"];

/// A run or a scheduled slot reached its final state (`finished`, `aborted`, `failed`,
/// `missed`, `skipped`, ...).
pub fn drill_run_ended(drill: &str, state: &str) {
    counter!(f::DRILL_RUNS, "drill" => drill.to_string(), "state" => state.to_string())
        .increment(1);
}

/// A run the runner drove ended: counted by state, and when it has a report, its RTO, RPO and
/// lost writes per store and its verdict.
pub fn drill_finished(run: &DrillRunRecordV1) {
    drill_run_ended(&run.drill, &run.state);
    let drill = run.drill.clone();
    gauge!(f::DRILL_LAST_RUN, "drill" => drill.clone())
        .set(jiff::Timestamp::now().as_second() as f64);
    let Some(report) = run
        .report
        .as_ref()
        .and_then(|r| serde_json::from_value::<niledr_drills::DrillReport>(r.clone()).ok())
    else {
        return;
    };
    if let Some(rto) = &report.rto {
        gauge!(f::DRILL_RTO, "drill" => drill.clone()).set(rto.total_ms as f64 / 1000.0);
    }
    for loss in &report.rpo {
        let labels = [("drill", drill.clone()), ("store", loss.store.to_string())];
        if let Some(ms) = loss.rpo_ms() {
            gauge!(f::DRILL_RPO, &labels).set(ms as f64 / 1000.0);
        }
        gauge!(f::DRILL_LOST_WRITES, &labels).set(loss.lost as f64);
    }
    for v in VERDICTS {
        let hit = report.overall.as_str() == v;
        gauge!(f::DRILL_VERDICT, "drill" => drill.clone(), "verdict" => v).set(if hit {
            1.0
        } else {
            0.0
        });
    }
}
