//! The pure derivation of the live topology: what the config says (`Layout`), what succeeded
//! executions did (`Intent`, read from the journal) and what the probes saw last (`Observed`)
//! → where the PostgreSQL primary, the Redis master and each DNS name are now, and the role each
//! site holds (`LiveTopology`). No I/O, no clock: the tracker feeds it.
//!
//! Precedence, the same on every instance for the same inputs (no flip-flop): an unambiguous
//! observation (exactly one writable server not held fenced by the journal) > the journal's last
//! promotion > the topology persisted before (a change made outside niledr that was observed
//! once) > the configured roles. DNS expectations follow the journal's last cutover of the name,
//! else the configured answer; the observed answers are compared with them, never adopted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use niledr_runbooks::{Action, Endpoint, Runbook};
use serde::{Deserialize, Serialize};

use crate::records::ExecutionRecordV1;

pub const PRIMARY: &str = "primary";
pub const HOT_STANDBY: &str = "hot_standby";
pub const COLD_STANDBY: &str = "cold_standby";

/// What the config says: every site, and which services of which kind live where.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Site → (configured role as written, service address).
    pub sites: BTreeMap<String, (String, Option<Ipv4Addr>)>,
    /// PostgreSQL service → (site, its address).
    pub postgres: BTreeMap<String, (Option<String>, Ipv4Addr)>,
    /// Redis service → (site, its address).
    pub redis: BTreeMap<String, (Option<String>, Ipv4Addr)>,
    /// DNS name → (its dns service, the configured expected answer set, sorted).
    pub dns: BTreeMap<String, (String, Vec<Ipv4Addr>)>,
}

impl Layout {
    fn configured_primary_site(&self) -> Option<&String> {
        let mut it = self.sites.iter().filter(|(_, (r, _))| r == PRIMARY);
        match (it.next(), it.next()) {
            (Some((id, _)), None) => Some(id),
            _ => None,
        }
    }

    /// The one service of `services` at the configured primary site.
    fn configured_at_primary(
        &self,
        services: &BTreeMap<String, (Option<String>, Ipv4Addr)>,
    ) -> Option<String> {
        let site = self.configured_primary_site()?;
        let mut it = services
            .iter()
            .filter(|(_, (s, _))| s.as_ref() == Some(site));
        match (it.next(), it.next()) {
            (Some((id, _)), None) => Some(id.clone()),
            _ => None,
        }
    }

    /// The site whose configured address is `addrs` (exactly one address that is a site's).
    pub fn site_of(&self, addrs: &[Ipv4Addr]) -> Option<String> {
        let [one] = addrs else { return None };
        self.sites
            .iter()
            .find(|(_, (_, a))| a.as_ref() == Some(one))
            .map(|(id, _)| id.clone())
    }

    fn site_of_service(&self, id: &str) -> Option<String> {
        self.postgres
            .get(id)
            .or_else(|| self.redis.get(id))
            .and_then(|(s, _)| s.clone())
    }

    fn addresses(&self, to: &Endpoint) -> Option<Vec<Ipv4Addr>> {
        match to {
            Endpoint::Site(s) => self.sites.get(s).and_then(|(_, a)| *a).map(|a| vec![a]),
            Endpoint::Service(s) => self
                .postgres
                .get(s)
                .or_else(|| self.redis.get(s))
                .map(|(_, a)| vec![*a]),
        }
    }

    fn has_postgres(&self, site: &str) -> bool {
        self.postgres
            .values()
            .any(|(s, _)| s.as_deref() == Some(site))
    }
}

/// What succeeded executions (or those past their point of no return) did, in journal order:
/// the last one wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intent {
    pub postgres_primary: Option<String>,
    pub redis_master: Option<String>,
    /// DNS name → the answer set its last cutover wrote.
    pub dns: BTreeMap<String, Vec<Ipv4Addr>>,
    /// PostgreSQL services fenced and not promoted again since.
    pub fenced: BTreeSet<String>,
    /// Redis services made replicas and not promoted again since.
    pub demoted: BTreeSet<String>,
    /// A site without a PostgreSQL service that the last cutover moved traffic to (a cold site
    /// restored by hand): it holds the primary role.
    pub primary_site: Option<String>,
}

/// Fold the journal into an `Intent`: only steps that succeeded count.
pub fn intent<'a>(
    executions: &[ExecutionRecordV1],
    runbook: impl Fn(&str) -> Option<&'a Runbook>,
    layout: &Layout,
) -> Intent {
    let mut out = Intent::default();
    let settled = executions
        .iter()
        .filter(|r| r.past_point_of_no_return || r.state == "succeeded");
    for rec in settled {
        let Some(rb) = runbook(&rec.runbook) else {
            continue;
        };
        for step in &rb.steps {
            let done = rec
                .steps
                .iter()
                .any(|s| s.id == step.id && s.state == "succeeded");
            if done {
                out.apply(&step.action, layout);
            }
        }
    }
    out
}

impl Intent {
    fn apply(&mut self, action: &Action, layout: &Layout) {
        match action {
            Action::PostgresFence { service, .. } => {
                self.fenced.insert(service.clone());
            }
            Action::PostgresPromote { service } => {
                self.fenced.remove(service);
                self.postgres_primary = Some(service.clone());
                self.primary_site = None;
            }
            Action::RedisPromote { service } => {
                self.demoted.remove(service);
                self.redis_master = Some(service.clone());
            }
            Action::RedisReplicaOf { service, .. } => {
                self.demoted.insert(service.clone());
                if self.redis_master.as_ref() == Some(service) {
                    self.redis_master = None;
                }
            }
            Action::DnsCutover { name, to, .. } => {
                if let Some(addrs) = layout.addresses(to) {
                    let site = layout.site_of(&addrs);
                    self.primary_site = site.filter(|s| !layout.has_postgres(s));
                    self.dns.insert(name.clone(), addrs);
                }
            }
            _ => {}
        }
    }
}

/// What the probes saw last; a service whose last probe failed is absent.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// PostgreSQL service → answers as a primary (not in recovery).
    pub postgres: BTreeMap<String, bool>,
    /// Redis service → reports role master.
    pub redis: BTreeMap<String, bool>,
    /// DNS name → the answer set every server agreed on (`None`: they disagree or none answered).
    pub dns: BTreeMap<String, Option<Vec<Ipv4Addr>>>,
}

/// Where a DNS name points now and where it should.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsPlacement {
    pub service: String,
    /// The answer expected now (the last cutover's, else the configured one).
    pub expect: Vec<Ipv4Addr>,
    pub expect_site: Option<String>,
    /// What every authoritative server answered, when they agree.
    pub answers: Option<Vec<Ipv4Addr>>,
    pub answer_site: Option<String>,
}

/// The live topology; also what is persisted (store meta `live_topology`, v1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveTopology {
    pub v: u32,
    pub postgres_primary: Option<String>,
    pub redis_master: Option<String>,
    pub dns: BTreeMap<String, DnsPlacement>,
    /// Site → the role it holds now (`primary`, `hot_standby`, `cold_standby`).
    pub roles: BTreeMap<String, String>,
}

impl LiveTopology {
    pub fn role(&self, site: &str) -> Option<&str> {
        self.roles.get(site).map(String::as_str)
    }

    /// What a DNS probe of `name` should see now.
    pub fn dns_expect(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.dns.get(name).map(|d| d.expect.as_slice())
    }
}

/// The one service of `seen` that answers as the writer and is not held off by the journal.
fn sole_writer(seen: &BTreeMap<String, bool>, held: &BTreeSet<String>) -> Option<String> {
    let mut it = seen
        .iter()
        .filter(|(id, w)| **w && !held.contains(*id))
        .map(|(id, _)| id);
    match (it.next(), it.next()) {
        (Some(one), None) => Some(one.clone()),
        _ => None,
    }
}

pub fn derive(
    layout: &Layout,
    intent: &Intent,
    seen: &Observed,
    previous: Option<&LiveTopology>,
) -> LiveTopology {
    let postgres_primary = sole_writer(&seen.postgres, &intent.fenced)
        .or_else(|| intent.postgres_primary.clone())
        .or_else(|| previous.and_then(|p| p.postgres_primary.clone()))
        .or_else(|| layout.configured_at_primary(&layout.postgres));
    let redis_master = sole_writer(&seen.redis, &intent.demoted)
        .or_else(|| intent.redis_master.clone())
        .or_else(|| previous.and_then(|p| p.redis_master.clone()))
        .or_else(|| layout.configured_at_primary(&layout.redis));
    let dns = layout
        .dns
        .iter()
        .map(|(name, (service, configured))| {
            let expect = intent.dns.get(name).unwrap_or(configured).clone();
            let answers = seen.dns.get(name).cloned().flatten();
            let placement = DnsPlacement {
                service: service.clone(),
                expect_site: layout.site_of(&expect),
                answer_site: answers.as_deref().and_then(|a| layout.site_of(a)),
                expect,
                answers,
            };
            (name.clone(), placement)
        })
        .collect();
    let primary_site = intent
        .primary_site
        .clone()
        .filter(|_| intent.postgres_primary.is_none() || seen_primary_lost(seen, intent))
        .or_else(|| {
            postgres_primary
                .as_deref()
                .and_then(|s| layout.site_of_service(s))
        })
        .or_else(|| {
            redis_master
                .as_deref()
                .and_then(|s| layout.site_of_service(s))
        })
        .or_else(|| layout.configured_primary_site().cloned());
    let roles = layout
        .sites
        .iter()
        .map(|(id, (configured, _))| {
            let role = if primary_site.as_ref() == Some(id) {
                PRIMARY
            } else if configured == COLD_STANDBY {
                COLD_STANDBY
            } else {
                HOT_STANDBY
            };
            (id.clone(), role.to_string())
        })
        .collect();
    LiveTopology {
        v: 1,
        postgres_primary,
        redis_master,
        dns,
        roles,
    }
}

impl LiveTopology {
    /// Whether `other` differs in what is decided (roles, primary, master, expectations), not
    /// merely in what the DNS servers answered last.
    pub fn decided_differs(&self, other: &LiveTopology) -> bool {
        self.roles != other.roles
            || self.postgres_primary != other.postgres_primary
            || self.redis_master != other.redis_master
            || self
                .dns
                .iter()
                .map(|(n, d)| (n, &d.expect))
                .ne(other.dns.iter().map(|(n, d)| (n, &d.expect)))
    }

    /// Fill in what the DNS servers answer from this member's own probes (a member that does
    /// not act adopts the decided part from the leader).
    pub fn with_answers(mut self, layout: &Layout, seen: &Observed) -> Self {
        for (name, d) in self.dns.iter_mut() {
            d.answers = seen.dns.get(name).cloned().flatten();
            d.answer_site = d.answers.as_deref().and_then(|a| layout.site_of(a));
        }
        self
    }
}

/// A cold site activated after the journal's last promotion: no configured PostgreSQL server
/// answers as the writer any more.
fn seen_primary_lost(seen: &Observed, intent: &Intent) -> bool {
    sole_writer(&seen.postgres, &intent.fenced).is_none()
}
