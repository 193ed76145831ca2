//! The live topology against the real servers and the real `niledr`: after a real failover the
//! sites' current roles swap, DNS services expect (and see) the new site, the promoted server
//! is not measured as lagging, and a restart keeps it all; the load-balancer endpoints answer
//! 200/503 as a server is killed; the cold site's backups degrade it past an objective and a
//! freshly archived segment brings it back; maintenance mode keeps a trigger quiet until resumed,
//! audited.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use niledr_orchestrator::records::AuditRecordV1;
use niledr_tests::Site;
use niledr_tests::cli_helpers::niledr_cli;
use niledr_tests::scenario::{self, World};
use serde_json::{Value, json};

const FAILOVER: &str = "failover-khartoum-to-port-sudan";

/// GET as the viewer (reads need a principal).
fn get(w: &World, path: &str) -> Result<(u16, Value)> {
    w.niledr.get_json_as(path, Some(&w.people.viewer))
}

fn wait(
    w: &World,
    path: &str,
    within: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> Result<Value> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (_, v) = get(w, path)?;
        if pred(&v) {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("GET {path}: condition not met within {within:?}; last: {v:#}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn site<'a>(sites: &'a Value, id: &str) -> &'a Value {
    sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

/// Load-balancer endpoints: no token, status code only matters (and a tiny body).
fn lb(w: &World, path: &str) -> Result<(u16, Value)> {
    w.niledr.get_json_as(path, None)
}

fn read_audit(w: World) -> Result<Vec<AuditRecordV1>> {
    let store = w.topo.base_dir().join("state").join("niledr.redb");
    let World {
        niledr,
        agent,
        topo,
        ..
    } = w;
    scenario::check_and_stop(niledr, &[])?;
    let audit = niledr_orchestrator::store::Store::open(&store)?.audit_entries()?;
    drop(agent);
    drop(topo);
    Ok(audit)
}

#[test]
fn after_a_real_failover_the_live_topology_follows_and_survives_a_restart() -> Result<()> {
    let w = scenario::start()?;
    let khartoum = w.topo.layout().ip(Site::Khartoum).to_string();
    let port_sudan = w.topo.layout().ip(Site::PortSudan).to_string();

    // As configured, before anything happens.
    let (status, t) = get(&w, "/api/v1/topology")?;
    assert_eq!(status, 200, "{t:#}");
    assert_eq!(
        t["postgres_primary"]["service"], "khartoum-postgres",
        "{t:#}"
    );
    assert_eq!(t["redis_master"]["service"], "khartoum-redis", "{t:#}");
    let (status, p) = lb(&w, "/api/v1/primary")?;
    assert_eq!((status, &p["site"]), (200, &json!("khartoum")), "{p:#}");
    let (status, _) = lb(&w, "/api/v1/services/khartoum-postgres/health")?;
    assert_eq!(status, 200);
    let (status, body) = lb(&w, "/api/v1/services/no-such-service/health")?;
    assert_eq!(status, 404, "{body:#}");

    // The primary dies: the load balancers hear it at once.
    scenario::kill_primary_after_writes(&w, 500)?;
    let (status, p) = lb(&w, "/api/v1/primary")?;
    assert_eq!(status, 503, "the primary is down: {p:#}");
    assert!(
        p["reason"].as_str().unwrap().contains("khartoum-postgres"),
        "{p:#}"
    );
    let (status, _) = lb(&w, "/api/v1/services/khartoum-postgres/health")?;
    assert_eq!(status, 503);
    let (status, _) = lb(&w, "/api/v1/sites/khartoum/health")?;
    assert_eq!(status, 503);
    let (status, _) = lb(&w, "/api/v1/services/port-sudan-api/health")?;
    assert_eq!(status, 200, "port-sudan's API is fine");
    // Strict: the standby that lost its WAL stream is degraded, not up.
    let (status, s) = lb(&w, "/api/v1/services/port-sudan-postgres/health")?;
    assert_eq!((status, &s["status"]), (503, &json!("degraded")), "{s:#}");

    // A real failover with two approvals.
    let ex = scenario::propose(&w.niledr, FAILOVER, &w.people.operator)?;
    let id = ex["id"].as_str().unwrap().to_string();
    let digest = ex["plan_digest"].as_str().unwrap().to_string();
    for token in [&w.people.ic, &w.people.lead] {
        let (status, body) = scenario::approve(&w.niledr, &id, token, &digest)?;
        assert_eq!(status, 200, "{body:#}");
    }
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(90),
        &["succeeded", "failed", "rolled_back", "needs_operator"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");

    let check = |w: &World, when: &str| -> Result<()> {
        let sites = wait(w, "/api/v1/sites", Duration::from_secs(20), |s| {
            site(s, "port-sudan")["current_role"] == "primary"
        })?;
        let (k, p, c) = (
            site(&sites, "khartoum"),
            site(&sites, "port-sudan"),
            site(&sites, "dr-cold"),
        );
        assert_eq!(
            (&k["role"], &k["current_role"]),
            (&json!("primary"), &json!("hot_standby")),
            "{when}: {k:#}"
        );
        assert_eq!(
            (&p["role"], &p["current_role"]),
            (&json!("hot_standby"), &json!("primary")),
            "{when}: {p:#}"
        );
        assert_eq!(c["current_role"], "cold_standby", "{when}");
        // Every DNS service expects Port Sudan now, sees it, and is up (no MISMATCH).
        let services = wait(w, "/api/v1/services", Duration::from_secs(20), |all| {
            all.as_array()
                .unwrap()
                .iter()
                .filter(|s| s["kind"] == "dns")
                .all(|s| s["status"] == "up")
        })?;
        let dns: Vec<&Value> = services
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "dns")
            .collect();
        assert!(!dns.is_empty());
        for s in &dns {
            assert_eq!(s["dns"]["expected"], json!([port_sudan]), "{when}: {s:#}");
            assert_eq!(s["dns"]["matches_expected"], true, "{when}: {s:#}");
            assert!(
                !s["reason"].as_str().unwrap().contains("MISMATCH"),
                "{when}: {s:#}"
            );
        }
        // The promoted server is a primary: no lag against the old one, no upstream.
        let pg = w
            .niledr
            .wait_service("port-sudan-postgres", Duration::from_secs(10), |s| {
                s["status"] == "up"
            })?;
        assert_eq!(pg["replication"]["role"], "primary", "{when}: {pg:#}");
        assert!(
            pg["replication"]["lag_bytes"].is_null(),
            "{when}: not lagging: {pg:#}"
        );
        assert!(pg["replication"]["upstream"].is_null(), "{when}: {pg:#}");
        assert!(
            pg["replication"]["upstream_error"].is_null(),
            "{when}: {pg:#}"
        );
        // Derived on the next tick (500 ms) from the answers the probes just saw.
        let kv = w.niledr.service("port-sudan-redis")?;
        assert_eq!(kv["replication"]["role"], "master", "{when}: {kv:#}");
        assert!(kv["replication"]["lag_bytes"].is_null(), "{when}: {kv:#}");
        assert!(kv["replication"]["upstream"].is_null(), "{when}: {kv:#}");
        let t = wait(w, "/api/v1/topology", Duration::from_secs(10), |t| {
            t["dns"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["matches"] == true)
        })?;
        assert_eq!(
            t["postgres_primary"]["service"], "port-sudan-postgres",
            "{when}: {t:#}"
        );
        assert_eq!(t["postgres_primary"]["site"], "port-sudan", "{when}: {t:#}");
        assert_eq!(
            t["redis_master"]["service"], "port-sudan-redis",
            "{when}: {t:#}"
        );
        for d in t["dns"].as_array().unwrap() {
            assert_eq!(
                (&d["expect_site"], &d["answer_site"], &d["matches"]),
                (&json!("port-sudan"), &json!("port-sudan"), &json!(true)),
                "{when}: {d:#}"
            );
        }
        let p = wait(w, "/api/v1/primary", Duration::from_secs(10), |p| {
            p["status"] == "up"
        })?;
        assert_eq!(
            (&p["site"], &p["service"]),
            (&json!("port-sudan"), &json!("port-sudan-postgres")),
            "{when}: {p:#}"
        );
        Ok(())
    };
    check(&w, "after the failover")?;
    assert_ne!(khartoum, port_sudan);

    // `niledr status`, like `patronictl list`.
    let r = niledr_cli(&w.niledr.url(), Some(&w.people.viewer), &["status"])?.ok()?;
    println!("niledr status after the failover:\n{}", r.stdout);
    let line = |site: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(site))
            .unwrap_or_default()
            .to_string()
    };
    let ps = line("port-sudan");
    assert!(
        ps.split_whitespace()
            .take(3)
            .eq(["port-sudan", "hot_standby", "primary"]),
        "{r}"
    );
    assert!(
        ps.contains("db."),
        "the DNS names answer at port-sudan: {r}"
    );
    assert!(
        line("khartoum")
            .split_whitespace()
            .take(3)
            .eq(["khartoum", "primary", "hot_standby"]),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("PostgreSQL primary: port-sudan-postgres at port-sudan"),
        "{r}"
    );
    assert!(r.stdout.contains("triggers: active"), "{r}");

    // A restart keeps the live roles: the very first answer already has them.
    let w = scenario::restart(w, &[])?;
    let sites = wait(&w, "/api/v1/sites", Duration::from_secs(30), |s| {
        s.is_array()
    })?;
    assert_eq!(
        site(&sites, "port-sudan")["current_role"],
        "primary",
        "right after the restart: {sites:#}"
    );
    assert_eq!(site(&sites, "khartoum")["current_role"], "hot_standby");
    w.niledr
        .wait_json("/readyz", Duration::from_secs(30), |v| {
            v["status"] == "ready"
        })?;
    check(&w, "after the restart")?;

    let audit = read_audit(w)?;
    assert!(
        audit.iter().any(|a| a.action == "topology.changed"
            && a.detail.to_string().contains("\"port-sudan\":\"primary\"")),
        "the change of roles is audited"
    );
    Ok(())
}

/// `[sites.dr-cold]` with objectives added after `wal_archive = ...`.
fn with_objectives(text: String, lines: &str) -> Result<String> {
    let at = text
        .find("\nwal_archive = ")
        .ok_or_else(|| anyhow::anyhow!("no wal_archive line"))?;
    let end = at + 1 + text[at + 1..].find('\n').unwrap();
    Ok(format!("{}\n{lines}{}", &text[..end], &text[end..]))
}

#[test]
fn the_cold_site_degrades_past_its_objective_and_recovers_with_a_fresh_segment() -> Result<()> {
    let w = scenario::start_with(
        |_, t| {
            with_objectives(
                t,
                "max_base_backup_age = \"1h\"\nmax_wal_archive_age = \"4s\"",
            )
        },
        &[],
    )?;
    // No write, no new segment: the archive's last segment ages past 4 s.
    let sites = wait(&w, "/api/v1/sites", Duration::from_secs(40), |s| {
        site(s, "dr-cold")["status"] == "degraded"
    })?;
    let cold = site(&sites, "dr-cold");
    let reason = cold["reason"].as_str().unwrap();
    assert!(
        reason.contains("max_wal_archive_age"),
        "names the objective: {cold:#}"
    );
    assert!(
        !reason.contains("max_base_backup_age"),
        "the base backup is fresh: {cold:#}"
    );
    let b = &cold["backups"];
    assert_eq!(b["status"], "degraded", "{b:#}");
    assert!(b["wal_archive_age_seconds"].as_u64().unwrap() >= 4, "{b:#}");
    assert_eq!(b["max_wal_archive_age_seconds"], 4);
    assert!(
        b["base_backup_age_seconds"].as_u64().unwrap() < 3600,
        "{b:#}"
    );
    assert!(b["last_wal_segment"].as_str().unwrap().len() >= 24, "{b:#}");
    assert!(
        b["restore_tested_at"].is_null(),
        "no restore drill ran: {b:#}"
    );
    let (status, _) = lb(&w, "/api/v1/sites/dr-cold/health")?;
    assert_eq!(status, 503);

    // Archive a segment now: the cold site's RPO is back within its objective.
    w.topo.postgres_primary().write_rows(10)?;
    w.topo.postgres_primary().psql("SELECT pg_switch_wal()")?;
    let sites = wait(&w, "/api/v1/sites", Duration::from_secs(15), |s| {
        site(s, "dr-cold")["status"] == "up"
    })?;
    let b = &site(&sites, "dr-cold")["backups"];
    assert!(b["wal_archive_age_seconds"].as_u64().unwrap() < 4, "{b:#}");
    let (status, h) = lb(&w, "/api/v1/sites/dr-cold/health")?;
    assert_eq!((status, &h["role"]), (200, &json!("cold_standby")), "{h:#}");

    // Both changes were committed as status changes; the metric is exported.
    let (_, changes) = get(&w, "/api/v1/status-changes?limit=200")?;
    let cold_changes: Vec<&Value> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "dr-cold")
        .collect();
    assert!(
        cold_changes.iter().any(|c| c["to"] == "degraded"),
        "{changes:#}"
    );
    assert!(cold_changes.iter().any(|c| c["to"] == "up"), "{changes:#}");
    let (_, metrics) = w.niledr.get_text("/metrics")?;
    assert!(
        metrics.contains("niledr_cold_backup_age_seconds{"),
        "metric exported"
    );
    scenario::finish(w, &[])
}

#[test]
fn maintenance_mode_keeps_a_trigger_quiet_until_resumed_and_is_audited() -> Result<()> {
    let w = scenario::start()?;
    let file = w.runbooks.join(format!("{FAILOVER}.toml"));
    let text = std::fs::read_to_string(&file)?;
    assert!(text.contains("for = \"30s\""));
    std::fs::write(&file, text.replacen("for = \"30s\"", "for = \"2s\"", 1))?;
    // Who may pause, and what it takes.
    let pause = "/api/v1/triggers/pause";
    let (status, body) = w.niledr.post(
        pause,
        Some(&w.people.viewer),
        &json!({ "reason": "patching" }),
    )?;
    assert_eq!(status, 403, "a viewer cannot pause: {body:#}");
    let (status, body) =
        w.niledr
            .post(pause, Some(&w.people.operator), &json!({ "reason": " " }))?;
    assert_eq!(status, 400, "a reason is required: {body:#}");
    let (status, body) = w.niledr.post(pause, None, &json!({ "reason": "x" }))?;
    assert_eq!(status, 401, "{body:#}");
    let (status, body) = w.niledr.post(
        pause,
        Some(&w.people.operator),
        &json!({ "reason": "patching khartoum" }),
    )?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        (&body["paused"], &body["by"]),
        (&json!(true), &json!("khalid")),
        "{body:#}"
    );
    let (status, body) = w.niledr.post(
        pause,
        Some(&w.people.operator),
        &json!({ "reason": "again" }),
    )?;
    assert_eq!(status, 409, "already paused: {body:#}");
    let (_, t) = get(&w, "/api/v1/triggers")?;
    assert_eq!(
        (&t["paused"], &t["reason"]),
        (&json!(true), &json!("patching khartoum")),
        "{t:#}"
    );
    let r = niledr_cli(&w.niledr.url(), Some(&w.people.viewer), &["status"])?.ok()?;
    assert!(
        r.stdout.contains("MAINTENANCE: triggers paused by khalid"),
        "{r}"
    );
    let (_, metrics) = w.niledr.get_text("/metrics")?;
    assert!(
        metrics.lines().any(|l| l == "niledr_triggers_paused 1"),
        "gauge set"
    );

    // Paused before the restart: it survives it (store meta), and the engine keeps quiet.
    let w = scenario::restart(w, &[])?;
    w.niledr
        .wait_json("/readyz", Duration::from_secs(30), |v| {
            v["status"] == "ready"
        })?;
    let (_, t) = get(&w, "/api/v1/triggers")?;
    assert_eq!(
        (&t["paused"], &t["by"]),
        (&json!(true), &json!("khalid")),
        "after the restart: {t:#}"
    );
    let (_, metrics) = w.niledr.get_text("/metrics")?;
    assert!(
        metrics.lines().any(|l| l == "niledr_triggers_paused 1"),
        "gauge set at start"
    );
    w.niledr
        .wait_service("port-sudan-postgres", Duration::from_secs(20), |s| {
            s["replication"]["lag_bytes"] == 0
        })?;

    // The primary dies and stays down well past the trigger's 2 s: no proposal.
    w.topo.postgres_primary().kill()?;
    w.niledr
        .wait_service("khartoum-postgres", Duration::from_secs(15), |s| {
            s["status"] == "down"
        })?;
    std::thread::sleep(Duration::from_secs(6));
    let (_, all) = get(&w, "/api/v1/executions")?;
    assert!(
        !all.as_array()
            .unwrap()
            .iter()
            .any(|e| e["requester"] == "niledr-trigger"),
        "paused triggers stay quiet: {all:#}"
    );
    // A proposal by hand still works while paused.
    let mine = scenario::propose(&w.niledr, "dns-revert-to-khartoum", &w.people.operator)?;
    assert_eq!(mine["state"], "awaiting_approval");
    let mine = mine["id"].as_str().unwrap().to_string();
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{mine}/cancel"),
        Some(&w.people.operator),
        &json!({}),
    )?;
    assert_eq!(status, 200, "{body:#}");

    // Resumed (through the CLI): the trigger proposes for the outage still going on.
    let r = niledr_cli(
        &w.niledr.url(),
        Some(&w.people.operator),
        &["resume-triggers", "--reason", "patch done"],
    )?
    .ok()?;
    assert!(r.stdout.contains("triggers: active"), "{r}");
    wait(&w, "/api/v1/executions", Duration::from_secs(20), |all| {
        all.as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["requester"] == "niledr-trigger" && e["runbook"] == FAILOVER)
        })
    })?;
    let audit = read_audit(w)?;
    let has = |actor: &str, action: &str, reason: &str| {
        audit
            .iter()
            .any(|a| a.actor == actor && a.action == action && a.detail["reason"] == reason)
    };
    assert!(
        has("khalid", "triggers.paused", "patching khartoum"),
        "pause audited"
    );
    assert!(
        has("khalid", "triggers.resumed", "patch done"),
        "resume audited"
    );
    Ok(())
}
