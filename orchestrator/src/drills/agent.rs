//! The host agent client: the HTTP service on the hosts that injects a drill's faults (kill,
//! SIGSTOP, stop), undoes them, and re-seeds or restores servers for the steps a drill performs
//! instead of a person. In the sandbox and the tests the harness answers; in production an
//! agent on each host (or a cloud API) would.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Re-seeding or restoring a database can take minutes.
const ACTION_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Agent {
    url: String,
    token: Option<String>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Done {
    detail: String,
}

#[derive(Deserialize)]
struct Refused {
    error: String,
}

/// What the agent did and how long the request took.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    pub detail: String,
    pub took: Duration,
}

impl Agent {
    pub fn new(url: &str, token: Option<String>) -> Result<Agent> {
        let client = reqwest::Client::builder()
            .timeout(ACTION_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the host agent client")?;
        Ok(Agent {
            url: url.trim_end_matches('/').to_string(),
            token,
            client,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Ask the agent to perform `action` on `target` (a service or site id).
    pub async fn act(&self, target: &str, action: &str, of: Option<&str>) -> Result<ActionOutcome> {
        let started = Instant::now();
        let mut req = self
            .client
            .post(format!("{}/v1/actions", self.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "target": target, "action": action, "of": of }).to_string());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("host agent {} unreachable ({action} {target})", self.url))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let why = serde_json::from_str::<Refused>(&body)
                .map(|r| r.error)
                .unwrap_or(body);
            bail!("host agent refused {action} {target}: HTTP {status}: {why}");
        }
        let done: Done = serde_json::from_str(&body)
            .with_context(|| format!("host agent answered {action} {target} with {body:?}"))?;
        Ok(ActionOutcome {
            detail: done.detail,
            took: started.elapsed(),
        })
    }

    /// `GET /v1/health`: is the agent there (checked before a drill injects anything)?
    pub async fn health(&self) -> Result<()> {
        let mut req = self.client.get(format!("{}/v1/health", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .with_context(|| format!("host agent {} unreachable", self.url))?;
        if !resp.status().is_success() {
            bail!("host agent {} answered HTTP {}", self.url, resp.status());
        }
        Ok(())
    }
}
