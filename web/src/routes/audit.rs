//! `GET /api/v1/audit`: the audit chain paged by seq and filtered by actor, execution and
//! time; bad parameters are a 400 that names the parameter and what it accepts.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};

use super::limit_within;
use crate::types::{AuditPageView, AuditQuery};
use crate::{ApiError, SharedBackend};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
const KNOWN: [&str; 7] = [
    "after",
    "limit",
    "actor",
    "execution",
    "since",
    "until",
    "chain",
];

pub async fn list(
    State(b): State<SharedBackend>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<AuditPageView>, ApiError> {
    b.audit(&parse(&q)?).map(Json)
}

/// The query as typed values; times stay text for the daemon to parse (it owns the clock types).
pub(crate) fn parse(q: &HashMap<String, String>) -> Result<AuditQuery, ApiError> {
    let mut unknown: Vec<&str> = q
        .keys()
        .map(String::as_str)
        .filter(|k| !KNOWN.contains(k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(ApiError::BadRequest(format!(
            "unknown audit parameter(s) {}; known: {}",
            unknown.join(", "),
            KNOWN.join(", ")
        )));
    }
    let after = match q.get("after") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "after must be an audit seq (a whole number, 0 for the start), got {v:?}"
            ))
        })?,
    };
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match q.get(k).map(|v| v.trim()) {
            None => Ok(None),
            Some("") => Err(ApiError::BadRequest(format!(
                "{k} is empty; leave it out to match every {k}"
            ))),
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let chain = text("chain")?;
    if let Some(c) = chain.as_deref()
        && c != "shared"
        && c != "local"
    {
        return Err(ApiError::BadRequest(format!(
            "chain must be shared or local, got {c:?}"
        )));
    }
    Ok(AuditQuery {
        after,
        limit: limit_within(q, DEFAULT_LIMIT, MAX_LIMIT)?,
        actor: text("actor")?,
        execution: text("execution")?,
        since: text("since")?,
        until: text("until")?,
        chain,
    })
}
