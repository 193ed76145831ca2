//! The orchestrator's side of the HTTP handle: builds the web crate's views from the health
//! model, the config and the store; `plan` and `drills` convert the domain types the wire
//! views carry.

pub mod drills;
pub mod plan;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use metrics_exporter_prometheus::PrometheusHandle;
use niledr_probes::result::format_lsn;
use niledr_probes::{HealthModel, Observation, ProbeResult, ServiceHealth, SiteHealth};
use niledr_web::types::*;
use niledr_web::{ApiError, AuthRequest, Backend, BoxFuture, Command};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::event_loop::{Shared, event_view};
use crate::records::ProbeRecordV1;
use crate::redact;
use crate::store::Store;

pub struct DaemonBackend {
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub store: Arc<Store>,
    pub events: broadcast::Sender<StatusEventView>,
    pub prometheus: PrometheusHandle,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub auth: Arc<crate::auth::gate::AuthGate>,
    /// Commands go to the event loop, which owns executions and the store.
    pub engine_tx: tokio::sync::mpsc::Sender<crate::event_loop::Event>,
    pub catalog: niledr_runbooks::Catalog,
    pub runbook_files: std::collections::BTreeMap<String, std::path::PathBuf>,
    pub runbook_summaries: Vec<RunbookSummaryView>,
    pub drills: Arc<crate::drills::DrillService>,
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Pager tooling in (`/api/v1/hooks/*`).
    pub hooks: Arc<crate::hooks::HookService>,
    /// Console sessions (`api_sessions.rs`).
    pub sessions: Arc<crate::auth::session::Sessions>,
    /// Each execution after every journal write (SSE `event: execution`).
    pub executions: broadcast::Sender<ExecutionView>,
}

/// The HTTP answer to a refused authentication.
pub(crate) fn refusal(r: crate::auth::gate::Refusal) -> ApiError {
    use crate::auth::gate::Refusal;
    match r {
        Refusal::Auth(e) => ApiError::Unauthorized(e.to_string()),
        Refusal::Throttled {
            message,
            retry_after,
        } => ApiError::TooManyRequests {
            message,
            retry_after_secs: retry_after.as_secs(),
        },
        Refusal::Busy => ApiError::Unavailable(
            "niledr is busy verifying other tokens; retry in a few seconds".into(),
        ),
    }
}

impl DaemonBackend {
    fn with_model<T>(&self, f: impl FnOnce(&HealthModel) -> T) -> T {
        match self.shared.model.read() {
            Ok(m) => f(&m),
            // A poisoned lock means the loop panicked mid-update; the data is still the
            // last consistent state it published.
            Err(p) => f(&p.into_inner()),
        }
    }

    fn site_view(&self, model: &HealthModel, site: &SiteHealth) -> Option<SiteView> {
        let cfg = self.config.sites.get(&site.id)?;
        Some(SiteView {
            id: site.id.clone(),
            role: cfg.role.as_str().into(),
            country: cfg.country.clone(),
            description: cfg.description.clone(),
            status: site.status.to_string(),
            reason: site.reason.clone(),
            since: site.since.to_string(),
            services: model
                .site_services(&site.id)
                .into_iter()
                .map(|s| self.service_view(s))
                .collect(),
            current_role: crate::topology::views::current_role(
                &self.shared.topology.live(),
                &self.config,
                &site.id,
            ),
            backups: self
                .shared
                .topology
                .freshness(&site.id)
                .map(|f| crate::topology::views::freshness_view(&f)),
        })
    }

    /// The configured PostgreSQL or Redis service at `addr`.
    fn service_at(&self, addr: std::net::SocketAddr) -> Option<String> {
        use niledr_probes::target::ProbeSpec;
        self.config
            .services
            .iter()
            .find_map(|(id, c)| match &c.spec {
                ProbeSpec::Postgres(p) if p.endpoint.address == addr => Some(id.clone()),
                ProbeSpec::Redis(r) if r.endpoint.address == addr => Some(id.clone()),
                _ => None,
            })
    }

    fn service_view(&self, s: &ServiceHealth) -> ServiceView {
        let upstream = self
            .config
            .services
            .get(&s.id)
            .and_then(|c| c.upstream.clone());
        let (replication, dns) = match s.last.as_ref().map(|r| &r.observation) {
            Some(Observation::Postgres(pg)) => (
                Some(ReplicationView {
                    role: if pg.in_recovery { "standby" } else { "primary" }.into(),
                    // A primary (a promoted standby too) replicates from nobody; a standby from
                    // the server its lag was measured against (the one it streams from).
                    upstream: pg
                        .lag_against
                        .and_then(|a| self.service_at(a))
                        .or(upstream)
                        .filter(|_| pg.in_recovery),
                    timeline: pg.timeline,
                    current_lsn: pg.current_lsn.map(format_lsn),
                    replay_lsn: pg.replay_lsn.map(format_lsn),
                    replay_paused: Some(pg.replay_paused),
                    streaming: pg.wal_receiver_streaming,
                    lag_bytes: pg.lag_bytes,
                    replay_delay_seconds: pg.replay_delay_seconds,
                    upstream_error: pg.upstream_error.clone(),
                    ..Default::default()
                }),
                None,
            ),
            Some(Observation::Redis(r)) => (
                Some(ReplicationView {
                    role: r.role.clone(),
                    upstream: r
                        .lag_against
                        .and_then(|a| self.service_at(a))
                        .or(upstream)
                        .filter(|_| r.role != "master"),
                    lag_bytes: r.offset_lag,
                    repl_offset: r.repl_offset,
                    master_link_up: r.master_link_up,
                    upstream_error: r.upstream_error.clone(),
                    ..Default::default()
                }),
                None,
            ),
            Some(Observation::Dns(d)) => (
                None,
                Some(DnsView {
                    name: d.name.clone(),
                    expected: d.expected.iter().map(|a| a.to_string()).collect(),
                    matches_expected: d.matches_expected,
                    servers: d
                        .servers
                        .iter()
                        .map(|a| DnsServerView {
                            server: a.server.to_string(),
                            answers: a.answers.iter().map(|x| x.to_string()).collect(),
                            ttl: a.ttl,
                            authoritative: a.authoritative,
                            error: a.error.clone(),
                        })
                        .collect(),
                }),
            ),
            _ => (None, None),
        };
        ServiceView {
            id: s.id.clone(),
            site: s.site.clone(),
            kind: s.kind.into(),
            critical: s.critical,
            status: s.status.to_string(),
            reason: s.reason.clone(),
            since: s.since.to_string(),
            consecutive_failures: s.consecutive_failures,
            consecutive_successes: s.consecutive_successes,
            last_probe: s.last.as_ref().map(probe_view),
            replication,
            dns,
            alerts: match self.shared.alerts.read() {
                Ok(a) => a.get(&s.id).cloned().unwrap_or_default(),
                Err(p) => p.into_inner().get(&s.id).cloned().unwrap_or_default(),
            },
        }
    }
}

fn probe_view(r: &ProbeResult) -> ProbeView {
    ProbeView {
        at: r.started_at.to_string(),
        ok: r.ok,
        latency_ms: r.latency.as_secs_f64() * 1000.0,
        summary: r.summary(),
    }
}

fn stored_probe_view(r: ProbeRecordV1) -> ProbeView {
    ProbeView {
        at: r.at,
        ok: r.ok,
        latency_ms: r.latency_ms,
        summary: r.summary,
    }
}

impl Backend for DaemonBackend {
    fn ready(&self) -> Result<(), String> {
        if self.shared.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not every service has been probed yet".into())
        }
    }

    fn sites(&self) -> Vec<SiteView> {
        self.with_model(|m| {
            m.sites
                .values()
                .filter_map(|s| self.site_view(m, s))
                .collect()
        })
    }

    fn site(&self, id: &str) -> Option<SiteView> {
        self.with_model(|m| m.sites.get(id).and_then(|s| self.site_view(m, s)))
    }

    fn services(&self) -> Vec<ServiceView> {
        self.with_model(|m| m.services.values().map(|s| self.service_view(s)).collect())
    }

    fn service_history(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Option<ServiceHistoryView>, String> {
        if !self.config.services.contains_key(id) {
            return Ok(None);
        }
        let probes = self
            .store
            .probe_history(id, limit)
            .map_err(|e| format!("{e:#}"))?;
        let changes = self
            .store
            .status_changes(Some(id), limit)
            .map_err(|e| format!("{e:#}"))?;
        Ok(Some(ServiceHistoryView {
            service: id.to_string(),
            probes: probes.into_iter().map(stored_probe_view).collect(),
            status_changes: changes.iter().map(event_view).collect(),
        }))
    }

    fn recent_events(&self, limit: usize) -> Result<Vec<StatusEventView>, String> {
        let changes = self
            .store
            .status_changes(None, limit)
            .map_err(|e| format!("{e:#}"))?;
        Ok(changes.iter().map(event_view).collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<StatusEventView> {
        self.events.subscribe()
    }

    fn audit_verify(&self) -> Result<AuditVerifyView, String> {
        let r = self.store.verify_audit().map_err(|e| format!("{e:#}"))?;
        Ok(AuditVerifyView {
            ok: r.broken.is_none(),
            entries: r.entries,
            head: r.head,
            broken_at: r.broken.as_ref().map(|b| b.0),
            problem: r.broken.map(|b| b.1),
        })
    }

    fn audit(&self, query: &AuditQuery) -> Result<AuditPageView, ApiError> {
        crate::audit_view::query(&self.store, query)
    }

    fn metrics_public(&self) -> bool {
        self.config.metrics_public
    }

    fn metrics(&self) -> String {
        crate::metrics::scrape::refresh(self);
        self.prometheus.render()
    }

    fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.shutdown.clone()
    }

    fn authenticate(&self, request: AuthRequest) -> BoxFuture<'_, Result<PrincipalView, ApiError>> {
        Box::pin(async move {
            // A bearer token wins; else the console session cookie; else "missing".
            if request.authorization.is_none()
                && let Some(id) = &request.session
            {
                let p = self.resolve_session(id)?.principal;
                return Ok(PrincipalView {
                    name: p.name,
                    role: p.role.to_string(),
                    tags: p.tags,
                });
            }
            let p = self
                .auth
                .authenticate(request.authorization.as_deref(), request.client)
                .await
                .map_err(refusal)?;
            Ok(PrincipalView {
                name: p.name,
                role: p.role.to_string(),
                tags: p.tags,
            })
        })
    }

    fn sign_in(
        &self,
        token: String,
        client: Option<std::net::IpAddr>,
    ) -> BoxFuture<'_, Result<niledr_web::SessionGrant, ApiError>> {
        Box::pin(self.sign_in_session(token, client))
    }

    fn session(&self, id: &str) -> Result<SessionView, ApiError> {
        self.session_view(id)
    }

    fn sign_out(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let id = id.to_string();
        Box::pin(async move { self.sign_out_session(&id).await })
    }

    fn check_csrf(&self, id: &str, csrf: Option<&str>) -> Result<(), ApiError> {
        self.sessions
            .check_csrf(id, csrf)
            .map_err(crate::api_sessions::session_error)
    }

    fn subscribe_executions(&self) -> Option<broadcast::Receiver<ExecutionView>> {
        Some(self.executions.subscribe())
    }

    fn runbooks(&self) -> Vec<RunbookSummaryView> {
        self.runbook_summaries.clone()
    }

    fn drills(&self) -> Vec<DrillView> {
        self.drills.views()
    }

    fn drill_runs(&self, drill: Option<&str>, limit: usize) -> Result<Vec<DrillRunView>, ApiError> {
        self.drills.runs(drill, limit).map(|v| redact::view(&v))
    }

    fn drill_run(&self, id: &str) -> Result<DrillRunView, ApiError> {
        self.drills.run(id).map(|v| redact::view(&v))
    }

    fn drill_run_markdown(&self, id: &str) -> Result<String, ApiError> {
        self.drills
            .markdown(id)
            .map(|m| redact::text(&m).into_owned())
    }

    fn start_drill(
        &self,
        who: PrincipalView,
        name: &str,
        request: DrillRunRequest,
    ) -> BoxFuture<'_, Result<DrillRunView, ApiError>> {
        let r = self.drills.start(&who, name, &request, None);
        Box::pin(async move { r.map(|v| redact::view(&v)).map_err(redact::api_error) })
    }

    fn approve_drill_run(
        &self,
        who: PrincipalView,
        name: &str,
        id: &str,
        request: DrillRunApprovalRequest,
    ) -> BoxFuture<'_, Result<DrillRunView, ApiError>> {
        let r = self.drills.approve_run(&who, name, id, &request);
        Box::pin(async move { r.map(|v| redact::view(&v)).map_err(redact::api_error) })
    }

    fn approve_drill(
        &self,
        who: PrincipalView,
        name: &str,
        request: DrillApprovalRequest,
    ) -> BoxFuture<'_, Result<DrillView, ApiError>> {
        let r = self.drills.approve(&who, name, &request);
        Box::pin(async move { r })
    }

    fn plan<'a>(&'a self, runbook: &'a str) -> BoxFuture<'a, Result<PlanView, ApiError>> {
        Box::pin(async move {
            let file = self.runbook_files.get(runbook).ok_or_else(|| {
                let known: Vec<&str> = self.runbook_files.keys().map(String::as_str).collect();
                ApiError::NotFound(format!(
                    "no runbook {runbook:?}; known runbooks: {}",
                    known.join(", ")
                ))
            })?;
            // Read-only: parse the file as it is now, resolve it against what probes last saw,
            // and check every step ready against the real world (changing nothing).
            let rb = crate::engine::parse_file(file, &self.catalog).map_err(|e| {
                ApiError::Conflict(format!("the runbook file does not validate: {e:#}"))
            })?;
            let level = self.shared.platform.observed_level();
            let world = self.with_model(|m| crate::world::snapshot(&self.config, m, level));
            let mut plan = niledr_runbooks::plan(&rb, &world);
            let ctx = crate::engine::steps::StepContext {
                config: self.config.clone(),
                shared: self.shared.clone(),
                store: self.store.clone(),
            };
            for step in &rb.steps {
                plan.readiness
                    .push(crate::engine::steps::ready(&ctx, step).await);
            }
            plan.ready &= plan.readiness.iter().all(|r| r.ready);
            // The digest was computed from the real plan; what is shown is redacted.
            Ok(redact::view(&plan::plan_view(&plan)))
        })
    }

    fn executions(&self) -> Result<Vec<ExecutionView>, ApiError> {
        let mut all = self
            .store
            .executions()
            .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
        all.reverse();
        Ok(all.iter().map(crate::engine::execution_view).collect())
    }

    fn execution(&self, id: &str) -> Result<ExecutionView, ApiError> {
        match self
            .store
            .execution(id)
            .map_err(|e| ApiError::Internal(format!("{e:#}")))?
        {
            Some(r) => Ok(crate::engine::execution_view(&r)),
            None => Err(ApiError::NotFound(format!("no execution {id:?}"))),
        }
    }

    fn notifications(&self, limit: usize) -> Result<NotificationsView, ApiError> {
        crate::notify::view::notifications_view(&self.config.notifications, &self.store, limit)
    }

    fn cluster(&self) -> ClusterView {
        match &self.cluster {
            Some(c) => crate::cluster::view::cluster_view(c),
            None => ClusterView::single(),
        }
    }

    fn vouch(&self, service: &str) -> Option<niledr_web::types::VouchView> {
        let status = self.with_model(|m| {
            m.services
                .get(service)
                .map(|s| s.status.as_str().to_string())
        })?;
        // An unreadable journal cannot vouch that nothing acts.
        let acting = self.store.executions().map_or(true, |all| {
            all.iter()
                .any(|e| crate::cluster::self_fence::is_acting(&e.state))
        });
        Some(niledr_web::types::VouchView {
            service: service.to_string(),
            status,
            acting,
        })
    }

    fn platform_mode(&self) -> niledr_web::types::PlatformModeView {
        platform_view(&self.shared.platform.current())
    }

    fn platform_changes(
        &self,
    ) -> futures::stream::BoxStream<'static, niledr_web::types::PlatformModeView> {
        use futures::StreamExt;
        let rx = self.shared.platform.subscribe();
        tokio_stream::wrappers::BroadcastStream::new(rx)
            .filter_map(|r| async move { r.ok().map(|r| platform_view(&r)) })
            .boxed()
    }

    fn hook(
        &self,
        request: niledr_web::HookRequest,
    ) -> BoxFuture<'_, Result<HookAnswerView, ApiError>> {
        Box::pin(self.hooks.handle(request))
    }

    fn forward(&self, method: &str, path: &str) -> niledr_web::forward::Forward {
        match &self.cluster {
            Some(c) => crate::cluster::view::forward(c, method, path),
            None => niledr_web::forward::Forward::Local,
        }
    }

    fn topology(&self) -> TopologyView {
        self.with_model(|m| {
            crate::topology::views::topology(&self.config, &self.shared.topology, m)
        })
    }

    fn primary_health(&self) -> LbHealthView {
        self.with_model(|m| crate::topology::views::primary(&self.shared.topology, m))
    }

    fn site_health(&self, site: &str) -> Option<LbHealthView> {
        self.with_model(|m| {
            crate::topology::views::site(&self.config, &self.shared.topology, m, site)
        })
    }

    fn service_health(&self, id: &str) -> Option<LbHealthView> {
        self.with_model(|m| crate::topology::views::service(m, id))
    }

    fn triggers(&self) -> Result<TriggersView, ApiError> {
        crate::topology::maintenance::load(&self.store)
            .map(|p| p.view())
            .map_err(|e| ApiError::Internal(format!("{e:#}")))
    }

    fn set_triggers(
        &self,
        who: PrincipalView,
        pause: bool,
        request: TriggersRequest,
    ) -> BoxFuture<'_, Result<TriggersView, ApiError>> {
        let store = self.store.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let next = tokio::task::spawn_blocking(move || {
                crate::topology::maintenance::set(&store, &who, pause, &request.reason)
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            shared.topology.set_paused(next.clone());
            Ok(next.view())
        })
    }

    fn command(
        &self,
        who: PrincipalView,
        command: Command,
    ) -> BoxFuture<'_, Result<ExecutionView, ApiError>> {
        Box::pin(async move {
            let (reply, rx) = tokio::sync::oneshot::channel();
            let ev =
                crate::event_loop::Event::Engine(Box::new(crate::engine::EngineEvent::Command {
                    who,
                    command,
                    reply,
                }));
            self.engine_tx
                .send(ev)
                .await
                .map_err(|_| ApiError::Unavailable("niledr is shutting down".into()))?;
            rx.await
                .map_err(|_| ApiError::Unavailable("niledr is shutting down".into()))?
                .map_err(redact::api_error)
        })
    }
}

/// The platform level's wire view.
fn platform_view(r: &crate::platform::PlatformReading) -> niledr_web::types::PlatformModeView {
    use niledr_web::types::{PlatformModeView, PlatformServerView};
    let Some(record) = &r.record else {
        return PlatformModeView::unpublished();
    };
    let level = r.level();
    PlatformModeView {
        level,
        label: niledr_runbooks::schema::platform_level_label(level).into(),
        reason: r.mode.as_ref().map_or_else(
            || "no record yet: niledr has never changed the level".into(),
            |m| m.reason.clone(),
        ),
        execution: r.mode.as_ref().and_then(|m| m.execution.clone()),
        since: r.mode.as_ref().map(|m| m.since.clone()),
        previous_level: r
            .mode
            .as_ref()
            .and_then(|m| m.previous.as_ref().map(|p| p.level)),
        record: Some(record.clone()),
        agree: r.agree,
        observed_at: r.observed_at.clone(),
        servers: r
            .servers
            .iter()
            .map(|s| PlatformServerView {
                server: s.server.to_string(),
                level: s.level,
                error: s.error.clone(),
            })
            .collect(),
    }
}
