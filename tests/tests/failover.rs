//! End-to-end runbooks: the real `niledr` binary executes the shipped runbooks against a real
//! topology (PostgreSQL primary + standby, Redis, Knot DNS with TSIG, PgBouncer, nginx) with
//! real people's tokens and two-person approval.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use niledr_tests::daemon::Niledr;
use niledr_tests::scenario::{self, World, start, start_with};
use niledr_tests::{Site, ZONE};
use serde_json::json;

const FAILOVER: &str = "failover-khartoum-to-port-sudan";

/// ERROR lines these tests may cause on purpose (a rollback that leaves irreversible steps).
const ALLOWED_ERRORS: &[&str] = &["NEEDS AN OPERATOR"];

fn approve(w: &World, id: &str, token: &str, digest: &str) -> Result<(u16, serde_json::Value)> {
    scenario::approve(&w.niledr, id, token, digest)
}

fn propose(w: &World, runbook: &str, token: &str) -> Result<serde_json::Value> {
    scenario::propose(&w.niledr, runbook, token)
}

fn finish(w: World) -> Result<()> {
    scenario::finish(w, ALLOWED_ERRORS)
}

fn answers(w: &World, name: &str) -> Vec<Vec<std::net::Ipv4Addr>> {
    scenario::answers(w, name).unwrap()
}

#[test]
fn unplanned_failover_with_two_approvals_moves_everything_to_port_sudan() -> Result<()> {
    let w = start()?;
    let port_sudan = w.topo.layout().ip(Site::PortSudan);
    scenario::kill_primary_after_writes(&w, 1000)?;

    // The dry run names the targets and the digest the approvers will sign.
    let (status, plan) = w.niledr.get(&format!("/api/v1/runbooks/{FAILOVER}/plan"))?;
    assert_eq!(status, 200, "{plan:#}");
    let digest = plan["digest"].as_str().unwrap().to_string();

    let ex = propose(&w, FAILOVER, &w.people.operator)?;
    let id = ex["id"].as_str().unwrap().to_string();
    assert_eq!(ex["plan_digest"], digest.as_str());
    let (status, body) = approve(&w, &id, &w.people.ic, &digest)?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        body["state"], "awaiting_approval",
        "one approval is not enough: {body:#}"
    );
    let (status, body) = approve(&w, &id, &w.people.lead, &digest)?;
    assert_eq!(status, 200, "{body:#}");

    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(90),
        &["succeeded", "failed", "rolled_back"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    for step in done["steps"].as_array().unwrap() {
        assert_eq!(step["state"], "succeeded", "{step:#}");
        assert!(
            step["duration_ms"].as_f64().is_some(),
            "per-step timing: {step:#}"
        );
    }
    // The dead primary could not be fenced: the standby's own view was the evidence.
    let fence = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "fence-khartoum-pg")
        .unwrap();
    let detail = fence["detail"].as_str().unwrap();
    assert!(
        detail.contains("unreachable") && detail.contains("evidence it is gone"),
        "{detail}"
    );
    println!("FAILOVER steps:");
    for step in done["steps"].as_array().unwrap() {
        println!(
            "  {:<26} {:>9.1} ms  {}",
            step["id"].as_str().unwrap(),
            step["duration_ms"].as_f64().unwrap(),
            step["detail"]
                .as_str()
                .unwrap()
                .chars()
                .take(100)
                .collect::<String>()
        );
    }

    // The world, checked directly (not through niledr).
    let standby = w.topo.postgres_standby();
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()")?.trim(), "f");
    assert_eq!(
        standby
            .psql("SELECT count(*) >= 1000 FROM niledr_harness")?
            .trim(),
        "t",
        "no acknowledged rows lost"
    );
    assert_eq!(
        w.topo
            .redis_replica()
            .info_field("replication", "role")?
            .as_deref(),
        Some("master")
    );
    let env = std::fs::read_to_string(w.topo.base_dir().join("app/database.env"))?;
    assert!(env.contains(&format!("@{}:", port_sudan)), "{env}");
    let shown = w.topo.pgbouncer().admin("SHOW DATABASES")?;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("nilecare|") && l.contains(&port_sudan.to_string())),
        "{shown}"
    );
    for name in ["db", "cache", "api"] {
        for a in answers(&w, &format!("{name}.{ZONE}")) {
            assert_eq!(a, vec![port_sudan], "{name} on every authoritative server");
        }
    }
    // A write through the service name: resolve at the authoritative server, connect, commit.
    let resolved = w
        .topo
        .dig_a(&format!("db.{ZONE}"), w.topo.dns_servers()[0])?;
    let via_name = std::net::SocketAddr::new(
        resolved[0].into(),
        w.topo.layout().postgres(Site::PortSudan)?.port(),
    );
    assert_eq!(via_name, standby.address());
    standby.psql(
        "CREATE TABLE IF NOT EXISTS after_failover(x int); INSERT INTO after_failover VALUES (1)",
    )?;
    // The old primary comes back (it was down when the fence ran): niledr fences it at once, so
    // it is never given writes again without a failback plan.
    w.topo.postgres_primary().restart()?;
    niledr_tests::wait_until(std::time::Instant::now() + Duration::from_secs(20), || {
        Ok(w.topo
            .postgres_primary()
            .psql("SHOW default_transaction_read_only")
            .is_ok_and(|v| v.trim() == "on"))
    })?;
    assert!(
        w.topo
            .postgres_primary()
            .psql("CREATE TABLE split_brain(x int)")
            .is_err(),
        "the returning old primary refuses writes"
    );
    let log = std::fs::read_to_string(&w.niledr.log)?;
    assert!(log.contains("making it read-only"), "announced");
    finish(w)
}

#[test]
fn approval_rules_are_enforced() -> Result<()> {
    let w = start()?;
    let p = &w.people;
    // A viewer cannot propose; no token is a 401.
    let (status, body) = w.niledr.post(
        "/api/v1/executions",
        Some(&p.viewer),
        &json!({"runbook": FAILOVER, "reason": "x"}),
    )?;
    assert_eq!(status, 403, "{body:#}");
    assert!(
        body["error"].as_str().unwrap().contains("viewer"),
        "{body:#}"
    );
    let (status, _) = w.niledr.post(
        "/api/v1/executions",
        None,
        &json!({"runbook": FAILOVER, "reason": "x"}),
    )?;
    assert_eq!(status, 401);

    // The requester (an approver herself) cannot approve her own request.
    let events = w.niledr.watch_events()?;
    let ex = propose(&w, "dns-revert-to-khartoum", &p.ic)?;
    let id = ex["id"].as_str().unwrap().to_string();
    // Every transition is announced on the event stream.
    let ev = events.wait_for(Duration::from_secs(5), |e| {
        e["scope"] == "execution" && e["id"] == id.as_str()
    })?;
    assert_eq!(ev["to"], "awaiting_approval", "{ev:#}");
    let digest = ex["plan_digest"].as_str().unwrap().to_string();
    let (status, body) = approve(&w, &id, &p.ic, &digest)?;
    assert_eq!(status, 403, "{body:#}");
    assert!(
        body["error"].as_str().unwrap().contains("requester"),
        "{body:#}"
    );
    // One execution per service: a second proposal touching the same names is refused.
    let (status, body) = w.niledr.post(
        "/api/v1/executions",
        Some(&p.operator),
        &json!({"runbook": "dns-revert-to-khartoum", "reason": "again"}),
    )?;
    assert_eq!(status, 409, "{body:#}");
    assert!(
        body["error"].as_str().unwrap().contains("locked"),
        "{body:#}"
    );
    // Rejection ends it.
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id}/approvals"),
        Some(&p.lead),
        &json!({"decision": "reject", "comment": "not now", "plan_digest": digest}),
    )?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["state"], "rejected", "{body:#}");

    // Same person twice → 409; a second engineering lead when that role is covered → 403.
    let ex = propose(&w, FAILOVER, &p.operator)?;
    let id = ex["id"].as_str().unwrap().to_string();
    let d1 = ex["plan_digest"].as_str().unwrap().to_string();
    assert_eq!(approve(&w, &id, &p.lead, &d1)?.0, 200);
    let (status, body) = approve(&w, &id, &p.lead, &d1)?;
    assert_eq!(status, 409, "{body:#}");
    let (status, body) = approve(&w, &id, &p.lead2, &d1)?;
    assert_eq!(status, 403, "{body:#}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("incident_commander"),
        "says which role is missing: {body:#}"
    );

    // The runbook changes after the first approval: the old approval is void.
    let file = w.runbooks.join(format!("{FAILOVER}.toml"));
    let text = std::fs::read_to_string(&file)?;
    std::fs::write(
        &file,
        text.replacen("timeout = \"15s\"", "timeout = \"20s\"", 1),
    )?;
    let (status, body) = approve(&w, &id, &p.ic, &d1)?;
    assert_eq!(status, 409, "approving the old plan: {body:#}");
    assert!(body["error"].as_str().unwrap().contains("plan"), "{body:#}");
    let (_, now) = w.niledr.get(&format!("/api/v1/executions/{id}"))?;
    let d2 = now["plan_digest"].as_str().unwrap().to_string();
    assert_ne!(d1, d2);
    let (status, body) = approve(&w, &id, &p.ic, &d2)?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        body["state"], "awaiting_approval",
        "the lead's approval of the old plan no longer counts: {body:#}"
    );
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id}/cancel"),
        Some(&p.operator),
        &json!({"comment": "test over"}),
    )?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["state"], "cancelled", "{body:#}");

    // Expiry: a copy of a runbook whose approval window is one second.
    let quick = std::fs::read_to_string(w.runbooks.join("dns-revert-to-khartoum.toml"))?
        .replacen(
            "name = \"dns-revert-to-khartoum\"",
            "name = \"dns-revert-quick\"",
            1,
        )
        .replacen("expires_after = \"30m\"", "expires_after = \"1s\"", 1);
    assert!(
        quick.contains("dns-revert-quick") && quick.contains("\"1s\""),
        "{quick}"
    );
    std::fs::write(w.runbooks.join("dns-revert-quick.toml"), quick)?;
    // Runbooks are loaded at start: restart to pick up the new file.
    let World {
        niledr,
        agent,
        topo,
        people,
        runbooks,
    } = w;
    let (config, listen, log) = (niledr.config.clone(), niledr.listen, niledr.log.clone());
    niledr.stop()?;
    let niledr = Niledr::start(&config, listen, &log)?;
    let w = World {
        niledr,
        agent,
        topo,
        people,
        runbooks,
    };
    let ex = propose(&w, "dns-revert-quick", &w.people.operator)?;
    let id = ex["id"].as_str().unwrap().to_string();
    let done = w
        .niledr
        .wait_execution(&id, Duration::from_secs(10), &["expired"])?;
    assert!(
        done["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["event"] == "expired"),
        "{done:#}"
    );
    finish(w)
}

#[test]
fn a_wrong_tsig_key_stops_the_failover_before_the_fence() -> Result<()> {
    let w = start_with(
        |topo, text| {
            let wrong = topo.base_dir().join("wrong.tsig");
            std::fs::write(
                &wrong,
                "key \"niledr-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZ3dyb25nMTI=\";\n};\n",
            )?;
            let right = topo.tsig_key_file().display().to_string();
            Ok(text.replace(&right, &wrong.display().to_string()))
        },
        &[],
    )?;
    let khartoum = w.topo.layout().ip(Site::Khartoum);
    let env_before = std::fs::read_to_string(w.topo.base_dir().join("app/database.env"))?;
    // The dry run already says so, naming the cause on every DNS step.
    let (status, plan) = w.niledr.get(&format!("/api/v1/runbooks/{FAILOVER}/plan"))?;
    assert_eq!(status, 200, "{plan:#}");
    assert_eq!(plan["ready"], false);
    let not_ready: Vec<&serde_json::Value> = plan["readiness"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ready"] == false)
        .collect();
    assert!(!not_ready.is_empty());
    for r in &not_ready {
        assert!(
            r["why"]
                .as_str()
                .unwrap()
                .contains("TSIG authentication failed"),
            "{r:#}"
        );
    }
    let ex = propose(&w, FAILOVER, &w.people.operator)?;
    let id = ex["id"].as_str().unwrap().to_string();
    let digest = ex["plan_digest"].as_str().unwrap().to_string();
    assert_eq!(approve(&w, &id, &w.people.ic, &digest)?.0, 200);
    assert_eq!(approve(&w, &id, &w.people.lead, &digest)?.0, 200);
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["rolled_back", "failed", "succeeded", "needs_operator"],
    )?;
    assert_eq!(done["state"], "failed", "{done:#}");
    let timeline = done["timeline"].to_string();
    assert!(
        timeline.contains("NOT READY cutover-db")
            && timeline.contains("TSIG authentication failed"),
        "{timeline}"
    );
    for step in done["steps"].as_array().unwrap() {
        assert_eq!(step["state"], "pending", "nothing ran: {step:#}");
    }
    // Untouched, read directly: connection strings, DNS, Khartoum writable, nothing promoted.
    assert_eq!(
        std::fs::read_to_string(w.topo.base_dir().join("app/database.env"))?,
        env_before
    );
    let shown = w.topo.pgbouncer().admin("SHOW DATABASES")?;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("nilecare|") && l.contains(&khartoum.to_string())),
        "{shown}"
    );
    for a in answers(&w, &format!("db.{ZONE}")) {
        assert_eq!(a, vec![khartoum]);
    }
    let k = w.topo.postgres_primary();
    assert_eq!(k.psql("SHOW default_transaction_read_only")?, "off");
    k.psql_app(
        "CREATE TABLE IF NOT EXISTS never_fenced(x int); INSERT INTO never_fenced VALUES (1)",
    )?;
    assert!(w.topo.postgres_standby().is_in_recovery()?);
    finish(w)
}

#[test]
fn drifted_preconditions_void_the_approvals() -> Result<()> {
    let w = start()?;
    let ex = propose(
        &w,
        "redis-failover-khartoum-to-port-sudan",
        &w.people.operator,
    )?;
    let id = ex["id"].as_str().unwrap().to_string();
    let digest = ex["plan_digest"].as_str().unwrap().to_string();
    assert_eq!(approve(&w, &id, &w.people.ic, &digest)?.0, 200);
    // The world moves between the approvals: someone repoints cache.nilecare.sd. by hand.
    let port_sudan = w.topo.layout().ip(Site::PortSudan);
    w.topo.knsupdate(&format!(
        "update delete cache.{ZONE} A\nupdate add cache.{ZONE} 60 A {port_sudan}\nsend"
    ))?;
    w.niledr
        .wait_service("dns-cache", Duration::from_secs(15), |s| {
            s["dns"]["matches_expected"] == false
        })?;
    let (status, body) = approve(&w, &id, &w.people.lead, &digest)?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        body["state"], "awaiting_approval",
        "drift sends it back for fresh approval: {body:#}"
    );
    assert!(
        body["timeline"]
            .to_string()
            .contains("preconditions_drifted"),
        "{body:#}"
    );
    assert_eq!(
        body["approvals"].as_array().map(Vec::len),
        Some(0),
        "old approvals void: {body:#}"
    );
    assert_eq!(
        w.topo
            .redis_replica()
            .info_field("replication", "role")?
            .as_deref(),
        Some("slave"),
        "nothing ran"
    );
    finish(w)
}
