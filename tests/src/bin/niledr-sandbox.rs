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
use niledr_tests::{ConfigOptions, HostAgent, Layout, Topology};
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
    },
}

fn main() -> ExitCode {
    let Command::Up {
        dir,
        listen,
        niledr,
    } = Cli::parse().command;
    match up(dir, listen, niledr) {
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

fn up(dir: PathBuf, listen: SocketAddr, niledr: Option<PathBuf>) -> Result<()> {
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
        let opts = ConfigOptions {
            agent: Some(agent.agent_ref()),
            ..ConfigOptions::with_listen(listen)
        };
        let config = topo.write_niledr_config(dir.join("niledr.toml"), &opts)?;
        println!("niledr-sandbox: up in {:.1?}\n", topo.started_in());
        println!("{}", niledr_tests::summary::render(&topo));
        println!(
            "host agent: {} (bearer token in {}); its actions are printed here",
            agent.url(),
            agent.token_file().display()
        );
        println!("niledr config: {}", config.display());

        let mut child = match &niledr {
            Some(bin) => {
                demo_people(bin, &dir)?;
                println!(
                    "starting: {} serve --config {}",
                    bin.display(),
                    config.display()
                );
                Some(
                    tokio::process::Command::new(bin)
                        .arg("serve")
                        .arg("--config")
                        .arg(&config)
                        .kill_on_drop(true)
                        .spawn()
                        .with_context(|| format!("spawning {}", bin.display()))?,
                )
            }
            None => {
                println!(
                    "(no --niledr given: run `niledr serve --config {}` yourself)",
                    config.display()
                );
                None
            }
        };
        println!("Ctrl-C or SIGTERM tears everything down.");

        let reason = tokio::select! {
            _ = sigint.recv() => "SIGINT".to_string(),
            _ = sigterm.recv() => "SIGTERM".to_string(),
            status = wait_child(&mut child) => format!("niledr exited ({status})"),
        };
        eprintln!("niledr-sandbox: {reason}; tearing down");
        if let Some(c) = child.as_mut() {
            stop_child(c).await;
        }
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

async fn wait_child(child: &mut Option<tokio::process::Child>) -> String {
    match child {
        Some(c) => match c.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        },
        None => std::future::pending().await,
    }
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
