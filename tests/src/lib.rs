//! niledr-tests: the real-server harness that starts the NileCare three-site topology
//! (PostgreSQL primary + streaming standby + cold backup, Redis primary + replica, Knot DNS,
//! nginx health endpoints). The `niledr-sandbox` binary and the test suites share it; they
//! differ only in the `Layout` and the base directory. `Topology::start_in(&Netns::create()?, None)`
//! runs each site in a network namespace of its own instead, to partition sites (`netns`).
//!
//! ```no_run
//! use niledr_tests::{Layout, Site, Topology, ZONE};
//! # fn main() -> anyhow::Result<()> {
//! // Free ports and a temp dir: independent of every other test running in parallel.
//! let topo = Topology::start_free(None)?;
//! topo.postgres_primary().write_rows(100)?;
//! topo.postgres_primary().kill()?; // SIGKILL the whole server, reaped
//! topo.knsupdate(&format!("update delete db.{ZONE} A\nupdate add db.{ZONE} 60 A 127.0.2.1"))?;
//! let answer = topo.dig_a(&format!("db.{ZONE}"), topo.dns_servers()[0])?;
//! let config = topo.write_niledr_config(topo.base_dir().join("niledr.toml"), &Default::default())?;
//! # let _ = (answer, config, Site::Khartoum);
//! # Ok(()) }
//! // Dropping `topo` kills every process and removes the temp dir.
//! ```

pub mod agent;
pub mod alertmanager;
pub mod bins;
pub mod browser;
pub mod cli_helpers;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod etcd;
pub mod etcd_tls;
pub mod http;
pub mod layout;
pub mod netns;
pub mod pgbouncer;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod scenario;
pub mod shm;
pub mod summary;
pub mod topology;
pub mod util;
pub mod writer;

pub use agent::HostAgent;
pub use config::{AgentRef, ClusterOptions, ConfigOptions};
pub use dns::{Dns, DnsServer, TsigKey, ZONE};
pub use http::{HttpHealth, HttpResponse, http_get};
pub use layout::{Layout, Namespaces, Site, SitePorts};
pub use netns::Netns;
pub use pgbouncer::PgBouncer;
pub use postgres::{APP_USER, PgRole, Postgres, Reseed, Reseeded};
pub use process::{Component, process_alive, process_state};
pub use redis::{Redis, Resp};
pub use topology::{ColdSite, Secrets, Topology, all_gone};
pub use util::wait_until;
