//! The bodies niledr sends: a Slack-compatible webhook message (`text` plus `blocks`, which
//! Slack, Mattermost and most chat tools accept) and a PagerDuty Events API v2 event
//! (`routing_key`, `event_action`, `dedup_key`, `payload{summary, source, severity, …}`), and
//! the HMAC-SHA256 signature of a webhook body.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::records::NotificationV1;

#[derive(Serialize, Debug, PartialEq)]
pub struct SlackMessage {
    /// The whole message as plain text (notifications and clients without blocks).
    pub text: String,
    pub blocks: Vec<SlackBlock>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SlackBlock {
    Section { text: SlackText },
    Context { elements: Vec<SlackText> },
}

#[derive(Serialize, Debug, PartialEq)]
pub struct SlackText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

fn mrkdwn(text: String) -> SlackText {
    SlackText {
        kind: "mrkdwn",
        text,
    }
}

pub fn slack(n: &NotificationV1) -> SlackMessage {
    let mut text = n.summary.clone();
    for d in &n.details {
        text.push('\n');
        text.push_str(d);
    }
    if let Some(l) = &n.link {
        text.push_str(&format!("\nConsole: {l}"));
    }
    let mut body = format!("*{}*", escape(&n.summary));
    for d in &n.details {
        body.push('\n');
        body.push_str(&escape(d));
    }
    let mut context = format!("{} · {} · delivery {}", n.event, n.subject, n.id);
    if let Some(l) = &n.link {
        context = format!("<{l}|Open in the niledr console> · {context}");
    }
    SlackMessage {
        text,
        blocks: vec![
            SlackBlock::Section {
                text: mrkdwn(body),
            },
            SlackBlock::Context {
                elements: vec![mrkdwn(context)],
            },
        ],
    }
}

/// Slack's three control characters in mrkdwn.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[derive(Serialize, Debug, PartialEq)]
pub struct PagerDutyEvent {
    pub routing_key: String,
    pub event_action: String,
    pub dedup_key: String,
    /// Only on `trigger` (PagerDuty ignores it on acknowledge and resolve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<PagerDutyPayload>,
    pub client: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<PagerDutyLink>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct PagerDutyPayload {
    /// At most 1024 characters (PagerDuty's limit).
    pub summary: String,
    pub source: &'static str,
    pub severity: String,
    pub timestamp: String,
    /// The event kind (`proposal_waiting`, …).
    pub class: String,
    pub custom_details: PagerDutyDetails,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct PagerDutyDetails {
    pub subject: String,
    pub details: Vec<String>,
    pub delivery: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct PagerDutyLink {
    pub href: String,
    pub text: &'static str,
}

pub fn pagerduty(n: &NotificationV1, routing_key: &str) -> PagerDutyEvent {
    let payload = (n.action == "trigger").then(|| PagerDutyPayload {
        summary: n.summary.chars().take(1024).collect(),
        source: "niledr",
        severity: n.severity.clone(),
        timestamp: n.created_at.clone(),
        class: n.event.clone(),
        custom_details: PagerDutyDetails {
            subject: n.subject.clone(),
            details: n.details.clone(),
            delivery: n.id.clone(),
        },
    });
    PagerDutyEvent {
        routing_key: routing_key.to_string(),
        event_action: n.action.clone(),
        dedup_key: n.dedup_key.clone(),
        payload,
        client: "niledr",
        client_url: n.link.clone(),
        links: n
            .link
            .iter()
            .map(|l| PagerDutyLink {
                href: l.clone(),
                text: "Open in the niledr console",
            })
            .collect(),
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`, as lowercase hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

/// What `X-Niledr-Signature` signs: the timestamp header, a dot, the body.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &msg))
}
