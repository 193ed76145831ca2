//! The `[notifications]` section: the receivers niledr pages (generic webhooks with a
//! Slack-compatible body, PagerDuty Events API v2), which event kinds each wants, where their
//! secrets are read from, and the outbox's retry policy. Secrets (routing keys, HMAC secrets,
//! webhook URLs carrying a token) are read from files and never printed: `Debug` and every
//! message show a receiver's URL as its origin only.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::Spanned;

use super::raw::Dur;
use super::{ConfigError, Loader};
use crate::notify::EventKind;

/// PagerDuty's Events API v2 endpoint (the default `url` of a `pagerduty` receiver).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_ATTEMPTS: u32 = 10;
const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(2);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);
const DEFAULT_KEEP: u32 = 1000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    /// The console's URL as people reach it (links in messages).
    pub console_url: Option<Spanned<String>>,
    /// Attempts per message before it is given up (audited, visible in the API).
    pub max_attempts: Option<Spanned<u32>>,
    /// Backoff after the first failed attempt; doubled after each one, up to `backoff_max`.
    pub backoff_initial: Option<Spanned<Dur>>,
    pub backoff_max: Option<Spanned<Dur>>,
    /// Finished messages (delivered or given up) kept in the outbox.
    pub keep: Option<Spanned<u32>>,
    #[serde(default)]
    pub receivers: Vec<Spanned<RawReceiver>>,
}

#[derive(serde::Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    Webhook,
    Pagerduty,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    pub name: Spanned<String>,
    pub kind: Spanned<ReceiverKind>,
    /// webhook: where to POST (or `url_file`); pagerduty: the Events API (default PagerDuty's).
    pub url: Option<Spanned<String>>,
    /// A file holding the URL (for webhook URLs that carry a token, like Slack's).
    pub url_file: Option<Spanned<String>>,
    /// webhook: a file holding an HMAC-SHA256 secret; the body is signed in `X-Niledr-Signature`.
    pub secret_file: Option<Spanned<String>>,
    /// pagerduty: a file holding the integration's routing key.
    pub routing_key_file: Option<Spanned<String>>,
    pub events: Spanned<Vec<Spanned<String>>>,
    /// One attempt's bound (connect + send + answer).
    pub timeout: Option<Spanned<Dur>>,
}

/// `[notifications]`, checked.
#[derive(Clone, Debug)]
pub struct NotificationsConfig {
    pub console_url: Option<String>,
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub keep: usize,
    pub receivers: Vec<Receiver>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            console_url: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            keep: DEFAULT_KEEP as usize,
            receivers: Vec::new(),
        }
    }
}

/// One receiver. Its secrets never leave the daemon: see `shown_url`.
#[derive(Clone)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    pub url: reqwest::Url,
    /// webhook: HMAC-SHA256 secret for `X-Niledr-Signature`.
    pub secret: Option<String>,
    /// pagerduty: the routing key.
    pub routing_key: Option<String>,
    pub events: BTreeSet<EventKind>,
    pub timeout: Duration,
}

impl Receiver {
    /// The URL as logs, audit and the API may show it: scheme, host and port only (a path or
    /// query may carry a token).
    pub fn shown_url(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// Remove every secret of this receiver from `text` (an error message, say).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.replace(self.url.as_str(), &self.shown_url());
        for s in [&self.secret, &self.routing_key].into_iter().flatten() {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.shown_url())
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Loader<'_> {
    pub(super) fn notifications(
        &self,
        raw: Option<&Spanned<RawNotifications>>,
    ) -> Result<NotificationsConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(NotificationsConfig::default());
        };
        let r = raw.get_ref();
        let mut cfg = NotificationsConfig::default();
        if let Some(u) = &r.console_url {
            let url = self.http_url(u.get_ref(), u.span(), "console_url")?;
            cfg.console_url = Some(url.as_str().trim_end_matches('/').to_string());
        }
        if let Some(n) = &r.max_attempts {
            if !(1..=100).contains(n.get_ref()) {
                return Err(self.err(n.span(), "max_attempts must be from 1 to 100"));
            }
            cfg.max_attempts = *n.get_ref();
        }
        if let Some(d) = &r.backoff_initial {
            if d.get_ref().0 < Duration::from_millis(10) {
                return Err(self.err(d.span(), "backoff_initial must be at least 10ms"));
            }
            cfg.backoff_initial = d.get_ref().0;
        }
        if let Some(d) = &r.backoff_max {
            if d.get_ref().0 < cfg.backoff_initial {
                return Err(self.err(d.span(), "backoff_max must be at least backoff_initial"));
            }
            cfg.backoff_max = d.get_ref().0;
        }
        if let Some(k) = &r.keep {
            if *k.get_ref() < 1 {
                return Err(self.err(k.span(), "keep must be at least 1"));
            }
            cfg.keep = *k.get_ref() as usize;
        }
        for rr in &r.receivers {
            let rec = self.receiver(rr)?;
            if cfg.receivers.iter().any(|x: &Receiver| x.name == rec.name) {
                return Err(self.err(
                    rr.get_ref().name.span(),
                    format!("a receiver named {:?} is already defined", rec.name),
                ));
            }
            cfg.receivers.push(rec);
        }
        Ok(cfg)
    }

    fn receiver(&self, raw: &Spanned<RawReceiver>) -> Result<Receiver, ConfigError> {
        let table = raw.span();
        let r = raw.get_ref();
        self.check_id(&r.name, "receiver")?;
        let kind = *r.kind.get_ref();
        let url_text = match (&r.url, &r.url_file) {
            (Some(_), Some(f)) => {
                return Err(self.err(f.span(), "give either `url` or `url_file`, not both"));
            }
            (Some(u), None) => Some((u.get_ref().clone(), u.span())),
            (None, Some(f)) => Some((self.secret_text(f, "url_file")?, f.span())),
            (None, None) => None,
        };
        let url = match (url_text, kind) {
            (Some((text, span)), _) => self.http_url(&text, span, "url")?,
            (None, ReceiverKind::Pagerduty) => reqwest::Url::parse(PAGERDUTY_EVENTS_URL)
                .map_err(|e| self.err(table.clone(), format!("default PagerDuty URL: {e}")))?,
            (None, ReceiverKind::Webhook) => {
                return Err(self.err(table, "a webhook receiver needs `url` or `url_file`"));
            }
        };
        let secret = match (&r.secret_file, kind) {
            (Some(f), ReceiverKind::Webhook) => Some(self.secret_text(f, "secret_file")?),
            (Some(f), ReceiverKind::Pagerduty) => {
                return Err(self.err(
                    f.span(),
                    "secret_file is for webhook receivers; a pagerduty receiver authenticates with routing_key_file",
                ));
            }
            (None, _) => None,
        };
        let routing_key = match (&r.routing_key_file, kind) {
            (Some(f), ReceiverKind::Pagerduty) => Some(self.secret_text(f, "routing_key_file")?),
            (Some(f), ReceiverKind::Webhook) => {
                return Err(self.err(f.span(), "routing_key_file is for pagerduty receivers"));
            }
            (None, ReceiverKind::Pagerduty) => {
                return Err(self.err(
                    table,
                    "a pagerduty receiver needs `routing_key_file` (a file holding the integration's routing key)",
                ));
            }
            (None, ReceiverKind::Webhook) => None,
        };
        let events = self.events(&r.events)?;
        let timeout = match &r.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => {
                let d = t.get_ref().0;
                if d < Duration::from_millis(100) || d > Duration::from_secs(120) {
                    return Err(self.err(t.span(), "timeout must be from 100ms to 120s"));
                }
                d
            }
        };
        Ok(Receiver {
            name: r.name.get_ref().clone(),
            kind,
            url,
            secret,
            routing_key,
            events,
            timeout,
        })
    }

    fn events(
        &self,
        raw: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<BTreeSet<EventKind>, ConfigError> {
        if raw.get_ref().is_empty() {
            return Err(self.err(
                raw.span(),
                format!(
                    "events is empty; list what this receiver is told about: {}",
                    EventKind::names()
                ),
            ));
        }
        raw.get_ref()
            .iter()
            .map(|e| {
                EventKind::parse(e.get_ref()).ok_or_else(|| {
                    self.err(
                        e.span(),
                        format!(
                            "unknown event kind {:?}; known: {}",
                            e.get_ref(),
                            EventKind::names()
                        ),
                    )
                })
            })
            .collect()
    }

    /// An absolute http:// or https:// URL with a host.
    fn http_url(
        &self,
        text: &str,
        span: std::ops::Range<usize>,
        key: &str,
    ) -> Result<reqwest::Url, ConfigError> {
        let bad = |why: String| {
            self.err(
                span.clone(),
                format!("{key} must be an http:// or https:// URL such as \"https://niledr.example.sd\" ({why})"),
            )
        };
        // The text itself is never echoed: a URL may carry a token.
        let url = reqwest::Url::parse(text.trim()).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("scheme {:?}", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".into()));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "[sites.a]\nrole = \"primary\"\ncountry = \"SD\"\n\n";

    fn load(dir: &Path, section: &str) -> Result<super::super::Config, ConfigError> {
        let text = format!("{BASE}{section}");
        super::super::parse(&dir.join("niledr.toml"), &text)
    }

    fn files(dir: &Path) {
        std::fs::write(dir.join("pd.key"), "R0UT1NGKEY\n").unwrap();
        std::fs::write(dir.join("hook.secret"), "hmac-s3cret\n").unwrap();
        std::fs::write(
            dir.join("slack.url"),
            "https://hooks.example.sd/services/T0/B0/t0ken\n",
        )
        .unwrap();
        std::fs::write(dir.join("empty"), "\n").unwrap();
    }

    const GOOD: &str = r#"[notifications]
console_url = "https://niledr.example.sd/"
max_attempts = 5
backoff_initial = "1s"
backoff_max = "1m"

[[notifications.receivers]]
name = "oncall-chat"
kind = "webhook"
url_file = "slack.url"
secret_file = "hook.secret"
events = ["proposal_waiting", "needs_operator", "drill_verdict"]
timeout = "3s"

[[notifications.receivers]]
name = "pagerduty"
kind = "pagerduty"
routing_key_file = "pd.key"
events = ["proposal_waiting", "approval_given", "step_failed", "needs_operator", "succeeded", "ended"]
"#;

    #[test]
    fn receivers_load_with_secrets_from_files_and_never_print_them() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path());
        let c = load(dir.path(), GOOD).map_err(|e| e.to_string()).unwrap();
        let n = &c.notifications;
        assert_eq!(n.console_url.as_deref(), Some("https://niledr.example.sd"));
        assert_eq!(
            (n.max_attempts, n.backoff_max),
            (5, Duration::from_secs(60))
        );
        let [chat, pd] = &n.receivers[..] else {
            panic!("{:?}", n.receivers)
        };
        assert_eq!(chat.url.path(), "/services/T0/B0/t0ken");
        assert_eq!(chat.secret.as_deref(), Some("hmac-s3cret"));
        assert_eq!(pd.url.as_str(), PAGERDUTY_EVENTS_URL);
        assert_eq!(pd.routing_key.as_deref(), Some("R0UT1NGKEY"));
        assert_eq!(pd.timeout, DEFAULT_TIMEOUT);
        assert!(chat.events.contains(&EventKind::DrillVerdict));
        let shown = format!("{c:?}");
        for secret in ["t0ken", "hmac-s3cret", "R0UT1NGKEY"] {
            assert!(!shown.contains(secret), "Debug shows {secret}");
        }
        assert_eq!(chat.shown_url(), "https://hooks.example.sd");
        assert_eq!(
            chat.redact("POST https://hooks.example.sd/services/T0/B0/t0ken: hmac-s3cret"),
            "POST https://hooks.example.sd: [redacted]"
        );
    }

    /// (replace, with, text on the line the error points at, message fragment)
    const BAD: &[(&str, &str, &str, &str)] = &[
        (
            "\"drill_verdict\"]",
            "\"drill_verdicts\"]",
            "events = [\"proposal_waiting\", \"needs_operator\"",
            "unknown event kind \"drill_verdicts\"; known: proposal_waiting",
        ),
        (
            "url_file = \"slack.url\"",
            "url = \"hooks.example.sd/x\"",
            "url = \"hooks",
            "url must be an http:// or https:// URL",
        ),
        (
            "url_file = \"slack.url\"",
            "url = \"ftp://hooks.example.sd/x\"",
            "url = \"ftp",
            "scheme \"ftp\"",
        ),
        (
            "routing_key_file = \"pd.key\"",
            "routing_key_file = \"missing.key\"",
            "routing_key_file = \"missing",
            "cannot read routing_key_file",
        ),
        (
            "secret_file = \"hook.secret\"",
            "secret_file = \"empty\"",
            "secret_file = \"empty\"",
            "is empty",
        ),
        (
            "routing_key_file = \"pd.key\"\n",
            "",
            "[[notifications.receivers]]\nname = \"pagerduty\"",
            "needs `routing_key_file`",
        ),
        (
            "kind = \"pagerduty\"",
            "kind = \"email\"",
            "\"email\"",
            "unknown variant `email`",
        ),
        (
            "name = \"pagerduty\"",
            "name = \"oncall-chat\"",
            "name = \"oncall-chat\"\nkind = \"pagerduty\"",
            "already defined",
        ),
        (
            "timeout = \"3s\"",
            "timeout = \"10m\"",
            "timeout = \"10m\"",
            "from 100ms to 120s",
        ),
        (
            "max_attempts = 5",
            "max_attempts = 0",
            "max_attempts",
            "from 1 to 100",
        ),
        (
            "events = [\"proposal_waiting\", \"approval_given\", \"step_failed\", \"needs_operator\", \"succeeded\", \"ended\"]",
            "events = []",
            "events = []",
            "events is empty",
        ),
    ];

    #[test]
    fn bad_receivers_are_refused_with_line_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path());
        for (from, to, needle, fragment) in BAD {
            assert!(GOOD.contains(from), "case does not apply: {from}");
            let section = GOOD.replacen(from, to, 1);
            let text = format!("{BASE}{section}");
            let err = match load(dir.path(), &section) {
                Ok(_) => panic!("accepted {to:?}"),
                Err(e) => e,
            };
            let shown = err.to_string();
            let at = text
                .find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in text"));
            let line = text[..at].matches('\n').count() + 1;
            assert_eq!(err.line, line, "wrong line for {to:?}: {shown}");
            assert!(err.column >= 1, "{shown}");
            assert!(shown.contains(fragment), "{to:?}: {shown}");
            assert!(
                !shown.contains("t0ken") && !shown.contains("R0UT1NGKEY"),
                "{shown}"
            );
        }
    }
}
