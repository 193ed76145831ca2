//! End-to-end: the real `niledr` binary watching a real topology (PostgreSQL primary + standby,
//! Redis primary + replica, Knot DNS, nginx) started by the harness on free ports.

#![allow(clippy::unwrap_used)]
use std::time::{Duration, Instant};

use anyhow::Result;
use niledr_tests::daemon::{Niledr, free_listen_addr, niledr_command};
use niledr_tests::{ConfigOptions, Topology, ZONE};

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(500);
const FAILURES: u32 = 3;

/// ERROR lines a test may cause on purpose.
const ALLOWED_ERRORS: &[&str] = &[];

struct World {
    topo: Topology,
    niledr: Niledr,
}

fn start() -> Result<World> {
    let topo = Topology::start_free(None)?;
    let listen = free_listen_addr()?;
    let opts = ConfigOptions {
        interval: INTERVAL,
        timeout: TIMEOUT,
        failure_threshold: FAILURES,
        success_threshold: 2,
        ..ConfigOptions::with_listen(listen)
    };
    let config = topo.write_niledr_config(topo.base_dir().join("niledr.toml"), &opts)?;
    // Reads need a principal: the harness reads as a viewer.
    niledr_tests::daemon::create_reader(&topo.base_dir().join("users.toml"))?;
    let niledr = Niledr::start(&config, listen, &topo.base_dir().join("niledr.log"))?;
    // Everything healthy before any fault.
    niledr.wait_json("/api/v1/sites", Duration::from_secs(30), |sites| {
        sites.as_array().is_some_and(|a| {
            a.iter()
                .filter(|s| s["role"] != "cold_standby")
                .all(|s| s["status"] == "up")
        })
    })?;
    Ok(World { topo, niledr })
}

fn finish(w: World) -> Result<()> {
    let errors = w.niledr.unexpected_errors(ALLOWED_ERRORS)?;
    assert!(
        errors.is_empty(),
        "unexpected ERROR lines in the niledr log:\n{}",
        errors.join("\n")
    );
    w.niledr.stop()?;
    Ok(())
}

fn ts(v: &serde_json::Value) -> jiff::Timestamp {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

#[test]
fn killing_khartoum_postgres_takes_service_and_site_down_then_back_up() -> Result<()> {
    let w = start()?;
    let events = w.niledr.watch_events()?;
    let killed_at = jiff::Timestamp::now();
    let t0 = Instant::now();
    w.topo.postgres_primary().kill()?;

    let site = w
        .niledr
        .wait_json("/api/v1/sites/khartoum", Duration::from_secs(15), |s| {
            s["status"] == "down"
        })?;
    let svc = site["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == "khartoum-postgres"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(svc["status"], "down", "{svc:#}");
    let reason = svc["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("khartoum")
            || reason.contains("connect")
            || reason.contains("refused")
            || reason.contains("query"),
        "reason should say what failed: {reason}"
    );
    assert!(
        site["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("khartoum-postgres"),
        "{site:#}"
    );

    // Detection time from the recorded change (the failing probe's start), not from our polling.
    let change = events.wait_for(Duration::from_secs(5), |e| {
        e["id"] == "khartoum-postgres" && e["to"] == "down"
    })?;
    let detected = ts(&change["at"]).duration_since(killed_at);
    let bound = INTERVAL * FAILURES + TIMEOUT;
    println!(
        "DETECTION khartoum-postgres kill -> down: {:.3} s (recorded), {:.3} s (seen via API); bound {:.1} s",
        detected.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!(
        detected.as_secs_f64() <= bound.as_secs_f64(),
        "detected after {detected:?}, beyond interval x threshold + timeout = {bound:?}"
    );
    events.wait_for(Duration::from_secs(5), |e| {
        e["scope"] == "site" && e["id"] == "khartoum" && e["to"] == "down"
    })?;

    // The standby is not the primary's victim: port-sudan stays up.
    let (_, ps) = w.niledr.get("/api/v1/sites/port-sudan")?;
    assert_ne!(ps["status"], "down", "{ps:#}");

    w.topo.postgres_primary().restart()?;
    w.niledr
        .wait_json("/api/v1/sites/khartoum", Duration::from_secs(30), |s| {
            s["status"] == "up"
        })?;
    let hist = w
        .niledr
        .get("/api/v1/services/khartoum-postgres/history")?
        .1;
    let tos: Vec<&str> = hist["status_changes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["to"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        tos.starts_with(&["up", "down"]),
        "newest first: up after down, got {tos:?}"
    );
    assert!(
        hist["probes"]
            .as_array()
            .is_some_and(|p| p.iter().any(|r| r["ok"] == false)),
        "failed probes are in the history"
    );
    finish(w)
}

#[test]
fn sigstopped_redis_is_detected_through_the_timeout() -> Result<()> {
    let w = start()?;
    w.topo.redis_primary().sigstop()?;
    let svc = w
        .niledr
        .wait_service("khartoum-redis", Duration::from_secs(15), |s| {
            s["status"] == "down"
        })?;
    let reason = svc["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("timed out after 500 ms"),
        "a hung Redis must be seen through the timeout: {reason}"
    );
    assert!(!reason.contains("refused"), "{reason}");
    let (_, site) = w.niledr.get("/api/v1/sites/khartoum")?;
    assert_eq!(site["status"], "down", "{site:#}");
    w.topo.redis_primary().sigcont()?;
    w.niledr
        .wait_service("khartoum-redis", Duration::from_secs(20), |s| {
            s["status"] == "up"
        })?;
    finish(w)
}

#[test]
fn paused_replay_makes_lag_grow_and_resume_brings_it_back() -> Result<()> {
    let w = start()?;
    let standby = w.topo.postgres_standby();
    standby.pause_replay()?;
    let primary = w.topo.postgres_primary();
    for _ in 0..5 {
        primary.write_rows(20_000)?;
    }
    let svc = w
        .niledr
        .wait_service("port-sudan-postgres", Duration::from_secs(20), |s| {
            s["replication"]["lag_bytes"]
                .as_u64()
                .is_some_and(|b| b > 1_000_000)
        })?;
    println!(
        "LAG while replay paused: {} bytes ({})",
        svc["replication"]["lag_bytes"], svc["reason"]
    );
    assert_eq!(svc["replication"]["replay_paused"], true, "{svc:#}");
    assert_eq!(svc["status"], "degraded", "{svc:#}");
    let metrics = w.niledr.get_text("/metrics")?.1;
    assert!(
        metrics.contains("niledr_replication_lag_bytes{service=\"port-sudan-postgres\"}"),
        "{metrics}"
    );

    standby.resume_replay()?;
    let svc = w
        .niledr
        .wait_service("port-sudan-postgres", Duration::from_secs(30), |s| {
            s["replication"]["lag_bytes"]
                .as_u64()
                .is_some_and(|b| b < 16 * 1024)
                && s["status"] == "up"
        })?;
    println!(
        "LAG after resume: {} bytes",
        svc["replication"]["lag_bytes"]
    );
    finish(w)
}

#[test]
fn dns_update_is_reported_with_the_mismatch() -> Result<()> {
    let w = start()?;
    let khartoum = w.topo.layout().ip(niledr_tests::Site::Khartoum).to_string();
    let port_sudan = w
        .topo
        .layout()
        .ip(niledr_tests::Site::PortSudan)
        .to_string();
    let svc = w.niledr.service("dns-db")?;
    assert_eq!(svc["dns"]["matches_expected"], true, "{svc:#}");
    assert_eq!(svc["dns"]["expected"][0], khartoum.as_str());

    w.topo.knsupdate(&format!(
        "update delete db.{ZONE} A\nupdate add db.{ZONE} 60 A {port_sudan}\nsend"
    ))?;
    // The primary answers at once; the secondary after its zone transfer (NOTIFY): wait for both.
    let want = serde_json::json!([port_sudan]);
    let svc = w
        .niledr
        .wait_service("dns-db", Duration::from_secs(15), |s| {
            s["dns"]["servers"]
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x["answers"] == want))
        })?;
    assert_eq!(svc["dns"]["matches_expected"], false, "{svc:#}");
    assert_eq!(svc["status"], "degraded", "{svc:#}");
    let servers = svc["dns"]["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(servers.len(), w.topo.dns_servers().len());
    for s in &servers {
        assert_eq!(
            s["answers"],
            serde_json::json!([port_sudan]),
            "every server answers the new address: {s:#}"
        );
        assert_eq!(s["ttl"], 60);
        assert_eq!(s["authoritative"], true);
    }
    assert!(
        svc["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("MISMATCH"),
        "{svc:#}"
    );
    finish(w)
}

#[test]
fn bad_config_is_refused_and_restart_keeps_history_and_audit() -> Result<()> {
    let w = start()?;
    let config = w.niledr.config.clone();
    let text = std::fs::read_to_string(&config)?;

    // A bad copy: unknown site in a service. check-config and serve refuse it with file:line:col.
    let bad = config.with_file_name("bad.toml");
    let broken = text.replacen("site = \"port-sudan\"", "site = \"port-sudn\"", 1);
    assert_ne!(broken, text, "the config has a port-sudan service");
    std::fs::write(&bad, &broken)?;
    let line = broken[..broken.find("port-sudn").unwrap_or(0)]
        .matches('\n')
        .count()
        + 1;
    let out = niledr_command(&["check-config", bad.to_str().unwrap_or_default()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("bad.toml:{line}:"))
            && stderr.contains("unknown site \"port-sudn\""),
        "{stderr}"
    );
    let out = niledr_command(&["serve", "--config", bad.to_str().unwrap_or_default()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to start") && stderr.contains(&format!("bad.toml:{line}:")),
        "{stderr}"
    );
    let ok = niledr_command(&["check-config", config.to_str().unwrap_or_default()])?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Unknown site → 404 with a JSON error.
    let (status, body) = w.niledr.get("/api/v1/sites/atlantis")?;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("atlantis"),
        "{body}"
    );

    // Some history, then restart.
    w.topo.redis_replica().kill()?;
    w.niledr
        .wait_service("port-sudan-redis", Duration::from_secs(15), |s| {
            s["status"] == "down"
        })?;
    let before = w
        .niledr
        .get("/api/v1/services/port-sudan-redis/history?limit=1000")?
        .1;
    let listen = w.niledr.listen;
    let log = w.niledr.log.clone();
    let World { topo, niledr } = w;
    niledr.stop()?;

    let out = niledr_command(&[
        "audit",
        "verify",
        "--config",
        config.to_str().unwrap_or_default(),
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries_before: u64 = stdout
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        stdout.starts_with("audit chain OK") && entries_before >= 4,
        "{stdout}"
    );

    let niledr = Niledr::start(&config, listen, &log)?;
    let after = niledr
        .get("/api/v1/services/port-sudan-redis/history?limit=1000")?
        .1;
    let changes_before = before["status_changes"].as_array().map_or(0, Vec::len);
    let changes_after = after["status_changes"].as_array().map_or(0, Vec::len);
    assert!(
        changes_before >= 2 && changes_after >= changes_before,
        "before {before:#}\nafter {after:#}"
    );
    assert_eq!(
        after["status_changes"][changes_after - 1],
        before["status_changes"][changes_before - 1],
        "oldest change kept"
    );
    let oldest_probe = before["probes"]
        .as_array()
        .and_then(|p| p.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        after["probes"]
            .as_array()
            .is_some_and(|p| p.contains(&oldest_probe)),
        "probe history kept"
    );
    let (status, verify) = niledr.get("/api/v1/audit/verify")?;
    assert_eq!(status, 200, "{verify:#}");
    assert!(
        verify["ok"] == true && verify["entries"].as_u64().unwrap_or(0) > entries_before,
        "{verify:#}"
    );
    let w = World { topo, niledr };
    finish(w)
}

#[test]
fn stopped_health_endpoint_fails_http_and_tcp_probes() -> Result<()> {
    let w = start()?;
    let nginx = w
        .topo
        .http(niledr_tests::Site::PortSudan)
        .expect("port-sudan has nginx");
    nginx.stop()?;
    let api = w
        .niledr
        .wait_service("port-sudan-api", Duration::from_secs(15), |s| {
            s["status"] == "down"
        })?;
    let tcp = w
        .niledr
        .wait_service("port-sudan-api-tcp", Duration::from_secs(15), |s| {
            s["status"] == "down"
        })?;
    assert!(
        api["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("GET http://"),
        "{api:#}"
    );
    assert!(
        tcp["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{tcp:#}"
    );
    // The HTTP check is critical, so the site is down; khartoum is untouched.
    let (_, site) = w.niledr.get("/api/v1/sites/port-sudan")?;
    assert_eq!(site["status"], "down", "{site:#}");
    let (_, k) = w.niledr.get("/api/v1/sites/khartoum")?;
    assert_eq!(k["status"], "up", "{k:#}");
    let metrics = w.niledr.get_text("/metrics")?.1;
    assert!(
        metrics.contains("niledr_probe_up{service=\"port-sudan-api\",kind=\"http\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("niledr_probe_up{service=\"khartoum-api\",kind=\"http\"} 1"),
        "{metrics}"
    );
    nginx.start()?;
    w.niledr
        .wait_json("/api/v1/sites/port-sudan", Duration::from_secs(20), |s| {
            s["status"] == "up"
        })?;
    finish(w)
}
