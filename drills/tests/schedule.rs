//! Schedule maths: cron in Africa/Khartoum local time, blackout skips, missed runs after a
//! restart, announcements, and schedules that can never run.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::{MINIMAL, parse};
use jiff::{Timestamp, Zoned};
use niledr_drills::schedule::check_fires;
use niledr_drills::validate::parse_window;
use niledr_drills::{Drill, ScheduleError, Slot, announce_at, missed_runs, next_runs};

fn drill(schedule: &str, extra: &str) -> Drill {
    let text = MINIMAL.replace("\"0 2 1 * *\"", &format!("\"{schedule}\"\n{extra}"));
    parse(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn show(slots: &[Slot]) -> Vec<String> {
    slots
        .iter()
        .map(|s| match s {
            Slot::Due { at } => format!("due {} ({})", at.timestamp(), at.strftime("%H:%M %:z")),
            Slot::Skipped { at, reason } => format!("skip {} ({reason})", at.timestamp()),
        })
        .collect()
}

#[test]
fn next_runs_in_khartoum_time() {
    // (schedule, extra keys, after, n, expected slots)
    let cases: &[(&str, &str, &str, usize, &[&str])] = &[
        // 02:00 Khartoum is 00:00 UTC (UTC+2, no DST since 2017).
        (
            "0 2 1 * *",
            "",
            "2026-11-22T16:00:00Z",
            2,
            &[
                "due 2026-12-01T00:00:00Z (02:00 +02:00)",
                "due 2027-01-01T00:00:00Z (02:00 +02:00)",
            ],
        ),
        // Before November 2017 Khartoum was UTC+3: the tz database, not a fixed offset.
        (
            "0 2 1 * *",
            "",
            "2016-01-15T00:00:00Z",
            1,
            &["due 2016-01-31T23:00:00Z (02:00 +03:00)"],
        ),
        // Strictly after: a run exactly at `after` is not returned again.
        (
            "0 2 * * *",
            "",
            "2026-11-22T00:00:00Z",
            1,
            &["due 2026-11-23T00:00:00Z (02:00 +02:00)"],
        ),
        // Hourly from 07:30 local: 07:00 is past, 08:00–19:00 are peak hours, 20:00 runs.
        (
            "0 * * * *",
            "",
            "2026-11-22T05:30:00Z",
            1,
            &[
                "skip 2026-11-22T06:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T07:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T08:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T09:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T10:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T11:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T12:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T13:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T14:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T15:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T16:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "skip 2026-11-22T17:00:00Z (blackout 08:00-20:00 Africa/Khartoum)",
                "due 2026-11-22T18:00:00Z (20:00 +02:00)",
            ],
        ),
        // A drill that opts out of the blackout runs at noon.
        (
            "0 12 * * 3",
            "blackout = []",
            "2026-11-22T00:00:00Z",
            1,
            &["due 2026-11-25T10:00:00Z (12:00 +02:00)"],
        ),
        // A window that wraps past midnight; 20:00 is outside it.
        (
            "0 20,23 * * *",
            "blackout = [\"22:00-06:00\"]",
            "2026-11-22T00:00:00Z",
            2,
            &[
                "due 2026-11-22T18:00:00Z (20:00 +02:00)",
                "skip 2026-11-22T21:00:00Z (blackout 22:00-06:00 Africa/Khartoum)",
                "due 2026-11-23T18:00:00Z (20:00 +02:00)",
            ],
        ),
        // Another zone with DST: 01:30 London does not exist on 2026-03-29; it runs at 02:30 BST.
        (
            "30 1 * * *",
            "timezone = \"Europe/London\"\nblackout = []",
            "2026-03-28T12:00:00Z",
            2,
            &[
                "due 2026-03-29T01:30:00Z (02:30 +01:00)",
                "due 2026-03-30T00:30:00Z (01:30 +01:00)",
            ],
        ),
        // 01:30 London happens twice on 2026-10-25: one run, not two.
        (
            "30 1 * * *",
            "timezone = \"Europe/London\"\nblackout = []",
            "2026-10-24T12:00:00Z",
            2,
            &[
                "due 2026-10-25T00:30:00Z (01:30 +01:00)",
                "due 2026-10-26T01:30:00Z (01:30 +00:00)",
            ],
        ),
    ];
    for (schedule, extra, after, n, want) in cases {
        let d = drill(schedule, extra);
        let got = next_runs(&d, ts(after), *n).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(show(&got), *want, "{schedule} {extra} after {after}");
    }
}

#[test]
fn missed_runs_after_a_restart() {
    // (schedule, last seen, now, missed)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "0 2 * * *",
            "2026-11-20T10:00:00Z",
            "2026-11-22T16:00:00Z",
            &["2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"],
        ),
        // Runs that would have been skipped for blackout are not "missed".
        (
            "0 * * * *",
            "2026-11-22T04:30:00Z",
            "2026-11-22T07:30:00Z",
            &["2026-11-22T05:00:00Z"],
        ),
        // Bounds: a run at `last_seen` was handled; a run at `now` is due, not missed.
        (
            "0 2 * * *",
            "2026-11-21T00:00:00Z",
            "2026-11-22T00:00:00Z",
            &[],
        ),
        (
            "0 2 1 * *",
            "2026-11-02T00:00:00Z",
            "2026-11-30T00:00:00Z",
            &[],
        ),
    ];
    for (schedule, last_seen, now, want) in cases {
        let d = drill(schedule, "");
        let got: Vec<String> = missed_runs(&d, ts(last_seen), ts(now))
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, *want, "{schedule} from {last_seen} to {now}");
    }
}

#[test]
fn announcement_ahead_of_the_run() {
    let d = drill("0 2 1 * *", "");
    let runs = next_runs(&d, ts("2026-11-22T16:00:00Z"), 1).unwrap();
    let next: &Zoned = runs[0].at();
    let at = announce_at(next, Duration::from_secs(24 * 3600));
    assert_eq!(at.to_string(), "2026-11-30T02:00:00+02:00[Africa/Khartoum]");
}

#[test]
fn schedules_that_can_never_run_are_reported() {
    let peak = [parse_window("08:00-20:00").unwrap()];
    let e = check_fires("30 12 * * *", "Africa/Khartoum", &peak).unwrap_err();
    assert!(
        e.contains("only fires inside blackout (08:00-20:00 Africa/Khartoum)"),
        "{e}"
    );
    let e = check_fires("0 8-19 * * *", "Africa/Khartoum", &peak).unwrap_err();
    assert!(e.contains("only fires inside blackout"), "{e}");
    let e = check_fires("0 0 30 2 *", "Africa/Khartoum", &[]).unwrap_err();
    assert!(e.contains("never fires"), "{e}");
    // 29 February, outside peak hours: rare but real.
    check_fires("0 2 29 2 *", "Africa/Khartoum", &peak).unwrap();
    check_fires("0 7,12 * * *", "Africa/Khartoum", &peak).unwrap();
}

#[test]
fn on_demand_drills_have_no_schedule() {
    let text = MINIMAL.replace("schedule = \"0 2 1 * *\"\n", "");
    let d = parse(&text).unwrap();
    assert!(d.schedule.is_none());
    let e = next_runs(&d, ts("2026-11-22T00:00:00Z"), 1).unwrap_err();
    assert_eq!(e, ScheduleError::NotScheduled(d.name.clone()));
    assert!(missed_runs(&d, ts("2026-11-01T00:00:00Z"), ts("2026-11-22T00:00:00Z")).is_err());
}
