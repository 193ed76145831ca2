//! Crash and return paths: a retry journaled before a SIGKILL runs after the restart; an old
//! primary that returns writable is fenced again, retried until the fence holds; after a
//! manual failover the trigger does not open a proposal of its own (not even after a
//! restart) and the returning old primary takes no write; a journal record whose field does
//! not decode refuses its execution, naming the field.

#![allow(clippy::unwrap_used)]

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use niledr_orchestrator::store::Store;
use niledr_tests::daemon::Niledr;
use niledr_tests::scenario::{self, World, start_with};
use niledr_tests::{Site, ZONE, wait_until};
use serde_json::Value;

const FAILOVER: &str = "failover-khartoum-to-port-sudan";
const ALLOWED: &[&str] = &[
    "NEEDS AN OPERATOR",
    "could not fence the returning old primary",
    "journal record does not decode",
];

fn store_path(w: &World) -> std::path::PathBuf {
    w.topo.base_dir().join("state").join("niledr.redb")
}

fn restart(w: &mut World, env: &[(&str, &str)], may_crash: bool) -> Result<()> {
    let (config, listen, log) = (
        w.niledr.config.clone(),
        w.niledr.listen,
        w.niledr.log.clone(),
    );
    w.niledr = Niledr::start_env(&config, listen, &log, env, may_crash)?;
    w.niledr
        .wait_json("/readyz", Duration::from_secs(30), |v| {
            v["status"] == "ready"
        })?;
    Ok(())
}

/// Stop niledr (SIGTERM) and give its seat back to a fresh, not yet started handle.
fn stop(w: &mut World) -> Result<()> {
    let (config, listen, log) = (
        w.niledr.config.clone(),
        w.niledr.listen,
        w.niledr.log.clone(),
    );
    let old = std::mem::replace(&mut w.niledr, Niledr::detached(&config, listen, &log));
    old.stop()
}

#[test]
fn a_retry_scheduled_before_a_crash_runs_after_the_restart() -> Result<()> {
    let mut w = start_with(
        |_, t| Ok(t),
        &[
            (
                "NILEDR_FAILPOINTS",
                "delay:cutover-db,retry_scheduled:cutover-db",
            ),
            ("NILEDR_FAILPOINT_DELAY_MS", "2000"),
        ],
    )?;
    // While cutover-db waits at its failpoint, stop DNS: the attempt fails for real and a
    // retry is journaled; niledr dies right after (before arming its timer).
    let id = scenario::fail_over_until_step_runs(&w, FAILOVER, "cutover-db")?;
    scenario::stop_dns(&w)?;
    let status = w.niledr.wait_exit(Duration::from_secs(60))?;
    assert_eq!(status.signal(), Some(9), "killed at retry_scheduled");
    for s in w.topo.dns().servers() {
        s.component().start()?;
    }
    restart(&mut w, &[], false)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["succeeded", "needs_operator", "failed"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert!(
        done["timeline"].to_string().contains("retry_rearmed"),
        "{done:#}"
    );
    let port_sudan = w.topo.layout().ip(Site::PortSudan);
    for s in w.topo.dns_servers() {
        assert_eq!(w.topo.dig_a(&format!("db.{ZONE}"), s)?, vec![port_sudan]);
    }
    scenario::finish(w, ALLOWED)
}

#[test]
fn a_returning_old_primary_is_fenced_again_until_the_fence_holds() -> Result<()> {
    let mut w = scenario::start()?;
    scenario::kill_primary_after_writes(&w, 100)?;
    let id = scenario::propose_and_approve(&w, FAILOVER)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["succeeded", "needs_operator", "failed"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    // Khartoum returns writable; someone holds the role catalog locked, so niledr's first
    // re-fence times out (5 s lock_timeout) and must be retried.
    let k = w.topo.postgres_primary().clone();
    k.restart()?;
    let holder = std::thread::spawn(move || {
        k.psql("BEGIN; LOCK TABLE pg_authid IN EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT")
    });
    let k = w.topo.postgres_primary();
    let log =
        |needle: &str| std::fs::read_to_string(&w.niledr.log).is_ok_and(|l| l.contains(needle));
    wait_until(Instant::now() + Duration::from_secs(60), || {
        Ok(log("returning old primary fenced"))
    })
    .context("khartoum never fenced again")?;
    holder.join().unwrap()?;
    assert!(
        log("could not fence the returning old primary"),
        "a failed attempt first"
    );
    assert_eq!(k.psql("SHOW default_transaction_read_only")?, "on");
    assert!(k.psql_app("CREATE TABLE split_brain(x int)").is_err());
    let store = store_path(&w);
    stop(&mut w)?;
    let audit = Store::open(&store)?.audit_entries()?;
    let outcomes: Vec<&Value> = audit
        .iter()
        .filter(|a| a.action == "fence.returning_primary.outcome")
        .map(|a| &a.detail)
        .collect();
    assert!(outcomes.len() >= 2, "{outcomes:#?}");
    assert!(
        outcomes[0]["result"].as_str().unwrap().starts_with("Err"),
        "{outcomes:#?}"
    );
    assert!(
        outcomes.last().unwrap()["result"]
            .as_str()
            .unwrap()
            .starts_with("Ok")
    );
    let attempts = audit
        .iter()
        .filter(|a| a.action == "fence.returning_primary")
        .count();
    assert_eq!(attempts, outcomes.len(), "every attempt audited");
    restart(&mut w, &[], false)?;
    scenario::finish(w, ALLOWED)
}

#[test]
fn after_a_manual_failover_the_trigger_stays_quiet_and_the_returning_primary_is_fenced_at_once()
-> Result<()> {
    let mut w = start_with(
        |topo, text| {
            // The shipped trigger waits 30 s; 3 s keeps the test short, same sequence.
            let rb = topo
                .base_dir()
                .join("runbooks")
                .join(format!("{FAILOVER}.toml"));
            let t = std::fs::read_to_string(&rb)?;
            std::fs::write(&rb, t.replace("for = \"30s\"", "for = \"3s\""))?;
            Ok(text)
        },
        &[],
    )?;
    scenario::kill_primary_after_writes(&w, 100)?;
    let id = scenario::propose_and_approve(&w, FAILOVER)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["succeeded", "needs_operator", "failed"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let count = |w: &World| -> Result<usize> {
        Ok(w.niledr
            .get("/api/v1/executions")?
            .1
            .as_array()
            .context("list")?
            .len())
    };
    // Well past the trigger's 3 s, and again after a restart: still only the manual one.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        count(&w)?,
        1,
        "the trigger opened a proposal for a handled outage"
    );
    stop(&mut w)?;
    restart(&mut w, &[], false)?;
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(count(&w)?, 1, "a proposal after the restart");
    // Khartoum returns. Applications on the production path (the service name at the
    // authoritative DNS) write to Port Sudan; a client that still has Khartoum's address
    // writes there directly until the re-fence lands, and never after it.
    let k = w.topo.postgres_primary();
    let port_sudan = w.topo.layout().ip(Site::PortSudan);
    let restarted = Instant::now();
    k.restart()?;
    let (mut before_fence, mut after_fence, mut fenced_at) = (0, 0, None);
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let resolved = w
            .topo
            .dig_a(&format!("db.{ZONE}"), w.topo.dns_servers()[0])?;
        assert_eq!(
            resolved,
            vec![port_sudan],
            "the service name points at Port Sudan"
        );
        w.topo.postgres_standby().psql_app(
            "CREATE TABLE IF NOT EXISTS via_name(x int); INSERT INTO via_name VALUES (1)",
        )?;
        // The fence is seen before the write is tried, so a write counts as "after the fence"
        // only if the fence (login taken first, then read-only) was complete when it began.
        if fenced_at.is_none()
            && k.psql("SHOW default_transaction_read_only")
                .is_ok_and(|v| v == "on")
        {
            fenced_at = Some(restarted.elapsed());
        }
        let fenced_before_write = fenced_at.is_some();
        let ok = k
            .psql_app("CREATE TABLE IF NOT EXISTS returned(x int); INSERT INTO returned VALUES (1)")
            .is_ok();
        if ok {
            if fenced_before_write {
                after_fence += 1;
            } else {
                before_fence += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let fenced_at = fenced_at.context("khartoum was never fenced again")?;
    println!(
        "RETURNING PRIMARY fenced {:.0} ms after its restart began; direct writes accepted before the fence: {before_fence}, after: {after_fence}",
        fenced_at.as_secs_f64() * 1000.0
    );
    assert_eq!(after_fence, 0, "writes accepted after the re-fence");
    assert_eq!(
        k.psql("SELECT count(*) FROM pg_class WHERE relname = 'via_name'")?,
        "0",
        "no production-path write reached Khartoum"
    );
    assert_eq!(k.psql("SHOW default_transaction_read_only")?, "on");
    scenario::finish(w, ALLOWED)
}

#[test]
fn a_journal_field_that_does_not_decode_refuses_the_execution_and_names_it() -> Result<()> {
    let mut w = scenario::start()?;
    let ex = scenario::propose(&w.niledr, FAILOVER, &w.people.operator)?;
    let id = ex["id"].as_str().unwrap().to_string();
    let digest = ex["plan_digest"].as_str().unwrap().to_string();
    let (status, _) = scenario::approve(&w.niledr, &id, &w.people.ic, &digest)?;
    assert_eq!(status, 200);
    let store = store_path(&w);
    stop(&mut w)?;
    {
        let s = Store::open(&store)?;
        let mut rec = s.execution(&id)?.context("the execution")?;
        rec.preconditions = serde_json::json!({ "services": "not a snapshot" });
        s.save_execution(&rec, vec![])?;
    }
    restart(&mut w, &[], false)?;
    let got = w.niledr.get(&format!("/api/v1/executions/{id}"))?.1;
    assert_eq!(got["state"], "failed", "{got:#}");
    let why = got["needs_operator"].as_str().unwrap_or_default();
    assert!(why.contains("field preconditions"), "{got:#}");
    assert_eq!(
        got["approvals"].as_array().map(Vec::len),
        Some(0),
        "approvals voided"
    );
    // Approving it now is refused: it is over.
    let (status, body) = scenario::approve(&w.niledr, &id, &w.people.lead, &digest)?;
    assert_eq!(status, 409, "{body:#}");
    assert!(w.topo.postgres_standby().is_in_recovery()?);
    assert_eq!(
        w.topo
            .postgres_primary()
            .psql("SHOW default_transaction_read_only")?,
        "off"
    );
    scenario::finish(w, ALLOWED)
}

#[test]
fn a_stop_during_a_step_lets_it_finish_and_the_restart_continues() -> Result<()> {
    let mut w = start_with(
        |_, t| Ok(t),
        &[
            ("NILEDR_FAILPOINTS", "delay:swap-app-env"),
            ("NILEDR_FAILPOINT_DELAY_MS", "3000"),
        ],
    )?;
    let id = scenario::fail_over_until_step_runs(&w, FAILOVER, "swap-app-env")?;
    // SIGTERM while the step is in flight: shutdown waits for it and journals its outcome,
    // and starts nothing new.
    stop(&mut w)?;
    restart(&mut w, &[], false)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["succeeded", "needs_operator", "failed"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let swap = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "swap-app-env")
        .unwrap();
    assert_eq!(
        swap["attempts"], 1,
        "finished before the stop, not re-run: {swap:#}"
    );
    let timeline = done["timeline"].to_string();
    assert!(
        timeline.contains("not started before the stop"),
        "{timeline}"
    );
    scenario::finish(w, ALLOWED)
}
