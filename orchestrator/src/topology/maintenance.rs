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

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, role: &str) -> PrincipalView {
        PrincipalView {
            name: name.into(),
            role: role.into(),
            tags: Vec::new(),
        }
    }

    #[test]
    fn pause_and_resume_are_checked_stored_and_audited_together() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.redb")).expect("store");
        assert!(!load(&store).expect("empty").paused);
        let refused = |r: Result<PauseV1, ApiError>| match r {
            Err(ApiError::Forbidden(_)) => "403",
            Err(ApiError::BadRequest(_)) => "400",
            Err(ApiError::Conflict(_)) => "409",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(refused(set(&store, &who("v", "viewer"), true, "x")), "403");
        assert_eq!(
            refused(set(&store, &who("o", "operator"), true, "  ")),
            "400"
        );
        assert_eq!(
            refused(set(&store, &who("o", "operator"), false, "x")),
            "409"
        );
        let p = set(&store, &who("o", "operator"), true, "patching").expect("paused");
        assert!(p.paused && p.by.as_deref() == Some("o"));
        assert_eq!(load(&store).expect("stored"), p);
        assert_eq!(
            refused(set(&store, &who("a", "admin"), true, "again")),
            "409"
        );
        let r = set(&store, &who("a", "approver"), false, "done").expect("resumed");
        assert!(!r.paused);
        let audit = store.audit_entries().expect("audit");
        let actions: Vec<(&str, &str)> = audit
            .iter()
            .map(|a| (a.actor.as_str(), a.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [("o", "triggers.paused"), ("a", "triggers.resumed")]
        );
        // A stored state that does not decode is an error, never "not paused".
        store.set_meta(KEY, "{\"paused\": 1}").expect("meta");
        assert!(load(&store).is_err());
    }
}
