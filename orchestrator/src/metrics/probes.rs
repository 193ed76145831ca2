//! Probe and health metrics: probe outcome, latency and failures, replication lag, service
//! status, committed status changes. (Maintenance mode, current site roles and cold-site
//! backup ages are recorded by `crate::topology`, under the names declared in `families.rs`.)

use metrics::{counter, gauge, histogram};
use niledr_probes::{Observation, ProbeResult, Status};

use super::families as f;
use crate::records::StatusChangeV1;

/// Every status, for one-hot gauges.
pub const STATUSES: [Status; 4] = [Status::Up, Status::Degraded, Status::Down, Status::Unknown];

pub fn record_probe(r: &ProbeResult) {
    let labels = [("service", r.target.clone()), ("kind", r.kind.to_string())];
    gauge!(f::PROBE_UP, &labels).set(if r.ok { 1.0 } else { 0.0 });
    histogram!(f::PROBE_LATENCY, &labels).record(r.latency.as_secs_f64());
    if !r.ok {
        counter!(f::PROBE_FAILURES, &labels).increment(1);
    }
    histogram!(f::PROBE_SCHEDULE_LAG).record(r.schedule_lag.as_secs_f64());
    let svc = [("service", r.target.clone())];
    match &r.observation {
        Observation::Postgres(pg) => {
            if let Some(b) = pg.lag_bytes {
                gauge!(f::REPLICATION_LAG_BYTES, &svc).set(b as f64);
            }
            if let Some(s) = pg.replay_delay_seconds {
                gauge!(f::REPLICATION_LAG_SECONDS, &svc).set(s);
            }
        }
        Observation::Redis(rd) => {
            if let Some(b) = rd.offset_lag {
                gauge!(f::REPLICATION_LAG_BYTES, &svc).set(b as f64);
            }
        }
        _ => {}
    }
}

/// Every probed service's `niledr_probe_failures_total` at 0, so its first failure shows as an
/// increase instead of a new series.
pub fn probes_init<'a>(targets: impl IntoIterator<Item = (&'a str, &'static str)>) {
    for (service, kind) in targets {
        counter!(f::PROBE_FAILURES, "service" => service.to_string(), "kind" => kind).increment(0);
    }
}

pub fn record_status(service: &str, status: Status) {
    one_hot(f::SERVICE_STATUS, "service", service, status);
}

/// `name{<scope>=id, status=…}`: 1 for `status`, 0 for the others.
pub(super) fn one_hot(name: &'static str, scope: &'static str, id: &str, status: Status) {
    for st in STATUSES {
        gauge!(name, scope => id.to_string(), "status" => st.as_str()).set(if st == status {
            1.0
        } else {
            0.0
        });
    }
}

/// A status change the event loop committed.
pub fn status_changed(c: &StatusChangeV1) {
    counter!(f::STATUS_CHANGES, "scope" => c.scope.clone(), "id" => c.id.clone(), "to" => c.to.clone())
        .increment(1);
}
