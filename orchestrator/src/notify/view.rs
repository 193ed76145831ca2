//! Outbox entries → the API's wire views (`GET /api/v1/notifications`). Receivers show their
//! URL as an origin only; routing keys and secrets are never part of a view.

use niledr_web::ApiError;
use niledr_web::types::{NotificationReceiverView, NotificationView, NotificationsView};

use crate::config::notifications::{NotificationsConfig, ReceiverKind};
use crate::records::NotificationV1;
use crate::store::Store;

pub fn notifications_view(
    config: &NotificationsConfig,
    store: &Store,
    limit: usize,
) -> Result<NotificationsView, ApiError> {
    let all = store
        .notifications()
        .map_err(|e| ApiError::Internal(format!("reading the outbox: {e:#}")))?;
    Ok(NotificationsView {
        receivers: config
            .receivers
            .iter()
            .map(|r| NotificationReceiverView {
                name: r.name.clone(),
                kind: match r.kind {
                    ReceiverKind::Webhook => "webhook".into(),
                    ReceiverKind::Pagerduty => "pagerduty".into(),
                },
                url: r.shown_url(),
                events: r.events.iter().map(|e| e.as_str().to_string()).collect(),
            })
            .collect(),
        notifications: all
            .into_iter()
            .rev()
            .take(limit)
            .map(|n| view(n, config.max_attempts))
            .collect(),
    })
}

fn view(n: NotificationV1, max_attempts: u32) -> NotificationView {
    let pending = n.state == "pending";
    NotificationView {
        id: n.id,
        receiver: n.receiver,
        event: n.event,
        subject: n.subject,
        dedup_key: n.dedup_key,
        action: n.action,
        severity: n.severity,
        summary: n.summary,
        details: n.details,
        link: n.link,
        created_at: n.created_at,
        state: n.state,
        attempts: n.attempts,
        max_attempts,
        next_attempt_at: pending.then_some(n.next_attempt_at),
        last_error: n.last_error,
        delivered_at: n.delivered_at,
    }
}
