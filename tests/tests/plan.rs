//! `niledr plan` and `GET /api/v1/runbooks/{name}/plan` are a dry run that is really dry: the
//! sandbox is byte-for-byte the same after planning every shipped runbook many times (roles,
//! timelines, DNS answers and SOA serials on every authoritative server, connection-string
//! files, PgBouncer, runbook files). And the plan says what approvers need: concrete targets,
//! evaluated guards, before → after, and a digest that is stable and is what `propose` binds.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use niledr_tests::cli_helpers::{CliRun, niledr_cli};
use niledr_tests::scenario::{self, World};
use niledr_tests::{Site, ZONE};
use serde_json::Value;

const FAILOVER: &str = "failover-khartoum-to-port-sudan";

fn start() -> Result<World> {
    scenario::start()
}

/// Files in `dir` (not recursive), name → bytes, so an added `.prev` or temp file shows too.
/// Logs are listed but not compared (our own snapshot's admin logins land in them).
fn dir_bytes(dir: &Path, into: &mut BTreeMap<String, String>, label: &str) -> Result<()> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_file() && !name.ends_with(".log") {
            let bytes = std::fs::read(e.path())?;
            into.insert(
                format!("{label}/{name}"),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
        }
        names.push(name);
    }
    names.sort();
    into.insert(format!("{label}/ (listing)"), names.join("\n"));
    Ok(())
}

fn kdig(server: std::net::SocketAddr, args: &[&str]) -> Result<String> {
    let kdig = niledr_tests::bins::find("kdig")?;
    let out = Command::new(kdig)
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+timeout=2", "+retry=1"])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "kdig {args:?} @{server}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Everything a plan could conceivably touch, as text.
fn snapshot(w: &World) -> Result<BTreeMap<String, String>> {
    let mut s = BTreeMap::new();
    for (label, pg) in [
        ("khartoum", w.topo.postgres_primary()),
        ("port-sudan", w.topo.postgres_standby()),
    ] {
        for (what, sql) in [
            ("in_recovery", "SELECT pg_is_in_recovery()"),
            (
                "timeline",
                "SELECT timeline_id FROM pg_control_checkpoint()",
            ),
            ("read_only", "SHOW default_transaction_read_only"),
            (
                "replication",
                "SELECT coalesce(string_agg(application_name || ':' || state, ',' ORDER BY application_name), '') FROM pg_stat_replication",
            ),
        ] {
            s.insert(
                format!("pg.{label}.{what}"),
                pg.psql(sql)?.trim().to_string(),
            );
        }
    }
    let standby = w.topo.postgres_standby();
    s.insert(
        "pg.port-sudan.replay_paused".into(),
        standby.psql("SELECT pg_is_wal_replay_paused()")?,
    );
    s.insert(
        "pg.port-sudan.receiver".into(),
        standby.psql(
            "SELECT status || ' ' || sender_host || ':' || sender_port FROM pg_stat_wal_receiver",
        )?,
    );
    for (label, r) in [
        ("khartoum", w.topo.redis_primary()),
        ("port-sudan", w.topo.redis_replica()),
    ] {
        for field in ["role", "master_host", "master_port", "connected_slaves"] {
            s.insert(
                format!("redis.{label}.{field}"),
                r.info_field("replication", field)?.unwrap_or_default(),
            );
        }
    }
    for server in w.topo.dns_servers() {
        s.insert(
            format!("dns.{server}.soa"),
            kdig(server, &["+short", "SOA", ZONE])?,
        );
        for name in ["db", "cache", "api"] {
            // +answer keeps the TTL: a dry-run `dns.set_ttl` would show here too.
            s.insert(
                format!("dns.{server}.{name}"),
                kdig(
                    server,
                    &["+noall", "+answer", "A", &format!("{name}.{ZONE}")],
                )?,
            );
        }
    }
    let app = w.topo.base_dir().join("app");
    dir_bytes(&app, &mut s, "app")?;
    let ini = w.topo.pgbouncer().ini_file();
    dir_bytes(ini.parent().unwrap(), &mut s, "pgbouncer")?;
    s.insert(
        "pgbouncer.show_databases".into(),
        w.topo.pgbouncer().admin("SHOW DATABASES")?,
    );
    dir_bytes(&w.runbooks, &mut s, "runbooks")?;
    let (_, executions) = w.niledr.get("/api/v1/executions")?;
    s.insert("niledr.executions".into(), executions.to_string());
    Ok(s)
}

fn cli(w: &World, token: Option<&str>, args: &[&str]) -> Result<CliRun> {
    niledr_cli(&w.niledr.url(), token, args)?.ok()
}

fn plan_api(w: &World, runbook: &str) -> Result<Value> {
    let (status, plan) = w.niledr.get(&format!("/api/v1/runbooks/{runbook}/plan"))?;
    assert_eq!(status, 200, "{plan:#}");
    Ok(plan)
}

#[test]
fn plans_are_really_dry_and_say_what_will_change() -> Result<()> {
    let w = start()?;
    let khartoum = w.topo.layout().ip(Site::Khartoum).to_string();
    let port_sudan = w.topo.layout().ip(Site::PortSudan).to_string();
    let before = snapshot(&w)?;
    assert_eq!(before["pg.khartoum.in_recovery"], "f");
    assert_eq!(before["pg.port-sudan.in_recovery"], "t");
    assert!(before["pgbouncer.show_databases"].contains(&khartoum));
    assert!(before.keys().any(|k| k.ends_with(".soa")));

    // Every shipped runbook, through the CLI (text and JSON) and the API, several times.
    let listed = cli(&w, Some(&w.people.viewer), &["runbooks", "--json"])?.json()?;
    let names: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let files = std::fs::read_dir(&w.runbooks)?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
        })
        .count();
    assert!(
        files >= 8,
        "the shipped runbooks were not all copied: {files}"
    );
    assert_eq!(names.len(), files, "{listed:#}");
    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    for name in &names {
        let text = cli(&w, Some(&w.people.viewer), &["plan", name])?;
        let shown = text
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Digest: "))
            .unwrap_or_else(|| panic!("a digest line: {text}"))
            .to_string();
        assert!(text.stdout.contains("nothing was changed"), "{text}");
        let mut seen = vec![shown];
        seen.push(
            cli(&w, Some(&w.people.viewer), &["plan", name, "--json"])?.json()?["digest"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        for _ in 0..3 {
            seen.push(plan_api(&w, name)?["digest"].as_str().unwrap().to_string());
        }
        assert!(
            seen.iter().all(|d| d == &seen[0] && d.len() == 64),
            "{name}: the digest is stable across calls: {seen:?}"
        );
        digests.insert(name.clone(), seen[0].clone());
    }
    // Digests differ between runbooks (they cover what is done, to what).
    let mut unique: Vec<&String> = digests.values().collect();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{digests:#?}");

    let after = snapshot(&w)?;
    for (k, v) in &before {
        assert_eq!(
            after.get(k),
            Some(v),
            "{k} changed during dry runs (before → after)"
        );
    }
    assert_eq!(before.len(), after.len(), "nothing appeared or vanished");

    // The failover plan: concrete targets, evaluated guards, before → after.
    let plan = plan_api(&w, FAILOVER)?;
    assert_eq!(plan["ready"], true, "{plan:#}");
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 18, "{plan:#}");
    for s in steps {
        let targets = s["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "every step has targets: {s:#}");
        for t in targets {
            let id = t["id"].as_str().unwrap();
            match t["kind"].as_str().unwrap() {
                // Services and sites resolve to the addresses the step will use.
                "service" | "site" => {
                    let a = t["address"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{t:#} in {s:#}"));
                    assert!(a.starts_with("127.0."), "{t:#}");
                }
                // Names are fully qualified, in the zone the TSIG key updates.
                "dns_name" => assert!(id.ends_with(ZONE), "{t:#}"),
                // The platform level's TXT record, in the same zone.
                "dns_txt" => assert_eq!(id, format!("_platform-mode.{ZONE}"), "{t:#}"),
                // Connection-string targets are the configured ones.
                "connstr" => assert!(["app-env", "pgbouncer"].contains(&id), "{t:#}"),
                other => panic!("unexpected target kind {other}: {t:#}"),
            }
        }
        for g in s["guards"].as_array().unwrap() {
            assert!(
                ["pass", "fail", "unknown"].contains(&g["outcome"].as_str().unwrap()),
                "{g:#}"
            );
            assert!(!g["why"].as_str().unwrap().is_empty(), "{g:#}");
        }
        assert!(!s["rollback"].as_str().unwrap().is_empty(), "{s:#}");
    }
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap();
    let lag = &step("check-lag")["guards"][0];
    assert_eq!(lag["outcome"], "pass", "{lag:#}");
    let promote = step("promote-port-sudan-pg");
    assert!(
        promote["guards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["outcome"] == "pass"),
        "{promote:#}"
    );
    let change = |id: &str| -> Value { step(id)["changes"][0].clone() };
    let dns = change("cutover-db");
    assert!(
        dns["before"].as_str().unwrap().contains(&khartoum),
        "{dns:#}"
    );
    assert!(
        dns["after"].as_str().unwrap().contains(&port_sudan),
        "{dns:#}"
    );
    assert!(
        !dns["after"].as_str().unwrap().contains(&khartoum),
        "{dns:#}"
    );
    let pg_port = w.topo.layout().postgres(Site::PortSudan)?.port();
    for id in ["swap-app-env", "swap-pgbouncer"] {
        let c = change(id);
        assert!(c["before"].as_str().unwrap().contains(&khartoum), "{c:#}");
        assert!(
            c["after"]
                .as_str()
                .unwrap()
                .contains(&format!("{port_sudan}:{pg_port}")),
            "{c:#}"
        );
    }
    let app_env = std::fs::read_to_string(w.topo.base_dir().join("app/database.env"))?;
    assert!(
        app_env.contains(change("swap-app-env")["before"].as_str().unwrap().trim()),
        "before is what the file holds now: {app_env:?} vs {:#}",
        change("swap-app-env")
    );
    let role = change("promote-port-sudan-pg");
    assert!(
        role["before"].as_str().unwrap().contains("standby")
            && role["after"].as_str().unwrap().contains("primary"),
        "{role:#}"
    );

    // The same, as a person reads it.
    let text = cli(&w, Some(&w.people.viewer), &["plan", FAILOVER])?.stdout;
    println!("{text}");
    assert!(
        text.contains(&format!("{khartoum} → {port_sudan}")),
        "DNS before → after: {text}"
    );
    assert!(text.contains("guard:   PASS"), "{text}");
    assert!(
        text.contains("target:  service port-sudan-postgres ("),
        "{text}"
    );
    assert!(text.contains("rollback:"), "{text}");
    assert!(
        text.contains(&format!("Digest: {}", digests[FAILOVER])),
        "{text}"
    );

    // `propose` binds exactly the digest the plan showed.
    let proposed = cli(
        &w,
        Some(&w.people.operator),
        &["propose", FAILOVER, "--reason", "plan test", "--json"],
    )?
    .json()?;
    assert_eq!(
        proposed["plan_digest"],
        digests[FAILOVER].as_str(),
        "{proposed:#}"
    );
    let id = proposed["id"].as_str().unwrap();
    let r = cli(&w, Some(&w.people.operator), &["cancel", id])?;
    assert!(r.stdout.contains("cancelled"), "{r}");
    // Still untouched by propose + cancel (only the execution list differs).
    let mut last = snapshot(&w)?;
    last.remove("niledr.executions");
    for (k, v) in &last {
        assert_eq!(before.get(k), Some(v), "{k} changed after propose + cancel");
    }
    let errors = w.niledr.unexpected_errors(&[])?;
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    w.niledr.stop()?;
    Ok(())
}
