//! DNS actions: RFC 2136 updates signed with TSIG (hickory-net) — TTL lowering, the
//! compare-and-swap cutover fenced by the generation record `_niledr-generation.<zone>`, the
//! TSIG readiness probe — and verification that every authoritative server answers.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::DnsResponse;
use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_net::proto::rr::rdata::{A, TXT};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType, TSigner};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use tokio::time::{Instant, sleep};

pub use crate::config::tsig::TsigKey;

pub mod mode;
mod update;
use update::{Answer, Rrset, Update};

/// Per request; UDP retries happen inside it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const VERIFY_POLL: Duration = Duration::from_millis(10);
/// Allowed clock difference between us and the server for TSIG.
const TSIG_FUDGE: u16 = 300;
/// Owner name (below the zone apex) of the TXT record holding the fencing generation.
pub const GENERATION_LABEL: &str = "_niledr-generation";
const GENERATION_TTL: u32 = 60;

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

// ---------------------------------------------------------------------------------------
// the fencing generation

/// A change refused because the world already carries a newer fencing generation than the
/// execution's: that execution is stale and must stop (retrying cannot help). The DNS record
/// is the authoritative copy; connection-string files carry one too (`connstr`, `pgbouncer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleGeneration {
    /// The execution's generation.
    pub held: u64,
    /// The newer one found.
    pub found: u64,
    /// Where it was found (the record or the file).
    pub place: String,
}

impl fmt::Display for StaleGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stale execution: generation {} is older than generation {} already in {}; nothing was changed",
            self.held, self.found, self.place
        )
    }
}

impl std::error::Error for StaleGeneration {}

/// `_niledr-generation.<zone>`.
pub fn generation_name(zone: &str) -> Result<Name> {
    generation_owner(&fqdn(zone)?)
}

fn generation_owner(zone: &Name) -> Result<Name> {
    Name::from_str(GENERATION_LABEL)
        .and_then(|l| l.append_domain(zone))
        .with_context(|| format!("generation record name under {zone}"))
}

fn txt_rrset(name: &Name, value: Option<String>) -> Rrset {
    Rrset {
        name: name.clone(),
        rtype: RecordType::TXT,
        rdata: value
            .map(|v| RData::TXT(TXT::new(vec![v])))
            .into_iter()
            .collect(),
    }
}

/// The generation `server` holds for `zone` (`None`: no record yet).
pub async fn query_generation(server: SocketAddr, zone: &str) -> Result<Option<u64>> {
    read_generation(server, &generation_name(zone)?).await
}

/// Every TXT record `server` holds at `owner`, each as its character-strings.
async fn query_txt(server: SocketAddr, owner: &Name) -> Result<Vec<Vec<String>>> {
    let resp = query(server, owner, RecordType::TXT).await?;
    Ok(resp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

async fn read_generation(server: SocketAddr, owner: &Name) -> Result<Option<u64>> {
    let values: Vec<String> = query_txt(server, owner)
        .await?
        .into_iter()
        .map(|strings| strings.concat())
        .collect();
    match values.as_slice() {
        [] => Ok(None),
        [v] => v.trim().parse().map(Some).map_err(|_| {
            anyhow!("{owner} TXT at {server} is {v:?}, not a generation number; fix it by hand")
        }),
        many => bail!(
            "{owner} at {server} holds {} TXT records {many:?}, expected one generation number; fix it by hand",
            many.len()
        ),
    }
}

/// What an execution holding generation `held` found in DNS (never newer: that is refused).
struct Fence {
    owner: Name,
    held: u64,
    found: Option<u64>,
}

impl Fence {
    async fn read(server: SocketAddr, zone: &Name, held: u64) -> Result<Fence> {
        let owner = generation_owner(zone)?;
        let found = read_generation(server, &owner).await?;
        if let Some(found) = found
            && found > held
        {
            return Err(stale(held, found, &owner, server));
        }
        Ok(Fence { owner, held, found })
    }

    /// Compare-and-swap of the TXT record: still `found`, becomes `held`.
    fn add_to(&self, u: &mut Update) {
        u.prereqs
            .push(txt_rrset(&self.owner, self.found.map(|g| g.to_string())));
        u.replace.push((
            txt_rrset(&self.owner, Some(self.held.to_string())),
            GENERATION_TTL,
        ));
    }
}

fn stale(held: u64, found: u64, owner: &Name, server: SocketAddr) -> anyhow::Error {
    anyhow::Error::new(StaleGeneration {
        held,
        found,
        place: format!("DNS ({owner} at {server})"),
    })
}

// ---------------------------------------------------------------------------------------
// queries

async fn query(server: SocketAddr, name: &Name, rtype: RecordType) -> Result<DnsResponse> {
    let mut c = client(server, None);
    let resp = tokio::time::timeout(
        REQUEST_TIMEOUT * 2,
        c.query(name.clone(), DNSClass::IN, rtype),
    )
    .await
    .map_err(|_| anyhow!("DNS query {name} {rtype} @{server}: timed out"))?
    .map_err(|e| anyhow!("DNS query {name} {rtype} @{server}: {e}"))?;
    use hickory_net::proto::op::ResponseCode;
    match resp.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(resp),
        code => bail!("DNS query {name} {rtype} @{server}: server answered {code}"),
    }
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
    let resp = query(server, &fqdn(name)?, RecordType::A).await?;
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

fn a_rrset(name: &Name, addrs: &[Ipv4Addr]) -> Rrset {
    Rrset {
        name: name.clone(),
        rtype: RecordType::A,
        rdata: addrs.iter().map(|ip| RData::A(A(*ip))).collect(),
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
    /// The record already held the new answer: its A RRset was not sent again (the
    /// generation record may still have been raised to the execution's).
    pub already_done: bool,
    /// The generation record before and after (both `None` for an unfenced cutover).
    pub generation_before: Option<u64>,
    pub generation: Option<u64>,
    pub took: Duration,
}

/// Point `name` at `new` with one RFC 2136 update to `server` (the primary), signed with
/// `key`, whose prerequisite is that the RRset still holds exactly `expected_old`
/// (compare-and-swap). Already `new` → A not sent again. Anything else → refused, nothing
/// changed. The rollback is the same call with `expected_old` and `new` exchanged and the
/// same generation.
///
/// With `generation: Some(n)` the same message also swaps the TXT record
/// `_niledr-generation.<zone>` to `n`, with the value read just before as a prerequisite
/// ("does not exist" when absent). A record newer than `n` refuses the cutover before
/// anything is sent ([`StaleGeneration`]); the same `n` again (a retry, an in-doubt step, a
/// second name of one execution) succeeds. When the A record already holds `new` but the
/// generation is older, only the TXT is raised (prerequisite: A is `new`), so an older
/// execution can no longer cut back.
#[expect(
    clippy::too_many_arguments,
    reason = "plain parameters, as for every action"
)]
pub async fn cutover(
    server: SocketAddr,
    zone: &str,
    name: &str,
    expected_old: &[Ipv4Addr],
    new: &[Ipv4Addr],
    ttl: u32,
    key: &TsigKey,
    generation: Option<u64>,
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
    let fence = match generation {
        Some(n) => Some(Fence::read(server, &zone_name, n).await?),
        None => None,
    };
    let current = query_a(server, name).await?.addrs;
    let already_done = current == new;
    let mut update = Update::default();
    if already_done {
        update.prereqs.push(a_rrset(&rr_name, &new));
    } else {
        // Sent even when `current` already differs from `old`: the server's prerequisite is
        // the authority (our query and the update are not atomic); it refuses, changing nothing.
        update.prereqs.push(a_rrset(&rr_name, &old));
        update.replace.push((a_rrset(&rr_name, &new), ttl));
    }
    if let Some(f) = &fence
        && (!already_done || f.found != Some(f.held))
    {
        f.add_to(&mut update);
    }
    let outcome = |already_done| CutoverOutcome {
        name: rr_name.to_string(),
        before: current.clone(),
        after: new.clone(),
        already_done,
        generation_before: fence.as_ref().and_then(|f| f.found),
        generation: fence.as_ref().map(|f| f.held),
        took: t0.elapsed(),
    };
    if update.replace.is_empty() {
        return Ok(outcome(true));
    }
    match update.send(server, &zone_name, key).await? {
        Answer::Applied => Ok(outcome(already_done)),
        Answer::RrsetPrereqFailed | Answer::NameNotInUse => {
            explain_refusal(server, &rr_name, &old, &new, fence.as_ref()).await?;
            Ok(outcome(true))
        }
    }
}

/// The server refused the compare-and-swap: `Ok` when the world already is what we wanted
/// (a retried datagram, another writer with the same intent and generation), else why not.
async fn explain_refusal(
    server: SocketAddr,
    rr_name: &Name,
    old: &[Ipv4Addr],
    new: &[Ipv4Addr],
    fence: Option<&Fence>,
) -> Result<()> {
    let now = query_a(server, &rr_name.to_string()).await?.addrs;
    let generation_now = match fence {
        Some(f) => read_generation(server, &f.owner).await?,
        None => None,
    };
    if let Some(f) = fence
        && let Some(g) = generation_now
        && g > f.held
    {
        return Err(stale(f.held, g, &f.owner, server));
    }
    if now == new && fence.is_none_or(|f| generation_now == Some(f.held)) {
        return Ok(());
    }
    let generation = match fence {
        Some(f) => format!(
            "; the generation record holds {}, expected {}",
            show(generation_now),
            show(f.found)
        ),
        None => String::new(),
    };
    bail!(
        "cutover of {rr_name}: compare-and-swap refused by the server's prerequisite: {server} answers {now:?}, expected {old:?}{generation} (changed by someone else?); nothing was changed"
    )
}

fn show(g: Option<u64>) -> String {
    g.map_or_else(|| "absent".into(), |g| g.to_string())
}

// ---------------------------------------------------------------------------------------
// readiness

/// Prove that `server` accepts `key` for updates of `zone`, changing nothing: a signed
/// UPDATE whose prerequisite cannot hold ("name is in use" for a random name that does not
/// exist). A TSIG-verified NXDOMAIN (prerequisite failed) is the proof; a wrong key is
/// reported as "TSIG authentication failed at SERVER: ...".
pub async fn prove_tsig(server: SocketAddr, zone: &str, key: &TsigKey) -> Result<String> {
    let zone_name = fqdn(zone)?;
    let probe = fqdn(&format!(
        "_niledr-ready-{:016x}.{zone_name}",
        rand::random::<u64>()
    ))?;
    let update = Update {
        prereqs: Vec::new(),
        replace: vec![(txt_rrset(&probe, Some("niledr readiness probe".into())), 0)],
        name_in_use: Some(probe.clone()),
    };
    match update.send(server, &zone_name, key).await? {
        Answer::NameNotInUse => Ok(format!(
            "{server} accepts TSIG key {:?} for updates of {zone_name} (signed probe answered NXDOMAIN; nothing changed)",
            key.name
        )),
        Answer::Applied => bail!(
            "TSIG probe at {server}: {probe} unexpectedly existed and the probe TXT was written; remove it"
        ),
        Answer::RrsetPrereqFailed => bail!(
            "TSIG probe at {server}: unexpected RRset prerequisite failure for a name prerequisite"
        ),
    }
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
    let update = Update {
        prereqs: vec![a_rrset(&rr_name, &cur.addrs)],
        replace: vec![(a_rrset(&rr_name, &cur.addrs), ttl)],
        name_in_use: None,
    };
    let applied = update.send(server, &zone_name, key).await? == Answer::Applied;
    let now = query_a(server, name).await?;
    if now.addrs == cur.addrs && now.ttl == Some(ttl) {
        return Ok(done(!applied));
    }
    bail!(
        "TTL of {rr_name} not set: {server} now answers {} with TTL {}",
        now.addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        now.ttl
            .map_or_else(|| "none".to_string(), |t| format!("{t} s"))
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
