//! RFC 2136 UPDATE messages for the DNS actions: prerequisites and replacements built as
//! data (pure, unit-tested), sent signed with TSIG, and the server's answer mapped to what a
//! caller branches on (applied / prerequisite failed) or a clear error.

use std::net::SocketAddr;

use anyhow::{Result, anyhow, bail};
use hickory_net::DnsHandle;
use hickory_net::NetError;
use hickory_net::proto::op::{
    DEFAULT_MAX_PAYLOAD_LEN, DnsRequest, Edns, Message, OpCode, Query, ResponseCode, UpdateMessage,
};
use hickory_net::proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{REQUEST_TIMEOUT, TsigKey, client, signer};

/// An RRset as a prerequisite ("exists with exactly these records", or "does not exist" when
/// `rdata` is empty) or as the replacement of one (delete the RRset, add `rdata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rrset {
    pub name: Name,
    pub rtype: RecordType,
    pub rdata: Vec<RData>,
}

/// One UPDATE: all `prereqs` must hold, then every `replace` RRset is swapped in, atomically
/// (the server applies all or nothing).
#[derive(Debug, Clone, Default)]
pub(super) struct Update {
    pub prereqs: Vec<Rrset>,
    pub replace: Vec<(Rrset, u32)>,
    /// RFC 2136 §2.4.4 "name is in use": used by the TSIG probe, which must never match.
    pub name_in_use: Option<Name>,
}

/// What the server said about an update it authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Applied,
    /// YXRRSET / NXRRSET: an RRset prerequisite did not hold; nothing changed.
    RrsetPrereqFailed,
    /// NXDOMAIN: the "name is in use" prerequisite did not hold; nothing changed.
    NameNotInUse,
}

impl Update {
    /// The wire message for `zone` (class IN).
    pub fn message(&self, zone: &Name) -> Message {
        let mut zone_q = Query::new();
        zone_q
            .set_name(zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        let mut m = Message::query();
        m.metadata.op_code = OpCode::Update;
        m.metadata.recursion_desired = false;
        m.add_zone(zone_q);
        if let Some(name) = &self.name_in_use {
            let mut r = Record::update0(name.clone(), 0, RecordType::ANY);
            r.dns_class = DNSClass::ANY;
            m.add_pre_requisite(r);
        }
        for p in &self.prereqs {
            if p.rdata.is_empty() {
                // §2.4.3 RRset does not exist.
                let mut r = Record::update0(p.name.clone(), 0, p.rtype);
                r.dns_class = DNSClass::NONE;
                m.add_pre_requisite(r);
            } else {
                // §2.4.2 RRset exists (value dependent): the whole RRset must match.
                for d in &p.rdata {
                    m.add_pre_requisite(Record::from_rdata(p.name.clone(), 0, d.clone()));
                }
            }
        }
        for (set, ttl) in &self.replace {
            // §2.5.2 delete an RRset, then §2.5.1 add to it.
            let mut del = Record::update0(set.name.clone(), 0, set.rtype);
            del.dns_class = DNSClass::ANY;
            m.add_update(del);
            for d in &set.rdata {
                m.add_update(Record::from_rdata(set.name.clone(), *ttl, d.clone()));
            }
        }
        m.edns
            .get_or_insert_with(Edns::new)
            .set_max_payload(DEFAULT_MAX_PAYLOAD_LEN)
            .set_version(0);
        m
    }

    /// Send it to `server` signed with `key`.
    pub async fn send(&self, server: SocketAddr, zone: &Name, key: &TsigKey) -> Result<Answer> {
        use futures::StreamExt;
        let c = client(server, Some(signer(key)?));
        let mut responses = c.send(DnsRequest::from(self.message(zone)));
        let resp = tokio::time::timeout(REQUEST_TIMEOUT * 2, responses.next())
            .await
            .map_err(|_| anyhow!("DNS update to {server}: timed out"))?
            .unwrap_or(Err(NetError::Timeout));
        let resp = match resp {
            Ok(r) => r,
            Err(e) if is_tsig_failure(&e) => {
                return Err(tsig_failed(server, key, "response not verifiable"));
            }
            Err(e) => bail!("DNS update to {server}: {e}"),
        };
        match resp.response_code {
            ResponseCode::NoError => Ok(Answer::Applied),
            ResponseCode::NXRRSet | ResponseCode::YXRRSet => Ok(Answer::RrsetPrereqFailed),
            ResponseCode::NXDomain if self.name_in_use.is_some() => Ok(Answer::NameNotInUse),
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
}

/// hickory reports a response it cannot verify (a server rejecting our key answers with an
/// unsigned BADSIG/BADKEY) as a confusing request to support truncated HMACs.
fn is_tsig_failure(e: &NetError) -> bool {
    let s = e.to_string();
    s.contains("HMAC") || s.contains("TSIG") || s.contains("tsig") || s.contains("Tsig")
}

fn tsig_failed(server: SocketAddr, key: &TsigKey, detail: &str) -> anyhow::Error {
    anyhow!(
        "TSIG authentication failed at {server}: key {:?} not accepted ({detail}); check the key name and secret",
        key.name
    )
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_net::proto::rr::rdata::{A, TXT};

    use super::*;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    #[test]
    fn prerequisites_and_replacements_follow_rfc2136() {
        let zone = n("nilecare.sd.");
        let a = |ip: [u8; 4]| RData::A(A::from(std::net::Ipv4Addr::from(ip)));
        let txt = |v: &str| RData::TXT(TXT::new(vec![v.to_string()]));
        let u = Update {
            prereqs: vec![
                Rrset {
                    name: n("db.nilecare.sd."),
                    rtype: RecordType::A,
                    rdata: vec![a([127, 0, 1, 1])],
                },
                Rrset {
                    name: n("_niledr-generation.nilecare.sd."),
                    rtype: RecordType::TXT,
                    rdata: vec![],
                },
            ],
            replace: vec![(
                Rrset {
                    name: n("_niledr-generation.nilecare.sd."),
                    rtype: RecordType::TXT,
                    rdata: vec![txt("8")],
                },
                60,
            )],
            name_in_use: None,
        };
        let m = u.message(&zone);
        let pre: Vec<(String, DNSClass, RecordType, u32)> = m
            .prerequisites()
            .iter()
            .map(|r| (r.name.to_string(), r.dns_class, r.record_type(), r.ttl))
            .collect();
        assert_eq!(
            pre,
            [
                ("db.nilecare.sd.".into(), DNSClass::IN, RecordType::A, 0),
                (
                    "_niledr-generation.nilecare.sd.".into(),
                    DNSClass::NONE,
                    RecordType::TXT,
                    0
                ),
            ]
        );
        let upd: Vec<(DNSClass, RecordType, u32)> = m
            .updates()
            .iter()
            .map(|r| (r.dns_class, r.record_type(), r.ttl))
            .collect();
        assert_eq!(
            upd,
            [
                (DNSClass::ANY, RecordType::TXT, 0),
                (DNSClass::IN, RecordType::TXT, 60)
            ]
        );
        assert_eq!(m.metadata.op_code, OpCode::Update);
        assert_eq!(m.zones()[0].name(), &zone);
    }
}
