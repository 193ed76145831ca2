//! `EtcdCluster`: real etcd members (Debian's `etcd-server`) on free ports, one data dir each,
//! as niledr's cluster store; kill, restart and stop a member like any other component.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::http::http_get;
use crate::layout::free_tcp_port;
use crate::process::{Component, ProcessSpec};
use crate::util::{make_dir, random_hex, wait_until};

/// One member: its name, client and peer addresses, and the running process.
pub struct EtcdMember {
    pub name: String,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub component: Component,
}

pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
}

/// Where `etcd` is: `$ETCD_BIN`, else PATH (`scripts/install-deps.sh` installs it).
fn etcd_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("ETCD_BIN") {
        return Ok(PathBuf::from(p));
    }
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join("etcd");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("etcd is not installed (Debian package etcd-server; scripts/install-deps.sh installs it)")
}

impl EtcdCluster {
    /// Start one member per `(name, address, network namespace)` under `base`, wait until
    /// every member reports healthy (the cluster has a raft leader).
    pub fn start(base: &Path, members: &[(&str, Ipv4Addr, Option<&str>)]) -> Result<EtcdCluster> {
        let bin = etcd_binary()?;
        let token = format!("niledr-{}", random_hex(4)?);
        // In a namespace of its own the member has the standard ports to itself.
        let port = |ip: Ipv4Addr, netns: Option<&str>, std: u16| match netns {
            Some(_) => Ok(std),
            None => free_tcp_port(ip),
        };
        let addrs: Vec<(String, SocketAddr, SocketAddr, Option<String>)> = members
            .iter()
            .map(|(name, ip, netns)| {
                Ok((
                    name.to_string(),
                    SocketAddr::from((*ip, port(*ip, *netns, 2379)?)),
                    SocketAddr::from((*ip, port(*ip, *netns, 2380)?)),
                    netns.map(str::to_string),
                ))
            })
            .collect::<Result<_>>()?;
        let initial = addrs
            .iter()
            .map(|(n, _, p, _)| format!("{n}=http://{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut out = Vec::new();
        for (name, client, peer, netns) in addrs {
            let dir = base.join(format!("etcd-{name}"));
            make_dir(&dir, 0o700, None)?;
            let spec = ProcessSpec {
                program: bin.clone(),
                args: member_args(&name, &dir, client, peer, &initial, &token),
                env: Vec::new(),
                cwd: Some(dir.clone()),
                owner: None,
                log: base.join(format!("etcd-{name}.log")),
                graceful: Signal::SIGTERM,
                start_timeout: Duration::from_secs(20),
                retry_when_log_says: &[],
                netns,
                // A lone member has no quorum yet: "listening" is enough here, the cluster's
                // health is waited for below.
                ready: Box::new(move || {
                    std::net::TcpStream::connect_timeout(&client, Duration::from_millis(200))
                        .map(drop)
                        .context("client port not open yet")
                }),
            };
            let component = Component::spawn(&format!("etcd-{name}"), None, client, spec)?;
            out.push(EtcdMember {
                name,
                client,
                peer,
                component,
            });
        }
        let c = EtcdCluster { members: out };
        c.wait_healthy(Duration::from_secs(30))?;
        Ok(c)
    }

    /// Client URLs of every member (`[cluster] endpoints`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{}", m.client))
            .collect()
    }

    /// Wait until every running member answers `/health` with `"health":"true"`.
    pub fn wait_healthy(&self, within: Duration) -> Result<()> {
        wait_until(Instant::now() + within, || {
            Ok(self
                .members
                .iter()
                .filter(|m| m.component.is_running())
                .all(|m| {
                    http_get(m.client, "/health")
                        .is_ok_and(|r| r.status == 200 && r.body.contains("\"true\""))
                }))
        })
        .context("etcd members did not all become healthy")
    }

    pub fn member(&self, name: &str) -> Result<&EtcdMember> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .with_context(|| format!("no etcd member {name}"))
    }

    /// `etcdctl get --prefix KEY` against the cluster: (key, value) pairs. A linearizable read,
    /// asked of each member in turn until one answers: a member that is cut off, or catching up
    /// after it rejoined, times out without failing the read.
    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut answer = None;
        for endpoint in self.endpoints() {
            let out = std::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &endpoint,
                    "--dial-timeout=1s",
                    "--command-timeout=3s",
                    "get",
                    "--prefix",
                    prefix,
                ])
                .output()
                .context("running etcdctl")?;
            if out.status.success() {
                answer = Some(out);
                break;
            }
            errors.push(format!(
                "{endpoint}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let Some(out) = answer else {
            bail!("etcdctl get: no member answered:\n{}", errors.join("\n"));
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect())
    }
}

fn member_args(
    name: &str,
    dir: &Path,
    client: SocketAddr,
    peer: SocketAddr,
    initial: &str,
    token: &str,
) -> Vec<std::ffi::OsString> {
    [
        "--name",
        name,
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--listen-client-urls",
        &format!("http://{client}"),
        "--advertise-client-urls",
        &format!("http://{client}"),
        "--listen-peer-urls",
        &format!("http://{peer}"),
        "--initial-advertise-peer-urls",
        &format!("http://{peer}"),
        "--initial-cluster",
        initial,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        token,
        // Sites are on one host here: a fast raft keeps elections well inside niledr's lease.
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
        // A member cut from one peer must not disrupt the raft leader the others still follow.
        "--pre-vote",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(Into::into)
    .collect()
}
