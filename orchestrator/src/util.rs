//! Small shared helpers: `poll_until`, the one "check until a deadline" loop.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Call `check` every `every` until it answers `Ok(true)` (→ `Ok(())`), fails (→
/// `Err(Some(e))`, at once) or `deadline` passes (→ `Err(None)`). `check` runs at least once.
pub async fn poll_until<F, Fut, E>(
    deadline: Instant,
    every: Duration,
    mut check: F,
) -> Result<(), Option<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
{
    loop {
        if check().await.map_err(Some)? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(None);
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn answers_true_error_or_deadline() {
        let start = Instant::now();
        let mut n = 0;
        let r: Result<(), Option<&str>> = poll_until(
            start + Duration::from_secs(1),
            Duration::from_millis(100),
            || {
                n += 1;
                let k = n;
                async move { Ok(k == 3) }
            },
        )
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(n, 3);
        let r: Result<(), Option<&str>> = poll_until(
            start + Duration::from_secs(1),
            Duration::from_millis(100),
            || async { Ok(false) },
        )
        .await;
        assert_eq!(r, Err(None));
        assert!(Instant::now() >= start + Duration::from_secs(1));
        let r: Result<(), Option<&str>> = poll_until(
            start + Duration::from_secs(60),
            Duration::from_millis(100),
            || async { Err("broken") },
        )
        .await;
        assert_eq!(r, Err(Some("broken")));
    }
}
