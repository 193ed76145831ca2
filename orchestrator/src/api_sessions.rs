//! The daemon's side of console sessions (`auth/session.rs` holds the table): sign-in through
//! the authentication gate, sign-in and sign-out audited (never the token nor the cookie, only
//! a short reference) before the answer, and a session's principal for every request.

use std::net::IpAddr;

use niledr_web::types::{PrincipalView, SessionView};
use niledr_web::{ApiError, SessionGrant};

use crate::api::{DaemonBackend, refusal};
use crate::auth::Principal;
use crate::auth::session::{Resolved, SessionError};
use crate::store::AuditEvent;

fn principal_view(p: &Principal) -> PrincipalView {
    PrincipalView {
        name: p.name.clone(),
        role: p.role.to_string(),
        tags: p.tags.clone(),
    }
}

pub(crate) fn session_error(e: SessionError) -> ApiError {
    match e {
        SessionError::Csrf => ApiError::Forbidden(e.to_string()),
        SessionError::Full => ApiError::Unavailable(e.to_string()),
        _ => ApiError::Unauthorized(e.to_string()),
    }
}

impl DaemonBackend {
    fn view(
        &self,
        principal: &Principal,
        csrf: String,
        expires_at: jiff::Timestamp,
    ) -> SessionView {
        SessionView {
            principal: principal_view(principal),
            csrf_token: csrf,
            expires_at: expires_at.to_string(),
            idle_timeout_seconds: self.sessions.settings().idle.as_secs(),
        }
    }

    /// Commit an audit entry before answering (the store writes with fsync).
    async fn audit_session(
        &self,
        action: &'static str,
        detail: serde_json::Value,
    ) -> Result<(), ApiError> {
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            store.append_audit(vec![AuditEvent {
                actor: detail["user"].as_str().unwrap_or("unknown"),
                action,
                detail: detail.clone(),
            }])
        })
        .await;
        match written {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ApiError::Unavailable(format!(
                "the audit log cannot be written, so no session change is made: {e:#}"
            ))),
            Err(e) => Err(ApiError::Internal(format!("audit task: {e}"))),
        }
    }

    pub(crate) async fn sign_in_session(
        &self,
        token: String,
        client: Option<IpAddr>,
    ) -> Result<SessionGrant, ApiError> {
        let header = format!("Bearer {token}");
        let who = self
            .auth
            .authenticate(Some(&header), client)
            .await
            .map_err(refusal)?;
        let granted = self.sessions.create(&who).map_err(session_error)?;
        let detail = serde_json::json!({
            "user": who.name,
            "role": who.role.as_str(),
            "client": client.map(|c| c.to_string()),
            "session": granted.reference,
            "expires_at": granted.expires_at.to_string(),
        });
        if let Err(e) = self.audit_session("session.signed_in", detail).await {
            self.sessions.remove(&granted.id);
            return Err(e);
        }
        let settings = self.sessions.settings();
        Ok(SessionGrant {
            view: self.view(&who, granted.csrf, granted.expires_at),
            id: granted.id,
            secure: settings.secure_cookie,
            max_age_secs: settings.lifetime.as_secs(),
        })
    }

    pub(crate) fn resolve_session(&self, id: &str) -> Result<Resolved, ApiError> {
        self.sessions
            .resolve(id, self.auth.authenticator())
            .map_err(session_error)
    }

    pub(crate) fn session_view(&self, id: &str) -> Result<SessionView, ApiError> {
        let r = self.resolve_session(id)?;
        Ok(self.view(&r.principal, r.csrf, r.expires_at))
    }

    /// End a session: audited first; an unknown session is a 401 (nothing to end).
    pub(crate) async fn sign_out_session(&self, id: &str) -> Result<(), ApiError> {
        let r = self.resolve_session(id)?;
        let detail = serde_json::json!({
            "user": r.principal.name,
            "session": r.reference,
        });
        self.audit_session("session.signed_out", detail).await?;
        self.sessions.remove(id);
        Ok(())
    }
}
