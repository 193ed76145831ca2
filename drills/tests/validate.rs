//! Drill files: the shipped ones load against the sandbox topology; mistakes are refused with
//! file, line and what to fix.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;

use common::{MINIMAL, parse, runbook_names, sandbox_catalog};
use niledr_drills::shipped::SHIPPED;
use niledr_drills::{ApprovalMode, FaultKind, Store, parse_drill};

#[test]
fn shipped_drills_validate_against_the_sandbox() {
    let catalog = sandbox_catalog();
    let runbooks = runbook_names();
    let mut faults = Vec::new();
    for (file, text) in SHIPPED {
        let d = parse_drill(Path::new(file), text, &catalog, &runbooks)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{}.toml", d.name), *file);
        assert!(d.digest.starts_with("sha256:"), "{}", d.digest);
        assert!(d.schedule.is_some(), "{file} has no schedule");
        assert_eq!(d.timezone, "Africa/Khartoum");
        faults.push(d.scenario.fault);
    }
    for kind in FaultKind::ALL {
        if kind != FaultKind::SiteDown {
            assert!(faults.contains(&kind), "no shipped drill for {kind}");
        }
    }
}

#[test]
fn defaults() {
    let d = parse(MINIMAL).unwrap();
    assert_eq!(d.timezone, "Africa/Khartoum");
    assert_eq!(d.blackout.len(), 1);
    assert_eq!(d.blackout[0].to_string(), "08:00-20:00");
    assert_eq!(d.approval, ApprovalMode::Live);
    assert_eq!(d.abort.rto_factor, 2.0);
    assert_eq!(d.abort.max_lost_writes, None);
    assert_eq!(d.objectives.rto_ms, 240_000);
    assert_eq!(d.objectives.rpo_for(Store::Postgres), Some(60_000));
    assert_eq!(d.objectives.rpo_for(Store::Redis), None);
    assert!(d.cleanup.is_none());
}

#[test]
fn digest_ignores_formatting_but_not_content() {
    let a = parse(MINIMAL).unwrap();
    let reformatted = format!(
        "# a comment\n{}",
        MINIMAL.replace("rto = \"4m\"", "rto = \"240s\"")
    );
    let b = parse(&reformatted).unwrap();
    assert_eq!(a.digest, b.digest);
    let changed = parse(&MINIMAL.replace("\"1m\"", "\"2m\"")).unwrap();
    assert_ne!(a.digest, changed.digest);
    assert_eq!(a.digest, a.compute_digest());
}

/// `(what is replaced, replacement, expected line, expected text in the message)`.
#[test]
fn refusals_point_at_the_line() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "rto = \"4m\"",
            "rto = \"4m\"\nrpo_mysql = \"1m\"",
            10,
            "unknown field `rpo_mysql`",
        ),
        ("\"0 2 1 * *\"", "\"0 2 1 *\"", 3, "4 fields"),
        ("\"0 2 1 * *\"", "\"0 25 1 * *\"", 3, "bad cron"),
        ("\"0 2 1 * *\"", "\"0 2 31 2 *\"", 3, "never fires"),
        (
            "\"0 2 1 * *\"",
            "\"30 12 * * *\"",
            3,
            "only fires inside blackout",
        ),
        (
            "schedule",
            "timezone = \"Africa/Khartum\"\nschedule",
            3,
            "unknown time zone \"Africa/Khartum\"",
        ),
        (
            "schedule",
            "blackout = [\"08:00-2000\"]\nschedule",
            3,
            "bad blackout window",
        ),
        (
            "schedule",
            "blackout = [\"08:00-08:00\"]\nschedule",
            3,
            "is empty",
        ),
        (
            "schedule",
            "blackout = [\"25:00-08:00\"]\nschedule",
            3,
            "bad blackout window",
        ),
        (
            "\"failover-khartoum-to-port-sudan\"",
            "\"failover-khartoum\"",
            4,
            "unknown runbook \"failover-khartoum\"",
        ),
        (
            "\"kill_primary_postgres\"",
            "\"kill_postgres\"",
            6,
            "unknown fault \"kill_postgres\"; expected one of kill_primary_postgres",
        ),
        (
            "\"khartoum-postgres\"",
            "\"khartoum-pg\"",
            7,
            "unknown target \"khartoum-pg\"",
        ),
        (
            "\"khartoum-postgres\"",
            "\"khartoum-redis\"",
            7,
            "does not fit target \"khartoum-redis\" (a redis service)",
        ),
        (
            "\"khartoum-postgres\"",
            "\"khartoum\"",
            7,
            "needs a postgres service",
        ),
        ("rto = \"4m\"", "rto = \"0s\"", 9, "`rto` is zero"),
        (
            "rpo_postgres = \"1m\"",
            "rpo_postgres = \"0ms\"",
            10,
            "`rpo_postgres` is zero",
        ),
        ("rto = \"4m\"", "rto = \"4 parsecs\"", 9, "bad duration"),
        (
            "schedule",
            "approval = \"maybe\"\nschedule",
            3,
            "unknown approval mode",
        ),
        (
            "rpo_postgres = \"1m\"",
            "rpo_postgres = \"1m\"\n[abort]\nrto_factor = 0.5",
            12,
            "`rto_factor` must be a number above 1",
        ),
        (
            "rpo_postgres = \"1m\"",
            "rpo_postgres = \"1m\"\n[cleanup]\nrunbook = \"failback\"",
            12,
            "unknown runbook \"failback\"",
        ),
    ];
    let mut failures = Vec::new();
    for (from, to, line, needle) in cases {
        assert!(MINIMAL.contains(from), "{from}");
        let text = MINIMAL.replacen(from, to, 1);
        match parse(&text) {
            Ok(_) => failures.push(format!("{to}: accepted")),
            Err(err) => {
                if !err.contains(needle) || !err.starts_with(&format!("drills/test.toml:{line}:")) {
                    failures.push(format!("{to}: want line {line} and {needle:?}, got\n{err}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn faults_must_fit_their_targets() {
    let with = |fault: &str, target: &str, extra: &str| {
        parse(
            &MINIMAL
                .replace("kill_primary_postgres", fault)
                .replace("\"khartoum-postgres\"", &format!("\"{target}\"\n{extra}")),
        )
    };
    assert!(with("stop_redis", "khartoum-redis", "").is_ok());
    assert!(with("site_down", "khartoum", "").is_ok());
    assert!(with("planned_switchover", "khartoum-postgres", "").is_ok());
    assert!(with("cold_restore", "dr-cold", "").is_ok());
    assert!(
        with(
            "hang_primary_postgres",
            "khartoum-postgres",
            "lag_before_fault = \"2s\""
        )
        .is_ok()
    );
    let e = with("cold_restore", "port-sudan", "").unwrap_err();
    assert!(e.contains("needs a cold-standby site"), "{e}");
    let e = with("site_down", "khartoum-api", "").unwrap_err();
    assert!(e.contains("needs a site"), "{e}");
    let e = with("stop_redis", "khartoum-redis", "lag_before_fault = \"2s\"").unwrap_err();
    assert!(
        e.contains("`lag_before_fault` does not apply to stop_redis"),
        "{e}"
    );
}

#[test]
fn objectives_need_an_rpo_or_zero_loss() {
    let e = parse(&MINIMAL.replace("rpo_postgres = \"1m\"", "")).unwrap_err();
    assert!(e.contains("needs an RPO"), "{e}");
    let d = parse(&MINIMAL.replace("rpo_postgres = \"1m\"", "no_lost_writes = true")).unwrap();
    assert!(d.objectives.no_lost_writes);
}

#[test]
fn blackout_can_be_disabled_or_wrap_midnight() {
    let d = parse(&MINIMAL.replace("schedule", "blackout = []\nschedule")).unwrap();
    assert!(d.blackout.is_empty());
    let d = parse(&MINIMAL.replace(
        "schedule",
        "blackout = [\"22:00-03:00\", \"18:00-24:00\"]\nschedule",
    ));
    let e = d.unwrap_err();
    assert!(
        e.contains("only fires inside blackout (22:00-03:00, 18:00-00:00 Africa/Khartoum)"),
        "{e}"
    );
}
