//! `http` probe: GET a URL, check the status and optionally that the body contains a string.

use super::Outcome;
use crate::result::Observation;
use crate::target::HttpSpec;

/// Bodies larger than this are not read in full; a health page is small.
const MAX_BODY: usize = 64 * 1024;

pub struct HttpProber {
    spec: HttpSpec,
    client: reqwest::Client,
}

impl HttpProber {
    pub fn new(spec: HttpSpec, client: reqwest::Client) -> Self {
        Self { spec, client }
    }

    pub async fn run(&mut self) -> Outcome {
        let mut resp = self
            .client
            .get(&self.spec.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {}", self.spec.url, error_chain(&e)))?;
        let status = resp.status().as_u16();
        if status != self.spec.expect_status {
            return Err(format!(
                "HTTP {status}, expected {}",
                self.spec.expect_status
            ));
        }
        if let Some(needle) = &self.spec.body_contains {
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| format!("reading body: {}", error_chain(&e)))?
            {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_BODY {
                    break;
                }
            }
            if !String::from_utf8_lossy(&body).contains(needle.as_str()) {
                return Err(format!("HTTP {status} but body lacks {needle:?}"));
            }
        }
        Ok(Observation::Http { status })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}
