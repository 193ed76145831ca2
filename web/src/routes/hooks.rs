//! `POST /api/v1/hooks/{alertmanager,pagerduty,generic}`: pager tooling in. The handlers
//! only collect what authenticates a call (the `Authorization` header, the signature and
//! timestamp headers) and the raw body: the orchestrator verifies it over the exact bytes,
//! maps the alerts to runbooks and answers once what they caused is committed. These routes
//! authenticate themselves (a bearer token or an HMAC signature of their own, not a user's
//! token), so they need no principal and no CSRF token.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;

use super::executions::Client;
use crate::types::HookAnswerView;
use crate::{ApiError, HookRequest, HookSource, SharedBackend};

/// PagerDuty v3's signature header.
pub const PAGERDUTY_SIGNATURE: &str = "x-pagerduty-signature";
/// The generic hook's signature (`sha256=<hex>`) and signed timestamp (Unix seconds).
pub const NILEDR_SIGNATURE: &str = "x-niledr-signature";
pub const NILEDR_TIMESTAMP: &str = "x-niledr-timestamp";

fn header(h: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn hook(
    b: SharedBackend,
    source: HookSource,
    headers: HeaderMap,
    client: Client,
    body: Bytes,
    signature: Option<&str>,
) -> Result<Json<HookAnswerView>, ApiError> {
    let request = HookRequest {
        source,
        authorization: header(&headers, axum::http::header::AUTHORIZATION),
        signature: signature.and_then(|s| header(&headers, s)),
        timestamp: header(&headers, NILEDR_TIMESTAMP),
        body: body.to_vec(),
        client: client.0,
    };
    b.hook(request).await.map(Json)
}

pub(super) async fn alertmanager(
    State(b): State<SharedBackend>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<HookAnswerView>, ApiError> {
    hook(b, HookSource::Alertmanager, headers, client, body, None).await
}

pub(super) async fn pagerduty(
    State(b): State<SharedBackend>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<HookAnswerView>, ApiError> {
    let sig = Some(PAGERDUTY_SIGNATURE);
    hook(b, HookSource::PagerDuty, headers, client, body, sig).await
}

pub(super) async fn generic(
    State(b): State<SharedBackend>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<HookAnswerView>, ApiError> {
    let sig = Some(NILEDR_SIGNATURE);
    hook(b, HookSource::Generic, headers, client, body, sig).await
}
