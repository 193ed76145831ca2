//! A niledr cluster on the topology: three etcd members and three niledr instances (one per
//! site: Khartoum, Port Sudan, and the cold site as a witness), each with its own config,
//! store and log, all loading the same runbooks and users; who leads, SIGKILL and restart.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::daemon::{Niledr, People, create_people, free_listen_addr};
use crate::etcd::EtcdCluster;
use crate::netns::Netns;
use crate::scenario::copy_runbooks;
use crate::{ClusterOptions, ConfigOptions, HostAgent, Site, Topology, wait_until};

/// One niledr instance of the cluster.
pub struct Instance {
    pub name: String,
    pub site: Site,
    pub niledr: Niledr,
    env: Vec<(String, String)>,
    netns: Option<String>,
}

/// Fields drop in declaration order: instances first, then etcd, the agent, the topology.
pub struct ClusterWorld {
    pub instances: Vec<Instance>,
    pub etcd: EtcdCluster,
    pub agent: HostAgent,
    pub topo: Topology,
    pub people: People,
    pub runbooks: PathBuf,
}

/// The instances: member name and site.
pub const MEMBERS: [(&str, Site); 3] = [
    ("khartoum-1", Site::Khartoum),
    ("port-sudan-1", Site::PortSudan),
    ("dr-cold-1", Site::DrCold),
];

/// How to build a cluster world.
pub struct ClusterSpec<'a> {
    pub lease_ttl: Duration,
    /// Given to every instance (failpoints).
    pub env: &'a [(&'a str, &'a str)],
    /// Run each site (its servers, its etcd member, its niledr) in its own network namespace.
    pub netns: Option<&'a Netns>,
    /// Extra `[cluster]` lines for every instance (e.g. `self_fence` entries).
    pub extra: String,
    /// Edits to the runbook copies before niledr loads them: (file, from, to).
    pub runbook_edits: Vec<(&'a str, &'a str, &'a str)>,
}

impl ClusterSpec<'_> {
    pub fn loopback(lease_ttl: Duration) -> Self {
        ClusterSpec {
            lease_ttl,
            env: &[],
            netns: None,
            extra: String::new(),
            runbook_edits: Vec::new(),
        }
    }
}

/// Topology, etcd (three members on loopback), and the three instances started and ready
/// with one leader; `env` goes to every instance (failpoints).
pub fn start_cluster(lease_ttl: Duration, env: &[(&str, &str)]) -> Result<ClusterWorld> {
    start_cluster_with(ClusterSpec {
        env,
        ..ClusterSpec::loopback(lease_ttl)
    })
}

/// The API port of an instance in its own namespace (it has the port space to itself).
const NETNS_API_PORT: u16 = 7700;

/// A cluster world as `spec` says.
pub fn start_cluster_with(spec: ClusterSpec<'_>) -> Result<ClusterWorld> {
    let topo = match spec.netns {
        Some(net) => Topology::start_in(net, None)?,
        None => Topology::start_free(None)?,
    };
    let agent = HostAgent::start(&topo)?;
    let base = topo.base_dir().to_path_buf();
    let runbooks = base.join("runbooks");
    copy_runbooks(&runbooks)?;
    for (file, from, to) in &spec.runbook_edits {
        let path = runbooks.join(file);
        let text = std::fs::read_to_string(&path)?;
        if !text.contains(from) {
            bail!("{file} has no {from:?} to edit");
        }
        std::fs::write(&path, text.replace(from, to))?;
    }
    let people = create_people(&base.join("users.toml"))?;
    let etcd = start_etcd(&base, spec.netns)?;
    let mut instances = Vec::new();
    for (name, site) in MEMBERS {
        let (listen, ns) = match spec.netns {
            Some(net) => (
                SocketAddr::from((net.ip(site), NETNS_API_PORT)),
                Some(net.ns(site).to_string()),
            ),
            None => (free_listen_addr()?, None),
        };
        let opts = ConfigOptions {
            runbook_dir: Some(runbooks.clone()),
            agent: Some(agent.agent_ref()),
            store: Some(base.join(format!("state-{name}")).join("niledr.redb")),
            cluster: Some(ClusterOptions {
                name: name.to_string(),
                site,
                endpoints: etcd.endpoints(),
                advertise: format!("http://{listen}"),
                lease_ttl: spec.lease_ttl,
                extra: spec.extra.clone(),
            }),
            ..ConfigOptions::with_listen(listen)
        };
        let config = topo.write_niledr_config(base.join(format!("niledr-{name}.toml")), &opts)?;
        let log = base.join(format!("niledr-{name}.log"));
        let env: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let niledr = start_instance(ns.as_deref(), &config, listen, &log, &env)?;
        instances.push(Instance {
            name: name.to_string(),
            site,
            niledr,
            env,
            netns: ns,
        });
    }
    let w = ClusterWorld {
        instances,
        etcd,
        agent,
        topo,
        people,
        runbooks,
    };
    w.wait_leader(Duration::from_secs(30), None)?;
    for i in &w.instances {
        i.niledr
            .wait_json("/readyz", Duration::from_secs(30), |v| {
                v["status"] == "ready"
            })?;
        i.niledr
            .wait_service("port-sudan-postgres", Duration::from_secs(20), |s| {
                s["replication"]["lag_bytes"] == 0 && s["status"] == "up"
            })?;
    }
    Ok(w)
}

/// Three etcd members: on loopback, or one in each site's namespace.
fn start_etcd(base: &std::path::Path, net: Option<&Netns>) -> Result<EtcdCluster> {
    let lo = Ipv4Addr::LOCALHOST;
    match net {
        None => EtcdCluster::start(
            base,
            &[
                ("etcd-k", lo, None),
                ("etcd-p", lo, None),
                ("etcd-c", lo, None),
            ],
        ),
        Some(n) => EtcdCluster::start(
            base,
            &[
                ("etcd-k", n.ip(Site::Khartoum), Some(n.ns(Site::Khartoum))),
                ("etcd-p", n.ip(Site::PortSudan), Some(n.ns(Site::PortSudan))),
                ("etcd-c", n.ip(Site::DrCold), Some(n.ns(Site::DrCold))),
            ],
        ),
    }
}

fn start_instance(
    netns: Option<&str>,
    config: &std::path::Path,
    listen: SocketAddr,
    log: &std::path::Path,
    env: &[(String, String)],
) -> Result<Niledr> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Niledr::start_in(netns, config, listen, log, &env, false)
}

impl ClusterWorld {
    /// The instance named `name`.
    pub fn instance(&self, name: &str) -> Result<&Instance> {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .with_context(|| format!("no instance {name}"))
    }

    /// Index of the instance every running instance names as leader (and which says so of
    /// itself), once they agree; `except` is an instance that must not be it and is not
    /// asked (killed, or cut off).
    pub fn wait_leader(&self, within: Duration, except: Option<usize>) -> Result<usize> {
        let mut last = String::new();
        let mut found = None;
        wait_until(Instant::now() + within, || {
            let mut names = Vec::new();
            let polled = self
                .instances
                .iter()
                .enumerate()
                .filter(|(j, i)| Some(*j) != except && i.niledr.pid().is_some());
            for (_, i) in polled {
                let Ok((200, v)) = i.niledr.get("/api/v1/cluster") else {
                    return Ok(false);
                };
                names.push(v["leader"]["name"].as_str().unwrap_or("").to_string());
                last = v.to_string();
            }
            let Some(first) = names.first() else {
                bail!("no instance is running")
            };
            if first.is_empty() || names.iter().any(|n| n != first) {
                return Ok(false);
            }
            let idx = self.instances.iter().position(|i| &i.name == first);
            let Some(idx) = idx.filter(|i| Some(*i) != except) else {
                return Ok(false);
            };
            let (_, me) = self.instances[idx].niledr.get("/api/v1/cluster")?;
            found = Some(idx);
            Ok(me["is_leader"] == true)
        })
        .with_context(|| format!("the instances never agreed on a leader; last view: {last}"))?;
        found.context("leader")
    }

    /// Each instance's view of the cluster and the end of its log (for a failing test's
    /// message).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for i in &self.instances {
            let view = i
                .niledr
                .get("/api/v1/cluster")
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|e| format!("(unreachable: {e})"));
            out.push_str(&format!(
                "\n=== {} view: {view}\n{}\n",
                i.name,
                crate::util::log_tail(&i.niledr.log, 40)
            ));
        }
        out
    }

    /// SIGKILL instance `idx`.
    pub fn kill(&mut self, idx: usize) -> Result<()> {
        self.instances[idx].niledr.sigkill()
    }

    /// Start instance `idx` again with its config and environment.
    pub fn restart(&mut self, idx: usize) -> Result<()> {
        let i = &mut self.instances[idx];
        let (config, listen, log) = (
            i.niledr.config.clone(),
            i.niledr.listen,
            i.niledr.log.clone(),
        );
        i.niledr = start_instance(i.netns.as_deref(), &config, listen, &log, &i.env)?;
        Ok(())
    }

    /// Some running instance that is not `idx` (to talk to a follower).
    pub fn other_than(&self, idx: usize) -> Result<&Niledr> {
        self.instances
            .iter()
            .enumerate()
            .find(|(j, i)| *j != idx && i.niledr.pid().is_some())
            .map(|(_, i)| &i.niledr)
            .context("no other instance runs")
    }
}
