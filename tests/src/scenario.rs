//! Building blocks of the end-to-end runbook suites: a topology with niledr, its runbooks
//! copied into the topology's dir (so a test may edit them), people with tokens, and the
//! propose / approve / finish steps every suite repeats.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::daemon::{Niledr, People, create_people, free_listen_addr};
use crate::{ConfigOptions, HostAgent, Layout, Topology};

/// Fields drop in declaration order: niledr first, then the host agent, then the topology.
pub struct World {
    pub niledr: Niledr,
    /// The host agent niledr's drills act through (`[drills] agent`).
    pub agent: HostAgent,
    pub topo: Topology,
    pub people: People,
    /// The runbook directory niledr loads (a copy of the repository's `runbooks/nilecare`).
    pub runbooks: PathBuf,
}

/// Copy the shipped runbooks to `to`.
pub fn copy_runbooks(to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks/nilecare");
    for e in std::fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))? {
        let p = e?.path();
        if let (Some(name), Some("toml")) = (p.file_name(), p.extension().and_then(|x| x.to_str()))
        {
            std::fs::copy(&p, to.join(name))?;
        }
    }
    Ok(())
}

/// A topology, its host agent, people, and niledr ready with replication settled.
/// `edit_config` may change the generated config text before niledr reads it; `env` is
/// passed to the daemon.
pub fn start_with(
    edit_config: impl FnOnce(&Topology, String) -> Result<String>,
    env: &[(&str, &str)],
) -> Result<World> {
    let topo = Topology::start(Layout::free_ports()?, None)?;
    let agent = HostAgent::start(&topo)?;
    let runbooks = topo.base_dir().join("runbooks");
    copy_runbooks(&runbooks)?;
    let people = create_people(&topo.base_dir().join("users.toml"))?;
    let listen = free_listen_addr()?;
    let opts = ConfigOptions {
        runbook_dir: Some(runbooks.clone()),
        agent: Some(agent.agent_ref()),
        ..ConfigOptions::with_listen(listen)
    };
    let config = topo.write_niledr_config(topo.base_dir().join("niledr.toml"), &opts)?;
    let text = edit_config(&topo, std::fs::read_to_string(&config)?)?;
    std::fs::write(&config, text)?;
    let niledr = Niledr::start_env(
        &config,
        listen,
        &topo.base_dir().join("niledr.log"),
        env,
        false,
    )?;
    niledr.wait_json("/readyz", Duration::from_secs(30), |v| {
        v["status"] == "ready"
    })?;
    // Replication settled before any fault, so the lag gate has a measurement.
    niledr.wait_service("port-sudan-postgres", Duration::from_secs(20), |s| {
        s["replication"]["lag_bytes"] == 0 && s["status"] == "up"
    })?;
    Ok(World {
        niledr,
        agent,
        topo,
        people,
        runbooks,
    })
}

pub fn start() -> Result<World> {
    start_with(|_, t| Ok(t), &[])
}

/// The log holds no ERROR but `allowed`, the audit chain verifies, niledr stops cleanly.
pub fn finish(w: World, allowed: &[&str]) -> Result<()> {
    let errors = w.niledr.unexpected_errors(allowed)?;
    if !errors.is_empty() {
        bail!(
            "unexpected ERROR lines in the niledr log:\n{}",
            errors.join("\n")
        );
    }
    let (status, v) = w.niledr.get("/api/v1/audit/verify")?;
    if status != 200 {
        bail!("audit chain does not verify: {v:#}");
    }
    w.niledr.stop()
}

/// Propose `runbook` as the holder of `token`; the execution must await approval.
pub fn propose(niledr: &Niledr, runbook: &str, token: &str) -> Result<serde_json::Value> {
    let (status, body) = niledr.post(
        "/api/v1/executions",
        Some(token),
        &json!({ "runbook": runbook, "reason": "end-to-end test" }),
    )?;
    if status != 201 || body["state"] != "awaiting_approval" {
        bail!("proposing {runbook}: {status} {body:#}");
    }
    Ok(body)
}

/// Approve execution `id` for plan `digest`; returns (status, body).
pub fn approve(
    niledr: &Niledr,
    id: &str,
    token: &str,
    digest: &str,
) -> Result<(u16, serde_json::Value)> {
    niledr.post(
        &format!("/api/v1/executions/{id}/approvals"),
        Some(token),
        &json!({ "decision": "approve", "comment": "read the plan", "plan_digest": digest }),
    )
}

/// Propose as the operator and approve as incident commander + engineering lead; returns the id.
pub fn propose_and_approve(w: &World, runbook: &str) -> Result<String> {
    let ex = propose(&w.niledr, runbook, &w.people.operator)?;
    let id = ex["id"].as_str().context("execution id")?.to_string();
    let digest = ex["plan_digest"]
        .as_str()
        .context("plan digest")?
        .to_string();
    for token in [&w.people.ic, &w.people.lead] {
        let (status, body) = approve(&w.niledr, &id, token, &digest)?;
        if status != 200 {
            bail!("approving {id}: {status} {body:#}");
        }
    }
    Ok(id)
}

/// Write `rows` on the khartoum primary, wait until the standby has them all, then `kill -9`
/// the primary and wait until niledr sees it down: the starting point of a failover.
pub fn kill_primary_after_writes(w: &World, rows: u64) -> Result<()> {
    w.topo.postgres_primary().write_rows(rows)?;
    w.niledr
        .wait_service("port-sudan-postgres", Duration::from_secs(20), |s| {
            s["replication"]["lag_bytes"] == 0
        })?;
    w.topo.postgres_primary().kill()?;
    w.niledr
        .wait_service("khartoum-postgres", Duration::from_secs(15), |s| {
            s["status"] == "down"
        })?;
    Ok(())
}

/// Standing pre-approval of `drill` (its current digest) by the incident commander and the
/// engineering lead.
pub fn approve_drill(w: &World, drill: &str) -> Result<()> {
    let (status, d) = w.niledr.get(&format!("/api/v1/drills/{drill}"))?;
    if status != 200 {
        bail!("GET drill {drill}: {status} {d:#}");
    }
    let digest = d["digest"].as_str().context("digest")?.to_string();
    for token in [&w.people.ic, &w.people.lead] {
        let (status, body) = w.niledr.post(
            &format!("/api/v1/drills/{drill}/approvals"),
            Some(token),
            &json!({ "digest": digest, "comment": "read the drill file" }),
        )?;
        if status != 200 {
            bail!("standing approval of {drill}: {status} {body:#}");
        }
    }
    Ok(())
}

/// `--runs N` from a benchmark's command line, or `default`.
pub fn runs_arg(default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
