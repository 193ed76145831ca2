//! niledr's composition root: configuration, the event loop that owns the store, the audit
//! chain and the daemon's CLI commands. The only crate that acts on infrastructure.

pub mod actions;
pub mod api;
mod api_sessions;
pub mod audit;
pub mod audit_view;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod detection;
pub mod drills;
pub mod engine;
pub mod event_loop;
pub mod failpoint;
pub mod hooks;
pub mod metrics;
pub mod notify;
pub mod platform;
pub mod probe_runtime;
pub mod records;
pub mod redact;
pub mod serve;
pub mod shared;
pub mod store;
#[cfg(test)]
mod test_fixtures;
pub mod topology;
pub mod util;
pub mod world;
