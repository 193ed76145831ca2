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

/// What the backend gets: the authenticating headers (each as sent) and the raw body.
fn request(
    source: HookSource,
    headers: &HeaderMap,
    client: Client,
    body: Bytes,
    signature: Option<&str>,
) -> HookRequest {
    HookRequest {
        source,
        authorization: header(headers, axum::http::header::AUTHORIZATION),
        signature: signature.and_then(|s| header(headers, s)),
        timestamp: header(headers, NILEDR_TIMESTAMP),
        body: body.to_vec(),
        client: client.0,
    }
}

async fn hook(
    b: SharedBackend,
    source: HookSource,
    headers: HeaderMap,
    client: Client,
    body: Bytes,
    signature: Option<&str>,
) -> Result<Json<HookAnswerView>, ApiError> {
    let req = request(source, &headers, client, body, signature);
    b.hook(req).await.map(Json)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_gets_the_exact_body_and_the_sources_own_headers() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer t0k3n".parse().unwrap());
        h.insert("x-pagerduty-signature", "v1=aa,v1=bb".parse().unwrap());
        h.insert("x-niledr-signature", "sha256=cc".parse().unwrap());
        h.insert("x-niledr-timestamp", "1800000000".parse().unwrap());
        let body = Bytes::from_static(b" {\"event\": 1}\n");
        let ip = "10.1.2.3".parse().ok();
        let pd = request(
            HookSource::PagerDuty,
            &h,
            Client(ip),
            body.clone(),
            Some(PAGERDUTY_SIGNATURE),
        );
        assert_eq!(pd.body, body.to_vec(), "byte for byte: signatures cover it");
        assert_eq!(pd.signature.as_deref(), Some("v1=aa,v1=bb"));
        assert_eq!(pd.authorization.as_deref(), Some("Bearer t0k3n"));
        assert_eq!(pd.client, ip);
        let generic = request(
            HookSource::Generic,
            &h,
            Client(None),
            body.clone(),
            Some(NILEDR_SIGNATURE),
        );
        assert_eq!(generic.signature.as_deref(), Some("sha256=cc"));
        assert_eq!(generic.timestamp.as_deref(), Some("1800000000"));
        let am = request(HookSource::Alertmanager, &h, Client(None), body, None);
        assert_eq!(
            am.signature, None,
            "Alertmanager authenticates by its bearer token only"
        );
    }
}
