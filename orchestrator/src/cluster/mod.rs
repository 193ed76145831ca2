//! Cluster mode on etcd: the connection, this instance's leadership (the fencing token every
//! shared write carries) and what it knows of the other members. `election.rs` campaigns for
//! and keeps the leader key; `members.rs` publishes this instance's view of every service and
//! reads the others'. Without `[cluster]` none of this runs and niledr is single-node.

pub mod clients;
pub mod election;
pub mod members;
pub mod self_fence;
pub mod view;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use clients::EtcdClients;
use serde::{Deserialize, Serialize};

use crate::config::cluster::ClusterConfig;

/// This instance's hold on the leader key. `token` is the key's create revision while this
/// instance leads; every guarded write compares it, so a deposed leader's writes fail.
#[derive(Default)]
pub struct Leadership {
    token: Mutex<Option<i64>>,
    /// Woken when a guarded write found the key gone or someone else's.
    deposed: tokio::sync::Notify,
}

impl Leadership {
    pub fn token(&self) -> Option<i64> {
        *self.token.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_leader(&self) -> bool {
        self.token().is_some()
    }

    /// Set by the elector on taking or losing the key.
    pub fn set(&self, token: Option<i64>) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// A write learned this instance no longer leads: stop at once, tell the elector.
    pub fn deposed(&self, why: &str) {
        if self.token().is_some() {
            tracing::error!("leadership lost: {why}");
        }
        self.set(None);
        self.deposed.notify_one();
    }
}

/// The leader key's value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaderInfo {
    pub name: String,
    pub site: String,
    pub advertise: String,
    /// When it took the key (RFC 3339).
    pub since: String,
    /// The key's create revision: the fencing token.
    #[serde(default)]
    pub token: i64,
}

/// What this instance knows of the cluster (written by the elector and the member publisher).
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub leader: Option<LeaderInfo>,
    pub members: Vec<members::MemberRecord>,
    /// When this instance last renewed its lease (sent the renewal etcd confirmed).
    pub renewed_at: Option<std::time::Instant>,
    /// Last time this instance heard from etcd at all.
    pub last_contact: Option<std::time::Instant>,
    pub last_error: Option<String>,
}

/// The cluster handle: config, client, leadership, view, and the runtime its tasks run on.
pub struct Cluster {
    pub config: ClusterConfig,
    pub leadership: Arc<Leadership>,
    pub view: RwLock<ClusterView>,
    clients: Arc<EtcdClients>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
}

impl Cluster {
    /// Start the cluster runtime and connect to etcd (waits up to the lease TTL for a first
    /// connection; the client reconnects by itself afterwards).
    pub async fn connect(config: ClusterConfig) -> Result<Arc<Cluster>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("niledr-cluster")
            .enable_all()
            .build()
            .context("starting the cluster runtime")?;
        let handle = runtime.handle().clone();
        let options = connect_options(&config);
        let endpoints = config.endpoints.clone();
        let wait = config.lease_ttl.max(Duration::from_secs(5));
        let connecting = handle.spawn(async move {
            tokio::time::timeout(wait, EtcdClients::connect(&endpoints, &options)).await
        });
        let client = match connecting.await {
            Ok(Ok(Ok(c))) => c,
            failed => {
                runtime.shutdown_background();
                return Err(match failed {
                    Ok(Ok(Err(e))) => anyhow!("connecting to etcd at {:?}: {e}", config.endpoints),
                    Ok(Err(_)) => anyhow!(
                        "cannot reach etcd at {:?} within {wait:?} (cluster.endpoints)",
                        config.endpoints
                    ),
                    _ => anyhow!("the etcd connection task failed"),
                });
            }
        };
        Ok(Arc::new(Cluster {
            config,
            leadership: Arc::new(Leadership::default()),
            view: RwLock::new(ClusterView::default()),
            clients: Arc::new(client),
            runtime: Mutex::new(Some(runtime)),
            handle,
        }))
    }

    /// The etcd clients (one per endpoint, sticky, failing over).
    pub fn clients(&self) -> Arc<EtcdClients> {
        self.clients.clone()
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.config.prefix)
    }

    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    pub fn view(&self) -> ClusterView {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn update_view(&self, f: impl FnOnce(&mut ClusterView)) {
        f(&mut self.view.write().unwrap_or_else(|p| p.into_inner()));
    }

    /// The leader's API URL when another instance leads.
    pub fn leader_url(&self) -> Option<String> {
        if self.is_leader() {
            return None;
        }
        self.view().leader.map(|l| l.advertise)
    }

    /// Stop the runtime (its tasks end with it); called last at shutdown.
    pub fn shutdown(&self) {
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            rt.shutdown_background();
        }
    }
}

fn connect_options(c: &ClusterConfig) -> ConnectOptions {
    // Requests fail fast so a partition is noticed within the lease, not after TCP gives up.
    let request = (c.lease_ttl / 5).clamp(Duration::from_millis(300), Duration::from_secs(2));
    let mut o = ConnectOptions::new()
        .with_connect_timeout(request)
        .with_timeout(request)
        .with_keep_alive(Duration::from_secs(1), request)
        .with_keep_alive_while_idle(true);
    if let Some((user, password)) = &c.auth {
        o = o.with_user(user.clone(), password.clone());
    }
    if let Some(tls) = &c.tls {
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca_pem {
            t = t.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(cert, key));
        }
        o = o.with_tls(t);
    }
    o
}
