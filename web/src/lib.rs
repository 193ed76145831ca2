//! niledr's HTTP surface: the router, the API's wire types and the console assets. The only
//! crate that knows the wire format; it defines the `Backend` handle it needs and the
//! orchestrator implements it.

pub mod access;
mod console;
mod error;
pub mod forward;
pub mod openapi;
mod routes;
pub mod types;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

pub use error::ApiError;
pub use routes::{router, routes};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use types::{
    ApprovalRequest, AuditPageView, AuditQuery, AuditVerifyView, ConfirmRequest, ControlRequest,
    CreateExecutionRequest, DrillApprovalRequest, DrillRunApprovalRequest, DrillRunRequest,
    DrillRunView, DrillView, ExecutionView, PrincipalView, RunbookSummaryView, ServiceHistoryView,
    ServiceView, SiteView, StatusEventView,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A mutating request from an authenticated caller.
#[derive(Clone, Debug)]
pub enum Command {
    Create(CreateExecutionRequest),
    Approve {
        id: String,
        request: ApprovalRequest,
    },
    Cancel {
        id: String,
        request: ControlRequest,
    },
    Pause {
        id: String,
        request: ControlRequest,
    },
    Resume {
        id: String,
        request: ControlRequest,
    },
    Confirm {
        id: String,
        request: ConfirmRequest,
    },
    /// Roll forward from `needs_operator`: run `request.step` again and continue.
    Retry {
        id: String,
        request: ConfirmRequest,
    },
}

/// What a request offers to prove who it is: its `Authorization` header and the peer address
/// it came from (rate limits of failed attempts are kept per client).
#[derive(Clone, Debug, Default)]
pub struct AuthRequest {
    pub authorization: Option<String>,
    /// The TCP peer; `None` when the server was not started with connect info (router tests).
    pub client: Option<IpAddr>,
    /// The console session cookie (`niledr_session`), used when there is no `Authorization`.
    pub session: Option<String>,
}

/// A console session just granted: the cookie value (never shown again) and its view.
#[derive(Clone)]
pub struct SessionGrant {
    pub id: String,
    pub view: types::SessionView,
    /// Mark the cookie `Secure` whatever the request said.
    pub secure: bool,
    /// The cookie's `Max-Age`: the session's absolute lifetime.
    pub max_age_secs: u64,
}

impl std::fmt::Debug for SessionGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionGrant")
            .field("principal", &self.view.principal)
            .finish_non_exhaustive()
    }
}

/// What a daemon without console sessions answers.
fn no_sessions() -> ApiError {
    ApiError::NotFound("console sessions are not available from this daemon".into())
}

/// What the HTTP layer needs from the daemon. Implemented by the orchestrator.
pub trait Backend: Send + Sync + 'static {
    /// `Ok` once the daemon is serving real data (store open, probes running).
    fn ready(&self) -> Result<(), String>;
    fn sites(&self) -> Vec<SiteView>;
    fn site(&self, id: &str) -> Option<SiteView>;
    fn services(&self) -> Vec<ServiceView>;
    /// `Ok(None)` for an unknown service.
    fn service_history(&self, id: &str, limit: usize)
    -> Result<Option<ServiceHistoryView>, String>;
    fn recent_events(&self, limit: usize) -> Result<Vec<StatusEventView>, String>;
    /// Live status changes for server-sent events.
    fn subscribe(&self) -> broadcast::Receiver<StatusEventView>;
    fn audit_verify(&self) -> Result<AuditVerifyView, String>;
    /// `GET /api/v1/audit`: a page of the chain, filtered (400 for a bad time or chain).
    fn audit(&self, query: &AuditQuery) -> Result<AuditPageView, ApiError>;
    /// Whether `/metrics` is served without a principal (`[api] metrics_public`).
    fn metrics_public(&self) -> bool {
        false
    }
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
    /// Cancelled when the daemon shuts down, so long-lived streams (SSE) end and graceful
    /// shutdown does not wait on them forever.
    fn shutdown_token(&self) -> CancellationToken;

    /// Check `Authorization: Bearer ...`; 401 with a reason when missing or invalid, 429 (with
    /// `Retry-After`) when this client failed too often. Async: a verification may wait for
    /// the daemon's bounded pool of password-hash workers.
    fn authenticate(&self, request: AuthRequest) -> BoxFuture<'_, Result<PrincipalView, ApiError>>;
    fn runbooks(&self) -> Vec<RunbookSummaryView>;
    /// Drill definitions with their next scheduled runs.
    fn drills(&self) -> Vec<DrillView>;
    /// Drill runs, newest first (optionally of one drill).
    fn drill_runs(&self, drill: Option<&str>, limit: usize) -> Result<Vec<DrillRunView>, ApiError>;
    fn drill_run(&self, id: &str) -> Result<DrillRunView, ApiError>;
    /// The run's report as Markdown for a post-drill review (409 while it is still running).
    fn drill_run_markdown(&self, id: &str) -> Result<String, ApiError>;
    /// Start a drill now (202 semantics: answers once the run is recorded, and started unless
    /// it is a live drill, which awaits two approvals of the run before its fault).
    fn start_drill(
        &self,
        who: PrincipalView,
        name: &str,
        request: DrillRunRequest,
    ) -> BoxFuture<'_, Result<DrillRunView, ApiError>>;
    /// Record a person's decision on live drill run `id` of drill `name` before its fault;
    /// the approval that completes the run's policy starts it (answers once committed).
    fn approve_drill_run(
        &self,
        who: PrincipalView,
        name: &str,
        id: &str,
        request: DrillRunApprovalRequest,
    ) -> BoxFuture<'_, Result<DrillRunView, ApiError>>;
    /// Record a standing pre-approval of a drill file (bound to its digest).
    fn approve_drill(
        &self,
        who: PrincipalView,
        name: &str,
        request: DrillApprovalRequest,
    ) -> BoxFuture<'_, Result<DrillView, ApiError>>;
    /// A dry run: resolved steps, guards against live probes, before → after, digest, the
    /// point of no return, and each step's readiness checked against the real world.
    fn plan<'a>(&'a self, runbook: &'a str) -> BoxFuture<'a, Result<types::PlanView, ApiError>>;
    fn executions(&self) -> Result<Vec<ExecutionView>, ApiError>;
    fn execution(&self, id: &str) -> Result<ExecutionView, ApiError>;
    /// Apply a command; answers once it is committed to the journal.
    fn command(
        &self,
        who: PrincipalView,
        command: Command,
    ) -> BoxFuture<'_, Result<ExecutionView, ApiError>>;
    /// `POST /api/v1/session`: check `token` like a bearer token (same rate limits) and open
    /// a console session for its user (audited before it answers).
    fn sign_in(
        &self,
        _token: String,
        _client: Option<IpAddr>,
    ) -> BoxFuture<'_, Result<SessionGrant, ApiError>> {
        Box::pin(async { Err(no_sessions()) })
    }
    /// `GET /api/v1/session`: the session of cookie value `id` (401 when it ended).
    fn session(&self, _id: &str) -> Result<types::SessionView, ApiError> {
        Err(no_sessions())
    }
    /// `DELETE /api/v1/session`: end session `id` (audited before it answers).
    fn sign_out(&self, _id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async { Err(no_sessions()) })
    }
    /// A mutating request with session cookie `id`: 403 unless `csrf` is the session's token.
    /// `Ok` for an unknown session (authentication refuses it with the reason).
    fn check_csrf(&self, _id: &str, _csrf: Option<&str>) -> Result<(), ApiError> {
        Ok(())
    }
    /// Each execution as committed after every journal write, for SSE `event: execution`.
    fn subscribe_executions(&self) -> Option<broadcast::Receiver<ExecutionView>> {
        None
    }
    /// `GET /api/v1/cluster`.
    fn cluster(&self) -> types::ClusterView {
        types::ClusterView::single()
    }
    /// `GET /api/v1/cluster/vouch/{service}`; `None` for an unknown service.
    fn vouch(&self, _service: &str) -> Option<types::VouchView> {
        None
    }
    /// `GET /api/v1/platform-mode`.
    fn platform_mode(&self) -> types::PlatformModeView {
        types::PlatformModeView::unpublished()
    }
    /// Each change of the platform level, for server-sent events.
    fn platform_changes(&self) -> futures::stream::BoxStream<'static, types::PlatformModeView> {
        Box::pin(futures::stream::empty())
    }
    /// A pager hook call (`POST /api/v1/hooks/{alertmanager,pagerduty,generic}`): verified,
    /// mapped to runbooks and answered once what it caused is committed.
    fn hook(&self, request: HookRequest) -> BoxFuture<'_, Result<types::HookAnswerView, ApiError>> {
        let source = request.source.as_str();
        Box::pin(async move {
            Err(ApiError::NotFound(format!(
                "the {source} hook is not configured ([hooks.{source}])"
            )))
        })
    }
    /// `GET /api/v1/notifications`: receivers and the newest `limit` outbox entries.
    fn notifications(&self, _limit: usize) -> Result<types::NotificationsView, ApiError> {
        Err(ApiError::NotFound(
            "this daemon keeps no notifications outbox".into(),
        ))
    }
    /// Cluster mode: whether this instance answers `method path` itself or forwards it.
    fn forward(&self, _method: &str, _path: &str) -> forward::Forward {
        forward::Forward::Local
    }
    /// `GET /api/v1/topology`: the live topology.
    fn topology(&self) -> types::TopologyView {
        types::TopologyView::default()
    }
    /// `GET /api/v1/primary`: where the writable PostgreSQL primary is now (`status` `up`) or
    /// why there is none.
    fn primary_health(&self) -> types::LbHealthView {
        types::LbHealthView {
            status: "unknown".into(),
            reason: "no live topology".into(),
            ..Default::default()
        }
    }
    /// `GET /api/v1/sites/{site}/health`; `None` for an unknown site.
    fn site_health(&self, _site: &str) -> Option<types::LbHealthView> {
        None
    }
    /// `GET /api/v1/services/{id}/health`; `None` for an unknown service.
    fn service_health(&self, _id: &str) -> Option<types::LbHealthView> {
        None
    }
    /// `GET /api/v1/triggers`: maintenance mode.
    fn triggers(&self) -> Result<types::TriggersView, ApiError> {
        Ok(types::TriggersView::default())
    }
    /// Pause (`pause`) or resume the runbook triggers; answers once committed and audited.
    fn set_triggers(
        &self,
        _who: PrincipalView,
        _pause: bool,
        _request: types::TriggersRequest,
    ) -> BoxFuture<'_, Result<types::TriggersView, ApiError>> {
        Box::pin(async {
            Err(ApiError::Unavailable(
                "maintenance mode is not available".into(),
            ))
        })
    }
}

pub type SharedBackend = Arc<dyn Backend>;

/// Who sends a pager hook (`POST /api/v1/hooks/{source}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookSource {
    Alertmanager,
    PagerDuty,
    Generic,
}

impl HookSource {
    pub fn as_str(self) -> &'static str {
        match self {
            HookSource::Alertmanager => "alertmanager",
            HookSource::PagerDuty => "pagerduty",
            HookSource::Generic => "generic",
        }
    }

    pub fn all() -> [HookSource; 3] {
        [
            HookSource::Alertmanager,
            HookSource::PagerDuty,
            HookSource::Generic,
        ]
    }
}

/// A pager hook call as it arrived: the headers that authenticate it and the raw body
/// (signatures are computed over the exact bytes).
#[derive(Clone, Debug)]
pub struct HookRequest {
    pub source: HookSource,
    pub authorization: Option<String>,
    /// `X-PagerDuty-Signature` or `X-Niledr-Signature`.
    pub signature: Option<String>,
    /// `X-Niledr-Timestamp` (generic hook).
    pub timestamp: Option<String>,
    pub body: Vec<u8>,
    pub client: Option<IpAddr>,
}
