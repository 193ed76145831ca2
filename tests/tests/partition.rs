//! Partitions, for real: each site (its PostgreSQL, Redis, etcd member and niledr instance) in
//! its own network namespace, cut apart with drop rules or by taking a site's link down, with
//! an application writer committing through the service name from both sides.
//!
//! 1. Port Sudan cut from Khartoum only: Port Sudan's instance sees Khartoum down, but the
//!    majority of vantage points does not: no proposal, no promotion.
//! 2. Khartoum cut off from both other sites: the majority detects it, proposes, fails over;
//!    Khartoum's instance, unable to renew its lease, makes its primary read-only by itself;
//!    zero acknowledged writes on the old primary after the new primary's first.
//! 3. (after 2) Healed: Khartoum stays fenced (the journal says it was failed over from), and
//!    the failback runbook brings it back.
//! 4. Khartoum cut off only briefly: it fences itself, nobody fails over, and on rejoining the
//!    journal confirms it still holds the primary: the fence is lifted (audited).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use niledr_tests::cluster::{ClusterSpec, ClusterWorld, start_cluster_with};
use niledr_tests::netns::Netns;
use niledr_tests::postgres::Reseed;
use niledr_tests::scenario::approve;
use niledr_tests::writer::{SPLIT_BRAIN_TABLE, SideWriter};
use niledr_tests::{Site, wait_until};
use serde_json::json;

const FAILOVER: &str = "failover-khartoum-to-port-sudan";
const FAILBACK: &str = "failback-port-sudan-to-khartoum";
const TTL: Duration = Duration::from_secs(3);

/// A partitionable cluster whose failover trigger waits 5 s instead of 30 s.
fn world(net: &Netns) -> Result<ClusterWorld> {
    start_cluster_with(ClusterSpec {
        netns: Some(net),
        runbook_edits: vec![
            (
                "failover-khartoum-to-port-sudan.toml",
                "for = \"30s\"",
                "for = \"5s\"",
            ),
            // PgBouncer runs at Khartoum here and is cut off with it (the readiness check
            // refuses the failover otherwise, rightly): applications at Port Sudan follow DNS.
            (
                "failover-khartoum-to-port-sudan.toml",
                "[[steps]]\nid = \"swap-pgbouncer\"\nkind = \"connstr.swap\"\ntarget = \"pgbouncer\"\nto_service = \"port-sudan-postgres\"\n\n",
                "",
            ),
        ],
        ..ClusterSpec::loopback(TTL)
    })
}

/// Writers at Khartoum and Port Sudan, both committing through `db.<zone>`; returns once each
/// has acknowledged writes.
fn writers(w: &ClusterWorld, net: &Netns) -> Result<(SideWriter, SideWriter)> {
    let primary = w.topo.postgres_primary();
    primary.psql(SPLIT_BRAIN_TABLE)?;
    let dns = w.topo.dns_servers()[0];
    let k_ip = net.ip(Site::Khartoum);
    let base = w.topo.base_dir();
    let pw = primary.password();
    let k = SideWriter::start(
        net,
        Site::Khartoum,
        "khartoum",
        dns,
        k_ip,
        pw,
        &base.join("writer-khartoum.log"),
    )?;
    let p = SideWriter::start(
        net,
        Site::PortSudan,
        "port-sudan",
        dns,
        k_ip,
        pw,
        &base.join("writer-port-sudan.log"),
    )?;
    wait_until(Instant::now() + Duration::from_secs(20), || {
        Ok(k.acks()?.len() >= 20 && p.acks()?.len() >= 20)
    })
    .context("the writers never committed")?;
    Ok((k, p))
}

fn executions(n: &niledr_tests::daemon::Niledr) -> Result<Vec<serde_json::Value>> {
    Ok(n.get("/api/v1/executions")?
        .1
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[test]
fn a_cut_between_port_sudan_and_khartoum_alone_opens_no_proposal() -> Result<()> {
    let net = Netns::create()?;
    let w = world(&net)?;
    let (_k, _p) = writers(&w, &net)?;
    net.cut(Site::PortSudan, Site::Khartoum)?;
    let ps = &w.instance("port-sudan-1")?.niledr;
    // The cut is real: Port Sudan's own view loses Khartoum, its standby loses the stream.
    ps.wait_service("khartoum-postgres", Duration::from_secs(20), |s| {
        s["status"] == "down"
    })?;
    // Well past detection (3 probes) and the trigger's 5 s: still nothing.
    std::thread::sleep(Duration::from_secs(15));
    for i in &w.instances {
        assert!(
            executions(&i.niledr)?.is_empty(),
            "{} shows a proposal",
            i.name
        );
        let (_, view) = i.niledr.get("/api/v1/cluster")?;
        assert!(
            view["leader"]["name"].is_string(),
            "a leader is known to {}: {view:#}",
            i.name
        );
    }
    // Port Sudan's "down" is published and seen by Khartoum's instance: outvoted, not lost.
    w.instance("khartoum-1")?.niledr.wait_json(
        "/api/v1/cluster",
        Duration::from_secs(15),
        |k| {
            k["members"].as_array().is_some_and(|m| {
                m.iter().any(|m| {
                    m["name"] == "port-sudan-1"
                        && m["services"]["khartoum-postgres"]["status"] == "down"
                })
            })
        },
    )?;
    assert!(w.topo.postgres_standby().is_in_recovery()?, "no promotion");
    assert!(
        !w.topo.postgres_primary().is_read_only()?,
        "Khartoum still takes writes"
    );
    assert!(
        !std::fs::read_to_string(&w.instance("khartoum-1")?.niledr.log)?.contains("SELF-FENCED"),
        "Khartoum's instance still reaches the majority: it does not fence itself"
    );
    net.heal(Site::PortSudan, Site::Khartoum)?;
    Ok(())
}

#[test]
fn khartoum_cut_off_fails_over_fences_itself_and_stays_fenced_until_the_failback() -> Result<()> {
    let net = Netns::create()?;
    let w = world(&net)?;
    let (mut kw, mut pw) = writers(&w, &net)?;
    let ps = &w.instance("port-sudan-1")?.niledr;

    let cut = Instant::now();
    net.isolate(Site::Khartoum)?;
    let k = w
        .instances
        .iter()
        .position(|i| i.name == "khartoum-1")
        .unwrap();
    w.wait_leader(TTL * 4, Some(k))?;
    let proposal = ps
        .wait_json("/api/v1/executions", Duration::from_secs(60), |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|e| e["runbook"] == FAILOVER))
        })
        .with_context(|| w.dump())?;
    let detected = cut.elapsed();
    let ex = proposal
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["runbook"] == FAILOVER)
        .unwrap()
        .clone();
    assert_eq!(ex["requester"], "niledr-trigger", "{ex:#}");
    let id = ex["id"].as_str().unwrap().to_string();
    let digest = ex["plan_digest"].as_str().unwrap().to_string();
    for token in [&w.people.ic, &w.people.lead] {
        let (status, body) = approve(ps, &id, token, &digest)?;
        assert_eq!(status, 200, "{body:#}");
    }
    let done = ps.wait_execution(
        &id,
        Duration::from_secs(120),
        &["succeeded", "failed", "needs_operator"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let failed_over = cut.elapsed();
    // The new primary takes the Port Sudan writer's inserts through the name.
    let ps_ip = net.ip(Site::PortSudan).to_string();
    wait_until(Instant::now() + Duration::from_secs(30), || {
        Ok(pw.acks()?.iter().any(|a| a.server == ps_ip))
    })
    .context("no write reached the new primary")?;
    std::thread::sleep(Duration::from_secs(2));
    kw.stop();
    pw.stop();

    // Split brain, counted from both databases and both writers' logs.
    let standby = w.topo.postgres_standby();
    let first_new = standby
        .psql(&format!(
            "SELECT min(at) FROM split_brain WHERE server = '{ps_ip}'"
        ))?
        .trim()
        .to_string();
    assert!(!first_new.is_empty(), "the new primary has writes");
    let k_ip = net.ip(Site::Khartoum).to_string();
    let old = w.topo.postgres_primary();
    // Khartoum is cut off: ask its server from inside its namespace, as the superuser.
    let on_old = |sql: &str| -> Result<String> {
        let pg = niledr_tests::bins::pg_bindir()?
            .join("psql")
            .display()
            .to_string();
        let pw = format!("PGPASSWORD={}", old.password());
        let out = net.exec(
            Site::Khartoum,
            "/usr/bin/env",
            &[
                &pw, &pg, "-X", "-At", "-h", &k_ip, "-U", "niledr", "-d", "postgres", "-c", sql,
            ],
        )?;
        Ok(out.stdout.trim().to_string())
    };
    let split = on_old(&format!(
        "SELECT count(*) FROM split_brain WHERE server = '{k_ip}' AND at > '{first_new}'"
    ))?;
    let after_cut_acks = kw.acks()?.iter().filter(|a| a.server == k_ip).count();
    let logged_split = kw
        .acks()?
        .iter()
        .chain(pw.acks()?.iter())
        .filter(|a| a.server == k_ip && a.at.as_str() > first_new.as_str())
        .count();
    println!(
        "PARTITION khartoum isolated: proposal after {:.1} s, failed over after {:.1} s; \
         acknowledged writes on the old primary after the new primary's first: {split} (databases), \
         {logged_split} (writers' logs); Khartoum acks in all: {after_cut_acks}",
        detected.as_secs_f64(),
        failed_over.as_secs_f64()
    );
    assert_eq!(split, "0", "split brain on the old primary");
    assert_eq!(logged_split, 0, "split brain in the writers' logs");

    // Khartoum fenced itself: the application role cannot log in there.
    let klog = std::fs::read_to_string(&w.instances[k].niledr.log)?;
    assert!(
        klog.contains("SELF-FENCED"),
        "Khartoum's instance fenced its primary"
    );
    let refused = on_old("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app'")?;
    assert_eq!(refused, "f", "app lost its login on the old primary");

    // Heal: Khartoum rejoins but stays fenced; the decision is audited.
    net.rejoin(Site::Khartoum)?;
    let kn = &w.instances[k].niledr;
    wait_until(Instant::now() + Duration::from_secs(30), || {
        let audit = w.etcd.get_prefix("/niledr/audit/")?;
        Ok(audit
            .iter()
            .any(|(_, v)| v.contains("cluster.self_fence_kept")))
    })
    .context("the kept self-fence was never audited")?;
    assert!(
        old.psql_app("SELECT 1").is_err(),
        "the app still cannot log in at Khartoum"
    );
    let (_, view) = kn.get("/api/v1/cluster")?;
    assert_eq!(view["is_leader"], false, "{view:#}");

    // The failback brings Khartoum back, through any instance.
    fail_back(&w, kn)?;
    assert!(!old.is_in_recovery()?, "Khartoum is the primary again");
    old.psql_app("SELECT 1")
        .context("the app logs in at Khartoum again")?;
    assert!(standby.is_in_recovery()?, "Port Sudan is a standby again");
    for i in &w.instances {
        let (status, audit) = i.niledr.get("/api/v1/audit/verify")?;
        assert_eq!(status, 200, "{}: {audit:#}", i.name);
    }
    Ok(())
}

/// Propose the failback through `via`, re-seed each side when the runbook asks, confirm.
fn fail_back(w: &ClusterWorld, via: &niledr_tests::daemon::Niledr) -> Result<()> {
    // A trigger may have proposed a second failover while the first ran (its service was cut
    // off too: on a slow machine its window can end first); the person planning the failback
    // cancels what still waits, or its lock refuses the failback.
    let (_, all) = via.get("/api/v1/executions")?;
    for e in all.as_array().into_iter().flatten() {
        if e["state"] == "awaiting_approval" {
            let id = e["id"].as_str().unwrap_or_default();
            let (status, body) = via.post(
                &format!("/api/v1/executions/{id}/cancel"),
                Some(&w.people.operator),
                &serde_json::json!({ "comment": "handled by the failover that ran" }),
            )?;
            assert_eq!(status, 200, "{body:#}");
        }
    }
    let ex = niledr_tests::scenario::propose(via, FAILBACK, &w.people.operator)?;
    let id = ex["id"].as_str().unwrap().to_string();
    let digest = ex["plan_digest"].as_str().unwrap().to_string();
    for token in [&w.people.ic, &w.people.lead] {
        let (status, body) = approve(via, &id, token, &digest)?;
        assert_eq!(status, 200, "{body:#}");
    }
    let (khartoum, port_sudan) = (w.topo.postgres_primary(), w.topo.postgres_standby());
    wait_manual(via, &id, "reseed-khartoum")?;
    khartoum.reseed_as_standby_of(port_sudan, Reseed::Rewind)?;
    confirm(w, via, &id, "reseed-khartoum")?;
    wait_manual(via, &id, "reseed-port-sudan")?;
    port_sudan.reseed_as_standby_of(khartoum, Reseed::BaseBackup)?;
    confirm(w, via, &id, "reseed-port-sudan")?;
    let done = via.wait_execution(
        &id,
        Duration::from_secs(120),
        &["succeeded", "failed", "needs_operator"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    Ok(())
}

fn wait_manual(via: &niledr_tests::daemon::Niledr, id: &str, step: &str) -> Result<()> {
    via.wait_json(
        &format!("/api/v1/executions/{id}"),
        Duration::from_secs(120),
        |v| {
            niledr_tests::scenario::step(v, step)["state"] == "waiting_confirmation"
                || v["state"] == "failed"
        },
    )?;
    Ok(())
}

fn confirm(
    w: &ClusterWorld,
    via: &niledr_tests::daemon::Niledr,
    id: &str,
    step: &str,
) -> Result<()> {
    let (status, body) = via.post(
        &format!("/api/v1/executions/{id}/confirm"),
        Some(&w.people.operator),
        &json!({ "step": step, "comment": "re-seeded by the test harness; streaming" }),
    )?;
    assert_eq!(status, 200, "confirming {step}: {body:#}");
    Ok(())
}

#[test]
fn a_short_cut_fences_khartoum_and_rejoining_lifts_it_when_nothing_failed_over() -> Result<()> {
    let net = Netns::create()?;
    let w = world(&net)?;
    let k = w
        .instances
        .iter()
        .position(|i| i.name == "khartoum-1")
        .unwrap();
    let primary = w.topo.postgres_primary();
    // Cut off for less than detection plus the trigger's 5 s: Khartoum fences itself, but
    // nobody fails over.
    net.isolate(Site::Khartoum)?;
    let log = w.instances[k].niledr.log.clone();
    wait_until(Instant::now() + Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&log)?.contains("SELF-FENCED"))
    })
    .context("Khartoum did not fence itself")?;
    net.rejoin(Site::Khartoum)?;
    // Back in touch, the journal holds no failover from it: the fence is lifted, audited.
    wait_until(Instant::now() + Duration::from_secs(30), || {
        let audit = w.etcd.get_prefix("/niledr/audit/")?;
        Ok(audit
            .iter()
            .any(|(_, v)| v.contains("cluster.self_fence_lifted")))
    })
    .with_context(|| w.dump())?;
    primary
        .psql_app(
            "CREATE TABLE IF NOT EXISTS after_rejoin (id int); INSERT INTO after_rejoin VALUES (1)",
        )
        .context("the application writes at Khartoum again")?;
    assert!(!primary.is_read_only()?);
    assert!(
        w.topo.postgres_standby().is_in_recovery()?,
        "nothing was promoted"
    );
    for i in &w.instances {
        let ex = executions(&i.niledr)?;
        assert!(
            ex.iter()
                .all(|e| e["state"] == "awaiting_approval" || e["state"] == "expired"),
            "{}: nothing ran: {ex:?}",
            i.name
        );
    }
    Ok(())
}
