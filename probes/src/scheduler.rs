//! Runs every target on its own interval in its own task, so a hung target never delays the
//! others; each run has a hard timeout, and results flow to one channel as data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::kinds::{Prober, http_client};
use crate::result::{Observation, ProbeResult};
use crate::target::Target;

/// Counters the scheduler keeps for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub probes: AtomicU64,
    pub failures: AtomicU64,
    pub timeouts: AtomicU64,
    /// Results that could not be delivered because the receiver was gone.
    pub dropped: AtomicU64,
}

pub struct Scheduler {
    tracker: TaskTracker,
    cancel: CancellationToken,
    pub stats: Arc<SchedulerStats>,
}

impl Scheduler {
    /// Start one task per target. Results go to `tx`; the first run of each target is spread
    /// over its interval so thousands of targets do not fire in the same millisecond.
    pub fn start(
        targets: Vec<Target>,
        tx: mpsc::Sender<ProbeResult>,
        cancel: CancellationToken,
    ) -> Scheduler {
        let tracker = TaskTracker::new();
        let stats = Arc::new(SchedulerStats::default());
        let http = http_client();
        let n = targets.len().max(1) as u32;
        for (i, target) in targets.into_iter().enumerate() {
            let offset = target.interval.mul_f64(i as f64 / n as f64);
            let prober = Prober::new(&target.spec, &http);
            tracker.spawn(run_target(
                target,
                prober,
                offset,
                tx.clone(),
                cancel.clone(),
                stats.clone(),
            ));
        }
        tracker.close();
        Scheduler {
            tracker,
            cancel,
            stats,
        }
    }

    /// Stop all probe tasks and wait for them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }
}

async fn run_target(
    target: Target,
    mut prober: Prober,
    offset: Duration,
    tx: mpsc::Sender<ProbeResult>,
    cancel: CancellationToken,
    stats: Arc<SchedulerStats>,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + offset, target.interval);
    // A probe that overran its slot skips the missed ticks instead of bursting to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let scheduled = tokio::select! {
            _ = cancel.cancelled() => return,
            t = ticks.tick() => t,
        };
        let schedule_lag = Instant::now().saturating_duration_since(scheduled);
        let result = probe_once(&target, &mut prober, schedule_lag, &stats).await;
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = tx.send(result) => if sent.is_err() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            },
        }
    }
}

/// Run one probe under its timeout and turn the outcome into a result.
pub async fn probe_once(
    target: &Target,
    prober: &mut Prober,
    schedule_lag: Duration,
    stats: &SchedulerStats,
) -> ProbeResult {
    let started_at = jiff::Timestamp::now();
    let start = Instant::now();
    let outcome = tokio::time::timeout(target.timeout, prober.run(target.timeout)).await;
    let latency = start.elapsed();
    stats.probes.fetch_add(1, Ordering::Relaxed);
    let (ok, error, observation) = match outcome {
        Ok(Ok(obs)) => (true, None, obs),
        Ok(Err(e)) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            (false, Some(e), Observation::None)
        }
        Err(_) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            stats.timeouts.fetch_add(1, Ordering::Relaxed);
            // The connection's state is unknown after a timeout: start over next time.
            prober.reset();
            (
                false,
                Some(format!("timed out after {} ms", target.timeout.as_millis())),
                Observation::None,
            )
        }
    };
    ProbeResult {
        target: target.id.clone(),
        kind: target.spec.kind(),
        ok,
        started_at,
        latency,
        schedule_lag,
        error,
        observation,
    }
}
