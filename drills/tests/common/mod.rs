//! The sandbox topology as a `Catalog` (as in runbooks/tests) and the shipped runbooks as
//! `parse_drill` sees them.

#![allow(dead_code)]

use std::path::Path;

use niledr_drills::{Drill, RunbookInfo, parse_drill};
use niledr_runbooks::{parse_runbook, shipped::SHIPPED};

pub use niledr_runbooks::shipped::sandbox_catalog;

/// The shipped runbooks' names and manual steps, as parsed (so a renamed runbook or step breaks
/// these tests).
pub fn runbook_infos() -> Vec<RunbookInfo> {
    let catalog = sandbox_catalog();
    SHIPPED
        .iter()
        .map(|(file, text)| {
            let runbook =
                parse_runbook(Path::new(file), text, &catalog).unwrap_or_else(|e| panic!("{e}"));
            RunbookInfo::from(&runbook)
        })
        .collect()
}

pub fn parse(text: &str) -> Result<Drill, String> {
    parse_drill(
        Path::new("drills/test.toml"),
        text,
        &sandbox_catalog(),
        &runbook_infos(),
    )
    .map_err(|e| e.to_string())
}

pub const MINIMAL: &str = r#"
name = "postgres-primary-failure"
schedule = "0 2 1 * *"
runbook = "failover-khartoum-to-port-sudan"
[scenario]
fault = "kill_primary_postgres"
target = "khartoum-postgres"
[objectives]
rto = "4m"
rpo_postgres = "1m"
"#;

/// `MINIMAL` with the failback as cleanup and its two re-seeds automated (`[[automate]]` on
/// lines 13 and 18).
pub const AUTOMATED: &str = r#"
name = "postgres-primary-failure"
schedule = "0 2 1 * *"
runbook = "failover-khartoum-to-port-sudan"
[scenario]
fault = "kill_primary_postgres"
target = "khartoum-postgres"
[objectives]
rto = "4m"
rpo_postgres = "1m"
[cleanup]
runbook = "failback-port-sudan-to-khartoum"
[[automate]]
step = "reseed-khartoum"
target = "khartoum-postgres"
action = "reseed"
of = "port-sudan-postgres"
[[automate]]
step = "reseed-port-sudan"
target = "port-sudan-postgres"
action = "reseed"
of = "khartoum-postgres"
"#;
