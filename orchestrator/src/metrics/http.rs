//! HTTP request latency: a middleware around every route recording
//! `niledr_http_request_duration_seconds{method, route, status}`. The route is the router's
//! pattern (`/api/v1/executions/{id}`), never the raw path, so label values stay bounded.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::histogram;

use super::families as f;

/// `Router::layer(axum::middleware::from_fn(track))`: the layer wraps each route, so the
/// matched pattern is known; requests no route matched count as `route="unmatched"`.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    histogram!(
        f::HTTP_DURATION,
        "method" => method,
        "route" => route,
        "status" => resp.status().as_u16().to_string()
    )
    .record(start.elapsed().as_secs_f64());
    resp
}

/// The standard methods by name; anything else is `other` (a client cannot mint labels).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
