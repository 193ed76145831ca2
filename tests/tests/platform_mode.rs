//! The platform's degradation level (issue 10 §6) against real Knot DNS and the real niledr:
//! a step that fails after `platform.mode` rolls back to the level it found, a real failover
//! publishes level 4 before fencing and level 5 after verification in the TXT record on every
//! authoritative server, and the API and the SSE stream follow it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{Context, Result};
use niledr_tests::scenario::{self, World, start_with};
use niledr_tests::{ZONE, wait_until};
use serde_json::Value;

const FAILOVER: &str = "failover-khartoum-to-port-sudan";
/// Tells the applications, then waits for something that does not happen: the rollback must
/// put the level back.
const TELL_THEN_FAIL: &str = r#"name = "tell-then-fail"
description = "Level 4, then a wait that times out."
mode = "planned"

[approval]
required = 2
roles = ["incident_commander", "engineering_lead"]

[[steps]]
id = "tell"
kind = "platform.mode"
level = 4
message = "Test: read-only for a moment"

[[steps]]
id = "never"
kind = "wait"
until = { service_down = "khartoum-api" }
timeout = "1s"
"#;

fn record() -> String {
    format!("_platform-mode.{ZONE}")
}

/// The TXT record's strings on every authoritative server (one `Vec` per server).
fn txt_everywhere(w: &World) -> Result<Vec<String>> {
    let dns = w.topo.dns();
    dns.servers()
        .iter()
        .map(|s| Ok(dns.dig("TXT", &record(), s.address())?.join(" ")))
        .collect()
}

fn wait_txt(w: &World, pred: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut last = Vec::new();
    wait_until(std::time::Instant::now() + Duration::from_secs(20), || {
        last = txt_everywhere(w)?;
        Ok(last.iter().all(|t| pred(t)))
    })
    .with_context(|| format!("TXT {} never matched: {last:?}", record()))?;
    Ok(last)
}

fn wait_mode(w: &World, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    w.niledr
        .wait_json("/api/v1/platform-mode", Duration::from_secs(20), |v| {
            pred(v)
        })
}

#[test]
fn the_level_is_published_before_fencing_after_verification_and_restored_by_a_rollback()
-> Result<()> {
    let w = start_with(
        |topo, text| {
            std::fs::write(
                topo.base_dir().join("runbooks").join("tell-then-fail.toml"),
                TELL_THEN_FAIL,
            )?;
            Ok(text)
        },
        &[],
    )?;
    let m = wait_mode(&w, |v| !v["observed_at"].is_null())?;
    assert_eq!(m["level"], 0, "{m:#}");
    assert_eq!(m["record"], record(), "{m:#}");
    let events = w.niledr.watch_events()?;

    // Before the point of no return: a failure rolls back to the level found (0).
    let id = scenario::propose_and_approve(&w, "tell-then-fail")?;
    let ex = w
        .niledr
        .wait_execution(&id, Duration::from_secs(60), &["rolled_back", "failed"])?;
    assert_eq!(ex["state"], "rolled_back", "{ex:#}");
    let tell = scenario::step(&ex, "tell");
    assert!(
        tell["detail"].as_str().unwrap().contains("level 0 → 4"),
        "{tell:#}"
    );
    let restored = wait_txt(&w, |t| t.contains("\"level=0\""))?;
    assert!(
        restored
            .iter()
            .all(|t| t.contains(&format!("restored by the rollback of execution {id}"))),
        "{restored:?}"
    );
    events.wait_for(Duration::from_secs(10), |v| {
        v["record"] == record() && v["level"] == 4 && v["execution"] == id.as_str()
    })?;
    events.wait_for(Duration::from_secs(10), |v| {
        v["record"] == record() && v["level"] == 0
    })?;

    // A real failover: level 4 before the fence, level 5 once verified.
    scenario::kill_primary_after_writes(&w, 50)?;
    let id = scenario::propose_and_approve(&w, FAILOVER)?;
    let ex = w.niledr.wait_execution(
        &id,
        Duration::from_secs(120),
        &["succeeded", "needs_operator", "failed"],
    )?;
    assert_eq!(ex["state"], "succeeded", "{ex:#}");
    let (told, fenced, verified, dr) = (
        scenario::step(&ex, "platform-failover-in-progress"),
        scenario::step(&ex, "fence-khartoum-pg"),
        scenario::step(&ex, "smoke-sql"),
        scenario::step(&ex, "platform-dr-mode"),
    );
    let at = |s: &Value, k: &str| s[k].as_str().unwrap().to_string();
    assert!(at(told, "ended_at") <= at(fenced, "started_at"), "{ex:#}");
    assert!(at(verified, "ended_at") <= at(dr, "started_at"), "{ex:#}");
    let published = wait_txt(&w, |t| t.contains("\"level=5\""))?;
    for t in &published {
        assert!(t.contains(&format!("\"execution={id}\"")), "{t}");
        assert!(t.contains("\"previous=0\""), "the level it replaced: {t}");
        assert!(t.contains("Running in DR mode at Port Sudan"), "{t}");
    }
    let m = wait_mode(&w, |v| v["level"] == 5 && v["agree"] == true)?;
    assert_eq!(m["execution"], id.as_str(), "{m:#}");
    assert_eq!(m["previous_level"], 0, "{m:#}");
    events.wait_for(Duration::from_secs(10), |v| {
        v["record"] == record() && v["level"] == 4 && v["execution"] == id.as_str()
    })?;
    events.wait_for(Duration::from_secs(10), |v| {
        v["record"] == record() && v["level"] == 5
    })?;
    scenario::finish(w, &[])
}
