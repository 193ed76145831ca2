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
            SlackBlock::Section { text: mrkdwn(body) },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> NotificationV1 {
        NotificationV1 {
            v: 1,
            id: "0190-aaaa".into(),
            receiver: "pd".into(),
            event: "proposal_waiting".into(),
            subject: "exec-1".into(),
            dedup_key: "exec-1".into(),
            action: action.into(),
            severity: "critical".into(),
            summary: "niledr: regional-failover waits for approval: 2 more approvers".into(),
            details: vec!["Still needed: <2 more>".into()],
            link: Some("https://niledr.example.sd/#exec-1".into()),
            created_at: "2026-12-01T03:00:00Z".into(),
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: "2026-12-01T03:00:00Z".into(),
            last_error: None,
            delivered_at: None,
            in_flight_by: None,
        }
    }

    #[test]
    fn slack_body_has_text_and_blocks() {
        let v = serde_json::to_value(slack(&entry("trigger"))).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("niledr: regional-failover waits for approval"));
        assert!(text.contains("Still needed: <2 more>"));
        assert!(text.ends_with("Console: https://niledr.example.sd/#exec-1"));
        assert_eq!(v["blocks"][0]["type"], "section");
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
        // mrkdwn escapes Slack's control characters; the link is a Slack link.
        let section = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("Still needed: &lt;2 more&gt;"),
            "{section}"
        );
        assert_eq!(v["blocks"][1]["type"], "context");
        let ctx = v["blocks"][1]["elements"][0]["text"].as_str().unwrap();
        assert!(ctx.starts_with("<https://niledr.example.sd/#exec-1|Open in the niledr console>"));
        assert!(ctx.contains("delivery 0190-aaaa"), "{ctx}");
        assert_eq!(v.as_object().unwrap().len(), 2, "only text and blocks: {v}");
    }

    #[test]
    fn pagerduty_events_v2_shape() {
        let v = serde_json::to_value(pagerduty(&entry("trigger"), "KEY")).unwrap();
        assert_eq!(v["routing_key"], "KEY");
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["dedup_key"], "exec-1");
        assert_eq!(v["payload"]["source"], "niledr");
        assert_eq!(v["payload"]["severity"], "critical");
        assert_eq!(v["payload"]["timestamp"], "2026-12-01T03:00:00Z");
        assert!(
            v["payload"]["summary"]
                .as_str()
                .unwrap()
                .contains("waits for approval")
        );
        assert_eq!(v["payload"]["custom_details"]["delivery"], "0190-aaaa");
        assert_eq!(v["links"][0]["href"], "https://niledr.example.sd/#exec-1");
        // Acknowledge and resolve carry no payload.
        let r = serde_json::to_value(pagerduty(&entry("resolve"), "KEY")).unwrap();
        assert_eq!(r["event_action"], "resolve");
        assert!(r.get("payload").is_none(), "{r}");
        let mut long = entry("trigger");
        long.summary = "x".repeat(2000);
        assert_eq!(pagerduty(&long, "K").payload.unwrap().summary.len(), 1024);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hmac_sha256_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            signature("s", "1700000000", b"{}"),
            format!("sha256={}", hmac_sha256_hex(b"s", b"1700000000.{}"))
        );
    }
}
