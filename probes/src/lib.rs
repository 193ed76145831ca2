//! Observation: what each probe kind sees, the scheduler that runs probes on their intervals,
//! and the health model that turns results into service and site status. Probes report; they
//! never decide or act.

pub mod health;
pub mod kinds;
pub mod result;
pub mod scheduler;
pub mod target;

pub use health::{HealthModel, ServiceHealth, SiteHealth, Status, StatusChange, Thresholds};
pub use result::{
    DnsObservation, DnsServerAnswer, Observation, PgObservation, ProbeResult, RedisObservation,
};
pub use scheduler::{Scheduler, SchedulerStats};
pub use target::{
    DnsSpec, HttpSpec, PgEndpoint, PgSpec, ProbeSpec, RedisEndpoint, RedisSpec, Target,
};
