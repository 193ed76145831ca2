//! The sandbox topology as a `Catalog` (as in runbooks/tests) and the shipped runbook names.

#![allow(dead_code)]

use std::path::Path;

use niledr_drills::{Drill, parse_drill};
use niledr_runbooks::{parse_runbook, shipped::SHIPPED};

pub use niledr_runbooks::shipped::sandbox_catalog;

/// The names of the shipped runbooks, as parsed (so a renamed runbook breaks these tests).
pub fn runbook_names() -> Vec<String> {
    let catalog = sandbox_catalog();
    SHIPPED
        .iter()
        .map(|(file, text)| {
            parse_runbook(Path::new(file), text, &catalog)
                .unwrap_or_else(|e| panic!("{e}"))
                .name
        })
        .collect()
}

pub fn parse(text: &str) -> Result<Drill, String> {
    parse_drill(
        Path::new("drills/test.toml"),
        text,
        &sandbox_catalog(),
        &runbook_names(),
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
