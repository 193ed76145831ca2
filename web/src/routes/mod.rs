//! The router, built from `routes()` (every route with its `Access`): health endpoints, the JSON API (executions and drills in their own modules),
//! server-sent status events, metrics and the console.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use axum::{Json, Router};
use futures::Stream;
use futures::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::access::{Access, RouteSpec};
use crate::types::{ServiceView, SiteView, StatusEventView};
use crate::{ApiError, SharedBackend, console};

const MAX_LIMIT: usize = 10_000;

/// Every route of the API with who may call it (`access.rs`). The router is built from this
/// list and the endpoint × role test walks it: a route cannot be added without an `Access`.
pub fn routes() -> &'static [RouteSpec] {
    use Access::{Metrics, Public, Read, Write};
    use axum::http::Method as M;
    const ROUTES: &[RouteSpec] = &[
        RouteSpec::new(M::GET, "/healthz", Public, |m| on(m, healthz)),
        RouteSpec::new(M::GET, "/readyz", Public, |m| on(m, readyz)),
        RouteSpec::new(M::GET, "/metrics", Metrics, |m| on(m, metrics)),
        RouteSpec::new(M::GET, "/api/v1/sites", Read, |m| on(m, sites)),
        RouteSpec::new(M::GET, "/api/v1/sites/{site}", Read, |m| on(m, site)),
        RouteSpec::new(M::GET, "/api/v1/services", Read, |m| on(m, services)),
        RouteSpec::new(M::GET, "/api/v1/services/{id}/history", Read, |m| {
            on(m, history)
        }),
        RouteSpec::new(M::GET, "/api/v1/status-changes", Read, |m| {
            on(m, status_changes)
        }),
        RouteSpec::new(M::GET, "/api/v1/events", Read, |m| on(m, events)),
        RouteSpec::new(M::GET, "/api/v1/audit", Read, |m| on(m, audit::list)),
        RouteSpec::new(M::GET, "/api/v1/audit/verify", Read, |m| {
            on(m, audit_verify)
        }),
        RouteSpec::new(M::GET, "/api/v1/cluster", Read, |m| on(m, cluster)),
        // Asked by a cluster member that lost its lease, before it fences its own primary.
        RouteSpec::new(M::GET, "/api/v1/cluster/vouch/{service}", Public, |m| {
            on(m, vouch)
        }),
        RouteSpec::new(M::GET, "/api/v1/platform-mode", Read, |m| {
            on(m, platform_mode)
        }),
        RouteSpec::new(M::GET, "/api/v1/whoami", Read, |m| {
            on(m, executions::whoami)
        }),
        RouteSpec::new(M::GET, "/api/v1/runbooks", Read, |m| {
            on(m, executions::runbooks)
        }),
        RouteSpec::new(M::GET, "/api/v1/drills", Read, |m| on(m, drills::list)),
        RouteSpec::new(M::GET, "/api/v1/drills/{name}", Read, |m| {
            on(m, drills::show)
        }),
        RouteSpec::new(M::POST, "/api/v1/drills/{name}/approvals", Write, |m| {
            on(m, drills::approve)
        }),
        RouteSpec::new(M::POST, "/api/v1/drills/{name}/runs", Write, |m| {
            on(m, drills::start)
        }),
        RouteSpec::new(
            M::POST,
            "/api/v1/drills/{name}/runs/{id}/approvals",
            Write,
            |m| on(m, drills::approve_run),
        ),
        RouteSpec::new(M::GET, "/api/v1/drill-runs", Read, |m| on(m, drills::runs)),
        RouteSpec::new(M::GET, "/api/v1/drill-runs/{id}", Read, |m| {
            on(m, drills::run)
        }),
        RouteSpec::new(M::GET, "/api/v1/runbooks/{name}/plan", Read, |m| {
            on(m, executions::plan)
        }),
        RouteSpec::new(M::GET, "/api/v1/executions", Read, |m| {
            on(m, executions::list)
        }),
        RouteSpec::new(M::POST, "/api/v1/executions", Write, |m| {
            on(m, executions::create)
        }),
        RouteSpec::new(M::GET, "/api/v1/executions/{id}", Read, |m| {
            on(m, executions::show)
        }),
        RouteSpec::new(M::POST, "/api/v1/executions/{id}/approvals", Write, |m| {
            on(m, executions::approve)
        }),
        RouteSpec::new(M::POST, "/api/v1/executions/{id}/cancel", Write, |m| {
            on(m, executions::cancel)
        }),
        RouteSpec::new(M::POST, "/api/v1/executions/{id}/pause", Write, |m| {
            on(m, executions::pause)
        }),
        RouteSpec::new(M::POST, "/api/v1/executions/{id}/resume", Write, |m| {
            on(m, executions::resume)
        }),
        RouteSpec::new(M::POST, "/api/v1/executions/{id}/confirm", Write, |m| {
            on(m, executions::confirm)
        }),
        RouteSpec::new(M::POST, "/api/v1/executions/{id}/retry", Write, |m| {
            on(m, executions::retry)
        }),
        RouteSpec::new(M::GET, "/api/v1/topology", Read, |m| {
            on(m, topology::topology)
        }),
        // Load-balancer endpoints: 200 when up, 503 otherwise; no principal (`topology.rs`).
        RouteSpec::new(M::GET, "/api/v1/primary", Public, |m| {
            on(m, topology::primary)
        }),
        RouteSpec::new(M::GET, "/api/v1/sites/{site}/health", Public, |m| {
            on(m, topology::site_health)
        }),
        RouteSpec::new(M::GET, "/api/v1/services/{id}/health", Public, |m| {
            on(m, topology::service_health)
        }),
        RouteSpec::new(M::GET, "/api/v1/triggers", Read, |m| {
            on(m, topology::triggers)
        }),
        RouteSpec::new(M::POST, "/api/v1/triggers/pause", Write, |m| {
            on(m, topology::pause)
        }),
        RouteSpec::new(M::POST, "/api/v1/triggers/resume", Write, |m| {
            on(m, topology::resume)
        }),
        RouteSpec::new(M::GET, "/api/v1/notifications", Read, |m| {
            on(m, notifications::list)
        }),
        // Pager hooks authenticate themselves (bearer token or HMAC signature, `[hooks]`).
        RouteSpec::new(M::POST, "/api/v1/hooks/alertmanager", Public, |m| {
            on(m, hooks::alertmanager)
        }),
        RouteSpec::new(M::POST, "/api/v1/hooks/pagerduty", Public, |m| {
            on(m, hooks::pagerduty)
        }),
        RouteSpec::new(M::POST, "/api/v1/hooks/generic", Public, |m| {
            on(m, hooks::generic)
        }),
        // The session routes check their own credentials: the token (sign-in) or the cookie.
        RouteSpec::new(M::GET, "/api/v1/session", Public, |m| on(m, session::show)),
        RouteSpec::new(M::POST, "/api/v1/session", Public, |m| {
            on(m, session::sign_in)
        }),
        RouteSpec::new(M::DELETE, "/api/v1/session", Public, |m| {
            on(m, session::sign_out)
        }),
        RouteSpec::new(M::GET, "/api/v1/openapi.json", Read, |m| {
            on(m, openapi_json)
        }),
        RouteSpec::new(M::GET, "/api/v1/docs", Public, |m| on(m, api_docs)),
        RouteSpec::new(M::GET, "/", Public, |m| on(m, console::index)),
        RouteSpec::new(M::GET, "/assets/{*path}", Public, |m| on(m, console::asset)),
    ];
    ROUTES
}

pub fn router(backend: SharedBackend) -> Router {
    let mut r = Router::new();
    for spec in routes() {
        r = r.route(spec.path, spec.method_router(&backend));
    }
    r.fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            backend.clone(),
            session::csrf_layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            backend.clone(),
            crate::forward::layer,
        ))
        .with_state(backend)
}

async fn vouch(
    State(b): State<SharedBackend>,
    Path(service): Path<String>,
) -> Result<Json<crate::types::VouchView>, ApiError> {
    b.vouch(&service).map(Json).ok_or_else(|| {
        ApiError::NotFound(format!("no service {service:?}; see GET /api/v1/services"))
    })
}

async fn cluster(State(b): State<SharedBackend>) -> Json<crate::types::ClusterView> {
    Json(b.cluster())
}

async fn platform_mode(State(b): State<SharedBackend>) -> Json<crate::types::PlatformModeView> {
    Json(b.platform_mode())
}

/// The OpenAPI document, built once from the route table.
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        crate::openapi::document()
            .to_pretty_json()
            .unwrap_or_else(|e| {
                format!("{{\"error\": \"the API description does not serialize: {e}\"}}")
            })
    });
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

/// The vendored viewer of the OpenAPI document.
async fn api_docs() -> Response {
    console::asset(Path("api-docs.html".to_string())).await
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
    let platform = b.platform_changes().map(|m| {
        Ok(Event::default()
            .event("platform-mode")
            .json_data(&m)
            .unwrap_or_else(|_| Event::default().comment("unserializable event")))
    });
    let status = BroadcastStream::new(b.subscribe()).map(|item| {
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
    let executions = match b.subscribe_executions() {
        Some(rx) => sse_executions::stream(rx).boxed(),
        None => futures::stream::empty().boxed(),
    };
    let stream = futures::stream::select(futures::stream::select(status, platform), executions)
        .take_until(stop);
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

mod audit;
mod drills;
pub(crate) mod executions;
mod hooks;
mod notifications;
pub(crate) mod session;
mod sse_executions;
#[cfg(test)]
mod tests;
mod topology;
