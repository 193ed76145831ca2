//! DNS actions: RFC 2136 updates signed with TSIG (hickory-net) — TTL lowering and the
//! compare-and-swap cutover — and verification that every authoritative server answers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hickory_net::NetError;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::{DnsResponse, ResponseCode};
use hickory_net::proto::rr::rdata::A;
use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_net::proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType, TSigner};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use tokio::time::{Instant, sleep};

pub use crate::config::tsig::TsigKey;

/// Per request; UDP retries happen inside it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const VERIFY_POLL: Duration = Duration::from_millis(10);
/// Allowed clock difference between us and the server for TSIG.
const TSIG_FUDGE: u16 = 300;

/// Read a BIND-format key file (`key "NAME" { algorithm hmac-sha256; secret "BASE64"; };`).
pub fn load_key(path: &Path) -> Result<TsigKey> {
    TsigKey::load(path).map_err(|e| anyhow!(e))
}

fn signer(key: &TsigKey) -> Result<TSigner> {
    let algorithm = match key.algorithm.as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => bail!("TSIG algorithm {other} is not supported (hmac-sha256/384/512 only)"),
    };
    let secret = base64_decode(&key.secret).context("TSIG secret is not valid base64")?;
    let name =
        Name::from_str(&key.name).with_context(|| format!("bad TSIG key name {:?}", key.name))?;
    TSigner::new(secret, algorithm, name, TSIG_FUDGE)
        .map_err(|e| anyhow!("TSIG key {}: {e}", key.name))
}

fn fqdn(name: &str) -> Result<Name> {
    let mut n = Name::from_str(name).with_context(|| format!("bad DNS name {name:?}"))?;
    n.set_fqdn(true);
    Ok(n)
}

fn sorted(addrs: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let mut v = addrs.to_vec();
    v.sort();
    v.dedup();
    v
}

fn client(server: SocketAddr, signer: Option<TSigner>) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(REQUEST_TIMEOUT))
        .with_signer(signer)
        .build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    // The background task ends when the last client handle is dropped.
    tokio::spawn(bg);
    client
}

/// hickory reports a response it cannot verify (a server rejecting our key answers with an
/// unsigned BADSIG/BADKEY) as a confusing request to support truncated HMACs.
fn is_tsig_failure(e: &NetError) -> bool {
    let s = e.to_string();
    s.contains("HMAC") || s.contains("TSIG") || s.contains("tsig") || s.contains("Tsig")
}

fn tsig_failed(server: SocketAddr, key: &TsigKey, detail: &str) -> anyhow::Error {
    anyhow!(
        "TSIG authentication failed: {server} did not accept key {:?} ({detail}); check the key name and secret",
        key.name
    )
}

/// An A RRset as one server answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ARrset {
    pub server: SocketAddr,
    /// Sorted; empty when the name has no A record (or does not exist).
    pub addrs: Vec<Ipv4Addr>,
    pub ttl: Option<u32>,
    pub authoritative: bool,
}

/// Ask `server` directly (no recursion, no cache) for the A RRset of `name`.
pub async fn query_a(server: SocketAddr, name: &str) -> Result<ARrset> {
    let name = fqdn(name)?;
    let mut c = client(server, None);
    let resp = tokio::time::timeout(
        REQUEST_TIMEOUT * 2,
        c.query(name.clone(), DNSClass::IN, RecordType::A),
    )
    .await
    .map_err(|_| anyhow!("DNS query {name} A @{server}: timed out"))?
    .map_err(|e| anyhow!("DNS query {name} A @{server}: {e}"))?;
    rrset_from(server, &resp).with_context(|| format!("DNS query {name} A @{server}"))
}

fn rrset_from(server: SocketAddr, resp: &DnsResponse) -> Result<ARrset> {
    match resp.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => bail!("server answered {code}"),
    }
    let mut addrs = Vec::new();
    let mut ttl = None;
    for r in &resp.answers {
        if let RData::A(A(ip)) = &r.data {
            addrs.push(*ip);
            ttl = Some(ttl.map_or(r.ttl, |t: u32| t.min(r.ttl)));
        }
    }
    Ok(ARrset {
        server,
        addrs: sorted(&addrs),
        ttl,
        authoritative: resp.authoritative,
    })
}

fn rrset(name: &Name, addrs: &[Ipv4Addr], ttl: u32) -> RecordSet {
    let mut set = RecordSet::with_ttl(name.clone(), RecordType::A, ttl);
    for ip in addrs {
        set.insert(Record::from_rdata(name.clone(), ttl, RData::A(A(*ip))), 0);
    }
    set
}

/// Send a compare-and-swap update (prerequisite: the RRset is exactly `current`; delete it;
/// add `new`). `Ok(true)` when applied, `Ok(false)` when the prerequisite did not hold.
async fn compare_and_swap(
    server: SocketAddr,
    zone: &Name,
    current: RecordSet,
    new: RecordSet,
    key: &TsigKey,
) -> Result<bool> {
    let mut c = client(server, Some(signer(key)?));
    let resp = tokio::time::timeout(
        REQUEST_TIMEOUT * 2,
        c.compare_and_swap(current, new, zone.clone()),
    )
    .await
    .map_err(|_| anyhow!("DNS update to {server}: timed out"))?;
    let resp = match resp {
        Ok(r) => r,
        Err(e) if is_tsig_failure(&e) => {
            return Err(tsig_failed(server, key, "response not verifiable"));
        }
        Err(e) => return Err(anyhow!("DNS update to {server}: {e}")),
    };
    match resp.response_code {
        ResponseCode::NoError => Ok(true),
        ResponseCode::NXRRSet | ResponseCode::YXRRSet => Ok(false),
        code @ (ResponseCode::NotAuth | ResponseCode::BADSIG | ResponseCode::BADKEY) => {
            Err(tsig_failed(server, key, &format!("server answered {code}")))
        }
        ResponseCode::BADTIME => Err(tsig_failed(
            server,
            key,
            "BADTIME: clocks differ by more than the fudge",
        )),
        ResponseCode::Refused => {
            bail!("DNS update to {server} refused (is the key allowed to update {zone}?)")
        }
        code => bail!("DNS update to {server} failed: {code}"),
    }
}

// ---------------------------------------------------------------------------------------
// cutover

/// What a cutover did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutoverOutcome {
    pub name: String,
    pub before: Vec<Ipv4Addr>,
    pub after: Vec<Ipv4Addr>,
    /// The record already held the new answer: nothing was sent.
    pub already_done: bool,
    pub took: Duration,
}

/// Point `name` at `new` with an RFC 2136 update to `server` (the primary), signed with
/// `key`, whose prerequisite is that the RRset still holds exactly `expected_old`
/// (compare-and-swap). Already `new` → no-op. Anything else → refused, nothing changed.
/// The rollback is the same call with `expected_old` and `new` exchanged.
pub async fn cutover(
    server: SocketAddr,
    zone: &str,
    name: &str,
    expected_old: &[Ipv4Addr],
    new: &[Ipv4Addr],
    ttl: u32,
    key: &TsigKey,
) -> Result<CutoverOutcome> {
    let t0 = Instant::now();
    let (zone_name, rr_name) = (fqdn(zone)?, fqdn(name)?);
    if !zone_name.zone_of(&rr_name) {
        bail!("{rr_name} is not in zone {zone_name}");
    }
    let (old, new) = (sorted(expected_old), sorted(new));
    if new.is_empty() {
        bail!("cutover of {rr_name}: the new answer is empty");
    }
    let outcome = |before: Vec<Ipv4Addr>, already_done: bool| CutoverOutcome {
        name: rr_name.to_string(),
        before,
        after: new.clone(),
        already_done,
        took: t0.elapsed(),
    };
    let current = query_a(server, name).await?.addrs;
    if current == new {
        return Ok(outcome(current, true));
    }
    // Sent even when `current` already differs from `old`: the server's prerequisite is the
    // authority (our query and the update are not atomic), and it refuses without changing.
    let applied = compare_and_swap(
        server,
        &zone_name,
        rrset(&rr_name, &old, 0),
        rrset(&rr_name, &new, ttl),
        key,
    )
    .await?;
    if !applied {
        let now = query_a(server, name).await?.addrs;
        if now == new {
            // A retried datagram, or another writer with the same intent.
            return Ok(outcome(current, true));
        }
        bail!(
            "cutover of {rr_name} refused by the server's prerequisite: {server} answers {now:?}, expected {old:?} (changed by someone else?); nothing was changed"
        );
    }
    Ok(outcome(current, false))
}

// ---------------------------------------------------------------------------------------
// set_ttl

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTtlOutcome {
    pub name: String,
    pub addrs: Vec<Ipv4Addr>,
    pub ttl_before: Option<u32>,
    pub ttl_after: u32,
    pub already_done: bool,
    pub took: Duration,
}

/// Set the TTL of `name`'s A RRset (same addresses) with a compare-and-swap update.
pub async fn set_ttl(
    server: SocketAddr,
    zone: &str,
    name: &str,
    ttl: u32,
    key: &TsigKey,
) -> Result<SetTtlOutcome> {
    let t0 = Instant::now();
    let (zone_name, rr_name) = (fqdn(zone)?, fqdn(name)?);
    let cur = query_a(server, name).await?;
    if cur.addrs.is_empty() {
        bail!("{rr_name} has no A record at {server}: no TTL to set");
    }
    let done = |already_done| SetTtlOutcome {
        name: rr_name.to_string(),
        addrs: cur.addrs.clone(),
        ttl_before: cur.ttl,
        ttl_after: ttl,
        already_done,
        took: t0.elapsed(),
    };
    if cur.ttl == Some(ttl) {
        return Ok(done(true));
    }
    let applied = compare_and_swap(
        server,
        &zone_name,
        rrset(&rr_name, &cur.addrs, 0),
        rrset(&rr_name, &cur.addrs, ttl),
        key,
    )
    .await?;
    let now = query_a(server, name).await?;
    if now.addrs == cur.addrs && now.ttl == Some(ttl) {
        return Ok(done(!applied));
    }
    bail!(
        "TTL of {rr_name} not set: {server} now answers {:?} with TTL {:?}",
        now.addrs,
        now.ttl
    )
}

// ---------------------------------------------------------------------------------------
// verify

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// Until the last server answered the expected set.
    pub converged_in: Duration,
    /// When each server first answered it.
    pub per_server: Vec<(SocketAddr, Duration)>,
}

/// Poll every authoritative server directly until all answer exactly `expect`.
pub async fn verify(
    servers: &[SocketAddr],
    name: &str,
    expect: &[Ipv4Addr],
    wait: Duration,
) -> Result<VerifyOutcome> {
    let t0 = Instant::now();
    let expect = sorted(expect);
    let mut done: Vec<Option<Duration>> = vec![None; servers.len()];
    let mut last: Vec<String> = vec!["not asked yet".into(); servers.len()];
    loop {
        for (i, s) in servers.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            match query_a(*s, name).await {
                Ok(a) if a.addrs == expect => done[i] = Some(t0.elapsed()),
                Ok(a) => last[i] = format!("{:?}", a.addrs),
                Err(e) => last[i] = format!("{e:#}"),
            }
        }
        if done.iter().all(Option::is_some) {
            let per_server: Vec<(SocketAddr, Duration)> = servers
                .iter()
                .copied()
                .zip(done.iter().map(|d| d.unwrap_or_default()))
                .collect();
            return Ok(VerifyOutcome {
                converged_in: per_server.iter().map(|(_, d)| *d).max().unwrap_or_default(),
                per_server,
            });
        }
        if t0.elapsed() >= wait {
            let pending: Vec<String> = servers
                .iter()
                .zip(&done)
                .zip(&last)
                .filter(|((_, d), _)| d.is_none())
                .map(|((s, _), l)| format!("{s} answers {l}"))
                .collect();
            bail!(
                "{name} did not converge on {expect:?} within {wait:?}: {}",
                pending.join("; ")
            );
        }
        sleep(VERIFY_POLL).await;
    }
}

// ---------------------------------------------------------------------------------------

/// Standard base64 (padding optional, whitespace ignored).
fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => bail!("invalid base64 character {:?}", char::from(c)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_rfc4648_vectors() {
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(enc).ok().as_deref(), Some(dec.as_bytes()));
        }
        assert!(base64_decode("Zm9v!").is_err());
    }
}
