//! Failpoints for crash and failure tests (cargo feature `failpoints`), from
//! `NILEDR_FAILPOINTS` (comma-separated):
//! - `after_intent:STEP`, `after_action:STEP`, `before_outcome:STEP`, `retry_scheduled:STEP`
//!   (a retry's due time is journaled, its timer not yet armed): the daemon SIGKILLs itself
//!   when it reaches that point;
//! - `notify_after_send:RECEIVER`: a notification was sent to RECEIVER (answered) and its
//!   outcome not yet committed: SIGKILL (the in-doubt resend test);
//! - `delay:STEP`: the step waits `NILEDR_FAILPOINT_DELAY_MS` (default 3000) before acting,
//!   so a test can break something for real in between (stop the DNS servers);
//! - `panic:STEP`: the step's task panics (supervision test);
//! - `skip:STEP`: the step reports done without acting (a buggy action: verification test).
//!
//! Without the feature every function is a no-op the compiler removes.

#[cfg(feature = "failpoints")]
fn listed(name: &str) -> bool {
    std::env::var("NILEDR_FAILPOINTS").is_ok_and(|list| list.split(',').any(|p| p.trim() == name))
}

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if listed(name) {
        eprintln!("failpoint {name}: SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(feature = "failpoints")]
pub async fn delay(step: &str) {
    if listed(&format!("delay:{step}")) {
        let ms = std::env::var("NILEDR_FAILPOINT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000);
        eprintln!("failpoint delay:{step}: {ms} ms");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

#[cfg(feature = "failpoints")]
pub fn panics(step: &str) -> bool {
    listed(&format!("panic:{step}"))
}

#[cfg(feature = "failpoints")]
pub fn skips(step: &str) -> bool {
    listed(&format!("skip:{step}"))
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn delay(_step: &str) {}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn panics(_step: &str) -> bool {
    false
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn skips(_step: &str) -> bool {
    false
}
