//! `dns` probe: ask every authoritative server directly for the A set of a name, report each
//! answer and TTL, and compare with the expected set.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;

use super::Outcome;
use crate::result::{DnsObservation, DnsServerAnswer, Observation};
use crate::target::DnsSpec;

pub struct DnsProber {
    spec: DnsSpec,
    expected: Vec<Ipv4Addr>,
}

impl DnsProber {
    pub fn new(spec: DnsSpec) -> Self {
        let mut expected = spec.expect.clone();
        expected.sort();
        expected.dedup();
        Self { spec, expected }
    }

    pub async fn run(&mut self, timeout: Duration) -> Outcome {
        let name = Name::from_str(&self.spec.name)
            .map_err(|e| format!("bad DNS name {:?}: {e}", self.spec.name))?;
        // Ask all servers at once; each gets the probe's own timeout.
        let asks = self
            .spec
            .servers
            .iter()
            .map(|s| ask(*s, name.clone(), timeout));
        let servers: Vec<DnsServerAnswer> = futures::future::join_all(asks).await;
        let all_failed = servers.iter().all(|s| s.error.is_some());
        let matches_expected = servers
            .iter()
            .all(|s| s.error.is_none() && s.answers == self.expected);
        let obs = DnsObservation {
            name: self.spec.name.clone(),
            expected: self.expected.clone(),
            servers,
            matches_expected,
        };
        if all_failed {
            return Err(obs.summary());
        }
        Ok(Observation::Dns(obs))
    }
}

async fn ask(server: SocketAddr, name: Name, timeout: Duration) -> DnsServerAnswer {
    let mut answer = DnsServerAnswer {
        server,
        answers: Vec::new(),
        ttl: None,
        authoritative: false,
        error: None,
    };
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(timeout))
        .build();
    let (mut client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    let bg = tokio::spawn(bg);
    let resp = tokio::time::timeout(timeout, client.query(name, DNSClass::IN, RecordType::A)).await;
    bg.abort();
    let resp = match resp {
        Err(_) => {
            answer.error = Some(format!("timed out after {timeout:?}"));
            return answer;
        }
        Ok(Err(e)) => {
            answer.error = Some(e.to_string());
            return answer;
        }
        Ok(Ok(r)) => r,
    };
    if resp.metadata.response_code != ResponseCode::NoError {
        answer.error = Some(format!("rcode {}", resp.metadata.response_code));
        return answer;
    }
    answer.authoritative = resp.metadata.authoritative;
    for rec in &resp.answers {
        if let RData::A(a) = &rec.data {
            answer.answers.push(a.0);
            answer.ttl = Some(answer.ttl.map_or(rec.ttl, |t: u32| t.min(rec.ttl)));
        }
    }
    answer.answers.sort();
    answer.answers.dedup();
    answer
}
