//! `[auth] session_*`: how long a console session lives (idle and absolute) and whether its
//! cookie is always `Secure`.

use std::time::Duration;

use super::raw::RawAuth;
use super::{ConfigError, Loader};
use crate::auth::session::SessionSettings;

impl Loader<'_> {
    /// Idle timeout at least 1 minute, lifetime at least the idle timeout.
    pub(super) fn sessions(&self, raw: Option<&RawAuth>) -> Result<SessionSettings, ConfigError> {
        let mut s = SessionSettings::default();
        let Some(a) = raw else {
            return Ok(s);
        };
        if let Some(i) = &a.session_idle_timeout {
            if i.get_ref().0 < Duration::from_secs(60) {
                return Err(self.err(i.span(), "session_idle_timeout must be at least 1m"));
            }
            s.idle = i.get_ref().0;
        }
        if let Some(l) = &a.session_lifetime {
            if l.get_ref().0 < s.idle {
                return Err(self.err(
                    l.span(),
                    format!(
                        "session_lifetime must be at least session_idle_timeout ({})",
                        humantime::format_duration(s.idle)
                    ),
                ));
            }
            s.lifetime = l.get_ref().0;
        } else if s.lifetime < s.idle {
            s.lifetime = s.idle;
        }
        s.secure_cookie = a.session_secure_cookie.unwrap_or(false);
        Ok(s)
    }
}
