//! The verdict that a service is down, which is what opens a proposal. Single-node: niledr's
//! own view, plus for a PostgreSQL primary the holistic check that its standby has lost its
//! upstream (a partition between niledr and the primary alone cannot open one). Cluster mode:
//! a majority of the live vantage points (every instance's published view) must see it failing
//! — judged down, or its latest probe failed — with at least one judging it down (its failure
//! threshold reached), plus the same holistic check. Pure: the engine gathers the votes, this judges them, and the
//! verdict says who saw what.

use serde::Serialize;

/// A vantage point's report older than this does not count as live.
pub const STALE_MS: i64 = 3_000;

/// One vantage point's view of the service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vote {
    pub member: String,
    /// `up`, `degraded`, `down`, `unknown`.
    pub status: String,
    /// When the view was taken (Unix ms) and since when it has had that status.
    pub at_ms: i64,
    pub since_ms: i64,
    /// Its latest probe of the service failed (it may not have reached its threshold yet).
    pub failing: bool,
}

/// A report of a standby's own WAL receiver (the standby answers for itself, so any vantage
/// point that reached it will do; the freshest wins).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StandbyReport {
    pub standby: String,
    pub seen_by: String,
    pub at_ms: i64,
    /// `Some(true)`: streaming from its upstream; `Some(false)`: not; `None`: unknown.
    pub streaming: Option<bool>,
}

/// The holistic check's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Holistic {
    pub lost_upstream: bool,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub service: String,
    pub down: bool,
    /// The live votes counted, and how many said down.
    pub votes: Vec<Vote>,
    pub down_votes: usize,
    /// For a PostgreSQL primary with standbys: did they lose it too?
    pub holistic: Option<Holistic>,
    /// When the outage began (the earliest `since` among the down votes).
    pub since_ms: Option<i64>,
    pub reason: String,
}

/// Judge `votes` (every vantage point's, this instance's own included) at `now_ms`;
/// `standby` is `Some` when the service is a PostgreSQL primary with configured standbys.
pub fn judge(
    service: &str,
    votes: Vec<Vote>,
    standby: Option<Vec<StandbyReport>>,
    now_ms: i64,
) -> Verdict {
    let live: Vec<Vote> = votes
        .into_iter()
        .filter(|v| now_ms - v.at_ms <= STALE_MS)
        .collect();
    let down: Vec<&Vote> = live.iter().filter(|v| v.status == "down").collect();
    let failing = live
        .iter()
        .filter(|v| v.status == "down" || v.failing)
        .count();
    let majority = !down.is_empty() && failing * 2 > live.len();
    let holistic = standby.map(|reports| holistic(&reports));
    let is_down = majority && holistic.as_ref().is_none_or(|h| h.lost_upstream);
    let names = |vs: &[&Vote]| {
        vs.iter()
            .map(|v| v.member.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let corroborating: Vec<&Vote> = live
        .iter()
        .filter(|v| v.status != "down" && v.failing)
        .collect();
    let mut reason = format!(
        "{} of {} live vantage point(s) see it down{}",
        down.len(),
        live.len(),
        if down.is_empty() {
            String::new()
        } else {
            format!(" ({})", names(&down))
        }
    );
    if !corroborating.is_empty() {
        reason.push_str(&format!(
            ", {} more failing their latest probe ({})",
            corroborating.len(),
            names(&corroborating)
        ));
    }
    if let Some(h) = &holistic {
        reason.push_str("; ");
        reason.push_str(&h.why);
    }
    Verdict {
        service: service.to_string(),
        down: is_down,
        since_ms: down.iter().map(|v| v.since_ms).min(),
        down_votes: down.len(),
        votes: live,
        holistic,
        reason,
    }
}

fn holistic(reports: &[StandbyReport]) -> Holistic {
    let freshest = reports
        .iter()
        .filter(|r| r.streaming.is_some())
        .max_by_key(|r| r.at_ms);
    match freshest {
        Some(r) if r.streaming == Some(false) => Holistic {
            lost_upstream: true,
            why: format!(
                "standby {} has no WAL stream from it (seen by {})",
                r.standby, r.seen_by
            ),
        },
        Some(r) => Holistic {
            lost_upstream: false,
            why: format!(
                "standby {} still streams WAL from it (seen by {}): it is alive",
                r.standby, r.seen_by
            ),
        },
        None => Holistic {
            lost_upstream: false,
            why: "no vantage point reaches a standby to confirm it lost its upstream".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(member: &str, status: &str, at_ms: i64) -> Vote {
        Vote {
            member: member.into(),
            status: status.into(),
            at_ms,
            since_ms: at_ms - 5_000,
            failing: status == "down",
        }
    }

    fn standby(streaming: Option<bool>, at_ms: i64) -> StandbyReport {
        StandbyReport {
            standby: "port-sudan-postgres".into(),
            seen_by: "dr-cold-1".into(),
            at_ms,
            streaming,
        }
    }

    #[test]
    fn one_cut_vantage_point_is_outvoted() {
        let v = judge(
            "khartoum-postgres",
            vec![
                vote("port-sudan-1", "down", 100),
                vote("khartoum-1", "up", 100),
                vote("dr-cold-1", "up", 100),
            ],
            Some(vec![standby(Some(false), 100)]),
            100,
        );
        assert!(!v.down, "{}", v.reason);
        assert_eq!(v.down_votes, 1);
    }

    #[test]
    fn a_majority_and_a_standby_without_its_upstream_make_it_down() {
        let v = judge(
            "khartoum-postgres",
            vec![
                vote("port-sudan-1", "down", 100),
                vote("dr-cold-1", "down", 90),
            ],
            Some(vec![standby(Some(true), 50), standby(Some(false), 95)]),
            100,
        );
        assert!(v.down, "{}", v.reason);
        assert_eq!(v.since_ms, Some(90 - 5_000));
        assert!(v.reason.contains("2 of 2"), "{}", v.reason);
    }

    #[test]
    fn a_standby_still_streaming_vetoes_a_majority() {
        let v = judge(
            "khartoum-postgres",
            vec![vote("a", "down", 100), vote("b", "down", 100)],
            Some(vec![standby(Some(true), 99), standby(None, 100)]),
            100,
        );
        assert!(!v.down);
        assert!(v.reason.contains("still streams"), "{}", v.reason);
        let unknown = judge("k", vec![vote("a", "down", 100)], Some(vec![]), 100);
        assert!(!unknown.down, "no standby evidence: {}", unknown.reason);
    }

    #[test]
    fn a_failing_latest_probe_corroborates_but_never_judges_alone() {
        let failing = |m: &str| Vote {
            failing: true,
            ..vote(m, "up", 100)
        };
        let sb = || Some(vec![standby(Some(false), 100)]);
        let v = judge(
            "k",
            vec![vote("a", "down", 100), failing("b"), vote("c", "up", 100)],
            sb(),
            100,
        );
        assert!(v.down, "{}", v.reason);
        assert!(v.reason.contains("1 more failing"), "{}", v.reason);
        // Failing probes everywhere, nobody past its threshold: not yet.
        let none = judge(
            "k",
            vec![failing("a"), failing("b"), failing("c")],
            sb(),
            100,
        );
        assert!(!none.down, "{}", none.reason);
        // One judging it down, the others answering: outvoted.
        let alone = judge(
            "k",
            vec![
                vote("a", "down", 100),
                vote("b", "up", 100),
                vote("c", "up", 100),
            ],
            sb(),
            100,
        );
        assert!(!alone.down);
    }

    #[test]
    fn stale_views_do_not_count_and_a_tie_is_not_a_majority() {
        // khartoum-1 died with its site: its last "up" expires from the count.
        let v = judge(
            "k",
            vec![
                vote("khartoum-1", "up", 0),
                vote("port-sudan-1", "down", 10_000),
                vote("dr-cold-1", "down", 10_000),
            ],
            None,
            10_000,
        );
        assert!(v.down, "{}", v.reason);
        assert_eq!(v.votes.len(), 2);
        let tie = judge("k", vec![vote("a", "down", 1), vote("b", "up", 1)], None, 1);
        assert!(!tie.down);
        assert!(!judge("k", vec![], None, 1).down);
    }
}
