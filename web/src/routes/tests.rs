//! Router tests with `oneshot` against a fixture backend (fixed data, no daemon), checking
//! status codes and bodies of the wire format.

use std::sync::{Arc, Mutex};

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
    /// Standing approvals given through the API, per drill.
    approvals: Mutex<Vec<(String, StandingApprovalView)>>,
    /// Runs started through the API, newest last; r1 (finished) and r2 (running) are fixed.
    started: Mutex<Vec<(String, DrillRunRequest)>>,
    metrics_public: bool,
    /// Cluster mode as a follower: writes go to this leader (its URL, its name).
    follows: Option<(String, String)>,
}

impl FixtureBackend {
    fn new(ready: bool) -> FixtureBackend {
        let (tx, _) = broadcast::channel(4);
        FixtureBackend {
            ready,
            tx,
            approvals: Mutex::new(vec![]),
            started: Mutex::new(vec![]),
            metrics_public: false,
            follows: None,
        }
    }
}

const MONTHLY: &str = "postgres-primary-failure";
const ON_DEMAND: &str = "planned-switchover";
const DIGEST: &str = "d1d1";

fn drill(name: &str, approvals: Vec<StandingApprovalView>) -> DrillView {
    let standing = name == MONTHLY;
    let approved = standing && approvals.iter().filter(|a| a.current).count() >= 2;
    DrillView {
        name: name.into(),
        description: "kill -9 the primary".into(),
        file: format!("/etc/niledr/drills/{name}.toml"),
        runbook: "failover-khartoum-to-port-sudan".into(),
        schedule: standing.then(|| "0 2 1 * *".into()),
        timezone: "Africa/Khartoum".into(),
        approval: if standing { "standing" } else { "live" }.into(),
        digest: DIGEST.into(),
        scenario: DrillScenarioView {
            fault: "kill_primary_postgres".into(),
            target: "khartoum-postgres".into(),
            lag_before_fault_ms: None,
        },
        objectives: DrillObjectivesView {
            rto_ms: 240_000,
            rpo_ms: [("postgres".to_string(), 60_000)].into(),
            no_lost_writes: false,
        },
        upcoming: if standing {
            vec![
                DrillSlotView {
                    at: "2026-02-01T02:00:00+02:00[Africa/Khartoum]".into(),
                    due: true,
                    skipped_because: None,
                },
                DrillSlotView {
                    at: "2026-03-01T09:00:00+02:00[Africa/Khartoum]".into(),
                    due: false,
                    skipped_because: Some("blackout 08:00-20:00".into()),
                },
            ]
        } else {
            vec![]
        },
        last_verdict: standing.then(|| "met".into()),
        last_run: standing.then(|| "r1".into()),
        standing_approved: approved,
        standing_needs: (standing && !approved).then(|| {
            format!(
                "{} more approval(s) of digest {DIGEST}",
                2 - approvals.len().min(2)
            )
        }),
        standing_approvals: approvals,
    }
}

fn run(id: &str, drill: &str, state: &str, reason: &str) -> DrillRunView {
    let finished = state != "running";
    DrillRunView {
        id: id.into(),
        drill: drill.into(),
        digest: DIGEST.into(),
        trigger: "on_demand".into(),
        requested_by: "amira".into(),
        state: state.into(),
        phase: if finished { "done" } else { "fault" }.into(),
        approvals: vec![],
        approval_needed: None,
        approval_deadline: None,
        scheduled_for: None,
        started_at: "2026-01-01T00:00:00Z".into(),
        finished_at: finished.then(|| "2026-01-01T00:03:00Z".into()),
        execution: None,
        cleanup_execution: None,
        error: None,
        verdict: finished.then(|| "met".into()),
        report: None,
        notes: vec![TimelineNoteView {
            at: "2026-01-01T00:00:01Z".into(),
            event: "started".into(),
            detail: reason.into(),
        }],
    }
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
        alerts: Vec::new(),
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
            current_role: "primary".into(),
            backups: None,
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
    fn authenticate(
        &self,
        request: crate::AuthRequest,
    ) -> crate::BoxFuture<'_, Result<PrincipalView, crate::ApiError>> {
        let person = |name: &str, role: &str| {
            Ok(PrincipalView {
                name: name.into(),
                role: role.into(),
                tags: vec![],
            })
        };
        let r = match request.authorization.as_deref() {
            Some("Bearer good") => person("amira", "approver"),
            Some("Bearer viewer") => person("nour", "viewer"),
            Some("Bearer operator") => person("khalid", "operator"),
            Some("Bearer admin") => person("hassan", "admin"),
            Some("Bearer flood") => Err(crate::ApiError::TooManyRequests {
                message: "too many failed attempts".into(),
                retry_after_secs: 7,
            }),
            Some(_) => Err(crate::ApiError::Unauthorized("bad token".into())),
            None => Err(crate::ApiError::Unauthorized("missing token".into())),
        };
        Box::pin(async move { r })
    }
    fn check_csrf(&self, id: &str, csrf: Option<&str>) -> Result<(), crate::ApiError> {
        // One console session, "s1", whose CSRF token is "c1".
        match (id, csrf) {
            ("s1", Some("c1")) => Ok(()),
            ("s1", _) => Err(crate::ApiError::Forbidden("missing X-CSRF-Token".into())),
            _ => Ok(()),
        }
    }
    fn runbooks(&self) -> Vec<RunbookSummaryView> {
        vec![]
    }
    fn drills(&self) -> Vec<DrillView> {
        let given = self.approvals.lock().unwrap();
        [MONTHLY, ON_DEMAND]
            .into_iter()
            .map(|name| {
                let mine = given
                    .iter()
                    .filter(|(d, _)| d == name)
                    .map(|(_, a)| a.clone())
                    .collect();
                drill(name, mine)
            })
            .collect()
    }
    fn drill_runs(
        &self,
        drill: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DrillRunView>, crate::ApiError> {
        let mut all = vec![
            run("r1", MONTHLY, "finished", ""),
            run("r2", MONTHLY, "running", ""),
        ];
        for (i, (name, req)) in self.started.lock().unwrap().iter().enumerate() {
            all.push(run(&format!("n{i}"), name, "running", &req.reason));
        }
        all.reverse();
        Ok(all
            .into_iter()
            .filter(|r| drill.is_none_or(|d| r.drill == d))
            .take(limit)
            .collect())
    }
    fn drill_run(&self, id: &str) -> Result<DrillRunView, crate::ApiError> {
        self.drill_runs(None, usize::MAX)?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| crate::ApiError::NotFound(format!("no drill run {id:?}")))
    }
    fn drill_run_markdown(&self, id: &str) -> Result<String, crate::ApiError> {
        let r = self.drill_run(id)?;
        if r.state == "running" {
            return Err(crate::ApiError::Conflict(format!(
                "drill run {id} is still running"
            )));
        }
        Ok(format!("# Drill report: {}\n\nVerdict: **met**\n", r.drill))
    }
    fn start_drill(
        &self,
        who: PrincipalView,
        name: &str,
        request: DrillRunRequest,
    ) -> crate::BoxFuture<'_, Result<DrillRunView, crate::ApiError>> {
        let name = name.to_string();
        Box::pin(async move {
            role_at_least(&who, "operator")?;
            let mut started = self.started.lock().unwrap();
            let id = format!("n{}", started.len());
            let reason = request.reason.clone();
            started.push((name.clone(), request));
            Ok(run(&id, &name, "running", &reason))
        })
    }
    fn approve_drill_run(
        &self,
        who: PrincipalView,
        name: &str,
        id: &str,
        request: DrillRunApprovalRequest,
    ) -> crate::BoxFuture<'_, Result<DrillRunView, crate::ApiError>> {
        let (name, id) = (name.to_string(), id.to_string());
        Box::pin(async move {
            role_at_least(&who, "approver")?;
            let mut r = self.drill_run(&id)?;
            if r.drill != name {
                return Err(crate::ApiError::NotFound(format!(
                    "drill {name} has no run {id:?}"
                )));
            }
            r.approvals.push(RunApprovalView {
                user: who.name,
                roles: who.tags,
                decision: request.decision,
                digest: request.digest,
                at: "2026-01-01T00:00:00Z".into(),
                comment: request.comment,
            });
            Ok(r)
        })
    }
    fn approve_drill(
        &self,
        who: PrincipalView,
        name: &str,
        request: DrillApprovalRequest,
    ) -> crate::BoxFuture<'_, Result<DrillView, crate::ApiError>> {
        let name = name.to_string();
        Box::pin(async move {
            role_at_least(&who, "approver")?;
            if request.digest != DIGEST {
                return Err(crate::ApiError::Conflict(format!(
                    "digest {} is not the drill as loaded ({DIGEST})",
                    request.digest
                )));
            }
            self.approvals.lock().unwrap().push((
                name.clone(),
                StandingApprovalView {
                    user: who.name,
                    roles: vec![who.role],
                    digest: request.digest,
                    at: "2026-01-01T00:00:00Z".into(),
                    comment: request.comment,
                    current: true,
                },
            ));
            self.drills()
                .into_iter()
                .find(|d| d.name == name)
                .ok_or_else(|| crate::ApiError::NotFound(format!("no drill {name:?}")))
        })
    }
    fn plan<'a>(
        &'a self,
        runbook: &'a str,
    ) -> crate::BoxFuture<'a, Result<PlanView, crate::ApiError>> {
        Box::pin(async move { Err(crate::ApiError::NotFound(format!("no runbook {runbook:?}"))) })
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
        c: crate::Command,
    ) -> crate::BoxFuture<'_, Result<ExecutionView, crate::ApiError>> {
        // The daemon's rule (engine/commands.rs): viewers read only, approvals need an
        // approver; past that the fixture has no execution to act on.
        let need = match c {
            crate::Command::Approve { .. } => "approver",
            _ => "operator",
        };
        let r = role_at_least(&who, need).and_then(|()| {
            Err(crate::ApiError::Conflict(format!(
                "{} may not: the fixture has no execution",
                who.name
            )))
        });
        Box::pin(async move { r })
    }
    fn audit(&self, q: &AuditQuery) -> Result<AuditPageView, crate::ApiError> {
        if q.since.as_deref().is_some_and(|s| !s.ends_with('Z')) {
            return Err(crate::ApiError::BadRequest(format!(
                "since must be an RFC 3339 time, got {:?}",
                q.since
            )));
        }
        let entries: Vec<AuditEntryView> = (q.after + 1..=3)
            .filter(|seq| q.actor.as_deref().is_none_or(|a| a == "amira" || *seq != 2))
            .take(q.limit)
            .map(|seq| AuditEntryView {
                seq,
                at: "2026-01-01T00:00:00Z".into(),
                actor: if seq == 2 { "niledr" } else { "amira" }.into(),
                kind: "approval.approved".into(),
                execution: Some("e1".into()),
                detail: [("id".to_string(), "e1".to_string())].into(),
                prev_hash: "p".into(),
                hash: format!("h{seq}"),
            })
            .collect();
        let next_after = (entries.len() == q.limit)
            .then(|| entries.last().map(|e| e.seq))
            .flatten()
            .filter(|s| *s < 3);
        Ok(AuditPageView {
            chain: q.chain.clone().unwrap_or_else(|| "shared".into()),
            entries,
            next_after,
            head_seq: 3,
        })
    }
    fn metrics_public(&self) -> bool {
        self.metrics_public
    }
    fn forward(&self, method: &str, _path: &str) -> crate::forward::Forward {
        match &self.follows {
            Some((url, leader)) if method != "GET" => crate::forward::Forward::To {
                url: url.clone(),
                leader: leader.clone(),
            },
            _ => crate::forward::Forward::Local,
        }
    }
    fn metrics(&self) -> String {
        "niledr_probe_up{service=\"khartoum-postgres\"} 1\n".into()
    }
}

/// The fixture's rule for who may do what: viewer < operator < approver < admin.
fn role_at_least(who: &PrincipalView, need: &str) -> Result<(), crate::ApiError> {
    let rank = |r: &str| {
        ["viewer", "operator", "approver", "admin"]
            .iter()
            .position(|x| *x == r)
    };
    if rank(&who.role) >= rank(need) {
        Ok(())
    } else {
        Err(crate::ApiError::Forbidden(format!(
            "{} has role {}, which needs {need} or above",
            who.name, who.role
        )))
    }
}

/// GET as a viewer (every read needs a principal).
async fn get(ready: bool, uri: &str) -> (StatusCode, String) {
    let app = router(Arc::new(FixtureBackend::new(ready)));
    let resp = app
        .oneshot(
            Request::get(uri)
                .header("authorization", "Bearer viewer")
                .body(Body::empty())
                .unwrap(),
        )
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
        (true, "/", StatusCode::OK, "id=\"view\""),
        (
            true,
            "/assets/pages.js",
            StatusCode::OK,
            "id=\"drill-runs\"",
        ),
        (true, "/assets/pages.js", StatusCode::OK, "?format=md"),
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
    post_to(Arc::new(FixtureBackend::new(true)), uri, auth, body).await
}

async fn post_to(
    backend: Arc<FixtureBackend>,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let app = router(backend);
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
async fn a_throttled_client_gets_429_with_retry_after_and_a_json_message() {
    let app = router(Arc::new(FixtureBackend::new(true)));
    let req = Request::post("/api/v1/executions/e1/cancel")
        .header("authorization", "Bearer flood")
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body.error, "too many failed attempts");
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
            StatusCode::CONFLICT,
            "amira may not: the fixture has no execution",
        ),
        (
            "/api/v1/executions/e1/approvals",
            Some("Bearer good"),
            r#"{"decision":"approve"}"#,
            StatusCode::CONFLICT,
            "amira may not: the fixture has no execution",
        ),
        (
            "/api/v1/executions/e1/cancel",
            Some("Bearer good"),
            "",
            StatusCode::CONFLICT,
            "amira may not: the fixture has no execution",
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

#[tokio::test]
async fn a_run_decision_needs_a_token_a_digest_and_a_known_decision() {
    let uri = "/api/v1/drills/postgres-primary-failure/runs/r2/approvals";
    let cases: &[(&str, Option<&str>, &str, StatusCode, &str)] = &[
        (
            uri,
            None,
            r#"{"digest":"d1d1"}"#,
            StatusCode::UNAUTHORIZED,
            "missing token",
        ),
        (
            uri,
            Some("Bearer good"),
            "{}",
            StatusCode::BAD_REQUEST,
            "missing field `digest`",
        ),
        (
            uri,
            Some("Bearer good"),
            r#"{"digest":"d1d1","decision":"maybe"}"#,
            StatusCode::BAD_REQUEST,
            "decision must be \\\"approve\\\" or \\\"reject\\\"",
        ),
        (
            uri,
            Some("Bearer good"),
            r#"{"digest":"d1d1","run":"r2"}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `run`",
        ),
        (
            "/api/v1/drills/atlantis/runs/r2/approvals",
            Some("Bearer good"),
            r#"{"digest":"d1d1"}"#,
            StatusCode::NOT_FOUND,
            "known drills",
        ),
        (
            "/api/v1/drills/planned-switchover/runs/r2/approvals",
            Some("Bearer good"),
            r#"{"digest":"d1d1"}"#,
            StatusCode::NOT_FOUND,
            "has no run",
        ),
        (
            uri,
            Some("Bearer good"),
            r#"{"digest":"d1d1","comment":"read it"}"#,
            StatusCode::OK,
            "\"decision\":\"approve\"",
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

/// A follower does not forward a write made with a console session (the leader does not know
/// the session and would answer 401, signing the person out): it says where to act. (A bearer
/// token's write is forwarded: the cluster suite covers that against real instances.)
#[tokio::test]
async fn a_follower_sends_console_sessions_to_the_leaders_console() {
    let b = Arc::new(FixtureBackend {
        follows: Some(("http://127.0.0.1:1".into(), "port-sudan-1".into())),
        ..FixtureBackend::new(true)
    });
    let write = |auth: (&'static str, &'static str)| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/executions/x1/cancel")
            .header("content-type", "application/json")
            .header(auth.0, auth.1)
            .header("x-csrf-token", "c")
            .body(Body::from("{}"))
            .unwrap()
    };
    let (status, _, text) = send(b, write(("cookie", "niledr_session=s1"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(
        text.contains("open the leader's console at http://127.0.0.1:1/")
            && text.contains("port-sudan-1"),
        "{text}"
    );
}

/// One request against `backend`: status, headers and body.
async fn send(
    backend: Arc<FixtureBackend>,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = router(backend).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn drill_reads_and_reports() {
    let cases: &[(&str, StatusCode, &str)] = &[
        (
            "/api/v1/drills",
            StatusCode::OK,
            "\"postgres-primary-failure\"",
        ),
        (
            "/api/v1/drills/postgres-primary-failure",
            StatusCode::OK,
            "\"skipped_because\":\"blackout 08:00-20:00\"",
        ),
        (
            "/api/v1/drills/planned-switchover",
            StatusCode::OK,
            "\"approval\":\"live\"",
        ),
        (
            "/api/v1/drills/atlantis",
            StatusCode::NOT_FOUND,
            "{\"error\":\"no drill \\\"atlantis\\\"; known drills: postgres-primary-failure, planned-switchover\"}",
        ),
        ("/api/v1/drill-runs", StatusCode::OK, "\"id\":\"r2\""),
        (
            "/api/v1/drill-runs?drill=postgres-primary-failure&limit=1000",
            StatusCode::OK,
            "\"id\":\"r1\"",
        ),
        (
            "/api/v1/drill-runs?drill=planned-switchover",
            StatusCode::OK,
            "[]",
        ),
        (
            "/api/v1/drill-runs?limit=abc",
            StatusCode::BAD_REQUEST,
            "limit must be a whole number from 1 to 1000, got \\\"abc\\\"",
        ),
        (
            "/api/v1/drill-runs?limit=1001",
            StatusCode::BAD_REQUEST,
            "limit must be",
        ),
        (
            "/api/v1/drill-runs?limit=0",
            StatusCode::BAD_REQUEST,
            "limit must be",
        ),
        (
            "/api/v1/drill-runs/r1",
            StatusCode::OK,
            "\"verdict\":\"met\"",
        ),
        (
            "/api/v1/drill-runs/r1?format=json",
            StatusCode::OK,
            "\"verdict\":\"met\"",
        ),
        (
            "/api/v1/drill-runs/r1?format=md",
            StatusCode::OK,
            "# Drill report: postgres-primary-failure",
        ),
        (
            "/api/v1/drill-runs/r1?format=pdf",
            StatusCode::BAD_REQUEST,
            "format must be json or md, got \\\"pdf\\\"",
        ),
        (
            "/api/v1/drill-runs/r2?format=md",
            StatusCode::CONFLICT,
            "still running",
        ),
        (
            "/api/v1/drill-runs/nope",
            StatusCode::NOT_FOUND,
            "no drill run",
        ),
        (
            "/api/v1/drill-runs/nope?format=md",
            StatusCode::NOT_FOUND,
            "no drill run",
        ),
    ];
    for (uri, want_status, want_body) in cases {
        let (status, body) = get(true, uri).await;
        assert_eq!(status, *want_status, "{uri}: {body}");
        assert!(
            body.contains(want_body),
            "{uri}: body {body:?} lacks {want_body:?}"
        );
    }
}

#[tokio::test]
async fn drill_run_lists_are_bounded_and_reports_are_markdown() {
    let b = Arc::new(FixtureBackend::new(true));
    let get_req = |uri: &str| {
        Request::get(uri)
            .header("authorization", "Bearer viewer")
            .body(Body::empty())
            .unwrap()
    };

    let (status, _, body) = send(b.clone(), get_req("/api/v1/drill-runs?limit=1")).await;
    assert_eq!(status, StatusCode::OK);
    let list: Vec<DrillRunView> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0].id, "r2", "newest first: {body}");

    let (status, headers, body) = send(b.clone(), get_req("/api/v1/drill-runs/r1?format=md")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        headers.get("content-type").unwrap(),
        "text/markdown; charset=utf-8"
    );

    for uri in ["/api/v1/drill-runs/r1", "/api/v1/drill-runs/r1?format=json"] {
        let (status, headers, body) = send(b.clone(), get_req(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        let run: DrillRunView = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (run.state.as_str(), run.phase.as_str()),
            ("finished", "done")
        );
    }
}

#[tokio::test]
async fn drill_mutations_need_a_token_and_a_valid_body() {
    let approvals = "/api/v1/drills/postgres-primary-failure/approvals";
    let runs = "/api/v1/drills/postgres-primary-failure/runs";
    let ok = r#"{"digest":"d1d1","comment":"read it"}"#;
    let cases: &[(&str, Option<&str>, &str, StatusCode, &str)] = &[
        (
            approvals,
            None,
            ok,
            StatusCode::UNAUTHORIZED,
            "missing token",
        ),
        (
            approvals,
            Some("Bearer nope"),
            ok,
            StatusCode::UNAUTHORIZED,
            "bad token",
        ),
        (
            approvals,
            Some("Bearer good"),
            "{not json",
            StatusCode::BAD_REQUEST,
            "bad request body",
        ),
        (
            approvals,
            Some("Bearer good"),
            "{}",
            StatusCode::BAD_REQUEST,
            "missing field `digest`",
        ),
        (
            approvals,
            Some("Bearer good"),
            r#"{"digest":"d1d1","extra":1}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `extra`",
        ),
        (
            "/api/v1/drills/atlantis/approvals",
            Some("Bearer good"),
            ok,
            StatusCode::NOT_FOUND,
            "known drills: postgres-primary-failure, planned-switchover",
        ),
        (
            approvals,
            Some("Bearer good"),
            r#"{"digest":"0ld"}"#,
            StatusCode::CONFLICT,
            "is not the drill as loaded",
        ),
        (
            approvals,
            Some("Bearer good"),
            ok,
            StatusCode::OK,
            "\"comment\":\"read it\"",
        ),
        (runs, None, "", StatusCode::UNAUTHORIZED, "missing token"),
        (
            runs,
            Some("Bearer nope"),
            "",
            StatusCode::UNAUTHORIZED,
            "bad token",
        ),
        (
            runs,
            Some("Bearer good"),
            "[1]",
            StatusCode::BAD_REQUEST,
            "bad request body",
        ),
        (
            runs,
            Some("Bearer good"),
            r#"{"why":"x"}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `why`",
        ),
        (
            "/api/v1/drills/atlantis/runs",
            Some("Bearer good"),
            "",
            StatusCode::NOT_FOUND,
            "no drill \\\"atlantis\\\"",
        ),
        (
            runs,
            Some("Bearer good"),
            "",
            StatusCode::ACCEPTED,
            "\"state\":\"running\"",
        ),
        (
            runs,
            Some("Bearer good"),
            r#"{"reason":"quarterly review"}"#,
            StatusCode::ACCEPTED,
            "quarterly review",
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

#[tokio::test]
async fn a_drill_run_started_without_a_body_is_accepted_and_listed() {
    let b = Arc::new(FixtureBackend::new(true));
    // No content type, no body: what `curl -X POST` sends.
    let req = Request::post("/api/v1/drills/planned-switchover/runs")
        .header("authorization", "Bearer good")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(b.clone(), req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run: DrillRunView = serde_json::from_str(&body).unwrap();
    assert_eq!(run.drill, "planned-switchover");
    assert_eq!(
        headers.get("location").unwrap(),
        &format!("/api/v1/drill-runs/{}", run.id)
    );
    assert_eq!(
        b.started.lock().unwrap().as_slice(),
        &[("planned-switchover".to_string(), DrillRunRequest::default())]
    );

    let (status, _, body) = send(
        b.clone(),
        Request::get("/api/v1/drill-runs?drill=planned-switchover")
            .header("authorization", "Bearer viewer")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let list: Vec<DrillRunView> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [run.id.as_str()]
    );
}

#[tokio::test]
async fn a_standing_approval_shows_on_the_drill() {
    let b = Arc::new(FixtureBackend::new(true));
    for token in ["Bearer good", "Bearer good"] {
        let (status, text) = post_to(
            b.clone(),
            "/api/v1/drills/postgres-primary-failure/approvals",
            Some(token),
            r#"{"digest":"d1d1"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let (status, _, body) = send(
        b,
        Request::get("/api/v1/drills/postgres-primary-failure")
            .header("authorization", "Bearer viewer")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let d: DrillView = serde_json::from_str(&body).unwrap();
    assert_eq!(d.standing_approvals.len(), 2, "{body}");
    assert!(d.standing_approved, "{body}");
    assert_eq!(d.standing_needs, None);
}

mod matrix;
#[tokio::test]
async fn a_cookie_authenticated_mutation_needs_the_csrf_token_and_nothing_else_does() {
    let post = |cookie: Option<&str>, csrf: Option<&str>, auth: Option<&str>| {
        let mut r = Request::post("/api/v1/executions").header("content-type", "application/json");
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::from(r#"{"runbook":"x","reason":"y"}"#))
            .unwrap()
    };
    let b = || Arc::new(FixtureBackend::new(true));
    let (status, _, body) = send(b(), post(Some("niledr_session=s1"), None, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("X-CSRF-Token"), "{body}");
    let (status, _, _) = send(b(), post(Some("a=b; niledr_session=s1"), Some("c2"), None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // With the token the layer lets it through (the fixture then refuses the missing bearer).
    let (status, _, body) = send(b(), post(Some("niledr_session=s1"), Some("c1"), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A bearer-token request needs no CSRF token, cookie or not.
    let (status, _, body) = send(
        b(),
        post(Some("niledr_session=s1"), None, Some("Bearer good")),
    )
    .await;
    // (the fixture's own answer to the command, not the CSRF refusal)
    assert!(
        !body.contains("X-CSRF-Token") && body.contains("amira may not"),
        "{status} {body}"
    );
    // GETs never need it; the console's responses carry the CSP.
    let get = Request::get("/")
        .header("cookie", "niledr_session=s1")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(b(), get).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
}

#[tokio::test]
async fn hooks_answer_404_until_the_backend_configures_them() {
    for source in ["alertmanager", "pagerduty", "generic"] {
        let uri = format!("/api/v1/hooks/{source}");
        let (status, body) = post(&uri, None, "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        assert!(body.contains(&format!("[hooks.{source}]")), "{uri}: {body}");
    }
}

#[tokio::test]
async fn notifications_need_a_principal_and_a_sane_limit() {
    let cases: &[(&str, Option<&str>, StatusCode, &str)] = &[
        (
            "/api/v1/notifications",
            None,
            StatusCode::UNAUTHORIZED,
            "missing token",
        ),
        (
            "/api/v1/notifications?limit=5000",
            Some("Bearer good"),
            StatusCode::BAD_REQUEST,
            "limit must be a whole number from 1 to 1000",
        ),
        // The fixture keeps no outbox: the trait's default answers for it.
        (
            "/api/v1/notifications",
            Some("Bearer good"),
            StatusCode::NOT_FOUND,
            "keeps no notifications outbox",
        ),
    ];
    for (uri, auth, want, fragment) in cases {
        let mut req = Request::get(*uri);
        if let Some(a) = auth {
            req = req.header("authorization", *a);
        }
        let (status, _, body) = send(
            Arc::new(FixtureBackend::new(true)),
            req.body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, *want, "{uri}: {body}");
        assert!(body.contains(fragment), "{uri}: {body}");
    }
}
