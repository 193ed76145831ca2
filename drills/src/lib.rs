//! niledr-drills: pure drill logic — drill files (schema + validation with `FILE:LINE:COL`
//! errors), schedule maths (cron in Africa/Khartoum, blackout skips, missed runs) and RTO/RPO
//! run reports with verdicts and Markdown. Those modules do no I/O: text comes in as `&str`, time
//! as jiff values.

mod raw;
pub mod report;
pub mod schedule;
pub mod schema;
pub mod shipped;
pub mod validate;

pub use report::{
    DrillReport, Freshness, Phases, RtoMeasurement, SeqRange, StepTiming, StoreLoss, Verdict,
    VerdictLine, seq_ranges,
};
pub use schedule::{ScheduleError, Slot, announce_at, missed_runs, next_runs};
pub use schema::{
    AbortPolicy, ApprovalMode, BlackoutWindow, Cleanup, Drill, FaultKind, Objectives, Scenario,
    Store,
};
pub use validate::parse_drill;
pub mod canary;
pub mod measure;
