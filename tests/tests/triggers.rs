//! Triggers and break-glass: a service down long enough opens one proposal per outage (and
//! runs it unattended only where the runbook says `auto_approve = true`); a single approver
//! with a written reason may break glass where the runbook allows it, loudly audited.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use niledr_tests::scenario::{self, World, propose, start};
use niledr_tests::{Site, ZONE};
use serde_json::json;

fn edit_runbook(w: &World, file: &str, edits: &[(&str, &str)]) -> Result<()> {
    let path = w.runbooks.join(file);
    let mut text = std::fs::read_to_string(&path)?;
    for (from, to) in edits {
        assert!(text.contains(from), "{file} has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn executions_by_trigger(w: &World, runbook: &str) -> Result<Vec<serde_json::Value>> {
    let (_, all) = w.niledr.get("/api/v1/executions")?;
    Ok(all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["runbook"] == runbook && e["requester"] == "niledr-trigger")
        .cloned()
        .collect())
}

#[test]
fn a_trigger_opens_one_proposal_per_outage_and_waits_for_people() -> Result<()> {
    let w = start()?;
    edit_runbook(
        &w,
        "failover-khartoum-to-port-sudan.toml",
        &[("for = \"30s\"", "for = \"2s\"")],
    )?;
    let w = scenario::restart(w, &[])?;
    w.niledr
        .wait_service("port-sudan-postgres", Duration::from_secs(20), |s| {
            s["replication"]["lag_bytes"] == 0
        })?;
    w.topo.postgres_primary().kill()?;
    let found = w
        .niledr
        .wait_json("/api/v1/executions", Duration::from_secs(20), |all| {
            all.as_array()
                .is_some_and(|a| a.iter().any(|e| e["requester"] == "niledr-trigger"))
        })?;
    let ex = found
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["requester"] == "niledr-trigger")
        .unwrap()
        .clone();
    assert_eq!(
        ex["state"], "awaiting_approval",
        "no auto-approval by default: {ex:#}"
    );
    assert!(
        ex["reason"].as_str().unwrap().starts_with("trigger:"),
        "{ex:#}"
    );
    // Deduplicated: the outage goes on, the proposal stays one.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        executions_by_trigger(&w, "failover-khartoum-to-port-sudan")?.len(),
        1
    );
    assert_eq!(
        w.topo
            .postgres_standby()
            .psql("SELECT pg_is_in_recovery()")?
            .trim(),
        "t",
        "nothing ran without approval"
    );
    scenario::finish(w, &[])
}

#[test]
fn auto_approved_trigger_runs_the_redis_failover_unattended() -> Result<()> {
    let w = start()?;
    edit_runbook(
        &w,
        "redis-failover-khartoum-to-port-sudan.toml",
        &[
            ("for = \"30s\"", "for = \"1s\""),
            (
                "break_glass = true",
                "break_glass = true\nauto_approve = true",
            ),
        ],
    )?;
    let w = scenario::restart(w, &[])?;
    w.topo.redis_primary().kill()?;
    let all = w
        .niledr
        .wait_json("/api/v1/executions", Duration::from_secs(30), |all| {
            all.as_array().is_some_and(|a| {
                a.iter()
                    .any(|e| e["requester"] == "niledr-trigger" && e["state"] == "succeeded")
            })
        })?;
    let ex = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["requester"] == "niledr-trigger")
        .unwrap()
        .clone();
    assert!(
        ex["timeline"].to_string().contains("auto_approved"),
        "{ex:#}"
    );
    assert_eq!(
        w.topo
            .redis_replica()
            .info_field("replication", "role")?
            .as_deref(),
        Some("master")
    );
    let port_sudan = w.topo.layout().ip(Site::PortSudan);
    for server in w.topo.dns_servers() {
        assert_eq!(
            w.topo.dig_a(&format!("cache.{ZONE}"), server)?,
            vec![port_sudan]
        );
    }
    scenario::finish(w, &[])
}

#[test]
fn break_glass_needs_a_reason_and_is_loudly_audited() -> Result<()> {
    let w = start()?;
    let ex = propose(
        &w.niledr,
        "redis-failover-khartoum-to-port-sudan",
        &w.people.operator,
    )?;
    let id = ex["id"].as_str().unwrap();
    let digest = ex["plan_digest"].as_str().unwrap();
    let path = format!("/api/v1/executions/{id}/approvals");
    let (status, body) = w.niledr.post(
        &path,
        Some(&w.people.ic),
        &json!({"decision": "approve", "plan_digest": digest, "break_glass_reason": "  "}),
    )?;
    assert_eq!(status, 400, "{body:#}");
    let (status, body) = w.niledr.post(
        &path,
        Some(&w.people.ic),
        &json!({"decision": "approve", "plan_digest": digest, "break_glass_reason": "engineering lead unreachable; Khartoum Redis lost"}),
    )?;
    assert_eq!(status, 200, "{body:#}");
    let done = w.niledr.wait_execution(
        id,
        Duration::from_secs(60),
        &["succeeded", "failed", "rolled_back"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(
        done["approvals"][0]["break_glass_reason"],
        "engineering lead unreachable; Khartoum Redis lost"
    );
    let log = std::fs::read_to_string(&w.niledr.log)?;
    assert!(log.contains("BREAK-GLASS"), "announced in the log");
    scenario::finish(w, &[])
}
