//! A small blocking client for the daemon's JSON API. Errors say what a person can act on:
//! the server's own `{"error": ...}` message, or which URL could not be reached and how to
//! start the daemon. Nothing from the network is unwrapped.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long one request may take. Mutations answer once the daemon committed them (fsync),
/// which is quick; a daemon that does not answer in this time is stuck, not slow.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest server message or body shown verbatim.
const MAX_SHOWN: usize = 2000;

#[derive(Debug)]
pub enum CliError {
    /// Bad arguments, URL or token source (exit 2).
    Usage(String),
    /// The daemon answered with an error status; `message` is its `error` field.
    Http {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    /// Nothing answered at `url`.
    Unreachable { url: String, cause: String },
    /// Anything else: a timeout, an answer that is not what the API promises.
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            CliError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Other(m) => f.write_str(m),
            CliError::Http {
                method,
                path,
                status,
                message,
            } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "{method} {path}: {status} {reason}: {message}")?;
                if *status == 401 {
                    write!(
                        f,
                        " (check the token in --token-file or {})",
                        super::conn::TOKEN_ENV
                    )?;
                }
                Ok(())
            }
            CliError::Unreachable { url, cause } => write!(
                f,
                "cannot reach niledr at {url} ({cause}). Is the daemon running? Start it with \
                 `niledr serve --config FILE`, or point --url / {} at it.",
                super::conn::URL_ENV
            ),
        }
    }
}

pub struct Client {
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    base: Url,
    token: Option<String>,
}

impl Client {
    pub fn new(base: Url, token: Option<String>) -> Result<Client, CliError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
        Ok(Client {
            // Installs the ring TLS provider (reqwest is built without one) and skips proxies.
            http: niledr_probes::kinds::http_client(),
            rt,
            base,
            token,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` + path segments, each percent-encoded (a runbook name cannot escape its segment),
    /// + query pairs, encoded likewise.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, CliError> {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| CliError::Usage(format!("{} cannot be a base URL", self.base)))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    pub fn get(&self, segments: &[&str]) -> Result<Value, CliError> {
        self.send("GET", segments, &[], None)
    }

    /// `GET` with query parameters (`?drill=...&limit=...`).
    pub fn get_query(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Value, CliError> {
        self.send("GET", segments, query, None)
    }

    /// `GET` of a text answer (a Markdown report): the body as it came, if it is UTF-8.
    pub fn get_text(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<String, CliError> {
        let (url, bytes) = self.request(
            "GET",
            segments,
            query,
            None,
            "text/markdown, application/json",
        )?;
        String::from_utf8(bytes)
            .map_err(|e| CliError::Other(format!("GET {url}: the answer is not UTF-8 text ({e})")))
    }

    pub fn post(&self, segments: &[&str], body: &Value) -> Result<Value, CliError> {
        self.send("POST", segments, &[], Some(body))
    }

    fn send(
        &self,
        method: &'static str,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let (url, bytes) = self.request(method, segments, query, body, "application/json")?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Other(format!(
                "{method} {url}: the answer is not JSON ({e}): {}",
                shorten(&String::from_utf8_lossy(&bytes))
            ))
        })
    }

    /// One request: the body of a 2xx answer, or the error a person can act on.
    fn request(
        &self,
        method: &'static str,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        accept: &str,
    ) -> Result<(Url, Vec<u8>), CliError> {
        let url = self.url(segments, query)?;
        let path = url.path().to_string();
        let mut req = match body {
            None => self.http.get(url.clone()),
            Some(b) => self
                .http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_string()),
        }
        .header(ACCEPT, accept)
        .timeout(REQUEST_TIMEOUT);
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let (status, bytes) = self
            .rt
            .block_on(async {
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await?.to_vec();
                Ok::<_, reqwest::Error>((status, bytes))
            })
            .map_err(|e| self.transport_error(&url, e))?;
        if !(200..300).contains(&status) {
            let json: Result<Value, _> = serde_json::from_slice(&bytes);
            let message = match &json {
                Ok(v) => v
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| shorten(&v.to_string())),
                Err(_) if bytes.is_empty() => "(no message)".to_string(),
                Err(_) => shorten(&String::from_utf8_lossy(&bytes)),
            };
            return Err(CliError::Http {
                method,
                path,
                status,
                message,
            });
        }
        Ok((url, bytes))
    }

    fn transport_error(&self, url: &Url, e: reqwest::Error) -> CliError {
        if e.is_builder() {
            return CliError::Usage(format!(
                "cannot build the request to {url}: {} (is the token a single line of text?)",
                chain(&e)
            ));
        }
        if e.is_timeout() {
            return CliError::Other(format!(
                "niledr at {} did not answer within {} s ({url})",
                self.base,
                REQUEST_TIMEOUT.as_secs()
            ));
        }
        if e.is_connect() {
            return CliError::Unreachable {
                url: self.base.to_string(),
                cause: root_cause(&e),
            };
        }
        CliError::Other(format!("request to {url} failed: {}", chain(&e)))
    }
}

/// Decode a JSON answer into the type the API promises, or say what came instead.
pub fn decode<T: DeserializeOwned>(v: Value, what: &str) -> Result<T, CliError> {
    serde_json::from_value(v)
        .map_err(|e| CliError::Other(format!("unexpected {what} from the daemon: {e}")))
}

/// An error and its causes, innermost last ("connection refused" is usually the last one).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// The innermost cause ("Connection refused (os error 111)").
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

fn shorten(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= MAX_SHOWN {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_SHOWN).collect();
    out.push('…');
    out
}
