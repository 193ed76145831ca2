//! Prometheus metrics: the recorder (histogram buckets, HELP text, build info) and the
//! functions the daemon's parts call to record. `families.rs` lists every family; each
//! submodule records one area.

use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

mod drills;
mod executions;
pub mod families;
pub mod http;
mod probes;
pub mod scrape;
pub mod upkeep;

pub use drills::{drill_finished, drill_run_ended};
pub use executions::{
    OpenExecution, execution_ended, executions_init, open_executions, step_finished,
};
pub use probes::{probes_init, record_probe, record_status, status_changed};

use families::{FAMILIES, Kind};

/// Install the process-wide recorder; a second install (tests running two daemons in one
/// process) gets a detached recorder instead of failing.
pub fn install() -> PrometheusHandle {
    match builder().install_recorder() {
        Ok(h) => {
            describe();
            h
        }
        Err(_) => {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            metrics::with_local_recorder(&recorder, describe);
            handle
        }
    }
}

/// A recorder builder with every histogram's buckets (so none renders as a summary).
pub fn builder() -> PrometheusBuilder {
    FAMILIES
        .iter()
        .filter(|f| f.kind == Kind::Histogram && !f.buckets.is_empty())
        .fold(PrometheusBuilder::new(), |b, f| {
            b.set_buckets_for_metric(Matcher::Full(f.name.to_string()), f.buckets)
                .expect("only an empty bucket list is refused, and those are filtered out")
        })
}

/// HELP text for every family, and `niledr_build_info`.
pub fn describe() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.help),
        }
    }
    let mut labels = vec![("version", env!("CARGO_PKG_VERSION").to_string())];
    if let Some(commit) = option_env!("NILEDR_GIT_COMMIT").filter(|c| !c.is_empty()) {
        labels.push(("git_commit", commit.to_string()));
    }
    gauge!(families::BUILD_INFO, &labels).set(1.0);
}

#[cfg(test)]
mod tests;
