//! A request flood cannot make a healthy site look down (issue 8 §10): 128 concurrent clients
//! hammer the real daemon with a known user name and a wrong secret while the real topology
//! stays healthy; no status change, 429s with Retry-After, the refusals audited as a count,
//! and right tokens from other clients (the flooded user's among them) still accepted.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use niledr_tests::daemon::Niledr;
use niledr_tests::scenario::{self, World};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

const CONCURRENCY: usize = 128;
const FLOOD: Duration = Duration::from_secs(40);
/// The flooding client; the people come from other loopback addresses.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const VIEWER_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const AMIRA_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// The shipped defaults the test relies on (docs/config.md, `[auth]`).
const PER_CLIENT_USER: u64 = 5;
const WINDOW_SECS: u64 = 60;
/// The harness probes every 1 s and marks a service down after 3 failures.
const DETECTION_WINDOW: Duration = Duration::from_secs(3);

/// One answer of the daemon.
struct Reply {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

/// A keep-alive HTTP/1.1 connection from a chosen loopback address.
struct Conn {
    from: Ipv4Addr,
    to: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(from: Ipv4Addr, to: SocketAddr) -> Conn {
        Conn {
            from,
            to,
            stream: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut BufReader<TcpStream>> {
        if self.stream.is_none() {
            let sock = TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(IpAddr::V4(self.from), 0))?;
            self.stream = Some(BufReader::new(sock.connect(self.to).await?));
        }
        Ok(self.stream.as_mut().unwrap())
    }

    /// `GET /api/v1/whoami` with `token`; reconnects once if the server closed the connection.
    async fn whoami(&mut self, token: &str) -> Result<Reply> {
        match self.try_whoami(token).await {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_whoami(token).await
            }
        }
    }

    async fn try_whoami(&mut self, token: &str) -> Result<Reply> {
        let to = self.to;
        let s = self.connect().await?;
        let req = format!(
            "GET /api/v1/whoami HTTP/1.1\r\nHost: {to}\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        s.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let (mut length, mut retry_after) = (0usize, None);
        loop {
            line.clear();
            s.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse()?,
                    "retry-after" => retry_after = v.trim().parse().ok(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        s.read_exact(&mut body).await?;
        Ok(Reply {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

#[derive(Default)]
struct Tally {
    unauthorized: AtomicU64,
    throttled: AtomicU64,
    /// 429s without a Retry-After or without the JSON message.
    malformed_429: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

/// One flooding client: wrong secrets for `user` as fast as the daemon answers, until `until`.
async fn flood(to: SocketAddr, user: &str, until: Instant, tally: Arc<Tally>) {
    let mut conn = Conn::new(ATTACKER, to);
    let token = format!("ndr_{user}_{}", "0".repeat(48));
    while Instant::now() < until {
        let r = match conn.whoami(&token).await {
            Ok(r) => r,
            Err(_) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let counter = match r.status {
            401 => &tally.unauthorized,
            429 => {
                let json: Option<serde_json::Value> = serde_json::from_str(&r.body).ok();
                let clear = json
                    .as_ref()
                    .and_then(|j| j["error"].as_str())
                    .is_some_and(|m| {
                        m.contains("too many failed authentication attempts") && m.contains(user)
                    });
                if r.retry_after.is_none_or(|s| s < 1) || !clear {
                    tally.malformed_429.fetch_add(1, Ordering::Relaxed);
                }
                &tally.throttled
            }
            _ => &tally.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A person's first (uncached) authentication from `from`, during the flood: (status, name, ms).
async fn person(from: Ipv4Addr, to: SocketAddr, token: &str) -> Result<(u16, String, u128)> {
    let started = Instant::now();
    let r = Conn::new(from, to).whoami(token).await?;
    let name = serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["name"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((r.status, name, started.elapsed().as_millis()))
}

fn last_status_seq(niledr: &Niledr) -> Result<u64> {
    let (_, v) = niledr.get("/api/v1/status-changes?limit=1")?;
    Ok(v.as_array()
        .and_then(|a| a.first())
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or(0))
}

fn service_ids(niledr: &Niledr) -> Result<Vec<String>> {
    let (_, v) = niledr.get("/api/v1/services")?;
    Ok(v.as_array()
        .context("services")?
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect())
}

/// Per service: (probes in the window, max gap between probe starts, max latency).
fn probe_schedule(
    niledr: &Niledr,
    id: &str,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> Result<(usize, Duration, f64)> {
    let (_, h) = niledr.get(&format!("/api/v1/services/{id}/history?limit=500"))?;
    let mut probes: Vec<(jiff::Timestamp, f64)> = h["probes"]
        .as_array()
        .context("probes")?
        .iter()
        .filter_map(|p| Some((p["at"].as_str()?.parse().ok()?, p["latency_ms"].as_f64()?)))
        .filter(|(at, _)| *at >= from && *at <= to)
        .collect();
    probes.sort_by_key(|p| p.0);
    let gap = probes
        .windows(2)
        .map(|w| w[1].0.duration_since(w[0].0).unsigned_abs())
        .max()
        .unwrap_or_default();
    let latency = probes.iter().map(|p| p.1).fold(0.0, f64::max);
    Ok((probes.len(), gap, latency))
}

/// Wait until every service has a verdict and none changed for a detection window; returns the
/// last status change's seq.
fn settle(niledr: &Niledr) -> Result<u64> {
    niledr.wait_json("/api/v1/services", Duration::from_secs(30), |v| {
        v.as_array()
            .is_some_and(|a| a.iter().all(|s| s["status"] != "unknown"))
    })?;
    niledr_tests::util::wait_until(Instant::now() + Duration::from_secs(30), || {
        let (_, v) = niledr.get("/api/v1/status-changes?limit=1")?;
        let last: Option<jiff::Timestamp> = v[0]["at"].as_str().and_then(|a| a.parse().ok());
        let quiet = jiff::SignedDuration::try_from(DETECTION_WINDOW)?;
        Ok(last.is_none_or(|at| jiff::Timestamp::now().duration_since(at) > quiet))
    })?;
    last_status_seq(niledr)
}

/// What the flood saw: the tally, and the first authentication of the viewer (a quarter in)
/// and of the flooded user (half way), each from its own client address.
struct Flood {
    tally: Arc<Tally>,
    viewer: (u16, String, u128),
    amira: (u16, String, u128),
}

fn run_flood(w: &World) -> Result<Flood> {
    let to = w.niledr.listen;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tally = Arc::new(Tally::default());
    let (viewer, amira) = rt.block_on(async {
        let until = Instant::now() + FLOOD;
        let flooders: Vec<_> = (0..CONCURRENCY)
            .map(|_| tokio::spawn(flood(to, "amira", until, tally.clone())))
            .collect();
        tokio::time::sleep(FLOOD / 4).await;
        let viewer = person(VIEWER_CLIENT, to, &w.people.viewer).await;
        tokio::time::sleep(FLOOD / 4).await;
        let amira = person(AMIRA_CLIENT, to, &w.people.ic).await;
        for f in flooders {
            f.await.unwrap();
        }
        (viewer, amira)
    });
    Ok(Flood {
        tally,
        viewer: viewer?,
        amira: amira?,
    })
}

/// Wait until every service was probed a detection window after the flood; return the status
/// changes after `before` and the worst probe gap during the flood (printing each service's).
fn after_flood(
    niledr: &Niledr,
    before: u64,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> Result<(Vec<serde_json::Value>, Duration)> {
    let ids = service_ids(niledr)?;
    let settle = to + jiff::SignedDuration::try_from(DETECTION_WINDOW)?;
    for id in &ids {
        niledr.wait_json(
            &format!("/api/v1/services/{id}/history?limit=1"),
            Duration::from_secs(15),
            |h| {
                h["probes"][0]["at"]
                    .as_str()
                    .and_then(|a| a.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|at| at > settle)
            },
        )?;
    }
    let (_, changes) = niledr.get("/api/v1/status-changes?limit=100")?;
    let new = changes
        .as_array()
        .context("status changes")?
        .iter()
        .filter(|c| c["seq"].as_u64().is_some_and(|s| s > before))
        .cloned()
        .collect();
    let mut worst_gap = Duration::ZERO;
    for id in &ids {
        let (n, gap, latency) = probe_schedule(niledr, id, from, to)?;
        eprintln!(
            "flood: {id}: {n} probes, max gap {} ms, max latency {latency:.1} ms",
            gap.as_millis()
        );
        assert!(n > 0, "{id} was probed during the flood");
        worst_gap = worst_gap.max(gap);
    }
    Ok((new, worst_gap))
}

#[test]
fn a_wrong_secret_flood_changes_no_status_and_is_throttled_and_audited() -> Result<()> {
    let w = scenario::start()?;
    let before = settle(&w.niledr)?;
    let flood_start = jiff::Timestamp::now();
    let Flood {
        tally,
        viewer,
        amira,
    } = run_flood(&w)?;
    let flood_end = jiff::Timestamp::now();
    let (new, worst_gap) = after_flood(&w.niledr, before, flood_start, flood_end)?;

    let t = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (n401, n429) = (t(&tally.unauthorized), t(&tally.throttled));
    eprintln!(
        "flood: {CONCURRENCY} clients for {FLOOD:?}: {n429} × 429, {n401} × 401, {} other, {} errors; \
         {} status changes; worst probe gap {} ms; first auth during the flood: viewer {} ms, amira {} ms",
        t(&tally.other),
        t(&tally.errors),
        new.len(),
        worst_gap.as_millis(),
        viewer.2,
        amira.2,
    );
    assert!(new.is_empty(), "status changes during the flood: {new:#?}");
    assert!(
        worst_gap < DETECTION_WINDOW,
        "a probe gap as long as a detection window: {worst_gap:?}"
    );
    assert!(n429 > 0, "the flood was throttled");
    assert_eq!(
        t(&tally.malformed_429),
        0,
        "every 429 has Retry-After and a message"
    );
    assert_eq!(
        (t(&tally.other), t(&tally.errors)),
        (0, 0),
        "only 401 and 429"
    );
    // argon2 ran only for the allowance: the burst plus what refilled during the flood.
    let allowance = PER_CLIENT_USER + (FLOOD.as_secs() * PER_CLIENT_USER).div_ceil(WINDOW_SECS);
    assert!(
        (1..=allowance).contains(&n401),
        "{n401} wrong secrets were verified; the allowance is {allowance}"
    );
    assert_eq!((viewer.0, viewer.1.as_str()), (200, "nour"));
    assert_eq!(
        (amira.0, amira.1.as_str()),
        (200, "amira"),
        "the flooded user, from her own client"
    );
    finish_and_check_audit(w, n429)
}

/// Stop niledr (log clean, chain verifies), then read its audit: one `auth.throttled` for the
/// flood's episode and summaries whose counts add up to the 429s the clients saw.
fn finish_and_check_audit(w: World, n429: u64) -> Result<()> {
    let errors = w.niledr.unexpected_errors(&[])?;
    assert!(errors.is_empty(), "unexpected ERROR lines: {errors:#?}");
    let (status, v) = w.niledr.get("/api/v1/audit/verify")?;
    assert_eq!(status, 200, "{v:#}");
    let World {
        niledr,
        agent,
        topo,
        ..
    } = w;
    niledr.stop()?;
    let store =
        niledr_orchestrator::store::Store::open(&topo.base_dir().join("state/niledr.redb"))?;
    let auth: Vec<_> = store
        .audit_entries()?
        .into_iter()
        .filter(|e| e.action.starts_with("auth."))
        .collect();
    for e in &auth {
        eprintln!("audit: {} {}", e.action, e.detail);
    }
    let started: Vec<_> = auth
        .iter()
        .filter(|e| e.action == "auth.throttled")
        .collect();
    assert_eq!(started.len(), 1, "one entry for the start of the episode");
    assert_eq!(started[0].detail["client"], ATTACKER.to_string());
    assert_eq!(started[0].detail["user"], "amira");
    assert_eq!(started[0].detail["limit"], "per_client_user");
    let counted: u64 = auth
        .iter()
        .filter(|e| e.action == "auth.throttle_summary")
        .filter(|e| e.detail["client"] == ATTACKER.to_string())
        .map(|e| e.detail["refused"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, n429, "every refusal is counted in the audit");
    assert!(
        auth.len() <= 3,
        "the audit log is not flooded: {} auth entries",
        auth.len()
    );
    drop(store);
    drop(agent);
    drop(topo);
    Ok(())
}
