//! Runbooks, plans, executions and approvals: reads are open, every mutation needs a bearer
//! token and answers only after the orchestrator committed it.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::types::{
    ApprovalRequest, ConfirmRequest, ControlRequest, CreateExecutionRequest, ExecutionView,
    PrincipalView, RunbookSummaryView,
};
use crate::{ApiError, Command, SharedBackend};

pub(super) fn principal(b: &SharedBackend, headers: &HeaderMap) -> Result<PrincipalView, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    b.authenticate(value)
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
) -> Result<Json<PrincipalView>, ApiError> {
    principal(&b, &headers).map(Json)
}

pub async fn runbooks(State(b): State<SharedBackend>) -> Json<Vec<RunbookSummaryView>> {
    Json(b.runbooks())
}

pub async fn plan(
    State(b): State<SharedBackend>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    b.plan(&name).map(Json)
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
    req: Result<Json<CreateExecutionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = principal(&b, &headers)?;
    let req = body(req)?;
    let view = b.command(who, Command::Create(req)).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn approve(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<ApprovalRequest>, JsonRejection>,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = principal(&b, &headers)?;
    let request = body(req)?;
    b.command(who, Command::Approve { id, request })
        .await
        .map(Json)
}

pub async fn confirm(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<ConfirmRequest>, JsonRejection>,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = principal(&b, &headers)?;
    let request = body(req)?;
    b.command(who, Command::Confirm { id, request })
        .await
        .map(Json)
}

pub async fn retry(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<ConfirmRequest>, JsonRejection>,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = principal(&b, &headers)?;
    let request = body(req)?;
    b.command(who, Command::Retry { id, request })
        .await
        .map(Json)
}

async fn control(
    b: SharedBackend,
    headers: HeaderMap,
    id: String,
    raw: axum::body::Bytes,
    make: fn(String, ControlRequest) -> Command,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = principal(&b, &headers)?;
    let request = optional_body(&raw)?;
    b.command(who, make(id, request)).await.map(Json)
}

pub async fn cancel(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<ExecutionView>, ApiError> {
    control(b, headers, id, raw, |id, request| Command::Cancel {
        id,
        request,
    })
    .await
}

pub async fn pause(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<ExecutionView>, ApiError> {
    control(b, headers, id, raw, |id, request| Command::Pause {
        id,
        request,
    })
    .await
}

pub async fn resume(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<ExecutionView>, ApiError> {
    control(b, headers, id, raw, |id, request| Command::Resume {
        id,
        request,
    })
    .await
}
