//! The API against its own description (issue 10 §5): schemathesis (PyPI, installed into
//! `target/pyvenv` by `scripts/install-deps.sh`) generates requests for every operation of
//! `GET /api/v1/openapi.json` and sends them to the real niledr on a real topology; no answer
//! may be a 5xx and every answer must match the document's schema for its status.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};
use niledr_tests::scenario;

fn schemathesis() -> Result<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/schemathesis");
    if !bin.exists() {
        bail!(
            "{} is missing: run scripts/install-deps.sh (it installs schemathesis into a venv)",
            bin.display()
        );
    }
    Ok(bin)
}

#[test]
fn schemathesis_finds_no_server_error_and_every_answer_matches_the_document() -> Result<()> {
    let bin = schemathesis()?;
    let w = scenario::start()?;
    // Something to list: a proposal awaiting approval.
    scenario::propose(&w.niledr, "dns-revert-to-khartoum", &w.people.operator)?;
    let out = Command::new(bin)
        .args([
            "run",
            &format!("{}/api/v1/openapi.json", w.niledr.url()),
            "--header",
            &format!("Authorization: Bearer {}", w.people.operator),
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            // An event stream never ends: it is tested by the suites that read it.
            "--exclude-path",
            "/api/v1/events",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "20",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    if !out.status.success() {
        bail!(
            "schemathesis found problems (exit {:?}); see its output above",
            out.status.code()
        );
    }
    // "Test cases: N generated, N passed" (a failure adds "found M unique failures").
    let cases = stdout
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_default();
    println!("SCHEMATHESIS {}", cases.trim());
    assert!(
        cases.trim_end().ends_with(" passed") && !cases.contains("found"),
        "no clean summary of the generated cases: {stdout}"
    );
    scenario::finish(w, &[])
}
