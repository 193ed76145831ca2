//! The live topology (`/api/v1/topology`), maintenance mode (`/api/v1/triggers`, pause and
//! resume with a reason: operator or above) and the load-balancer endpoints (`/api/v1/primary`,
//! `/api/v1/sites/{site}/health`, `/api/v1/services/{id}/health`: no auth, a tiny body, 200
//! when up, 503 otherwise, 404 for an unknown name).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::executions::{Client, body, principal};
use crate::types::{LbHealthView, TopologyView, TriggersRequest, TriggersView};
use crate::{ApiError, SharedBackend};

pub async fn topology(State(b): State<SharedBackend>) -> Json<TopologyView> {
    Json(b.topology())
}

fn lb(view: LbHealthView) -> Response {
    let code = if view.status == "up" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(view)).into_response()
}

pub async fn primary(State(b): State<SharedBackend>) -> Response {
    lb(b.primary_health())
}

pub async fn site_health(
    State(b): State<SharedBackend>,
    Path(site): Path<String>,
) -> Result<Response, ApiError> {
    b.site_health(&site)
        .map(lb)
        .ok_or_else(|| ApiError::NotFound(format!("no site {site:?}; see GET /api/v1/sites")))
}

pub async fn service_health(
    State(b): State<SharedBackend>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    b.service_health(&id)
        .map(lb)
        .ok_or_else(|| ApiError::NotFound(format!("no service {id:?}; see GET /api/v1/services")))
}

pub async fn triggers(State(b): State<SharedBackend>) -> Result<Json<TriggersView>, ApiError> {
    b.triggers().map(Json)
}

async fn set(
    b: SharedBackend,
    headers: HeaderMap,
    client: Client,
    pause: bool,
    request: Result<Json<TriggersRequest>, JsonRejection>,
) -> Result<Json<TriggersView>, ApiError> {
    let who = principal(&b, &headers, client).await?;
    let request = body(request)?;
    b.set_triggers(who, pause, request).await.map(Json)
}

pub async fn pause(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    request: Result<Json<TriggersRequest>, JsonRejection>,
) -> Result<Json<TriggersView>, ApiError> {
    set(b, headers, client, true, request).await
}

pub async fn resume(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    request: Result<Json<TriggersRequest>, JsonRejection>,
) -> Result<Json<TriggersView>, ApiError> {
    set(b, headers, client, false, request).await
}
