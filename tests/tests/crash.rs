//! Crash safety: SIGKILL `niledr` (failpoints, cargo feature `failpoints`) at every step
//! boundary of the failover runbook's destructive steps — after the intent is journaled,
//! after the action, before the outcome is journaled — restart it each time, and show the
//! execution completes with PostgreSQL promoted exactly once, DNS changed once, approvals and
//! audit intact.

#![allow(clippy::unwrap_used)]

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{Context, Result};
use niledr_tests::Site;
use niledr_tests::daemon::{Niledr, niledr_command};
use niledr_tests::dns::soa_serial;
use niledr_tests::scenario::{self, propose_and_approve, start};

const FAILOVER: &str = "failover-khartoum-to-port-sudan";

#[test]
fn sigkill_at_every_step_boundary_resumes_safely() -> Result<()> {
    let w = start()?;
    let serial_before = soa_serial(w.topo.dns_servers()[0])?;
    let (config, listen, log) = (
        w.niledr.config.clone(),
        w.niledr.listen,
        w.niledr.log.clone(),
    );
    let mut points = Vec::new();
    for step in ["promote-port-sudan-pg", "swap-pgbouncer", "cutover-db"] {
        for at in ["after_intent", "after_action", "before_outcome"] {
            points.push(format!("{at}:{step}"));
        }
    }

    // Re-start niledr with the first failpoint armed, then propose and approve: it dies there.
    let scenario::World {
        niledr,
        agent,
        topo,
        people,
        runbooks,
    } = w;
    niledr.stop()?;
    let first = Niledr::start_env(
        &config,
        listen,
        &log,
        &[("NILEDR_FAILPOINTS", &points[0])],
        false,
    )?;
    first.wait_json("/readyz", Duration::from_secs(30), |v| {
        v["status"] == "ready"
    })?;
    let mut w = scenario::World {
        niledr: first,
        agent,
        topo,
        people,
        runbooks,
    };
    let id = propose_and_approve(&w, FAILOVER)?;
    let status = w.niledr.wait_exit(Duration::from_secs(60)).context(
        "niledr did not stop at its failpoint: build it with --features niledr-orchestrator/failpoints (scripts/test.sh does)",
    )?;
    println!("CRASH at {}: {status}", points[0]);
    assert_eq!(status.signal(), Some(9), "killed by its failpoint");

    // Each restart resumes the execution and dies at the next boundary.
    for point in &points[1..] {
        w.niledr = Niledr::start_env(&config, listen, &log, &[("NILEDR_FAILPOINTS", point)], true)?;
        let status = w.niledr.wait_exit(Duration::from_secs(60))?;
        println!("CRASH at {point}: {status}");
        assert_eq!(status.signal(), Some(9), "killed at {point}");
    }

    // The last restart has no failpoint: the execution completes.
    w.niledr = Niledr::start(&config, listen, &log)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(90),
        &["succeeded", "failed", "rolled_back"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(
        done["approvals"].as_array().map(Vec::len),
        Some(2),
        "approvals survived: {done:#}"
    );
    let timeline = done["timeline"].to_string();
    assert!(
        timeline.contains("in_doubt"),
        "in-doubt steps were re-checked: {timeline}"
    );

    // PostgreSQL was promoted exactly once, DNS changed once per name.
    scenario::promoted_exactly_once(&w.topo, serial_before)?;
    let port_sudan = w.topo.layout().ip(Site::PortSudan);
    let env = std::fs::read_to_string(w.topo.base_dir().join("app/database.env"))?;
    assert!(env.contains(&format!("@{port_sudan}:")), "{env}");

    let errors = w.niledr.unexpected_errors(&[])?;
    assert!(
        errors.is_empty(),
        "unexpected ERROR lines:\n{}",
        errors.join("\n")
    );
    let scenario::World {
        niledr,
        agent,
        topo,
        ..
    } = w;
    niledr.stop()?;
    // The chain verifies from the CLI with the daemon stopped (the topology is still there).
    let out = niledr_command(&["audit", "verify", "--config", config.to_str().unwrap()])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("audit chain OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    drop(agent);
    drop(topo);
    Ok(())
}
