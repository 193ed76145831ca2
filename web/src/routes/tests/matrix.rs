//! The endpoint × role matrix: every route the router is built from (`routes()`), called as
//! each kind of caller against the real router, must answer the status class this table
//! expects. A route without a row (or a row without a route) fails the test, naming it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::FixtureBackend;
use crate::router;
use crate::routes::routes;

/// What a caller gets: `S` served (the handler ran: any status but 401/403), `U` 401
/// (no principal), `F` 403 (known principal, not allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    S,
    U,
    F,
}
use Class::{F, S, U};

/// The callers, in the order of each row: anonymous, viewer, operator, approver, admin.
const CALLERS: [Option<&str>; 5] = [
    None,
    Some("Bearer viewer"),
    Some("Bearer operator"),
    Some("Bearer good"),
    Some("Bearer admin"),
];

const PUBLIC: [Class; 5] = [S, S, S, S, S];
const READ: [Class; 5] = [U, S, S, S, S];
const OPERATE: [Class; 5] = [U, F, S, S, S];
const APPROVE: [Class; 5] = [U, F, F, S, S];
/// Needs the console's session cookie (none of these callers has one): 401 for all.
const SESSION: [Class; 5] = [U, U, U, U, U];

/// (method, path as routed, request path with real parameters, body, expected per caller).
const TABLE: &[(&str, &str, &str, &str, [Class; 5])] = &[
    ("GET", "/healthz", "/healthz", "", PUBLIC),
    ("GET", "/readyz", "/readyz", "", PUBLIC),
    // `[api] metrics_public = false` here; the public case is its own test below.
    ("GET", "/metrics", "/metrics", "", READ),
    ("GET", "/", "/", "", PUBLIC),
    ("GET", "/assets/{*path}", "/assets/app.js", "", PUBLIC),
    ("GET", "/api/v1/sites", "/api/v1/sites", "", READ),
    (
        "GET",
        "/api/v1/sites/{site}",
        "/api/v1/sites/khartoum",
        "",
        READ,
    ),
    ("GET", "/api/v1/services", "/api/v1/services", "", READ),
    (
        "GET",
        "/api/v1/services/{id}/history",
        "/api/v1/services/khartoum-postgres/history",
        "",
        READ,
    ),
    (
        "GET",
        "/api/v1/status-changes",
        "/api/v1/status-changes",
        "",
        READ,
    ),
    ("GET", "/api/v1/events", "/api/v1/events", "", READ),
    ("GET", "/api/v1/audit", "/api/v1/audit?limit=2", "", READ),
    (
        "GET",
        "/api/v1/audit/verify",
        "/api/v1/audit/verify",
        "",
        READ,
    ),
    ("GET", "/api/v1/cluster", "/api/v1/cluster", "", READ),
    (
        "GET",
        "/api/v1/platform-mode",
        "/api/v1/platform-mode",
        "",
        READ,
    ),
    (
        "GET",
        "/api/v1/openapi.json",
        "/api/v1/openapi.json",
        "",
        READ,
    ),
    ("GET", "/api/v1/docs", "/api/v1/docs", "", PUBLIC),
    ("GET", "/api/v1/session", "/api/v1/session", "", SESSION),
    ("GET", "/api/v1/topology", "/api/v1/topology", "", READ),
    (
        "GET",
        "/api/v1/cluster/vouch/{service}",
        "/api/v1/cluster/vouch/khartoum-postgres",
        "",
        PUBLIC,
    ),
    ("GET", "/api/v1/primary", "/api/v1/primary", "", PUBLIC),
    (
        "GET",
        "/api/v1/sites/{site}/health",
        "/api/v1/sites/khartoum/health",
        "",
        PUBLIC,
    ),
    (
        "GET",
        "/api/v1/services/{id}/health",
        "/api/v1/services/khartoum-postgres/health",
        "",
        PUBLIC,
    ),
    ("GET", "/api/v1/triggers", "/api/v1/triggers", "", READ),
    (
        "POST",
        "/api/v1/triggers/pause",
        "/api/v1/triggers/pause",
        r#"{"reason":"maintenance"}"#,
        // The daemon decides the role (a viewer's 403 is in tests/tests/topology.rs);
        // the fixture has no maintenance mode.
        READ,
    ),
    (
        "POST",
        "/api/v1/triggers/resume",
        "/api/v1/triggers/resume",
        r#"{"reason":"done"}"#,
        // The daemon decides the role (a viewer's 403 is in tests/tests/topology.rs);
        // the fixture has no maintenance mode.
        READ,
    ),
    (
        "GET",
        "/api/v1/notifications",
        "/api/v1/notifications",
        "",
        READ,
    ),
    // Hooks check their own credentials; the fixture configures none: 404 whoever asks.
    (
        "POST",
        "/api/v1/hooks/alertmanager",
        "/api/v1/hooks/alertmanager",
        "{}",
        PUBLIC,
    ),
    (
        "POST",
        "/api/v1/hooks/pagerduty",
        "/api/v1/hooks/pagerduty",
        "{}",
        PUBLIC,
    ),
    (
        "POST",
        "/api/v1/hooks/generic",
        "/api/v1/hooks/generic",
        "{}",
        PUBLIC,
    ),
    // An empty token is refused with a 400 whoever asks (sign-in proves a token itself).
    (
        "POST",
        "/api/v1/session",
        "/api/v1/session",
        r#"{"token":""}"#,
        PUBLIC,
    ),
    ("DELETE", "/api/v1/session", "/api/v1/session", "", SESSION),
    ("GET", "/api/v1/whoami", "/api/v1/whoami", "", READ),
    ("GET", "/api/v1/runbooks", "/api/v1/runbooks", "", READ),
    (
        "GET",
        "/api/v1/runbooks/{name}/plan",
        "/api/v1/runbooks/failover/plan",
        "",
        READ,
    ),
    ("GET", "/api/v1/drills", "/api/v1/drills", "", READ),
    (
        "GET",
        "/api/v1/drills/{name}",
        "/api/v1/drills/postgres-primary-failure",
        "",
        READ,
    ),
    (
        "POST",
        "/api/v1/drills/{name}/approvals",
        "/api/v1/drills/postgres-primary-failure/approvals",
        r#"{"digest":"d1d1"}"#,
        APPROVE,
    ),
    (
        "POST",
        "/api/v1/drills/{name}/runs",
        "/api/v1/drills/planned-switchover/runs",
        "",
        OPERATE,
    ),
    (
        "POST",
        "/api/v1/drills/{name}/runs/{id}/approvals",
        "/api/v1/drills/postgres-primary-failure/runs/r2/approvals",
        r#"{"digest":"d1d1"}"#,
        APPROVE,
    ),
    ("GET", "/api/v1/drill-runs", "/api/v1/drill-runs", "", READ),
    (
        "GET",
        "/api/v1/drill-runs/{id}",
        "/api/v1/drill-runs/r1",
        "",
        READ,
    ),
    ("GET", "/api/v1/executions", "/api/v1/executions", "", READ),
    (
        "POST",
        "/api/v1/executions",
        "/api/v1/executions",
        r#"{"runbook":"failover","reason":"matrix"}"#,
        OPERATE,
    ),
    (
        "GET",
        "/api/v1/executions/{id}",
        "/api/v1/executions/e1",
        "",
        READ,
    ),
    (
        "POST",
        "/api/v1/executions/{id}/approvals",
        "/api/v1/executions/e1/approvals",
        r#"{"decision":"approve","plan_digest":"d"}"#,
        APPROVE,
    ),
    (
        "POST",
        "/api/v1/executions/{id}/cancel",
        "/api/v1/executions/e1/cancel",
        "",
        OPERATE,
    ),
    (
        "POST",
        "/api/v1/executions/{id}/pause",
        "/api/v1/executions/e1/pause",
        "",
        OPERATE,
    ),
    (
        "POST",
        "/api/v1/executions/{id}/resume",
        "/api/v1/executions/e1/resume",
        "",
        OPERATE,
    ),
    (
        "POST",
        "/api/v1/executions/{id}/confirm",
        "/api/v1/executions/e1/confirm",
        r#"{"step":"fence"}"#,
        OPERATE,
    ),
    (
        "POST",
        "/api/v1/executions/{id}/retry",
        "/api/v1/executions/e1/retry",
        r#"{"step":"fence"}"#,
        OPERATE,
    ),
];

fn class(status: StatusCode) -> Class {
    match status {
        StatusCode::UNAUTHORIZED => U,
        StatusCode::FORBIDDEN => F,
        _ => S,
    }
}

async fn call(
    backend: Arc<FixtureBackend>,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = router(backend)
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    // SSE never ends: its status is enough.
    if uri == "/api/v1/events" && status == StatusCode::OK {
        return (status, String::new());
    }
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn every_route_has_a_row_and_every_row_a_route() {
    let routed: Vec<(String, &str)> = routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    let missing: Vec<String> = routed
        .iter()
        .filter(|(m, p)| !TABLE.iter().any(|row| row.0 == m && row.1 == *p))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the endpoint × role table (add one to web/src/routes/tests/matrix.rs): {missing:?}"
    );
    let stale: Vec<String> = TABLE
        .iter()
        .filter(|row| !routed.iter().any(|(m, p)| m == row.0 && *p == row.1))
        .map(|row| format!("{} {}", row.0, row.1))
        .collect();
    assert!(
        stale.is_empty(),
        "rows for routes the router does not have: {stale:?}"
    );
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_table_says() {
    let mut wrong = Vec::new();
    for (method, routed, uri, body, want) in TABLE {
        for (caller, want) in CALLERS.iter().zip(want) {
            let b = Arc::new(FixtureBackend::new(true));
            let (status, text) = call(b, method, uri, *caller, body).await;
            if class(status) != *want {
                wrong.push(format!(
                    "{method} {routed} as {caller:?}: {status} (want {want:?}) {text}"
                ));
            }
            let says_why = text.contains("needs a principal") || text.contains("not signed in");
            if status == StatusCode::UNAUTHORIZED && !says_why {
                wrong.push(format!(
                    "{method} {uri}: a 401 that does not say why: {text}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn metrics_are_public_only_when_configured() {
    let mut b = FixtureBackend::new(true);
    b.metrics_public = true;
    let (status, text) = call(Arc::new(b), "GET", "/metrics", None, "").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("niledr_probe_up"), "{text}");
    let (status, _) = call(
        Arc::new(FixtureBackend::new(true)),
        "GET",
        "/metrics",
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_path_is_a_404_and_a_throttled_read_a_429() {
    let b = Arc::new(FixtureBackend::new(true));
    let (status, _) = call(b.clone(), "GET", "/api/v1/nope", Some("Bearer viewer"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) = call(b, "GET", "/api/v1/sites", Some("Bearer flood"), "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
}
