//! niledr's composition root: configuration, the event loop that owns the store, the audit
//! chain and the daemon's CLI commands. The only crate that acts on infrastructure.

pub mod config;
