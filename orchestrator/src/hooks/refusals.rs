//! Refused hook calls are audited and logged, but a flood of bad signatures must not flood
//! the audit chain or the log: per source, the first `PER_WINDOW` refusals of each minute
//! are audited (and logged) one by one; the rest are counted, and the count is audited with
//! the next refusal that is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use niledr_web::HookSource;

pub const WINDOW: Duration = Duration::from_secs(60);
pub const PER_WINDOW: u32 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// Audit this refusal; `suppressed` refusals were counted and not audited before it.
    Audit { suppressed: u64 },
    /// Count it only.
    Count,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    audited: u32,
}

#[derive(Debug, Default)]
pub struct RefusalLog {
    inner: Mutex<(HashMap<HookSource, Window>, HashMap<HookSource, u64>)>,
}

impl RefusalLog {
    pub fn note(&self, source: HookSource, now: Instant) -> Note {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (windows, counted) = &mut *g;
        let w = windows.entry(source).or_insert(Window {
            start: now,
            audited: 0,
        });
        if now.duration_since(w.start) >= WINDOW {
            *w = Window {
                start: now,
                audited: 0,
            };
        }
        if w.audited < PER_WINDOW {
            w.audited += 1;
            Note::Audit {
                suppressed: counted.remove(&source).unwrap_or(0),
            }
        } else {
            *counted.entry(source).or_insert(0) += 1;
            Note::Count
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_counted_and_the_count_audited_later() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for _ in 0..PER_WINDOW {
            assert_eq!(
                log.note(HookSource::PagerDuty, t0),
                Note::Audit { suppressed: 0 }
            );
        }
        for _ in 0..5 {
            assert_eq!(log.note(HookSource::PagerDuty, t0), Note::Count);
        }
        // Another source has its own budget.
        assert_eq!(
            log.note(HookSource::Generic, t0),
            Note::Audit { suppressed: 0 }
        );
        // The next window's first refusal carries the count.
        let t1 = t0 + WINDOW;
        assert_eq!(
            log.note(HookSource::PagerDuty, t1),
            Note::Audit { suppressed: 5 }
        );
        assert_eq!(
            log.note(HookSource::PagerDuty, t1),
            Note::Audit { suppressed: 0 }
        );
    }
}
