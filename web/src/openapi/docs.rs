//! One `RouteDoc` per route of `routes()`: what it is for, its parameters and its bodies.

use axum::http::Method as M;

use super::QueryType::{Integer, Limit, OneOf, String as Str};
use super::{Answer, Query, RouteDoc, Shape, many, one, status_object};
use crate::types::*;

const LIMIT: Query = ("limit", Limit(10_000), "at most this many (1 to 10000)");
const LIMIT_1000: Query = ("limit", Limit(1000), "at most this many (1 to 1000)");

/// Any JSON value (the OpenAPI document itself).
fn any_json() -> Shape {
    Shape {
        schema: utoipa::openapi::schema::ObjectBuilder::new().build().into(),
        components: Vec::new(),
    }
}

fn get(
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    answer: Answer,
    errors: &'static [u16],
) -> RouteDoc {
    RouteDoc {
        method: M::GET,
        path,
        tag,
        summary,
        query: &[],
        body: None,
        ok: 200,
        answer,
        errors,
        same_body: &[],
    }
}

fn post(
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    body: (fn() -> Shape, bool),
    ok: u16,
    answer: fn() -> Shape,
) -> RouteDoc {
    RouteDoc {
        method: M::POST,
        path,
        tag,
        summary,
        query: &[],
        body: Some(body),
        ok,
        answer: Answer::Json(answer),
        errors: &[404, 409],
        same_body: &[],
    }
}

fn with_query(mut d: RouteDoc, query: &'static [Query]) -> RouteDoc {
    d.query = query;
    d
}

/// Every route's documentation.
pub fn docs() -> Vec<RouteDoc> {
    use Answer::{Events, Json, Text};
    let mut d = vec![
        get(
            "/healthz",
            "health",
            "The process answers",
            Json(status_object),
            &[],
        ),
        get(
            "/readyz",
            "health",
            "Serving real data (store open, probes running)",
            Json(status_object),
            &[503],
        ),
        get(
            "/metrics",
            "health",
            "Prometheus metrics (text exposition)",
            Text("text/plain"),
            &[],
        ),
        get(
            "/api/v1/sites",
            "health",
            "Every site with its services",
            Json(many::<SiteView>),
            &[],
        ),
        get(
            "/api/v1/sites/{site}",
            "health",
            "One site",
            Json(one::<SiteView>),
            &[404],
        ),
        get(
            "/api/v1/services",
            "health",
            "Every service",
            Json(many::<ServiceView>),
            &[],
        ),
        with_query(
            get(
                "/api/v1/services/{id}/history",
                "health",
                "A service's recent probe results",
                Json(one::<ServiceHistoryView>),
                &[404],
            ),
            &[LIMIT],
        ),
        with_query(
            get(
                "/api/v1/status-changes",
                "health",
                "Recent status changes, newest first",
                Json(many::<StatusEventView>),
                &[],
            ),
            &[LIMIT],
        ),
        get(
            "/api/v1/events",
            "health",
            "Server-sent events: status, execution, platform-mode",
            Events,
            &[],
        ),
        with_query(
            get(
                "/api/v1/audit",
                "audit",
                "Audit entries, oldest first, filtered and paged",
                Json(one::<AuditPageView>),
                &[],
            ),
            &[
                ("after", Integer, "entries after this seq"),
                LIMIT_1000,
                ("actor", Str, "only this actor's entries"),
                ("execution", Str, "only this execution's entries"),
                ("since", Str, "RFC 3339, inclusive"),
                ("until", Str, "RFC 3339, exclusive"),
                (
                    "chain",
                    Str,
                    "`shared` (default) or `local` (cluster mode: this instance's own chain)",
                ),
            ],
        ),
        get(
            "/api/v1/audit/verify",
            "audit",
            "Verify the audit hash chain (409 when broken)",
            Json(one::<AuditVerifyView>),
            &[409],
        ),
        get(
            "/api/v1/cluster",
            "cluster",
            "Cluster leadership and members",
            Json(one::<ClusterView>),
            &[],
        ),
        get(
            "/api/v1/platform-mode",
            "health",
            "The platform's degradation level as its DNS record answers",
            Json(one::<PlatformModeView>),
            &[],
        ),
        get(
            "/api/v1/whoami",
            "auth",
            "The caller's principal",
            Json(one::<PrincipalView>),
            &[],
        ),
        get(
            "/api/v1/runbooks",
            "runbooks",
            "Loaded runbooks",
            Json(many::<RunbookSummaryView>),
            &[],
        ),
        get(
            "/api/v1/runbooks/{name}/plan",
            "runbooks",
            "A dry run: resolved steps, guards, before → after, readiness",
            Json(one::<PlanView>),
            &[404, 409],
        ),
        get(
            "/api/v1/drills",
            "drills",
            "Drill definitions with their next runs",
            Json(many::<DrillView>),
            &[],
        ),
        get(
            "/api/v1/drills/{name}",
            "drills",
            "One drill",
            Json(one::<DrillView>),
            &[404],
        ),
        post(
            "/api/v1/drills/{name}/approvals",
            "drills",
            "A standing pre-approval of a drill file",
            (one::<DrillApprovalRequest>, false),
            200,
            one::<DrillView>,
        ),
        post(
            "/api/v1/drills/{name}/runs",
            "drills",
            "Start a drill now (202; live drills await two approvals)",
            (one::<DrillRunRequest>, true),
            202,
            one::<DrillRunView>,
        ),
        post(
            "/api/v1/drills/{name}/runs/{id}/approvals",
            "drills",
            "A person's decision on a live drill run",
            (one::<DrillRunApprovalRequest>, false),
            200,
            one::<DrillRunView>,
        ),
        with_query(
            get(
                "/api/v1/drill-runs",
                "drills",
                "Drill runs, newest first",
                Json(many::<DrillRunView>),
                &[],
            ),
            &[("drill", Str, "only this drill's runs"), LIMIT_1000],
        ),
        with_query(
            get(
                "/api/v1/drill-runs/{id}",
                "drills",
                "One drill run (`?format=md`: its report as Markdown)",
                Json(one::<DrillRunView>),
                &[404, 409],
            ),
            &[("format", OneOf(&["json", "md"]), "`json` (default) or `md`")],
        ),
        get(
            "/api/v1/executions",
            "executions",
            "Executions, newest first",
            Json(many::<ExecutionView>),
            &[],
        ),
        post(
            "/api/v1/executions",
            "executions",
            "Propose a runbook (201; awaits approval)",
            (one::<CreateExecutionRequest>, false),
            201,
            one::<ExecutionView>,
        ),
        get(
            "/api/v1/executions/{id}",
            "executions",
            "One execution",
            Json(one::<ExecutionView>),
            &[404],
        ),
        post(
            "/api/v1/executions/{id}/approvals",
            "executions",
            "Approve or reject (bound to the plan digest)",
            (one::<ApprovalRequest>, false),
            200,
            one::<ExecutionView>,
        ),
        post(
            "/api/v1/executions/{id}/cancel",
            "executions",
            "Cancel",
            (one::<ControlRequest>, true),
            200,
            one::<ExecutionView>,
        ),
        post(
            "/api/v1/executions/{id}/pause",
            "executions",
            "Pause before the next step",
            (one::<ControlRequest>, true),
            200,
            one::<ExecutionView>,
        ),
        post(
            "/api/v1/executions/{id}/resume",
            "executions",
            "Resume",
            (one::<ControlRequest>, true),
            200,
            one::<ExecutionView>,
        ),
        post(
            "/api/v1/executions/{id}/confirm",
            "executions",
            "Confirm a manual step (or a fence decided by a person)",
            (one::<ConfirmRequest>, false),
            200,
            one::<ExecutionView>,
        ),
        post(
            "/api/v1/executions/{id}/retry",
            "executions",
            "Run a failed step again (roll forward from needs_operator)",
            (one::<ConfirmRequest>, false),
            200,
            one::<ExecutionView>,
        ),
        RouteDoc {
            errors: &[401, 404, 409],
            ..post(
                "/api/v1/hooks/alertmanager",
                "hooks",
                "Alertmanager webhook (v4 payload; bearer token of [hooks.alertmanager])",
                (one::<AlertmanagerPayload>, false),
                200,
                one::<HookAnswerView>,
            )
        },
        RouteDoc {
            errors: &[401, 404, 409],
            ..post(
                "/api/v1/hooks/pagerduty",
                "hooks",
                "PagerDuty v3 webhook (X-PagerDuty-Signature HMAC-SHA256, replay window)",
                (one::<PagerDutyWebhook>, false),
                200,
                one::<HookAnswerView>,
            )
        },
        RouteDoc {
            errors: &[401, 404, 409],
            ..post(
                "/api/v1/hooks/generic",
                "hooks",
                "Generic alert hook (HMAC-SHA256 shared secret, replay window)",
                (one::<GenericHookPayload>, false),
                200,
                one::<HookAnswerView>,
            )
        },
        with_query(
            get(
                "/api/v1/notifications",
                "notifications",
                "Receivers and the outbox, newest first, with each message's delivery state",
                Json(one::<NotificationsView>),
                &[404],
            ),
            &[LIMIT_1000],
        ),
        get(
            "/api/v1/topology",
            "health",
            "Where the PostgreSQL primary, the Redis master and each DNS name are now; each site's role now",
            Json(one::<TopologyView>),
            &[],
        ),
        RouteDoc {
            same_body: &[503],
            ..get(
                "/api/v1/primary",
                "health",
                "Load balancers: 200 with where the primary is, 503 when none is up",
                Json(one::<LbHealthView>),
                &[],
            )
        },
        RouteDoc {
            same_body: &[503],
            ..get(
                "/api/v1/sites/{site}/health",
                "health",
                "Load balancers: 200 when the site is up, else 503",
                Json(one::<LbHealthView>),
                &[404],
            )
        },
        RouteDoc {
            same_body: &[503],
            ..get(
                "/api/v1/services/{id}/health",
                "health",
                "Load balancers: 200 when the service is up, else 503",
                Json(one::<LbHealthView>),
                &[404],
            )
        },
        get(
            "/api/v1/triggers",
            "maintenance",
            "Maintenance mode: whether the runbook triggers are paused, by whom, why",
            Json(one::<TriggersView>),
            &[],
        ),
        post(
            "/api/v1/triggers/pause",
            "maintenance",
            "Pause the runbook triggers (maintenance mode; audited)",
            (one::<TriggersRequest>, false),
            200,
            one::<TriggersView>,
        ),
        post(
            "/api/v1/triggers/resume",
            "maintenance",
            "Resume the runbook triggers (audited)",
            (one::<TriggersRequest>, false),
            200,
            one::<TriggersView>,
        ),
        get(
            "/api/v1/cluster/vouch/{service}",
            "cluster",
            "What this member sees of a service and whether an execution acts (asked by a member that lost its lease)",
            Json(one::<VouchView>),
            &[404],
        ),
        get(
            "/api/v1/session",
            "auth",
            "The console session of this cookie (and its CSRF token)",
            Json(one::<SessionView>),
            &[401],
        ),
        RouteDoc {
            errors: &[401, 429],
            ..post(
                "/api/v1/session",
                "auth",
                "Sign in: exchange a token for a session cookie",
                (one::<SignInRequest>, false),
                200,
                one::<SessionView>,
            )
        },
        RouteDoc {
            method: M::DELETE,
            path: "/api/v1/session",
            tag: "auth",
            summary: "Sign out (needs the session's X-CSRF-Token)",
            query: &[],
            body: None,
            ok: 204,
            answer: Answer::Empty,
            errors: &[401, 403],
            same_body: &[],
        },
        get(
            "/api/v1/openapi.json",
            "meta",
            "This document",
            Json(any_json),
            &[],
        ),
        get(
            "/api/v1/docs",
            "meta",
            "A viewer for this document",
            Text("text/html"),
            &[],
        ),
        get(
            "/",
            "console",
            "The on-call console",
            Text("text/html"),
            &[],
        ),
        get(
            "/assets/{*path}",
            "console",
            "The console's embedded assets",
            Text("application/octet-stream"),
            &[404],
        ),
    ];
    d.shrink_to_fit();
    d
}
