//! The router: health endpoints, the JSON API (executions and drills in their own modules),
//! server-sent status events, metrics and the console.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use futures::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::types::{ServiceView, SiteView, StatusEventView};
use crate::{ApiError, SharedBackend, console};

const MAX_LIMIT: usize = 10_000;

pub fn router(backend: SharedBackend) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/sites", get(sites))
        .route("/api/v1/sites/{site}", get(site))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{id}/history", get(history))
        .route("/api/v1/status-changes", get(status_changes))
        .route("/api/v1/events", get(events))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/whoami", get(executions::whoami))
        .route("/api/v1/runbooks", get(executions::runbooks))
        .route("/api/v1/drills", get(drills::list))
        .route("/api/v1/drills/{name}", get(drills::show))
        .route("/api/v1/drills/{name}/approvals", post(drills::approve))
        .route("/api/v1/drills/{name}/runs", post(drills::start))
        .route(
            "/api/v1/drills/{name}/runs/{id}/approvals",
            post(drills::approve_run),
        )
        .route("/api/v1/drill-runs", get(drills::runs))
        .route("/api/v1/drill-runs/{id}", get(drills::run))
        .route("/api/v1/runbooks/{name}/plan", get(executions::plan))
        .route(
            "/api/v1/executions",
            get(executions::list).post(executions::create),
        )
        .route("/api/v1/executions/{id}", get(executions::show))
        .route(
            "/api/v1/executions/{id}/approvals",
            post(executions::approve),
        )
        .route("/api/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/api/v1/executions/{id}/pause", post(executions::pause))
        .route("/api/v1/executions/{id}/resume", post(executions::resume))
        .route("/api/v1/executions/{id}/confirm", post(executions::confirm))
        .route("/api/v1/executions/{id}/retry", post(executions::retry))
        .route("/api/v1/topology", get(topology::topology))
        .route("/api/v1/primary", get(topology::primary))
        .route("/api/v1/sites/{site}/health", get(topology::site_health))
        .route(
            "/api/v1/services/{id}/health",
            get(topology::service_health),
        )
        .route("/api/v1/triggers", get(topology::triggers))
        .route("/api/v1/triggers/pause", post(topology::pause))
        .route("/api/v1/triggers/resume", post(topology::resume))
        .route("/", get(console::index))
        .route("/assets/{*path}", get(console::asset))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            backend.clone(),
            crate::forward::layer,
        ))
        .with_state(backend)
}

async fn cluster(State(b): State<SharedBackend>) -> Json<crate::types::ClusterView> {
    Json(b.cluster())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(b): State<SharedBackend>) -> Result<Json<serde_json::Value>, ApiError> {
    b.ready().map_err(ApiError::Unavailable)?;
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

async fn metrics(State(b): State<SharedBackend>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        b.metrics(),
    )
        .into_response()
}

async fn sites(State(b): State<SharedBackend>) -> Json<Vec<SiteView>> {
    Json(b.sites())
}

async fn site(
    State(b): State<SharedBackend>,
    Path(id): Path<String>,
) -> Result<Json<SiteView>, ApiError> {
    b.site(&id).map(Json).ok_or_else(|| {
        let known: Vec<String> = b.sites().into_iter().map(|s| s.id).collect();
        ApiError::NotFound(format!("no site {id:?}; known sites: {}", known.join(", ")))
    })
}

async fn services(State(b): State<SharedBackend>) -> Json<Vec<ServiceView>> {
    Json(b.services())
}

fn limit(q: &HashMap<String, String>, default: usize) -> Result<usize, ApiError> {
    limit_within(q, default, MAX_LIMIT)
}

/// `?limit=N` from 1 to `max`, else `default`; anything else is a 400 that says the range.
fn limit_within(
    q: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "limit must be a whole number from 1 to {max}, got {v:?}"
            ))),
        },
    }
}

async fn history(
    State(b): State<SharedBackend>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = limit(&q, 100)?;
    match b.service_history(&id, limit).map_err(ApiError::Internal)? {
        Some(h) => Ok(Json(h).into_response()),
        None => Err(ApiError::NotFound(format!(
            "no service {id:?}; see GET /api/v1/services"
        ))),
    }
}

async fn status_changes(
    State(b): State<SharedBackend>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<StatusEventView>>, ApiError> {
    let limit = limit(&q, 100)?;
    b.recent_events(limit).map(Json).map_err(ApiError::Internal)
}

async fn events(
    State(b): State<SharedBackend>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stop = b.shutdown_token().cancelled_owned();
    let stream = BroadcastStream::new(b.subscribe())
        .take_until(stop)
        .map(|item| {
            Ok(match item {
                Ok(ev) => Event::default()
                    .event("status")
                    .id(ev.seq.to_string())
                    .json_data(&ev)
                    .unwrap_or_else(|_| Event::default().comment("unserializable event")),
                // A slow client missed events: say so rather than pretend continuity.
                Err(BroadcastStreamRecvError::Lagged(n)) => Event::default()
                    .event("lagged")
                    .data(format!("{n} events were dropped; reload /api/v1/sites")),
            })
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn audit_verify(State(b): State<SharedBackend>) -> Result<Response, ApiError> {
    let report = b.audit_verify().map_err(ApiError::Internal)?;
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((status, Json(report)).into_response())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

mod drills;
mod executions;
#[cfg(test)]
mod tests;
mod topology;
