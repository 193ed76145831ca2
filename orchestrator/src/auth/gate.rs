//! The gate every API authentication passes: cached tokens answer at once; anything else is
//! rate-limited per client (`limit`) and verified on a bounded pool of argon2 workers, so API
//! auth work cannot starve the HTTP runtime (nor, with probes on their own runtime, health).
//! Throttle episodes are audited by `run_auditor`: the first refusal, then a count.
//!
//! The pool is `spawn_blocking` under a semaphore of `workers` permits: argon2 never runs on an
//! async worker thread and at most `workers` run at once however many requests arrive. At most
//! `QUEUE_PER_WORKER × workers` requests wait for a permit; past that the answer is 503 at
//! once, so a many-address flood cannot build an unbounded queue in front of a real person.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::limit::{Admission, Limiter, Limits, Report};
use super::{AuthError, Authenticator, Principal, bearer};
use crate::store::{AuditEvent, Store};

/// Requests that may wait for an argon2 worker, per worker.
const QUEUE_PER_WORKER: usize = 16;
/// How often throttle reports are written to the audit log.
const AUDIT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// 401
    Auth(AuthError),
    /// 429: this client failed too often.
    Throttled {
        message: String,
        retry_after: Duration,
    },
    /// 503: every argon2 worker is busy and the queue is full.
    Busy,
}

pub struct AuthGate {
    auth: Arc<Authenticator>,
    limiter: Mutex<Limiter>,
    pool: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl AuthGate {
    pub fn new(auth: Authenticator, limits: Limits, workers: usize) -> AuthGate {
        let workers = workers.max(1);
        AuthGate {
            auth: Arc::new(auth),
            limiter: Mutex::new(Limiter::new(limits)),
            pool: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            max_waiting: QUEUE_PER_WORKER * workers,
        }
    }

    /// The users table behind the gate (console sessions re-read their user from it).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        // The limiter's data stays consistent across a panic (plain arithmetic): keep using it.
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Authenticate one request from `client` (`None`: unknown, all such share one bucket).
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Principal, Refusal> {
        let token = bearer(header).map_err(Refusal::Auth)?;
        if let Some(r) = self.auth.cached(token) {
            return r.map_err(Refusal::Auth);
        }
        let client = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let user = self.auth.claimed_user(token);
        let admission = self
            .limiter()
            .admit(client, user, Instant::now(), jiff::Timestamp::now());
        if let Admission::Refused { key, retry_after } = admission {
            metrics::counter!("niledr_auth_refused_total", "limit" => key.limit()).increment(1);
            let limits = self.limiter().limits();
            let (allowed, whom) = match key.user() {
                Some(u) => (limits.per_client_user, format!("{client} for user {u}")),
                None => (limits.per_client, client.to_string()),
            };
            let secs = retry_after.as_secs() + 1;
            return Err(Refusal::Throttled {
                message: format!(
                    "too many failed authentication attempts from {whom} (at most {allowed} per {}); try again in {secs} s",
                    humantime::format_duration(limits.window)
                ),
                retry_after: Duration::from_secs(secs),
            });
        }
        if user.is_none() {
            // Malformed or unknown user: judged without argon2, and it stays charged.
            return Err(Refusal::Auth(AuthError::Invalid));
        }
        let r = self.verify_on_pool(token).await;
        if !matches!(r, Err(Refusal::Auth(_))) {
            self.limiter().refund(client, user, Instant::now());
        }
        r
    }

    /// One argon2 verification on the bounded pool.
    async fn verify_on_pool(&self, token: &str) -> Result<Principal, Refusal> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!("niledr_auth_refused_total", "limit" => "busy").increment(1);
            return Err(Refusal::Busy);
        }
        let permit = self.pool.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(permit) = permit else {
            return Err(Refusal::Busy);
        };
        let auth = self.auth.clone();
        let token = token.to_string();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            auth.verify(&token)
        })
        .await;
        match joined {
            Ok(r) => r.map_err(Refusal::Auth),
            Err(e) => {
                tracing::warn!("a token verification task failed: {e}");
                Err(Refusal::Busy)
            }
        }
    }

    fn sweep(&self, closing: bool) -> Vec<Report> {
        self.limiter().sweep(Instant::now(), closing)
    }
}

/// Write throttle reports to the audit log every second until `cancel`, then end every episode.
pub async fn run_auditor(gate: Arc<AuthGate>, store: Arc<Store>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(AUDIT_EVERY);
    loop {
        let closing = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tick.tick() => false,
        };
        let reports = gate.sweep(closing);
        if !reports.is_empty() {
            let window = gate.limiter().limits().window;
            let store = store.clone();
            let written =
                tokio::task::spawn_blocking(move || audit(&store, &reports, window)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("cannot audit authentication refusals: {e:#}"),
                Err(e) => tracing::error!("the authentication audit task failed: {e}"),
            }
        }
        if closing {
            return;
        }
    }
}

fn audit(store: &Store, reports: &[Report], window: Duration) -> anyhow::Result<()> {
    let events = reports
        .iter()
        .map(|r| match r {
            Report::Started {
                key,
                at,
                retry_after,
            } => {
                tracing::warn!(
                    client = %key.client(),
                    user = key.user().unwrap_or("-"),
                    limit = key.limit(),
                    "refusing authentication attempts: too many failures; refusals are counted and audited when the burst ends"
                );
                AuditEvent {
                    actor: "niledr",
                    action: "auth.throttled",
                    detail: serde_json::json!({
                        "client": key.client().to_string(),
                        "user": key.user(),
                        "limit": key.limit(),
                        "window": humantime::format_duration(window).to_string(),
                        "at": at.to_string(),
                        "retry_after_s": retry_after.as_secs() + 1,
                    }),
                }
            }
            Report::Summary {
                key,
                first,
                last,
                refused,
                ended,
            } => {
                tracing::warn!(
                    client = %key.client(),
                    user = key.user().unwrap_or("-"),
                    limit = key.limit(),
                    refused,
                    ended,
                    "authentication refusals"
                );
                AuditEvent {
                    actor: "niledr",
                    action: "auth.throttle_summary",
                    detail: serde_json::json!({
                        "client": key.client().to_string(),
                        "user": key.user(),
                        "limit": key.limit(),
                        "refused": refused,
                        "first": first.to_string(),
                        "last": last.to_string(),
                        "ended": ended,
                    }),
                }
            }
        })
        .collect();
    store.append_audit(events)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, add_user, load_users};

    fn gate(dir: &std::path::Path, workers: usize) -> (AuthGate, String) {
        let path = dir.join("users.toml");
        let token = add_user(&path, "amira", Role::Approver, &[]).unwrap();
        let auth = Authenticator::new(load_users(&path).unwrap());
        let limits = Limits {
            per_client: 3,
            per_client_user: 2,
            window: Duration::from_secs(600),
        };
        (AuthGate::new(auth, limits, workers), token)
    }

    #[tokio::test]
    async fn a_flood_from_one_client_does_not_lock_out_another() {
        let dir = tempfile::tempdir().unwrap();
        let (g, token) = gate(dir.path(), 1);
        let a = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        let b = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        let wrong = Some("Bearer ndr_amira_0000");
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            outcomes.push(g.authenticate(wrong, a).await);
        }
        assert_eq!(outcomes[0], Err(Refusal::Auth(AuthError::Invalid)));
        assert_eq!(outcomes[1], Err(Refusal::Auth(AuthError::Invalid)));
        for o in &outcomes[2..] {
            assert!(
                matches!(o, Err(Refusal::Throttled { message, .. }) if message.contains("for user amira")),
                "{o:?}"
            );
        }
        // The right token from another client works; from the flooding client it is refused
        // until verified once elsewhere, then the cache answers everywhere.
        let right = format!("Bearer {token}");
        assert!(matches!(
            g.authenticate(Some(&right), a).await,
            Err(Refusal::Throttled { .. })
        ));
        assert_eq!(g.authenticate(Some(&right), b).await.unwrap().name, "amira");
        assert_eq!(g.authenticate(Some(&right), a).await.unwrap().name, "amira");
        let reports = g.sweep(true);
        let refused: u64 = reports
            .iter()
            .map(|r| match r {
                Report::Summary { refused, .. } => *refused,
                Report::Started { .. } => 0,
            })
            .sum();
        assert_eq!(refused, 4, "{reports:?}");
    }

    #[tokio::test]
    async fn concurrent_attempts_are_charged_before_argon2() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = gate(dir.path(), 1);
        let g = Arc::new(g);
        let a = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.authenticate(Some("Bearer ndr_amira_1"), a).await })
            })
            .collect();
        let mut invalid = 0;
        for t in tasks {
            if t.await.unwrap() == Err(Refusal::Auth(AuthError::Invalid)) {
                invalid += 1;
            }
        }
        assert_eq!(
            invalid, 2,
            "only the per-(client, user) allowance reached argon2"
        );
    }
}
