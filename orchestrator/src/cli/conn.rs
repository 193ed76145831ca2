//! Where the daemon is and who we are: `--url` (else `NILEDR_URL`, else the default) and the
//! bearer token from `--token-file` (else `NILEDR_TOKEN`). There is deliberately no `--token`:
//! an argument would show in `ps` and in shell history.

use std::path::{Path, PathBuf};

use clap::Args;
use reqwest::Url;

use super::client::CliError;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
pub const URL_ENV: &str = "NILEDR_URL";
pub const TOKEN_ENV: &str = "NILEDR_TOKEN";

/// How to reach a running `niledr serve`.
#[derive(Args, Debug, Clone, Default)]
pub struct Connection {
    /// The daemon's base URL [env: NILEDR_URL] [default: http://127.0.0.1:8080].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Read the bearer token from this file [else env: NILEDR_TOKEN]. There is no --token:
    /// a token on the command line would show in `ps`.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl Connection {
    /// The base URL: `--url`, else `$NILEDR_URL`, else the default. Only http(s).
    pub fn base_url(&self) -> Result<Url, CliError> {
        let (raw, from) = match (&self.url, std::env::var(URL_ENV)) {
            (Some(u), _) => (u.clone(), "--url"),
            (None, Ok(u)) if !u.trim().is_empty() => (u, URL_ENV),
            _ => (DEFAULT_URL.to_string(), "the default"),
        };
        let url = Url::parse(raw.trim())
            .map_err(|e| CliError::Usage(format!("{from} {raw:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(CliError::Usage(format!(
                "{from} {raw:?} must be an http:// or https:// URL with a host, e.g. {DEFAULT_URL}"
            )));
        }
        Ok(url)
    }

    /// The token, if one was given: `--token-file` wins over `$NILEDR_TOKEN`. A named file that
    /// cannot be read, or holds nothing, is an error rather than an anonymous request.
    pub fn token(&self) -> Result<Option<String>, CliError> {
        if let Some(path) = &self.token_file {
            return read_token_file(path).map(Some);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
            _ => Ok(None),
        }
    }

    /// The token for a mutating request: missing is a usage error that says how to give one.
    pub fn required_token(&self) -> Result<String, CliError> {
        self.token()?.ok_or_else(|| {
            CliError::Usage(format!(
                "this command needs your token: pass --token-file PATH or set {TOKEN_ENV} \
                 (an admin creates one with `niledr user add`)"
            ))
        })
    }
}

fn read_token_file(path: &Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read token file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CliError::Usage(format!(
            "token file {} is empty",
            path.display()
        )));
    }
    warn_if_shared(path);
    Ok(token.to_string())
}

/// A token readable by other users is someone else's token too: say so (but go on).
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: token file {} is readable by other users (mode {mode:03o}); chmod 600 it",
                path.display()
            );
        }
    }
}
