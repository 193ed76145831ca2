//! Preconditions: the slice of the world approvers saw (roles, lag, DNS answers, connection
//! strings), and `drift`: what moved beyond tolerance between approval and start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::approval::Tolerance;
use crate::catalog::ServiceKind;
use crate::schema::Runbook;
use crate::world::{ObservedRole, WorldSnapshot};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicePrecondition {
    pub reachable: bool,
    pub role: Option<ObservedRole>,
    pub timeline: Option<u32>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preconditions {
    /// Data stores the runbook names.
    pub services: BTreeMap<String, ServicePrecondition>,
    /// DNS name → every address the authoritative servers answer.
    pub dns: BTreeMap<String, Vec<String>>,
    pub connstr: BTreeMap<String, Option<String>>,
}

/// The preconditions of `runbook` in `world`. Unobserved things are recorded as unknown
/// (unreachable / `None`), so their appearance later counts as drift.
pub fn preconditions(runbook: &Runbook, world: &WorldSnapshot) -> Preconditions {
    let services = runbook
        .targets
        .services
        .iter()
        .filter(|(_, s)| s.kind == ServiceKind::Postgres || s.kind == ServiceKind::Redis)
        .map(|(id, _)| {
            let o = world.services.get(id);
            let p = ServicePrecondition {
                reachable: o.is_some_and(|o| o.reachable),
                role: o.and_then(|o| o.role),
                timeline: o.and_then(|o| o.timeline),
                lag_bytes: o.and_then(|o| o.lag_bytes),
                lag_seconds: o.and_then(|o| o.lag_seconds),
            };
            (id.clone(), p)
        })
        .collect();
    let dns = runbook
        .targets
        .dns_names
        .iter()
        .map(|n| {
            (
                n.clone(),
                world.dns.get(n).map(|d| d.union()).unwrap_or_default(),
            )
        })
        .collect();
    let connstr = runbook
        .targets
        .connstr_targets
        .keys()
        .map(|t| (t.clone(), world.connstr.get(t).cloned().flatten()))
        .collect();
    Preconditions {
        services,
        dns,
        connstr,
    }
}

/// What changed between `approved` and `now` beyond `tolerance`; empty means the approvals
/// still hold.
pub fn drift(approved: &Preconditions, now: &Preconditions, tolerance: &Tolerance) -> Vec<String> {
    let mut out = Vec::new();
    let role = |r: Option<ObservedRole>| r.map_or("unknown", ObservedRole::as_str);
    for (id, a) in &approved.services {
        let Some(n) = now.services.get(id) else {
            out.push(format!("{id} is no longer observed"));
            continue;
        };
        if a.reachable != n.reachable {
            out.push(if n.reachable {
                format!("{id} did not answer at approval and answers now")
            } else {
                format!("{id} answered at approval and does not answer now")
            });
        }
        if a.role != n.role {
            out.push(format!(
                "{id} was {} at approval and is {} now",
                role(a.role),
                role(n.role)
            ));
        }
        if a.timeline != n.timeline && a.timeline.is_some() && n.timeline.is_some() {
            out.push(format!(
                "{id} timeline changed from {} to {}",
                a.timeline.unwrap_or_default(),
                n.timeline.unwrap_or_default()
            ));
        }
        match (a.lag_bytes, n.lag_bytes) {
            (Some(was), Some(is)) if is > was.saturating_add(tolerance.lag_bytes) => {
                out.push(format!(
                    "{id} lag grew from {was} to {is} bytes (tolerance {} bytes)",
                    tolerance.lag_bytes
                ))
            }
            (Some(was), None) => out.push(format!(
                "{id} lag was {was} bytes at approval and cannot be measured now"
            )),
            _ => {}
        }
        if let (Some(was), Some(is)) = (a.lag_seconds, n.lag_seconds)
            && is > was + tolerance.lag_seconds as f64
        {
            out.push(format!(
                "{id} lag grew from {was:.1} s to {is:.1} s (tolerance {} s)",
                tolerance.lag_seconds
            ));
        }
    }
    for (name, was) in &approved.dns {
        let is = now.dns.get(name).cloned().unwrap_or_default();
        if *was != is {
            out.push(format!(
                "{name} answered [{}] at approval and answers [{}] now",
                was.join(", "),
                is.join(", ")
            ));
        }
    }
    for (target, was) in &approved.connstr {
        let is = now.connstr.get(target).cloned().flatten();
        if *was != is {
            out.push(format!(
                "connection string {target} changed since approval ({} → {})",
                was.as_deref().unwrap_or("unknown"),
                is.as_deref().unwrap_or("unknown")
            ));
        }
    }
    out
}
