//! Plans against a sandbox world: targets, guards, before → after, warnings, digest stability;
//! preconditions and drift.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::fmt::Write as _;
use std::path::Path;

use common::{sandbox_catalog, shipped};
use expect_test::{Expect, expect};
use niledr_runbooks::{
    DnsObservation, GuardOutcome, ObservedRole, Plan, ServiceObservation, Tolerance, WorldSnapshot,
    drift, parse_runbook, plan, preconditions, shipped::SHIPPED,
};

/// Khartoum PostgreSQL is down; everything else answers; DNS still points at Khartoum.
fn khartoum_pg_down() -> WorldSnapshot {
    let mut w = WorldSnapshot::default();
    let svc = |reachable, role, lag: Option<u64>, addr: &str| ServiceObservation {
        reachable,
        role,
        timeline: Some(1),
        lsn: Some("0/3000148".into()),
        lag_bytes: lag,
        lag_seconds: lag.map(|_| 0.4),
        address: Some(addr.into()),
        upstream: None,
        read_only: Some(false),
    };
    w.services.insert(
        "khartoum-postgres".into(),
        ServiceObservation {
            reachable: false,
            ..Default::default()
        },
    );
    w.services.insert(
        "port-sudan-postgres".into(),
        svc(
            true,
            Some(ObservedRole::Standby),
            Some(1024),
            "127.0.2.1:5432",
        ),
    );
    w.services.insert(
        "khartoum-redis".into(),
        svc(true, Some(ObservedRole::Master), None, "127.0.1.1:6379"),
    );
    let mut replica = svc(true, Some(ObservedRole::Replica), Some(0), "127.0.2.1:6379");
    replica.upstream = Some("127.0.1.1:6379".into());
    w.services.insert("port-sudan-redis".into(), replica);
    for name in ["db", "cache", "api"] {
        w.dns.insert(
            format!("{name}.nilecare.sd."),
            DnsObservation {
                answers: [
                    ("127.0.9.1:53".to_string(), vec!["127.0.1.1".to_string()]),
                    ("127.0.9.2:53".to_string(), vec!["127.0.1.1".to_string()]),
                ]
                .into(),
                ttl: Some(60),
            },
        );
    }
    w.connstr
        .insert("app-env".into(), Some("127.0.1.1:5432".into()));
    w.connstr
        .insert("pgbouncer".into(), Some("127.0.1.1:5432".into()));
    w
}

fn render(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({:?}) ready={}", p.runbook, p.mode, p.ready);
    for s in &p.steps {
        let _ = writeln!(
            out,
            "{}. {} [{}]: {}",
            s.index,
            s.id,
            s.kind.as_str(),
            s.summary
        );
        for t in &s.targets {
            let _ = writeln!(
                out,
                "   target {} {}{}",
                t.kind,
                t.id,
                t.address
                    .as_ref()
                    .map(|a| format!(" @ {a}"))
                    .unwrap_or_default()
            );
        }
        for g in &s.guards {
            let _ = writeln!(out, "   guard {:?} {}: {}", g.outcome, g.check, g.why);
        }
        for c in &s.changes {
            let _ = writeln!(out, "   change {}: {} -> {}", c.what, c.before, c.after);
        }
        for n in &s.notes {
            let _ = writeln!(out, "   note {n}");
        }
        let _ = writeln!(out, "   rollback: {}", s.rollback);
    }
    for w in &p.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

fn check(file: &str, world: &WorldSnapshot, expect: Expect) {
    expect.assert_eq(&render(&plan(&shipped(file), world)));
}

#[test]
fn failover_plan_when_khartoum_is_down() {
    check(
        "failover-khartoum-to-port-sudan.toml",
        &khartoum_pg_down(),
        expect![[r#"
            failover-khartoum-to-port-sudan (Unplanned) ready=true
            0. check-lag [postgres.check_lag]: check that port-sudan-postgres lags at most 16777216 bytes
               target service port-sudan-postgres @ 127.0.2.1:5432
               guard Pass port-sudan-postgres answers: probe ok
               guard Pass port-sudan-postgres is a standby: as expected
               guard Pass lag ≤ 16777216 bytes: lag 1024 bytes
               guard Pass lag ≤ 60 s: lag 0.4 s
               rollback: nothing to undo
            1. platform-failover-in-progress [platform.mode]: tell the applications: platform level 4 (database failover in progress: read-only mode, queue writes)
               target dns_txt _platform-mode.nilecare.sd.
               change platform level (_platform-mode.nilecare.sd.): unknown (no record observed) -> level 4 (database failover in progress: read-only mode, queue writes)
               rollback: restore the previous platform level
            2. fence-khartoum-pg [postgres.fence]: fence khartoum-postgres (application roles lose their login, read-only for the rest, sessions terminated)
               target service khartoum-postgres @ 127.0.1.1:5432
               note khartoum-postgres does not answer: on_unreachable = require_evidence
               rollback: unfence khartoum-postgres (writes accepted again)
            3. fence-khartoum-redis [redis.fence]: fence khartoum-redis (CLIENT PAUSE WRITE), wait until port-sudan-redis has every write
               target service khartoum-redis @ 127.0.1.1:6379
               target service port-sudan-redis @ 127.0.2.1:6379
               guard Pass khartoum-redis answers: probe ok
               guard Pass port-sudan-redis answers: probe ok
               guard Pass khartoum-redis is a master: as expected
               guard Pass port-sudan-redis is a replica: as expected
               change khartoum-redis writes: accepted -> paused (CLIENT PAUSE WRITE; reads continue)
               note now: port-sudan-redis replication offset lag 0 bytes
               note writes blocked by the pause fail with READONLY once khartoum-redis follows the new master: none acknowledged is lost
               rollback: unpause khartoum-redis (CLIENT UNPAUSE: writes accepted again)
            4. promote-port-sudan-pg [postgres.promote]: promote port-sudan-postgres to primary (pg_promote)
               target service port-sudan-postgres @ 127.0.2.1:5432
               guard Pass port-sudan-postgres answers: probe ok
               guard Pass port-sudan-postgres is a standby: as expected
               change port-sudan-postgres role: standby -> primary
               change port-sudan-postgres timeline: 1 -> 2
               change port-sudan-postgres LSN: 0/3000148 (replayed) -> writes continue from 0/3000148
               rollback: IRREVERSIBLE: a promoted standby starts a new timeline; going back is the failback runbook (re-seed Khartoum, then switch over)
            5. promote-port-sudan-redis [redis.promote]: promote port-sudan-redis (REPLICAOF NO ONE)
               target service port-sudan-redis @ 127.0.2.1:6379
               guard Pass port-sudan-redis answers: probe ok
               guard Pass port-sudan-redis is a replica: as expected
               change port-sudan-redis role: replica -> master
               rollback: IRREVERSIBLE: after REPLICAOF NO ONE, pointing it back at Khartoum would discard writes taken since; use the failback runbook
            6. khartoum-redis-follows [redis.replicaof]: make khartoum-redis a replica of port-sudan-redis (127.0.2.1:6379)
               target service khartoum-redis @ 127.0.1.1:6379
               target service port-sudan-redis @ 127.0.2.1:6379
               guard Pass khartoum-redis answers: probe ok
               guard Pass port-sudan-redis answers: probe ok
               change khartoum-redis role: master -> replica of 127.0.2.1:6379
               rollback: restore khartoum-redis's previous role and master
            7. swap-app-env [connstr.swap]: point connection string app-env at port-sudan-postgres
               target connstr app-env
               target service port-sudan-postgres @ 127.0.2.1:5432
               guard Pass port-sudan-postgres answers: probe ok
               change connection-string file app-env: 127.0.1.1:5432 -> 127.0.2.1:5432
               rollback: restore the previous value of app-env
            8. swap-pgbouncer [connstr.swap]: point connection string pgbouncer at port-sudan-postgres
               target connstr pgbouncer
               target service port-sudan-postgres @ 127.0.2.1:5432
               guard Pass port-sudan-postgres answers: probe ok
               change pgbouncer target pgbouncer: 127.0.1.1:5432 -> 127.0.2.1:5432
               rollback: restore the previous value of pgbouncer
            9. ttl-db [dns.set_ttl]: set the TTL of db.nilecare.sd. to 60 s
               target dns_name db.nilecare.sd.
               note TTL already 60 s: nothing to do
               rollback: restore the previous TTL of db.nilecare.sd.
            10. cutover-db [dns.cutover]: point db.nilecare.sd. at site port-sudan (127.0.2.1)
               target dns_name db.nilecare.sd.
               target site khartoum @ 127.0.1.1
               target site port-sudan @ 127.0.2.1
               guard Pass servers agree: all answer 127.0.1.1
               guard Pass db.nilecare.sd. answers site khartoum now: answers 127.0.1.1
               change db.nilecare.sd. answers: 127.0.1.1 -> 127.0.2.1
               rollback: cut db.nilecare.sd. back to its previous answers
            11. cutover-cache [dns.cutover]: point cache.nilecare.sd. at site port-sudan (127.0.2.1)
               target dns_name cache.nilecare.sd.
               target site khartoum @ 127.0.1.1
               target site port-sudan @ 127.0.2.1
               guard Pass servers agree: all answer 127.0.1.1
               guard Pass cache.nilecare.sd. answers site khartoum now: answers 127.0.1.1
               change cache.nilecare.sd. answers: 127.0.1.1 -> 127.0.2.1
               rollback: cut cache.nilecare.sd. back to its previous answers
            12. cutover-api [dns.cutover]: point api.nilecare.sd. at site port-sudan (127.0.2.1)
               target dns_name api.nilecare.sd.
               target site khartoum @ 127.0.1.1
               target site port-sudan @ 127.0.2.1
               guard Pass servers agree: all answer 127.0.1.1
               guard Pass api.nilecare.sd. answers site khartoum now: answers 127.0.1.1
               change api.nilecare.sd. answers: 127.0.1.1 -> 127.0.2.1
               rollback: cut api.nilecare.sd. back to its previous answers
            13. verify-db [dns.verify]: verify every authoritative server answers db.nilecare.sd. with site port-sudan (127.0.2.1)
               target dns_name db.nilecare.sd.
               target site port-sudan @ 127.0.2.1
               guard Pass after the steps before it, db.nilecare.sd. answers the expected set: 127.0.2.1
               rollback: nothing to undo
            14. verify-cache [dns.verify]: verify every authoritative server answers cache.nilecare.sd. with site port-sudan (127.0.2.1)
               target dns_name cache.nilecare.sd.
               target site port-sudan @ 127.0.2.1
               guard Pass after the steps before it, cache.nilecare.sd. answers the expected set: 127.0.2.1
               rollback: nothing to undo
            15. verify-api [dns.verify]: verify every authoritative server answers api.nilecare.sd. with site port-sudan (127.0.2.1)
               target dns_name api.nilecare.sd.
               target site port-sudan @ 127.0.2.1
               guard Pass after the steps before it, api.nilecare.sd. answers the expected set: 127.0.2.1
               rollback: nothing to undo
            16. smoke-sql [sql.check]: write and read back through db.nilecare.sd. (resolving to 127.0.2.1 after the steps before it), with port-sudan-postgres's credentials
               target dns_name db.nilecare.sd.
               target service port-sudan-postgres @ 127.0.2.1:5432
               rollback: nothing to undo
            17. platform-dr-mode [platform.mode]: tell the applications: platform level 5 (Running in DR mode at Port Sudan after the loss of Khartoum)
               target dns_txt _platform-mode.nilecare.sd.
               change platform level (_platform-mode.nilecare.sd.): level 4 (database failover in progress: read-only mode, queue writes) -> level 5 (regional outage: running in DR mode at another site)
               rollback: restore the previous platform level
            warning: old primary khartoum-postgres does not answer: the step proceeds only if its standby has lost it too, else it waits for an operator's confirm; if it comes back it is fenced again and must not take writes
            warning: step promote-port-sudan-pg (postgres.promote) cannot be undone: a promoted standby starts a new timeline; going back is the failback runbook (re-seed Khartoum, then switch over)
            warning: step promote-port-sudan-redis (redis.promote) cannot be undone: after REPLICAOF NO ONE, pointing it back at Khartoum would discard writes taken since; use the failback runbook
        "#]],
    );
}

#[test]
fn lag_beyond_the_gate_fails_the_guard() {
    let mut w = khartoum_pg_down();
    w.services.get_mut("port-sudan-postgres").unwrap().lag_bytes = Some(64 * 1024 * 1024);
    let p = plan(&shipped("failover-khartoum-to-port-sudan.toml"), &w);
    assert!(!p.ready);
    let g = &p.steps[0].guards[2];
    assert_eq!(g.outcome, GuardOutcome::Fail);
    assert_eq!(g.why, "lag 67108864 bytes");
}

#[test]
fn dns_answer_that_moved_fails_the_cutover_guard() {
    let mut w = khartoum_pg_down();
    w.dns
        .get_mut("api.nilecare.sd.")
        .unwrap()
        .answers
        .insert("127.0.9.2:53".into(), vec!["127.0.7.7".into()]);
    let p = plan(&shipped("failover-khartoum-to-port-sudan.toml"), &w);
    assert!(!p.ready);
    let cut = p.steps.iter().find(|s| s.id == "cutover-api").unwrap();
    assert!(
        cut.guards
            .iter()
            .any(|g| g.outcome == GuardOutcome::Fail && g.check == "servers agree"),
        "{cut:?}"
    );
}

#[test]
fn digest_ignores_measurements_but_not_targets_or_steps() {
    let rb = shipped("failover-khartoum-to-port-sudan.toml");
    let w = khartoum_pg_down();
    let a = plan(&rb, &w);
    let mut w2 = w.clone();
    w2.services
        .get_mut("port-sudan-postgres")
        .unwrap()
        .lag_bytes = Some(99);
    w2.dns.get_mut("db.nilecare.sd.").unwrap().ttl = Some(300);
    assert_eq!(
        a.digest,
        plan(&rb, &w2).digest,
        "measurements move, digest stays"
    );
    assert_eq!(a.digest.len(), 64);

    // Another address for the standby (a config change) changes the digest.
    let mut catalog = sandbox_catalog();
    catalog
        .services
        .get_mut("port-sudan-postgres")
        .unwrap()
        .address = Some("127.0.2.9:5432".into());
    let (file, text) = SHIPPED[0];
    let moved = parse_runbook(Path::new(file), text, &catalog).unwrap();
    assert_ne!(a.digest, plan(&moved, &w).digest);

    // Another step parameter changes it too.
    let edited = text.replace("max_lag_bytes = 16777216", "max_lag_bytes = 1");
    let edited = parse_runbook(Path::new(file), &edited, &sandbox_catalog()).unwrap();
    assert_ne!(a.digest, plan(&edited, &w).digest);
}

#[test]
fn every_shipped_runbook_plans_and_round_trips() {
    let w = khartoum_pg_down();
    for (file, _) in SHIPPED {
        let p = plan(&shipped(file), &w);
        assert_eq!(p.steps.len(), shipped(file).steps.len());
        let json = serde_json::to_string(&p).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p, "{file}");
    }
}

#[test]
fn drift_table() {
    let rb = shipped("failover-khartoum-to-port-sudan.toml");
    let base = khartoum_pg_down();
    let approved = preconditions(&rb, &base);
    let tol = Tolerance {
        lag_bytes: 1000,
        lag_seconds: 5,
    };
    type Edit = fn(&mut WorldSnapshot);
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        ("nothing moved", |_| {}, vec![]),
        (
            "lag within tolerance",
            |w| {
                w.services.get_mut("port-sudan-postgres").unwrap().lag_bytes = Some(2000);
            },
            vec![],
        ),
        (
            "lag beyond tolerance",
            |w| {
                w.services.get_mut("port-sudan-postgres").unwrap().lag_bytes = Some(5000);
            },
            vec!["port-sudan-postgres lag grew from 1024 to 5000 bytes (tolerance 1000 bytes)"],
        ),
        (
            "old primary came back",
            |w| {
                let k = w.services.get_mut("khartoum-postgres").unwrap();
                k.reachable = true;
                k.role = Some(ObservedRole::Primary);
            },
            vec![
                "khartoum-postgres did not answer at approval and answers now",
                "khartoum-postgres was unknown at approval and is primary now",
            ],
        ),
        (
            "standby promoted by someone else",
            |w| {
                let p = w.services.get_mut("port-sudan-postgres").unwrap();
                p.role = Some(ObservedRole::Primary);
                p.timeline = Some(2);
            },
            vec![
                "port-sudan-postgres was standby at approval and is primary now",
                "port-sudan-postgres timeline changed from 1 to 2",
            ],
        ),
        (
            "DNS answer changed",
            |w| {
                for v in w
                    .dns
                    .get_mut("db.nilecare.sd.")
                    .unwrap()
                    .answers
                    .values_mut()
                {
                    *v = vec!["127.0.2.1".into()];
                }
            },
            vec!["db.nilecare.sd. answered [127.0.1.1] at approval and answers [127.0.2.1] now"],
        ),
        (
            "connection string changed",
            |w| {
                w.connstr
                    .insert("pgbouncer".into(), Some("127.0.2.1:5432".into()));
            },
            vec![
                "connection string pgbouncer changed since approval (127.0.1.1:5432 → 127.0.2.1:5432)",
            ],
        ),
    ];
    for (what, edit, want) in cases {
        let mut w = base.clone();
        edit(&mut w);
        let got = drift(&approved, &preconditions(&rb, &w), &tol);
        assert_eq!(got, want, "{what}");
    }
}

/// Both sites up: the switchover fences Khartoum Redis before promoting Port Sudan's replica,
/// so no "two writable masters" warning for Redis, and the fence undoes itself on rollback.
#[test]
fn switchover_fences_redis_before_promoting() {
    let mut world = khartoum_pg_down();
    let k = world.services.get_mut("khartoum-postgres").unwrap();
    k.reachable = true;
    k.role = Some(ObservedRole::Primary);
    k.read_only = Some(false);
    let mut p = plan(&shipped("switchover-khartoum-to-port-sudan.toml"), &world);
    p.steps.retain(|s| s.kind.as_str().starts_with("redis."));
    expect![[r#"
        switchover-khartoum-to-port-sudan (Planned) ready=true
        6. fence-khartoum-redis [redis.fence]: fence khartoum-redis (CLIENT PAUSE WRITE), wait until port-sudan-redis has every write
           target service khartoum-redis @ 127.0.1.1:6379
           target service port-sudan-redis @ 127.0.2.1:6379
           guard Pass khartoum-redis answers: probe ok
           guard Pass port-sudan-redis answers: probe ok
           guard Pass khartoum-redis is a master: as expected
           guard Pass port-sudan-redis is a replica: as expected
           change khartoum-redis writes: accepted -> paused (CLIENT PAUSE WRITE; reads continue)
           note now: port-sudan-redis replication offset lag 0 bytes
           note writes blocked by the pause fail with READONLY once khartoum-redis follows the new master: none acknowledged is lost
           rollback: unpause khartoum-redis (CLIENT UNPAUSE: writes accepted again)
        7. promote-port-sudan-redis [redis.promote]: promote port-sudan-redis (REPLICAOF NO ONE)
           target service port-sudan-redis @ 127.0.2.1:6379
           guard Pass port-sudan-redis answers: probe ok
           guard Pass port-sudan-redis is a replica: as expected
           change port-sudan-redis role: replica -> master
           rollback: IRREVERSIBLE: after REPLICAOF NO ONE, pointing it back would discard writes taken since; use the failback runbook
        8. khartoum-redis-follows [redis.replicaof]: make khartoum-redis a replica of port-sudan-redis (127.0.2.1:6379)
           target service khartoum-redis @ 127.0.1.1:6379
           target service port-sudan-redis @ 127.0.2.1:6379
           guard Pass khartoum-redis answers: probe ok
           guard Pass port-sudan-redis answers: probe ok
           change khartoum-redis role: master -> replica of 127.0.2.1:6379
           rollback: restore khartoum-redis's previous role and master
        warning: step promote-port-sudan-pg (postgres.promote) cannot be undone: a promoted standby starts a new timeline; going back is the failback runbook
        warning: step promote-port-sudan-redis (redis.promote) cannot be undone: after REPLICAOF NO ONE, pointing it back would discard writes taken since; use the failback runbook
    "#]]
    .assert_eq(&render(&p));
}
