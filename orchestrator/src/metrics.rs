//! Prometheus metrics: probe outcome and latency, service health, replication lag.

use metrics::{gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use niledr_probes::{Observation, ProbeResult, Status};

/// Install the process-wide recorder; a second install (tests running two daemons in one
/// process) gets a detached recorder instead of failing.
pub fn install() -> PrometheusHandle {
    let builder = PrometheusBuilder::new();
    match builder.install_recorder() {
        Ok(h) => h,
        Err(_) => PrometheusBuilder::new().build_recorder().handle(),
    }
}

pub fn record_probe(r: &ProbeResult) {
    let labels = [("service", r.target.clone()), ("kind", r.kind.to_string())];
    gauge!("niledr_probe_up", &labels).set(if r.ok { 1.0 } else { 0.0 });
    histogram!("niledr_probe_latency_seconds", &labels).record(r.latency.as_secs_f64());
    histogram!("niledr_probe_schedule_lag_seconds").record(r.schedule_lag.as_secs_f64());
    let svc = [("service", r.target.clone())];
    match &r.observation {
        Observation::Postgres(pg) => {
            if let Some(b) = pg.lag_bytes {
                gauge!("niledr_replication_lag_bytes", &svc).set(b as f64);
            }
            if let Some(s) = pg.replay_delay_seconds {
                gauge!("niledr_replication_lag_seconds", &svc).set(s);
            }
        }
        Observation::Redis(rd) => {
            if let Some(b) = rd.offset_lag {
                gauge!("niledr_replication_lag_bytes", &svc).set(b as f64);
            }
        }
        _ => {}
    }
}

pub fn record_status(service: &str, status: Status) {
    for st in [Status::Up, Status::Degraded, Status::Down, Status::Unknown] {
        gauge!("niledr_service_status", "service" => service.to_string(), "status" => st.as_str())
            .set(if st == status { 1.0 } else { 0.0 });
    }
}

/// The last finished run of a drill: RTO, RPO and lost writes per store, and its verdict.
pub fn drill_finished(run: &crate::records::DrillRunRecordV1) {
    let Some(report) = run
        .report
        .as_ref()
        .and_then(|r| serde_json::from_value::<niledr_drills::DrillReport>(r.clone()).ok())
    else {
        return;
    };
    let drill = run.drill.clone();
    if let Some(rto) = &report.rto {
        gauge!("niledr_drill_last_rto_seconds", "drill" => drill.clone())
            .set(rto.total_ms as f64 / 1000.0);
    }
    for loss in &report.rpo {
        let labels = [("drill", drill.clone()), ("store", loss.store.to_string())];
        if let Some(ms) = loss.rpo_ms() {
            gauge!("niledr_drill_last_rpo_seconds", &labels).set(ms as f64 / 1000.0);
        }
        gauge!("niledr_drill_last_lost_writes", &labels).set(loss.lost as f64);
    }
    for v in ["met", "missed", "aborted", "not_measured"] {
        gauge!("niledr_drill_last_verdict", "drill" => drill.clone(), "verdict" => v).set(
            if report.overall.as_str() == v {
                1.0
            } else {
                0.0
            },
        );
    }
    gauge!("niledr_drill_last_run_timestamp_seconds", "drill" => drill)
        .set(jiff::Timestamp::now().as_second() as f64);
}
