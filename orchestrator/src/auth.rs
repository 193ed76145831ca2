//! People and their tokens: the users file (TOML), argon2-hashed bearer tokens, roles
//! (viewer < operator < approver < admin) and role tags (incident_commander, engineering_lead).
//!
//! A token is `ndr_<user>_<secret>`: the user part picks the one hash to check, so a request
//! costs one argon2 verification, and a verified token is cached (by its sha256) afterwards.
//! In the daemon every uncached verification goes through `gate` (rate limits of failed
//! attempts, a bounded pool of argon2 workers); `limit` holds the per-client buckets.

pub mod gate;
pub mod limit;
pub mod session;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "approver" => Role::Approver,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Role tags approvals can require.
pub const KNOWN_TAGS: [&str; 2] = ["incident_commander", "engineering_lead"];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub tags: Vec<String>,
    /// argon2id PHC string of the token's secret part.
    pub token_hash: String,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<UserRecord>,
}

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub tags: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// 401
    Missing,
    /// 401
    Invalid,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("this endpoint needs an `Authorization: Bearer <token>` header; create a token with `niledr user add`"),
            AuthError::Invalid => f.write_str("the bearer token is not valid (unknown user, wrong secret or disabled user)"),
        }
    }
}

pub fn load_users(path: &Path) -> Result<UsersFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read users file {}", path.display()))?;
    let file: UsersFile = toml::from_str(&text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, col)
            })
            .unwrap_or((0, 0));
        anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
    })?;
    let mut seen = std::collections::HashSet::new();
    for u in &file.users {
        if !valid_name(&u.name) {
            bail!(
                "{}: user name {:?} may use only a-z, 0-9 and '-'",
                path.display(),
                u.name
            );
        }
        if !seen.insert(u.name.clone()) {
            bail!("{}: user {:?} is listed twice", path.display(), u.name);
        }
        for t in &u.tags {
            if !KNOWN_TAGS.contains(&t.as_str()) {
                bail!(
                    "{}: user {:?} has unknown tag {t:?}; known tags: {}",
                    path.display(),
                    u.name,
                    KNOWN_TAGS.join(", ")
                );
            }
        }
        PasswordHash::new(&u.token_hash).map_err(|e| {
            anyhow::anyhow!(
                "{}: user {:?} has a malformed token_hash: {e}",
                path.display(),
                u.name
            )
        })?;
    }
    Ok(file)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Add a user to the file (created if missing) and return their new token, shown once.
pub fn add_user(path: &Path, name: &str, role: Role, tags: &[String]) -> Result<String> {
    if !valid_name(name) {
        bail!("user name {name:?} may use only a-z, 0-9 and '-'");
    }
    for t in tags {
        if !KNOWN_TAGS.contains(&t.as_str()) {
            bail!("unknown tag {t:?}; known tags: {}", KNOWN_TAGS.join(", "));
        }
    }
    let mut file = if path.exists() {
        load_users(path)?
    } else {
        UsersFile::default()
    };
    if file.users.iter().any(|u| u.name == name) {
        bail!("user {name:?} already exists in {}", path.display());
    }
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the token: {e}"))?
        .to_string();
    file.users.push(UserRecord {
        name: name.to_string(),
        role,
        tags: tags.to_vec(),
        token_hash: hash,
        disabled: false,
    });
    write_atomic(path, &toml::to_string_pretty(&file)?)?;
    Ok(format!("ndr_{name}_{secret}"))
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("users")
    ));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Verifies bearer tokens against the users file loaded at start.
pub struct Authenticator {
    users: HashMap<String, UserRecord>,
    /// sha256(token) → user name, for tokens already verified.
    verified: Mutex<HashMap<[u8; 32], String>>,
}

impl Authenticator {
    pub fn new(file: UsersFile) -> Self {
        Authenticator {
            users: file
                .users
                .into_iter()
                .map(|u| (u.name.clone(), u))
                .collect(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn empty() -> Self {
        Self::new(UsersFile::default())
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Verify a bearer header in full (argon2 on the calling thread); the daemon goes through
    /// `gate::AuthGate` instead, which bounds where and how often this runs.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let token = bearer(header)?;
        match self.cached(token) {
            Some(r) => r,
            None => self.verify(token),
        }
    }

    /// The answer for a token verified before, without argon2; `None` if it never was.
    pub fn cached(&self, token: &str) -> Option<Result<Principal, AuthError>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let name = self.verified.lock().ok()?.get(&key).cloned()?;
        Some(self.principal(&name))
    }

    /// The user a token claims to be, if the users file knows that name (so callers may key
    /// state by it without letting strangers invent unbounded keys).
    pub fn claimed_user(&self, token: &str) -> Option<&str> {
        let (name, _) = split_token(token)?;
        self.users.get_key_value(name).map(|(k, _)| k.as_str())
    }

    /// The slow path: one argon2 verification; a success is cached.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let (name, secret) = split_token(token).ok_or(AuthError::Invalid)?;
        let user = self.users.get(name).ok_or(AuthError::Invalid)?;
        let hash = PasswordHash::new(&user.token_hash).map_err(|_| AuthError::Invalid)?;
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .map_err(|_| AuthError::Invalid)?;
        if let Ok(mut m) = self.verified.lock() {
            m.insert(Sha256::digest(token.as_bytes()).into(), name.to_string());
        }
        self.principal(name)
    }

    fn principal(&self, name: &str) -> Result<Principal, AuthError> {
        let user = self.users.get(name).ok_or(AuthError::Invalid)?;
        if user.disabled {
            return Err(AuthError::Invalid);
        }
        Ok(Principal {
            name: user.name.clone(),
            role: user.role,
            tags: user.tags.clone(),
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)
}

/// `ndr_<user>_<secret>` → (user, secret).
fn split_token(token: &str) -> Option<(&str, &str)> {
    token.strip_prefix("ndr_")?.rsplit_once('_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let t1 = add_user(
            &path,
            "amira",
            Role::Approver,
            &["incident_commander".into()],
        )
        .unwrap();
        let t2 = add_user(&path, "omar", Role::Viewer, &[]).unwrap();
        assert!(
            add_user(&path, "amira", Role::Admin, &[]).is_err(),
            "duplicate refused"
        );
        assert!(
            add_user(&path, "x", Role::Admin, &["king".into()]).is_err(),
            "unknown tag refused"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(t1.rsplit('_').next().unwrap()),
            "the secret is never stored"
        );

        let auth = Authenticator::new(load_users(&path).unwrap());
        let p = auth.authenticate(Some(&format!("Bearer {t1}"))).unwrap();
        assert_eq!((p.name.as_str(), p.role), ("amira", Role::Approver));
        assert_eq!(p.tags, ["incident_commander"]);
        // Cached path gives the same answer.
        assert_eq!(auth.authenticate(Some(&format!("Bearer {t1}"))).unwrap(), p);
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {t2}")))
                .unwrap()
                .role,
            Role::Viewer
        );
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some("Basic abc")),
            Err(AuthError::Missing)
        );
        let forged = format!("{}x", &t1[..t1.len() - 1]);
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {forged}"))),
            Err(AuthError::Invalid)
        );
        // Another user's secret under my name does not work.
        let other = format!("ndr_amira_{}", t2.rsplit('_').next().unwrap());
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {other}"))),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn malformed_users_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(
            &path,
            "[[users]]\nname = \"a\"\nrole = \"god\"\ntoken_hash = \"x\"\n",
        )
        .unwrap();
        let e = load_users(&path).unwrap_err().to_string();
        assert!(e.contains("users.toml:3:"), "{e}");
    }
}
