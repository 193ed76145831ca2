//! The last line before the wire: every JSON or plain-text API response is redacted once
//! more as a whole (views are redacted where they are built; this catches what a new route or
//! an error message would forget). Streams (SSE) and console assets pass through untouched.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Larger bodies are answered as they are (nothing the API sends is near this).
const MAX_BODY: usize = 64 << 20;

pub async fn layer(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let kind = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let json = kind.starts_with("application/json");
    if !json && !kind.starts_with("text/plain") && !kind.starts_with("text/markdown") {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return niledr_web::ApiError::Internal("a response body could not be read".into())
            .into_response();
    };
    let redacted: Option<Vec<u8>> = if json {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|mut v| {
                let before = v.clone();
                super::json(&mut v);
                (v != before).then(|| serde_json::to_vec(&v).ok()).flatten()
            })
    } else {
        match super::text(&String::from_utf8_lossy(&bytes)) {
            std::borrow::Cow::Owned(s) => Some(s.into_bytes()),
            std::borrow::Cow::Borrowed(_) => None,
        }
    };
    match redacted {
        Some(b) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(b))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}
