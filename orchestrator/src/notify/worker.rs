//! The delivery worker: one task per receiver on the HTTP runtime (never the event loop),
//! taking that receiver's oldest unfinished outbox entry (so a PagerDuty trigger is never
//! overtaken by its resolve), marking it in flight (committed), sending it under the receiver's
//! timeout, then committing the outcome with its audit entry (`notification.delivered`,
//! `notification.failed` with the next attempt, `notification.given_up`). An entry found in
//! flight for an earlier daemon run is in doubt (it may have arrived): it is audited
//! `notification.in_doubt` and sent again with the same dedup key. In cluster mode only the
//! leader delivers, and its writes are guarded by its token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::{backoff, payload};
use crate::config::notifications::{NotificationsConfig, Receiver, ReceiverKind};
use crate::failpoint;
use crate::records::NotificationV1;
use crate::shared::Shared;
use crate::store::{AuditEvent, Store};

/// How often a receiver's task looks at the outbox when nothing wakes it (an enqueue wakes it
/// at once; a retry's due time is waited for exactly).
const POLL: Duration = Duration::from_secs(5);

pub struct Worker {
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    pub config: Arc<NotificationsConfig>,
    pub stop: CancellationToken,
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    /// Worth retrying (network error, timeout, 408, 429, 5xx).
    Retry(String),
    /// The receiver refused the message itself (other 4xx): retrying cannot help.
    Refused(String),
}

impl Worker {
    /// Run every receiver's task until `stop`.
    pub async fn run(self) {
        let me = Arc::new(self);
        // One id per daemon run: an entry in flight under another id is in doubt.
        let run_id = uuid::Uuid::now_v7().to_string();
        let mut tasks: Vec<_> = me
            .config
            .receivers
            .iter()
            .map(|r| tokio::spawn(me.clone().receiver(r.clone(), run_id.clone())))
            .collect();
        tasks.push(tokio::spawn(me.clone().orphans()));
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!("a notification delivery task ended abnormally: {e}");
            }
        }
    }

    async fn receiver(self: Arc<Self>, r: Receiver, run_id: String) {
        let client = match reqwest::Client::builder()
            .timeout(r.timeout)
            .connect_timeout(r.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(receiver = %r.name, "cannot build an HTTP client: {e}");
                return;
            }
        };
        let mut wake = self.store.outbox().subscribe();
        while !self.stop.is_cancelled() {
            let wait = if self.shared.acts() {
                match self.step(&r, &client, &run_id).await {
                    Ok(wait) => wait,
                    Err(e) => {
                        tracing::warn!(receiver = %r.name, "notification outbox: {e:#}");
                        Some(POLL)
                    }
                }
            } else {
                Some(POLL)
            };
            if let Some(d) = wait {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(d.min(POLL)) => {}
                    _ = self.stop.cancelled() => {}
                }
            }
        }
    }

    /// Entries left for a receiver the config no longer has would wait forever: once this
    /// instance acts, they are given up (audited, visible) so nobody believes they went out.
    async fn orphans(self: Arc<Self>) {
        while !self.shared.acts() {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.stop.cancelled() => return,
            }
        }
        let known: Vec<String> = self
            .config
            .receivers
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let r = self
            .blocking(move |s| {
                s.notifications()?
                    .into_iter()
                    .filter(|n| !known.contains(&n.receiver))
                    .filter(|n| !matches!(n.state.as_str(), "delivered" | "failed"))
                    .try_for_each(|n| give_up_orphan(s, n))
            })
            .await;
        if let Err(e) = r {
            tracing::warn!("notification outbox: {e:#}");
        }
    }

    /// Handle this receiver's oldest unfinished entry; `Some(wait)` when there was nothing to
    /// do now, `None` to look again at once.
    async fn step(
        &self,
        r: &Receiver,
        client: &reqwest::Client,
        run_id: &str,
    ) -> Result<Option<Duration>> {
        let name = r.name.clone();
        let head = self
            .blocking(move |s| {
                Ok(s.notifications()?.into_iter().find(|n| {
                    n.receiver == name && matches!(n.state.as_str(), "pending" | "in_flight")
                }))
            })
            .await?;
        let Some(mut n) = head else {
            return Ok(Some(POLL));
        };
        if n.state == "in_flight" {
            self.in_doubt(r, n).await?;
            return Ok(None);
        }
        let due: jiff::Timestamp = n.next_attempt_at.parse().context("next_attempt_at")?;
        let now = jiff::Timestamp::now();
        if due > now {
            let wait = due.duration_since(now).unsigned_abs();
            return Ok(Some(wait));
        }
        n.attempts += 1;
        n.state = "in_flight".into();
        n.in_flight_by = Some(run_id.to_string());
        let marked = n.clone();
        self.blocking(move |s| s.save_notification(&marked, vec![]))
            .await?;
        let outcome = tokio::select! {
            o = send(client, r, &n) => o,
            // Left in flight: in doubt at the next start, sent again under the same key.
            _ = self.stop.cancelled() => return Ok(None),
        };
        failpoint::hit(&format!("notify_after_send:{}", r.name));
        self.finish(r, n, outcome).await?;
        self.prune().await?;
        Ok(None)
    }

    /// Commit the outcome of an attempt with its audit entry.
    async fn finish(&self, r: &Receiver, mut n: NotificationV1, outcome: Outcome) -> Result<()> {
        let now = jiff::Timestamp::now();
        n.in_flight_by = None;
        let mut detail = audit_detail(r, &n);
        let action = match outcome {
            Outcome::Delivered(status) => {
                n.state = "delivered".into();
                n.delivered_at = Some(now.to_string());
                detail["status"] = status.into();
                "notification.delivered"
            }
            Outcome::Retry(e) if n.attempts < self.config.max_attempts => {
                let d = backoff::delay(
                    n.attempts,
                    self.config.backoff_initial,
                    self.config.backoff_max,
                );
                let next = now + jiff::SignedDuration::try_from(d).unwrap_or_default();
                n.state = "pending".into();
                n.next_attempt_at = next.to_string();
                n.last_error = Some(e.clone());
                detail["error"] = e.into();
                detail["next_attempt_at"] = n.next_attempt_at.clone().into();
                tracing::warn!(receiver = %r.name, id = %n.id, attempt = n.attempts, error = %n.last_error.as_deref().unwrap_or_default(), "notification not delivered; retrying at {}", n.next_attempt_at);
                "notification.failed"
            }
            Outcome::Retry(e) | Outcome::Refused(e) => {
                n.state = "failed".into();
                n.last_error = Some(e.clone());
                detail["error"] = e.into();
                tracing::error!(receiver = %r.name, id = %n.id, attempts = n.attempts, error = %n.last_error.as_deref().unwrap_or_default(), "notification given up: nobody was told ({})", n.summary);
                "notification.given_up"
            }
        };
        metrics::counter!("niledr_notifications_total", "receiver" => r.name.clone(), "outcome" => action.trim_start_matches("notification.").to_string()).increment(1);
        self.blocking(move |s| {
            s.save_notification(
                &n,
                vec![AuditEvent {
                    actor: "niledr",
                    action,
                    detail,
                }],
            )
        })
        .await
    }

    /// An entry in flight for an earlier run (or an earlier leader): it may have arrived.
    async fn in_doubt(&self, r: &Receiver, mut n: NotificationV1) -> Result<()> {
        tracing::warn!(receiver = %r.name, id = %n.id, attempt = n.attempts, "notification was in flight when niledr stopped: sending it again under the same dedup key");
        n.state = "pending".into();
        n.in_flight_by = None;
        n.next_attempt_at = jiff::Timestamp::now().to_string();
        let detail = audit_detail(r, &n);
        self.blocking(move |s| {
            s.save_notification(
                &n,
                vec![AuditEvent {
                    actor: "niledr",
                    action: "notification.in_doubt",
                    detail,
                }],
            )
        })
        .await
    }

    /// Keep the newest `keep` finished entries.
    async fn prune(&self) -> Result<()> {
        let keep = self.config.keep;
        self.blocking(move |s| {
            let finished: Vec<String> = s
                .notifications()?
                .into_iter()
                .filter(|n| matches!(n.state.as_str(), "delivered" | "failed"))
                .map(|n| n.id)
                .collect();
            let extra = finished.len().saturating_sub(keep);
            if extra > 0 {
                s.delete_notifications(&finished[..extra])?;
            }
            Ok(())
        })
        .await
    }

    /// Store calls block (an fsync, or a wait for etcd): never on an async worker thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .context("store task")?
    }
}

fn give_up_orphan(s: &Store, mut n: NotificationV1) -> Result<()> {
    tracing::error!(receiver = %n.receiver, id = %n.id, "notification given up: its receiver is no longer configured ({})", n.summary);
    n.state = "failed".into();
    n.in_flight_by = None;
    n.last_error = Some(format!("receiver {:?} is no longer configured", n.receiver));
    let detail = serde_json::json!({
        "id": n.id, "receiver": n.receiver, "event": n.event, "subject": n.subject,
        "dedup_key": n.dedup_key, "attempt": n.attempts, "error": n.last_error,
    });
    let audit = vec![AuditEvent {
        actor: "niledr",
        action: "notification.given_up",
        detail,
    }];
    s.save_notification(&n, audit)
}

/// What the audit says about an entry (never a secret: the URL is shown as its origin).
fn audit_detail(r: &Receiver, n: &NotificationV1) -> serde_json::Value {
    serde_json::json!({
        "id": n.id,
        "receiver": r.name,
        "url": r.shown_url(),
        "event": n.event,
        "subject": n.subject,
        "dedup_key": n.dedup_key,
        "action": n.action,
        "attempt": n.attempts,
    })
}

/// One attempt: POST the body for the receiver's kind, bounded by its timeout.
async fn send(client: &reqwest::Client, r: &Receiver, n: &NotificationV1) -> Outcome {
    let body = match r.kind {
        ReceiverKind::Webhook => serde_json::to_vec(&payload::slack(n)),
        ReceiverKind::Pagerduty => serde_json::to_vec(&payload::pagerduty(
            n,
            r.routing_key.as_deref().unwrap_or_default(),
        )),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return Outcome::Refused(format!("cannot serialise the message: {e}")),
    };
    let mut req = client
        .post(r.url.clone())
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("niledr/", env!("CARGO_PKG_VERSION")))
        .header("Idempotency-Key", &n.id)
        .header("X-Niledr-Delivery", &n.id)
        .header("X-Niledr-Event", &n.event)
        .header("X-Niledr-Attempt", n.attempts.to_string());
    if let Some(secret) = &r.secret {
        let ts = jiff::Timestamp::now().as_second().to_string();
        req = req
            .header("X-Niledr-Signature", payload::signature(secret, &ts, &body))
            .header("X-Niledr-Timestamp", ts);
    }
    let sent = tokio::time::timeout(r.timeout, async {
        let resp = req.body(body).send().await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, text))
    })
    .await;
    match sent {
        Err(_) => Outcome::Retry(format!("no answer within {:?}", r.timeout)),
        Ok(Err(e)) if e.is_timeout() => Outcome::Retry(format!("no answer within {:?}", r.timeout)),
        Ok(Err(e)) => Outcome::Retry(r.redact(&describe(&e))),
        Ok(Ok((status, _))) if status.is_success() => Outcome::Delivered(status.as_u16()),
        Ok(Ok((status, text))) => {
            let text: String = text.chars().take(200).collect();
            let msg = r.redact(&format!(
                "{} answered {status}: {}",
                r.shown_url(),
                text.trim()
            ));
            if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
                Outcome::Retry(msg)
            } else {
                Outcome::Refused(msg)
            }
        }
    }
}

/// A reqwest error with its causes, without the URL (it may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
