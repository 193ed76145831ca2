//! Drill files: the shipped ones load against the sandbox topology; mistakes are refused with
//! file, line and what to fix.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;

use common::{AUTOMATED, MINIMAL, parse, runbook_infos, sandbox_catalog};
use niledr_drills::shipped::SHIPPED;
use niledr_drills::{ApprovalMode, FaultKind, HostAction, Scenario, Store, parse_drill};

#[test]
fn shipped_drills_validate_against_the_sandbox() {
    let catalog = sandbox_catalog();
    let runbooks = runbook_infos();
    let mut faults = Vec::new();
    for (file, text) in SHIPPED {
        let d = parse_drill(Path::new(file), text, &catalog, &runbooks)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{}.toml", d.name), *file);
        assert!(d.digest.starts_with("sha256:"), "{}", d.digest);
        assert!(d.schedule.is_some(), "{file} has no schedule");
        assert_eq!(d.timezone, "Africa/Khartoum");
        assert!(d.cleanup.is_some(), "{file} has no cleanup runbook");
        // Shipped drills run unattended: every manual step of the runbook and the cleanup
        // runbook is performed by the drill.
        let names = [Some(&d.runbook), d.cleanup.as_ref().map(|c| &c.runbook)];
        for name in names.into_iter().flatten() {
            let info = runbooks.iter().find(|r| &r.name == name).unwrap();
            for step in &info.manual_steps {
                assert!(
                    d.automation_for(step).is_some(),
                    "{file}: manual step `{step}` of `{name}` is not automated"
                );
            }
        }
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
    assert!(d.automate.is_empty());
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

#[test]
fn automate_names_manual_steps_and_host_actions() {
    let d = parse(AUTOMATED).unwrap();
    assert_eq!(d.automate.len(), 2);
    let a = d.automation_for("reseed-khartoum").unwrap();
    assert_eq!(a.target.as_deref(), Some("khartoum-postgres"));
    assert_eq!(a.action, HostAction::Reseed);
    assert_eq!(a.of.as_deref(), Some("port-sudan-postgres"));
    assert_eq!(a.note, None);
    let a = d.automation_for("reseed-port-sudan").unwrap();
    assert_eq!(a.of.as_deref(), Some("khartoum-postgres"));
    assert!(d.automation_for("cutover-db").is_none());

    // `confirm` with a note; a note on a host action is fine too.
    let d = parse(&AUTOMATED.replacen(
        "target = \"khartoum-postgres\"\naction = \"reseed\"\nof = \"port-sudan-postgres\"",
        "action = \"confirm\"\nnote = \"  re-seeded by hand before the drill  \"",
        1,
    ))
    .unwrap();
    let a = d.automation_for("reseed-khartoum").unwrap();
    assert_eq!(a.action, HostAction::Confirm);
    assert_eq!(a.target, None);
    assert_eq!(
        a.note.as_deref(),
        Some("re-seeded by hand before the drill")
    );
    let d = parse(&AUTOMATED.replacen(
        "of = \"khartoum-postgres\"",
        "of = \"khartoum-postgres\"\nnote = \"pg_rewind first\"",
        1,
    ))
    .unwrap();
    let a = d.automation_for("reseed-port-sudan").unwrap();
    assert_eq!(a.note.as_deref(), Some("pg_rewind first"));

    // Every action on a target it fits is accepted.
    let cold = include_str!("../nilecare/cold-site-restore.toml");
    let fits: &[(&str, &str)] = &[
        ("khartoum-postgres", "kill"),
        ("khartoum-postgres", "hang"),
        ("khartoum-postgres", "resume"),
        ("khartoum-postgres", "stop"),
        ("khartoum-postgres", "start"),
        ("port-sudan-postgres", "detach_wal"),
        ("port-sudan-postgres", "attach_wal"),
        ("khartoum-redis", "kill"),
        ("port-sudan-redis", "hang"),
        ("khartoum-redis", "resume"),
        ("khartoum-redis", "stop"),
        ("khartoum-redis", "start"),
        ("khartoum", "kill"),
        ("port-sudan", "start"),
        ("dr-cold", "restore"),
        ("dr-cold", "recover"),
        ("dr-cold", "retire"),
    ];
    let restore = "target = \"dr-cold\"\naction = \"restore\"";
    assert_eq!(cold.matches(restore).count(), 1);
    for (target, action) in fits {
        let text = cold.replacen(
            restore,
            &format!("target = \"{target}\"\naction = \"{action}\""),
            1,
        );
        let d = parse(&text).unwrap_or_else(|e| panic!("{target} {action}: {e}"));
        let a = d.automation_for("restore-base-backup").unwrap();
        assert_eq!(a.action.as_str(), *action);
        assert_eq!(a.target.as_deref(), Some(*target));
    }
}

/// `(what is replaced in AUTOMATED, replacement, expected line, expected text in the message)`.
#[test]
fn automate_refusals_point_at_the_value() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "\"reseed-khartoum\"",
            "\"reseed-kartoum\"",
            14,
            "\"reseed-kartoum\" is not a manual step of runbook `failover-khartoum-to-port-sudan` or cleanup runbook `failback-port-sudan-to-khartoum`: `[[automate]]` names `manual.confirm` steps (steps of other kinds run by themselves); manual steps of runbook `failover-khartoum-to-port-sudan`: none; cleanup runbook `failback-port-sudan-to-khartoum`: reseed-khartoum, reseed-port-sudan",
        ),
        // A step of the runbook, but not a manual one.
        (
            "step = \"reseed-khartoum\"",
            "step = \"promote-khartoum-pg\"",
            14,
            "\"promote-khartoum-pg\" is not a manual step of runbook",
        ),
        // The failback's steps without the failback as cleanup.
        (
            "[cleanup]\nrunbook = \"failback-port-sudan-to-khartoum\"\n",
            "",
            12,
            "\"reseed-khartoum\" is not a manual step of runbook `failover-khartoum-to-port-sudan`: `[[automate]]` names `manual.confirm` steps (steps of other kinds run by themselves); manual steps of runbook `failover-khartoum-to-port-sudan`: none",
        ),
        (
            "step = \"reseed-port-sudan\"",
            "step = \"reseed-khartoum\"",
            19,
            "step `reseed-khartoum` is automated twice (first on line 14); keep one `[[automate]]` table per step",
        ),
        (
            "action = \"reseed\"\nof = \"port-sudan-postgres\"",
            "action = \"reseed_from\"\nof = \"port-sudan-postgres\"",
            16,
            "unknown action \"reseed_from\"; expected one of kill, hang, resume, stop, start, detach_wal, attach_wal, reseed, restore, recover, retire, confirm",
        ),
        (
            "target = \"khartoum-postgres\"\naction",
            "target = \"khartoum-pg\"\naction",
            15,
            "unknown target \"khartoum-pg\"; services: ",
        ),
        (
            "target = \"khartoum-postgres\"\naction",
            "target = \"khartoum-redis\"\naction",
            16,
            "action `reseed` does not fit target \"khartoum-redis\" (a redis service); actions that fit \"khartoum-redis\": kill, hang, resume, stop, start; targets that fit `reseed`: khartoum-postgres, port-sudan-postgres",
        ),
        (
            "target = \"khartoum-postgres\"\naction",
            "target = \"dr-cold\"\naction",
            16,
            "action `reseed` does not fit target \"dr-cold\" (a cold_standby site); actions that fit \"dr-cold\": restore, recover, retire",
        ),
        (
            "target = \"khartoum-postgres\"\naction",
            "target = \"khartoum-api\"\naction",
            16,
            "actions that fit \"khartoum-api\": none (the host agent acts on postgres and redis services and on sites)",
        ),
        (
            "action = \"reseed\"\nof = \"port-sudan-postgres\"",
            "action = \"restore\"",
            16,
            "action `restore` does not fit target \"khartoum-postgres\" (a postgres service); actions that fit \"khartoum-postgres\": kill, hang, resume, stop, start, detach_wal, attach_wal, reseed; targets that fit `restore`: dr-cold",
        ),
        (
            "target = \"khartoum-postgres\"\naction = \"reseed\"\nof = \"port-sudan-postgres\"",
            "target = \"khartoum\"\naction = \"stop\"",
            16,
            "action `stop` does not fit target \"khartoum\" (a primary site); actions that fit \"khartoum\": kill, start; targets that fit `stop`: khartoum-postgres, khartoum-redis, port-sudan-postgres, port-sudan-redis",
        ),
        (
            "target = \"khartoum-postgres\"\naction = \"reseed\"",
            "action = \"reseed\"",
            15,
            "`reseed` needs a `target`; targets that fit `reseed`: khartoum-postgres, port-sudan-postgres",
        ),
        (
            "action = \"reseed\"\nof = \"port-sudan-postgres\"",
            "action = \"confirm\"",
            15,
            "`confirm` takes no `target`: the drill confirms the step itself and no host acts",
        ),
        (
            "target = \"khartoum-postgres\"\naction = \"reseed\"",
            "action = \"confirm\"",
            16,
            "`of` only goes with `reseed` (the service to follow); remove it from this `confirm`",
        ),
        (
            "action = \"reseed\"\nof = \"port-sudan-postgres\"",
            "action = \"kill\"\nof = \"port-sudan-postgres\"",
            17,
            "`of` only goes with `reseed` (the service to follow); remove it from this `kill`",
        ),
        (
            "of = \"port-sudan-postgres\"\n",
            "",
            16,
            "`reseed` needs `of`: the postgres service the target follows once re-seeded; one of port-sudan-postgres",
        ),
        (
            "of = \"port-sudan-postgres\"",
            "of = \"khartoum-postgres\"",
            17,
            "\"khartoum-postgres\" is not one; one of port-sudan-postgres",
        ),
        (
            "of = \"port-sudan-postgres\"",
            "of = \"port-sudan-redis\"",
            17,
            "\"port-sudan-redis\" is not one; one of port-sudan-postgres",
        ),
        (
            "of = \"port-sudan-postgres\"",
            "follow = \"port-sudan-postgres\"",
            17,
            "unknown field `follow`",
        ),
        (
            "step = \"reseed-khartoum\"\n",
            "",
            13,
            "missing field `step`",
        ),
    ];
    let mut failures = Vec::new();
    for (from, to, line, needle) in cases {
        assert_eq!(AUTOMATED.matches(from).count(), 1, "{from}");
        let text = AUTOMATED.replacen(from, to, 1);
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
fn automate_is_part_of_the_digest() {
    let a = parse(AUTOMATED).unwrap();
    let b = parse(&AUTOMATED.replacen("action = \"reseed\"", "action = \"reseed\"  # same", 1))
        .unwrap();
    assert_eq!(a.digest, b.digest);
    let c = parse(&AUTOMATED.replacen(
        "of = \"khartoum-postgres\"",
        "of = \"khartoum-postgres\"\nnote = \"pg_rewind\"",
        1,
    ))
    .unwrap();
    assert_ne!(a.digest, c.digest);
    let without = parse(&AUTOMATED[..AUTOMATED.find("[[automate]]").unwrap()]).unwrap();
    assert_ne!(a.digest, without.digest);
    assert_eq!(a.digest, a.compute_digest());
}

/// A drill without `[[automate]]` keeps the digest it had before the key existed, so standing
/// approvals of such files stay valid.
#[test]
fn digest_without_automate_is_unchanged() {
    assert_eq!(parse(MINIMAL).unwrap().digest, MINIMAL_DIGEST);
}

/// `MINIMAL`'s digest as computed before `[[automate]]` existed.
const MINIMAL_DIGEST: &str =
    "sha256:6242a650b63f2c174dca80ba73d532d269beef85c3c4114d22c1bb1636f52f90";

#[test]
fn host_actions_round_trip() {
    for a in HostAction::ALL {
        assert_eq!(HostAction::parse(a.as_str()), Some(a));
        assert_eq!(a.to_string(), a.as_str());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            format!("\"{}\"", a.as_str())
        );
    }
    assert_eq!(HostAction::parse("Kill"), None);
}

#[test]
fn fault_actions_for_the_host_agent() {
    use HostAction::*;
    let catalog = sandbox_catalog();
    type Expected = &'static [(&'static str, HostAction, HostAction)];
    let cases: &[(FaultKind, &str, Expected)] = &[
        (
            FaultKind::KillPrimaryPostgres,
            "khartoum-postgres",
            &[("khartoum-postgres", Kill, Start)],
        ),
        (
            FaultKind::HangPrimaryPostgres,
            "khartoum-postgres",
            &[("khartoum-postgres", Hang, Resume)],
        ),
        (
            FaultKind::StopRedis,
            "khartoum-redis",
            &[("khartoum-redis", Stop, Start)],
        ),
        (
            FaultKind::SiteDown,
            "khartoum",
            &[("khartoum", Kill, Start)],
        ),
        (FaultKind::PlannedSwitchover, "khartoum", &[]),
        (
            FaultKind::ColdRestore,
            "dr-cold",
            &[
                ("khartoum-postgres", Kill, Start),
                ("port-sudan-postgres", Kill, Start),
            ],
        ),
    ];
    for (fault, target, want) in cases {
        let scenario = Scenario {
            fault: *fault,
            target: (*target).to_string(),
            lag_before_fault_ms: None,
        };
        let got = scenario.fault_actions(&catalog);
        let want: Vec<(String, HostAction, HostAction)> = want
            .iter()
            .map(|(t, i, u)| ((*t).to_string(), *i, *u))
            .collect();
        assert_eq!(got, want, "{fault}");
    }
    assert_eq!(cases.len(), FaultKind::ALL.len());
}
