//! End-to-end planned switchover and failback: the real `niledr` binary runs the shipped
//! runbooks against a real topology while the world is checked directly (psql, kdig).
//!
//! - Switchover khartoum → port-sudan under a canary writer that commits `(seq, ts)` rows as
//!   fast as it can through the production path (resolve `db.nilecare.sd.` at the
//!   authoritative DNS on every reconnect, connect, commit): every acknowledged seq must be on
//!   the new primary.
//! - Failback port-sudan → khartoum: the test plays the person the runbook's manual steps ask
//!   to re-seed the old primary as a standby (pg_rewind, then a fresh base backup the other
//!   way), and the runbook ends with khartoum primary and port-sudan streaming from it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use niledr_tests::scenario::{self, World};
use niledr_tests::{Postgres, Reseed, Site, Topology, ZONE, wait_until};
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const SWITCHOVER: &str = "switchover-khartoum-to-port-sudan";
const FAILBACK: &str = "failback-port-sudan-to-khartoum";
const CANARY_TABLE: &str = "canary_switchover";
const CANARY_INSERT: &str = "INSERT INTO canary_switchover (seq) VALUES ($1)";

/// ERROR lines these tests may cause on purpose: none.
const ALLOWED_ERRORS: &[&str] = &[];

fn start() -> Result<World> {
    scenario::start()
}

fn finish(w: World) -> Result<()> {
    scenario::finish(w, ALLOWED_ERRORS)
}

/// Propose as the operator, approve as the incident commander and the engineering lead.
/// Returns the execution id and the instant of the second approval.
fn propose_and_approve(w: &World, runbook: &str) -> Result<(String, Instant)> {
    let (status, ex) = w.niledr.post(
        "/api/v1/executions",
        Some(&w.people.operator),
        &json!({ "runbook": runbook, "reason": "end-to-end test: planned move" }),
    )?;
    assert_eq!(status, 201, "{ex:#}");
    assert_eq!(ex["state"], "awaiting_approval", "{ex:#}");
    let id = ex["id"].as_str().unwrap().to_string();
    let digest = ex["plan_digest"].as_str().unwrap().to_string();
    let mut approved = Instant::now();
    for (who, token) in [("ic", &w.people.ic), ("lead", &w.people.lead)] {
        let (status, body) = w.niledr.post(
            &format!("/api/v1/executions/{id}/approvals"),
            Some(token),
            &json!({ "decision": "approve", "comment": "read the plan", "plan_digest": digest }),
        )?;
        approved = Instant::now();
        assert_eq!(status, 200, "approval by {who}: {body:#}");
    }
    Ok((id, approved))
}

const ENDED: &[&str] = &[
    "succeeded",
    "failed",
    "rolled_back",
    "cancelled",
    "rejected",
];

/// Wait until manual step `step` waits for a person (or the execution ends, which fails).
fn wait_for_manual_step(w: &World, id: &str, step: &str, within: Duration) -> Result<()> {
    let v = w
        .niledr
        .wait_json(&format!("/api/v1/executions/{id}"), within, |v| {
            v["state"].as_str().is_some_and(|s| ENDED.contains(&s))
                || v["steps"].as_array().is_some_and(|steps| {
                    steps
                        .iter()
                        .any(|s| s["id"] == step && s["state"] == "waiting_confirmation")
                })
        })?;
    if v["state"].as_str().is_some_and(|s| ENDED.contains(&s)) {
        bail!("execution ended before {step} waited for a person:\n{v:#}");
    }
    Ok(())
}

fn confirm(w: &World, id: &str, step: &str, comment: &str) -> Result<()> {
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id}/confirm"),
        Some(&w.people.operator),
        &json!({ "step": step, "comment": comment }),
    )?;
    assert_eq!(status, 200, "confirming {step}: {body:#}");
    Ok(())
}

fn wait_succeeded(w: &World, id: &str, within: Duration) -> Result<Value> {
    let done = w.niledr.wait_execution(id, within, ENDED)?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    for step in done["steps"].as_array().unwrap() {
        assert_eq!(step["state"], "succeeded", "{step:#}");
    }
    Ok(done)
}

/// Milliseconds between two RFC 3339 timestamps of the execution view.
fn span_ms(from: &Value, to: &Value) -> Option<f64> {
    let a: jiff::Timestamp = from.as_str()?.parse().ok()?;
    let b: jiff::Timestamp = to.as_str()?.parse().ok()?;
    Some(b.duration_since(a).as_secs_f64() * 1000.0)
}

fn print_steps(title: &str, done: &Value) {
    println!("{title} steps (duration = action time; overhead = niledr's journal + scheduling):");
    let mut total = 0.0;
    for step in done["steps"].as_array().unwrap() {
        // A manual step has no action time: show how long it waited for the person.
        let (ms, note) = match step["duration_ms"].as_f64() {
            Some(ms) => (Some(ms), ""),
            None => (
                span_ms(&step["started_at"], &step["ended_at"]),
                " (waited for a person)",
            ),
        };
        total += ms.unwrap_or(0.0);
        println!(
            "  {:<26} {:>9} ms  overhead {:>6} ms  {}{note}",
            step["id"].as_str().unwrap(),
            ms.map_or("-".into(), |m| format!("{m:.1}")),
            step["overhead_ms"]
                .as_f64()
                .map_or("-".into(), |m| format!("{m:.1}")),
            step["detail"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(110)
                .collect::<String>()
        );
    }
    println!("  {:<26} {total:>9.1} ms", "sum");
}

/// Wait until niledr's probes have seen the world settle on `site` (every authoritative
/// server answers it for every service name). Approvals are bound to a snapshot of what the
/// probes saw: proposing while a secondary DNS server still converges would make the
/// approved picture drift by the time the second approval lands.
fn wait_probes_settled(w: &World, site: Site) -> Result<()> {
    let ip = w.topo.layout().ip(site).to_string();
    for name in ["dns-db", "dns-cache", "dns-api"] {
        w.niledr.wait_service(name, Duration::from_secs(20), |s| {
            s["dns"]["servers"].as_array().is_some_and(|servers| {
                !servers.is_empty() && servers.iter().all(|v| v["answers"] == json!([ip.as_str()]))
            })
        })?;
    }
    Ok(())
}

fn answers(w: &World, name: &str) -> Vec<Vec<Ipv4Addr>> {
    w.topo
        .dns_servers()
        .iter()
        .map(|s| w.topo.dig_a(name, *s).unwrap())
        .collect()
}

fn assert_dns_everywhere(w: &World, site: Site) {
    let ip = w.topo.layout().ip(site);
    for name in ["db", "cache", "api"] {
        for a in answers(w, &format!("{name}.{ZONE}")) {
            assert_eq!(a, vec![ip], "{name}.{ZONE} on every authoritative server");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The canary writer

/// One acknowledged commit.
#[derive(Debug, Clone, Copy)]
struct Ack {
    seq: i64,
    at: Instant,
    /// Where `db.nilecare.sd.` pointed when the connection was opened.
    ip: Ipv4Addr,
}

#[derive(Debug, Default)]
struct CanaryReport {
    acks: Vec<Ack>,
    attempts: u64,
    failed: u64,
    connects: u64,
    errors: Vec<String>,
    ran: Duration,
}

impl CanaryReport {
    /// The longest time between two acknowledged writes: (gap, ack before, ack after).
    fn longest_gap(&self) -> Option<(Duration, Ack, Ack)> {
        self.acks
            .windows(2)
            .map(|w| (w[1].at - w[0].at, w[0], w[1]))
            .max_by_key(|g| g.0)
    }
}

struct Canary {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    handle: JoinHandle<CanaryReport>,
}

impl Canary {
    /// Start the writer: it commits one `(seq)` row per statement, as fast as the server
    /// acknowledges, through the service name. After any error it drops the connection and
    /// resolves the name again, so it follows the DNS cutover.
    fn start(topo: &Topology) -> Result<Canary> {
        let kdig = niledr_tests::bins::find("kdig")?;
        let dns = topo.dns_servers()[0];
        let layout = topo.layout().clone();
        let password = topo.postgres_primary().password().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let name = format!("db.{ZONE}");
                // The port of the PostgreSQL at the address the name resolves to.
                let port_at = |ip: Ipv4Addr| {
                    [Site::Khartoum, Site::PortSudan]
                        .into_iter()
                        .find(|s| layout.ip(*s) == ip)
                        .and_then(|s| layout.postgres(s).ok())
                        .map(|a| a.port())
                };
                let mut r = CanaryReport::default();
                let t0 = Instant::now();
                let mut conn: Option<(PgConnection, Ipv4Addr)> = None;
                let mut seq: i64 = 0;
                let note = |r: &mut CanaryReport, e: String| {
                    if r.errors.last() != Some(&e) && r.errors.len() < 50 {
                        r.errors.push(e);
                    }
                };
                while !stop2.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        r.connects += 1;
                        let ip = match niledr_tests::dns::dig_a(&kdig, &name, dns) {
                            Ok(a) if !a.is_empty() => a[0],
                            other => {
                                note(&mut r, format!("resolving {name}: {other:?}"));
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            }
                        };
                        let Some(port) = port_at(ip) else {
                            note(&mut r, format!("{name} → {ip}: no PostgreSQL there"));
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        };
                        let opts = PgConnectOptions::new_without_pgpass()
                            .host(&ip.to_string())
                            .port(port)
                            .username(niledr_tests::postgres::PG_USER)
                            .password(&password)
                            .database("postgres")
                            .application_name("canary");
                        match tokio::time::timeout(
                            Duration::from_secs(2),
                            PgConnection::connect_with(&opts),
                        )
                        .await
                        {
                            Ok(Ok(c)) => conn = Some((c, ip)),
                            other => {
                                let e = match other {
                                    Ok(Err(e)) => e.to_string(),
                                    _ => "timed out".into(),
                                };
                                note(&mut r, format!("connect {ip}:{port}: {e}"));
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            }
                        }
                    }
                    let Some((c, ip)) = conn.as_mut() else {
                        continue;
                    };
                    let ip = *ip;
                    seq += 1;
                    r.attempts += 1;
                    let res = tokio::time::timeout(
                        Duration::from_secs(2),
                        sqlx::query(CANARY_INSERT).bind(seq).execute(&mut *c),
                    )
                    .await;
                    match res {
                        Ok(Ok(_)) => {
                            r.acks.push(Ack {
                                seq,
                                at: Instant::now(),
                                ip,
                            });
                            acked2.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            r.failed += 1;
                            let e = match other {
                                Ok(Err(e)) => e.to_string(),
                                _ => "no answer within 2 s".into(),
                            };
                            note(&mut r, format!("insert on {ip}: {e}"));
                            // Unknown outcome: this seq does not count; reconnect (re-resolve).
                            if let Some((c, _)) = conn.take() {
                                let _ =
                                    tokio::time::timeout(Duration::from_secs(1), c.close()).await;
                            }
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
                if let Some((c, _)) = conn.take() {
                    let _ = c.close().await;
                }
                r.ran = t0.elapsed();
                r
            })
        });
        Ok(Canary {
            stop,
            acked,
            handle,
        })
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    fn stop(self) -> CanaryReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn create_canary_table(primary: &Postgres) -> Result<()> {
    primary
        .psql(&format!(
            "CREATE TABLE {CANARY_TABLE} (seq bigint PRIMARY KEY, \
             ts timestamptz NOT NULL DEFAULT clock_timestamp())"
        ))
        .map(drop)
}

/// Every seq in the canary table of `pg`.
fn seqs_on(pg: &Postgres) -> Result<BTreeSet<i64>> {
    pg.psql(&format!("SELECT seq FROM {CANARY_TABLE} ORDER BY seq"))?
        .lines()
        .map(|l| l.parse::<i64>().with_context(|| format!("seq {l:?}")))
        .collect()
}

// ---------------------------------------------------------------------------------------

#[test]
fn switchover_loses_no_acknowledged_write() -> Result<()> {
    let w = start()?;
    let khartoum = w.topo.postgres(Site::Khartoum).unwrap();
    let port_sudan = w.topo.postgres(Site::PortSudan).unwrap();
    let ps_ip = w.topo.layout().ip(Site::PortSudan);
    create_canary_table(khartoum)?;

    let canary = Canary::start(&w.topo)?;
    wait_until(Instant::now() + Duration::from_secs(20), || {
        Ok(canary.acked() >= 200)
    })
    .context("the canary writer never got going")?;

    let (id, approved) = propose_and_approve(&w, SWITCHOVER)?;
    let done = wait_succeeded(&w, &id, Duration::from_secs(120))?;
    let execution_time = approved.elapsed();
    // Keep writing through the name for a moment: the writer must be on port-sudan now.
    let before = canary.acked();
    wait_until(Instant::now() + Duration::from_secs(20), || {
        Ok(canary.acked() >= before + 200)
    })
    .context("no writes acknowledged after the switchover")?;
    let report = canary.stop();

    // Every acknowledged seq is on the new primary (checked with psql, not through niledr).
    let on_new = seqs_on(port_sudan)?;
    let lost: Vec<i64> = report
        .acks
        .iter()
        .map(|a| a.seq)
        .filter(|s| !on_new.contains(s))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes missing on port-sudan (first: {:?})",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let last = report.acks.last().unwrap();
    assert_eq!(last.ip, ps_ip, "the writer followed the cutover");
    let on_port_sudan = report.acks.iter().filter(|a| a.ip == ps_ip).count();
    assert!(on_port_sudan >= 200, "{on_port_sudan} writes after cutover");

    // Roles and fencing, checked directly.
    assert!(!port_sudan.is_in_recovery()?, "port-sudan is the primary");
    assert!(!port_sudan.is_read_only()?, "port-sudan takes writes");
    assert!(khartoum.is_read_only()?, "khartoum is fenced read-only");
    let refused = khartoum.psql(&format!("INSERT INTO {CANARY_TABLE} (seq) VALUES (-1)"));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("read-only")),
        "a write on fenced khartoum is refused: {refused:?}"
    );
    assert_dns_everywhere(&w, Site::PortSudan);
    assert_eq!(redis_role(&w, Site::PortSudan)?.as_deref(), Some("master"));
    assert_eq!(
        redis_role(&w, Site::Khartoum)?.as_deref(),
        Some("slave"),
        "khartoum Redis follows port-sudan"
    );
    let env = std::fs::read_to_string(w.topo.base_dir().join("app/database.env"))?;
    assert!(env.contains(&format!("@{ps_ip}:")), "{env}");

    // The figures.
    let (gap, a, b) = report.longest_gap().unwrap();
    let secs = report.ran.as_secs_f64();
    println!(
        "SWITCHOVER canary: {} writes acknowledged of {} attempted in {secs:.1} s ({:.0}/s), \
         {} failed (unknown outcome, not counted), {} connections; lost: 0; \
         {on_port_sudan} acknowledged by port-sudan",
        report.acks.len(),
        report.attempts,
        report.acks.len() as f64 / secs,
        report.failed,
        report.connects,
    );
    println!(
        "SWITCHOVER write outage (longest gap between acknowledged writes): {:.1} ms \
         (seq {} on {} → seq {} on {})",
        gap.as_secs_f64() * 1000.0,
        a.seq,
        a.ip,
        b.seq,
        b.ip
    );
    println!(
        "SWITCHOVER second approval → succeeded (seen by polling): {:.0} ms",
        execution_time.as_secs_f64() * 1000.0
    );
    println!("SWITCHOVER writer errors (distinct, in order):");
    for e in report.errors.iter().take(12) {
        println!("  {}", e.chars().take(140).collect::<String>());
    }
    print_steps("SWITCHOVER", &done);
    finish(w)
}

#[test]
fn failback_restores_khartoum_as_primary_with_port_sudan_replicating() -> Result<()> {
    let w = start()?;
    let khartoum = w.topo.postgres(Site::Khartoum).unwrap().clone();
    let port_sudan = w.topo.postgres(Site::PortSudan).unwrap().clone();
    let k_ip = w.topo.layout().ip(Site::Khartoum);
    khartoum.write_rows(1000)?;

    // First the primary role moves to port-sudan (planned, zero loss).
    let (id, _) = propose_and_approve(&w, SWITCHOVER)?;
    let switched = wait_succeeded(&w, &id, Duration::from_secs(120))?;
    print_steps("SWITCHOVER (before failback)", &switched);
    assert!(!port_sudan.is_in_recovery()?);
    // Writes taken by port-sudan while it is primary must come back to khartoum.
    port_sudan.write_rows(500)?;
    assert_eq!(port_sudan.row_count()?, 1500);
    wait_probes_settled(&w, Site::PortSudan)?;
    w.niledr
        .wait_service("port-sudan-postgres", Duration::from_secs(20), |s| {
            s["replication"]["role"] == "primary"
        })?;

    // The failback: a person re-seeds khartoum from port-sudan when the runbook asks.
    let (id, approved) = propose_and_approve(&w, FAILBACK)?;
    wait_for_manual_step(&w, &id, "reseed-khartoum", Duration::from_secs(30))?;
    let r1 = khartoum.reseed_as_standby_of(&port_sudan, Reseed::Rewind)?;
    println!(
        "FAILBACK re-seed khartoum with {:?}: {:.0} ms (clean stop {:.0} ms, copy {:.0} ms, \
         until streaming {:.0} ms)",
        r1.method,
        r1.total.as_secs_f64() * 1000.0,
        r1.stopped.as_secs_f64() * 1000.0,
        r1.copied.as_secs_f64() * 1000.0,
        r1.streaming.as_secs_f64() * 1000.0
    );
    assert!(khartoum.is_in_recovery()?);
    assert_eq!(
        khartoum.streaming_from()?,
        Some(port_sudan.address().to_string())
    );
    // niledr measures the re-seeded khartoum against the server it streams from now, though
    // the config names no upstream for it (it is the configured primary).
    let seen = w
        .niledr
        .wait_service("khartoum-postgres", Duration::from_secs(20), |s| {
            s["replication"]["upstream"] == "port-sudan-postgres"
                && s["replication"]["lag_bytes"].is_u64()
        })
        .context("khartoum's lag is measured against port-sudan")?;
    assert_eq!(seen["replication"]["role"], "standby", "{seen:#}");
    // So is khartoum's Redis, which the runbook made a replica of port-sudan's.
    w.niledr
        .wait_service("khartoum-redis", Duration::from_secs(20), |s| {
            s["replication"]["upstream"] == "port-sudan-redis"
                && s["replication"]["lag_bytes"].is_u64()
        })
        .context("khartoum-redis's lag is measured against port-sudan-redis")?;
    confirm(
        &w,
        &id,
        "reseed-khartoum",
        "pg_rewind from port-sudan; streaming",
    )?;

    // The runbook switches back, then asks for port-sudan to be re-seeded from khartoum.
    wait_for_manual_step(&w, &id, "reseed-port-sudan", Duration::from_secs(120))?;
    assert!(!khartoum.is_in_recovery()?, "khartoum promoted");
    assert!(port_sudan.is_read_only()?, "port-sudan fenced");
    assert_dns_everywhere(&w, Site::Khartoum);
    khartoum.write_rows(250)?;
    let r2 = port_sudan.reseed_as_standby_of(&khartoum, Reseed::BaseBackup)?;
    println!(
        "FAILBACK re-seed port-sudan with {:?}: {:.0} ms (clean stop {:.0} ms, copy {:.0} ms, \
         until streaming {:.0} ms)",
        r2.method,
        r2.total.as_secs_f64() * 1000.0,
        r2.stopped.as_secs_f64() * 1000.0,
        r2.copied.as_secs_f64() * 1000.0,
        r2.streaming.as_secs_f64() * 1000.0
    );
    confirm(
        &w,
        &id,
        "reseed-port-sudan",
        "fresh pg_basebackup from khartoum; streaming",
    )?;
    let done = wait_succeeded(&w, &id, Duration::from_secs(120))?;
    let total = approved.elapsed();

    // The world, checked directly.
    assert!(!khartoum.is_in_recovery()?, "khartoum is the primary");
    assert!(!khartoum.is_read_only()?, "khartoum takes writes");
    assert!(port_sudan.is_in_recovery()?, "port-sudan is a standby");
    assert_eq!(
        khartoum.streaming_replicas()?,
        vec![port_sudan.application_name()],
        "pg_stat_replication on khartoum shows port-sudan streaming"
    );
    assert_eq!(
        port_sudan.streaming_from()?,
        Some(khartoum.address().to_string())
    );
    // Rows from before the switchover, from port-sudan's time as primary, and after.
    assert_eq!(
        khartoum.row_count()?,
        1750,
        "no row lost in either direction"
    );
    // A new write on khartoum reaches port-sudan.
    khartoum.write_rows(1)?;
    wait_until(Instant::now() + Duration::from_secs(20), || {
        Ok(port_sudan.row_count()? == 1751)
    })
    .context("a write on khartoum never reached port-sudan")?;
    assert_dns_everywhere(&w, Site::Khartoum);
    assert_eq!(redis_role(&w, Site::Khartoum)?.as_deref(), Some("master"));
    assert_eq!(redis_role(&w, Site::PortSudan)?.as_deref(), Some("slave"));
    let env = std::fs::read_to_string(w.topo.base_dir().join("app/database.env"))?;
    assert!(env.contains(&format!("@{k_ip}:")), "{env}");
    // A write through the service name lands on khartoum.
    let resolved = w
        .topo
        .dig_a(&format!("db.{ZONE}"), w.topo.dns_servers()[0])?;
    assert_eq!(
        SocketAddr::new(
            resolved[0].into(),
            w.topo.layout().postgres(Site::Khartoum)?.port()
        ),
        khartoum.address()
    );

    println!(
        "FAILBACK second approval → succeeded: {:.0} ms (includes both re-seeds by the test)",
        total.as_secs_f64() * 1000.0
    );
    print_steps("FAILBACK", &done);
    // The live topology followed both executions back: Khartoum holds the primary again and
    // every DNS name is expected (and seen) there.
    let mut t = Value::Null;
    wait_until(Instant::now() + Duration::from_secs(10), || {
        t = w
            .niledr
            .get_json_as("/api/v1/topology", Some(&w.people.viewer))?
            .1;
        Ok(t["dns"]
            .as_array()
            .is_some_and(|d| d.iter().all(|d| d["matches"] == true)))
    })
    .context("the live topology did not settle back at khartoum")?;
    assert_eq!(
        t["postgres_primary"]["service"], "khartoum-postgres",
        "{t:#}"
    );
    assert_eq!(t["redis_master"]["service"], "khartoum-redis", "{t:#}");
    for d in t["dns"].as_array().into_iter().flatten() {
        assert_eq!(d["expect_site"], "khartoum", "{d:#}");
    }
    for s in t["sites"].as_array().into_iter().flatten() {
        assert_eq!(s["current_role"], s["role"], "back as configured: {s:#}");
    }
    finish(w)
}

/// Redis's `role` at a site, as `INFO replication` says (`master` / `slave`).
fn redis_role(w: &World, site: Site) -> Result<Option<String>> {
    w.topo
        .redis(site)
        .context("no redis at that site")?
        .info_field("replication", "role")
}
