//! A niledr cluster on the topology: three etcd members and three niledr instances (one per
//! site: Khartoum, Port Sudan, and the cold site as a witness), each with its own config,
//! store and log, all loading the same runbooks and users; who leads, SIGKILL and restart.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::daemon::{Niledr, People, create_people, free_listen_addr};
use crate::etcd::EtcdCluster;
use crate::scenario::copy_runbooks;
use crate::{ClusterOptions, ConfigOptions, HostAgent, Layout, Site, Topology, wait_until};

/// One niledr instance of the cluster.
pub struct Instance {
    pub name: String,
    pub site: Site,
    pub niledr: Niledr,
    env: Vec<(String, String)>,
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

/// Topology, etcd (three members on loopback), and the three instances started and ready
/// with one leader; `env` goes to every instance (failpoints).
pub fn start_cluster(lease_ttl: Duration, env: &[(&str, &str)]) -> Result<ClusterWorld> {
    let topo = Topology::start(Layout::free_ports()?, None)?;
    let agent = HostAgent::start(&topo)?;
    let base = topo.base_dir().to_path_buf();
    let runbooks = base.join("runbooks");
    copy_runbooks(&runbooks)?;
    let people = create_people(&base.join("users.toml"))?;
    let lo = Ipv4Addr::LOCALHOST;
    let etcd = EtcdCluster::start(
        &base,
        &[
            ("etcd-k", lo, None),
            ("etcd-p", lo, None),
            ("etcd-c", lo, None),
        ],
    )?;
    let mut instances = Vec::new();
    for (name, site) in MEMBERS {
        let listen = free_listen_addr()?;
        let opts = ConfigOptions {
            runbook_dir: Some(runbooks.clone()),
            agent: Some(agent.agent_ref()),
            store: Some(base.join(format!("state-{name}")).join("niledr.redb")),
            cluster: Some(ClusterOptions {
                name: name.to_string(),
                site,
                endpoints: etcd.endpoints(),
                advertise: format!("http://{listen}"),
                lease_ttl,
                extra: String::new(),
            }),
            ..ConfigOptions::with_listen(listen)
        };
        let config = topo.write_niledr_config(base.join(format!("niledr-{name}.toml")), &opts)?;
        let log = base.join(format!("niledr-{name}.log"));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let niledr = start_instance(&config, listen, &log, &env)?;
        instances.push(Instance {
            name: name.to_string(),
            site,
            niledr,
            env,
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

fn start_instance(
    config: &std::path::Path,
    listen: SocketAddr,
    log: &std::path::Path,
    env: &[(String, String)],
) -> Result<Niledr> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Niledr::start_env(config, listen, log, &env, false)
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
    /// itself), once they agree; `except` is an instance that must not be it.
    pub fn wait_leader(&self, within: Duration, except: Option<usize>) -> Result<usize> {
        let mut last = String::new();
        let mut found = None;
        wait_until(Instant::now() + within, || {
            let mut names = Vec::new();
            for i in self.instances.iter().filter(|i| i.niledr.pid().is_some()) {
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
        i.niledr = start_instance(&config, listen, &log, &i.env)?;
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
