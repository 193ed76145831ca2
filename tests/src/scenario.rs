//! Building blocks of the end-to-end runbook and drill suites: a topology with niledr, its
//! runbooks copied into the topology's dir (so a test may edit them), people with tokens, and
//! the propose / approve / finish steps every suite repeats, plus approving and following
//! drill runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::daemon::{Niledr, People, create_people, free_listen_addr};
use crate::{ConfigOptions, HostAgent, Topology};

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
    let topo = Topology::start_free(None)?;
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

/// Stop niledr (SIGTERM) and start it again on the same config with `env`; returns once it
/// is ready (runbooks and drills are loaded at start).
pub fn restart(w: World, env: &[(&str, &str)]) -> Result<World> {
    let World {
        niledr,
        agent,
        topo,
        people,
        runbooks,
    } = w;
    let (config, listen, log) = (niledr.config.clone(), niledr.listen, niledr.log.clone());
    niledr.stop()?;
    let niledr = Niledr::start_env(&config, listen, &log, env, false)?;
    niledr.wait_json("/readyz", Duration::from_secs(30), |v| {
        v["status"] == "ready"
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

/// Niledr reading drills from `<base>/drills` holding `files` instead of the shipped ones.
pub fn start_with_drills(files: &[(&str, String)]) -> Result<World> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    start_with(
        move |topo, text| {
            let dir = topo.base_dir().join("drills");
            std::fs::create_dir_all(&dir)?;
            for (name, body) in &files {
                std::fs::write(dir.join(name), body)?;
            }
            let start = text.find("[drills]\ndirs = [").context("[drills] dirs")?;
            let from = start + "[drills]\n".len();
            let end = from + text[from..].find('\n').context("dirs line")?;
            Ok(format!(
                "{}dirs = [\"{}\"]{}",
                &text[..from],
                dir.display(),
                &text[end..]
            ))
        },
        &[],
    )
}

/// The log holds no ERROR but `allowed`, the audit chain verifies, niledr stops cleanly.
pub fn finish(w: World, allowed: &[&str]) -> Result<()> {
    check_and_stop(w.niledr, allowed)
}

/// `finish` for a test that keeps the topology afterwards (to read niledr's store).
pub fn check_and_stop(niledr: Niledr, allowed: &[&str]) -> Result<()> {
    let errors = niledr.unexpected_errors(allowed)?;
    if !errors.is_empty() {
        bail!(
            "unexpected ERROR lines in the niledr log:\n{}",
            errors.join("\n")
        );
    }
    let (status, v) = niledr.get("/api/v1/audit/verify")?;
    if status != 200 {
        bail!("audit chain does not verify: {v:#}");
    }
    niledr.stop()
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

/// Approve live drill run `id` of `drill` as the holder of `token`, bound to the run's digest;
/// returns (status, body).
pub fn decide_drill_run(
    w: &World,
    drill: &str,
    id: &str,
    token: &str,
    decision: &str,
) -> Result<(u16, serde_json::Value)> {
    let (status, run) = w.niledr.get(&format!("/api/v1/drill-runs/{id}"))?;
    if status != 200 {
        bail!("GET drill run {id}: {status} {run:#}");
    }
    let digest = run["digest"].as_str().context("run digest")?.to_string();
    w.niledr.post(
        &format!("/api/v1/drills/{drill}/runs/{id}/approvals"),
        Some(token),
        &json!({ "digest": digest, "decision": decision, "comment": "read the drill and the run" }),
    )
}

/// Approve live drill run `id` as the incident commander, then the engineering lead: the
/// second approval starts it. Returns the run as the second approval answered.
pub fn approve_drill_run(w: &World, drill: &str, id: &str) -> Result<serde_json::Value> {
    let mut last = serde_json::Value::Null;
    for token in [&w.people.ic, &w.people.lead] {
        let (status, body) = decide_drill_run(w, drill, id, token, "approve")?;
        if status != 200 {
            bail!("approving drill run {id}: {status} {body:#}");
        }
        last = body;
    }
    Ok(last)
}

/// How long `wait_run` follows a drill run.
pub const DRILL_RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Approve, as the two people, any of the run's executions waiting for approval (live mode).
pub fn approve_waiting(w: &World, run: &serde_json::Value) -> Result<()> {
    for key in ["execution", "cleanup_execution"] {
        let Some(id) = run[key].as_str() else {
            continue;
        };
        let (_, ex) = w.niledr.get(&format!("/api/v1/executions/{id}"))?;
        if ex["state"] != "awaiting_approval" {
            continue;
        }
        let digest = ex["plan_digest"].as_str().unwrap_or_default().to_string();
        let have: Vec<String> = ex["approvals"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["user"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for (user, token) in [("amira", &w.people.ic), ("omar", &w.people.lead)] {
            if have.iter().any(|h| h == user) {
                continue;
            }
            let (status, body) = approve(&w.niledr, id, token, &digest)?;
            if status != 200 {
                bail!("approving {id} as {user}: {status} {body:#}");
            }
        }
    }
    Ok(())
}

/// Follow a drill run to its end (printing its notes), approving its executions as they wait
/// (live approval) when `live`.
pub fn wait_run(w: &World, id: &str, live: bool) -> Result<serde_json::Value> {
    let deadline = Instant::now() + DRILL_RUN_TIMEOUT;
    let mut printed = 0;
    loop {
        let (status, run) = w.niledr.get(&format!("/api/v1/drill-runs/{id}"))?;
        if status != 200 {
            bail!("GET drill run {id}: {status} {run:#}");
        }
        let notes = run["notes"].as_array().cloned().unwrap_or_default();
        for n in notes.iter().skip(printed) {
            println!(
                "  [{}] {}",
                n["event"].as_str().unwrap_or(""),
                n["detail"].as_str().unwrap_or("")
            );
        }
        printed = notes.len();
        if run["state"] != "running" {
            return Ok(run);
        }
        if live {
            approve_waiting(w, &run)?;
        }
        if Instant::now() > deadline {
            bail!("drill run {id} still running after {DRILL_RUN_TIMEOUT:?}: {run:#}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What every authoritative server answers for `name` (A records).
pub fn answers(w: &World, name: &str) -> Result<Vec<Vec<std::net::Ipv4Addr>>> {
    w.topo
        .dns_servers()
        .iter()
        .map(|s| w.topo.dig_a(name, *s))
        .collect()
}

/// `GET /api/v1/executions/{id}`.
pub fn execution(w: &World, id: &str) -> Result<serde_json::Value> {
    Ok(w.niledr.get(&format!("/api/v1/executions/{id}"))?.1)
}

/// Step `id` of an execution view (`Null` when there is none).
pub fn step<'a>(ex: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    ex["steps"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == id))
        .unwrap_or(&serde_json::Value::Null)
}

/// Wait until step `id` of execution `ex` is in `state`; returns the execution then.
pub fn wait_step(
    w: &World,
    ex: &str,
    id: &str,
    state: &str,
    within: Duration,
) -> Result<serde_json::Value> {
    let mut last = serde_json::Value::Null;
    crate::wait_until(std::time::Instant::now() + within, || {
        last = execution(w, ex)?;
        Ok(step(&last, id)["state"] == state)
    })
    .with_context(|| format!("step {id} never {state}: {last:#}"))?;
    Ok(last)
}

/// Kill Khartoum after `rows` writes, fail over with `runbook`, and return once its step
/// `step` runs (a `delay:STEP` failpoint holds it there so a test can break something real).
pub fn fail_over_until_step_runs(w: &World, runbook: &str, step: &str) -> Result<String> {
    kill_primary_after_writes(w, 100)?;
    let id = propose_and_approve(w, runbook)?;
    wait_step(w, &id, step, "running", Duration::from_secs(30))?;
    Ok(id)
}

/// Stop every authoritative DNS server (for real: the processes).
pub fn stop_dns(w: &World) -> Result<()> {
    w.topo
        .dns()
        .servers()
        .iter()
        .try_for_each(|s| s.component().stop())
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

/// After one failover to Port Sudan: PostgreSQL there was promoted exactly once (one timeline
/// switch, one history file) and DNS changed once per name (three updates since
/// `serial_before`: db, cache, api; the TTL was already 60), every server answering Port Sudan.
pub fn promoted_exactly_once(topo: &Topology, serial_before: u64) -> Result<()> {
    let standby = topo.postgres_standby();
    let timeline = standby.psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")?;
    if timeline.trim() != "00000002" {
        bail!("Port Sudan is on timeline {timeline}, not 00000002");
    }
    let histories =
        standby.psql("SELECT count(*) FROM pg_ls_dir('pg_wal') f WHERE f LIKE '%.history'")?;
    if histories.trim() != "1" {
        bail!("{histories} timeline history files at Port Sudan, not 1");
    }
    // The failover runbook's DNS updates, each applied once: three cutovers and the two
    // platform-mode levels (4 before the fence, 5 after verification).
    let serial_after = crate::dns::soa_serial(topo.dns_servers()[0])?;
    if serial_after - serial_before != 5 {
        bail!(
            "SOA serial {serial_before} -> {serial_after}: not five updates (3 cutovers, 2 platform levels)"
        );
    }
    let port_sudan = topo.layout().ip(crate::Site::PortSudan);
    for server in topo.dns_servers() {
        let a = topo.dig_a(&format!("db.{}", crate::ZONE), server)?;
        if a != vec![port_sudan] {
            bail!("{server} answers db with {a:?}, not {port_sudan}");
        }
    }
    Ok(())
}
