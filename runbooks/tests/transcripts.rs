//! Transcript tests: one per shipped runbook. Feed events to the execution machine and
//! snapshot the transitions and effects. The machine goes through a serde round trip after
//! every event, as it would when the orchestrator persists it and resumes after a crash.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::fmt::Write as _;

use common::shipped;
use expect_test::{Expect, expect};
use niledr_runbooks::{Effect, Event, Machine, State};

/// Events, one per line:
/// `submit D`, `approved`, `rejected`, `expire`, `start`, `ok`, `ok*` (the current step, or
/// all remaining), `fail MSG` / `fail! MSG` (retryable / not), `retry`, `verified`,
/// `verify-failed MSG`, `pause`, `resume`, `cancel`, `undone`, `undo-failed MSG`, `drift WHAT`.
fn check(runbook: &str, script: &str, expect: Expect) {
    let rb = shipped(runbook);
    let mut m = Machine::new(&rb);
    let mut out = String::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let repeat = line == "ok*";
        loop {
            let event = parse(line, m.state());
            let _ = writeln!(out, "> {}", show_event(&event, &m));
            let outbox = m.handle(&event);
            for t in &outbox.transitions {
                let _ = writeln!(out, "    {} -> {}", t.from, t.to);
            }
            for e in &outbox.effects {
                let _ = writeln!(out, "    + {}", show_effect(e));
            }
            if let Some(r) = &outbox.refused {
                let _ = writeln!(out, "    ! refused: {r}");
            }
            // Persist and resume, as after a crash.
            let saved = serde_json::to_string(&m).unwrap();
            let resumed: Machine = serde_json::from_str(&saved).unwrap();
            assert_eq!(resumed, m);
            m = resumed;
            if !(repeat && matches!(m.state(), State::Running { .. })) {
                break;
            }
        }
    }
    let x = m.execution();
    let _ = writeln!(out, "= {}", m.state());
    if let Some(f) = &x.failure {
        let _ = writeln!(out, "  failure: {f}");
    }
    if !x.not_undone.is_empty() {
        let _ = writeln!(out, "  not undone: {}", x.not_undone.join(", "));
    }
    expect.assert_eq(&out);
}

fn parse(line: &str, state: &State) -> Event {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let current = match state {
        State::Running { step } | State::RollingBack { step } | State::NeedsOperator { step } => {
            *step
        }
        _ => usize::MAX,
    };
    match word {
        "submit" => Event::Submit {
            digest: rest.into(),
        },
        "approved" => Event::Approved,
        "rejected" => Event::Rejected,
        "expire" => Event::Expire,
        "start" => Event::Start,
        "ok" | "ok*" => Event::StepSucceeded { index: current },
        "fail" | "fail!" | "fail0" => Event::StepFailed {
            index: current,
            retryable: word == "fail",
            error: rest.into(),
            untouched: word == "fail0",
        },
        "roll-forward" => Event::Retry {
            index: rest.parse().unwrap(),
        },
        "not-ready" => Event::NotReady {
            details: vec![rest.into()],
        },
        "retry" => Event::RetryDue { index: current },
        "verified" => Event::VerifySucceeded,
        "verify-failed" => Event::VerifyFailed { error: rest.into() },
        "pause" => Event::Pause,
        "resume" => Event::Resume,
        "cancel" => Event::Cancel,
        "undone" => Event::RollbackStepDone { index: current },
        "undo-failed" => Event::RollbackStepFailed {
            index: current,
            error: rest.into(),
        },
        "drift" => Event::PreconditionsDrifted {
            details: vec![rest.into()],
        },
        other => panic!("unknown event {other:?}"),
    }
}

fn step_id(m: &Machine, index: usize) -> &str {
    m.execution()
        .steps
        .get(index)
        .map_or("?", |s| s.id.as_str())
}

fn show_event(e: &Event, m: &Machine) -> String {
    match e {
        Event::StepSucceeded { index } => format!("step_succeeded {index} {}", step_id(m, *index)),
        Event::StepFailed {
            index,
            retryable,
            error,
            untouched,
        } => format!(
            "step_failed {index} {} retryable={retryable}{}: {error}",
            step_id(m, *index),
            if *untouched { " untouched" } else { "" }
        ),
        Event::RetryDue { index } => format!("retry_due {index} {}", step_id(m, *index)),
        Event::RollbackStepDone { index } => {
            format!("rollback_step_done {index} {}", step_id(m, *index))
        }
        Event::RollbackStepFailed { index, error } => {
            format!(
                "rollback_step_failed {index} {}: {error}",
                step_id(m, *index)
            )
        }
        other => serde_json::to_string(other).unwrap(),
    }
}

fn show_effect(e: &Effect) -> String {
    match e {
        Effect::RunStep {
            index,
            step,
            attempt,
        } => format!("run {index} {step} (attempt {attempt})"),
        Effect::ScheduleRetry {
            index,
            step,
            attempt,
            after_ms,
        } => format!("retry {index} {step} as attempt {attempt} in {after_ms}ms"),
        Effect::RollbackStep { index, step } => format!("rollback {index} {step}"),
        Effect::Verify => "verify".into(),
        Effect::Notify { level, message } => format!("notify {level:?}: {message}"),
    }
}

#[test]
fn failover_happy_path() {
    check(
        "failover-khartoum-to-port-sudan.toml",
        "submit d1\napproved\nstart\nok*\nverified",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 check-lag (attempt 1)
            > step_succeeded 0 check-lag
                running{step: 0} -> running{step: 1}
                + run 1 platform-failover-in-progress (attempt 1)
            > step_succeeded 1 platform-failover-in-progress
                running{step: 1} -> running{step: 2}
                + run 2 fence-khartoum-pg (attempt 1)
            > step_succeeded 2 fence-khartoum-pg
                running{step: 2} -> running{step: 3}
                + run 3 fence-khartoum-redis (attempt 1)
            > step_succeeded 3 fence-khartoum-redis
                running{step: 3} -> running{step: 4}
                + run 4 promote-port-sudan-pg (attempt 1)
            > step_succeeded 4 promote-port-sudan-pg
                running{step: 4} -> running{step: 5}
                + run 5 promote-port-sudan-redis (attempt 1)
            > step_succeeded 5 promote-port-sudan-redis
                running{step: 5} -> running{step: 6}
                + run 6 khartoum-redis-follows (attempt 1)
            > step_succeeded 6 khartoum-redis-follows
                running{step: 6} -> running{step: 7}
                + run 7 swap-app-env (attempt 1)
            > step_succeeded 7 swap-app-env
                running{step: 7} -> running{step: 8}
                + run 8 swap-pgbouncer (attempt 1)
            > step_succeeded 8 swap-pgbouncer
                running{step: 8} -> running{step: 9}
                + run 9 ttl-db (attempt 1)
            > step_succeeded 9 ttl-db
                running{step: 9} -> running{step: 10}
                + run 10 cutover-db (attempt 1)
            > step_succeeded 10 cutover-db
                running{step: 10} -> running{step: 11}
                + run 11 cutover-cache (attempt 1)
            > step_succeeded 11 cutover-cache
                running{step: 11} -> running{step: 12}
                + run 12 cutover-api (attempt 1)
            > step_succeeded 12 cutover-api
                running{step: 12} -> running{step: 13}
                + run 13 verify-db (attempt 1)
            > step_succeeded 13 verify-db
                running{step: 13} -> running{step: 14}
                + run 14 verify-cache (attempt 1)
            > step_succeeded 14 verify-cache
                running{step: 14} -> running{step: 15}
                + run 15 verify-api (attempt 1)
            > step_succeeded 15 verify-api
                running{step: 15} -> running{step: 16}
                + run 16 smoke-sql (attempt 1)
            > step_succeeded 16 smoke-sql
                running{step: 16} -> running{step: 17}
                + run 17 platform-dr-mode (attempt 1)
            > step_succeeded 17 platform-dr-mode
                running{step: 17} -> verifying
                + verify
            > {"event":"verify_succeeded"}
                verifying -> succeeded
                + notify Info: failover-khartoum-to-port-sudan succeeded
            = succeeded
        "#]],
    );
}

#[test]
fn failover_dns_cutover_fails_past_the_point_of_no_return_and_rolls_forward() {
    check(
        "failover-khartoum-to-port-sudan.toml",
        "submit d1\napproved\nstart\nok\nok\nok\nok\nok\nok\nok\nok\nok\n\
         fail DNS servers unreachable\nretry\nfail DNS servers unreachable\nretry\n\
         fail DNS servers unreachable\nundone\nroll-forward 9\nok*\nverified",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 check-lag (attempt 1)
            > step_succeeded 0 check-lag
                running{step: 0} -> running{step: 1}
                + run 1 platform-failover-in-progress (attempt 1)
            > step_succeeded 1 platform-failover-in-progress
                running{step: 1} -> running{step: 2}
                + run 2 fence-khartoum-pg (attempt 1)
            > step_succeeded 2 fence-khartoum-pg
                running{step: 2} -> running{step: 3}
                + run 3 fence-khartoum-redis (attempt 1)
            > step_succeeded 3 fence-khartoum-redis
                running{step: 3} -> running{step: 4}
                + run 4 promote-port-sudan-pg (attempt 1)
            > step_succeeded 4 promote-port-sudan-pg
                running{step: 4} -> running{step: 5}
                + run 5 promote-port-sudan-redis (attempt 1)
            > step_succeeded 5 promote-port-sudan-redis
                running{step: 5} -> running{step: 6}
                + run 6 khartoum-redis-follows (attempt 1)
            > step_succeeded 6 khartoum-redis-follows
                running{step: 6} -> running{step: 7}
                + run 7 swap-app-env (attempt 1)
            > step_succeeded 7 swap-app-env
                running{step: 7} -> running{step: 8}
                + run 8 swap-pgbouncer (attempt 1)
            > step_succeeded 8 swap-pgbouncer
                running{step: 8} -> running{step: 9}
                + run 9 ttl-db (attempt 1)
            > step_failed 9 ttl-db retryable=true: DNS servers unreachable
                + retry 9 ttl-db as attempt 2 in 1000ms
            > retry_due 9 ttl-db
                running{step: 9} -> running{step: 9}
                + run 9 ttl-db (attempt 2)
            > step_failed 9 ttl-db retryable=true: DNS servers unreachable
                + retry 9 ttl-db as attempt 3 in 2000ms
            > retry_due 9 ttl-db
                running{step: 9} -> running{step: 9}
                + run 9 ttl-db (attempt 3)
            > step_failed 9 ttl-db retryable=true: DNS servers unreachable
                running{step: 9} -> needs_operator{step: 9}
                + notify Critical: step ttl-db failed after 3 attempt(s): DNS servers unreachable; past the point of no return nothing is rolled back (the old side stays fenced): fix the cause and `retry ttl-db` to roll forward, or run the failback runbook
            > rollback_step_done 9 ttl-db
                ! refused: rollback_step_done does not apply while needing an operator
            > {"event":"retry","index":9}
                needs_operator{step: 9} -> running{step: 9}
                + run 9 ttl-db (attempt 4)
            > step_succeeded 9 ttl-db
                running{step: 9} -> running{step: 10}
                + run 10 cutover-db (attempt 1)
            > step_succeeded 10 cutover-db
                running{step: 10} -> running{step: 11}
                + run 11 cutover-cache (attempt 1)
            > step_succeeded 11 cutover-cache
                running{step: 11} -> running{step: 12}
                + run 12 cutover-api (attempt 1)
            > step_succeeded 12 cutover-api
                running{step: 12} -> running{step: 13}
                + run 13 verify-db (attempt 1)
            > step_succeeded 13 verify-db
                running{step: 13} -> running{step: 14}
                + run 14 verify-cache (attempt 1)
            > step_succeeded 14 verify-cache
                running{step: 14} -> running{step: 15}
                + run 15 verify-api (attempt 1)
            > step_succeeded 15 verify-api
                running{step: 15} -> running{step: 16}
                + run 16 smoke-sql (attempt 1)
            > step_succeeded 16 smoke-sql
                running{step: 16} -> running{step: 17}
                + run 17 platform-dr-mode (attempt 1)
            > step_succeeded 17 platform-dr-mode
                running{step: 17} -> verifying
                + verify
            > {"event":"verify_succeeded"}
                verifying -> succeeded
                + notify Info: failover-khartoum-to-port-sudan succeeded
            = succeeded
        "#]],
    );
}

#[test]
fn switchover_drift_then_pause_and_resume() {
    check(
        "switchover-khartoum-to-port-sudan.toml",
        "submit d1\napproved\ndrift lag grew by 40 MiB\nsubmit d2\napproved\nstart\nok\npause\nok\nresume\nok*\nverified",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"preconditions_drifted","details":["lag grew by 40 MiB"]}
                approved -> awaiting_approval
                + notify Warning: preconditions drifted since approval (lag grew by 40 MiB); fresh approval needed
            > {"event":"submit","digest":"d2"}
                + notify Warning: the plan changed (now d2): approvals of the old plan no longer count
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 check-lag (attempt 1)
            > step_succeeded 0 check-lag
                running{step: 0} -> running{step: 1}
                + run 1 ttl-db (attempt 1)
            > {"event":"pause"}
                + notify Info: pausing after step ttl-db finishes
            > step_succeeded 1 ttl-db
                running{step: 1} -> paused{next: 2}
            > {"event":"resume"}
                paused{next: 2} -> running{step: 2}
                + run 2 platform-failover-in-progress (attempt 1)
            > step_succeeded 2 platform-failover-in-progress
                running{step: 2} -> running{step: 3}
                + run 3 fence-khartoum-pg (attempt 1)
            > step_succeeded 3 fence-khartoum-pg
                running{step: 3} -> running{step: 4}
                + run 4 wait-caught-up (attempt 1)
            > step_succeeded 4 wait-caught-up
                running{step: 4} -> running{step: 5}
                + run 5 promote-port-sudan-pg (attempt 1)
            > step_succeeded 5 promote-port-sudan-pg
                running{step: 5} -> running{step: 6}
                + run 6 fence-khartoum-redis (attempt 1)
            > step_succeeded 6 fence-khartoum-redis
                running{step: 6} -> running{step: 7}
                + run 7 promote-port-sudan-redis (attempt 1)
            > step_succeeded 7 promote-port-sudan-redis
                running{step: 7} -> running{step: 8}
                + run 8 khartoum-redis-follows (attempt 1)
            > step_succeeded 8 khartoum-redis-follows
                running{step: 8} -> running{step: 9}
                + run 9 swap-app-env (attempt 1)
            > step_succeeded 9 swap-app-env
                running{step: 9} -> running{step: 10}
                + run 10 swap-pgbouncer (attempt 1)
            > step_succeeded 10 swap-pgbouncer
                running{step: 10} -> running{step: 11}
                + run 11 cutover-db (attempt 1)
            > step_succeeded 11 cutover-db
                running{step: 11} -> running{step: 12}
                + run 12 cutover-cache (attempt 1)
            > step_succeeded 12 cutover-cache
                running{step: 12} -> running{step: 13}
                + run 13 cutover-api (attempt 1)
            > step_succeeded 13 cutover-api
                running{step: 13} -> running{step: 14}
                + run 14 verify-db (attempt 1)
            > step_succeeded 14 verify-db
                running{step: 14} -> running{step: 15}
                + run 15 smoke-sql (attempt 1)
            > step_succeeded 15 smoke-sql
                running{step: 15} -> running{step: 16}
                + run 16 platform-dr-mode (attempt 1)
            > step_succeeded 16 platform-dr-mode
                running{step: 16} -> verifying
                + verify
            > {"event":"verify_succeeded"}
                verifying -> succeeded
                + notify Info: switchover-khartoum-to-port-sudan succeeded
            = succeeded
        "#]],
    );
}

#[test]
fn failback_verification_fails() {
    check(
        "failback-port-sudan-to-khartoum.toml",
        "submit d1\napproved\nstart\nok*\nverify-failed writes through db.nilecare.sd. time out\nundone\ncancel",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 reseed-khartoum (attempt 1)
            > step_succeeded 0 reseed-khartoum
                running{step: 0} -> running{step: 1}
                + run 1 khartoum-pg-streams (attempt 1)
            > step_succeeded 1 khartoum-pg-streams
                running{step: 1} -> running{step: 2}
                + run 2 khartoum-redis-follows (attempt 1)
            > step_succeeded 2 khartoum-redis-follows
                running{step: 2} -> running{step: 3}
                + run 3 khartoum-redis-streams (attempt 1)
            > step_succeeded 3 khartoum-redis-streams
                running{step: 3} -> running{step: 4}
                + run 4 check-lag (attempt 1)
            > step_succeeded 4 check-lag
                running{step: 4} -> running{step: 5}
                + run 5 ttl-db (attempt 1)
            > step_succeeded 5 ttl-db
                running{step: 5} -> running{step: 6}
                + run 6 platform-failover-in-progress (attempt 1)
            > step_succeeded 6 platform-failover-in-progress
                running{step: 6} -> running{step: 7}
                + run 7 fence-port-sudan-pg (attempt 1)
            > step_succeeded 7 fence-port-sudan-pg
                running{step: 7} -> running{step: 8}
                + run 8 wait-caught-up (attempt 1)
            > step_succeeded 8 wait-caught-up
                running{step: 8} -> running{step: 9}
                + run 9 promote-khartoum-pg (attempt 1)
            > step_succeeded 9 promote-khartoum-pg
                running{step: 9} -> running{step: 10}
                + run 10 fence-port-sudan-redis (attempt 1)
            > step_succeeded 10 fence-port-sudan-redis
                running{step: 10} -> running{step: 11}
                + run 11 promote-khartoum-redis (attempt 1)
            > step_succeeded 11 promote-khartoum-redis
                running{step: 11} -> running{step: 12}
                + run 12 port-sudan-redis-follows (attempt 1)
            > step_succeeded 12 port-sudan-redis-follows
                running{step: 12} -> running{step: 13}
                + run 13 swap-app-env (attempt 1)
            > step_succeeded 13 swap-app-env
                running{step: 13} -> running{step: 14}
                + run 14 swap-pgbouncer (attempt 1)
            > step_succeeded 14 swap-pgbouncer
                running{step: 14} -> running{step: 15}
                + run 15 cutover-db (attempt 1)
            > step_succeeded 15 cutover-db
                running{step: 15} -> running{step: 16}
                + run 16 cutover-cache (attempt 1)
            > step_succeeded 16 cutover-cache
                running{step: 16} -> running{step: 17}
                + run 17 cutover-api (attempt 1)
            > step_succeeded 17 cutover-api
                running{step: 17} -> running{step: 18}
                + run 18 verify-db (attempt 1)
            > step_succeeded 18 verify-db
                running{step: 18} -> running{step: 19}
                + run 19 smoke-sql (attempt 1)
            > step_succeeded 19 smoke-sql
                running{step: 19} -> running{step: 20}
                + run 20 platform-normal (attempt 1)
            > step_succeeded 20 platform-normal
                running{step: 20} -> running{step: 21}
                + run 21 reseed-port-sudan (attempt 1)
            > step_succeeded 21 reseed-port-sudan
                running{step: 21} -> running{step: 22}
                + run 22 port-sudan-pg-streams (attempt 1)
            > step_succeeded 22 port-sudan-pg-streams
                running{step: 22} -> verifying
                + verify
            > {"event":"verify_failed","error":"writes through db.nilecare.sd. time out"}
                verifying -> needs_operator{step: 23}
                + notify Critical: verification failed: writes through db.nilecare.sd. time out; past the point of no return nothing is rolled back (the old side stays fenced): fix the cause and `retry verify` to roll forward, or run the failback runbook
            > rollback_step_done 23 ?
                ! refused: rollback_step_done does not apply while needing an operator
            > {"event":"cancel"}
                needs_operator{step: 23} -> failed{needs_operator: true}
            = failed{needs_operator: true}
              failure: closed by an operator past the point of no return: nothing was undone; finish by hand or run the failback runbook
        "#]],
    );
}

#[test]
fn redis_failover_cutover_refused_past_the_point_of_no_return() {
    check(
        "redis-failover-khartoum-to-port-sudan.toml",
        "submit d1\napproved\nstart\nok\nok\nfail! prerequisite failed: cache.nilecare.sd. answers 127.0.9.9\nundo-failed TSIG authentication failed\nresume\nroll-forward 7",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 platform-failover-in-progress (attempt 1)
            > step_succeeded 0 platform-failover-in-progress
                running{step: 0} -> running{step: 1}
                + run 1 promote-port-sudan-redis (attempt 1)
            > step_succeeded 1 promote-port-sudan-redis
                running{step: 1} -> running{step: 2}
                + run 2 ttl-cache (attempt 1)
            > step_failed 2 ttl-cache retryable=false: prerequisite failed: cache.nilecare.sd. answers 127.0.9.9
                running{step: 2} -> needs_operator{step: 2}
                + notify Critical: step ttl-cache failed after 1 attempt(s): prerequisite failed: cache.nilecare.sd. answers 127.0.9.9; past the point of no return nothing is rolled back (the old side stays fenced): fix the cause and `retry ttl-cache` to roll forward, or run the failback runbook
            > rollback_step_failed 2 ttl-cache: TSIG authentication failed
                ! refused: rollback_step_failed does not apply while needing an operator
            > {"event":"resume"}
                ! refused: resume does not apply while needing an operator
            > {"event":"retry","index":7}
                ! refused: no step 7: the runbook has 6 steps
            = needs_operator{step: 2}
              failure: step ttl-cache failed after 1 attempt(s): prerequisite failed: cache.nilecare.sd. answers 127.0.9.9
        "#]],
    );
}

#[test]
fn failover_fence_fails_before_the_point_of_no_return_and_rolls_back() {
    check(
        "failover-khartoum-to-port-sudan.toml",
        "submit d1\napproved\nstart\nok\nok\nok\nfail0 could not connect\nundone\nundone",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 check-lag (attempt 1)
            > step_succeeded 0 check-lag
                running{step: 0} -> running{step: 1}
                + run 1 platform-failover-in-progress (attempt 1)
            > step_succeeded 1 platform-failover-in-progress
                running{step: 1} -> running{step: 2}
                + run 2 fence-khartoum-pg (attempt 1)
            > step_succeeded 2 fence-khartoum-pg
                running{step: 2} -> running{step: 3}
                + run 3 fence-khartoum-redis (attempt 1)
            > step_failed 3 fence-khartoum-redis retryable=false untouched: could not connect
                running{step: 3} -> rolling_back{step: 2}
                + notify Critical: step fence-khartoum-redis failed: could not connect; rolling back
                + rollback 2 fence-khartoum-pg
            > rollback_step_done 2 fence-khartoum-pg
                rolling_back{step: 2} -> rolling_back{step: 1}
                + rollback 1 platform-failover-in-progress
            > rollback_step_done 1 platform-failover-in-progress
                rolling_back{step: 1} -> rolled_back
            = rolled_back
              failure: step fence-khartoum-redis failed after 1 attempt(s): could not connect
        "#]],
    );
}

#[test]
fn failover_cancel_after_promotion_stops_for_an_operator() {
    check(
        "failover-khartoum-to-port-sudan.toml",
        "submit d1\napproved\nstart\nok\nok\nok\ncancel\nok\nundone\ncancel",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 check-lag (attempt 1)
            > step_succeeded 0 check-lag
                running{step: 0} -> running{step: 1}
                + run 1 platform-failover-in-progress (attempt 1)
            > step_succeeded 1 platform-failover-in-progress
                running{step: 1} -> running{step: 2}
                + run 2 fence-khartoum-pg (attempt 1)
            > step_succeeded 2 fence-khartoum-pg
                running{step: 2} -> running{step: 3}
                + run 3 fence-khartoum-redis (attempt 1)
            > {"event":"cancel"}
                + notify Warning: cancel requested: rolling back after step fence-khartoum-redis finishes
            > step_succeeded 3 fence-khartoum-redis
                running{step: 3} -> rolling_back{step: 3}
                + rollback 3 fence-khartoum-redis
            > rollback_step_done 3 fence-khartoum-redis
                rolling_back{step: 3} -> rolling_back{step: 2}
                + rollback 2 fence-khartoum-pg
            > {"event":"cancel"}
                ! refused: cancel does not apply while rolling back
            = rolling_back{step: 2}
              failure: cancelled by an operator
        "#]],
    );
}

#[test]
fn failover_not_ready_touches_nothing() {
    check(
        "failover-khartoum-to-port-sudan.toml",
        "submit d1\napproved\nnot-ready swap-app-env: /srv/app/database.env does not exist\nstart",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"not_ready","details":["swap-app-env: /srv/app/database.env does not exist"]}
                approved -> failed{needs_operator: false}
                + notify Critical: failover-khartoum-to-port-sudan is not ready; it stopped before its first step: swap-app-env: /srv/app/database.env does not exist
            > {"event":"start"}
                ! refused: start does not apply while failed
            = failed{needs_operator: false}
              failure: not ready, nothing was touched: swap-app-env: /srv/app/database.env does not exist
        "#]],
    );
}

#[test]
fn dns_revert_cancel_while_paused() {
    check(
        "dns-revert-to-khartoum.toml",
        "submit d1\npause\napproved\nstart\nok\nok\nok\npause\nok\ncancel\nundone\nundone",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"pause"}
                ! refused: pause does not apply while awaiting approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 khartoum-pg-up (attempt 1)
            > step_succeeded 0 khartoum-pg-up
                running{step: 0} -> running{step: 1}
                + run 1 confirm-khartoum-primary (attempt 1)
            > step_succeeded 1 confirm-khartoum-primary
                running{step: 1} -> running{step: 2}
                + run 2 platform-failover-in-progress (attempt 1)
            > step_succeeded 2 platform-failover-in-progress
                running{step: 2} -> running{step: 3}
                + run 3 cutover-db (attempt 1)
            > {"event":"pause"}
                + notify Info: pausing after step cutover-db finishes
            > step_succeeded 3 cutover-db
                running{step: 3} -> paused{next: 4}
            > {"event":"cancel"}
                paused{next: 4} -> rolling_back{step: 3}
                + rollback 3 cutover-db
            > rollback_step_done 3 cutover-db
                rolling_back{step: 3} -> rolling_back{step: 2}
                + rollback 2 platform-failover-in-progress
            > rollback_step_done 2 platform-failover-in-progress
                rolling_back{step: 2} -> rolled_back
            = rolled_back
              failure: cancelled by an operator
        "#]],
    );
}

#[test]
fn dr_cold_rejected() {
    check(
        "activate-dr-cold.toml",
        "start\nsubmit d1\napproved\nrejected\nstart",
        expect![[r#"
            > {"event":"start"}
                ! refused: start does not apply while proposed
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"rejected"}
                approved -> rejected
            > {"event":"start"}
                ! refused: start does not apply while rejected
            = rejected
        "#]],
    );
}

#[test]
fn dr_cold_expires_and_cancel_before_any_change() {
    check(
        "activate-dr-cold.toml",
        "submit d1\nexpire\napproved",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"expire"}
                awaiting_approval -> expired
            > {"event":"approved"}
                ! refused: approved does not apply while expired
            = expired
        "#]],
    );
    check(
        "activate-dr-cold.toml",
        "submit d1\napproved\nstart\nok\ncancel\nok",
        expect![[r#"
            > {"event":"submit","digest":"d1"}
                proposed -> awaiting_approval
            > {"event":"approved"}
                awaiting_approval -> approved
            > {"event":"start"}
                approved -> running{step: 0}
                + run 0 platform-failover-in-progress (attempt 1)
            > step_succeeded 0 platform-failover-in-progress
                running{step: 0} -> running{step: 1}
                + run 1 old-primaries-fenced (attempt 1)
            > {"event":"cancel"}
                + notify Warning: cancel requested: rolling back after step old-primaries-fenced finishes
            > step_succeeded 1 old-primaries-fenced
                running{step: 1} -> rolling_back{step: 0}
                + rollback 0 platform-failover-in-progress
            = rolling_back{step: 0}
              failure: cancelled by an operator
        "#]],
    );
}
