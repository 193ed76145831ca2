//! Router tests with `oneshot` against a fixture backend (fixed data, no daemon), checking
//! status codes and bodies of the wire format.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::broadcast;
use tower::ServiceExt;

use crate::types::*;
use crate::{Backend, router};

struct FixtureBackend {
    ready: bool,
    tx: broadcast::Sender<StatusEventView>,
}

fn service(id: &str) -> ServiceView {
    ServiceView {
        id: id.into(),
        site: Some("khartoum".into()),
        kind: "postgres".into(),
        critical: true,
        status: "up".into(),
        reason: "primary".into(),
        since: "2026-01-01T00:00:00Z".into(),
        consecutive_failures: 0,
        consecutive_successes: 3,
        last_probe: None,
        replication: None,
        dns: None,
    }
}

impl Backend for FixtureBackend {
    fn ready(&self) -> Result<(), String> {
        if self.ready {
            Ok(())
        } else {
            Err("probes have not reported yet".into())
        }
    }
    fn sites(&self) -> Vec<SiteView> {
        vec![SiteView {
            id: "khartoum".into(),
            role: "primary".into(),
            country: "SD".into(),
            description: None,
            status: "up".into(),
            reason: "all 1 critical services up".into(),
            since: "2026-01-01T00:00:00Z".into(),
            services: vec![service("khartoum-postgres")],
        }]
    }
    fn site(&self, id: &str) -> Option<SiteView> {
        self.sites().into_iter().find(|s| s.id == id)
    }
    fn services(&self) -> Vec<ServiceView> {
        vec![service("khartoum-postgres")]
    }
    fn service_history(
        &self,
        id: &str,
        _limit: usize,
    ) -> Result<Option<ServiceHistoryView>, String> {
        Ok((id == "khartoum-postgres").then(|| ServiceHistoryView {
            service: id.into(),
            probes: vec![],
            status_changes: vec![],
        }))
    }
    fn recent_events(&self, _limit: usize) -> Result<Vec<StatusEventView>, String> {
        Ok(vec![])
    }
    fn subscribe(&self) -> broadcast::Receiver<StatusEventView> {
        self.tx.subscribe()
    }
    fn audit_verify(&self) -> Result<AuditVerifyView, String> {
        Ok(AuditVerifyView {
            ok: true,
            entries: 2,
            head: "ab".into(),
            broken_at: None,
            problem: None,
        })
    }
    fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        tokio_util::sync::CancellationToken::new()
    }
    fn authenticate(&self, authorization: Option<&str>) -> Result<PrincipalView, crate::ApiError> {
        match authorization {
            Some("Bearer good") => Ok(PrincipalView {
                name: "amira".into(),
                role: "approver".into(),
                tags: vec![],
            }),
            Some(_) => Err(crate::ApiError::Unauthorized("bad token".into())),
            None => Err(crate::ApiError::Unauthorized("missing token".into())),
        }
    }
    fn runbooks(&self) -> Vec<RunbookSummaryView> {
        vec![]
    }
    fn drills(&self) -> Vec<DrillView> {
        vec![]
    }
    fn plan(&self, runbook: &str) -> Result<serde_json::Value, crate::ApiError> {
        Err(crate::ApiError::NotFound(format!("no runbook {runbook:?}")))
    }
    fn executions(&self) -> Result<Vec<ExecutionView>, crate::ApiError> {
        Ok(vec![])
    }
    fn execution(&self, id: &str) -> Result<ExecutionView, crate::ApiError> {
        Err(crate::ApiError::NotFound(format!("no execution {id:?}")))
    }
    fn command(
        &self,
        who: PrincipalView,
        _c: crate::Command,
    ) -> crate::BoxFuture<'_, Result<ExecutionView, crate::ApiError>> {
        Box::pin(async move { Err(crate::ApiError::Forbidden(format!("{} may not", who.name))) })
    }
    fn metrics(&self) -> String {
        "niledr_probe_up{service=\"khartoum-postgres\"} 1\n".into()
    }
}

async fn get(ready: bool, uri: &str) -> (StatusCode, String) {
    let (tx, _) = broadcast::channel(4);
    let app = router(Arc::new(FixtureBackend { ready, tx }));
    let resp = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn table_of_routes() {
    let cases: &[(bool, &str, StatusCode, &str)] = &[
        (true, "/healthz", StatusCode::OK, "\"ok\""),
        (true, "/readyz", StatusCode::OK, "ready"),
        (
            false,
            "/readyz",
            StatusCode::SERVICE_UNAVAILABLE,
            "probes have not reported yet",
        ),
        (
            true,
            "/api/v1/sites",
            StatusCode::OK,
            "\"khartoum-postgres\"",
        ),
        (
            true,
            "/api/v1/sites/khartoum",
            StatusCode::OK,
            "\"role\":\"primary\"",
        ),
        (
            true,
            "/api/v1/sites/atlantis",
            StatusCode::NOT_FOUND,
            "{\"error\":\"no site \\\"atlantis\\\"; known sites: khartoum\"}",
        ),
        (
            true,
            "/api/v1/services/khartoum-postgres/history",
            StatusCode::OK,
            "\"probes\":[]",
        ),
        (
            true,
            "/api/v1/services/nope/history",
            StatusCode::NOT_FOUND,
            "no service",
        ),
        (
            true,
            "/api/v1/services/khartoum-postgres/history?limit=abc",
            StatusCode::BAD_REQUEST,
            "limit must be a whole number",
        ),
        (
            true,
            "/api/v1/services/khartoum-postgres/history?limit=0",
            StatusCode::BAD_REQUEST,
            "limit must be",
        ),
        (true, "/api/v1/audit/verify", StatusCode::OK, "\"ok\":true"),
        (true, "/metrics", StatusCode::OK, "niledr_probe_up"),
        (
            true,
            "/api/v1/nothing",
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
        (true, "/", StatusCode::OK, "niledr"),
        (true, "/assets/app.js", StatusCode::OK, "EventSource"),
    ];
    for (ready, uri, want_status, want_body) in cases {
        let (status, body) = get(*ready, uri).await;
        assert_eq!(status, *want_status, "{uri}: {body}");
        assert!(
            body.contains(want_body),
            "{uri}: body {body:?} lacks {want_body:?}"
        );
    }
}

async fn post(uri: &str, auth: Option<&str>, body: &str) -> (StatusCode, String) {
    let (tx, _) = broadcast::channel(4);
    let app = router(Arc::new(FixtureBackend { ready: true, tx }));
    let mut req = Request::post(uri).header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = app
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn mutations_need_a_token_and_a_valid_body() {
    let ok_body = r#"{"runbook":"failover","reason":"drill"}"#;
    let cases: &[(&str, Option<&str>, &str, StatusCode, &str)] = &[
        (
            "/api/v1/executions",
            None,
            ok_body,
            StatusCode::UNAUTHORIZED,
            "missing token",
        ),
        (
            "/api/v1/executions",
            Some("Bearer nope"),
            ok_body,
            StatusCode::UNAUTHORIZED,
            "bad token",
        ),
        (
            "/api/v1/executions",
            Some("Bearer good"),
            "{not json",
            StatusCode::BAD_REQUEST,
            "bad request body",
        ),
        (
            "/api/v1/executions",
            Some("Bearer good"),
            r#"{"runbook":"x","reason":"y","extra":1}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `extra`",
        ),
        (
            "/api/v1/executions",
            Some("Bearer good"),
            ok_body,
            StatusCode::FORBIDDEN,
            "amira may not",
        ),
        (
            "/api/v1/executions/e1/approvals",
            Some("Bearer good"),
            r#"{"decision":"approve"}"#,
            StatusCode::FORBIDDEN,
            "amira may not",
        ),
        (
            "/api/v1/executions/e1/cancel",
            Some("Bearer good"),
            "",
            StatusCode::FORBIDDEN,
            "amira may not",
        ),
        (
            "/api/v1/executions/e1/pause",
            None,
            "",
            StatusCode::UNAUTHORIZED,
            "missing token",
        ),
        (
            "/api/v1/executions/e1/resume",
            Some("Bearer good"),
            "[1]",
            StatusCode::BAD_REQUEST,
            "bad request body",
        ),
    ];
    for (uri, auth, body, want, fragment) in cases {
        let (status, text) = post(uri, *auth, body).await;
        assert_eq!(status, *want, "{uri} {auth:?} {body}: {text}");
        assert!(
            text.contains(fragment),
            "{uri}: {text:?} lacks {fragment:?}"
        );
    }
}
