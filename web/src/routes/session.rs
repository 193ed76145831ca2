//! Console sessions over HTTP: sign in (`POST /api/v1/session {token}` → `niledr_session`
//! cookie, `HttpOnly; SameSite=Strict; Path=/`, `Secure` under TLS), read it back, sign out; and
//! the CSRF layer: a non-GET request authenticated by the cookie (no `Authorization` header)
//! must carry the session's `X-CSRF-Token`, else 403.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::executions::{Client, body};
use crate::types::{SessionView, SignInRequest};
use crate::{ApiError, SharedBackend};

pub const COOKIE: &str = "niledr_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
const PATH: &str = "/api/v1/session";

/// The `niledr_session` cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Behind a TLS-terminating proxy that says so (`X-Forwarded-Proto: https`).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn cookie(value: &str, max_age: Option<u64>, secure: bool) -> Result<HeaderValue, ApiError> {
    let age = max_age.map_or("; Max-Age=0".to_string(), |s| format!("; Max-Age={s}"));
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/{age}{secure}"
    ))
    .map_err(|e| ApiError::Internal(format!("session cookie: {e}")))
}

pub(super) async fn sign_in(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
    client: Client,
    req: Result<Json<SignInRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    let token = req.token.trim().to_string();
    if token.is_empty() {
        return Err(ApiError::BadRequest(
            "token is empty; paste the token `niledr user add` printed".into(),
        ));
    }
    let grant = b.sign_in(token, client.0).await?;
    let set = cookie(
        &grant.id,
        Some(grant.max_age_secs),
        grant.secure || over_tls(&headers),
    )?;
    let mut resp = Json(grant.view).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub(super) async fn show(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = session_cookie(&headers).ok_or_else(|| {
        ApiError::Unauthorized("not signed in: POST /api/v1/session with your token".into())
    })?;
    let view: SessionView = b.session(&id)?;
    let mut resp = Json(view).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub(super) async fn sign_out(
    State(b): State<SharedBackend>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = session_cookie(&headers).ok_or_else(|| {
        ApiError::Unauthorized("not signed in: there is no session to end".into())
    })?;
    b.sign_out(&id).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie("", None, over_tls(&headers))?);
    Ok(resp)
}

/// The CSRF rule for every route: GET/HEAD/OPTIONS pass, bearer-token requests pass, sign-in
/// passes (it proves a token); anything else carrying the session cookie needs its token.
pub(super) async fn csrf_layer(
    State(b): State<SharedBackend>,
    req: Request,
    next: Next,
) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let sign_in = req.method() == Method::POST && req.uri().path() == PATH;
    let bearer = req.headers().contains_key(header::AUTHORIZATION);
    if !(safe || sign_in || bearer)
        && let Some(id) = session_cookie(req.headers())
    {
        let csrf = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Err(e) = b.check_csrf(&id, csrf.as_deref()) {
            return e.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(session_cookie(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; niledr_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x_niledr_session=zzz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("niledr_session="));
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_when_asked() {
        let c = cookie("v", Some(60), false).unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "niledr_session=v; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        let c = cookie("", None, true).unwrap();
        assert!(c.to_str().unwrap().ends_with("; Max-Age=0; Secure"));
    }
}
