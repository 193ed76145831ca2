//! What niledr remembers of pager alerts (kept in the store's meta `hook_alerts`, so a
//! restart or Alertmanager's repeat does not open a second proposal) and the pure decision
//! of what an alert does: propose, attach to the outage's execution, count as a duplicate,
//! stay quiet as evidence, or, resolved, annotate (never cancel).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Store meta key of the alert memory: `<source>:<fingerprint>` → record.
pub const MEMORY_KEY: &str = "hook_alerts";
/// Resolved alerts are forgotten this long after they resolved.
pub const KEEP_RESOLVED_MS: i64 = 24 * 3600 * 1000;
/// Firing alerts nobody repeated for this long are forgotten (Alertmanager repeats a firing
/// alert every `repeat_interval`, 4 h by default).
pub const KEEP_SILENT_MS: i64 = 7 * 24 * 3600 * 1000;

/// One alert as remembered (versioned: it is stored).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertMemoryV1 {
    pub v: u32,
    pub source: String,
    pub fingerprint: String,
    pub matcher: String,
    pub service: String,
    pub runbook: String,
    pub name: String,
    pub summary: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub resolved_ms: Option<i64>,
    /// The proposal or execution this alert's outage belongs to.
    pub execution: Option<String>,
}

pub type Memory = BTreeMap<String, AlertMemoryV1>;

pub fn key(source: &str, fingerprint: &str) -> String {
    format!("{source}:{fingerprint}")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Open a proposal for the runbook.
    Propose,
    /// The outage already has this execution (open now, or opened by another of its
    /// alerts): the alert is noted on it.
    Attach(String),
    /// The alert already belongs to this execution (a repeat): nothing new.
    Duplicate(Option<String>),
    /// Evidence only, no proposal (a drill runs, triggers are paused, the service was
    /// failed over from): the reason.
    Quiet(String),
    /// Resolved: note it on the execution, if any. Nothing is ever cancelled.
    Annotate(Option<String>),
}

/// The execution this runbook's outage already has: one open for the runbook now, else
/// one a still-firing alert of the same runbook opened.
pub fn outage_execution(memory: &Memory, runbook: &str, open: Option<&str>) -> Option<String> {
    open.map(str::to_string).or_else(|| {
        memory
            .values()
            .filter(|m| m.runbook == runbook && m.status == "firing")
            .find_map(|m| m.execution.clone())
    })
}

/// A firing alert: `prev` is what is remembered of it, `outage` the execution its runbook's
/// outage has (`outage_execution`), `quiet` why triggers are quiet now.
pub fn firing(
    prev: Option<&AlertMemoryV1>,
    outage: Option<String>,
    quiet: Option<String>,
) -> Decision {
    if let Some(p) = prev
        && p.status == "firing"
        && p.execution.is_some()
    {
        return Decision::Duplicate(p.execution.clone());
    }
    if let Some(q) = quiet {
        return Decision::Quiet(q);
    }
    match outage {
        Some(id) => Decision::Attach(id),
        None => Decision::Propose,
    }
}

pub fn resolved(prev: Option<&AlertMemoryV1>) -> Decision {
    match prev {
        Some(p) if p.status == "firing" => Decision::Annotate(p.execution.clone()),
        Some(p) => Decision::Duplicate(p.execution.clone()),
        None => Decision::Annotate(None),
    }
}

/// Forget what no longer matters (see `KEEP_RESOLVED_MS`, `KEEP_SILENT_MS`).
pub fn prune(memory: &mut Memory, now_ms: i64) {
    memory.retain(|_, m| match m.resolved_ms {
        Some(r) => now_ms - r < KEEP_RESOLVED_MS,
        None => now_ms - m.last_seen_ms < KEEP_SILENT_MS,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fp: &str, runbook: &str, status: &str, execution: Option<&str>) -> AlertMemoryV1 {
        AlertMemoryV1 {
            v: 1,
            source: "alertmanager".into(),
            fingerprint: fp.into(),
            matcher: "m".into(),
            service: "khartoum-postgres".into(),
            runbook: runbook.into(),
            name: "PostgresDown".into(),
            summary: String::new(),
            status: status.into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            resolved_ms: (status == "resolved").then_some(0),
            execution: execution.map(str::to_string),
        }
    }

    #[test]
    fn one_proposal_per_outage() {
        let mut m = Memory::new();
        // First sight: propose.
        assert_eq!(
            firing(None, outage_execution(&m, "rb", None), None),
            Decision::Propose
        );
        let a = rec("fa", "rb", "firing", Some("ex1"));
        m.insert(key("alertmanager", "fa"), a.clone());
        // Alertmanager's repeat (and a restart: the memory is stored): a duplicate.
        assert_eq!(
            firing(Some(&a), outage_execution(&m, "rb", None), None),
            Decision::Duplicate(Some("ex1".into()))
        );
        // Another alert of the same outage (another Prometheus, PagerDuty): attached to it,
        // even after the proposal was rejected or expired.
        assert_eq!(
            firing(None, outage_execution(&m, "rb", None), None),
            Decision::Attach("ex1".into())
        );
        // An execution open for the runbook (a probe trigger's, a person's) takes the alert.
        let empty = Memory::new();
        assert_eq!(
            firing(None, outage_execution(&empty, "rb", Some("ex9")), None),
            Decision::Attach("ex9".into())
        );
        // Another runbook's outage is not this one.
        assert_eq!(
            firing(None, outage_execution(&m, "other", None), None),
            Decision::Propose
        );
    }

    #[test]
    fn quiet_holds_evidence_and_proposes_once_it_ends() {
        let q = Some("a drill is running".to_string());
        assert_eq!(
            firing(None, None, q.clone()),
            Decision::Quiet("a drill is running".into())
        );
        // Remembered without an execution: the next repeat after the quiet ends proposes.
        let quiet = rec("fa", "rb", "firing", None);
        assert_eq!(
            firing(Some(&quiet), None, q),
            Decision::Quiet("a drill is running".into())
        );
        assert_eq!(firing(Some(&quiet), None, None), Decision::Propose);
    }

    #[test]
    fn resolved_annotates_and_a_new_firing_is_a_new_outage() {
        let a = rec("fa", "rb", "firing", Some("ex1"));
        assert_eq!(resolved(Some(&a)), Decision::Annotate(Some("ex1".into())));
        assert_eq!(resolved(None), Decision::Annotate(None));
        let r = rec("fa", "rb", "resolved", Some("ex1"));
        assert_eq!(resolved(Some(&r)), Decision::Duplicate(Some("ex1".into())));
        // Firing again after it resolved: a new outage, a new proposal.
        let mut m = Memory::new();
        m.insert(key("alertmanager", "fa"), r.clone());
        assert_eq!(
            firing(Some(&r), outage_execution(&m, "rb", None), None),
            Decision::Propose
        );
    }

    #[test]
    fn prune_forgets_old_resolved_and_silent_alerts() {
        let mut m = Memory::new();
        let mut old = rec("old", "rb", "resolved", None);
        old.resolved_ms = Some(0);
        let mut fresh = rec("fresh", "rb", "resolved", None);
        fresh.resolved_ms = Some(KEEP_RESOLVED_MS);
        let mut silent = rec("silent", "rb", "firing", None);
        silent.last_seen_ms = 0;
        let mut loud = rec("loud", "rb", "firing", None);
        loud.last_seen_ms = KEEP_SILENT_MS;
        for r in [old, fresh, silent, loud] {
            m.insert(r.fingerprint.clone(), r);
        }
        prune(&mut m, KEEP_SILENT_MS + 1);
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["loud"]);
        let mut m2 = Memory::new();
        let mut fresh = rec("fresh", "rb", "resolved", None);
        fresh.resolved_ms = Some(1000);
        m2.insert("fresh".into(), fresh);
        prune(&mut m2, KEEP_RESOLVED_MS);
        assert_eq!(m2.len(), 1);
    }
}
