//! Maintenance mode (like `patronictl pause`): while paused, runbook triggers stay quiet;
//! proposals by hand still work. Persisted in store meta (shared in cluster mode, so a new
//! leader inherits it), changed only with its audit entry in the same transaction, by an
//! operator or above, with a reason.

use niledr_web::ApiError;
use niledr_web::types::{PrincipalView, TriggersView};
use serde::{Deserialize, Serialize};

use crate::store::{AuditEvent, Store};

/// Meta key of the maintenance state.
pub const KEY: &str = "triggers_paused";

/// What is stored (v1): paused or not, by whom, when, why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseV1 {
    pub v: u32,
    pub paused: bool,
    pub by: Option<String>,
    pub at: Option<String>,
    pub reason: Option<String>,
}

impl PauseV1 {
    pub fn view(&self) -> TriggersView {
        TriggersView {
            paused: self.paused,
            by: self.by.clone(),
            at: self.at.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// The stored state; a record that does not decode is an error (never read as "not paused").
pub fn load(store: &Store) -> anyhow::Result<PauseV1> {
    match store.meta(KEY)? {
        None => Ok(PauseV1::default()),
        Some(v) => serde_json::from_str(&v).map_err(|e| {
            anyhow::anyhow!("the stored maintenance state ({KEY}) does not decode: {e}")
        }),
    }
}

/// Pause (`pause = true`) or resume the triggers as `who`: operator or above, a reason, and a
/// change (pausing twice is a conflict that names who paused). Committed with its audit entry
/// before it is answered; the caller publishes the returned state.
pub fn set(
    store: &Store,
    who: &PrincipalView,
    pause: bool,
    reason: &str,
) -> Result<PauseV1, ApiError> {
    let what = if pause {
        "pause the triggers"
    } else {
        "resume the triggers"
    };
    crate::engine::require(who, crate::engine::Need::Operator, what)?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "say why: {what} needs a non-empty \"reason\""
        )));
    }
    let internal = |e: anyhow::Error| ApiError::Internal(format!("{e:#}"));
    let now = load(store).map_err(internal)?;
    if now.paused == pause {
        return Err(ApiError::Conflict(if pause {
            format!(
                "the triggers are already paused (by {}, at {}: {})",
                now.by.as_deref().unwrap_or("?"),
                now.at.as_deref().unwrap_or("?"),
                now.reason.as_deref().unwrap_or("")
            )
        } else {
            "the triggers are not paused".to_string()
        }));
    }
    let next = PauseV1 {
        v: 1,
        paused: pause,
        by: Some(who.name.clone()),
        at: Some(jiff::Timestamp::now().to_string()),
        reason: Some(reason.to_string()),
    };
    let value = serde_json::to_string(&next).map_err(|e| ApiError::Internal(e.to_string()))?;
    let action = if pause {
        "triggers.paused"
    } else {
        "triggers.resumed"
    };
    store
        .set_meta_audited(
            KEY,
            &value,
            vec![AuditEvent {
                actor: &who.name,
                action,
                detail: serde_json::json!({ "reason": reason, "role": who.role }),
            }],
        )
        .map_err(internal)?;
    tracing::warn!(by = %who.name, "{action}: {reason}");
    Ok(next)
}
