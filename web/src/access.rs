//! Who may call a route: the `Access` each route of the table declares and the one layer that
//! enforces it (a principal for every read and write but the public endpoints), so no handler
//! can forget it.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};

use crate::routes::executions::{Client, principal};
use crate::{ApiError, SharedBackend};

/// What a caller needs to reach a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health and readiness, the console's page and assets, load-balancer endpoints,
    /// sign-in, and endpoints that check their own credentials (signed webhooks).
    Public,
    /// `/metrics`: public when the config says so (`[api] metrics_public`), else as `Read`.
    Metrics,
    /// Any principal (viewer and above).
    Read,
    /// Any principal; which role may do what is decided (and refusals audited) by the daemon.
    Write,
}

/// Builds a route's handler for its method (`|m| on(m, handler)`).
pub type Build = fn(MethodFilter) -> MethodRouter<SharedBackend>;

/// One route of the API: the router is built from a list of these, and the endpoint × role
/// test walks the same list, so a route cannot exist without a declared `Access`.
#[derive(Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub build: Build,
}

impl std::fmt::Debug for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.access)
    }
}

impl RouteSpec {
    pub const fn new(method: Method, path: &'static str, access: Access, build: Build) -> Self {
        RouteSpec {
            method,
            path,
            access,
            build,
        }
    }

    /// The handler with this route's access check around it.
    pub(crate) fn method_router(&self, backend: &SharedBackend) -> MethodRouter<SharedBackend> {
        let filter = MethodFilter::try_from(self.method.clone()).unwrap_or(MethodFilter::GET);
        let mr = (self.build)(filter);
        match self.access {
            Access::Public => mr,
            access => mr.layer(axum::middleware::from_fn_with_state(
                (backend.clone(), access),
                enforce,
            )),
        }
    }
}

/// The layer: a route that needs a principal gets one or answers 401 (429 when throttled)
/// before its handler runs. Runs after cluster forwarding, so a follower still checks the
/// reads it answers itself, and a forwarded request is checked by the leader.
async fn enforce(
    State((b, access)): State<(SharedBackend, Access)>,
    req: Request,
    next: Next,
) -> Response {
    if access == Access::Metrics && b.metrics_public() {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    match principal(&b, &parts.headers, Client::of(&parts)).await {
        Ok(who) => {
            parts.extensions.insert(who);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(ApiError::Unauthorized(why)) => ApiError::Unauthorized(format!(
            "{} {} needs a principal ({}): {why}",
            parts.method,
            parts.uri.path(),
            match access {
                Access::Write => "a token whose role may do this",
                _ => "a token of any role, viewer or above",
            }
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}
