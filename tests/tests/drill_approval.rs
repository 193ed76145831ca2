//! A live drill injects its fault only once two people approved the run itself, before the
//! fault, under the drill runbook's role policy (an incident commander and an engineering
//! lead; the requester never counts). Checked against the real servers and the host agent's
//! record of every action niledr asked of it: one operator alone gets a run that awaits
//! approval and injects nothing; two approvals start it; the scheduler skips a due live drill
//! (nobody to ask) and records why. Refusals and decisions are in the audit chain.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use niledr_orchestrator::records::AuditRecordV1;
use niledr_tests::scenario::{self, World};
use serde_json::{Value, json};

const ALLOWED_ERRORS: &[&str] = &[];

fn request_run(w: &World, drill: &str, token: &str) -> Result<(u16, Value)> {
    w.niledr.post(
        &format!("/api/v1/drills/{drill}/runs"),
        Some(token),
        &json!({ "reason": "approval test" }),
    )
}

fn run_of(w: &World, id: &str) -> Result<Value> {
    let (status, run) = w.niledr.get(&format!("/api/v1/drill-runs/{id}"))?;
    assert_eq!(status, 200, "{run:#}");
    Ok(run)
}

/// For `window`, the run keeps awaiting approval and the host agent is asked nothing.
fn nothing_happens(w: &World, id: &str, window: Duration) -> Result<()> {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let run = run_of(w, id)?;
        assert_eq!(run["state"], "awaiting_approval", "{run:#}");
        assert_eq!(w.agent.requested(), Vec::<String>::new(), "{run:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// Both PostgreSQL servers as they were: khartoum the running, writable primary, port-sudan
/// its standby; the cold site never restored.
fn postgres_untouched(w: &World) -> Result<()> {
    let k = w.topo.postgres_primary();
    let p = w.topo.postgres_standby();
    assert!(k.is_running(), "khartoum-postgres is not running");
    assert!(!k.is_in_recovery()?, "khartoum-postgres is not the primary");
    k.write_rows(5).context("khartoum-postgres takes writes")?;
    assert!(p.is_running(), "port-sudan-postgres is not running");
    assert!(p.is_in_recovery()?, "port-sudan-postgres is not a standby");
    assert!(
        w.agent.cold_postgres().is_none(),
        "the cold site was restored"
    );
    Ok(())
}

/// Stop niledr after the usual checks and read its audit chain from the store.
fn finish_reading_audit(w: World) -> Result<Vec<AuditRecordV1>> {
    let store = w.topo.base_dir().join("state").join("niledr.redb");
    let World {
        niledr,
        agent,
        topo,
        ..
    } = w;
    scenario::check_and_stop(niledr, ALLOWED_ERRORS)?;
    let audit = niledr_orchestrator::store::Store::open(&store)?.audit_entries()?;
    drop(agent);
    drop(topo);
    Ok(audit)
}

fn audited(audit: &[AuditRecordV1], actor: &str, action: &str, fragment: &str) -> bool {
    audit
        .iter()
        .any(|a| a.actor == actor && a.action == action && a.detail.to_string().contains(fragment))
}

#[test]
fn a_live_drill_requested_by_one_operator_injects_nothing() -> Result<()> {
    let w = scenario::start()?;
    // The shipped cold-site drill kills both PostgreSQL servers at T0.
    let drill = "cold-site-restore";
    let (status, run) = request_run(&w, drill, &w.people.operator)?;
    println!("REQUESTED: {run:#}");
    assert_eq!(status, 202, "{run:#}");
    assert_eq!(run["state"], "awaiting_approval", "{run:#}");
    let needed = run["approval_needed"].as_str().unwrap_or_default();
    assert!(
        needed.contains("incident_commander") && needed.contains("engineering_lead"),
        "{run:#}"
    );
    let id = run["id"].as_str().context("run id")?.to_string();

    // A second request while one awaits points at the first.
    let (status, body) = request_run(&w, drill, &w.people.operator)?;
    assert_eq!(status, 409, "{body:#}");
    assert!(body["error"].as_str().unwrap().contains(&id), "{body:#}");

    // Who may not approve: the operator (role), a stale digest, a second engineering lead.
    let (status, body) = scenario::decide_drill_run(&w, drill, &id, &w.people.operator, "approve")?;
    assert_eq!(status, 403, "{body:#}");
    let (status, body) = w.niledr.post(
        &format!("/api/v1/drills/{drill}/runs/{id}/approvals"),
        Some(&w.people.lead),
        &json!({ "digest": "sha256:0000" }),
    )?;
    assert_eq!(status, 409, "{body:#}");
    let (status, run) = scenario::decide_drill_run(&w, drill, &id, &w.people.lead, "approve")?;
    assert_eq!(status, 200, "{run:#}");
    assert_eq!(run["state"], "awaiting_approval", "{run:#}");
    assert!(
        run["approval_needed"]
            .as_str()
            .is_some_and(|n| n.contains("incident_commander")),
        "{run:#}"
    );
    let (status, body) = scenario::decide_drill_run(&w, drill, &id, &w.people.lead2, "approve")?;
    assert_eq!(status, 403, "{body:#}");

    // One approval is not two: the run waits, nothing is asked of the host agent.
    nothing_happens(&w, &id, Duration::from_secs(5))?;
    postgres_untouched(&w)?;

    // The requester never counts: the incident commander requests a live run and cannot
    // approve it herself.
    let (status, own) = request_run(&w, "planned-switchover", &w.people.ic)?;
    assert_eq!(status, 202, "{own:#}");
    let own_id = own["id"].as_str().unwrap().to_string();
    let (status, body) =
        scenario::decide_drill_run(&w, "planned-switchover", &own_id, &w.people.ic, "approve")?;
    assert_eq!(status, 403, "{body:#}");
    assert!(
        body["error"].as_str().unwrap().contains("requester"),
        "{body:#}"
    );

    // A rejection ends the run; nothing was injected and it takes no more decisions.
    let (status, run) = scenario::decide_drill_run(&w, drill, &id, &w.people.ic, "reject")?;
    assert_eq!(status, 200, "{run:#}");
    assert_eq!(run["state"], "rejected", "{run:#}");
    let (status, body) = scenario::decide_drill_run(&w, drill, &id, &w.people.ic, "approve")?;
    assert_eq!(status, 409, "{body:#}");
    assert_eq!(w.agent.requested(), Vec::<String>::new());
    postgres_untouched(&w)?;

    let audit = finish_reading_audit(w)?;
    assert!(audited(&audit, "khalid", "drill.requested", &id));
    assert!(audited(&audit, "omar", "drill.run_decision", &id));
    assert!(audited(&audit, "amira", "drill.run_decision", "reject"));
    for (who, what) in [
        ("khalid", "run drill cold-site-restore"),
        ("khalid", &format!("approve drill run {id}")),
        ("omar", &format!("approve drill run {id}")),
        ("salma", &format!("approve drill run {id}")),
        ("amira", &format!("approve drill run {own_id}")),
    ] {
        assert!(
            audited(&audit, who, "request.refused", what),
            "{who}: {what}"
        );
    }
    assert!(!audit.iter().any(|a| a.action == "drill.started"));
    Ok(())
}

#[test]
fn a_live_drill_approved_by_ic_and_lead_before_the_fault_runs() -> Result<()> {
    let w = scenario::start()?;
    let drill = "planned-switchover";
    let (status, run) = request_run(&w, drill, &w.people.operator)?;
    assert_eq!(status, 202, "{run:#}");
    assert_eq!(run["state"], "awaiting_approval", "{run:#}");
    let id = run["id"].as_str().unwrap().to_string();
    let (status, run) = scenario::decide_drill_run(&w, drill, &id, &w.people.ic, "approve")?;
    assert_eq!(status, 200, "{run:#}");
    assert_eq!(run["state"], "awaiting_approval", "{run:#}");
    assert_eq!(w.agent.requested(), Vec::<String>::new());
    let (status, run) = scenario::decide_drill_run(&w, drill, &id, &w.people.lead, "approve")?;
    assert_eq!(status, 200, "{run:#}");
    assert_eq!(run["state"], "running", "{run:#}");

    let run = scenario::wait_run(&w, &id, true)?;
    assert_eq!(run["state"], "finished", "{run:#}");
    assert_eq!(run["verdict"], "met", "{run:#}");
    let events: Vec<&str> = run["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"].as_str().unwrap_or(""))
        .collect();
    let approved = events
        .iter()
        .position(|e| *e == "approved")
        .context("approved note")?;
    let fault = events
        .iter()
        .position(|e| *e == "fault")
        .context("fault note")?;
    assert!(approved < fault, "{events:?}");
    let fault_note = run["notes"][fault]["detail"].as_str().unwrap();
    assert!(
        fault_note.contains("run approved by amira") && fault_note.contains("omar"),
        "{fault_note}"
    );
    let users: Vec<&str> = run["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(users, ["amira", "omar"]);
    // The drill did its work through the host agent only after the approvals (the failback's
    // re-seeds), and the topology is back: khartoum the primary.
    println!("HOST AGENT: {:?}", w.agent.requested());
    assert!(
        w.agent.requested().iter().any(|a| a.starts_with("reseed")),
        "{:?}",
        w.agent.requested()
    );
    assert!(!w.topo.postgres_primary().is_in_recovery()?);
    let audit = finish_reading_audit(w)?;
    assert!(audited(&audit, "khalid", "drill.started", "amira"));
    Ok(())
}

#[test]
fn the_scheduler_skips_a_due_live_drill_and_injects_nothing() -> Result<()> {
    let drill = r#"
name = "every-minute-live"
description = "Scheduler check: a live drill due every minute, which nobody approves."
schedule = "* * * * *"
blackout = []
runbook = "failover-khartoum-to-port-sudan"
approval = "live"

[scenario]
fault = "kill_primary_postgres"
target = "khartoum-postgres"

[objectives]
rto = "4m"
rpo_postgres = "1m"
"#;
    let w = scenario::start_with_drills(&[("every-minute-live.toml", drill.to_string())])?;
    let (_, d) = w.niledr.get("/api/v1/drills/every-minute-live")?;
    assert_eq!(d["upcoming"][0]["due"], true, "{d:#}");
    // The first due slot (within ~61 s): skipped, with why.
    let deadline = Instant::now() + Duration::from_secs(75);
    let runs = loop {
        let (status, v) = w.niledr.get("/api/v1/drill-runs?drill=every-minute-live")?;
        assert_eq!(status, 200, "{v:#}");
        let runs = Value::Array(v.as_array().cloned().unwrap_or_default());
        if runs.as_array().is_some_and(|r| !r.is_empty()) {
            break runs;
        }
        assert!(Instant::now() < deadline, "no slot recorded within 75 s");
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("RECORDED: {runs:#}");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs:#}");
    let skipped = &runs[0];
    assert_eq!(skipped["state"], "skipped", "{skipped:#}");
    assert_eq!(skipped["trigger"], "schedule", "{skipped:#}");
    assert!(
        skipped["error"]
            .as_str()
            .is_some_and(|e| e.contains("only after 2 people approve the run")),
        "{skipped:#}"
    );
    assert_eq!(w.agent.requested(), Vec::<String>::new());
    postgres_untouched(&w)?;
    let audit = finish_reading_audit(w)?;
    assert!(audited(
        &audit,
        niledr_orchestrator::drills::SCHEDULER,
        "drill.skipped",
        "approve the run"
    ));
    Ok(())
}
