//! The platform-mode TXT record (`_platform-mode.<zone>`): how the degradation level niledr
//! publishes for applications is written in DNS (one TXT RR of `key=value` strings), read
//! back from each authoritative server, set with a compare-and-swap update signed with TSIG,
//! and restored to what it was before (a rollback).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};
use hickory_net::proto::rr::rdata::TXT;
use hickory_net::proto::rr::{Name, RData, RecordType};
use tokio::time::{Instant, sleep};

use super::update::{Answer, Rrset, Update};
use super::{TsigKey, VERIFY_POLL, fqdn, query_txt};

/// Applications re-read the record at least this often.
const MODE_TTL: u32 = 30;
/// Version tag, the first string of the record.
const VERSION: &str = "v=niledr1";

/// What the record says: the level, why, since when, which execution set it, and the level it
/// replaced (what a rollback of that execution restores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformMode {
    pub level: u8,
    pub reason: String,
    /// RFC 3339, when this level was set.
    pub since: String,
    pub execution: Option<String>,
    pub previous: Option<Previous>,
}

/// The level a `platform.mode` step replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub level: u8,
    pub execution: Option<String>,
    pub since: Option<String>,
}

impl PlatformMode {
    /// The record's character-strings, each `key=value` (at most 255 bytes each).
    pub fn to_strings(&self) -> Vec<String> {
        let mut v = vec![
            VERSION.to_string(),
            format!("level={}", self.level),
            format!("since={}", self.since),
        ];
        if let Some(e) = &self.execution {
            v.push(format!("execution={e}"));
        }
        if let Some(p) = &self.previous {
            v.push(format!("previous={}", p.level));
            if let Some(e) = &p.execution {
                v.push(format!("previous_execution={e}"));
            }
            if let Some(s) = &p.since {
                v.push(format!("previous_since={s}"));
            }
        }
        v.push(format!("reason={}", clip(&self.reason, 240)));
        v
    }

    /// Parse the strings of one TXT RR; an error says what is wrong (a record someone wrote
    /// by hand in another shape is reported, never read as level 0).
    pub fn parse(strings: &[String]) -> Result<PlatformMode> {
        if strings.first().map(String::as_str) != Some(VERSION) {
            bail!(
                "not a niledr platform-mode record (first string is not {VERSION:?}): {strings:?}"
            );
        }
        let get = |k: &str| {
            strings
                .iter()
                .find_map(|s| s.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(str::to_string)
        };
        let level = get("level")
            .and_then(|l| l.parse::<u8>().ok())
            .ok_or_else(|| {
                anyhow::anyhow!("platform-mode record without a numeric level: {strings:?}")
            })?;
        let previous = match get("previous") {
            None => None,
            Some(p) => Some(Previous {
                level: p
                    .parse()
                    .map_err(|_| anyhow::anyhow!("previous={p:?} is not a level"))?,
                execution: get("previous_execution"),
                since: get("previous_since"),
            }),
        };
        Ok(PlatformMode {
            level,
            reason: get("reason").unwrap_or_default(),
            since: get("since").unwrap_or_default(),
            execution: get("execution"),
            previous,
        })
    }

    fn rdata(&self) -> RData {
        RData::TXT(TXT::new(self.to_strings()))
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The record as one server holds it: its raw strings (to compare-and-swap on) and their
/// reading (`None`: no record, which means level 0 was never changed by niledr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub raw: Option<Vec<String>>,
    pub mode: Option<PlatformMode>,
}

/// Read the record at `server`.
pub async fn read(server: SocketAddr, record: &str) -> Result<Held> {
    let owner = fqdn(record)?;
    let mut sets = query_txt(server, &owner).await?;
    match sets.len() {
        0 => Ok(Held {
            raw: None,
            mode: None,
        }),
        1 => {
            let raw = sets.remove(0);
            let mode = PlatformMode::parse(&raw)
                .map_err(|e| anyhow::anyhow!("{owner} at {server}: {e:#}; fix it by hand"))?;
            Ok(Held {
                raw: Some(raw),
                mode: Some(mode),
            })
        }
        n => bail!("{owner} at {server} holds {n} TXT records, expected one; fix it by hand"),
    }
}

fn rrset(owner: &Name, rdata: Option<RData>) -> Rrset {
    Rrset {
        name: owner.clone(),
        rtype: RecordType::TXT,
        rdata: rdata.into_iter().collect(),
    }
}

/// Replace what `server` holds (`held`, the compare-and-swap prerequisite) by `new`.
/// `Ok(false)`: the prerequisite did not hold (someone changed the record since it was read);
/// nothing changed.
pub async fn swap(
    server: SocketAddr,
    zone: &str,
    record: &str,
    held: &Held,
    new: &PlatformMode,
    key: &TsigKey,
) -> Result<bool> {
    let (zone_name, owner) = (fqdn(zone)?, fqdn(record)?);
    let before = held.raw.as_ref().map(|r| RData::TXT(TXT::new(r.clone())));
    let update = Update {
        prereqs: vec![rrset(&owner, before)],
        replace: vec![(rrset(&owner, Some(new.rdata())), MODE_TTL)],
        name_in_use: None,
    };
    Ok(update.send(server, &zone_name, key).await? == Answer::Applied)
}

/// Poll every authoritative server until each holds exactly `want`.
pub async fn wait_all(
    servers: &[SocketAddr],
    record: &str,
    want: &PlatformMode,
    wait: Duration,
) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        let mut pending = Vec::new();
        for s in servers {
            match read(*s, record).await {
                Ok(h) if h.mode.as_ref() == Some(want) => {}
                Ok(h) => pending.push(format!(
                    "{s} holds level {}",
                    h.mode.map_or("none".into(), |m| m.level.to_string())
                )),
                Err(e) => pending.push(format!("{s}: {e:#}")),
            }
        }
        if pending.is_empty() {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() >= wait {
            bail!(
                "{record} did not reach level {} on every authoritative server within {wait:?}: {}",
                want.level,
                pending.join("; ")
            );
        }
        sleep(VERIFY_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode() -> PlatformMode {
        PlatformMode {
            level: 4,
            reason: "database failover in progress; read-only".into(),
            since: "2026-12-01T03:00:00Z".into(),
            execution: Some("0193-abc".into()),
            previous: Some(Previous {
                level: 0,
                execution: None,
                since: Some("2026-11-30T10:00:00Z".into()),
            }),
        }
    }

    #[test]
    fn round_trips_through_its_strings() {
        let m = mode();
        let s = m.to_strings();
        assert_eq!(s[0], "v=niledr1");
        assert!(s.iter().all(|x| x.len() <= 255), "{s:?}");
        assert_eq!(PlatformMode::parse(&s).unwrap(), m);
        let bare = PlatformMode {
            previous: None,
            execution: None,
            ..mode()
        };
        assert_eq!(PlatformMode::parse(&bare.to_strings()).unwrap(), bare);
    }

    #[test]
    fn a_foreign_or_broken_record_is_an_error_not_level_zero() {
        for bad in [
            vec!["level=4".to_string()],
            vec!["v=niledr1".into(), "level=four".into()],
            vec!["v=niledr1".into()],
            vec!["v=niledr1".into(), "level=4".into(), "previous=x".into()],
        ] {
            assert!(PlatformMode::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_long_reason_is_clipped_on_a_character_boundary() {
        let m = PlatformMode {
            reason: "é".repeat(300),
            ..mode()
        };
        let s = m.to_strings();
        let r = s.last().unwrap();
        assert!(r.len() <= 255 && r.starts_with("reason=é"), "{}", r.len());
    }
}
