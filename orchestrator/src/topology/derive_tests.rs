//! Table-driven tests of the pure derivation: configured roles, observations, the journal's
//! cutovers and the persisted topology → the live topology. Site and service names are not the
//! sandbox's on purpose: nothing may depend on them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::derive::{Intent, Layout, LiveTopology, Observed, derive, intent};
use crate::records::ExecutionRecordV1;
use crate::test_fixtures::{RUNBOOK, catalog};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn layout() -> Layout {
    let mut l = Layout::default();
    for (site, role, addr) in [
        ("alpha", "primary", "10.0.1.1"),
        ("beta", "hot_standby", "10.0.2.1"),
        ("gamma", "cold_standby", "10.0.3.1"),
    ] {
        l.sites.insert(site.into(), (role.into(), Some(ip(addr))));
    }
    l.postgres
        .insert("alpha-pg".into(), (Some("alpha".into()), ip("10.0.1.1")));
    l.postgres
        .insert("beta-pg".into(), (Some("beta".into()), ip("10.0.2.1")));
    l.redis
        .insert("alpha-kv".into(), (Some("alpha".into()), ip("10.0.1.1")));
    l.redis
        .insert("beta-kv".into(), (Some("beta".into()), ip("10.0.2.1")));
    l.dns.insert(
        "db.example.".into(),
        ("name-db".into(), vec![ip("10.0.1.1")]),
    );
    l
}

fn seen(pg: &[(&str, bool)], kv: &[(&str, bool)], db: Option<&str>) -> Observed {
    Observed {
        postgres: pg.iter().map(|(id, w)| (id.to_string(), *w)).collect(),
        redis: kv.iter().map(|(id, w)| (id.to_string(), *w)).collect(),
        dns: [("db.example.".to_string(), db.map(|a| vec![ip(a)]))].into(),
    }
}

/// The journal of a completed alpha → beta failover.
fn failed_over() -> Intent {
    Intent {
        postgres_primary: Some("beta-pg".into()),
        redis_master: Some("beta-kv".into()),
        dns: [("db.example.".to_string(), vec![ip("10.0.2.1")])].into(),
        fenced: ["alpha-pg".to_string()].into(),
        demoted: ["alpha-kv".to_string()].into(),
        primary_site: None,
    }
}

fn roles(t: &LiveTopology) -> Vec<(&str, &str)> {
    t.roles
        .iter()
        .map(|(s, r)| (s.as_str(), r.as_str()))
        .collect()
}

const CONFIGURED: &[(&str, &str)] = &[
    ("alpha", "primary"),
    ("beta", "hot_standby"),
    ("gamma", "cold_standby"),
];
const SWAPPED: &[(&str, &str)] = &[
    ("alpha", "hot_standby"),
    ("beta", "primary"),
    ("gamma", "cold_standby"),
];

#[test]
fn table() {
    let beta_persisted = LiveTopology {
        postgres_primary: Some("beta-pg".into()),
        redis_master: Some("beta-kv".into()),
        ..Default::default()
    };
    let alpha_persisted = LiveTopology {
        postgres_primary: Some("alpha-pg".into()),
        ..Default::default()
    };
    let cold = Intent {
        primary_site: Some("gamma".into()),
        dns: [("db.example.".to_string(), vec![ip("10.0.3.1")])].into(),
        ..Default::default()
    };
    // (case, intent, observed, persisted, pg primary, redis master, roles, db expect, db answer site)
    type Row<'a> = (
        &'a str,
        Intent,
        Observed,
        Option<&'a LiveTopology>,
        Option<&'a str>,
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
        &'a str,
        Option<&'a str>,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            "nothing seen yet: the config",
            Intent::default(),
            Observed::default(),
            None,
            Some("alpha-pg"),
            Some("alpha-kv"),
            CONFIGURED,
            "10.0.1.1",
            None,
        ),
        (
            "healthy as configured",
            Intent::default(),
            seen(
                &[("alpha-pg", true), ("beta-pg", false)],
                &[("alpha-kv", true), ("beta-kv", false)],
                Some("10.0.1.1"),
            ),
            None,
            Some("alpha-pg"),
            Some("alpha-kv"),
            CONFIGURED,
            "10.0.1.1",
            Some("alpha"),
        ),
        (
            "after a failover: the fenced old primary still answers as a primary",
            failed_over(),
            seen(
                &[("alpha-pg", true), ("beta-pg", true)],
                &[("alpha-kv", true), ("beta-kv", true)],
                Some("10.0.2.1"),
            ),
            None,
            Some("beta-pg"),
            Some("beta-kv"),
            SWAPPED,
            "10.0.2.1",
            Some("beta"),
        ),
        (
            "after a failover, the new primary unreachable: the journal holds",
            failed_over(),
            seen(&[("alpha-pg", true)], &[], None),
            None,
            Some("beta-pg"),
            Some("beta-kv"),
            SWAPPED,
            "10.0.2.1",
            None,
        ),
        (
            "DNS not cut over yet: expectation follows the journal, the answer shows alpha",
            failed_over(),
            seen(&[("beta-pg", true)], &[("beta-kv", true)], Some("10.0.1.1")),
            None,
            Some("beta-pg"),
            Some("beta-kv"),
            SWAPPED,
            "10.0.2.1",
            Some("alpha"),
        ),
        (
            "promoted by hand (no journal): the sole writer",
            Intent::default(),
            seen(&[("beta-pg", true)], &[("beta-kv", true)], None),
            None,
            Some("beta-pg"),
            Some("beta-kv"),
            SWAPPED,
            "10.0.1.1",
            None,
        ),
        (
            "two writers, no journal: what was persisted",
            Intent::default(),
            seen(
                &[("alpha-pg", true), ("beta-pg", true)],
                &[("alpha-kv", true), ("beta-kv", true)],
                None,
            ),
            Some(&beta_persisted),
            Some("beta-pg"),
            Some("beta-kv"),
            SWAPPED,
            "10.0.1.1",
            None,
        ),
        (
            "two writers, nothing persisted: the config",
            Intent::default(),
            seen(&[("alpha-pg", true), ("beta-pg", true)], &[], None),
            None,
            Some("alpha-pg"),
            Some("alpha-kv"),
            CONFIGURED,
            "10.0.1.1",
            None,
        ),
        (
            "no writer at all: the journal beats the persisted",
            failed_over(),
            seen(&[("alpha-pg", false), ("beta-pg", false)], &[], None),
            Some(&alpha_persisted),
            Some("beta-pg"),
            Some("beta-kv"),
            SWAPPED,
            "10.0.2.1",
            None,
        ),
        (
            "cold site activated: traffic cut over to a site with no PostgreSQL service",
            cold,
            seen(&[], &[], Some("10.0.3.1")),
            None,
            Some("alpha-pg"),
            Some("alpha-kv"),
            &[
                ("alpha", "hot_standby"),
                ("beta", "hot_standby"),
                ("gamma", "primary"),
            ],
            "10.0.3.1",
            Some("gamma"),
        ),
    ];
    for (case, intent, observed, persisted, pg, kv, want_roles, expect, answer_site) in rows {
        let t = derive(&layout(), &intent, &observed, persisted);
        assert_eq!(
            t.postgres_primary.as_deref(),
            pg,
            "{case}: postgres primary"
        );
        assert_eq!(t.redis_master.as_deref(), kv, "{case}: redis master");
        assert_eq!(roles(&t), want_roles, "{case}: roles");
        let db = &t.dns["db.example."];
        assert_eq!(db.expect, vec![ip(expect)], "{case}: db expectation");
        assert_eq!(
            db.answer_site.as_deref(),
            answer_site,
            "{case}: db answer site"
        );
        assert_eq!(
            t.dns_expect("db.example."),
            Some(&[ip(expect)][..]),
            "{case}"
        );
    }
}

#[test]
fn same_inputs_same_topology() {
    let o = seen(
        &[("alpha-pg", true), ("beta-pg", true)],
        &[],
        Some("10.0.2.1"),
    );
    let a = derive(&layout(), &failed_over(), &o, None);
    let b = derive(&layout(), &failed_over(), &o, Some(&a));
    assert_eq!(a, b);
    let json = serde_json::to_string(&a).expect("serializes");
    let back: LiveTopology = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back, a);
}

fn record(state: &str, pponr: bool, done: &[(&str, &str)]) -> ExecutionRecordV1 {
    let steps: Vec<serde_json::Value> = done
        .iter()
        .map(|(id, st)| serde_json::json!({"id": id, "kind": "k", "state": st, "attempts": 1,
            "intent_at": null, "outcome_at": null, "duration_ms": null, "detail": "", "overhead_ms": null}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "v": 1, "id": "x", "runbook": "alpha-to-beta", "reason": "r", "requester": "p",
        "created_at": "2026-01-01T00:00:00Z", "state": state, "machine": null,
        "plan_digest": "d", "plan": null, "preconditions": null, "approvals": [],
        "steps": steps, "timeline": [], "needs_operator": null, "generation": null,
        "past_point_of_no_return": pponr,
    }))
    .expect("test record decodes")
}

#[test]
fn intent_from_the_journal() {
    let rb = niledr_runbooks::parse_runbook(std::path::Path::new("t.toml"), RUNBOOK, &catalog())
        .expect("test runbook validates");
    let runbooks: BTreeMap<String, niledr_runbooks::Runbook> = [(rb.name.clone(), rb)].into();
    let all_done: &[(&str, &str)] = &[
        ("fence", "succeeded"),
        ("promote", "succeeded"),
        ("kv-promote", "succeeded"),
        ("kv-follows", "succeeded"),
        ("cutover", "succeeded"),
    ];
    // (case, journal, pg primary, redis master, db answer, alpha-pg fenced)
    type Row<'a> = (
        &'a str,
        Vec<ExecutionRecordV1>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        bool,
    );
    let rows: Vec<Row<'_>> = vec![
        ("empty journal", vec![], None, None, None, false),
        (
            "succeeded",
            vec![record("succeeded", true, all_done)],
            Some("beta-pg"),
            Some("beta-kv"),
            Some("10.0.2.1"),
            true,
        ),
        (
            "rolled back before the point of no return counts for nothing",
            vec![record("rolled_back", false, &[("fence", "rolled_back")])],
            None,
            None,
            None,
            false,
        ),
        (
            "stopped for an operator after the promotion: what succeeded counts",
            vec![record(
                "needs_operator",
                true,
                &[
                    ("fence", "succeeded"),
                    ("promote", "succeeded"),
                    ("kv-promote", "failed"),
                ],
            )],
            Some("beta-pg"),
            None,
            None,
            true,
        ),
        (
            "a proposal never approved",
            vec![record("awaiting_approval", false, &[])],
            None,
            None,
            None,
            false,
        ),
    ];
    for (case, journal, pg, kv, db, fenced) in rows {
        let i = intent(&journal, |n| runbooks.get(n), &layout());
        assert_eq!(i.postgres_primary.as_deref(), pg, "{case}");
        assert_eq!(i.redis_master.as_deref(), kv, "{case}");
        assert_eq!(
            i.dns
                .get("db.example.")
                .map(|a| a[0].to_string())
                .as_deref(),
            db,
            "{case}"
        );
        assert_eq!(i.fenced.contains("alpha-pg"), fenced, "{case}");
        assert_eq!(i.demoted.contains("alpha-kv"), kv.is_some(), "{case}");
    }
}

#[test]
fn answers_are_not_decisions() {
    let a = derive(
        &layout(),
        &failed_over(),
        &seen(&[("beta-pg", true)], &[], Some("10.0.2.1")),
        None,
    );
    let b = derive(
        &layout(),
        &failed_over(),
        &seen(&[("beta-pg", true)], &[], None),
        None,
    );
    assert_ne!(a, b);
    assert!(!a.decided_differs(&b), "only the answers moved");
    let moved = derive(&layout(), &Intent::default(), &Observed::default(), None);
    assert!(a.decided_differs(&moved));
    // A member that does not act: the leader's decisions, its own answers.
    let mine = b
        .clone()
        .with_answers(&layout(), &seen(&[], &[], Some("10.0.1.1")));
    assert_eq!(
        mine.dns["db.example."].answer_site.as_deref(),
        Some("alpha")
    );
    assert_eq!(mine.dns["db.example."].expect, vec![ip("10.0.2.1")]);
    assert!(!mine.decided_differs(&b));
}
