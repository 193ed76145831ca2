//! Retry delays of the outbox: exponential from `initial`, doubled after each failed attempt,
//! capped at `max`. No jitter: each receiver has a single delivery task, so there is no herd.

use std::time::Duration;

/// The delay after `failed` attempts (1 = after the first failure).
pub fn delay(failed: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = failed.saturating_sub(1).min(32);
    initial
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(max)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_initial_and_stops_at_the_cap() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(60));
        let got: Vec<u64> = (1..=8).map(|n| delay(n, i, m).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 16, 32, 60, 60, 60]);
        // Huge attempt counts neither overflow nor pass the cap.
        assert_eq!(delay(u32::MAX, i, m), m);
        assert_eq!(delay(0, i, m), i);
        let ms = Duration::from_millis(100);
        assert_eq!(
            delay(3, ms, Duration::from_secs(1)),
            Duration::from_millis(400)
        );
    }
}
