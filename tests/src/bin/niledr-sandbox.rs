//! niledr-sandbox: runs the NileCare three-site topology on the standard ports for people
//! (same implementation as the test harness, `Layout::sandbox()`), optionally with niledr.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use niledr_tests::topology::MARKER;
use niledr_tests::{ConfigOptions, HostAgent, Layout, Site, Topology};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "niledr-sandbox",
    about = "Real PostgreSQL, Redis, Knot DNS and nginx on loopback site addresses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the topology, print how to reach it, and run until Ctrl-C / SIGTERM.
    Up {
        /// Base directory (wiped at start if it holds a previous sandbox).
        #[arg(long, default_value = "/var/tmp/niledr-sandbox")]
        dir: PathBuf,
        /// `[daemon] listen` written into DIR/niledr.toml.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also run `PATH serve --config DIR/niledr.toml`.
        #[arg(long)]
        niledr: Option<PathBuf>,
        /// Cluster mode: three etcd members and three niledr instances (one per site, each
        /// API and console on its site address, port 8080) instead of one niledr.
        #[arg(long)]
        cluster: bool,
    },
}

fn main() -> ExitCode {
    let Command::Up {
        dir,
        listen,
        niledr,
        cluster,
    } = Cli::parse().command;
    match up(dir, listen, niledr, cluster) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("niledr-sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Remove a previous sandbox; refuse to touch a non-empty directory we did not create.
fn wipe(dir: &Path) -> Result<()> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(());
            }
            if !dir.join(MARKER).is_file() {
                bail!(
                    "{} is not empty and is not a niledr sandbox (no {MARKER}); refusing to wipe it",
                    dir.display()
                );
            }
            fs::remove_dir_all(dir).with_context(|| format!("wiping {}", dir.display()))
        }
    }
}

/// Demo people for the sandbox's two-person approvals; their tokens go to DIR/tokens.txt
/// (mode 0600), since each is shown only once.
fn demo_people(bin: &std::path::Path, dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let users = dir.join("users.toml");
    let mut lines = String::new();
    for (name, role, tag) in [
        ("amira", "approver", Some("incident_commander")),
        ("omar", "approver", Some("engineering_lead")),
        ("khalid", "operator", None),
        ("nour", "viewer", None),
    ] {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["user", "add", "--users-file"])
            .arg(&users)
            .args([name, "--role", role]);
        if let Some(t) = tag {
            cmd.args(["--tag", t]);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {} user add", bin.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "niledr user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        lines.push_str(&format!(
            "{name}\t{role}\t{}\t{token}\n",
            tag.unwrap_or("-")
        ));
    }
    let path = dir.join("tokens.txt");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, lines.as_bytes())?;
    println!(
        "demo people (amira: incident commander, omar: engineering lead, khalid: operator, nour: viewer); tokens in {}",
        path.display()
    );
    Ok(())
}

fn up(dir: PathBuf, listen: SocketAddr, niledr: Option<PathBuf>, cluster: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async move {
        // Registered before anything starts: from here on Ctrl-C means "tear down", never
        // "die and leave servers behind" (during start-up it takes effect once start-up ends).
        let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        wipe(&dir)?;
        eprintln!(
            "niledr-sandbox: starting the topology in {} ...",
            dir.display()
        );
        let base = dir.clone();
        let topo =
            tokio::task::spawn_blocking(move || Topology::start(Layout::sandbox(), Some(base)))
                .await
                .context("start-up task")??;
        // The host agent drills inject faults through (it owns the processes, as we do).
        let agent = HostAgent::start(&topo)?;
        println!("niledr-sandbox: up in {:.1?}\n", topo.started_in());
        println!("{}", niledr_tests::summary::render(&topo));
        println!(
            "host agent: {} (bearer token in {}); its actions are printed here",
            agent.url(),
            agent.token_file().display()
        );
        let (instances, etcd) = if cluster {
            let (i, e) = cluster_configs(&topo, &agent, &dir)?;
            (i, Some(e))
        } else {
            let opts = ConfigOptions {
                agent: Some(agent.agent_ref()),
                ..ConfigOptions::with_listen(listen)
            };
            let config = topo.write_niledr_config(dir.join("niledr.toml"), &opts)?;
            (vec![("niledr".to_string(), config, listen)], None)
        };
        let mut children = Vec::new();
        match &niledr {
            Some(bin) => {
                demo_people(bin, &dir)?;
                for (name, config, listen) in &instances {
                    println!(
                        "starting {name}: {} serve --config {}  (console http://{listen}/)",
                        bin.display(),
                        config.display()
                    );
                    children.push(
                        tokio::process::Command::new(bin)
                            .arg("serve")
                            .arg("--config")
                            .arg(config)
                            .kill_on_drop(true)
                            .spawn()
                            .with_context(|| format!("spawning {}", bin.display()))?,
                    );
                }
            }
            None => {
                for (_, config, _) in &instances {
                    println!(
                        "(no --niledr given: run `niledr serve --config {}` yourself)",
                        config.display()
                    );
                }
            }
        }
        println!("Ctrl-C or SIGTERM tears everything down.");

        let reason = tokio::select! {
            _ = sigint.recv() => "SIGINT".to_string(),
            _ = sigterm.recv() => "SIGTERM".to_string(),
            status = wait_any(&mut children) => format!("niledr exited ({status})"),
        };
        eprintln!("niledr-sandbox: {reason}; tearing down");
        for c in children.iter_mut() {
            stop_child(c).await;
        }
        drop(etcd);
        // niledr is gone; then the agent (and the dr-cold server it may have started), then
        // the topology.
        tokio::task::spawn_blocking(move || {
            drop(agent);
            topo.shutdown()
        })
        .await
        .context("teardown task")??;
        eprintln!(
            "niledr-sandbox: all processes stopped; data left in {}",
            dir.display()
        );
        Ok(())
    })
}

/// A niledr to run: its name, config and API address.
type Instance = (String, PathBuf, SocketAddr);

/// The first of `children` to exit (never, with none).
async fn wait_any(children: &mut [tokio::process::Child]) -> String {
    if children.is_empty() {
        return std::future::pending().await;
    }
    let waits = children.iter_mut().map(|c| Box::pin(c.wait()));
    match futures::future::select_all(waits).await.0 {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Cluster mode: etcd members on the three site addresses and a config per niledr instance,
/// each listening on its site address at port 8080.
fn cluster_configs(
    topo: &Topology,
    agent: &HostAgent,
    dir: &Path,
) -> Result<(Vec<Instance>, niledr_tests::etcd::EtcdCluster)> {
    let layout = topo.layout();
    let etcd = niledr_tests::etcd::EtcdCluster::start(
        dir,
        &[
            ("etcd-k", layout.ip(Site::Khartoum), None),
            ("etcd-p", layout.ip(Site::PortSudan), None),
            ("etcd-c", layout.ip(Site::DrCold), None),
        ],
    )?;
    println!("etcd: {}", etcd.endpoints().join(", "));
    let mut out = Vec::new();
    for (name, site) in niledr_tests::cluster::MEMBERS {
        let listen = SocketAddr::from((layout.ip(site), 8080));
        let opts = ConfigOptions {
            agent: Some(agent.agent_ref()),
            store: Some(dir.join(format!("state-{name}")).join("niledr.redb")),
            cluster: Some(niledr_tests::ClusterOptions {
                name: name.to_string(),
                site,
                endpoints: etcd.endpoints(),
                advertise: format!("http://{listen}"),
                lease_ttl: Duration::from_secs(5),
                extra: String::new(),
            }),
            ..ConfigOptions::with_listen(listen)
        };
        let config = topo.write_niledr_config(dir.join(format!("niledr-{name}.toml")), &opts)?;
        out.push((name.to_string(), config, listen));
    }
    Ok((out, etcd))
}

/// SIGTERM, 10 s grace, then SIGKILL.
async fn stop_child(c: &mut tokio::process::Child) {
    if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(10), c.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = c.kill().await;
}
