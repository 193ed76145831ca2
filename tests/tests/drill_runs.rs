//! Drills run by the real `niledr` daemon against a real topology, through its API: the daemon
//! starts its canary, injects the fault through the host agent (the harness), runs the runbook
//! with standing or live approvals (a live drill's run approved by two people before its
//! fault), measures RTO and RPO, fails back, and keeps the report.
//! The test checks the report against the world directly: the markers the report calls lost
//! are absent from the primary, and the rows present match acknowledged − lost.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use niledr_tests::scenario::{self, World};
use niledr_tests::{Postgres, Site, ZONE};
use serde_json::{Value, json};

const ALLOWED_ERRORS: &[&str] = &[];

/// Standing pre-approval of `drill` by the incident commander and the engineering lead.
fn approve_drill(w: &World, drill: &str) -> Result<()> {
    scenario::approve_drill(w, drill)?;
    let (_, d) = w.niledr.get(&format!("/api/v1/drills/{drill}"))?;
    assert_eq!(d["standing_approved"], true, "{d:#}");
    Ok(())
}

/// Start a run as the operator; a live drill's run is approved by the incident commander and
/// the engineering lead first (it awaits them, nothing injected, until then).
fn start_run(w: &World, drill: &str) -> Result<String> {
    let (status, mut run) = w.niledr.post(
        &format!("/api/v1/drills/{drill}/runs"),
        Some(&w.people.operator),
        &json!({ "reason": "end-to-end drill test" }),
    )?;
    assert_eq!(status, 202, "{run:#}");
    let id = run["id"].as_str().context("run id")?.to_string();
    if run["state"] == "awaiting_approval" {
        run = scenario::approve_drill_run(w, drill, &id)?;
    }
    assert_eq!(run["state"], "running", "{run:#}");
    Ok(id)
}

fn print_report(w: &World, id: &str) -> Result<String> {
    let (status, md) = w
        .niledr
        .get_text(&format!("/api/v1/drill-runs/{id}?format=md"))?;
    assert_eq!(status, 200, "{md}");
    println!("{md}");
    Ok(md)
}

fn store_loss<'a>(report: &'a Value, store: &str) -> &'a Value {
    report["rpo"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["store"] == store))
        .unwrap_or(&Value::Null)
}

/// Whichever PostgreSQL takes writes now.
fn primary(w: &World) -> Result<&Postgres> {
    for pg in [w.topo.postgres_primary(), w.topo.postgres_standby()] {
        if !pg.is_in_recovery()? {
            return Ok(pg);
        }
    }
    bail!("no PostgreSQL primary")
}

/// The test's own count against the report: every seq the report calls lost is absent on
/// the primary, and the rows present are acknowledged − lost (plus at most the one write in
/// flight at the fault and the one in flight when the canary stopped: committed, never
/// acknowledged).
fn check_postgres_loss(w: &World, run: &Value) -> Result<u64> {
    let id = run["id"].as_str().unwrap();
    let table = format!("niledr_canary_{}", id.replace('-', "_"));
    let loss = store_loss(&run["report"], "postgres");
    let acked = loss["acknowledged"].as_u64().context("acknowledged")?;
    let lost = loss["lost"].as_u64().context("lost")?;
    assert!(acked > 100, "the canary wrote too little: {loss:#}");
    let pg = primary(w)?;
    let rows: u64 = pg.psql(&format!("SELECT count(*) FROM {table}"))?.parse()?;
    for r in loss["lost_seqs"].as_array().unwrap() {
        let present: u64 = pg
            .psql(&format!(
                "SELECT count(*) FROM {table} WHERE seq BETWEEN {} AND {}",
                r["first"], r["last"]
            ))?
            .parse()?;
        assert_eq!(present, 0, "lost range {r} is on the primary");
    }
    println!("OWN COUNT: rows on the primary {rows}; report: acknowledged {acked}, lost {lost}");
    assert!(
        rows >= acked - lost && rows <= acked - lost + 2,
        "rows {rows} vs acknowledged {acked} − lost {lost}"
    );
    Ok(lost)
}

/// After a drill with failback: khartoum primary, port-sudan streaming from it, names on
/// khartoum.
fn check_normal_topology(w: &World) -> Result<()> {
    let k = w.topo.postgres_primary();
    let p = w.topo.postgres_standby();
    assert!(!k.is_in_recovery()?, "khartoum-postgres is not the primary");
    assert!(p.is_in_recovery()?, "port-sudan-postgres is not a standby");
    // A restarted primary: the standby's WAL receiver retries every few seconds.
    let mut from = None;
    niledr_tests::wait_until(Instant::now() + Duration::from_secs(30), || {
        from = p.streaming_from()?;
        Ok(from.is_some())
    })
    .with_context(|| {
        format!(
            "port-sudan streams from nobody; its log:\n{}",
            p.log_tail(30)
        )
    })?;
    let from = from.unwrap_or_default();
    assert!(
        from.starts_with(&k.address().ip().to_string()),
        "port-sudan streams from {from}"
    );
    let khartoum = w.topo.layout().ip(Site::Khartoum);
    for server in w.topo.dns_servers() {
        assert_eq!(w.topo.dig_a(&format!("db.{ZONE}"), server)?, vec![khartoum]);
    }
    Ok(())
}

fn phases_present(run: &Value) {
    let rto = &run["report"]["rto"];
    assert!(rto["total_ms"].as_u64().is_some_and(|t| t > 0), "{rto:#}");
    let p = &rto["phases"];
    assert!(p["detection_ms"].as_u64().is_some(), "{p:#}");
    assert!(p["decision_ms"].as_u64().is_some(), "{p:#}");
    assert!(p["dns_convergence_ms"].as_u64().is_some(), "{p:#}");
    assert!(!p["execution"].as_array().unwrap().is_empty(), "{p:#}");
}

#[test]
fn kill_drill_with_standing_approval_measures_and_fails_back() -> Result<()> {
    let w = scenario::start()?;
    let drill = "postgres-primary-failure";
    // Without the standing approval the run is refused, and nothing is injected.
    let (status, body) = w.niledr.post(
        &format!("/api/v1/drills/{drill}/runs"),
        Some(&w.people.operator),
        &json!({}),
    )?;
    assert_eq!(status, 409, "{body:#}");
    assert!(w.topo.postgres_primary().is_running());
    approve_drill(&w, drill)?;
    let id = start_run(&w, drill)?;
    let run = scenario::wait_run(&w, &id, false)?;
    let md = print_report(&w, &id)?;
    assert_eq!(run["state"], "finished", "{run:#}");
    phases_present(&run);
    check_postgres_loss(&w, &run)?;
    // Only PostgreSQL failed: Khartoum Redis was alive, fenced (paused until Port Sudan had
    // every byte) and made to follow, so no acknowledged Redis write is lost.
    let redis = store_loss(&run["report"], "redis");
    assert!(redis["acknowledged"].as_u64().unwrap() > 100, "{redis:#}");
    assert_eq!(redis["lost"], 0, "{redis:#}");
    let cleanup = &run["report"]["cleanup"];
    assert_eq!(cleanup["outcome"], "succeeded", "{cleanup:#}");
    check_normal_topology(&w)?;
    assert!(md.contains("RTO"), "{md}");
    let (_, metrics) = w.niledr.get_text("/metrics")?;
    assert!(
        metrics.contains(&format!(
            "niledr_drill_last_rto_seconds{{drill=\"{drill}\"}}"
        )),
        "{metrics}"
    );
    for series in [
        format!("niledr_drill_runs_total{{drill=\"{drill}\",state=\"finished\"}} 1"),
        format!(
            "niledr_drill_last_verdict{{drill=\"{drill}\",verdict=\"{}\"}} 1",
            run["verdict"].as_str().unwrap_or_default()
        ),
    ] {
        assert!(metrics.contains(&series), "{series}:\n{metrics}");
    }
    let (_, drills) = w.niledr.get(&format!("/api/v1/drills/{drill}"))?;
    assert_eq!(drills["last_verdict"], run["verdict"]);
    scenario::finish(w, ALLOWED_ERRORS)
}

#[test]
fn hang_drill_detects_by_timeout() -> Result<()> {
    let w = scenario::start()?;
    let drill = "postgres-primary-hang";
    approve_drill(&w, drill)?;
    let id = start_run(&w, drill)?;
    let run = scenario::wait_run(&w, &id, false)?;
    print_report(&w, &id)?;
    assert_eq!(run["state"], "finished", "{run:#}");
    phases_present(&run);
    check_postgres_loss(&w, &run)?;
    assert_eq!(run["report"]["cleanup"]["outcome"], "succeeded");
    check_normal_topology(&w)?;
    scenario::finish(w, ALLOWED_ERRORS)
}

#[test]
fn planned_switchover_drill_loses_no_acknowledged_write() -> Result<()> {
    let w = scenario::start()?;
    let drill = "planned-switchover";
    let id = start_run(&w, drill)?;
    let run = scenario::wait_run(&w, &id, true)?;
    print_report(&w, &id)?;
    assert_eq!(run["state"], "finished", "{run:#}");
    for store in ["postgres", "redis"] {
        let l = store_loss(&run["report"], store);
        assert_eq!(l["lost"], 0, "{store}: {l:#}");
    }
    assert_eq!(check_postgres_loss(&w, &run)?, 0);
    assert_eq!(run["verdict"], "met", "{run:#}");
    check_normal_topology(&w)?;
    scenario::finish(w, ALLOWED_ERRORS)
}

#[test]
fn lagging_standby_drill_measures_rpo() -> Result<()> {
    let w = scenario::start()?;
    let drill = "lagging-standby-failure";
    approve_drill(&w, drill)?;
    let id = start_run(&w, drill)?;
    let run = scenario::wait_run(&w, &id, false)?;
    print_report(&w, &id)?;
    assert_eq!(run["state"], "finished", "{run:#}");
    let lost = check_postgres_loss(&w, &run)?;
    assert!(
        lost > 0,
        "2 s without WAL receipt must lose acknowledged writes"
    );
    let loss = store_loss(&run["report"], "postgres");
    let rpo_ms = loss["last_lost_at"].as_str().is_some();
    assert!(rpo_ms, "{loss:#}");
    assert!(
        loss["lag_bytes_at_t0"].as_u64().is_some_and(|b| b > 0),
        "{loss:#}"
    );
    // The objective (RPO 1 min) against ~2 s of loss: met, unless something else missed.
    let line = run["report"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["objective"] == "rpo_postgres")
        .cloned()
        .unwrap();
    assert_eq!(line["verdict"], "met", "{line:#}");
    check_normal_topology(&w)?;
    scenario::finish(w, ALLOWED_ERRORS)
}

#[test]
fn cold_site_restore_drill_reports_activation_and_freshness() -> Result<()> {
    let w = scenario::start()?;
    let drill = "cold-site-restore";
    let id = start_run(&w, drill)?;
    let run = scenario::wait_run(&w, &id, true)?;
    print_report(&w, &id)?;
    assert_eq!(run["state"], "finished", "{run:#}");
    let f = &run["report"]["freshness"];
    assert!(f["activation_ms"].as_u64().is_some_and(|t| t > 0), "{f:#}");
    assert!(f["newest_recoverable_seq"].as_u64().is_some(), "{f:#}");
    assert_eq!(run["report"]["cleanup"]["outcome"], "succeeded", "{run:#}");
    let khartoum = w.topo.layout().ip(Site::Khartoum);
    for server in w.topo.dns_servers() {
        assert_eq!(w.topo.dig_a(&format!("db.{ZONE}"), server)?, vec![khartoum]);
    }
    assert!(!w.topo.postgres_primary().is_in_recovery()?);
    // The finished run is dr-cold's last restore test; the roles are back as configured (the
    // live topology follows the revert's commit on the event loop's next tick).
    let mut sites = serde_json::Value::Null;
    niledr_tests::wait_until(Instant::now() + Duration::from_secs(40), || {
        sites = w
            .niledr
            .get_json_as("/api/v1/sites", Some(&w.people.viewer))?
            .1;
        let all = sites.as_array().cloned().unwrap_or_default();
        Ok(all
            .iter()
            .any(|s| s["id"] == "dr-cold" && s["backups"]["restore_drill_run"] == id.as_str())
            && all.iter().all(|s| s["current_role"] == s["role"]))
    })
    .with_context(|| {
        format!("dr-cold's restore test is not run {id}, or the roles are not back: {sites:#}")
    })?;
    for s in sites.as_array().into_iter().flatten() {
        assert_eq!(s["current_role"], s["role"], "{s:#}");
        if s["id"] == "dr-cold" {
            let b = &s["backups"];
            assert_eq!(b["restore_drill"], drill, "{b:#}");
            assert_eq!(b["restore_tested_at"], run["finished_at"], "{b:#}");
        }
    }
    scenario::finish(w, ALLOWED_ERRORS)
}

#[test]
fn abort_bound_stops_the_drill_and_restores_the_primary() -> Result<()> {
    // The run approved before its fault, then live approval of the execution that nobody
    // gives, and an RTO objective of 4 s with abort at 1.5 × it: the drill must cancel its
    // execution at the bound, undo the fault and report aborted.
    let drill = r#"
name = "abort-check"
description = "Kill the primary; nobody approves; the abort bound must stop the drill."
runbook = "failover-khartoum-to-port-sudan"
approval = "live"

[scenario]
fault = "kill_primary_postgres"
target = "khartoum-postgres"

[objectives]
rto = "4s"
rpo_postgres = "1m"

[abort]
rto_factor = 1.5
"#;
    let w = scenario::start_with_drills(&[("abort-check.toml", drill.to_string())])?;
    let id = start_run(&w, "abort-check")?;
    let run = scenario::wait_run(&w, &id, false)?;
    let md = print_report(&w, &id)?;
    assert_eq!(run["state"], "aborted", "{run:#}");
    assert_eq!(run["verdict"], "aborted", "{run:#}");
    assert!(
        run["report"]["aborted"]
            .as_str()
            .is_some_and(|a| a.contains("abort bound")),
        "{run:#}"
    );
    assert!(md.contains("ABORTED"), "{md}");
    let ex = run["execution"]
        .as_str()
        .context("the drill proposed an execution")?;
    let (_, ex) = w.niledr.get(&format!("/api/v1/executions/{ex}"))?;
    assert_eq!(ex["state"], "cancelled", "{ex:#}");
    // The fault was undone: khartoum is the primary again, nothing moved.
    assert!(w.topo.postgres_primary().is_running());
    assert!(!w.topo.postgres_primary().is_in_recovery()?);
    check_normal_topology(&w)?;
    scenario::finish(w, ALLOWED_ERRORS)
}

#[test]
fn scheduler_records_skips_and_missed_runs_after_restart() -> Result<()> {
    // Every minute, no blackout, standing approval never given: each due slot is recorded as
    // skipped with the reason; slots passed while niledr is down are recorded as missed.
    let drill = r#"
name = "every-minute"
description = "Scheduler check: due every minute, never approved."
schedule = "* * * * *"
blackout = []
runbook = "failover-khartoum-to-port-sudan"
approval = "standing"

[scenario]
fault = "kill_primary_postgres"
target = "khartoum-postgres"

[objectives]
rto = "4m"
rpo_postgres = "1m"
"#;
    let mut w = scenario::start_with_drills(&[("every-minute.toml", drill.to_string())])?;
    let (_, d) = w.niledr.get("/api/v1/drills/every-minute")?;
    assert_eq!(d["upcoming"][0]["due"], true, "{d:#}");
    let runs = |w: &World| -> Result<Vec<Value>> {
        let (status, v) = w.niledr.get("/api/v1/drill-runs?drill=every-minute")?;
        assert_eq!(status, 200, "{v:#}");
        Ok(v.as_array().cloned().unwrap_or_default())
    };
    // The first due slot (within ~61 s) cannot start: skipped, with why.
    let deadline = Instant::now() + Duration::from_secs(75);
    let skipped = loop {
        if let Some(r) = runs(&w)?.into_iter().find(|r| r["state"] == "skipped") {
            break r;
        }
        assert!(Instant::now() < deadline, "no slot recorded within 75 s");
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("SKIPPED: {skipped:#}");
    assert!(
        skipped["error"]
            .as_str()
            .is_some_and(|e| e.contains("standing approval")),
        "{skipped:#}"
    );
    assert!(
        w.topo.postgres_primary().is_running(),
        "a skipped slot injects nothing"
    );
    // Down across the next minute boundary.
    let (config, listen, log) = (
        w.niledr.config.clone(),
        w.niledr.listen,
        w.niledr.log.clone(),
    );
    let pid = w.niledr.pid().context("niledr pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    assert!(w.niledr.wait_exit(Duration::from_secs(20))?.success());
    let now = jiff::Zoned::now();
    let to_next_minute = 61 - u64::try_from(now.second()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(to_next_minute + 1));
    w.niledr = niledr_tests::daemon::Niledr::start(&config, listen, &log)?;
    // The scheduler records missed slots as it starts, right after the daemon answers.
    let deadline = Instant::now() + Duration::from_secs(15);
    let missed = loop {
        if let Some(r) = runs(&w)?.into_iter().find(|r| r["state"] == "missed") {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no missed run recorded after the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("MISSED: {missed:#}");
    assert!(
        missed["scheduled_for"]
            .as_str()
            .is_some_and(|s| s.contains("Africa/Khartoum")),
        "{missed:#}"
    );
    assert!(
        w.topo.postgres_primary().is_running(),
        "a missed slot is never run late"
    );
    scenario::finish(w, ALLOWED_ERRORS)
}
