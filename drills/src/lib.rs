//! niledr-drills: drill files (schema + validation with `FILE:LINE:COL` errors), schedule maths
//! (cron in Africa/Khartoum, blackout skips, missed runs), RTO/RPO run reports with verdicts and
//! Markdown — those do no I/O: text comes in as `&str`, time as jiff values — and the
//! measurement side, which does: the canary writer (`canary`) and RTO/RPO from its log and the
//! new primary's contents (`measure`).

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
    AbortPolicy, ApprovalMode, Automation, BlackoutWindow, Cleanup, Drill, FaultKind, HostAction,
    Objectives, Scenario, Store,
};
pub use validate::{RunbookInfo, parse_drill};
pub mod canary;
pub mod measure;
