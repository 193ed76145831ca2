//! Cluster mode: a request a follower cannot answer itself (every write, and plans, which the
//! leader's engine computes) is forwarded as it is to the leader and the leader's answer
//! returned, so clients may talk to any instance. A request that was forwarded already is
//! never forwarded again (the leadership is moving: 503, retry).

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, SharedBackend};

/// Set on a forwarded request (loop guard) and on its answer (who answered).
pub const FORWARDED: &str = "x-niledr-forwarded-by";
pub const ANSWERED_BY: &str = "x-niledr-leader";
const MAX_BODY: usize = 1 << 20;
/// Plans check every step's readiness against the real world: allow for that.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// This instance answers.
    Local,
    /// The leader answers: its API URL and member name.
    To { url: String, leader: String },
    /// Nobody can answer now (no leader elected): 503 with the reason.
    NoLeader(String),
}

/// The middleware: asks the backend where each request goes.
pub async fn layer(State(b): State<SharedBackend>, req: Request, next: Next) -> Response {
    let target = b.forward(req.method().as_str(), req.uri().path());
    match target {
        Forward::Local => next.run(req).await,
        Forward::NoLeader(why) => ApiError::Unavailable(why).into_response(),
        Forward::To { .. } if req.headers().contains_key(FORWARDED) => ApiError::Unavailable(
            "this request was forwarded here, but this instance does not lead either: the leadership is moving; retry in a few seconds".into(),
        )
        .into_response(),
        // A console session lives on the instance that granted it: forwarded, the leader would
        // answer 401 and the console would sign its user out. Say where to act instead.
        Forward::To { url, leader } if by_session_only(&req) => ApiError::Conflict(format!(
            "this niledr instance follows the leader {leader}, and your console session lives \
             on this instance only, so the leader would not know it: open the leader's console \
             at {url}/ and sign in there to act (or call the API with a bearer token, which any \
             instance forwards)"
        ))
        .into_response(),
        Forward::To { url, leader } => match proxy(&url, &leader, req).await {
            Ok(r) => r,
            Err(why) => ApiError::Unavailable(format!(
                "the leader {leader} at {url} did not answer: {why}"
            ))
            .into_response(),
        },
    }
}

/// Authenticated by the console's session cookie, not by a bearer token.
fn by_session_only(req: &Request) -> bool {
    !req.headers().contains_key(header::AUTHORIZATION)
        && crate::routes::session::session_cookie(req.headers()).is_some()
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

async fn proxy(url: &str, leader: &str, req: Request) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| format!("reading the request body: {e}"))?;
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let mut out = client().request(parts.method.clone(), format!("{url}{path}"));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let answer = out
        .header(FORWARDED, HeaderValue::from_static("follower"))
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(leader) {
        headers.insert(HeaderName::from_static(ANSWERED_BY), v);
    }
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}
