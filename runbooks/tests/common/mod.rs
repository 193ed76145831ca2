//! The sandbox topology as a `Catalog` (what the orchestrator builds from the sandbox config).

#![allow(dead_code)]

use std::path::Path;

use niledr_runbooks::{Runbook, parse_runbook, shipped::SHIPPED};

pub use niledr_runbooks::shipped::sandbox_catalog;

pub fn shipped(file: &str) -> Runbook {
    let (_, text) = SHIPPED
        .iter()
        .find(|(name, _)| *name == file)
        .unwrap_or_else(|| panic!("no shipped runbook {file}"));
    parse_runbook(Path::new(file), text, &sandbox_catalog()).unwrap_or_else(|e| panic!("{e}"))
}
