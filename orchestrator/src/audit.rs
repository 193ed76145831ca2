//! The audit chain: append-only, each entry carrying the hash of the one before, so any edit,
//! removal or reordering is detected by `verify`.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::records::AuditRecordV1;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields a hash covers, in a fixed order (serde_json writes struct fields in declaration
/// order and `detail`'s object keys sorted).
#[derive(Serialize)]
struct Hashed<'a> {
    v: u32,
    seq: u64,
    at: &'a str,
    actor: &'a str,
    action: &'a str,
    detail: &'a serde_json::Value,
}

pub fn entry_hash(prev_hash: &str, r: &AuditRecordV1) -> String {
    let body = serde_json::to_vec(&Hashed {
        v: r.v,
        seq: r.seq,
        at: &r.at,
        actor: &r.actor,
        action: &r.action,
        detail: &r.detail,
    })
    .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(&body);
    hex::encode(h.finalize())
}

/// Build the next link after `prev` (None for the first entry). The detail is redacted here,
/// before it is hashed and stored: no secret ever enters the chain.
pub fn next_entry(
    prev: Option<&AuditRecordV1>,
    at: jiff::Timestamp,
    actor: &str,
    action: &str,
    mut detail: serde_json::Value,
) -> AuditRecordV1 {
    crate::redact::json(&mut detail);
    let (seq, prev_hash) = match prev {
        Some(p) => (p.seq + 1, p.hash.clone()),
        None => (1, GENESIS.to_string()),
    };
    let mut r = AuditRecordV1 {
        v: 1,
        seq,
        at: at.to_string(),
        actor: actor.to_string(),
        action: action.to_string(),
        detail,
        prev_hash,
        hash: String::new(),
    };
    r.hash = entry_hash(&r.prev_hash, &r);
    r
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub head: String,
    /// First broken link, if any: (seq, what is wrong).
    pub broken: Option<(u64, String)>,
}

/// Check every link in order.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a AuditRecordV1>) -> VerifyReport {
    let mut prev_hash = GENESIS.to_string();
    let mut n = 0;
    for (expect_seq, r) in (1u64..).zip(entries) {
        n += 1;
        let broken = if r.seq != expect_seq {
            Some(format!("expected seq {expect_seq}, found {}", r.seq))
        } else if r.prev_hash != prev_hash {
            Some("prev_hash does not match the previous entry's hash".to_string())
        } else if entry_hash(&r.prev_hash, r) != r.hash {
            Some("content does not match its hash (entry was altered)".to_string())
        } else {
            None
        };
        if let Some(why) = broken {
            return VerifyReport {
                entries: n,
                head: prev_hash,
                broken: Some((r.seq, why)),
            };
        }
        prev_hash = r.hash.clone();
    }
    VerifyReport {
        entries: n,
        head: prev_hash,
        broken: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditRecordV1> {
        let mut out: Vec<AuditRecordV1> = Vec::new();
        for i in 0..n {
            let e = next_entry(
                out.last(),
                jiff::Timestamp::UNIX_EPOCH,
                "niledr",
                "status.changed",
                serde_json::json!({ "i": i, "z": "last", "a": "first" }),
            );
            out.push(e);
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let r = verify(&c);
        assert_eq!(r.entries, 5);
        assert_eq!(r.broken, None);
        assert_eq!(r.head, c[4].hash);
    }

    #[test]
    fn secrets_are_masked_before_they_are_hashed() {
        let e = next_entry(
            None,
            jiff::Timestamp::UNIX_EPOCH,
            "niledr",
            "step.outcome",
            serde_json::json!({ "outcome": "pgbouncer [db]: host=h password=S3cret → host=g" }),
        );
        assert_eq!(
            e.detail["outcome"],
            "pgbouncer [db]: host=h password=*** → host=g"
        );
        assert_eq!(verify([&e]).broken, None, "the chain covers what is stored");
    }

    #[test]
    fn tampering_is_detected() {
        let mut c = chain(4);
        c[2].actor = "mallory".into();
        assert_eq!(verify(&c).broken.map(|b| b.0), Some(3));

        let mut c = chain(4);
        c.remove(1);
        assert_eq!(verify(&c).broken.map(|b| b.0), Some(3));

        let mut c = chain(4);
        let forged = next_entry(
            Some(&c[0]),
            jiff::Timestamp::UNIX_EPOCH,
            "x",
            "y",
            serde_json::json!({}),
        );
        c[1] = forged; // re-hashed, but entry 3 still points at the old hash
        assert_eq!(verify(&c).broken.map(|b| b.0), Some(3));
    }
}
