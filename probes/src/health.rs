//! The health model: consecutive-threshold status per service (so blips do not flap), site
//! status derived from the site's critical services, and the status changes between them.

use std::collections::BTreeMap;
use std::fmt;

use crate::result::{Observation, ProbeResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Up,
    Degraded,
    Down,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
            Status::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "up" => Status::Up,
            "degraded" => Status::Degraded,
            "down" => Status::Down,
            "unknown" => Status::Unknown,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failures before a service is declared down.
    pub failure: u32,
    /// Consecutive successes before a down service is declared up again.
    pub success: u32,
}

/// What changed: a service or a whole site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Service { id: String, site: Option<String> },
    Site { id: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    pub scope: Scope,
    pub from: Status,
    pub to: Status,
    pub reason: String,
    pub at: jiff::Timestamp,
}

#[derive(Clone, Debug)]
pub struct ServiceHealth {
    pub id: String,
    pub site: Option<String>,
    pub kind: &'static str,
    pub critical: bool,
    pub thresholds: Thresholds,
    pub status: Status,
    pub reason: String,
    pub since: jiff::Timestamp,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last: Option<ProbeResult>,
}

impl ServiceHealth {
    pub fn new(
        id: &str,
        site: Option<&str>,
        kind: &'static str,
        critical: bool,
        thresholds: Thresholds,
        now: jiff::Timestamp,
    ) -> Self {
        ServiceHealth {
            id: id.to_string(),
            site: site.map(str::to_string),
            kind,
            critical,
            thresholds,
            status: Status::Unknown,
            reason: "no probe result yet".into(),
            since: now,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last: None,
        }
    }

    /// Fold one probe result in; returns the change of status, if any.
    pub fn apply(&mut self, result: ProbeResult) -> Option<StatusChange> {
        let at = result.started_at;
        let (next, reason) = if result.ok {
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
            let (healthy, reason) = match degraded_reason(&result.observation) {
                Some(why) => (Status::Degraded, why),
                None => (Status::Up, result.summary()),
            };
            // Leaving `down` needs a run of successes; unknown/up/degraded move at once.
            if self.status == Status::Down && self.consecutive_successes < self.thresholds.success {
                (
                    Status::Down,
                    format!(
                        "recovering: {}/{} successful probes ({})",
                        self.consecutive_successes,
                        self.thresholds.success,
                        self.reason_root()
                    ),
                )
            } else {
                (healthy, reason)
            }
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
            let err = result.summary();
            if self.consecutive_failures >= self.thresholds.failure {
                (Status::Down, err)
            } else {
                // Not yet past the threshold: keep the status, say what is happening.
                (
                    self.status,
                    format!(
                        "{}/{} failed probes: {err}",
                        self.consecutive_failures, self.thresholds.failure
                    ),
                )
            }
        };
        self.last = Some(result);
        let from = self.status;
        self.reason = reason;
        if next == from {
            return None;
        }
        self.status = next;
        self.since = at;
        Some(StatusChange {
            scope: Scope::Service {
                id: self.id.clone(),
                site: self.site.clone(),
            },
            from,
            to: next,
            reason: self.reason.clone(),
            at,
        })
    }

    /// The reason without the "recovering: ..." wrapper, so it does not nest.
    fn reason_root(&self) -> &str {
        match self.reason.find("probes (") {
            Some(i) if self.reason.starts_with("recovering:") => {
                self.reason[i + 8..].trim_end_matches(')')
            }
            _ => &self.reason,
        }
    }
}

/// A reachable service that is not fully healthy says why here.
pub fn degraded_reason(obs: &Observation) -> Option<String> {
    match obs {
        Observation::Postgres(pg) if pg.in_recovery => {
            if pg.wal_receiver_streaming == Some(false) {
                Some("standby is not streaming WAL from its upstream".into())
            } else if pg.replay_paused {
                Some(format!("WAL replay paused ({})", pg.summary()))
            } else {
                None
            }
        }
        Observation::Redis(r) if r.master_link_up == Some(false) => {
            Some("replica's link to its primary is down".into())
        }
        Observation::Dns(d) if !d.matches_expected => Some(d.summary()),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SiteHealth {
    pub id: String,
    pub status: Status,
    pub reason: String,
    pub since: jiff::Timestamp,
}

/// Site status from its critical services and, when there is some, evidence about the site
/// from outside its probes (a cold site's backups): the worse of the two (down, unknown,
/// degraded, up); evidence alone when the site has no critical services.
pub fn derive_site_with(
    id: &str,
    services: &[&ServiceHealth],
    evidence: Option<&(Status, String)>,
) -> (Status, String) {
    let Some((ev, why)) = evidence else {
        return derive_site(id, services);
    };
    if !services.iter().any(|s| s.critical) {
        return (*ev, why.clone());
    }
    let (st, reason) = derive_site(id, services);
    let rank = |s: Status| match s {
        Status::Down => 0,
        Status::Unknown => 1,
        Status::Degraded => 2,
        Status::Up => 3,
    };
    match (rank(st).cmp(&rank(*ev)), st, *ev) {
        (_, Status::Up, Status::Up) => (Status::Up, format!("{reason}; {why}")),
        (std::cmp::Ordering::Greater, _, _) => (*ev, why.clone()),
        (std::cmp::Ordering::Less, _, _) => (st, reason),
        (std::cmp::Ordering::Equal, _, _) => (st, format!("{reason}; {why}")),
    }
}

/// Site status from its critical services: any down → down; else any unknown → unknown;
/// else any degraded → degraded; else up.
pub fn derive_site(id: &str, services: &[&ServiceHealth]) -> (Status, String) {
    let critical: Vec<&&ServiceHealth> = services.iter().filter(|s| s.critical).collect();
    if critical.is_empty() {
        return (
            Status::Unknown,
            format!("site {id} has no critical services to probe (nothing runs there)"),
        );
    }
    let with = |st: Status| -> Vec<String> {
        critical
            .iter()
            .filter(|s| s.status == st)
            .map(|s| format!("{}: {}", s.id, s.reason))
            .collect()
    };
    for st in [Status::Down, Status::Unknown, Status::Degraded] {
        let hits = with(st);
        if !hits.is_empty() {
            return (st, hits.join("; "));
        }
    }
    (
        Status::Up,
        format!("all {} critical services up", critical.len()),
    )
}

/// Every service and site, folded from probe results.
#[derive(Clone, Debug, Default)]
pub struct HealthModel {
    pub services: BTreeMap<String, ServiceHealth>,
    pub sites: BTreeMap<String, SiteHealth>,
    /// Site → evidence from outside its probes (status, reason), folded into its status.
    pub evidence: BTreeMap<String, (Status, String)>,
}

impl HealthModel {
    pub fn new(
        sites: impl IntoIterator<Item = String>,
        services: impl IntoIterator<Item = ServiceHealth>,
        now: jiff::Timestamp,
    ) -> Self {
        let mut model = HealthModel {
            services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
            sites: BTreeMap::new(),
            evidence: BTreeMap::new(),
        };
        for id in sites {
            let (status, reason) = derive_site(&id, &model.site_services(&id));
            model.sites.insert(
                id.clone(),
                SiteHealth {
                    id,
                    status,
                    reason,
                    since: now,
                },
            );
        }
        model
    }

    pub fn site_services(&self, site: &str) -> Vec<&ServiceHealth> {
        self.services
            .values()
            .filter(|s| s.site.as_deref() == Some(site))
            .collect()
    }

    /// Fold a result in; returns the service change and any site change it caused.
    pub fn apply(&mut self, result: ProbeResult) -> Vec<StatusChange> {
        let at = result.started_at;
        let Some(svc) = self.services.get_mut(&result.target) else {
            return Vec::new();
        };
        let site = svc.site.clone();
        let mut changes: Vec<StatusChange> = svc.apply(result).into_iter().collect();
        if let Some(site) = site {
            changes.extend(self.rederive_site(&site, at));
        }
        changes
    }

    /// Set (or clear) the evidence about `site` from outside its probes; returns the site's
    /// change of status, if any.
    pub fn set_evidence(
        &mut self,
        site: &str,
        evidence: Option<(Status, String)>,
        at: jiff::Timestamp,
    ) -> Option<StatusChange> {
        match evidence {
            Some(e) => self.evidence.insert(site.to_string(), e),
            None => self.evidence.remove(site),
        };
        self.rederive_site(site, at)
    }

    fn rederive_site(&mut self, site: &str, at: jiff::Timestamp) -> Option<StatusChange> {
        let (status, reason) =
            derive_site_with(site, &self.site_services(site), self.evidence.get(site));
        let sh = self.sites.get_mut(site)?;
        sh.reason = reason.clone();
        if sh.status == status {
            return None;
        }
        let change = StatusChange {
            scope: Scope::Site {
                id: site.to_string(),
            },
            from: sh.status,
            to: status,
            reason,
            at,
        };
        sh.status = status;
        sh.since = at;
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::result::{DnsObservation, PgObservation};

    fn result(ok: bool, obs: Observation) -> ProbeResult {
        ProbeResult {
            target: "pg".into(),
            kind: "postgres",
            ok,
            started_at: jiff::Timestamp::now(),
            latency: Duration::from_millis(1),
            schedule_lag: Duration::ZERO,
            error: (!ok).then(|| "connection refused".to_string()),
            observation: obs,
        }
    }

    fn model() -> HealthModel {
        let t = Thresholds {
            failure: 3,
            success: 2,
        };
        let now = jiff::Timestamp::now();
        HealthModel::new(
            ["khartoum".to_string()],
            [ServiceHealth::new(
                "pg",
                Some("khartoum"),
                "postgres",
                true,
                t,
                now,
            )],
            now,
        )
    }

    fn primary() -> Observation {
        Observation::Postgres(PgObservation::default())
    }

    #[test]
    fn table_of_transitions() {
        // (sequence of ok/fail, expected service status after each)
        use Status::*;
        let cases: &[(&[bool], &[Status])] = &[
            (&[true], &[Up]),
            (&[false, false, false], &[Unknown, Unknown, Down]),
            (&[true, false, false, true, false], &[Up, Up, Up, Up, Up]),
            (&[true, false, false, false], &[Up, Up, Up, Down]),
            (
                &[false, false, false, true, true],
                &[Unknown, Unknown, Down, Down, Up],
            ),
            (
                &[false, false, false, true, false, true, true],
                &[Unknown, Unknown, Down, Down, Down, Down, Up],
            ),
        ];
        for (seq, want) in cases {
            let mut m = model();
            let got: Vec<Status> = seq
                .iter()
                .map(|ok| {
                    m.apply(result(*ok, if *ok { primary() } else { Observation::None }));
                    m.services["pg"].status
                })
                .collect();
            assert_eq!(&got, want, "sequence {seq:?}");
            assert_eq!(m.sites["khartoum"].status, *want.last().unwrap_or(&Unknown));
        }
    }

    #[test]
    fn site_change_is_reported_with_reason() {
        let mut m = model();
        m.apply(result(true, primary()));
        let mut changes = Vec::new();
        for _ in 0..3 {
            changes.extend(m.apply(result(false, Observation::None)));
        }
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(changes[1].scope, Scope::Site { ref id } if id == "khartoum"));
        assert_eq!(changes[1].to, Status::Down);
        assert!(
            changes[1].reason.contains("connection refused"),
            "{}",
            changes[1].reason
        );
    }

    #[test]
    fn degraded_for_paused_replay_and_dns_mismatch() {
        let pg = Observation::Postgres(PgObservation {
            in_recovery: true,
            replay_paused: true,
            wal_receiver_streaming: Some(true),
            ..Default::default()
        });
        assert!(degraded_reason(&pg).is_some_and(|r| r.contains("paused")));
        let dns = Observation::Dns(DnsObservation {
            name: "db.nilecare.sd.".into(),
            matches_expected: false,
            ..Default::default()
        });
        assert!(degraded_reason(&dns).is_some_and(|r| r.contains("MISMATCH")));
        assert_eq!(degraded_reason(&primary()), None);
    }

    #[test]
    fn site_without_critical_services_is_unknown() {
        let (st, why) = derive_site("dr-cold", &[]);
        assert_eq!(st, Status::Unknown);
        assert!(why.contains("no critical services"));
    }
}

#[cfg(test)]
mod evidence_tests {
    use super::*;

    #[test]
    fn evidence_sets_a_site_without_services_and_worsens_one_with() {
        let now = jiff::Timestamp::now();
        let mut m = HealthModel::new(["cold".to_string()], [], now);
        assert_eq!(m.sites["cold"].status, Status::Unknown);
        let c = m.set_evidence("cold", Some((Status::Degraded, "backups: old".into())), now);
        assert_eq!(
            c.map(|c| (c.from, c.to)),
            Some((Status::Unknown, Status::Degraded))
        );
        assert_eq!(m.sites["cold"].reason, "backups: old");
        assert!(
            m.set_evidence(
                "cold",
                Some((Status::Degraded, "backups: older".into())),
                now
            )
            .is_none()
        );
        let c = m.set_evidence("cold", Some((Status::Up, "backups: fresh".into())), now);
        assert_eq!(c.map(|c| c.to), Some(Status::Up));
        // With a critical service up, evidence that is worse wins; equal joins the reasons.
        let (st, why) = derive_site_with("s", &[], Some(&(Status::Down, "no base backup".into())));
        assert_eq!((st, why.as_str()), (Status::Down, "no base backup"));
    }
}
