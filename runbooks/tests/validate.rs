//! Every shipped runbook validates against the sandbox catalog; invalid runbooks are refused
//! at the right line with a message that says what to fix.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;

use common::{sandbox_catalog, shipped};
use expect_test::expect;
use niledr_runbooks::{Rollback, SiteRole, parse_runbook, shipped::SHIPPED};

#[test]
fn every_shipped_runbook_validates() {
    let catalog = sandbox_catalog();
    assert_eq!(SHIPPED.len(), 8);
    for (file, text) in SHIPPED {
        let rb = parse_runbook(Path::new(file), text, &catalog).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format!("{}.toml", rb.name),
            *file,
            "file name follows the runbook name"
        );
        assert!(!rb.services.is_empty(), "{file}: empty lock scope");
    }
}

#[test]
fn shipped_files_match_the_embedded_copies() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("nilecare");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "add new runbooks to src/shipped.rs");
}

#[test]
fn failover_shape() {
    let rb = shipped("failover-khartoum-to-port-sudan.toml");
    let ids: Vec<&str> = rb.steps.iter().map(|s| s.id.as_str()).collect();
    expect![[r#"
        [
            "check-lag",
            "platform-failover-in-progress",
            "fence-khartoum-pg",
            "fence-khartoum-redis",
            "promote-port-sudan-pg",
            "promote-port-sudan-redis",
            "khartoum-redis-follows",
            "swap-app-env",
            "swap-pgbouncer",
            "ttl-db",
            "cutover-db",
            "cutover-cache",
            "cutover-api",
            "verify-db",
            "verify-cache",
            "verify-api",
            "smoke-sql",
            "platform-dr-mode",
        ]
    "#]]
    .assert_debug_eq(&ids);
    assert_eq!(rb.approval.required, 2);
    assert_eq!(
        rb.approval.roles,
        ["incident_commander", "engineering_lead"]
    );
    assert!(rb.approval.break_glass && !rb.approval.auto_approve);
    assert!(matches!(rb.steps[1].rollback, Rollback::Inverse));
    assert!(matches!(rb.steps[2].rollback, Rollback::Inverse));
    assert!(matches!(rb.steps[3].rollback, Rollback::Inverse));
    assert!(matches!(
        rb.steps[4].rollback,
        Rollback::Irreversible { .. }
    ));
    assert_eq!(niledr_runbooks::point_of_no_return(&rb), Some(4));
    let t = rb.trigger.as_ref().unwrap();
    assert_eq!(
        (t.service_down.as_str(), t.for_ms),
        ("khartoum-postgres", 30_000)
    );
}

#[test]
fn derived_lock_scope_covers_services_and_dns_names() {
    let rb = shipped("redis-failover-khartoum-to-port-sudan.toml");
    expect![[r#"
        [
            "dns-cache",
            "port-sudan-redis",
        ]
    "#]]
    .assert_debug_eq(&rb.services);
}

const BASE: &str = r#"name = "t"
mode = "unplanned"

[[steps]]
id = "check-lag"
kind = "postgres.check_lag"
service = "port-sudan-postgres"
max_lag_bytes = 1024

[[steps]]
id = "promote"
kind = "postgres.promote"
service = "port-sudan-postgres"
irreversible = true
reason = "new timeline"
"#;

/// `BASE` with `from` replaced by `to` (must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

#[test]
fn invalid_runbooks_are_refused_at_their_line() {
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "unknown step kind",
            edit("postgres.promote\"", "postgres.promot\""),
            12,
            "unknown step kind `postgres.promot`",
        ),
        (
            "unknown field",
            edit("max_lag_bytes = 1024", "max_lag_bytes = 1024\nmax_lag = 3"),
            9,
            "unknown field `max_lag`",
        ),
        (
            "field of another kind",
            edit(
                "reason = \"new timeline\"",
                "reason = \"new timeline\"\nof = \"khartoum-postgres\"",
            ),
            16,
            "`of` does not apply to `postgres.promote`; it takes: service",
        ),
        (
            "unknown service",
            edit(
                "service = \"port-sudan-postgres\"\nirreversible",
                "service = \"port-sudan-pg\"\nirreversible",
            ),
            13,
            "unknown service `port-sudan-pg`; known services:",
        ),
        (
            "destructive step without rollback",
            edit("irreversible = true\nreason = \"new timeline\"\n", ""),
            12,
            "`postgres.promote` changes the world but has no rollback",
        ),
        (
            "irreversible without reason",
            edit("reason = \"new timeline\"\n", ""),
            14,
            "`irreversible = true` needs `reason",
        ),
        (
            "promote outside Sudan",
            edit(
                "port-sudan-postgres\"\nirreversible",
                "nairobi-postgres\"\nirreversible",
            )
            .replace(
                "service = \"port-sudan-postgres\"\nmax",
                "service = \"nairobi-postgres\"\nmax",
            ),
            13,
            "PHI must stay in Sudan: `postgres.promote` would make `nairobi-postgres` at site `nairobi` (country \"KE\")",
        ),
        (
            "wrong service kind",
            edit(
                "service = \"port-sudan-postgres\"\nirreversible",
                "service = \"port-sudan-redis\"\nirreversible",
            ),
            13,
            "postgres.promote needs a postgres service, but `port-sudan-redis` is redis",
        ),
        (
            "duplicate step id",
            edit("id = \"promote\"", "id = \"check-lag\""),
            11,
            "duplicate step id `check-lag` (first used on line 5)",
        ),
        (
            "unplanned promote without a lag gate",
            edit(
                "kind = \"postgres.check_lag\"\nservice = \"port-sudan-postgres\"",
                "kind = \"postgres.check_lag\"\nservice = \"khartoum-postgres\"",
            ),
            12,
            "add a `postgres.check_lag` step for `port-sudan-postgres` before promoting it",
        ),
        (
            "planned promote without catching up",
            edit("mode = \"unplanned\"", "mode = \"planned\""),
            12,
            "a planned runbook promises zero data loss",
        ),
        (
            "unknown mode",
            edit("mode = \"unplanned\"", "mode = \"sometimes\""),
            2,
            "unknown variant `sometimes`, expected `unplanned` or `planned`",
        ),
        (
            "bad duration",
            edit(
                "max_lag_bytes = 1024",
                "max_lag_bytes = 1024\ntimeout = \"10 parsecs\"",
            ),
            9,
            "bad duration \"10 parsecs\"",
        ),
        (
            "unknown DNS name",
            format!(
                "{BASE}\n[[steps]]\nid = \"ttl\"\nkind = \"dns.set_ttl\"\nname = \"www.nilecare.sd.\"\nttl = 60\n"
            ),
            20,
            "unknown DNS name `www.nilecare.sd.`; known names: api.nilecare.sd., cache.nilecare.sd., db.nilecare.sd.",
        ),
        (
            "unknown connstr target",
            format!(
                "{BASE}\n[[steps]]\nid = \"swap\"\nkind = \"connstr.swap\"\ntarget = \"haproxy\"\nto_service = \"port-sudan-postgres\"\n"
            ),
            20,
            "unknown connection-string target `haproxy`; known targets: app-env, pgbouncer",
        ),
        (
            "pgbouncer pointed at redis",
            format!(
                "{BASE}\n[[steps]]\nid = \"swap\"\nkind = \"connstr.swap\"\ntarget = \"pgbouncer\"\nto_service = \"port-sudan-redis\"\n"
            ),
            21,
            "connstr.swap needs a postgres service, but `port-sudan-redis` is redis",
        ),
        (
            "unknown site",
            format!(
                "{BASE}\n[[steps]]\nid = \"cut\"\nkind = \"dns.cutover\"\nname = \"dns-db\"\nto_site = \"omdurman\"\n"
            ),
            21,
            "unknown site `omdurman`; known sites:",
        ),
        (
            "rollback on a check",
            edit(
                "max_lag_bytes = 1024",
                "max_lag_bytes = 1024\nrollback = { kind = \"manual.confirm\", item = \"x\" }",
            ),
            9,
            "`postgres.check_lag` changes nothing; remove `rollback`",
        ),
        (
            "unknown key in a rollback",
            format!(
                "{BASE}\n[[steps]]\nid = \"r\"\nkind = \"redis.promote\"\nservice = \"port-sudan-redis\"\nrollback = {{ kind = \"redis.replicaof\", service = \"port-sudan-redis\", off = \"khartoum-redis\" }}\n"
            ),
            21,
            "unknown field `off`",
        ),
        (
            "roles need more approvers",
            format!(
                "{BASE}\n[approval]\nrequired = 1\nroles = [\"incident_commander\", \"engineering_lead\"]\n"
            ),
            18,
            "`required = 1` but 2 roles each need their own approver",
        ),
        (
            "auto-approve without a trigger",
            format!("{BASE}\n[approval]\nauto_approve = true\n"),
            18,
            "`auto_approve = true` only applies to proposals opened by a `[trigger]`",
        ),
        (
            "lock scope misses an acted-on service",
            format!("services = [\"khartoum-postgres\"]\n{BASE}"),
            14,
            "step `promote` acts on `port-sudan-postgres`, which is missing from `services`",
        ),
    ];
    let mut catalog = sandbox_catalog()
        .with_site("nairobi", SiteRole::HotStandby, "KE")
        .with_service(
            "nairobi-postgres",
            niledr_runbooks::ServiceKind::Postgres,
            Some("nairobi"),
            Some("10.0.0.1:5432"),
        );
    catalog.sites.get_mut("nairobi").unwrap().address = None;
    parse_runbook(Path::new("base.toml"), BASE, &catalog).unwrap_or_else(|e| panic!("BASE: {e}"));
    let mut failures = Vec::new();
    for (what, text, line, message) in cases {
        match parse_runbook(Path::new("bad.toml"), &text, &catalog) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) => {
                let shown = e.to_string();
                if e.line != line || !e.message.contains(message) {
                    failures.push(format!(
                        "{what}: expected line {line} with {message:?}, got:\n{shown}\n--- text:\n{text}"
                    ));
                }
                assert!(
                    shown.starts_with(&format!("bad.toml:{}:{}: ", e.line, e.column)),
                    "{shown}"
                );
                assert!(shown.contains('^'), "{what}: no caret:\n{shown}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn error_display_shows_line_and_caret() {
    let text = edit("postgres.promote\"", "postgres.promot\"");
    let e = parse_runbook(
        Path::new("runbooks/nilecare/x.toml"),
        &text,
        &sandbox_catalog(),
    )
    .unwrap_err();
    expect![[r#"
        runbooks/nilecare/x.toml:12:8: unknown step kind `postgres.promot`; known kinds: postgres.check_lag, postgres.fence, postgres.promote, postgres.wait_caught_up, redis.fence, redis.promote, redis.replicaof, connstr.swap, dns.set_ttl, dns.cutover, dns.verify, sql.check, http.check, manual.confirm, wait, platform.mode
           |
        12 | kind = "postgres.promot"
           |        ^^^^^^^^^^^^^^^^^"#]]
    .assert_eq(&e.to_string());
}

const REDIS_BASE: &str = r#"name = "r"
mode = "planned"

[[steps]]
id = "fence"
kind = "redis.fence"
service = "khartoum-redis"
replica = "port-sudan-redis"
timeout = "5s"

[[steps]]
id = "promote"
kind = "redis.promote"
service = "port-sudan-redis"
irreversible = true
reason = "new master"
"#;

fn redis_edit(from: &str, to: &str) -> String {
    assert!(REDIS_BASE.contains(from), "{from:?} not in REDIS_BASE");
    REDIS_BASE.replacen(from, to, 1)
}

#[test]
fn redis_fence_parses_with_an_inverse() {
    let rb = parse_runbook(Path::new("r.toml"), REDIS_BASE, &sandbox_catalog())
        .unwrap_or_else(|e| panic!("{e}"));
    let fence = &rb.steps[0];
    assert_eq!(
        fence.action,
        niledr_runbooks::Action::RedisFence {
            service: "khartoum-redis".into(),
            replica: "port-sudan-redis".into(),
            unreachable_after_ms: None,
        }
    );
    assert_eq!(fence.action.kind().as_str(), "redis.fence");
    assert_eq!(fence.action.acts_on(), Some("khartoum-redis"));
    assert_eq!(fence.timeout_ms, 5_000);
    assert!(matches!(fence.rollback, Rollback::Inverse));
    expect![[r#"
        [
            "khartoum-redis",
            "port-sudan-redis",
        ]
    "#]]
    .assert_debug_eq(&rb.services);
    // Default timeout when none is written.
    let rb = parse_runbook(
        Path::new("r.toml"),
        &redis_edit("timeout = \"5s\"\n", ""),
        &sandbox_catalog(),
    )
    .unwrap();
    assert_eq!(rb.steps[0].timeout_ms, 10_000);
}

#[test]
fn every_shipped_planned_redis_promote_is_fenced() {
    for file in [
        "switchover-khartoum-to-port-sudan.toml",
        "failback-port-sudan-to-khartoum.toml",
        "redis-failback-port-sudan-to-khartoum.toml",
    ] {
        let rb = shipped(file);
        let ids: Vec<(&str, &str)> = rb
            .steps
            .iter()
            .map(|s| (s.id.as_str(), s.action.kind().as_str()))
            .filter(|(_, k)| k.starts_with("redis."))
            .collect();
        let fence = ids.iter().position(|(_, k)| *k == "redis.fence");
        let promote = ids.iter().position(|(_, k)| *k == "redis.promote");
        assert!(
            fence.is_some() && fence < promote,
            "{file}: fence before promote: {ids:?}"
        );
    }
}

#[test]
fn invalid_redis_fences_are_refused_at_their_line() {
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "fence without replica",
            redis_edit("replica = \"port-sudan-redis\"\n", ""),
            6,
            "`redis.fence` needs `replica = \"...\"`",
        ),
        (
            "fence without service",
            redis_edit("service = \"khartoum-redis\"\n", ""),
            6,
            "`redis.fence` needs `service = \"...\"`",
        ),
        (
            "fence of a postgres service",
            redis_edit(
                "service = \"khartoum-redis\"",
                "service = \"khartoum-postgres\"",
            ),
            7,
            "redis.fence needs a redis service, but `khartoum-postgres` is postgres",
        ),
        (
            "replica is a postgres service",
            redis_edit(
                "replica = \"port-sudan-redis\"",
                "replica = \"port-sudan-postgres\"",
            ),
            8,
            "redis.fence needs a redis service, but `port-sudan-postgres` is postgres",
        ),
        (
            "replica is the fenced master",
            redis_edit(
                "replica = \"port-sudan-redis\"",
                "replica = \"khartoum-redis\"",
            ),
            8,
            "`replica` must name the replica that will take over, not the fenced master `khartoum-redis`",
        ),
        (
            "unknown replica",
            redis_edit("replica = \"port-sudan-redis\"", "replica = \"psr\""),
            8,
            "unknown service `psr`",
        ),
        (
            "replica on another kind",
            redis_edit(
                "reason = \"new master\"",
                "reason = \"new master\"\nreplica = \"khartoum-redis\"",
            ),
            17,
            "`replica` does not apply to `redis.promote`; it takes: service",
        ),
        (
            "mode on a redis fence",
            redis_edit("timeout = \"5s\"", "mode = \"read_only\""),
            9,
            "`mode` does not apply to `redis.fence`; it takes: service, replica",
        ),
        (
            "fence declared irreversible without reason",
            redis_edit("timeout = \"5s\"", "irreversible = true"),
            9,
            "`irreversible = true` needs `reason",
        ),
        (
            "planned promote without a fence",
            redis_edit(
                "kind = \"redis.fence\"",
                "kind = \"manual.confirm\"\nitem = \"x\"",
            )
            .replace(
                "service = \"khartoum-redis\"\nreplica = \"port-sudan-redis\"\n",
                "",
            ),
            12,
            "a planned runbook promises zero data loss: add a `redis.fence` step (service = its current master, replica = \"port-sudan-redis\") before promoting `port-sudan-redis`",
        ),
        (
            "planned promote after a fence for another replica",
            redis_edit(
                "service = \"khartoum-redis\"\nreplica = \"port-sudan-redis\"",
                "service = \"port-sudan-redis\"\nreplica = \"khartoum-redis\"",
            ),
            13,
            "add a `redis.fence` step",
        ),
        (
            "fence after the promote",
            format!(
                "{}\n[[steps]]\nid = \"late-fence\"\nkind = \"redis.fence\"\nservice = \"khartoum-redis\"\nreplica = \"port-sudan-redis\"\n",
                redis_edit(
                    "kind = \"redis.fence\"",
                    "kind = \"manual.confirm\"\nitem = \"x\"",
                )
                .replace(
                    "service = \"khartoum-redis\"\nreplica = \"port-sudan-redis\"\n",
                    ""
                )
            ),
            12,
            "add a `redis.fence` step",
        ),
    ];
    let catalog = sandbox_catalog();
    let mut failures = Vec::new();
    for (what, text, line, message) in cases {
        match parse_runbook(Path::new("bad.toml"), &text, &catalog) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if e.line != line || !e.message.contains(message) => failures.push(format!(
                "{what}: expected line {line} with {message:?}, got:\n{e}\n--- text:\n{text}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // An unplanned runbook may promote without a fence (the master is gone).
    let unplanned = redis_edit("mode = \"planned\"", "mode = \"unplanned\"")
        .replace(
            "kind = \"redis.fence\"",
            "kind = \"manual.confirm\"\nitem = \"x\"",
        )
        .replace(
            "service = \"khartoum-redis\"\nreplica = \"port-sudan-redis\"\n",
            "",
        );
    parse_runbook(Path::new("ok.toml"), &unplanned, &catalog).unwrap_or_else(|e| panic!("{e}"));
}

const MODE_BASE: &str = r#"name = "t"
mode = "unplanned"

[[steps]]
id = "check-lag"
kind = "postgres.check_lag"
service = "port-sudan-postgres"
max_lag_bytes = 1024

[[steps]]
id = "tell-apps"
kind = "platform.mode"
level = 4

[[steps]]
id = "promote"
kind = "postgres.promote"
service = "port-sudan-postgres"
irreversible = true
reason = "new timeline"
"#;

#[test]
fn platform_mode_parses_with_an_inverse_and_its_record() {
    let rb = parse_runbook(Path::new("m.toml"), MODE_BASE, &sandbox_catalog())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rb.steps[1].action,
        niledr_runbooks::Action::PlatformMode {
            level: 4,
            message: None
        }
    );
    assert!(matches!(
        rb.steps[1].rollback,
        niledr_runbooks::Rollback::Inverse
    ));
    assert_eq!(
        rb.targets.platform_mode_record.as_deref(),
        Some("_platform-mode.nilecare.sd.")
    );
}

#[test]
fn invalid_platform_modes_are_refused_at_their_line() {
    let edit = |from: &str, to: &str| {
        assert!(MODE_BASE.contains(from), "{from:?}");
        MODE_BASE.replacen(from, to, 1)
    };
    let long = format!("level = 4\nmessage = \"{}\"", "x".repeat(201));
    let cases: Vec<(&str, String, usize, &str)> = vec![
        ("no level", edit("level = 4\n", ""), 12, "needs `level = 0`"),
        (
            "level 3",
            edit("level = 4", "level = 3"),
            13,
            "level 3 is not one niledr sets",
        ),
        (
            "empty message",
            edit("level = 4", "level = 4\nmessage = \" \""),
            14,
            "cannot be empty",
        ),
        (
            "long message",
            edit("level = 4", &long),
            14,
            "at most 200 bytes",
        ),
    ];
    let mut failures = Vec::new();
    for (what, text, line, message) in cases {
        match parse_runbook(Path::new("bad.toml"), &text, &sandbox_catalog()) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if e.line != line || !e.message.contains(message) => {
                failures.push(format!("{what}: expected line {line} {message:?}, got {e}"))
            }
            Err(_) => {}
        }
    }
    let mut no_zone = sandbox_catalog();
    no_zone.platform_mode_record = None;
    match parse_runbook(Path::new("bad.toml"), MODE_BASE, &no_zone) {
        Err(e) if e.line == 12 && e.message.contains("needs a [dns] section") => {}
        other => failures.push(format!("no zone: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
