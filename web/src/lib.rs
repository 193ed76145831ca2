//! niledr's HTTP surface: the router, the API's wire types and the console assets. The only
//! crate that knows the wire format; it defines the `Backend` handle it needs and the
//! orchestrator implements it.

mod console;
mod error;
mod routes;
pub mod types;

use std::sync::Arc;

pub use error::ApiError;
pub use routes::router;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use types::{AuditVerifyView, ServiceHistoryView, ServiceView, SiteView, StatusEventView};

/// What the HTTP layer needs from the daemon. Implemented by the orchestrator.
pub trait Backend: Send + Sync + 'static {
    /// `Ok` once the daemon is serving real data (store open, probes running).
    fn ready(&self) -> Result<(), String>;
    fn sites(&self) -> Vec<SiteView>;
    fn site(&self, id: &str) -> Option<SiteView>;
    fn services(&self) -> Vec<ServiceView>;
    /// `Ok(None)` for an unknown service.
    fn service_history(&self, id: &str, limit: usize)
    -> Result<Option<ServiceHistoryView>, String>;
    fn recent_events(&self, limit: usize) -> Result<Vec<StatusEventView>, String>;
    /// Live status changes for server-sent events.
    fn subscribe(&self) -> broadcast::Receiver<StatusEventView>;
    fn audit_verify(&self) -> Result<AuditVerifyView, String>;
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
    /// Cancelled when the daemon shuts down, so long-lived streams (SSE) end and graceful
    /// shutdown does not wait on them forever.
    fn shutdown_token(&self) -> CancellationToken;
}

pub type SharedBackend = Arc<dyn Backend>;
