//! Runbooks, plans, executions and approvals: every route needs a principal (`access.rs`),
//! every mutation answers only after the orchestrator committed it.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::types::{
    ApprovalRequest, ConfirmRequest, ControlRequest, CreateExecutionRequest, ExecutionView,
    PrincipalView, RunbookSummaryView,
};
use crate::{ApiError, AuthRequest, Command, SharedBackend};

/// The TCP peer of a request, when the server records it (`into_make_service_with_connect_info`).
pub(crate) struct Client(pub(crate) Option<IpAddr>);

impl Client {
    pub(crate) fn of(parts: &Parts) -> Client {
        Client(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client::of(parts))
    }
}

/// Who is calling: the one place a request's credentials are turned into a principal (the
/// access layer and every mutation call it).
pub(crate) async fn principal(
    b: &SharedBackend,
    headers: &HeaderMap,
    client: Client,
) -> Result<PrincipalView, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_string());
    b.authenticate(AuthRequest {
        authorization,
        client: client.0,
        session: super::session::session_cookie(headers),
    })
    .await
}

/// A JSON body, or a 400 that says what is wrong with it.
pub(super) fn body<T: DeserializeOwned>(r: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    r.map(|Json(t)| t)
        .map_err(|e| ApiError::BadRequest(format!("bad request body: {}", e.body_text())))
}

/// An optional JSON body (control endpoints and drill runs accept none): empty is the default.
pub(super) fn optional_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("bad request body: {e}")))
}

pub async fn whoami(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
) -> Result<Json<PrincipalView>, ApiError> {
    principal(&b, &headers, client).await.map(Json)
}

pub async fn runbooks(State(b): State<SharedBackend>) -> Json<Vec<RunbookSummaryView>> {
    Json(b.runbooks())
}

pub async fn plan(
    State(b): State<SharedBackend>,
    Path(name): Path<String>,
) -> Result<Json<crate::types::PlanView>, ApiError> {
    b.plan(&name).await.map(Json)
}

pub async fn list(State(b): State<SharedBackend>) -> Result<Json<Vec<ExecutionView>>, ApiError> {
    b.executions().map(Json)
}

pub async fn show(
    State(b): State<SharedBackend>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    b.execution(&id).map(Json)
}

pub async fn create(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    req: Result<Json<CreateExecutionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = principal(&b, &headers, client).await?;
    let req = body(req)?;
    let view = b.command(who, Command::Create(req)).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn approve(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path(id): Path<String>,
    req: Result<Json<ApprovalRequest>, JsonRejection>,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = principal(&b, &headers, client).await?;
    let request = body(req)?;
    b.command(who, Command::Approve { id, request })
        .await
        .map(Json)
}

pub async fn confirm(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path(id): Path<String>,
    req: Result<Json<ConfirmRequest>, JsonRejection>,
) -> Result<Json<ExecutionView>, ApiError> {
    on_step(b, headers, client, id, req, |id, request| {
        Command::Confirm { id, request }
    })
    .await
}

/// Roll forward from `needs_operator`.
pub async fn retry(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path(id): Path<String>,
    req: Result<Json<ConfirmRequest>, JsonRejection>,
) -> Result<Json<ExecutionView>, ApiError> {
    on_step(b, headers, client, id, req, |id, request| Command::Retry {
        id,
        request,
    })
    .await
}

async fn on_step(
    b: SharedBackend,
    headers: HeaderMap,
    client: Client,
    id: String,
    req: Result<Json<ConfirmRequest>, JsonRejection>,
    make: fn(String, ConfirmRequest) -> Command,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = principal(&b, &headers, client).await?;
    let request = body(req)?;
    b.command(who, make(id, request)).await.map(Json)
}

async fn control(
    b: SharedBackend,
    headers: HeaderMap,
    client: Client,
    id: String,
    raw: axum::body::Bytes,
    make: fn(String, ControlRequest) -> Command,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = principal(&b, &headers, client).await?;
    let request = optional_body(&raw)?;
    b.command(who, make(id, request)).await.map(Json)
}

pub async fn cancel(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<ExecutionView>, ApiError> {
    control(b, headers, client, id, raw, |id, request| Command::Cancel {
        id,
        request,
    })
    .await
}

pub async fn pause(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<ExecutionView>, ApiError> {
    control(b, headers, client, id, raw, |id, request| Command::Pause {
        id,
        request,
    })
    .await
}

pub async fn resume(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<ExecutionView>, ApiError> {
    control(b, headers, client, id, raw, |id, request| Command::Resume {
        id,
        request,
    })
    .await
}
