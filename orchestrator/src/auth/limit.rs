//! Rate limits of failed authentication: token buckets per client (IP) and per (client, user),
//! and the throttle episodes the audit log reports. Plain data, time passed in, no I/O.
//!
//! Why these keys:
//! - Secrets are 192 random bits, so online guessing is hopeless; the limits protect the CPU
//!   (each uncached attempt costs one argon2 run) and the audit log, not the secret.
//! - **Per client**: a flood from one address is refused after `per_client` failures per
//!   window, before any argon2 work.
//! - **Per (client, user)**, tighter: one address repeating one person's stale token is refused
//!   early, while other people behind the same address (a chat-ops bot host, an office NAT)
//!   keep their share of the client bucket.
//! - **No per-user lockout across clients**: user names are public (executions list them), so a
//!   bucket per name alone would let anyone lock a real person out from anywhere. Many clients
//!   attacking one name are bounded by their own buckets and, for CPU, by the gate's global
//!   cap on concurrent argon2 runs.
//!
//! An attempt is charged *before* its argon2 run (so 128 concurrent requests cannot all pass a
//! full bucket at once) and refunded when it succeeds: people with a right token never use up
//! their allowance. Tokens verified before are answered from the cache and never reach here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// How many failures each key may have per `window` (a bucket refills fully over a window).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub per_client: u32,
    pub per_client_user: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_client: 20,
            per_client_user: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// An episode with no refusal for this long is over: its summary is reported.
pub const QUIET: Duration = Duration::from_secs(10);
/// A long episode is summarized this often, so the audit log tells a flood is still going on.
pub const REPORT_EVERY: Duration = Duration::from_secs(300);
/// Buckets kept at most; past that new keys go untracked (the gate's argon2 cap still holds)
/// rather than grow memory without bound under a many-address attack.
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Client(IpAddr),
    ClientUser(IpAddr, String),
}

impl Key {
    pub fn client(&self) -> IpAddr {
        match self {
            Key::Client(c) | Key::ClientUser(c, _) => *c,
        }
    }

    pub fn user(&self) -> Option<&str> {
        match self {
            Key::Client(_) => None,
            Key::ClientUser(_, u) => Some(u),
        }
    }

    /// Which limit this key enforces, as the audit log and metrics name it.
    pub fn limit(&self) -> &'static str {
        match self {
            Key::Client(_) => "per_client",
            Key::ClientUser(..) => "per_client_user",
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Go on and verify; the attempt is charged (refund it on success).
    Admitted,
    Refused {
        key: Key,
        retry_after: Duration,
    },
}

/// What the audit log should record.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The first refusal of an episode.
    Started {
        key: Key,
        at: jiff::Timestamp,
        retry_after: Duration,
    },
    /// Refusals since the previous summary of this episode (the first refusal included).
    Summary {
        key: Key,
        first: jiff::Timestamp,
        last: jiff::Timestamp,
        refused: u64,
        ended: bool,
    },
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Episode {
    first: jiff::Timestamp,
    last: jiff::Timestamp,
    last_at: Instant,
    reported_at: Instant,
    /// Refusals not yet in a summary.
    refused: u64,
}

pub struct Limiter {
    limits: Limits,
    buckets: HashMap<Key, Bucket>,
    episodes: HashMap<Key, Episode>,
    pending: Vec<Report>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter {
            limits,
            buckets: HashMap::new(),
            episodes: HashMap::new(),
            pending: Vec::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn keys(client: IpAddr, user: Option<&str>) -> Vec<Key> {
        let mut keys = vec![Key::Client(client)];
        if let Some(u) = user {
            keys.push(Key::ClientUser(client, u.to_string()));
        }
        keys
    }

    fn capacity(&self, key: &Key) -> f64 {
        f64::from(match key {
            Key::Client(_) => self.limits.per_client,
            Key::ClientUser(..) => self.limits.per_client_user,
        })
    }

    /// Tokens per second of `key`'s bucket.
    fn rate(&self, key: &Key) -> f64 {
        self.capacity(key) / self.limits.window.as_secs_f64().max(0.001)
    }

    /// The bucket's tokens now (refilled), or `None` if it is untracked.
    fn refill(&mut self, key: &Key, now: Instant) -> Option<f64> {
        let (cap, rate) = (self.capacity(key), self.rate(key));
        if !self.buckets.contains_key(key) && self.buckets.len() >= MAX_KEYS {
            return None;
        }
        let b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(cap);
        b.at = now;
        Some(b.tokens)
    }

    /// May `client` (claiming `user`, if that name exists) try once more? Charges the attempt.
    pub fn admit(
        &mut self,
        client: IpAddr,
        user: Option<&str>,
        now: Instant,
        wall: jiff::Timestamp,
    ) -> Admission {
        let keys = Self::keys(client, user);
        let mut worst: Option<(Key, Duration)> = None;
        for key in &keys {
            let Some(tokens) = self.refill(key, now) else {
                continue;
            };
            if tokens < 1.0 {
                let wait = Duration::from_secs_f64((1.0 - tokens) / self.rate(key));
                if worst.as_ref().is_none_or(|(_, w)| wait > *w) {
                    worst = Some((key.clone(), wait));
                }
            }
        }
        if let Some((key, retry_after)) = worst {
            self.refused(&key, retry_after, now, wall);
            return Admission::Refused { key, retry_after };
        }
        for key in &keys {
            if let Some(b) = self.buckets.get_mut(key) {
                b.tokens -= 1.0;
            }
        }
        Admission::Admitted
    }

    /// The admitted attempt proved the token right (or was never judged): give it back.
    pub fn refund(&mut self, client: IpAddr, user: Option<&str>, now: Instant) {
        for key in Self::keys(client, user) {
            let Some(tokens) = self.refill(&key, now) else {
                continue;
            };
            let cap = self.capacity(&key);
            if let Some(b) = self.buckets.get_mut(&key) {
                b.tokens = (tokens + 1.0).min(cap);
            }
        }
    }

    fn refused(&mut self, key: &Key, retry_after: Duration, now: Instant, wall: jiff::Timestamp) {
        match self.episodes.get_mut(key) {
            Some(e) => {
                e.refused += 1;
                e.last = wall;
                e.last_at = now;
            }
            None => {
                self.episodes.insert(
                    key.clone(),
                    Episode {
                        first: wall,
                        last: wall,
                        last_at: now,
                        reported_at: now,
                        refused: 1,
                    },
                );
                self.pending.push(Report::Started {
                    key: key.clone(),
                    at: wall,
                    retry_after,
                });
            }
        }
    }

    /// Reports due now: episode starts, summaries of episodes quiet for `QUIET` (ended) or
    /// reported `REPORT_EVERY` ago (going on); with `closing`, every episode ends. Also forgets
    /// buckets that are full again (the same as no bucket).
    pub fn sweep(&mut self, now: Instant, closing: bool) -> Vec<Report> {
        let mut out = std::mem::take(&mut self.pending);
        let mut ended = Vec::new();
        for (key, e) in &mut self.episodes {
            let quiet = now.saturating_duration_since(e.last_at) >= QUIET;
            let due = now.saturating_duration_since(e.reported_at) >= REPORT_EVERY;
            if !(closing || quiet || (due && e.refused > 0)) {
                continue;
            }
            let end = closing || quiet;
            if e.refused > 0 || end {
                out.push(Report::Summary {
                    key: key.clone(),
                    first: e.first,
                    last: e.last,
                    refused: e.refused,
                    ended: end,
                });
            }
            e.refused = 0;
            e.reported_at = now;
            if end {
                ended.push(key.clone());
            }
        }
        for key in ended {
            self.episodes.remove(&key);
        }
        let limits = self.limits;
        let cap_of = |k: &Key| match k {
            Key::Client(_) => limits.per_client,
            Key::ClientUser(..) => limits.per_client_user,
        };
        let window = limits.window.as_secs_f64().max(0.001);
        self.buckets.retain(|k, b| {
            let cap = f64::from(cap_of(k));
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * cap / window < cap
        });
        out
    }

    /// Buckets currently kept (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    fn limiter() -> Limiter {
        Limiter::new(Limits {
            per_client: 4,
            per_client_user: 2,
            window: Duration::from_secs(40),
        })
    }

    fn wall() -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }

    fn refused(a: &Admission) -> Option<&'static str> {
        match a {
            Admission::Admitted => None,
            Admission::Refused { key, .. } => Some(key.limit()),
        }
    }

    #[test]
    fn buckets_per_client_and_per_client_user() {
        let mut l = limiter();
        let t = Instant::now();
        // (client, user, expected refusal) in order; nothing refunded: all failed.
        let cases: &[(IpAddr, Option<&str>, Option<&str>)] = &[
            (A, Some("amira"), None),
            (A, Some("amira"), None),
            (A, Some("amira"), Some("per_client_user")),
            // Another user from the same client still has the client's share.
            (A, Some("omar"), None),
            (A, None, None),
            (A, Some("nour"), Some("per_client")),
            (A, None, Some("per_client")),
            // Another client is untouched: no lockout of amira from elsewhere.
            (B, Some("amira"), None),
        ];
        for (i, (client, user, want)) in cases.iter().enumerate() {
            let got = l.admit(*client, *user, t, wall());
            assert_eq!(refused(&got), *want, "case {i}: {client} {user:?}");
        }
    }

    #[test]
    fn success_refunds_and_time_refills() {
        let mut l = limiter();
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(l.admit(A, Some("amira"), t, wall()), Admission::Admitted);
            l.refund(A, Some("amira"), t);
        }
        l.admit(A, Some("amira"), t, wall());
        l.admit(A, Some("amira"), t, wall());
        let Admission::Refused { retry_after, .. } = l.admit(A, Some("amira"), t, wall()) else {
            panic!("third failure in a row is refused");
        };
        // 2 per 40 s: one token back after 20 s.
        assert_eq!(retry_after, Duration::from_secs(20));
        let later = t + Duration::from_secs(20);
        assert_eq!(
            l.admit(A, Some("amira"), later, wall()),
            Admission::Admitted
        );
    }

    #[test]
    fn an_episode_reports_its_start_once_and_a_count_at_the_end() {
        let mut l = limiter();
        let t = Instant::now();
        for _ in 0..2 {
            l.admit(A, Some("amira"), t, wall());
        }
        for _ in 0..50 {
            assert!(refused(&l.admit(A, Some("amira"), t, wall())).is_some());
        }
        let first = l.sweep(t, false);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(matches!(&first[0], Report::Started { key, .. } if key.user() == Some("amira")));
        assert_eq!(
            l.sweep(t + QUIET / 2, false),
            vec![],
            "nothing new while it goes on"
        );
        let end = l.sweep(t + QUIET, false);
        assert!(
            matches!(
                &end[..],
                [Report::Summary {
                    refused: 50,
                    ended: true,
                    ..
                }]
            ),
            "{end:?}"
        );
        assert_eq!(l.sweep(t + QUIET * 2, false), vec![]);
    }

    #[test]
    fn long_episodes_are_summarized_periodically_and_closing_ends_all() {
        let mut l = limiter();
        let t = Instant::now();
        let mut now = t;
        for _ in 0..4 {
            l.admit(A, None, t, wall());
        }
        let mut summaries = 0;
        let mut refusals = 0u64;
        let mut counted = 0u64;
        while now < t + REPORT_EVERY * 2 + Duration::from_secs(5) {
            if refused(&l.admit(A, None, now, wall())).is_some() {
                refusals += 1;
            }
            for r in l.sweep(now, false) {
                if let Report::Summary { refused, ended, .. } = r {
                    assert!(!ended, "still going on");
                    summaries += 1;
                    counted += refused;
                }
            }
            now += Duration::from_millis(100);
        }
        assert_eq!(summaries, 2);
        for r in l.sweep(now, true) {
            if let Report::Summary { refused, ended, .. } = r {
                assert!(ended);
                counted += refused;
            }
        }
        assert_eq!(counted, refusals, "every refusal is counted exactly once");
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let mut l = limiter();
        let t = Instant::now();
        l.admit(A, Some("amira"), t, wall());
        assert_eq!(l.tracked(), 2);
        l.sweep(t + Duration::from_secs(1), false);
        assert_eq!(l.tracked(), 2, "not refilled yet");
        l.sweep(t + Duration::from_secs(40), false);
        assert_eq!(l.tracked(), 0);
    }
}
