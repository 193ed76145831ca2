//! Drill definitions in the daemon: loaded and validated at start, listed with their next runs
//! in Africa/Khartoum time (peak hours skipped, with the reason), refused with file:line when
//! invalid.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use niledr_tests::daemon::niledr_command;
use niledr_tests::scenario::{self, start};

#[test]
fn drills_are_listed_with_their_next_runs_and_bad_files_are_refused() -> Result<()> {
    let w = start()?;
    let drills = w
        .niledr
        .wait_json("/api/v1/drills", Duration::from_secs(5), |d| {
            d.as_array().is_some_and(|a| !a.is_empty())
        })?;
    let drills = drills.as_array().unwrap();
    assert_eq!(drills.len(), 6, "the six shipped drills: {drills:#?}");
    for d in drills {
        assert!(
            d["digest"].as_str().unwrap().starts_with("sha256:"),
            "{d:#}"
        );
        if d["schedule"].is_null() {
            continue;
        }
        let due: Vec<&serde_json::Value> = d["upcoming"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["due"] == true)
            .collect();
        assert!(!due.is_empty(), "a scheduled drill has a next run: {d:#}");
        for s in due {
            // Khartoum local time (UTC+2), outside the 08:00-20:00 blackout.
            let at: jiff::Zoned = s["at"].as_str().unwrap().parse()?;
            assert_eq!(
                at.time_zone().iana_name(),
                Some(d["timezone"].as_str().unwrap()),
                "{s:#}"
            );
            assert!(
                at.hour() < 8 || at.hour() >= 20,
                "due inside peak hours: {s:#}"
            );
        }
        for s in d["upcoming"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["due"] == false)
        {
            assert!(
                s["skipped_because"].as_str().unwrap().contains("blackout"),
                "{s:#}"
            );
        }
    }

    // A drill with an unknown runbook is refused by check-config with its file and line.
    let dir = w.topo.base_dir().join("bad-drills");
    std::fs::create_dir_all(&dir)?;
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../drills/nilecare/postgres-primary-failure.toml"),
    )?;
    let bad = shipped.replacen(
        "runbook = \"failover-khartoum-to-port-sudan\"",
        "runbook = \"failover-to-nowhere\"",
        1,
    );
    assert_ne!(bad, shipped);
    std::fs::write(dir.join("bad.toml"), &bad)?;
    let line = bad[..bad.find("failover-to-nowhere").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let config = w.niledr.config.clone();
    let text = std::fs::read_to_string(&config)?;
    let drills_line = text
        .lines()
        .find(|l| l.contains("drills/nilecare"))
        .unwrap()
        .to_string();
    let bad_config = config.with_file_name("bad-drills.toml");
    std::fs::write(
        &bad_config,
        text.replace(&drills_line, &format!("dirs = [\"{}\"]", dir.display())),
    )?;
    let out = niledr_command(&["check-config", bad_config.to_str().unwrap()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("bad.toml:{line}:")) && stderr.contains("failover-to-nowhere"),
        "{stderr}"
    );
    scenario::finish(w, &[])
}
