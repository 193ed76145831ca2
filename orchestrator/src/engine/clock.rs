//! The engine's time: unix milliseconds anchored to the wall clock once, at start, and
//! advanced by the monotonic clock after that. A wall-clock step while niledr runs (NTP, an
//! operator's `date -s`) then neither expires a proposal or an approval early nor stretches
//! it, and never skips a trigger's debounce; across a restart the recorded deadlines (wall
//! time) re-anchor. Time enters through a `Source` the tests drive.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the two clocks come from.
pub trait Source: Send + Sync {
    /// Wall clock, unix milliseconds.
    fn wall_ms(&self) -> u64;
    /// Monotonic time since some fixed point.
    fn mono(&self) -> Duration;
}

/// The system's clocks.
pub struct SystemSource {
    start: Instant,
}

impl Source for SystemSource {
    fn wall_ms(&self) -> u64 {
        u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
    }

    fn mono(&self) -> Duration {
        self.start.elapsed()
    }
}

#[derive(Clone)]
pub struct Clock {
    source: Arc<dyn Source>,
    anchor_wall_ms: u64,
    anchor_mono: Duration,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::new(Arc::new(SystemSource {
            start: Instant::now(),
        }))
    }

    pub fn new(source: Arc<dyn Source>) -> Clock {
        Clock {
            anchor_wall_ms: source.wall_ms(),
            anchor_mono: source.mono(),
            source,
        }
    }

    /// Unix milliseconds: the wall clock at the anchor plus monotonic time since.
    pub fn now_ms(&self) -> u64 {
        let since = self.source.mono().saturating_sub(self.anchor_mono);
        self.anchor_wall_ms
            .saturating_add(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// Monotonic time, for debounces measured within this process.
    pub fn mono(&self) -> Duration {
        self.source.mono()
    }
}

/// A trigger's debounce: the service has been seen down, in this process, for at least
/// `for_ms` of monotonic time since `first_seen`.
pub fn debounced(first_seen: Duration, now: Duration, for_ms: u64) -> bool {
    now.saturating_sub(first_seen) >= Duration::from_millis(for_ms)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use niledr_runbooks::{Approval, ApprovalPolicy, Decision, Status};

    use super::*;

    /// Clocks a test moves by hand.
    #[derive(Default)]
    struct Manual {
        wall_ms: AtomicU64,
        mono_ms: AtomicU64,
    }

    impl Source for Manual {
        fn wall_ms(&self) -> u64 {
            self.wall_ms.load(Ordering::SeqCst)
        }
        fn mono(&self) -> Duration {
            Duration::from_millis(self.mono_ms.load(Ordering::SeqCst))
        }
    }

    const HOUR: u64 = 3_600_000;

    fn approval(user: &str, role: &str, at_ms: u64) -> Approval {
        Approval {
            user: user.into(),
            roles: vec![role.into()],
            decision: Decision::Approve,
            comment: None,
            at_ms,
            digest: "d".into(),
            break_glass_reason: None,
        }
    }

    fn approved(policy: &ApprovalPolicy, given: &[Approval], now: u64) -> bool {
        matches!(
            niledr_runbooks::approval::status(policy, given, "d", now),
            Status::Approved { .. }
        )
    }

    #[test]
    fn a_wall_clock_step_neither_expires_nor_stretches() {
        let src = Arc::new(Manual::default());
        src.wall_ms.store(1_000 * HOUR, Ordering::SeqCst);
        let clock = Clock::new(src.clone());
        let policy = ApprovalPolicy {
            roles: vec!["incident_commander".into(), "engineering_lead".into()],
            ..ApprovalPolicy::default()
        };
        let given = [
            approval("amira", "incident_commander", clock.now_ms()),
            approval("omar", "engineering_lead", clock.now_ms()),
        ];
        assert!(approved(&policy, &given, clock.now_ms()));
        // The wall clock jumps an hour ahead: the approvals (30 min lifetime) still count.
        src.wall_ms.fetch_add(HOUR, Ordering::SeqCst);
        src.mono_ms.fetch_add(60_000, Ordering::SeqCst);
        assert!(
            approved(&policy, &given, clock.now_ms()),
            "expired by a clock step"
        );
        // It jumps two hours back: 31 minutes of real time still end them.
        src.wall_ms.fetch_sub(2 * HOUR, Ordering::SeqCst);
        src.mono_ms.fetch_add(30 * 60_000, Ordering::SeqCst);
        assert!(
            !approved(&policy, &given, clock.now_ms()),
            "stretched by a clock step"
        );
        assert_eq!(clock.now_ms(), 1_000 * HOUR + 31 * 60_000);
    }

    #[test]
    fn a_wall_clock_step_never_skips_a_debounce() {
        let src = Arc::new(Manual::default());
        let clock = Clock::new(src.clone());
        let first = clock.mono();
        src.wall_ms.fetch_add(HOUR, Ordering::SeqCst);
        assert!(
            !debounced(first, clock.mono(), 30_000),
            "skipped by a clock step"
        );
        src.mono_ms.fetch_add(29_999, Ordering::SeqCst);
        assert!(!debounced(first, clock.mono(), 30_000));
        src.mono_ms.fetch_add(1, Ordering::SeqCst);
        assert!(debounced(first, clock.mono(), 30_000));
    }
}
