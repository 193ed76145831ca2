//! Who may call a hook: Alertmanager's bearer token, PagerDuty's `X-PagerDuty-Signature`
//! (`v1=<hex HMAC-SHA256 of the raw body>`, several comma-separated while PagerDuty rotates
//! its secret), the generic hook's `X-Niledr-Signature: sha256=<hex HMAC-SHA256 of
//! "<timestamp>.<body>">` with `X-Niledr-Timestamp`; the replay window, and the event ids
//! seen within it (a replay is refused even when its signature is good; kept in the store, so a
//! restart forgets none). Constant-time comparisons throughout.

use std::collections::BTreeMap;
use std::time::Duration;

use ring::hmac;

use crate::config::hooks::Secrets;

/// Why a hook call is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 401: no credentials where the hook needs them.
    #[error("{0}")]
    Missing(String),
    /// 401: credentials that do not verify.
    #[error("{0}")]
    Bad(String),
    /// 401: a good signature over a timestamp outside the replay window.
    #[error("{0}")]
    Stale(String),
    /// 409: an event already received within the replay window.
    #[error("{0}")]
    Replayed(String),
}

impl Refusal {
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Missing(_) => "missing_credentials",
            Refusal::Bad(_) => "bad_credentials",
            Refusal::Stale(_) => "outside_replay_window",
            Refusal::Replayed(_) => "replayed",
        }
    }
}

/// Equal contents in time independent of where they differ (the length may show).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Authorization: Bearer <token>` against the configured token(s).
pub fn bearer(secrets: &Secrets, authorization: Option<&str>) -> Result<(), Refusal> {
    let Some(value) = authorization else {
        return Err(Refusal::Missing(
            "no Authorization header: set http_config.authorization.credentials_file in Alertmanager's webhook_config to the [hooks.alertmanager] token_file".into(),
        ));
    };
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| Refusal::Bad("the Authorization header is not \"Bearer <token>\"".into()))?;
    // Every secret is compared, so the time does not say which one matched.
    let ok = secrets
        .0
        .iter()
        .fold(false, |acc, s| same(s, token.as_bytes()) | acc);
    if ok {
        Ok(())
    } else {
        Err(Refusal::Bad(
            "the bearer token is not the hook's token".into(),
        ))
    }
}

/// Hex HMAC-SHA256 of `message` under `secret` (what senders put in their header).
pub fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex::encode(hmac::sign(&key, message).as_ref())
}

/// Does any of `signatures` (hex, already stripped of their prefix) sign `message` under
/// any of `secrets`?
fn any_signs(secrets: &Secrets, signatures: &[Vec<u8>], message: &[u8]) -> bool {
    let mut ok = false;
    for s in &secrets.0 {
        let key = hmac::Key::new(hmac::HMAC_SHA256, s);
        for sig in signatures {
            ok |= hmac::verify(&key, message, sig).is_ok();
        }
    }
    ok
}

/// The signatures in a comma-separated header that carry `prefix` (e.g. `v1=`), decoded.
fn signatures(header: &str, prefix: &str) -> Vec<Vec<u8>> {
    header
        .split(',')
        .filter_map(|s| s.trim().strip_prefix(prefix))
        .filter_map(|h| hex::decode(h.trim()).ok())
        .collect()
}

/// PagerDuty v3: at least one `v1=` signature of the raw body must verify.
pub fn pagerduty(secrets: &Secrets, header: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
    let Some(header) = header else {
        return Err(Refusal::Missing(
            "no X-PagerDuty-Signature header: PagerDuty v3 webhooks are signed; check the subscription".into(),
        ));
    };
    let sigs = signatures(header, "v1=");
    if sigs.is_empty() {
        return Err(Refusal::Bad(
            "X-PagerDuty-Signature holds no v1=<hex> signature".into(),
        ));
    }
    if any_signs(secrets, &sigs, body) {
        Ok(())
    } else {
        Err(Refusal::Bad(
            "no X-PagerDuty-Signature signature matches the body under the [hooks.pagerduty] secret".into(),
        ))
    }
}

/// Generic hook: `sha256=<hex>` of `"<timestamp>.<body>"`, the timestamp (Unix seconds)
/// within `window` of `now_s`. Returns the timestamp.
pub fn generic(
    secrets: &Secrets,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_s: i64,
    window: Duration,
) -> Result<i64, Refusal> {
    let (Some(signature), Some(ts_text)) = (signature, timestamp) else {
        return Err(Refusal::Missing(
            "the generic hook needs X-Niledr-Timestamp (Unix seconds) and X-Niledr-Signature: sha256=<hex HMAC-SHA256 of \"<timestamp>.<body>\">".into(),
        ));
    };
    let ts: i64 = ts_text.trim().parse().map_err(|_| {
        Refusal::Bad(format!(
            "X-Niledr-Timestamp {ts_text:?} is not Unix seconds"
        ))
    })?;
    let sigs = signatures(signature, "sha256=");
    if sigs.is_empty() {
        return Err(Refusal::Bad(
            "X-Niledr-Signature holds no sha256=<hex> signature".into(),
        ));
    }
    let mut message = format!("{}.", ts_text.trim()).into_bytes();
    message.extend_from_slice(body);
    if !any_signs(secrets, &sigs, &message) {
        return Err(Refusal::Bad(
            "X-Niledr-Signature does not match \"<timestamp>.<body>\" under the [hooks.generic] secret".into(),
        ));
    }
    check_window(ts.saturating_mul(1000), now_s.saturating_mul(1000), window)?;
    Ok(ts)
}

/// Is `at_ms` within `window` of `now_ms` (either side: a sender's clock may run ahead)?
pub fn check_window(at_ms: i64, now_ms: i64, window: Duration) -> Result<(), Refusal> {
    let w = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let age = now_ms.saturating_sub(at_ms);
    if age.abs() <= w {
        Ok(())
    } else {
        Err(Refusal::Stale(format!(
            "the event is {} {} the replay window of {}: refused as a replay",
            humantime::format_duration(Duration::from_millis(age.unsigned_abs())),
            if age > 0 {
                "old, outside"
            } else {
                "in the future, outside"
            },
            humantime::format_duration(window)
        )))
    }
}

/// Event ids (or signatures) seen within the replay window: id → until when it is
/// remembered (unix ms, wall clock, so the set means the same after a restart).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    until: BTreeMap<String, i64>,
}

/// At most this many ids are remembered; past it the oldest are forgotten first (each is
/// kept for the window anyway, and its timestamp must still be within the window).
const MAX_SEEN: usize = 100_000;

impl Seen {
    /// Remember `id` until `now_ms + window`; `Err(Replayed)` when it is remembered already.
    pub fn first_time(&mut self, id: &str, now_ms: i64, window: Duration) -> Result<(), Refusal> {
        let now = now_ms;
        self.until.retain(|_, until| *until > now);
        if self.until.contains_key(id) {
            return Err(Refusal::Replayed(format!(
                "event {id:?} was already received within the replay window"
            )));
        }
        if self.until.len() >= MAX_SEEN
            && let Some(oldest) = self
                .until
                .iter()
                .min_by_key(|(_, u)| **u)
                .map(|(k, _)| k.clone())
        {
            self.until.remove(&oldest);
        }
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2);
        self.until
            .insert(id.to_string(), now.saturating_add(window_ms));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef-test-secret";

    fn secrets(list: &[&str]) -> Secrets {
        Secrets(list.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    #[test]
    fn bearer_tokens() {
        let s = secrets(&[SECRET, "second-token-for-rotation"]);
        assert_eq!(bearer(&s, Some(&format!("Bearer {SECRET}"))), Ok(()));
        assert_eq!(bearer(&s, Some(&format!("bearer {SECRET}"))), Ok(()));
        assert_eq!(bearer(&s, Some("Bearer second-token-for-rotation")), Ok(()));
        assert!(matches!(bearer(&s, None), Err(Refusal::Missing(_))));
        assert!(matches!(bearer(&s, Some(SECRET)), Err(Refusal::Bad(_))));
        assert!(matches!(
            bearer(&s, Some(&format!("Basic {SECRET}"))),
            Err(Refusal::Bad(_))
        ));
        assert!(matches!(
            bearer(&s, Some(&format!("Bearer {SECRET}x"))),
            Err(Refusal::Bad(_))
        ));
        assert!(matches!(bearer(&s, Some("Bearer ")), Err(Refusal::Bad(_))));
    }

    #[test]
    fn pagerduty_signatures_one_or_several() {
        let s = secrets(&[SECRET]);
        let body = br#"{"event":{"id":"e1"}}"#;
        let good = format!("v1={}", hmac_hex(SECRET.as_bytes(), body));
        let other = format!("v1={}", hmac_hex(b"an-old-secret-being-rotated", body));
        assert_eq!(pagerduty(&s, Some(&good), body), Ok(()));
        // PagerDuty rotating its secret sends both; either order.
        assert_eq!(
            pagerduty(&s, Some(&format!("{other},{good}")), body),
            Ok(())
        );
        assert_eq!(
            pagerduty(&s, Some(&format!("{good}, {other}")), body),
            Ok(())
        );
        assert!(matches!(
            pagerduty(&s, Some(&other), body),
            Err(Refusal::Bad(_))
        ));
        // A tampered body does not verify.
        assert!(matches!(
            pagerduty(&s, Some(&good), br#"{"event":{"id":"e2"}}"#),
            Err(Refusal::Bad(_))
        ));
        // Only v1 signatures count; junk is ignored, not an error.
        let v0 = good.replace("v1=", "v0=");
        assert!(matches!(
            pagerduty(&s, Some(&v0), body),
            Err(Refusal::Bad(_))
        ));
        assert!(matches!(
            pagerduty(&s, Some("v1=zz,"), body),
            Err(Refusal::Bad(_))
        ));
        assert!(matches!(
            pagerduty(&s, None, body),
            Err(Refusal::Missing(_))
        ));
        // Our own secret being rotated: either configured line verifies.
        let rotated = secrets(&["a-brand-new-secret-value", SECRET]);
        assert_eq!(pagerduty(&rotated, Some(&good), body), Ok(()));
    }

    #[test]
    fn generic_signature_covers_the_timestamp_and_the_window() {
        let s = secrets(&[SECRET]);
        let body = br#"{"alerts":[]}"#;
        let now = 1_800_000_000i64;
        let w = Duration::from_secs(300);
        let sign = |ts: i64| {
            let mut m = format!("{ts}.").into_bytes();
            m.extend_from_slice(body);
            format!("sha256={}", hmac_hex(SECRET.as_bytes(), &m))
        };
        let ts = now - 10;
        assert_eq!(
            generic(&s, Some(&sign(ts)), Some(&ts.to_string()), body, now, w),
            Ok(ts)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert!(matches!(
            generic(&s, Some(&sign(ts)), Some(&now.to_string()), body, now, w),
            Err(Refusal::Bad(_))
        ));
        // Well signed but old, or too far ahead: a replay.
        let old = now - 301;
        assert!(matches!(
            generic(&s, Some(&sign(old)), Some(&old.to_string()), body, now, w),
            Err(Refusal::Stale(_))
        ));
        let ahead = now + 301;
        assert!(matches!(
            generic(
                &s,
                Some(&sign(ahead)),
                Some(&ahead.to_string()),
                body,
                now,
                w
            ),
            Err(Refusal::Stale(_))
        ));
        let edge = now - 300;
        assert!(generic(&s, Some(&sign(edge)), Some(&edge.to_string()), body, now, w).is_ok());
        assert!(matches!(
            generic(&s, None, Some(&ts.to_string()), body, now, w),
            Err(Refusal::Missing(_))
        ));
        assert!(matches!(
            generic(&s, Some(&sign(ts)), Some("yesterday"), body, now, w),
            Err(Refusal::Bad(_))
        ));
    }

    #[test]
    fn seen_ids_refuse_replays_within_the_window_only() {
        let mut seen = Seen::default();
        let t0 = 1_764_000_000_000;
        let w = Duration::from_secs(60);
        assert_eq!(seen.first_time("e1", t0, w), Ok(()));
        // What is stored reads back the same (a restart keeps the ids).
        let back: Seen = serde_json::from_str(&serde_json::to_string(&seen).unwrap()).unwrap();
        assert_eq!(back, seen);
        let mut seen = back;
        assert!(matches!(
            seen.first_time("e1", t0 + 59_000, w),
            Err(Refusal::Replayed(_))
        ));
        assert_eq!(seen.first_time("e2", t0, w), Ok(()));
        // Past the window the id is forgotten (its timestamp check refuses it by then).
        assert_eq!(seen.first_time("e1", t0 + 61_000, w), Ok(()));
    }
}
