//! API errors: a status and a message that says what to fix; internals never leak.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::types::ErrorBody;

#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    /// 401: no or bad credentials.
    Unauthorized(String),
    /// 403: known caller, not allowed; the message says why.
    Forbidden(String),
    /// 409: conflicts with the current state (locked service, duplicate approval, ...).
    Conflict(String),
    /// 429 with `Retry-After` (whole seconds): this client failed to authenticate too often.
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// Logged here, shown to the client only as a generic message.
    Internal(String),
    Unavailable(String),
}

impl ApiError {
    /// The message, without the status.
    pub fn message(&self) -> &str {
        match self {
            ApiError::NotFound(m)
            | ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::Conflict(m)
            | ApiError::TooManyRequests { message: m, .. }
            | ApiError::Internal(m)
            | ApiError::Unavailable(m) => m,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::TooManyRequests {
                message,
                retry_after_secs,
            } => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(ErrorBody { error: message }),
                )
                    .into_response();
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
                return r;
            }
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::Internal(m) => {
                tracing::error!("internal error serving a request: {m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the niledr log".to_string(),
                )
            }
        };
        (status, Json(ErrorBody { error: msg })).into_response()
    }
}
