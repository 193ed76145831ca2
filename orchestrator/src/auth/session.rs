//! Console sessions: a bearer token exchanged once (through the same gate, so the same rate
//! limits) for a random session id kept in an `HttpOnly` cookie, with its own CSRF token, an
//! idle and an absolute lifetime. Sessions live in memory only: a daemon restart ends them all
//! (people sign in again). A session holds no token: each use re-reads the user from the users
//! table (a disabled or removed user ends it) and checks that the users file on disk is still
//! the one read at sign-in (an edited file ends every session).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{Authenticator, Principal};

/// At most this many sessions at once (expired ones are swept first).
const MAX_SESSIONS: usize = 10_000;

/// `[auth] session_idle_timeout`, `session_lifetime`, `session_secure_cookie`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub lifetime: Duration,
    /// Always mark the cookie `Secure` (also set when a TLS proxy says `X-Forwarded-Proto: https`).
    pub secure_cookie: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 3600),
            secure_cookie: false,
        }
    }
}

/// Why a session cannot be used (all 401 but `Csrf`, which is 403).
#[derive(Debug, PartialEq, Eq)]
pub enum SessionError {
    Unknown,
    Idle(Duration),
    Lifetime(Duration),
    UserGone(String),
    UsersFileChanged,
    Csrf,
    Full,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            SessionError::Unknown => f.write_str("no such console session (signed out, expired, or niledr restarted); sign in again"),
            SessionError::Idle(i) => write!(f, "the console session was idle for more than {}; sign in again", d(i)),
            SessionError::Lifetime(l) => write!(f, "the console session is older than its lifetime ({}); sign in again", d(l)),
            SessionError::UserGone(u) => write!(f, "user {u:?} is no longer enabled in the users file; the session ended"),
            SessionError::UsersFileChanged => f.write_str("the users file changed since you signed in; sign in again"),
            SessionError::Csrf => f.write_str("a request authenticated by the console session cookie must carry the session's X-CSRF-Token header (GET /api/v1/session gives it)"),
            SessionError::Full => f.write_str("too many console sessions are open; retry later or use a bearer token"),
        }
    }
}

/// What a sign-in gives the caller: the cookie value (shown once) and the CSRF token.
#[derive(Clone, Debug)]
pub struct Granted {
    pub id: String,
    pub csrf: String,
    pub expires_at: jiff::Timestamp,
    /// A short reference to the session for the audit log (not usable as the cookie).
    pub reference: String,
}

/// A live session resolved for a request.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub principal: Principal,
    pub csrf: String,
    pub expires_at: jiff::Timestamp,
    pub reference: String,
}

struct Session {
    user: String,
    csrf: String,
    created: Instant,
    last_used: Instant,
    expires_at: jiff::Timestamp,
    users_file: Option<Fingerprint>,
}

/// What identifies the users file's version cheaply (one `stat`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
}

pub struct Sessions {
    settings: SessionSettings,
    users_file: Option<PathBuf>,
    /// sha256(session id) → session: the table never holds a usable cookie value.
    table: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The audit reference of a session: 12 hex digits of sha256(sha256(id)).
fn reference(k: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(k)[..6])
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Equal without an early exit (CSRF tokens are compared against a guess).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(settings: SessionSettings, users_file: Option<PathBuf>) -> Sessions {
        Sessions {
            settings,
            users_file,
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> SessionSettings {
        self.settings
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // Plain data, consistent across a panic elsewhere: keep using it.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        let m = std::fs::metadata(self.users_file.as_ref()?).ok()?;
        Some(Fingerprint {
            len: m.len(),
            modified: m.modified().ok(),
        })
    }

    /// A new session for `who`, who has just proved their token.
    pub fn create(&self, who: &Principal) -> Result<Granted, SessionError> {
        let now = Instant::now();
        let id = random_hex();
        let csrf = random_hex();
        let lifetime = jiff::SignedDuration::try_from(self.settings.lifetime).unwrap_or_default();
        let expires_at = jiff::Timestamp::now()
            .checked_add(lifetime)
            .unwrap_or(jiff::Timestamp::MAX);
        let session = Session {
            user: who.name.clone(),
            csrf: csrf.clone(),
            created: now,
            last_used: now,
            expires_at,
            users_file: self.fingerprint(),
        };
        let mut table = self.table();
        if table.len() >= MAX_SESSIONS {
            table.retain(|_, s| self.expired(s, now).is_none());
            if table.len() >= MAX_SESSIONS {
                return Err(SessionError::Full);
            }
        }
        let k = key(&id);
        table.insert(k, session);
        Ok(Granted {
            id,
            csrf,
            expires_at,
            reference: reference(&k),
        })
    }

    fn expired(&self, s: &Session, now: Instant) -> Option<SessionError> {
        if now.duration_since(s.created) >= self.settings.lifetime {
            return Some(SessionError::Lifetime(self.settings.lifetime));
        }
        if now.duration_since(s.last_used) >= self.settings.idle {
            return Some(SessionError::Idle(self.settings.idle));
        }
        None
    }

    /// The principal of session `id` as the users table says now; refreshes its idle timer.
    /// An expired or orphaned session is deleted.
    pub fn resolve(&self, id: &str, auth: &Authenticator) -> Result<Resolved, SessionError> {
        let k = key(id);
        let now = Instant::now();
        let fingerprint = self.fingerprint();
        let mut table = self.table();
        let s = table.get_mut(&k).ok_or(SessionError::Unknown)?;
        let problem = self
            .expired(s, now)
            .or_else(|| (s.users_file != fingerprint).then_some(SessionError::UsersFileChanged));
        let principal = match problem {
            Some(p) => Err(p),
            None => auth
                .principal(&s.user)
                .map_err(|_| SessionError::UserGone(s.user.clone())),
        };
        match principal {
            Ok(principal) => {
                s.last_used = now;
                Ok(Resolved {
                    principal,
                    csrf: s.csrf.clone(),
                    expires_at: s.expires_at,
                    reference: reference(&k),
                })
            }
            Err(e) => {
                table.remove(&k);
                Err(e)
            }
        }
    }

    /// For a mutating request carrying session cookie `id`: `Ok` when the session is unknown
    /// (authentication refuses it next, with the reason) or `csrf` is its token.
    pub fn check_csrf(&self, id: &str, csrf: Option<&str>) -> Result<(), SessionError> {
        let table = self.table();
        match table.get(&key(id)) {
            None => Ok(()),
            Some(s) if csrf.is_some_and(|c| same(c, &s.csrf)) => Ok(()),
            Some(_) => Err(SessionError::Csrf),
        }
    }

    /// Delete session `id`; its audit reference if it existed.
    pub fn remove(&self, id: &str) -> Option<String> {
        let k = key(id);
        self.table().remove(&k).map(|_| reference(&k))
    }

    #[cfg(test)]
    fn age(&self, id: &str, by: Duration) {
        if let Some(s) = self.table().get_mut(&key(id)) {
            s.created -= by;
            s.last_used -= by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, add_user, load_users};

    fn setup(settings: SessionSettings) -> (tempfile::TempDir, PathBuf, Sessions, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        add_user(
            &path,
            "amira",
            Role::Approver,
            &["incident_commander".into()],
        )
        .unwrap();
        let auth = Authenticator::new(load_users(&path).unwrap());
        let s = Sessions::new(settings, Some(path.clone()));
        (dir, path, s, auth)
    }

    fn amira(auth: &Authenticator) -> Principal {
        auth.principal("amira").unwrap()
    }

    #[test]
    fn a_session_resolves_to_its_user_and_checks_csrf() {
        let (_d, _p, s, auth) = setup(SessionSettings::default());
        let g = s.create(&amira(&auth)).unwrap();
        let r = s.resolve(&g.id, &auth).unwrap();
        assert_eq!(r.principal, amira(&auth));
        assert_eq!(r.csrf, g.csrf);
        assert_ne!(g.id, g.csrf);
        assert_eq!(s.check_csrf(&g.id, Some(&g.csrf)), Ok(()));
        assert_eq!(s.check_csrf(&g.id, None), Err(SessionError::Csrf));
        assert_eq!(s.check_csrf(&g.id, Some(&g.id)), Err(SessionError::Csrf));
        assert_eq!(
            s.check_csrf("nope", None),
            Ok(()),
            "unknown: auth refuses it"
        );
        assert_eq!(s.resolve("nope", &auth).unwrap_err(), SessionError::Unknown);
        assert_eq!(s.remove(&g.id), Some(g.reference.clone()));
        assert_eq!(s.resolve(&g.id, &auth).unwrap_err(), SessionError::Unknown);
    }

    #[test]
    fn idle_and_lifetime_end_a_session() {
        let settings = SessionSettings {
            idle: Duration::from_secs(60),
            lifetime: Duration::from_secs(600),
            secure_cookie: false,
        };
        let (_d, _p, s, auth) = setup(settings);
        let g = s.create(&amira(&auth)).unwrap();
        s.age(&g.id, Duration::from_secs(61));
        assert_eq!(
            s.resolve(&g.id, &auth).unwrap_err(),
            SessionError::Idle(settings.idle)
        );
        assert_eq!(s.resolve(&g.id, &auth).unwrap_err(), SessionError::Unknown);
        let g = s.create(&amira(&auth)).unwrap();
        // Used just now but signed in longer ago than its lifetime.
        if let Some(x) = s.table().get_mut(&key(&g.id)) {
            x.created -= Duration::from_secs(601);
        }
        assert_eq!(
            s.resolve(&g.id, &auth).unwrap_err(),
            SessionError::Lifetime(settings.lifetime)
        );
    }

    #[test]
    fn an_edited_users_file_ends_sessions() {
        let (_d, path, s, auth) = setup(SessionSettings::default());
        let g = s.create(&amira(&auth)).unwrap();
        assert!(s.resolve(&g.id, &auth).is_ok());
        add_user(&path, "omar", Role::Viewer, &[]).unwrap();
        assert_eq!(
            s.resolve(&g.id, &auth).unwrap_err(),
            SessionError::UsersFileChanged
        );
    }

    #[test]
    fn a_disabled_user_ends_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        add_user(&path, "amira", Role::Approver, &[]).unwrap();
        let mut file = load_users(&path).unwrap();
        let before = Authenticator::new(file.clone());
        file.users[0].disabled = true;
        let after = Authenticator::new(file);
        let s = Sessions::new(SessionSettings::default(), None);
        let g = s.create(&amira(&before)).unwrap();
        assert_eq!(
            s.resolve(&g.id, &after).unwrap_err(),
            SessionError::UserGone("amira".into())
        );
    }
}
