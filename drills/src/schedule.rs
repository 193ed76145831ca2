//! Schedule maths: cron (croner) evaluated on the drill's local wall clock (jiff time zones),
//! blackout skips, missed runs after a restart, announcement times. Time enters as data.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike as _, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use crate::schema::{BlackoutWindow, Drill};

/// At most this many candidates are examined by one `next_runs` call.
pub const MAX_CANDIDATES: usize = 10_000;
/// At most this many missed runs are returned (the oldest ones).
pub const MAX_MISSED: usize = 1_000;
/// How far ahead `check_fires` looks for a run outside blackout (covers 29 February).
const HORIZON_DAYS: i64 = 366 * 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("drill {0} has no schedule (run on demand only)")]
    NotScheduled(String),
    #[error("{0}")]
    Invalid(String),
}

/// One scheduled time: run it, or skip it and record why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Slot {
    Due { at: Zoned },
    Skipped { at: Zoned, reason: String },
}

impl Slot {
    pub fn at(&self) -> &Zoned {
        match self {
            Slot::Due { at } | Slot::Skipped { at, .. } => at,
        }
    }

    pub fn is_due(&self) -> bool {
        matches!(self, Slot::Due { .. })
    }
}

/// Parse a five-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "bad cron {expr:?}: {fields} fields; write five (minute hour day-of-month month day-of-week) in the drill's time zone, e.g. \"0 2 1 * *\" for 02:00 on the 1st"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| format!("bad cron {expr:?}: {e}; e.g. \"0 2 1 * *\" for 02:00 on the 1st"))
}

/// Refuse a schedule that never fires, or only ever fires inside blackout windows.
pub fn check_fires(expr: &str, timezone: &str, blackout: &[BlackoutWindow]) -> Result<(), String> {
    let clock = Clock::new(expr, timezone, blackout)?;
    let from = Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH); // 2026-01-01Z
    let Some(first) = clock.next_after(from)? else {
        return Err(format!(
            "cron {expr:?} never fires; check day-of-month and month"
        ));
    };
    let horizon = from
        .checked_add(jiff::SignedDuration::from_hours(24 * HORIZON_DAYS))
        .map_err(|e| e.to_string())?;
    let mut at = first;
    loop {
        let Some(window) = clock.blackout_of(&at) else {
            return Ok(());
        };
        // Jump to the end of the window instead of walking every candidate inside it.
        let end = window_end(&at, window, &clock.tz)?;
        if end.timestamp() > horizon {
            let windows: Vec<String> = blackout.iter().map(ToString::to_string).collect();
            return Err(format!(
                "cron {expr:?} only fires inside blackout ({} {timezone}); no drill would ever run. Move the schedule out of peak hours or set `blackout` explicitly",
                windows.join(", ")
            ));
        }
        match clock.next_after(end.timestamp() - jiff::SignedDuration::from_secs(1))? {
            Some(next) => at = next,
            None => return Err(format!("cron {expr:?} stops firing")),
        }
    }
}

/// The next scheduled candidates strictly after `after`, until `n` are due: every skipped one in
/// between is returned too (to be recorded). Fewer than `n` due slots come back when the search
/// limit (`MAX_CANDIDATES`) is reached.
pub fn next_runs(drill: &Drill, after: Timestamp, n: usize) -> Result<Vec<Slot>, ScheduleError> {
    let clock = Clock::of(drill)?;
    let mut out = Vec::new();
    let mut due = 0;
    let mut cursor = after;
    while due < n && out.len() < MAX_CANDIDATES {
        let Some(at) = clock.next_after(cursor).map_err(ScheduleError::Invalid)? else {
            break;
        };
        cursor = at.timestamp();
        out.push(clock.slot(at));
        due += usize::from(out.last().is_some_and(Slot::is_due));
    }
    Ok(out)
}

/// Scheduled times in `(last_seen, now)` that were not in blackout: the runs the daemon missed
/// while it was down. Record them as missed; never run them late. Oldest first, at most
/// `MAX_MISSED`.
pub fn missed_runs(
    drill: &Drill,
    last_seen: Timestamp,
    now: Timestamp,
) -> Result<Vec<Timestamp>, ScheduleError> {
    let clock = Clock::of(drill)?;
    let mut out = Vec::new();
    let mut cursor = last_seen;
    let mut examined = 0;
    while out.len() < MAX_MISSED && examined < MAX_CANDIDATES * 10 {
        let Some(at) = clock.next_after(cursor).map_err(ScheduleError::Invalid)? else {
            break;
        };
        if at.timestamp() >= now {
            break;
        }
        examined += 1;
        cursor = at.timestamp();
        if clock.blackout_of(&at).is_none() {
            out.push(cursor);
        }
    }
    Ok(out)
}

/// When to announce a run at `next`, `lead` ahead of it.
pub fn announce_at(next: &Zoned, lead: Duration) -> Zoned {
    next.checked_sub(lead).unwrap_or_else(|_| next.clone())
}

struct Clock<'a> {
    cron: Cron,
    tz: TimeZone,
    tz_name: &'a str,
    blackout: &'a [BlackoutWindow],
}

impl<'a> Clock<'a> {
    fn new(expr: &str, tz_name: &'a str, blackout: &'a [BlackoutWindow]) -> Result<Self, String> {
        let cron = parse_cron(expr)?;
        let tz = TimeZone::get(tz_name).map_err(|e| format!("time zone {tz_name:?}: {e}"))?;
        Ok(Clock {
            cron,
            tz,
            tz_name,
            blackout,
        })
    }

    fn of(drill: &'a Drill) -> Result<Self, ScheduleError> {
        let expr = drill
            .schedule
            .as_deref()
            .ok_or_else(|| ScheduleError::NotScheduled(drill.name.clone()))?;
        Clock::new(expr, &drill.timezone, &drill.blackout).map_err(ScheduleError::Invalid)
    }

    /// The first occurrence strictly after `after`. Cron is matched on the local wall clock
    /// (croner sees local civil time as if it were UTC); the match is then placed in the zone.
    fn next_after(&self, after: Timestamp) -> Result<Option<Zoned>, String> {
        let mut civil = after.to_zoned(self.tz.clone()).datetime();
        loop {
            let floating = to_chrono(civil)?;
            let next = match self.cron.find_next_occurrence(&floating, false) {
                Ok(n) => n,
                Err(croner::errors::CronError::TimeSearchLimitExceeded) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            let next_civil = from_chrono(next.naive_utc())?;
            let zoned = next_civil
                .to_zoned(self.tz.clone())
                .map_err(|e| e.to_string())?;
            // In a repeated hour (DST fold) the local match may lie before `after`: go on.
            if zoned.timestamp() > after {
                return Ok(Some(zoned));
            }
            civil = next_civil;
        }
    }

    fn blackout_of(&self, at: &Zoned) -> Option<&'a BlackoutWindow> {
        let t = at.time();
        self.blackout.iter().find(|w| w.contains(t))
    }

    fn slot(&self, at: Zoned) -> Slot {
        match self.blackout_of(&at) {
            None => Slot::Due { at },
            Some(w) => Slot::Skipped {
                reason: format!("blackout {w} {}", self.tz_name),
                at,
            },
        }
    }
}

/// The local instant at which `window` (which contains `at`) ends.
fn window_end(at: &Zoned, window: &BlackoutWindow, tz: &TimeZone) -> Result<Zoned, String> {
    let date = at.date();
    let date = if window.end <= at.time() {
        date.tomorrow().map_err(|e| e.to_string())?
    } else {
        date
    };
    date.to_datetime(window.end)
        .to_zoned(tz.clone())
        .map_err(|e| e.to_string())
}

fn to_chrono(dt: civil::DateTime) -> Result<DateTime<Utc>, String> {
    NaiveDate::from_ymd_opt(
        i32::from(dt.year()),
        u32::try_from(dt.month()).map_err(|e| e.to_string())?,
        u32::try_from(dt.day()).map_err(|e| e.to_string())?,
    )
    .and_then(|d| {
        d.and_hms_opt(
            u32::try_from(dt.hour()).ok()?,
            u32::try_from(dt.minute()).ok()?,
            u32::try_from(dt.second()).ok()?,
        )
    })
    .map(|n| n.and_utc())
    .ok_or_else(|| format!("date {dt} is out of range"))
}

fn from_chrono(n: NaiveDateTime) -> Result<civil::DateTime, String> {
    use chrono::Datelike as _;
    let small = |v: u32| i8::try_from(v).map_err(|e| e.to_string());
    civil::DateTime::new(
        i16::try_from(n.year()).map_err(|e| e.to_string())?,
        small(n.month())?,
        small(n.day())?,
        small(n.hour())?,
        small(n.minute())?,
        small(n.second())?,
        0,
    )
    .map_err(|e| e.to_string())
}
