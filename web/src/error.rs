//! API errors: a status and a message that says what to fix; internals never leak.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::types::ErrorBody;

#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    /// Logged here, shown to the client only as a generic message.
    Internal(String),
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
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
