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
            matchers.push(
                LabelMatcher::parse(text.get_ref()).map_err(|e| self.err(text.span(), e))?,
            );
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
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.err(
                f.span(),
                format!("cannot read {key} {}: {e}", path.display()),
            )
        })?;
        let secrets: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.as_bytes().to_vec())
            .collect();
        if secrets.is_empty() {
            return Err(self.err(
                f.span(),
                format!("{key} {} is empty: put the secret on its first line", path.display()),
            ));
        }
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
