//! niledr-tests: the real-server harness that starts the NileCare three-site topology
//! (PostgreSQL primary + streaming standby + cold backup, Redis primary + replica, Knot DNS,
//! nginx health endpoints). The `niledr-sandbox` binary and the test suites share it; they
//! differ only in the `Layout` and the base directory.

pub mod bins;
pub mod config;
pub mod dns;
pub mod http;
pub mod layout;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod summary;
pub mod topology;
pub mod util;

pub use config::ConfigOptions;
pub use dns::{Dns, DnsServer, TsigKey, ZONE};
pub use http::{HttpHealth, HttpResponse, http_get};
pub use layout::{Layout, Site, SitePorts};
pub use postgres::{PgRole, Postgres};
pub use process::{Component, process_alive};
pub use redis::{Redis, Resp};
pub use topology::{ColdSite, Secrets, Topology, all_gone};
pub use util::wait_until;
