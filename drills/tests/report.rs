//! Drill run reports: verdicts from measurements, and the Markdown for a post-drill review.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::{MINIMAL, parse};
use expect_test::expect;
use jiff::Timestamp;
use niledr_drills::report::{CleanupRun, fmt_ms};
use niledr_drills::{
    DrillReport, Freshness, Phases, RtoMeasurement, SeqRange, StepTiming, Store, StoreLoss,
    Verdict, seq_ranges,
};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn report() -> DrillReport {
    let text = MINIMAL.replace("rpo_postgres = \"1m\"", "rpo_postgres = \"1m\"\nrpo_redis = \"1m\"\n[abort]\nmax_lost_writes = 10000\n[cleanup]\nrunbook = \"failback-port-sudan-to-khartoum\"");
    let drill = parse(&text).unwrap();
    let mut r = DrillReport::new(&drill, ts("2026-12-01T00:00:00Z"), 1_000, 1, 100);
    r.digest = "sha256:0123".into();
    r.finished_at = Some(ts("2026-12-01T00:02:00Z"));
    r.rto = Some(RtoMeasurement {
        total_ms: 3_480,
        first_write_at: ts("2026-12-01T00:00:03.48Z"),
        phases: Phases {
            detection_ms: Some(2_050),
            decision_ms: Some(0),
            execution: vec![
                StepTiming {
                    step: "fence".into(),
                    ms: 40,
                },
                StepTiming {
                    step: "promote".into(),
                    ms: 110,
                },
                StepTiming {
                    step: "dns".into(),
                    ms: 30,
                },
            ],
            dns_convergence_ms: Some(1_000),
            verification_ms: Some(60),
        },
    });
    r.rpo = vec![
        StoreLoss {
            store: Store::Postgres,
            acknowledged: 21_000,
            lost: 203,
            lost_seqs: seq_ranges(&(1000..1200).chain([1202, 1204, 1203]).collect::<Vec<_>>()),
            first_lost_at: Some(ts("2026-11-30T23:59:58Z")),
            last_lost_at: Some(ts("2026-12-01T00:00:00.03Z")),
            last_surviving_at: Some(ts("2026-11-30T23:59:57.99Z")),
            lag_bytes_at_t0: Some(24_576),
        },
        StoreLoss {
            store: Store::Redis,
            acknowledged: 21_000,
            lost: 0,
            lost_seqs: vec![],
            first_lost_at: None,
            last_lost_at: None,
            last_surviving_at: None,
            lag_bytes_at_t0: Some(0),
        },
    ];
    r.cleanup = Some(CleanupRun {
        runbook: "failback-port-sudan-to-khartoum".into(),
        duration_ms: Some(12_400),
        outcome: "succeeded".into(),
    });
    r
}

#[test]
fn ranges_and_durations() {
    assert_eq!(
        seq_ranges(&[5, 1, 2, 3, 3, 9]),
        vec![
            SeqRange { first: 1, last: 3 },
            SeqRange { first: 5, last: 5 },
            SeqRange { first: 9, last: 9 }
        ]
    );
    assert!(seq_ranges(&[]).is_empty());
    assert_eq!(fmt_ms(850), "850 ms");
    assert_eq!(fmt_ms(2_500), "2.5 s");
    assert_eq!(fmt_ms(2_000), "2 s");
    assert_eq!(fmt_ms(240_000), "4 min");
    assert_eq!(fmt_ms(243_200), "4 min 3.2 s");
}

#[test]
fn verdicts_follow_the_measurements() {
    let mut r = report();
    r.judge();
    let v: Vec<_> = r
        .verdicts
        .iter()
        .map(|l| (l.objective.as_str(), l.verdict))
        .collect();
    assert_eq!(
        v,
        [
            ("rto", Verdict::Met),
            ("rpo_postgres", Verdict::Met),
            ("rpo_redis", Verdict::Met)
        ]
    );
    assert_eq!(r.overall, Verdict::Met);

    // RPO past the objective.
    let mut r = report();
    r.rpo[0].last_surviving_at = Some(ts("2026-11-30T23:58:00Z"));
    r.judge();
    assert_eq!(r.verdicts[1].verdict, Verdict::Missed);
    assert_eq!(r.overall, Verdict::Missed);

    // Never recovered: RTO missed.
    let mut r = report();
    r.rto = None;
    r.judge();
    assert_eq!(r.verdicts[0].verdict, Verdict::Missed);
    assert_eq!(r.verdicts[0].measured, "no recovery observed");

    // No marker data: not measured, never "met".
    let mut r = report();
    r.rpo.pop();
    r.judge();
    assert_eq!(r.verdicts[2].verdict, Verdict::NotMeasured);
    assert_eq!(r.overall, Verdict::NotMeasured);

    // Aborted: every objective and the whole run.
    let mut r = report();
    r.aborted = r.abort_policy.check(&r.objectives, 480_001, 0);
    r.judge();
    assert!(r.verdicts.iter().all(|l| l.verdict == Verdict::Aborted));
    assert_eq!(r.overall, Verdict::Aborted);
    assert!(r.to_markdown().contains("> Aborted and rolled back: elapsed 8 min 1 ms since T0 passed the abort bound 8 min (2 × RTO objective 4 min)"));
}

#[test]
fn abort_bounds() {
    let r = report();
    let (p, o) = (&r.abort_policy, &r.objectives);
    assert_eq!(p.rto_bound_ms(o), 480_000);
    assert_eq!(p.check(o, 480_000, 10_000), None);
    assert!(
        p.check(o, 1_000, 10_001)
            .is_some_and(|m| m.contains("10001 acknowledged writes lost"))
    );
}

#[test]
fn zero_loss_objective() {
    let drill = parse(&MINIMAL.replace("rpo_postgres = \"1m\"", "no_lost_writes = true")).unwrap();
    let mut r = DrillReport::new(&drill, ts("2026-12-01T00:00:00Z"), 1_000, 1, 100);
    r.rto = report().rto;
    r.judge();
    assert_eq!(r.verdicts[1].verdict, Verdict::NotMeasured);
    r.rpo = report().rpo;
    r.judge();
    assert_eq!(r.verdicts[1].objective, "no_lost_writes");
    assert_eq!(r.verdicts[1].measured, "203 lost");
    assert_eq!(r.overall, Verdict::Missed);
    r.rpo[0].lost = 0;
    r.judge();
    assert_eq!(r.overall, Verdict::Met);
}

#[test]
fn serde_round_trip() {
    let mut r = report();
    r.judge();
    let json = serde_json::to_string(&r).unwrap();
    let back: DrillReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn markdown_for_a_post_drill_review() {
    let mut r = report();
    r.judge();
    expect![[r#"
        # Drill report: postgres-primary-failure

        **Overall verdict: MET**

        | | |
        |---|---|
        | fault | `kill_primary_postgres` on `khartoum-postgres` |
        | runbook | `failover-khartoum-to-port-sudan` |
        | T0 | 2026-12-01T00:00:00Z |
        | finished | 2026-12-01T00:02:00Z |
        | probe interval | 1 s |
        | DNS TTL | 1 s |
        | canary rate | 100 Hz |
        | abort at | 2 × RTO objective, or > 10000 lost writes |
        | drill digest | `sha256:0123` |

        ## Verdicts

        | objective | target | measured | verdict |
        |---|---|---|---|
        | rto | ≤ 4 min | 3.48 s | met |
        | rpo_postgres | ≤ 1 min | 2.04 s (203 lost) | met |
        | rpo_redis | ≤ 1 min | 0 ms (0 lost) | met |

        ## RTO

        3.48 s from T0 to the first acknowledged write (2026-12-01T00:00:03.48Z).

        | phase | duration |
        |---|---|
        | detection | 2.05 s |
        | decision (approvals) | 0 ms |
        | step `fence` | 40 ms |
        | step `promote` | 110 ms |
        | step `dns` | 30 ms |
        | DNS convergence | 1 s |
        | verification | 60 ms |
        | unaccounted | 190 ms |

        ## RPO

        | store | acknowledged | lost | lost seqs | loss window | RPO (time) | lag at T0 |
        |---|---|---|---|---|---|---|
        | postgres | 21000 | 203 | 1000–1199, 1202–1204 | 2026-11-30T23:59:58Z – 2026-12-01T00:00:00.03Z (2.03 s) | 2.04 s | 24576 bytes |
        | redis | 21000 | 0 | — | — | 0 ms | 0 bytes |

        ## Cleanup

        `failback-port-sudan-to-khartoum`: succeeded in 12.4 s

        ## Method

        T0 is the moment the fault was injected. An independent canary writer commits sequence markers (seq, ts) to PostgreSQL and Redis through the production path (service name resolved at the authoritative DNS on every reconnect, then connect, then write) and records every acknowledged seq. RTO = T0 to the first acknowledged write through the production path after recovery. RPO per store = acknowledged markers missing on the new primary (count and seqs); RPO time = ts(newest lost acknowledged marker) - ts(newest surviving marker before it). Replication lag in bytes at T0 comes from the probes. RPO is never estimated from timestamps alone.
    "#]]
    .assert_eq(&r.to_markdown());
}

#[test]
fn markdown_for_a_cold_restore() {
    let drill = parse(
        &MINIMAL
            .replace("kill_primary_postgres", "cold_restore")
            .replace("\"khartoum-postgres\"", "\"dr-cold\"")
            .replace("failover-khartoum-to-port-sudan", "activate-dr-cold"),
    )
    .unwrap();
    let mut r = DrillReport::new(&drill, ts("2026-12-22T23:00:00Z"), 1_000, 1, 100);
    r.freshness = Some(Freshness {
        activation_ms: 95_000,
        newest_recoverable_seq: Some(88_120),
        newest_recoverable_at: Some(ts("2026-12-22T22:59:41Z")),
        age_at_t0_ms: Some(19_000),
    });
    r.judge();
    let md = r.to_markdown();
    assert!(md.contains("## Cold restore\n\n- activation: 1 min 35 s\n- newest recoverable marker: seq 88120 at 2026-12-22T22:59:41Z\n- data freshness at T0: 19 s old\n"), "{md}");
    assert!(
        md.contains("No sequence-marker measurement in this run."),
        "{md}"
    );
    assert!(md.contains("**Overall verdict: MISSED**"), "{md}");
}
