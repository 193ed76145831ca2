//! `niledr serve`: load the config, open the store, start probes (on their own runtime), the
//! event loop (its own thread) and the HTTP server (this runtime); shut down in order on a signal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use niledr_probes::{HealthModel, ServiceHealth};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::api::DaemonBackend;
use crate::config::Config;
use crate::event_loop::{Event, EventLoop, Shared};
use crate::store::{AuditEvent, Store};

/// How long open HTTP connections may take to finish after a shutdown signal.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Run the daemon until `shutdown` is cancelled.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    // Before anything records: what is recorded before the install is lost.
    let prometheus = crate::metrics::install();
    // One TLS provider for every HTTP client (probes, host agent), installed before any is
    // built: the probes now start on their own thread, so no client may rely on their order.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let auth = match &config.users_file {
        Some(f) if !f.exists() => {
            tracing::warn!(users_file = %f.display(), "users file does not exist yet: every mutating endpoint will answer 401 until `niledr user add` creates it and niledr restarts");
            crate::auth::Authenticator::empty()
        }
        Some(f) => crate::auth::Authenticator::new(crate::auth::load_users(f)?),
        None => {
            tracing::warn!("no [auth] users_file: every mutating endpoint will answer 401");
            crate::auth::Authenticator::empty()
        }
    };
    let cluster = match &config.cluster {
        Some(c) => Some(crate::cluster::Cluster::connect(c.clone()).await?),
        None => None,
    };
    let store = Arc::new(match &cluster {
        None => Store::open(&config.store)?,
        Some(c) => Store::clustered(
            &config.store,
            Arc::new(crate::store::etcd::EtcdStore::open(
                c.clients(),
                c.handle(),
                &c.config.prefix,
                c.leadership.clone(),
            )?),
        )?,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (daemon.listen)", config.listen))?;
    let listen = listener.local_addr()?;
    // Facts committed from now on are announced to the configured receivers.
    store.outbox().configure(
        Arc::new(config.notifications.clone()),
        config
            .notifications
            .console_url
            .clone()
            .unwrap_or_else(|| format!("http://{listen}")),
    );

    // Audit before acting: the config we run with and the start itself.
    store.append_audit(vec![
        AuditEvent {
            actor: "niledr",
            action: "config.loaded",
            detail: serde_json::json!({
                "path": config.path.display().to_string(),
                "sha256": config.digest,
                "sites": config.sites.keys().collect::<Vec<_>>(),
                "services": config.services.keys().collect::<Vec<_>>(),
            }),
        },
        AuditEvent {
            actor: "niledr",
            action: "daemon.started",
            detail: serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "listen": listen.to_string(),
                "cluster": config.cluster.as_ref().map(|c| serde_json::json!({ "name": c.name, "site": c.site })),
            }),
        },
    ])?;

    let now = jiff::Timestamp::now();
    let model = HealthModel::new(
        config.sites.keys().cloned(),
        config.services.values().map(|s| {
            ServiceHealth::new(
                &s.id,
                s.site.as_deref(),
                s.spec.kind(),
                s.critical,
                s.probe.thresholds,
                now,
            )
        }),
        now,
    );
    let shared = Arc::new(Shared {
        model: RwLock::new(model),
        // With nothing to probe there is nothing to wait for.
        ready: AtomicBool::new(config.services.is_empty()),
        cluster: cluster.clone(),
        platform: Default::default(),
        alerts: Default::default(),
        topology: Default::default(),
    });
    let platform_watch = {
        let (shared, dns, stop) = (shared.clone(), config.dns.clone(), shutdown.clone());
        tokio::spawn(async move { shared.platform.run(dns, stop).await })
    };
    let (events_tx, _) = broadcast::channel(1024);
    let (executions_tx, _) = broadcast::channel(256);
    let (tx, rx) = mpsc::channel::<Event>(4096);
    let engine_tx = tx.clone();
    let limits: HashMap<String, u32> = config
        .services
        .values()
        .map(|s| (s.id.clone(), s.probe.history))
        .collect();
    let mut event_loop = EventLoop::new(
        store.clone(),
        shared.clone(),
        events_tx.clone(),
        limits,
        tx.clone(),
    );
    if let Some(c) = &cluster {
        event_loop = event_loop.with_cluster(c.clone());
    }
    let catalog = crate::world::catalog(&config);
    let runbooks = crate::engine::load_runbooks(&config, &catalog)?;
    crate::hooks::check_runbooks(&config, &runbooks)?;
    let runbook_files: std::collections::BTreeMap<String, std::path::PathBuf> = runbooks
        .iter()
        .map(|(n, l)| (n.clone(), l.file.clone()))
        .collect();
    let runbook_summaries = crate::engine::Engine::runbook_summaries(&runbooks);
    crate::metrics::executions_init(runbooks.keys().map(String::as_str));
    crate::metrics::probes_init(
        config
            .services
            .values()
            .map(|s| (s.id.as_str(), s.spec.kind())),
    );
    let runbook_infos = crate::drills::runbook_infos(runbooks.values().map(|l| &l.runbook));
    let policies = runbooks
        .iter()
        .map(|(n, l)| (n.clone(), l.runbook.approval.clone()))
        .collect();
    let runbook_defs: std::collections::BTreeMap<String, niledr_runbooks::Runbook> = runbooks
        .iter()
        .map(|(n, l)| (n.clone(), l.runbook.clone()))
        .collect();
    let drills = crate::drills::load_drills(&config, &catalog, &runbook_infos)?;
    event_loop = event_loop.with_topology(crate::topology::Tracker::new(
        &config,
        runbook_defs.clone(),
        crate::topology::tracker::restore_drills(drills.values().map(|d| &d.drill)),
    ));
    if !drills.is_empty() {
        tracing::info!(count = drills.len(), "drills loaded");
    }
    if !config.runbook_dirs.is_empty() {
        tracing::info!(count = runbooks.len(), "runbooks loaded");
        let (config, store, shared, catalog, events, executions) = (
            config.clone(),
            store.clone(),
            shared.clone(),
            catalog.clone(),
            events_tx.clone(),
            executions_tx.clone(),
        );
        let rt = tokio::runtime::Handle::current();
        event_loop = event_loop.with_engine(Box::new(move |tx| {
            crate::engine::Engine::new(
                crate::engine::EngineDeps {
                    config: config.clone(),
                    store: store.clone(),
                    shared: shared.clone(),
                    catalog: catalog.clone(),
                    tx,
                    rt: rt.clone(),
                    events: events.clone(),
                    executions: executions.clone(),
                },
                runbooks.clone(),
            )
        }));
    }
    // If the loop stops for any reason (store failure, panic), the whole daemon stops rather
    // than serve a health picture that no longer updates.
    let stop_all = shutdown.clone().drop_guard();
    let loop_thread = std::thread::Builder::new()
        .name("niledr-event-loop".into())
        .spawn(move || {
            let _stop_all = stop_all;
            let r = event_loop.run(rx);
            if let Err(e) = &r {
                tracing::error!("event loop failed, stopping niledr: {e:#}");
            }
            r
        })?;

    // Probes, their forwarding and the flush tick run on their own runtime: API work here
    // cannot delay them.
    let probes = crate::probe_runtime::ProbeRuntime::start(
        config.services.values().map(|s| s.target()).collect(),
        tx.clone(),
        shutdown.clone(),
    )?;
    // The cold sites' backup directories, read on a thread of their own.
    let backups = crate::topology::backups::spawn_watcher(
        crate::topology::backups::watched(&config),
        tx.clone(),
        shutdown.clone(),
    )?;
    // Cluster mode: campaign for the leader key and publish this member's view. `resign` is
    // cancelled only after the event loop has drained its steps.
    let resign = CancellationToken::new();
    let elector = cluster.as_ref().map(|c| {
        c.handle().spawn(
            crate::cluster::election::Elector {
                cluster: c.clone(),
                tx: tx.clone(),
                shared: shared.clone(),
                stop: shutdown.clone(),
                resign: resign.clone(),
            }
            .run(),
        )
    });
    // The instance at the primary's site fences it when cut off from the majority.
    let self_fence = cluster.as_ref().map(|c| {
        c.handle().spawn(
            crate::cluster::self_fence::SelfFence {
                cluster: c.clone(),
                shared: shared.clone(),
                store: store.clone(),
                config: config.clone(),
                runbooks: runbook_defs,
                stop: shutdown.clone(),
            }
            .run(),
        )
    });
    let gate = Arc::new(crate::auth::gate::AuthGate::new(
        auth,
        config.auth_limits,
        config.verify_workers,
    ));
    // Stopped only after the HTTP server, so the last refusals are counted too.
    let auditor_stop = CancellationToken::new();
    let auth_auditor = tokio::spawn(crate::auth::gate::run_auditor(
        gate.clone(),
        store.clone(),
        auditor_stop.clone(),
    ));

    let drills = Arc::new(crate::drills::DrillService::new(
        crate::drills::DrillDeps {
            config: config.clone(),
            store: store.clone(),
            shared: shared.clone(),
            engine_tx: engine_tx.clone(),
            events: events_tx.clone(),
            catalog: catalog.clone(),
            shutdown: shutdown.clone(),
        },
        drills,
        policies,
    )?);
    let drill_scheduler = tokio::spawn(crate::drills::scheduler::run(drills.clone()));
    let hooks = Arc::new(crate::hooks::HookService::new(
        config.clone(),
        store.clone(),
        engine_tx.clone(),
    ));
    // Notifications are delivered here, never on the event loop.
    let notifier = tokio::spawn(
        crate::notify::worker::Worker {
            store: store.clone(),
            shared: shared.clone(),
            config: Arc::new(config.notifications.clone()),
            stop: shutdown.clone(),
        }
        .run(),
    );
    let backend = Arc::new(DaemonBackend {
        config: config.clone(),
        shared,
        store: store.clone(),
        events: events_tx,
        prometheus: prometheus.clone(),
        shutdown: shutdown.clone(),
        auth: gate,
        engine_tx,
        catalog,
        runbook_files,
        runbook_summaries,
        drills,
        cluster: cluster.clone(),
        sessions: Arc::new(crate::auth::session::Sessions::new(
            config.sessions,
            config.users_file.clone(),
        )),
        executions: executions_tx,
        hooks,
    });
    let app = niledr_web::router(backend)
        .layer(axum::middleware::from_fn(crate::redact::http::layer))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    tracing::info!(%listen, config = %config.path.display(), "niledr serving");
    // Request latency by route pattern; the recorder's upkeep and the audit chain check.
    let app = app.layer(axum::middleware::from_fn(crate::metrics::http::track));
    let metrics_stop = CancellationToken::new();
    let metrics_upkeep = tokio::spawn(crate::metrics::upkeep::run(
        prometheus,
        store.clone(),
        metrics_stop.clone(),
    ));
    let http_cancel = shutdown.clone();
    let http = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { http_cancel.cancelled().await });

    // Graceful HTTP shutdown gets a deadline: a stuck client must not keep the daemon alive.
    let http = tokio::spawn(async move { http.await });
    let result = {
        let mut http = http;
        tokio::select! {
            r = &mut http => r.context("HTTP server task")?.context("HTTP server"),
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(HTTP_DRAIN).await;
            } => {
                tracing::warn!("HTTP connections still open {HTTP_DRAIN:?} after shutdown began; closing them");
                http.abort();
                Ok(())
            }
        }
    };
    shutdown.cancel();
    tracing::info!("shutting down: probes, event loop, store");
    probes.shutdown().await;
    if let Some(b) = backups {
        let _ = tokio::task::spawn_blocking(move || b.join()).await;
    }
    auditor_stop.cancel();
    let _ = auth_auditor.await;
    metrics_stop.cancel();
    let _ = metrics_upkeep.await;
    let _ = drill_scheduler.await;
    let _ = platform_watch.await;
    // An attempt cut short stays in flight: it is in doubt at the next start, and sent again.
    let _ = tokio::time::timeout(Duration::from_secs(2), notifier).await;
    let _ = tx.send(Event::Shutdown).await;
    drop(tx);
    let loop_result = tokio::task::spawn_blocking(move || loop_thread.join())
        .await
        .context("joining the event loop")?;
    resign.cancel();
    if let Some(t) = self_fence {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    if let (Some(c), Some(elector)) = (&cluster, elector) {
        let _ = tokio::time::timeout(Duration::from_secs(3), elector).await;
        c.shutdown();
    }
    match loop_result {
        Ok(r) => r.context("event loop")?,
        Err(_) => anyhow::bail!("the event loop panicked"),
    }
    result
}
