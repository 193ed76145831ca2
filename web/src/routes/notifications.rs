//! `GET /api/v1/notifications?limit=`: the outbox with each message's delivery state, for any
//! authenticated principal (viewer and above).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;

use super::executions::{Client, principal};
use crate::types::NotificationsView;
use crate::{ApiError, SharedBackend};

pub async fn list(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<NotificationsView>, ApiError> {
    principal(&b, &headers, client).await?;
    let limit = super::limit_within(&q, 100, 1000)?;
    b.notifications(limit).map(Json)
}
