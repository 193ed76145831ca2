//! The orchestrator's actions against the real topology: PostgreSQL fence/catch-up/promote,
//! Redis role changes, connection-string swaps (file and PgBouncer), DNS cutover with TSIG,
//! and the smoke checks through the service name.

// A failed step should fail the test loudly; the workspace's unwrap lint targets library code.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use niledr_orchestrator::actions::dns::{self, TsigKey};
use niledr_orchestrator::actions::postgres::{self as pg, FenceOutcome, PgTarget};
use niledr_orchestrator::actions::redis::{self as rd, RedisRole, RedisTarget};
use niledr_orchestrator::actions::{checks, connstr, pgbouncer as pgb};
use niledr_tests::{Site, Topology, ZONE, wait_until};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn start() -> Topology {
    let topo = Topology::start_free(None).unwrap();
    eprintln!("topology started in {:?}", topo.started_in());
    topo
}

fn pg_target(topo: &Topology, site: Site) -> PgTarget {
    let a = topo.layout().postgres(site).unwrap();
    PgTarget::new(
        a.ip().to_string(),
        a.port(),
        "niledr",
        topo.postgres_primary().password(),
    )
}

fn redis_target(topo: &Topology, site: Site) -> RedisTarget {
    let a = topo.layout().redis(site).unwrap();
    RedisTarget::new(
        a.ip().to_string(),
        a.port(),
        Some(topo.redis_primary().password().to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fence_catch_up_and_promote_exactly_once() {
    let topo = start();
    let (primary, standby) = (
        pg_target(&topo, Site::Khartoum),
        pg_target(&topo, Site::PortSudan),
    );
    topo.postgres_primary().write_rows(100).unwrap();
    wait_until(soon(), || {
        Ok(topo.postgres_standby().row_count().ok() == Some(100))
    })
    .unwrap();

    // Lag guard: caught up.
    let lag = pg::check_lag(&standby, &primary, 1 << 20, 10.0)
        .await
        .unwrap();
    assert!(lag.within_bounds, "{lag:?}");
    assert_eq!(lag.lag_bytes, Some(0), "{lag:?}");

    // Switchover wait refuses while the primary still takes writes.
    let e = pg::wait_caught_up(&standby, &primary, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("not read-only"), "{e:#}");

    // Fence: an open session is terminated, new writes fail.
    let mut writer = primary.connect().await.unwrap();
    sqlx::raw_sql("SELECT 1")
        .execute(&mut writer)
        .await
        .unwrap();
    let fenced = pg::fence(&primary).await.unwrap();
    eprintln!("fence: {}", fenced.summary());
    match &fenced {
        FenceOutcome::Fenced {
            already_read_only,
            terminated,
            was_in_recovery,
            ..
        } => {
            assert!(!already_read_only);
            assert!(!was_in_recovery);
            assert!(*terminated >= 1, "{fenced:?}");
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert!(
        sqlx::raw_sql("INSERT INTO niledr_harness (payload) VALUES ('x')")
            .execute(&mut writer)
            .await
            .is_err(),
        "the session open before the fence must be gone"
    );
    let e = topo.postgres_primary().write_rows(1).unwrap_err();
    assert!(format!("{e:#}").contains("read-only"), "{e:#}");
    assert!(pg::observe(&primary).await.unwrap().read_only);
    // Idempotent.
    match pg::fence(&primary).await.unwrap() {
        FenceOutcome::Fenced {
            already_read_only, ..
        } => assert!(already_read_only),
        other => panic!("expected Fenced, got {other:?}"),
    }

    // Switchover wait: everything the read-only primary wrote is replayed.
    let caught = pg::wait_caught_up(&standby, &primary, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(caught.replay_lsn >= caught.target_lsn, "{caught:?}");
    eprintln!("caught up after {:?}", caught.waited);

    // Unfence restores writes.
    let u = pg::unfence(&primary).await.unwrap();
    assert!(u.was_read_only);
    topo.postgres_primary().write_rows(10).unwrap();
    assert!(!pg::unfence(&primary).await.unwrap().was_read_only);
    wait_until(soon(), || {
        Ok(topo.postgres_standby().row_count().ok() == Some(110))
    })
    .unwrap();

    // Unplanned: the primary dies; fencing says it relies on DNS / connection strings.
    let before = pg::observe(&standby).await.unwrap();
    assert!(before.in_recovery);
    topo.postgres_primary().kill().unwrap();
    let unreachable = pg::fence(&primary).await.unwrap();
    assert!(
        matches!(unreachable, FenceOutcome::Unreachable { .. }),
        "{unreachable:?}"
    );
    assert!(
        unreachable
            .summary()
            .starts_with("unreachable: the old primary did not answer")
    );
    let lag = pg::check_lag(&standby, &primary, 1 << 20, 10.0)
        .await
        .unwrap();
    assert!(!lag.within_bounds && lag.primary_error.is_some(), "{lag:?}");

    let promoted = pg::promote(&standby, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!("promote: {}", promoted.summary());
    assert!(!promoted.already_promoted);
    assert_eq!(promoted.timeline_before, before.timeline);
    assert_eq!(promoted.timeline_after, before.timeline + 1);
    assert!(!topo.postgres_standby().is_in_recovery().unwrap());
    assert_eq!(topo.postgres_standby().row_count().unwrap(), 110);
    topo.postgres_standby().write_rows(1).unwrap();

    // Never twice: a second promote reports and changes nothing.
    let again = pg::promote(&standby, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(again.already_promoted);
    assert_eq!(again.timeline_after, before.timeline + 1);
    assert!(again.summary().contains("already promoted"), "{again:?}");
    assert_eq!(
        pg::observe(&standby).await.unwrap().timeline,
        before.timeline + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dns_cutover_and_smoke_checks() {
    let topo = start();
    let layout = topo.layout().clone();
    let (khartoum, port_sudan) = (layout.ip(Site::Khartoum), layout.ip(Site::PortSudan));

    // Redis: promote twice, then point it back at khartoum.
    let replica = redis_target(&topo, Site::PortSudan);
    let p = rd::promote(&replica).await.unwrap();
    assert!(!p.already_done);
    assert!(matches!(p.before, RedisRole::Replica { .. }), "{p:?}");
    assert!(matches!(p.after, RedisRole::Primary { .. }), "{p:?}");
    assert!(rd::promote(&replica).await.unwrap().already_done);
    topo.redis_replica().set("after-promote", "1").unwrap();
    let home = layout.redis(Site::Khartoum).unwrap();
    let back = rd::replicaof(&replica, &home.ip().to_string(), home.port())
        .await
        .unwrap();
    assert!(!back.already_done);
    wait_until(soon(), || {
        Ok(topo
            .redis_replica()
            .info_field("replication", "master_link_status")?
            .as_deref()
            == Some("up"))
    })
    .unwrap();
    let again = rd::replicaof(&replica, &home.ip().to_string(), home.port())
        .await
        .unwrap();
    assert!(again.already_done, "{again:?}");
    assert!(matches!(
        rd::role(&replica).await.unwrap(),
        RedisRole::Replica { ref link, .. } if link == "connected"
    ));

    // Smoke checks through the service name (db → khartoum, the primary).
    let servers = topo.dns_servers();
    let server = servers[0];
    let name = format!("db.{ZONE}");
    let pg_port = layout.postgres(Site::Khartoum).unwrap().port();
    let password = topo.postgres_primary().password().to_string();
    let smoke = checks::sql_check(server, &name, pg_port, "niledr", &password, "postgres")
        .await
        .unwrap();
    assert_eq!(smoke.server.ip(), std::net::IpAddr::V4(khartoum));
    eprintln!("sql_check: {smoke:?}");
    let health = topo.http(Site::Khartoum).unwrap().url();
    checks::http_check(&health, 200).await.unwrap();
    assert!(checks::http_check(&health, 204).await.is_err());

    let key = dns::load_key(&topo.tsig_key_file()).unwrap();
    let dig_all = |want: Ipv4Addr| {
        for &s in &servers {
            assert_eq!(topo.dig_a(&name, s).unwrap(), vec![want], "server {s}");
        }
    };

    // TTL lowered (idempotent).
    let t = dns::set_ttl(server, ZONE, &name, 30, &key).await.unwrap();
    assert_eq!(
        (t.ttl_before, t.ttl_after, t.already_done),
        (Some(60), 30, false)
    );
    assert_eq!(dns::query_a(server, &name).await.unwrap().ttl, Some(30));
    assert!(
        dns::set_ttl(server, ZONE, &name, 30, &key)
            .await
            .unwrap()
            .already_done
    );

    // A wrong key: refused, nothing changed.
    let wrong = TsigKey {
        secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        ..key.clone()
    };
    let e = dns::cutover(
        server,
        ZONE,
        &name,
        &[khartoum],
        &[port_sudan],
        30,
        &wrong,
        None,
    )
    .await
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("TSIG authentication failed"),
        "{e:#}"
    );
    eprintln!("wrong key: {e:#}");
    dig_all(khartoum);
    let unknown = TsigKey {
        name: "not-a-key".into(),
        ..key.clone()
    };
    let e = dns::set_ttl(server, ZONE, &name, 10, &unknown)
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("TSIG authentication failed"),
        "{e:#}"
    );
    assert_eq!(dns::query_a(server, &name).await.unwrap().ttl, Some(30));

    // An unexpected current answer: refused, nothing changed.
    let e = dns::cutover(
        server,
        ZONE,
        &name,
        &[layout.dr_cold],
        &[port_sudan],
        30,
        &key,
        None,
    )
    .await
    .unwrap_err();
    assert!(format!("{e:#}").contains("refused"), "{e:#}");
    eprintln!("unexpected answer: {e:#}");
    dig_all(khartoum);

    // The cutover, verified on every authoritative server.
    let c = dns::cutover(
        server,
        ZONE,
        &name,
        &[khartoum],
        &[port_sudan],
        30,
        &key,
        None,
    )
    .await
    .unwrap();
    assert!(!c.already_done);
    assert_eq!(
        (c.before.clone(), c.after.clone()),
        (vec![khartoum], vec![port_sudan])
    );
    let v = dns::verify(&servers, &name, &[port_sudan], Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!(
        "dns cutover sent in {:?}; converged on all {} servers in {:?} ({:?})",
        c.took,
        servers.len(),
        v.converged_in,
        v.per_server
    );
    dig_all(port_sudan);
    assert_eq!(dns::query_a(servers[1], &name).await.unwrap().ttl, Some(30));

    // A second cutover is a no-op; the revert (rollback) is the same call reversed.
    let c2 = dns::cutover(
        server,
        ZONE,
        &name,
        &[khartoum],
        &[port_sudan],
        30,
        &key,
        None,
    )
    .await
    .unwrap();
    assert!(c2.already_done);
    let r = dns::cutover(
        server,
        ZONE,
        &name,
        &[port_sudan],
        &[khartoum],
        60,
        &key,
        None,
    )
    .await
    .unwrap();
    assert!(!r.already_done);
    dns::verify(&servers, &name, &[khartoum], Duration::from_secs(30))
        .await
        .unwrap();
    // Verification that cannot converge says which server answers what.
    let e = dns::verify(&servers, &name, &[port_sudan], Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("did not converge"), "{e:#}");
}

#[tokio::test]
async fn connstr_file_swap_rollback_and_compare_and_swap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nilecare-db.env");
    let reloads = dir.path().join("reloads.log");
    let old = "DATABASE_URL=postgresql://app@127.0.1.1:5432/nilecare\n";
    let new = "DATABASE_URL=postgresql://app@127.0.2.1:5432/nilecare\n";
    fs::write(&path, old).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let reload = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("echo reloaded >> {}", reloads.display()),
    ];
    let reload_count = || {
        fs::read_to_string(&reloads)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };

    let s = connstr::swap_file(&path, old, new, Some(&reload), None)
        .await
        .unwrap();
    assert!(!s.already_done && s.reload.is_some());
    assert_eq!(fs::read_to_string(&path).unwrap(), new);
    assert_eq!(fs::read_to_string(&s.previous).unwrap(), old);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(reload_count(), 1);
    assert_eq!(
        connstr::observe_file(&path, old, new).unwrap(),
        connstr::FileState::New
    );

    // Idempotent: no second write, no second reload.
    let again = connstr::swap_file(&path, old, new, Some(&reload), None)
        .await
        .unwrap();
    assert!(again.already_done && again.reload.is_none());
    assert_eq!(reload_count(), 1);

    // Compare-and-swap: an unexpected current content is refused and left alone.
    let e = connstr::swap_file(&path, "something else\n", "x\n", None, None)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("not swapped"), "{e:#}");
    assert_eq!(fs::read_to_string(&path).unwrap(), new);

    // Rollback restores the kept version; repeating it is a no-op.
    let r = connstr::rollback_file(&path, new, Some(&reload), None)
        .await
        .unwrap();
    assert!(!r.already_done);
    assert_eq!(fs::read_to_string(&path).unwrap(), old);
    assert_eq!(reload_count(), 2);
    assert!(
        connstr::rollback_file(&path, new, Some(&reload), None)
            .await
            .unwrap()
            .already_done
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), old);

    // A failing reload undoes the swap.
    let e = connstr::swap_file(&path, old, new, Some(&["/bin/false".to_string()]), None)
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("previous content restored"),
        "{e:#}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), old);

    // No temp file left behind.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["nilecare-db.env", "nilecare-db.env.prev", "reloads.log"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_swap_to_promoted_standby_and_back() {
    let topo = start();
    let layout = topo.layout().clone();
    let bouncer = topo.pgbouncer();
    let (k, p) = (
        layout.postgres(Site::Khartoum).unwrap(),
        layout.postgres(Site::PortSudan).unwrap(),
    );
    let server_port = || {
        bouncer
            .psql(bouncer.database(), "SELECT inet_server_port()")
            .unwrap()
    };
    assert_eq!(server_port(), k.port().to_string());

    pg::promote(&pg_target(&topo, Site::PortSudan), Duration::from_secs(30))
        .await
        .unwrap();

    let admin = pgb::PgBouncerAdmin {
        host: bouncer.address().ip().to_string(),
        port: bouncer.address().port(),
        user: bouncer.admin_user().to_string(),
        password: bouncer.password().to_string(),
    };
    let ini = bouncer.ini_file().to_path_buf();
    let db = bouncer.database();
    let old = format!("host={} port={} dbname=postgres", k.ip(), k.port());
    let new = format!("host={} port={} dbname=postgres", p.ip(), p.port());
    let shown = pgb::show_database(&admin, db).await.unwrap().unwrap();
    assert_eq!(
        (shown.host.as_deref(), shown.port),
        (Some(k.ip().to_string().as_str()), i32::from(k.port()))
    );
    let original = fs::read_to_string(&ini).unwrap();

    // Compare-and-swap refusal leaves the file alone.
    let e = pgb::swap(
        &ini,
        db,
        "host=127.0.3.1 port=1 dbname=postgres",
        &new,
        &admin,
        None,
    )
    .await
    .unwrap_err();
    assert!(format!("{e:#}").contains("not swapped"), "{e:#}");
    assert_eq!(fs::read_to_string(&ini).unwrap(), original);

    // PgBouncer that cannot reload: the file is put back.
    bouncer.sigstop().unwrap();
    let e = pgb::swap(&ini, db, &old, &new, &admin, None)
        .await
        .unwrap_err();
    bouncer.sigcont().unwrap();
    assert!(format!("{e:#}").contains("previous file restored"), "{e:#}");
    assert_eq!(fs::read_to_string(&ini).unwrap(), original);
    assert_eq!(server_port(), k.port().to_string());

    // The swap: new connections land on the promoted standby.
    let s = pgb::swap(&ini, db, &old, &new, &admin, None).await.unwrap();
    eprintln!("pgbouncer swap: {s:?}");
    assert!(!s.already_done);
    assert_eq!(s.shown.port, i32::from(p.port()));
    assert_eq!(server_port(), p.port().to_string());
    assert_eq!(bouncer.psql(db, "SELECT pg_is_in_recovery()").unwrap(), "f");
    bouncer
        .psql(db, "CREATE TABLE IF NOT EXISTS through_bouncer (x int); INSERT INTO through_bouncer VALUES (1)")
        .unwrap();
    assert!(
        pgb::swap(&ini, db, &old, &new, &admin, None)
            .await
            .unwrap()
            .already_done
    );
    assert_eq!(
        pgb::read_entry(&ini, db).unwrap().as_deref(),
        Some(new.as_str())
    );

    // Rollback restores the previous entry (and the file byte for byte); again → no-op.
    let r = pgb::rollback(&ini, db, &new, &admin, None).await.unwrap();
    assert!(!r.already_done);
    assert_eq!(fs::read_to_string(&ini).unwrap(), original);
    assert_eq!(server_port(), k.port().to_string());
    assert!(
        pgb::rollback(&ini, db, &new, &admin, None)
            .await
            .unwrap()
            .already_done
    );

    let dir = ini.parent().unwrap();
    let leftovers: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("niledr-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
