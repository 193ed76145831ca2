//! The `[hooks]` section: which pager hooks are on and the secrets that authenticate them
//! (read from files, never written inline), the replay window of signed hooks, and the
//! `[[hooks.matchers]]` that map alerts to a service and a runbook. A matcher naming an
//! unknown service is refused at load; one naming an unknown runbook is refused once the
//! runbooks are loaded (`check_runbooks`), both at the matcher's file:line:column.

use std::collections::BTreeMap;
use std::time::Duration;

use niledr_web::HookSource;
use serde::Deserialize;
use toml::Spanned;

use super::raw::Dur;
use super::{ConfigError, Loader, Service};
use crate::hooks::matchers::{LabelMatcher, Route};

/// How old (or how far ahead) a signed hook's timestamp may be by default.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Shorter secrets are refused: a guessable HMAC key authenticates nothing.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    pub replay_window: Option<Spanned<Dur>>,
    pub alertmanager: Option<RawAlertmanagerHook>,
    pub pagerduty: Option<RawSignedHook>,
    pub generic: Option<RawSignedHook>,
    #[serde(default)]
    pub matchers: Vec<Spanned<RawMatcher>>,
}

/// Alertmanager sends `Authorization: Bearer <token>` (its `http_config.authorization`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanagerHook {
    pub token_file: Spanned<String>,
}

/// PagerDuty and the generic hook sign the body with a shared secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignedHook {
    pub secret_file: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatcher {
    pub name: Spanned<String>,
    pub sources: Option<Vec<Spanned<String>>>,
    #[serde(rename = "match")]
    pub matchers: Spanned<Vec<Spanned<String>>>,
    pub service: Spanned<String>,
    pub runbook: Spanned<String>,
}

/// Secrets read from a file: one per non-empty line (several while one is being rotated).
/// Never printed.
#[derive(Clone, Default)]
pub struct Secrets(pub Vec<Vec<u8>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets(<{} redacted>)", self.0.len())
    }
}

#[derive(Clone, Debug)]
pub struct HooksConfig {
    pub replay_window: Duration,
    pub alertmanager: Option<Secrets>,
    pub pagerduty: Option<Secrets>,
    pub generic: Option<Secrets>,
    pub routes: Vec<Route>,
    /// Where each route's `runbook` is written, for `check_runbooks`.
    runbook_at: Vec<ConfigError>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            replay_window: DEFAULT_REPLAY_WINDOW,
            alertmanager: None,
            pagerduty: None,
            generic: None,
            routes: Vec::new(),
            runbook_at: Vec::new(),
        }
    }
}

impl HooksConfig {
    pub fn secrets(&self, source: HookSource) -> Option<&Secrets> {
        match source {
            HookSource::Alertmanager => self.alertmanager.as_ref(),
            HookSource::PagerDuty => self.pagerduty.as_ref(),
            HookSource::Generic => self.generic.as_ref(),
        }
    }

    /// Every matcher's runbook must be loaded: refused at the matcher's `runbook` otherwise.
    pub fn check_runbooks(&self, known: &[&str]) -> Result<(), ConfigError> {
        for (route, at) in self.routes.iter().zip(&self.runbook_at) {
            if !known.contains(&route.runbook.as_str()) {
                let mut e = at.clone();
                e.message = format!(
                    "hooks matcher {:?}: no runbook {:?} in the [runbooks] dirs; known runbooks: {}",
                    route.name,
                    route.runbook,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Loader<'_> {
    pub(super) fn hooks(
        &self,
        raw: Option<&RawHooks>,
        services: &BTreeMap<String, Service>,
    ) -> Result<HooksConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(HooksConfig::default());
        };
        let replay_window = match &raw.replay_window {
            None => DEFAULT_REPLAY_WINDOW,
            Some(w) if w.get_ref().0 >= Duration::from_secs(1) => w.get_ref().0,
            Some(w) => return Err(self.err(w.span(), "replay_window must be at least 1s")),
        };
        let alertmanager = match &raw.alertmanager {
            Some(a) => Some(self.secret_file(&a.token_file, "token_file")?),
            None => None,
        };
        let pagerduty = match &raw.pagerduty {
            Some(p) => Some(self.secret_file(&p.secret_file, "secret_file")?),
            None => None,
        };
        let generic = match &raw.generic {
            Some(g) => Some(self.secret_file(&g.secret_file, "secret_file")?),
            None => None,
        };
        let mut routes = Vec::new();
        let mut runbook_at = Vec::new();
        for m in &raw.matchers {
            routes.push(self.route(m, &routes, services)?);
            runbook_at.push(self.err(m.get_ref().runbook.span(), String::new()));
        }
        Ok(HooksConfig {
            replay_window,
            alertmanager,
            pagerduty,
            generic,
            routes,
            runbook_at,
        })
    }

    fn route(
        &self,
        m: &Spanned<RawMatcher>,
        earlier: &[Route],
        services: &BTreeMap<String, Service>,
    ) -> Result<Route, ConfigError> {
        let r = m.get_ref();
        let name = r.name.get_ref();
        if name.trim().is_empty() {
            return Err(self.err(r.name.span(), "matcher name is empty"));
        }
        if earlier.iter().any(|e| &e.name == name) {
            return Err(self.err(
                r.name.span(),
                format!("matcher name {name:?} is used twice"),
            ));
        }
        let sources = match &r.sources {
            None => HookSource::all().to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for s in list {
                    let src = HookSource::all()
                        .into_iter()
                        .find(|h| h.as_str() == s.get_ref())
                        .ok_or_else(|| {
                            self.err(
                                s.span(),
                                format!(
                                    "unknown hook source {:?}; use alertmanager, pagerduty or generic",
                                    s.get_ref()
                                ),
                            )
                        })?;
                    out.push(src);
                }
                out
            }
        };
        if r.matchers.get_ref().is_empty() {
            return Err(self.err(
                r.matchers.span(),
                "match is empty: list label matchers such as 'alertname=\"PostgresDown\"' (an empty list would match every alert)",
            ));
        }
        let mut matchers = Vec::new();
        for text in r.matchers.get_ref() {
            matchers
                .push(LabelMatcher::parse(text.get_ref()).map_err(|e| self.err(text.span(), e))?);
        }
        if !services.contains_key(r.service.get_ref()) {
            let known: Vec<&str> = services.keys().map(String::as_str).collect();
            return Err(self.err(
                r.service.span(),
                format!(
                    "hooks matcher {name:?}: no service {:?}; known services: {}",
                    r.service.get_ref(),
                    known.join(", ")
                ),
            ));
        }
        Ok(Route {
            name: name.clone(),
            sources,
            matchers,
            service: r.service.get_ref().clone(),
            runbook: r.runbook.get_ref().clone(),
        })
    }

    /// Read a secret file: one secret per non-empty line, each at least `MIN_SECRET_LEN`.
    fn secret_file(&self, f: &Spanned<String>, key: &str) -> Result<Secrets, ConfigError> {
        let path = self.resolve(f.get_ref());
        let text = self.secret_text(f, key)?;
        let secrets: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.as_bytes().to_vec())
            .collect();
        if secrets.iter().any(|s| s.len() < MIN_SECRET_LEN) {
            return Err(self.err(
                f.span(),
                format!(
                    "{key} {}: every secret must be at least {MIN_SECRET_LEN} characters (generate one with `openssl rand -hex 32`)",
                    path.display()
                ),
            ));
        }
        Ok(Secrets(secrets))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
[sites.khartoum]
role = "primary"
country = "SD"

[services.khartoum-postgres]
site = "khartoum"
kind = "postgres"
address = "127.0.1.1:5432"
user = "niledr"
"#;

    /// A config in a temp dir holding the secret files it names.
    fn load(hooks: &str) -> (tempfile::TempDir, Result<super::super::Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("am.token"), "am-token-0123456789abcdef\n").unwrap();
        std::fs::write(
            dir.path().join("pd.secret"),
            "\npd-secret-0123456789\npd-next-secret-0123456\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("short.secret"), "tooshort\n").unwrap();
        std::fs::write(dir.path().join("empty.secret"), "\n\n").unwrap();
        let path = dir.path().join("niledr.toml");
        let text = format!("{BASE}{hooks}");
        let r = super::super::parse(Path::new(&path), &text);
        (dir, r)
    }

    fn err(hooks: &str) -> ConfigError {
        load(hooks).1.expect_err("must be refused")
    }

    const GOOD: &str = r#"
[hooks]
replay_window = "2m"

[hooks.alertmanager]
token_file = "am.token"

[hooks.pagerduty]
secret_file = "pd.secret"

[[hooks.matchers]]
name = "pg-down"
sources = ["alertmanager", "generic"]
match = ['alertname="PostgresDown"', 'site=~"khartoum|omdurman"']
service = "khartoum-postgres"
runbook = "failover"
"#;

    #[test]
    fn a_good_section_loads_with_secrets_kept_out_of_debug() {
        let (_d, c) = load(GOOD);
        let c = c.unwrap();
        let h = &c.hooks;
        assert_eq!(h.replay_window, Duration::from_secs(120));
        assert_eq!(
            h.alertmanager.as_ref().unwrap().0,
            vec![b"am-token-0123456789abcdef".to_vec()]
        );
        assert_eq!(
            h.pagerduty.as_ref().unwrap().0.len(),
            2,
            "one secret per non-empty line"
        );
        assert!(h.generic.is_none());
        assert_eq!(
            h.routes[0].sources,
            vec![HookSource::Alertmanager, HookSource::Generic]
        );
        assert_eq!(h.routes[0].matchers.len(), 2);
        let debug = format!("{c:?}");
        assert!(!debug.contains("am-token-0123456789abcdef"), "{debug}");
        assert!(!debug.contains("pd-secret"), "{debug}");
        assert!(h.check_runbooks(&["failover"]).is_ok());
        // Without [hooks], nothing is on and the default window applies.
        let (_d, none) = load("");
        let none = none.unwrap().hooks;
        assert!(none.alertmanager.is_none() && none.routes.is_empty());
        assert_eq!(none.replay_window, DEFAULT_REPLAY_WINDOW);
    }

    #[test]
    fn an_unknown_runbook_is_refused_at_the_matcher() {
        let (_d, c) = load(GOOD);
        let e = c
            .unwrap()
            .hooks
            .check_runbooks(&["other", "more"])
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("no runbook \"failover\""), "{text}");
        assert!(text.contains("known runbooks: other, more"), "{text}");
        let full = format!("{BASE}{GOOD}");
        let line = 1 + full.lines().position(|l| l.starts_with("runbook")).unwrap();
        assert_eq!((e.line, e.column), (line, 11), "{text}");
    }

    #[test]
    fn refusals_name_the_place_and_the_fix() {
        let matcher = |extra: &str| {
            format!(
                "[[hooks.matchers]]\nname = \"m\"\nmatch = ['alertname=\"X\"']\nservice = \"khartoum-postgres\"\nrunbook = \"r\"\n{extra}"
            )
        };
        let cases: Vec<(String, &str)> = vec![
            (
                "[[hooks.matchers]]\nname = \"m\"\nmatch = ['alertname=\"X\"']\nservice = \"nope\"\nrunbook = \"r\"\n".into(),
                "no service \"nope\"; known services: khartoum-postgres",
            ),
            (
                "[[hooks.matchers]]\nname = \"m\"\nmatch = ['alertname~\"X\"']\nservice = \"khartoum-postgres\"\nrunbook = \"r\"\n".into(),
                "needs an operator",
            ),
            (
                "[[hooks.matchers]]\nname = \"m\"\nmatch = []\nservice = \"khartoum-postgres\"\nrunbook = \"r\"\n".into(),
                "match is empty",
            ),
            (matcher("sources = [\"nagios\"]\n"), "unknown hook source \"nagios\""),
            (format!("{}{}", matcher(""), matcher("")), "is used twice"),
            ("[hooks.alertmanager]\ntoken_file = \"missing.token\"\n".into(), "cannot read token_file"),
            ("[hooks.generic]\nsecret_file = \"short.secret\"\n".into(), "at least 16 characters"),
            ("[hooks.generic]\nsecret_file = \"empty.secret\"\n".into(), "is empty"),
            ("[hooks]\nreplay_window = \"10ms\"\n".into(), "at least 1s"),
            ("[hooks.pagerduty]\nsecret = \"inline\"\n".into(), "unknown field `secret`"),
        ];
        for (hooks, want) in cases {
            let e = err(&hooks);
            let text = e.to_string();
            assert!(text.contains(want), "{hooks}\n=> {text}");
            assert!(e.line > BASE.lines().count(), "points into [hooks]: {text}");
            assert!(text.contains("niledr.toml:"), "names the file: {text}");
        }
    }
}
