//! The host agent against a real topology: bearer auth, 4xx for unknown targets, actions and
//! impossible ones, WAL detach/attach on the standby (the receiver really stops), hang/resume
//! of Redis, stop + re-seed of the standby, and the cold site restored from the base backup
//! and the WAL archive, recovered, checked, retired, and killed when the agent is dropped.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::Result;
use niledr_tests::agent::wal_segments;
use niledr_tests::postgres::PgConn;
use niledr_tests::{
    ConfigOptions, HostAgent, Site, Topology, ZONE, all_gone, process_state, wait_until,
};
use serde_json::{Value, json};

/// A 200 with a detail and a duration; returns the detail.
fn ok(what: &str, (status, body): (u16, Value)) -> String {
    assert_eq!(status, 200, "{what}: {body:#}");
    assert!(body["took_ms"].is_u64(), "{what}: {body:#}");
    let detail = body["detail"].as_str().unwrap().to_string();
    println!("{what}: {detail} [{} ms]", body["took_ms"]);
    detail
}

/// A refusal with `status` and an error mentioning `needle`.
fn refused(what: &str, want: u16, needle: &str, (status, body): (u16, Value)) {
    assert_eq!(status, want, "{what}: {body:#}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains(needle), "{what}: {error:?} lacks {needle:?}");
    println!("{what}: {status} {error}");
}

#[test]
fn host_agent_acts_on_the_topology() -> Result<()> {
    let t0 = Instant::now();
    let topo = Topology::start_free(None)?;
    let agent = HostAgent::start(&topo)?;
    println!(
        "topology up in {:.1?}; host agent at {}",
        topo.started_in(),
        agent.url()
    );
    let primary = topo.postgres_primary();
    let standby = topo.postgres_standby();
    let redis = topo.redis_primary();

    // Rows for the cold site first: their WAL segment is archived (archive_timeout) while the
    // rest runs.
    primary.write_rows(500)?;
    let segment = primary.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")?;
    let rows_written = Instant::now();

    // niledr's config names the agent and the canary's service names.
    let opts = ConfigOptions {
        agent: Some(agent.agent_ref()),
        ..ConfigOptions::default()
    };
    let config = std::fs::read_to_string(
        topo.write_niledr_config(topo.base_dir().join("niledr.toml"), &opts)?,
    )?;
    let drills: toml::Table = toml::from_str::<toml::Table>(&config)?["drills"]
        .as_table()
        .unwrap()
        .clone();
    assert_eq!(drills["agent"].as_str(), Some(agent.url().as_str()));
    assert_eq!(
        drills["agent_token_file"].as_str(),
        agent.token_file().to_str()
    );
    assert_eq!(
        drills["canary_postgres"].as_str(),
        Some(format!("db.{ZONE}").as_str())
    );
    assert_eq!(drills["canary_redis_via"].as_str(), Some("khartoum-redis"));

    // The token file and bearer auth.
    let mode = std::fs::metadata(agent.token_file())?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    assert!(agent.token_file().starts_with(topo.base_dir()));
    assert_eq!(std::fs::read_to_string(agent.token_file())?, agent.token());
    let (status, _) = agent.request("GET", "/v1/health", None, None)?;
    assert_eq!(status, 401);
    let (status, _) = agent.request("GET", "/v1/health", Some("not-the-token"), None)?;
    assert_eq!(status, 401);
    assert_eq!(
        agent.request("GET", "/v1/health", Some(agent.token()), None)?,
        (200, json!({ "ok": true }))
    );
    let kill = json!({ "target": "khartoum-redis", "action": "kill", "of": null });
    refused(
        "kill without a token",
        401,
        "bearer token",
        agent.request("POST", "/v1/actions", None, Some(&kill))?,
    );
    assert!(redis.is_running(), "an unauthenticated kill did nothing");

    // What is refused, and how.
    let token = Some(agent.token());
    refused(
        "unknown target",
        404,
        "unknown target",
        agent.act("atlantis-postgres", "kill", None)?,
    );
    refused(
        "unknown action",
        400,
        "unknown action",
        agent.act("khartoum-redis", "detach_wal", None)?,
    );
    refused(
        "site hang",
        400,
        "unknown action",
        agent.act("khartoum", "hang", None)?,
    );
    refused(
        "reseed without of",
        400,
        "needs `of`",
        agent.act("port-sudan-postgres", "reseed", None)?,
    );
    refused(
        "of with kill",
        400,
        "only for reseed",
        agent.act("khartoum-postgres", "kill", Some("port-sudan-postgres"))?,
    );
    refused(
        "reseed of redis",
        400,
        "PostgreSQL service",
        agent.act("port-sudan-postgres", "reseed", Some("khartoum-redis"))?,
    );
    refused(
        "not an object",
        400,
        "JSON object",
        agent.request("POST", "/v1/actions", token, Some(&json!(["kill"])))?,
    );
    refused(
        "unknown field",
        400,
        "unknown field",
        agent.request(
            "POST",
            "/v1/actions",
            token,
            Some(&json!({ "target": "khartoum-redis", "action": "kill", "off": null })),
        )?,
    );
    refused(
        "unknown endpoint",
        404,
        "no such endpoint",
        agent.request("GET", "/v1/nothing", token, None)?,
    );
    refused(
        "detach_wal on the primary",
        409,
        "is a primary",
        agent.act("khartoum-postgres", "detach_wal", None)?,
    );
    refused(
        "recover before restore",
        409,
        "restore first",
        agent.act("dr-cold", "recover", None)?,
    );
    let detail = ok(
        "start a running server",
        agent.act("khartoum-redis", "start", None)?,
    );
    assert!(detail.contains("already running"), "{detail}");
    assert!(redis.is_running());

    // detach_wal: the WAL receiver stops, the primary loses its standby, new WAL stays away.
    ok(
        "detach_wal",
        agent.act("port-sudan-postgres", "detach_wal", None)?,
    );
    assert_eq!(
        standby.psql("SELECT count(*) FROM pg_stat_wal_receiver")?,
        "0"
    );
    let port_sudan = Site::PortSudan.name().to_string();
    wait_until(Instant::now() + Duration::from_secs(10), || {
        Ok(!primary
            .psql("SELECT application_name FROM pg_stat_replication")?
            .lines()
            .any(|a| a == port_sudan))
    })?;
    primary.write_rows(10)?;
    let primary_lsn = primary.psql("SELECT pg_current_wal_lsn()")?;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        standby.psql(&format!(
            "SELECT pg_last_wal_receive_lsn() < '{primary_lsn}'::pg_lsn"
        ))?,
        "t",
        "WAL written after detach_wal must not reach the standby"
    );
    let detail = ok(
        "detach_wal again",
        agent.act("port-sudan-postgres", "detach_wal", None)?,
    );
    assert!(detail.contains("already detached"), "{detail}");

    // attach_wal: streaming again, and it catches up.
    ok(
        "attach_wal",
        agent.act("port-sudan-postgres", "attach_wal", None)?,
    );
    assert_eq!(
        standby.streaming_from()?,
        Some(primary.address().to_string())
    );
    wait_until(Instant::now() + Duration::from_secs(10), || {
        Ok(primary.streaming_replicas()?.contains(&port_sudan)
            && standby.psql(&format!(
                "SELECT pg_last_wal_replay_lsn() >= '{primary_lsn}'::pg_lsn"
            ))? == "t")
    })?;

    // hang / resume of the khartoum Redis.
    ok("hang redis", agent.act("khartoum-redis", "hang", None)?);
    let pids = redis.pids();
    assert!(!pids.is_empty());
    for &pid in &pids {
        assert_eq!(process_state(pid), Some('T'), "pid {pid} stopped");
    }
    ok("resume redis", agent.act("khartoum-redis", "resume", None)?);
    for &pid in &pids {
        assert!(
            !matches!(process_state(pid), Some('T' | 't') | None),
            "pid {pid} running again: {:?}",
            process_state(pid)
        );
    }
    redis.redis_cli(&["PING"])?;
    let detail = ok(
        "resume a running redis",
        agent.act("khartoum-redis", "resume", None)?,
    );
    assert!(detail.contains("already running"), "{detail}");

    // stop, then re-seed the standby from the primary (histories did not diverge).
    ok(
        "stop standby",
        agent.act("port-sudan-postgres", "stop", None)?,
    );
    assert!(!standby.is_running());
    ok(
        "reseed standby",
        agent.act("port-sudan-postgres", "reseed", Some("khartoum-postgres"))?,
    );
    assert!(standby.is_in_recovery()?);
    assert_eq!(
        standby.streaming_from()?,
        Some(primary.address().to_string())
    );
    let detail = ok(
        "reseed a streaming standby",
        agent.act("port-sudan-postgres", "reseed", Some("khartoum-postgres"))?,
    );
    assert!(detail.contains("nothing to do"), "{detail}");

    // The cold site: the segment holding the first rows reaches the archive by archive_timeout.
    let archive = &topo.cold_site().wal_archive;
    wait_until(rows_written + Duration::from_secs(30), || {
        Ok(wal_segments(archive).contains(&segment))
    })?;
    println!(
        "segment {segment} archived within {:.1?} of the writes",
        rows_written.elapsed()
    );
    let layout = topo.layout();
    assert_eq!(agent.cold_address().ip(), layout.ip(Site::DrCold));
    assert_eq!(
        agent.cold_address().port(),
        layout.postgres(Site::Khartoum)?.port()
    );
    ok("restore", agent.act("dr-cold", "restore", None)?);
    assert!(agent.cold_root().join("data/recovery.signal").is_file());
    assert!(agent.cold_postgres().is_none(), "restore does not start it");
    let detail = ok("recover", agent.act("dr-cold", "recover", None)?);
    assert!(detail.contains("promoted"), "{detail}");
    let cold = PgConn::new(agent.cold_address(), primary.password())?;
    assert_eq!(cold.query("SELECT pg_is_in_recovery()")?, "f");
    let restored: i64 = cold.query("SELECT count(*) FROM niledr_harness")?.parse()?;
    let on_primary = primary.row_count()?;
    println!("dr-cold holds {restored} of the primary's {on_primary} rows");
    assert!(
        restored > 0 && restored <= on_primary,
        "{restored} of {on_primary}"
    );
    refused(
        "restore while running",
        409,
        "retire it first",
        agent.act("dr-cold", "restore", None)?,
    );
    ok("retire", agent.act("dr-cold", "retire", None)?);
    assert!(!agent.cold_root().exists());
    assert!(cold.query("SELECT 1").is_err(), "retired: nothing listens");
    refused(
        "recover after retire",
        409,
        "restore first",
        agent.act("dr-cold", "recover", None)?,
    );

    // A whole site down (kill -9 of every server there) and back.
    let khartoum = [
        primary.component(),
        redis.component(),
        topo.http(Site::Khartoum).unwrap().component(),
    ];
    let detail = ok("kill khartoum", agent.act("khartoum", "kill", None)?);
    assert!(detail.contains("khartoum-api killed"), "{detail}");
    assert!(khartoum.iter().all(|c| !c.is_running()));
    assert!(standby.is_running() && topo.redis_replica().is_running());
    ok("start khartoum", agent.act("khartoum", "start", None)?);
    assert!(khartoum.iter().all(|c| c.is_running()));
    assert_eq!(primary.row_count()?, on_primary);
    wait_until(Instant::now() + Duration::from_secs(15), || {
        Ok(primary.streaming_replicas()?.contains(&port_sudan))
    })?;

    // Dropping the agent kills the dr-cold server it started.
    ok("restore again", agent.act("dr-cold", "restore", None)?);
    ok("recover again", agent.act("dr-cold", "recover", None)?);
    let cold_pids = agent.cold_postgres().unwrap().pids();
    assert!(!cold_pids.is_empty());
    drop(agent);
    assert!(
        all_gone(&cold_pids),
        "dr-cold processes left: {cold_pids:?}"
    );
    assert!(cold.query("SELECT 1").is_err());
    assert!(primary.is_running() && redis.is_running());

    topo.shutdown()?;
    println!("agent test done in {:.1?}", t0.elapsed());
    Ok(())
}

#[test]
fn standby_streams_again_after_the_primary_is_killed_and_restarted() -> Result<()> {
    let topo = Topology::start_free(None)?;
    let agent = HostAgent::start(&topo)?;
    topo.postgres_primary().write_rows(100)?;
    ok("kill", agent.act("khartoum-postgres", "kill", None)?);
    std::thread::sleep(Duration::from_secs(3));
    ok("start", agent.act("khartoum-postgres", "start", None)?);
    let standby = topo.postgres_standby();
    let r = niledr_tests::wait_until(Instant::now() + Duration::from_secs(60), || {
        Ok(standby.streaming_from()?.is_some())
    });
    if r.is_err() {
        println!("STANDBY LOG:\n{}", standby.log_tail(40));
        println!("PRIMARY LOG:\n{}", topo.postgres_primary().log_tail(20));
    }
    r
}
