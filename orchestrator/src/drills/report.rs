//! From what a run observed (T0, detection, the execution record, the canary's measurement)
//! to the drill report with its RTO phases, RPO per store and verdicts; and the Markdown a
//! person pastes into a post-drill review.

use niledr_drills::canary::{CanaryLog, StoreLog};
use niledr_drills::measure::{Measurement, Rpo, StoreMeasurement};
use niledr_drills::report::CleanupRun;
use niledr_drills::{
    Drill, DrillReport, FaultKind, Freshness, Phases, RtoMeasurement, SeqRange, StepTiming, Store,
    StoreLoss,
};
use niledr_probes::{Observation, ProbeSpec};
use niledr_web::ApiError;

use super::DrillService;
use crate::records::{DrillRunRecordV1, ExecutionRecordV1};

/// Everything a run saw, as the runner gathered it.
pub(super) struct Observed {
    pub t0_wall: jiff::Timestamp,
    pub detection_ms: Option<u64>,
    /// Replication lag in bytes at T0 from the probes: (postgres, redis).
    pub lag_bytes: (Option<u64>, Option<u64>),
    pub execution: Option<ExecutionRecordV1>,
    pub measurement: Option<Measurement>,
    pub aborted: Option<String>,
    pub cleanup: Option<CleanupRun>,
}

fn ts(s: &Option<String>) -> Option<jiff::Timestamp> {
    s.as_deref().and_then(|t| t.parse().ok())
}

fn ms_between(a: jiff::Timestamp, b: jiff::Timestamp) -> u64 {
    u64::try_from(b.duration_since(a).as_millis()).unwrap_or(0)
}

pub(super) fn build(
    svc: &DrillService,
    drill: &Drill,
    o: &Observed,
    log: &CanaryLog,
) -> DrillReport {
    let target = svc.config.services.get(&drill.scenario.target);
    let probe_interval_ms = target
        .or_else(|| svc.config.services.values().next())
        .map_or(0, |s| {
            u64::try_from(s.probe.interval.as_millis()).unwrap_or(0)
        });
    let mut r = DrillReport::new(
        drill,
        o.t0_wall,
        probe_interval_ms,
        dns_ttl(svc).unwrap_or(0),
        svc.config.drills.canary_rate,
    );
    r.aborted = o.aborted.clone();
    let phases = phases(o);
    if let Some(m) = &o.measurement {
        r.rto = rto(m, phases);
        for (store, sm, store_log, lag) in [
            (Store::Postgres, &m.postgres, &log.postgres, o.lag_bytes.0),
            (Store::Redis, &m.redis, &log.redis, o.lag_bytes.1),
        ] {
            if let (Some(StoreMeasurement { rpo: Some(rpo), .. }), Some(l)) = (sm, store_log) {
                r.rpo.push(loss(store, rpo, l, lag));
            }
        }
        if drill.scenario.fault == FaultKind::ColdRestore {
            r.freshness = freshness(o, m);
        }
    }
    r.cleanup = o.cleanup.clone();
    r.finished_at = Some(jiff::Timestamp::now());
    r.judge();
    r
}

/// Where the time went: detection from the probes, decision and steps from the journal.
fn phases(o: &Observed) -> Phases {
    let mut p = Phases {
        detection_ms: o.detection_ms,
        ..Phases::default()
    };
    let Some(e) = &o.execution else {
        return p;
    };
    let at = |suffix: &str| {
        e.timeline
            .iter()
            .find(|t| t.event.ends_with(suffix))
            .and_then(|t| t.at.parse::<jiff::Timestamp>().ok())
    };
    if let (Some(a), Some(b)) = (at("→ awaiting_approval"), at("→ approved")) {
        p.decision_ms = Some(ms_between(a, b));
    }
    let mut dns = 0u64;
    let mut verify = 0u64;
    for s in &e.steps {
        let ms = s.duration_ms.map(|d| d.round() as u64).or_else(|| {
            match (ts(&s.intent_at), ts(&s.outcome_at)) {
                (Some(a), Some(b)) => Some(ms_between(a, b)),
                _ => None,
            }
        });
        let Some(ms) = ms else { continue };
        match s.kind.as_str() {
            "dns.verify" => dns += ms,
            "sql.check" | "http.check" => verify += ms,
            _ => p.execution.push(StepTiming {
                step: s.id.clone(),
                ms,
            }),
        }
    }
    p.dns_convergence_ms = (dns > 0).then_some(dns);
    p.verification_ms = (verify > 0).then_some(verify);
    p
}

/// Traffic restored = every store that saw the outage writes again: the latest recovery.
fn rto(m: &Measurement, phases: Phases) -> Option<RtoMeasurement> {
    let stores: Vec<&StoreMeasurement> = [&m.postgres, &m.redis].into_iter().flatten().collect();
    let hit: Vec<&&StoreMeasurement> = stores.iter().filter(|s| s.rto.outage_observed).collect();
    let pick = if hit.is_empty() {
        stores.first().map(|s| &s.rto)
    } else if hit.iter().any(|s| s.rto.rto.is_none()) {
        return None;
    } else {
        hit.iter().map(|s| &s.rto).max_by_key(|r| r.rto)
    }?;
    let total = pick.rto?;
    Some(RtoMeasurement {
        total_ms: u64::try_from(total.as_millis()).unwrap_or(0),
        first_write_at: pick.recovered_by?.wall,
        phases,
    })
}

fn loss(store: Store, rpo: &Rpo, log: &StoreLog, lag: Option<u64>) -> StoreLoss {
    let wall = |seq: i64| log.acks.iter().find(|a| a.seq == seq).map(|a| a.wall);
    StoreLoss {
        store,
        acknowledged: rpo.acknowledged,
        lost: rpo.lost,
        lost_seqs: rpo
            .lost_ranges
            .iter()
            .map(|r| SeqRange {
                first: u64::try_from(r.first).unwrap_or(0),
                last: u64::try_from(r.last).unwrap_or(0),
            })
            .collect(),
        first_lost_at: rpo.lost_ranges.first().and_then(|r| wall(r.first)),
        last_lost_at: rpo.last_lost.map(|a| a.wall),
        last_surviving_at: rpo.last_surviving_before_loss.map(|a| a.wall),
        lag_bytes_at_t0: lag,
    }
}

fn freshness(o: &Observed, m: &Measurement) -> Option<Freshness> {
    let e = o.execution.as_ref()?;
    let ended = e
        .timeline
        .iter()
        .rev()
        .find(|t| t.event.ends_with("→ succeeded"))
        .and_then(|t| t.at.parse::<jiff::Timestamp>().ok())?;
    let rpo = m.postgres.as_ref()?.rpo.as_ref()?;
    let newest = rpo.last_surviving_before_loss;
    Some(Freshness {
        activation_ms: ms_between(o.t0_wall, ended),
        newest_recoverable_seq: newest.map(|a| u64::try_from(a.seq).unwrap_or(0)),
        newest_recoverable_at: newest.map(|a| a.wall),
        age_at_t0_ms: newest.map(|a| ms_between(a.wall, o.t0_wall)),
    })
}

/// The TTL the canary's PostgreSQL name is served with now, from the DNS probe.
fn dns_ttl(svc: &DrillService) -> Option<u32> {
    let name = &svc.config.drills.canary_postgres.as_ref()?.name;
    let model = svc.shared.model.read().ok()?;
    svc.config.services.values().find_map(|s| match &s.spec {
        ProbeSpec::Dns(d) if &d.name == name => {
            match model.services.get(&s.id)?.last.as_ref()?.observation {
                Observation::Dns(ref o) => o.servers.iter().find_map(|a| a.ttl),
                _ => None,
            }
        }
        _ => None,
    })
}

/// The Markdown report of a finished run, with the run's own header and notes.
pub(super) fn markdown(rec: &DrillRunRecordV1) -> Result<String, ApiError> {
    let mut out = format!(
        "# Drill run {} — {}\n\n- state: **{}**{}\n- trigger: {} by {}\n- started {}, finished {}\n- execution: {}\n- cleanup execution: {}\n\n",
        rec.id,
        rec.drill,
        rec.state,
        rec.verdict
            .as_deref()
            .map(|v| format!(", verdict **{v}**"))
            .unwrap_or_default(),
        rec.trigger,
        rec.requested_by,
        rec.started_at,
        rec.finished_at.as_deref().unwrap_or("-"),
        rec.execution.as_deref().unwrap_or("-"),
        rec.cleanup_execution.as_deref().unwrap_or("-"),
    );
    if let Some(e) = &rec.error {
        out.push_str(&format!("**Error:** {e}\n\n"));
    }
    match &rec.report {
        Some(v) => {
            let report: DrillReport = serde_json::from_value(v.clone())
                .map_err(|e| ApiError::Internal(format!("stored report does not load: {e}")))?;
            out.push_str(&report.to_markdown());
        }
        None if rec.state == "running" => {
            return Err(ApiError::Conflict(format!(
                "drill run {} is still running (phase {}); the report exists once it ends",
                rec.id, rec.phase
            )));
        }
        None => out.push_str("No measurement was made in this run.\n"),
    }
    out.push_str("\n## Run log\n\n");
    for n in &rec.notes {
        out.push_str(&format!("- {} `{}` {}\n", n.at, n.event, n.detail));
    }
    Ok(out)
}
