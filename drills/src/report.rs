//! Drill run reports: the measured RTO (with phases) and RPO per store (by sequence markers),
//! a verdict per objective and overall, serde for the API, and `to_markdown()` for a
//! post-drill review.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::schema::{AbortPolicy, Drill, FaultKind, Objectives, Store};

/// How every number in a report is obtained (DESIGN.md, "Measuring RTO and RPO").
pub const METHOD: &str = "T0 is the moment the fault was injected. An independent canary writer \
commits sequence markers (seq, ts) to PostgreSQL and Redis through the production path (service \
name resolved at the authoritative DNS on every reconnect, then connect, then write) and records \
every acknowledged seq. RTO = T0 to the first acknowledged write through the production path after \
recovery. RPO per store = acknowledged markers missing on the new primary (count and seqs); \
RPO time = ts(newest lost acknowledged marker) - ts(newest surviving marker before it). \
Replication lag in bytes at T0 comes from the probes. RPO is never estimated from timestamps alone.";

/// Lost-seq ranges listed in the Markdown; the JSON keeps them all.
const MAX_RANGES_SHOWN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    Missed,
    Aborted,
    /// The run produced no measurement for this objective (never counted as met).
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::Aborted => "aborted",
            Verdict::NotMeasured => "not measured",
        }
    }

    /// The wire name (as serde writes it): `met`, `missed`, `aborted`, `not_measured`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::NotMeasured => "not_measured",
            other => other.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictLine {
    /// `rto`, `rpo_postgres`, `rpo_redis`, `no_lost_writes`.
    pub objective: String,
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: String,
    pub ms: u64,
}

/// Where the RTO went. `None`: the phase did not happen or was not observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phases {
    /// T0 → the orchestrator declared the service down (probe interval × threshold).
    pub detection_ms: Option<u64>,
    /// Waiting for approvals (≈ 0 with a standing approval).
    pub decision_ms: Option<u64>,
    pub execution: Vec<StepTiming>,
    /// DNS answer changed → the canary's resolver saw the new address (TTL).
    pub dns_convergence_ms: Option<u64>,
    pub verification_ms: Option<u64>,
}

impl Phases {
    pub fn accounted_ms(&self) -> u64 {
        [
            self.detection_ms,
            self.decision_ms,
            self.dns_convergence_ms,
            self.verification_ms,
        ]
        .into_iter()
        .flatten()
        .chain(self.execution.iter().map(|s| s.ms))
        .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtoMeasurement {
    /// T0 → first acknowledged write through the production path.
    pub total_ms: u64,
    pub first_write_at: Timestamp,
    pub phases: Phases,
}

/// An inclusive run of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

/// Compress seqs (any order, duplicates allowed) into sorted inclusive ranges.
pub fn seq_ranges(seqs: &[u64]) -> Vec<SeqRange> {
    let mut v = seqs.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<SeqRange> = Vec::new();
    for s in v {
        match out.last_mut() {
            Some(r) if r.last + 1 == s => r.last = s,
            _ => out.push(SeqRange { first: s, last: s }),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreLoss {
    pub store: Store,
    /// Markers the canary saw acknowledged during the run.
    pub acknowledged: u64,
    /// Acknowledged markers missing on the new primary.
    pub lost: u64,
    pub lost_seqs: Vec<SeqRange>,
    /// ts of the oldest and newest lost markers: the time window the loss spans.
    pub first_lost_at: Option<Timestamp>,
    pub last_lost_at: Option<Timestamp>,
    /// ts of the newest marker that survived before the loss.
    pub last_surviving_at: Option<Timestamp>,
    pub lag_bytes_at_t0: Option<u64>,
}

impl StoreLoss {
    /// RPO as time: newest lost − newest surviving before it; 0 when nothing was lost.
    pub fn rpo_ms(&self) -> Option<u64> {
        if self.lost == 0 {
            return Some(0);
        }
        let lost = self.last_lost_at?;
        let base = self.last_surviving_at.or(self.first_lost_at)?;
        Some(span_ms(base, lost))
    }
}

/// Cold-site restore: what the restored database holds and how long activation took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    pub activation_ms: u64,
    pub newest_recoverable_seq: Option<u64>,
    pub newest_recoverable_at: Option<Timestamp>,
    /// T0 − newest recoverable marker.
    pub age_at_t0_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupRun {
    pub runbook: String,
    pub duration_ms: Option<u64>,
    /// e.g. "succeeded", "failed: …".
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub drill: String,
    pub digest: String,
    pub fault: FaultKind,
    pub target: String,
    pub runbook: String,
    pub t0: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub method: String,
    pub probe_interval_ms: u64,
    pub dns_ttl_s: u32,
    pub canary_hz: u32,
    pub objectives: Objectives,
    pub abort_policy: AbortPolicy,
    pub rto: Option<RtoMeasurement>,
    pub rpo: Vec<StoreLoss>,
    pub freshness: Option<Freshness>,
    pub cleanup: Option<CleanupRun>,
    /// Why the drill was stopped and rolled back, if it was.
    pub aborted: Option<String>,
    pub verdicts: Vec<VerdictLine>,
    pub overall: Verdict,
}

impl DrillReport {
    /// An empty report for a run of `drill` with fault at `t0`; fill the measurements, then
    /// call `judge`.
    pub fn new(
        drill: &Drill,
        t0: Timestamp,
        probe_interval_ms: u64,
        dns_ttl_s: u32,
        canary_hz: u32,
    ) -> Self {
        DrillReport {
            drill: drill.name.clone(),
            digest: drill.digest.clone(),
            fault: drill.scenario.fault,
            target: drill.scenario.target.clone(),
            runbook: drill.runbook.clone(),
            t0,
            finished_at: None,
            method: METHOD.to_string(),
            probe_interval_ms,
            dns_ttl_s,
            canary_hz,
            objectives: drill.objectives.clone(),
            abort_policy: drill.abort.clone(),
            rto: None,
            rpo: Vec::new(),
            freshness: None,
            cleanup: None,
            aborted: None,
            verdicts: Vec::new(),
            overall: Verdict::NotMeasured,
        }
    }

    /// Compute a verdict per objective and the overall verdict from the measurements.
    pub fn judge(&mut self) {
        let aborted = self.aborted.is_some();
        let pick = |measured: Option<bool>| match (aborted, measured) {
            (true, _) => Verdict::Aborted,
            (false, Some(true)) => Verdict::Met,
            (false, Some(false)) => Verdict::Missed,
            (false, None) => Verdict::NotMeasured,
        };
        let mut lines = Vec::new();
        let rto = self.rto.as_ref().map(|r| r.total_ms);
        lines.push(VerdictLine {
            objective: "rto".into(),
            target: format!("≤ {}", fmt_ms(self.objectives.rto_ms)),
            measured: rto.map_or_else(|| "no recovery observed".into(), fmt_ms),
            // Never recovered is a measured miss, not a missing measurement.
            verdict: pick(Some(rto.is_some_and(|t| t <= self.objectives.rto_ms))),
        });
        for (store, objective) in &self.objectives.rpo_ms {
            let loss = self.rpo.iter().find(|l| l.store == *store);
            let measured = loss.and_then(StoreLoss::rpo_ms);
            lines.push(VerdictLine {
                objective: format!("rpo_{store}"),
                target: format!("≤ {}", fmt_ms(*objective)),
                measured: match (loss, measured) {
                    (Some(l), Some(ms)) => format!("{} ({} lost)", fmt_ms(ms), l.lost),
                    _ => "not measured".into(),
                },
                verdict: pick(measured.map(|ms| ms <= *objective)),
            });
        }
        if self.objectives.no_lost_writes {
            let lost: Option<u64> = if self.rpo.is_empty() {
                None
            } else {
                Some(self.rpo.iter().map(|l| l.lost).sum())
            };
            lines.push(VerdictLine {
                objective: "no_lost_writes".into(),
                target: "0 acknowledged writes lost".into(),
                measured: lost.map_or_else(|| "not measured".into(), |n| format!("{n} lost")),
                verdict: pick(lost.map(|n| n == 0)),
            });
        }
        self.overall = if aborted {
            Verdict::Aborted
        } else if lines.iter().any(|l| l.verdict == Verdict::Missed) {
            Verdict::Missed
        } else if lines.iter().any(|l| l.verdict == Verdict::NotMeasured) {
            Verdict::NotMeasured
        } else {
            Verdict::Met
        };
        self.verdicts = lines;
    }

    /// A report a person can paste into a post-drill review.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let w = &mut md;
        let _ = writeln!(w, "# Drill report: {}\n", self.drill);
        let _ = writeln!(
            w,
            "**Overall verdict: {}**\n",
            self.overall.as_str().to_uppercase()
        );
        if let Some(reason) = &self.aborted {
            let _ = writeln!(w, "> Aborted and rolled back: {reason}\n");
        }
        let _ = writeln!(w, "| | |\n|---|---|");
        let _ = writeln!(w, "| fault | `{}` on `{}` |", self.fault, self.target);
        let _ = writeln!(w, "| runbook | `{}` |", self.runbook);
        let _ = writeln!(w, "| T0 | {} |", self.t0);
        if let Some(f) = self.finished_at {
            let _ = writeln!(w, "| finished | {f} |");
        }
        let _ = writeln!(w, "| probe interval | {} |", fmt_ms(self.probe_interval_ms));
        let _ = writeln!(w, "| DNS TTL | {} s |", self.dns_ttl_s);
        let _ = writeln!(w, "| canary rate | {} Hz |", self.canary_hz);
        let _ = writeln!(
            w,
            "| abort at | {} × RTO objective{} |",
            self.abort_policy.rto_factor,
            self.abort_policy
                .max_lost_writes
                .map_or(String::new(), |m| format!(", or > {m} lost writes"))
        );
        let _ = writeln!(w, "| drill digest | `{}` |\n", self.digest);

        let _ = writeln!(
            w,
            "## Verdicts\n\n| objective | target | measured | verdict |\n|---|---|---|---|"
        );
        for l in &self.verdicts {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} |",
                l.objective,
                l.target,
                l.measured,
                l.verdict.as_str()
            );
        }

        let _ = writeln!(w, "\n## RTO\n");
        match &self.rto {
            None => {
                let _ = writeln!(
                    w,
                    "No acknowledged write through the production path was observed after T0."
                );
            }
            Some(r) => {
                let _ = writeln!(
                    w,
                    "{} from T0 to the first acknowledged write ({}).\n",
                    fmt_ms(r.total_ms),
                    r.first_write_at
                );
                let _ = writeln!(w, "| phase | duration |\n|---|---|");
                let p = &r.phases;
                let opt = |v: Option<u64>| v.map_or_else(|| "—".to_string(), fmt_ms);
                let _ = writeln!(w, "| detection | {} |", opt(p.detection_ms));
                let _ = writeln!(w, "| decision (approvals) | {} |", opt(p.decision_ms));
                for s in &p.execution {
                    let _ = writeln!(w, "| step `{}` | {} |", s.step, fmt_ms(s.ms));
                }
                let _ = writeln!(w, "| DNS convergence | {} |", opt(p.dns_convergence_ms));
                let _ = writeln!(w, "| verification | {} |", opt(p.verification_ms));
                let rest = r.total_ms.saturating_sub(p.accounted_ms());
                let _ = writeln!(w, "| unaccounted | {} |", fmt_ms(rest));
            }
        }

        let _ = writeln!(w, "\n## RPO\n");
        if self.rpo.is_empty() {
            let _ = writeln!(w, "No sequence-marker measurement in this run.");
        } else {
            let _ = writeln!(
                w,
                "| store | acknowledged | lost | lost seqs | loss window | RPO (time) | lag at T0 |\n|---|---|---|---|---|---|---|"
            );
            for l in &self.rpo {
                let seqs = if l.lost_seqs.is_empty() {
                    "—".to_string()
                } else {
                    let mut shown: Vec<String> = l
                        .lost_seqs
                        .iter()
                        .take(MAX_RANGES_SHOWN)
                        .map(|r| {
                            if r.first == r.last {
                                r.first.to_string()
                            } else {
                                format!("{}–{}", r.first, r.last)
                            }
                        })
                        .collect();
                    if l.lost_seqs.len() > MAX_RANGES_SHOWN {
                        shown.push(format!(
                            "… {} more ranges (full list in the JSON report)",
                            l.lost_seqs.len() - MAX_RANGES_SHOWN
                        ));
                    }
                    shown.join(", ")
                };
                let window = match (l.first_lost_at, l.last_lost_at) {
                    (Some(a), Some(b)) => format!("{a} – {b} ({})", fmt_ms(span_ms(a, b))),
                    _ => "—".to_string(),
                };
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    l.store,
                    l.acknowledged,
                    l.lost,
                    seqs,
                    window,
                    l.rpo_ms().map_or_else(|| "—".to_string(), fmt_ms),
                    l.lag_bytes_at_t0
                        .map_or_else(|| "—".to_string(), |b| format!("{b} bytes"))
                );
            }
        }

        if let Some(f) = &self.freshness {
            let _ = writeln!(w, "\n## Cold restore\n");
            let _ = writeln!(w, "- activation: {}", fmt_ms(f.activation_ms));
            let newest = match (f.newest_recoverable_seq, f.newest_recoverable_at) {
                (Some(s), Some(at)) => format!("seq {s} at {at}"),
                (Some(s), None) => format!("seq {s}"),
                _ => "none".to_string(),
            };
            let _ = writeln!(w, "- newest recoverable marker: {newest}");
            if let Some(age) = f.age_at_t0_ms {
                let _ = writeln!(w, "- data freshness at T0: {} old", fmt_ms(age));
            }
        }

        if let Some(c) = &self.cleanup {
            let _ = writeln!(w, "\n## Cleanup\n");
            let _ = writeln!(
                w,
                "`{}`: {}{}",
                c.runbook,
                c.outcome,
                c.duration_ms
                    .map_or(String::new(), |ms| format!(" in {}", fmt_ms(ms)))
            );
        }

        let _ = writeln!(w, "\n## Method\n\n{}", self.method);
        md
    }
}

fn span_ms(from: Timestamp, to: Timestamp) -> u64 {
    let d = to.duration_since(from).as_millis();
    u64::try_from(d.max(0)).unwrap_or(u64::MAX)
}

/// `850 ms`, `2.5 s`, `4 min`, `4 min 3.2 s`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", ms as f64 / 1000.0);
        format!("{} s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let (m, rest) = (ms / 60_000, ms % 60_000);
        if rest == 0 {
            format!("{m} min")
        } else {
            format!("{m} min {}", fmt_ms(rest))
        }
    }
}
