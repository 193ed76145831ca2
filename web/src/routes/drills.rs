//! Drills: definitions, standing approvals, runs (and the approvals of a live run before its
//! fault) and their reports. Every route needs a principal (`access.rs`); approving a drill or a
//! run and starting a run answer once the orchestrator recorded them.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::executions::{Client, body, optional_body, principal};
use super::limit_within;
use crate::types::{
    DrillApprovalRequest, DrillRunApprovalRequest, DrillRunRequest, DrillRunView, DrillView,
};
use crate::{ApiError, SharedBackend};

/// `GET /api/v1/drill-runs` lists this many runs unless `limit` says otherwise.
const DEFAULT_RUNS: usize = 50;
const MAX_RUNS: usize = 1000;
const MARKDOWN: &str = "text/markdown; charset=utf-8";

/// The drill named `name`, or a 404 that names the drills there are.
fn find(b: &SharedBackend, name: &str) -> Result<DrillView, ApiError> {
    let drills = b.drills();
    let known: Vec<&str> = drills.iter().map(|d| d.name.as_str()).collect();
    let message = if known.is_empty() {
        format!("no drill {name:?}; no drills are loaded")
    } else {
        format!("no drill {name:?}; known drills: {}", known.join(", "))
    };
    drills
        .iter()
        .find(|d| d.name == name)
        .cloned()
        .ok_or(ApiError::NotFound(message))
}

pub async fn list(State(b): State<SharedBackend>) -> Json<Vec<DrillView>> {
    Json(b.drills())
}

pub async fn show(
    State(b): State<SharedBackend>,
    Path(name): Path<String>,
) -> Result<Json<DrillView>, ApiError> {
    find(&b, &name).map(Json)
}

/// A standing pre-approval of the drill file, bound to the digest the approver read.
pub async fn approve(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path(name): Path<String>,
    req: Result<Json<DrillApprovalRequest>, JsonRejection>,
) -> Result<Json<DrillView>, ApiError> {
    let who = principal(&b, &headers, client).await?;
    let request = body(req)?;
    find(&b, &name)?;
    b.approve_drill(who, &name, request).await.map(Json)
}

/// A person's decision on live drill run `id` before its fault, bound to the digest read.
pub async fn approve_run(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path((name, id)): Path<(String, String)>,
    req: Result<Json<DrillRunApprovalRequest>, JsonRejection>,
) -> Result<Json<DrillRunView>, ApiError> {
    let who = principal(&b, &headers, client).await?;
    let request = body(req)?;
    if !matches!(request.decision.as_str(), "approve" | "reject") {
        return Err(ApiError::BadRequest(format!(
            "decision must be \"approve\" or \"reject\", got {:?}",
            request.decision
        )));
    }
    find(&b, &name)?;
    b.approve_drill_run(who, &name, &id, request)
        .await
        .map(Json)
}

/// Run a drill now: 202 with the run as recorded (it goes on in the daemon; poll
/// `Location`). A live drill's run is `awaiting_approval` until two people approve it; nothing
/// is injected before. The body is optional (`{"reason": ...}`).
pub async fn start(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let who = principal(&b, &headers, client).await?;
    let request: DrillRunRequest = optional_body(&raw)?;
    find(&b, &name)?;
    let run = b.start_drill(who, &name, request).await?;
    let mut resp = (StatusCode::ACCEPTED, Json(&run)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/drill-runs/{}", run.id)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// `?drill=NAME&limit=N`: newest first.
pub async fn runs(
    State(b): State<SharedBackend>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<DrillRunView>>, ApiError> {
    let limit = limit_within(&q, DEFAULT_RUNS, MAX_RUNS)?;
    let drill = q.get("drill").map(String::as_str).filter(|d| !d.is_empty());
    b.drill_runs(drill, limit).map(Json)
}

/// One run as JSON, or (`?format=md`) its report as Markdown for a post-drill review.
pub async fn run(
    State(b): State<SharedBackend>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    match q.get("format").map(String::as_str) {
        None | Some("json") => Ok(Json(b.drill_run(&id)?).into_response()),
        Some("md") => {
            let text = b.drill_run_markdown(&id)?;
            Ok(([(header::CONTENT_TYPE, MARKDOWN)], text).into_response())
        }
        Some(other) => Err(ApiError::BadRequest(format!(
            "format must be json or md, got {other:?}"
        ))),
    }
}
