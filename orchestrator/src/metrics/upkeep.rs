//! The metrics' background task: drains histogram samples into their buckets (the recorder
//! holds raw samples until then, so an unscraped daemon would grow without bound) and
//! verifies the audit hash chain periodically for `niledr_audit_chain_valid`.

use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use super::families as f;
use crate::audit::VerifyReport;
use crate::store::Store;

/// How often histogram samples are folded into buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How often the whole audit chain is verified (it is read in full each time).
const AUDIT_EVERY: Duration = Duration::from_secs(300);

/// Run until `stop`: upkeep every `UPKEEP_EVERY`, the audit chain at start and every
/// `AUDIT_EVERY`.
pub async fn run(handle: PrometheusHandle, store: Arc<Store>, stop: CancellationToken) {
    let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
    let mut audit = tokio::time::interval(AUDIT_EVERY);
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = upkeep.tick() => handle.run_upkeep(),
            _ = audit.tick() => {
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.verify_audit()).await {
                    Ok(Ok(report)) => audit_verified(&report, jiff::Timestamp::now()),
                    Ok(Err(e)) => tracing::warn!("audit chain verification for metrics failed to read: {e:#}"),
                    Err(e) => tracing::warn!("audit chain verification task: {e}"),
                }
            }
        }
    }
}

/// Publish one verification's result.
pub fn audit_verified(report: &VerifyReport, at: jiff::Timestamp) {
    gauge!(f::AUDIT_CHAIN_VALID).set(if report.broken.is_none() { 1.0 } else { 0.0 });
    gauge!(f::AUDIT_CHAIN_ENTRIES).set(report.entries as f64);
    gauge!(f::AUDIT_VERIFIED_AT).set(at.as_second() as f64);
    if let Some((seq, why)) = &report.broken {
        tracing::error!(seq, "audit chain broken: {why}");
    }
}
