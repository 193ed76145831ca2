//! Never two writable primaries, no gate that passes without checking: each test tries to
//! break one promise against the real servers, through the real `niledr` binary —
//! nothing irreversible before everything is ready, the point of no return (a failure or a
//! cancel after the promotion never makes Khartoum writable again; `retry` rolls forward),
//! a fence an application cannot escape, a fence that does not pretend when it cannot reach
//! the old primary, verification that only observes, and a panicking step.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use niledr_orchestrator::actions::postgres::{self as pg, FenceOutcome, PgTarget};
use niledr_tests::scenario::{self, World, start_with};
use niledr_tests::{APP_USER, Site, ZONE, wait_until};
use serde_json::{Value, json};

const FAILOVER: &str = "failover-khartoum-to-port-sudan";
/// ERROR lines these tests cause on purpose.
const ALLOWED: &[&str] = &[
    "NEEDS AN OPERATOR",
    "task ended abnormally",
    "failpoint",
    "could not fence the returning old primary",
];

fn finish(w: World) -> Result<()> {
    scenario::finish(w, ALLOWED)
}

fn execution(w: &World, id: &str) -> Value {
    scenario::execution(w, id).unwrap()
}

fn step<'a>(ex: &'a Value, id: &str) -> &'a Value {
    let s = scenario::step(ex, id);
    assert!(!s.is_null(), "no step {id} in {ex:#}");
    s
}

/// Khartoum refuses every write an application can attempt: its role cannot log in, and
/// the escapes of a read-only default (`SET ... = off`, `BEGIN READ WRITE`) get nowhere.
fn assert_khartoum_fenced(w: &World) {
    let k = w.topo.postgres_primary();
    for sql in [
        "CREATE TABLE IF NOT EXISTS fence_escape(x int); INSERT INTO fence_escape VALUES (1)",
        "SET default_transaction_read_only = off; CREATE TABLE IF NOT EXISTS fence_escape(x int); INSERT INTO fence_escape VALUES (2)",
        "BEGIN READ WRITE; CREATE TABLE IF NOT EXISTS fence_escape(x int); INSERT INTO fence_escape VALUES (3); COMMIT",
    ] {
        let e = k.psql_app(sql).unwrap_err();
        assert!(
            format!("{e:#}").contains("not permitted to log in"),
            "{APP_USER} must not get in: {e:#}"
        );
    }
    assert_eq!(k.psql("SHOW default_transaction_read_only").unwrap(), "on");
    assert_eq!(
        k.psql("SELECT count(*) FROM pg_class WHERE relname = 'fence_escape'")
            .unwrap(),
        "0",
        "no escape committed anything"
    );
}

fn answers(w: &World, name: &str) -> Vec<Vec<std::net::Ipv4Addr>> {
    scenario::answers(w, name).unwrap()
}

/// Nothing points at Khartoum's database any more (connection strings), and Khartoum's data
/// stores were never made writable again.
fn assert_nothing_points_back(w: &World) {
    let khartoum = w.topo.layout().postgres(Site::Khartoum).unwrap();
    let env = std::fs::read_to_string(w.topo.base_dir().join("app/database.env")).unwrap();
    assert!(!env.contains(&format!("@{khartoum}")), "{env}");
    let shown = w.topo.pgbouncer().admin("SHOW DATABASES").unwrap();
    let line = shown
        .lines()
        .find(|l| l.starts_with("nilecare|"))
        .unwrap()
        .to_string();
    assert!(!line.contains(&khartoum.ip().to_string()), "{line}");
}

#[test]
fn the_fence_holds_against_application_escapes_and_its_undo_is_exact() -> Result<()> {
    let w = scenario::start()?;
    let k = w.topo.postgres_primary();
    k.psql("CREATE ROLE reports NOLOGIN; CREATE TABLE escape(x int); GRANT ALL ON escape TO app")?;
    let admin = PgTarget::new(
        k.address().ip().to_string(),
        k.address().port(),
        "niledr",
        k.password(),
    );
    let app = PgTarget::new(
        k.address().ip().to_string(),
        k.address().port(),
        APP_USER,
        k.password(),
    );
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // A session the application opened before the fence.
        let mut open = app.connect().await.unwrap();
        sqlx::raw_sql("INSERT INTO escape VALUES (0)")
            .execute(&mut open)
            .await
            .unwrap();
        let fenced = pg::fence(&admin).await.unwrap();
        eprintln!("FENCE {}", fenced.summary());
        let FenceOutcome::Fenced { roles, .. } = &fenced else {
            panic!("{fenced:?}")
        };
        assert_eq!(roles, &vec![APP_USER.to_string()], "only the login role");
        // The open session is gone, whatever it tries.
        let escaped = sqlx::raw_sql(
            "SET default_transaction_read_only = off; BEGIN READ WRITE; INSERT INTO escape VALUES (1); COMMIT",
        )
        .execute(&mut open)
        .await;
        assert!(escaped.is_err(), "the pre-fence session must be terminated");
        // A new session cannot even log in.
        let e = app.connect().await.unwrap_err();
        assert!(format!("{e:#}").contains("not permitted to log in"), "{e:#}");
    });
    assert_khartoum_fenced(&w);
    assert_eq!(
        k.psql("SELECT count(*) FROM escape")?,
        "1",
        "only the pre-fence row"
    );
    // Idempotent, then the exact undo: login back for `app`, `reports` stays NOLOGIN.
    rt.block_on(async {
        pg::fence(&admin).await.unwrap();
        let u = pg::unfence(&admin).await.unwrap();
        assert_eq!(u.roles, vec![APP_USER.to_string()]);
    });
    assert_eq!(
        k.psql("SELECT rolname || '=' || rolcanlogin FROM pg_roles WHERE rolname IN ('app', 'reports') ORDER BY 1")?,
        "app=true\nreports=false"
    );
    k.psql_app("INSERT INTO escape VALUES (4)")?;
    assert_eq!(k.psql("SHOW default_transaction_read_only")?, "off");
    finish(w)
}

#[test]
fn a_missing_connection_string_file_stops_the_failover_before_anything_is_touched() -> Result<()> {
    let w = scenario::start()?;
    let env = w.topo.base_dir().join("app/database.env");
    std::fs::remove_file(&env)?;
    // check-config accepts the file (it may be created later) but warns about it.
    let out =
        niledr_tests::daemon::niledr_command(&["check-config", w.niledr.config.to_str().unwrap()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: [connstr.app-env]") && stderr.contains("does not exist"),
        "{stderr}"
    );
    let (status, plan) = w.niledr.get(&format!("/api/v1/runbooks/{FAILOVER}/plan"))?;
    assert_eq!(status, 200);
    assert_eq!(plan["ready"], false, "{:#}", plan["readiness"]);
    let not_ready: Vec<&Value> = plan["readiness"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ready"] == false)
        .collect();
    assert_eq!(not_ready.len(), 1, "{not_ready:#?}");
    assert_eq!(not_ready[0]["step"], "swap-app-env");
    assert!(
        not_ready[0]["why"]
            .as_str()
            .unwrap()
            .contains("database.env"),
        "{not_ready:#?}"
    );
    assert_eq!(plan["point_of_no_return"], "promote-port-sudan-pg");
    let cli = niledr_tests::cli_helpers::niledr_cli(
        &w.niledr.url(),
        Some(&w.people.viewer),
        &["plan", FAILOVER],
    )?;
    let text = cli.stdout;
    assert!(
        text.contains("Ready: NO") && text.contains("NOT READY swap-app-env"),
        "{text}"
    );
    assert!(text.contains("POINT OF NO RETURN"), "{text}");

    let id = scenario::propose_and_approve(&w, FAILOVER)?;
    let done = w
        .niledr
        .wait_execution(&id, Duration::from_secs(30), &["failed", "succeeded"])?;
    assert_eq!(done["state"], "failed", "{done:#}");
    let why = done["timeline"].to_string();
    assert!(
        why.contains("swap-app-env") && why.contains("database.env"),
        "{why}"
    );
    for s in done["steps"].as_array().unwrap() {
        assert_eq!(s["state"], "pending", "nothing ran: {s:#}");
    }
    // The world, read directly: Khartoum never fenced and writable, nothing promoted.
    let k = w.topo.postgres_primary();
    assert_eq!(k.psql("SHOW default_transaction_read_only")?, "off");
    k.psql_app("CREATE TABLE still_writable(x int); INSERT INTO still_writable VALUES (1)")?;
    assert!(w.topo.postgres_standby().is_in_recovery()?);
    assert_eq!(
        w.topo
            .redis_replica()
            .info_field("replication", "role")?
            .as_deref(),
        Some("slave")
    );
    let khartoum = w.topo.layout().ip(Site::Khartoum);
    for a in answers(&w, &format!("db.{ZONE}")) {
        assert_eq!(a, vec![khartoum]);
    }
    finish(w)
}

#[test]
fn a_dns_outage_after_the_promotion_stops_for_an_operator_and_retry_rolls_forward() -> Result<()> {
    let w = start_with(
        |_, t| Ok(t),
        &[
            ("NILEDR_FAILPOINTS", "delay:cutover-db"),
            ("NILEDR_FAILPOINT_DELAY_MS", "2000"),
        ],
    )?;
    // Khartoum killed, cutover-db held by the failpoint; both authoritative DNS servers stop
    // while it waits: the step fails for real after the promotion.
    let id = scenario::fail_over_until_step_runs(&w, FAILOVER, "cutover-db")?;
    scenario::stop_dns(&w)?;
    let stuck = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["needs_operator", "failed", "succeeded", "rolled_back"],
    )?;
    assert_eq!(stuck["state"], "needs_operator", "{stuck:#}");
    let needs = stuck["needs_operator"].as_str().unwrap();
    assert!(
        needs.contains(&format!("niledr retry {id} cutover-db")) && needs.contains("failback"),
        "{needs}"
    );
    assert_eq!(step(&stuck, "cutover-db")["state"], "failed");
    for s in ["fence-khartoum-pg", "swap-app-env", "swap-pgbouncer"] {
        assert_eq!(
            step(&stuck, s)["state"],
            "succeeded",
            "never rolled back: {s}"
        );
    }
    // The old primary comes back: it is fenced, and nothing points at it.
    w.topo.postgres_primary().restart()?;
    wait_until(Instant::now() + Duration::from_secs(30), || {
        Ok(w.topo
            .postgres_primary()
            .psql("SHOW default_transaction_read_only")
            .is_ok_and(|v| v == "on"))
    })?;
    assert_khartoum_fenced(&w);
    assert_nothing_points_back(&w);
    assert!(!w.topo.postgres_standby().is_in_recovery()?);

    // DNS back; the operator rolls forward.
    for s in w.topo.dns().servers() {
        s.component().start()?;
    }
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id}/retry"),
        Some(&w.people.operator),
        &json!({ "step": "cutover-db", "comment": "DNS servers are back" }),
    )?;
    assert_eq!(status, 200, "{body:#}");
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["succeeded", "needs_operator", "failed"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let port_sudan = w.topo.layout().ip(Site::PortSudan);
    for name in ["db", "cache", "api"] {
        for a in answers(&w, &format!("{name}.{ZONE}")) {
            assert_eq!(a, vec![port_sudan], "{name}");
        }
    }
    assert_khartoum_fenced(&w);
    finish(w)
}

#[test]
fn a_cancel_after_the_promotion_keeps_khartoum_fenced() -> Result<()> {
    // Khartoum stays alive: the fence reaches it, and must hold through the cancel.
    let w = start_with(
        |_, t| Ok(t),
        &[
            ("NILEDR_FAILPOINTS", "delay:swap-app-env"),
            ("NILEDR_FAILPOINT_DELAY_MS", "2000"),
        ],
    )?;
    let id = scenario::propose_and_approve(&w, FAILOVER)?;
    scenario::wait_step(&w, &id, "swap-app-env", "running", Duration::from_secs(30))?;
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id}/cancel"),
        Some(&w.people.operator),
        &json!({ "comment": "changed my mind" }),
    )?;
    assert_eq!(status, 200, "{body:#}");
    let stuck = w.niledr.wait_execution(
        &id,
        Duration::from_secs(30),
        &["needs_operator", "rolled_back", "cancelled", "failed"],
    )?;
    assert_eq!(stuck["state"], "needs_operator", "{stuck:#}");
    assert_eq!(step(&stuck, "fence-khartoum-pg")["state"], "succeeded");
    assert_khartoum_fenced(&w);
    assert!(!w.topo.postgres_standby().is_in_recovery()?);
    // The fence's catalog change (login taken from the app role) replicated to Port Sudan
    // before the promotion; the new primary gave it back: the application works there.
    w.topo
        .postgres_standby()
        .psql_app("CREATE TABLE IF NOT EXISTS after_promotion (id int); INSERT INTO after_promotion VALUES (1)")
        .context("the application writes on the new primary")?;
    assert!(
        step(&stuck, "promote-port-sudan-pg")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("login given back to [app]")),
        "{stuck:#}"
    );
    // Closing it undoes nothing either.
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id}/cancel"),
        Some(&w.people.operator),
        &json!({ "comment": "closing; failback planned" }),
    )?;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["state"], "failed", "{body:#}");
    assert!(
        body["needs_operator"]
            .as_str()
            .unwrap()
            .contains("nothing was undone")
    );
    assert_khartoum_fenced(&w);
    // Khartoum Redis was fenced and now follows Port Sudan: it takes no writes either.
    assert_eq!(
        w.topo
            .redis_primary()
            .info_field("replication", "role")?
            .as_deref(),
        Some("slave")
    );
    finish(w)
}

#[test]
fn an_unreachable_old_primary_whose_standby_still_streams_is_not_promoted_over() -> Result<()> {
    let w = scenario::start()?;
    // Only niledr is cut off from Khartoum: its role is rejected there, while the standby's
    // replication connection (pg_hba `replication` lines) and the applications go on.
    let k = w.topo.postgres_primary();
    let hba = k.data_dir().join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba)?;
    std::fs::write(&hba, format!("host all niledr 127.0.0.0/8 reject\n{text}"))?;
    k.psql_app("SELECT 1")?;
    // niledr's probe keeps its session between runs: end it, so it must reconnect.
    k.psql(
        "SELECT pg_reload_conf(); SELECT pg_sleep(0.2); SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE usename = 'niledr' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )?;
    w.niledr
        .wait_service("khartoum-postgres", Duration::from_secs(20), |s| {
            s["status"] == "down"
        })?;
    let id = scenario::propose_and_approve(&w, FAILOVER)?;
    let waiting = scenario::wait_step(
        &w,
        &id,
        "fence-khartoum-pg",
        "waiting_confirmation",
        Duration::from_secs(30),
    )?;
    let detail = step(&waiting, "fence-khartoum-pg")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("NO evidence") && detail.contains("still streams"),
        "{detail}"
    );
    // It holds: a few seconds later nothing was promoted.
    std::thread::sleep(Duration::from_secs(3));
    assert!(w.topo.postgres_standby().is_in_recovery()?);
    assert_eq!(execution(&w, &id)["state"], "running");
    // The operator, who can see Khartoum is alive, cancels: nothing was touched.
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id}/cancel"),
        Some(&w.people.operator),
        &json!({ "comment": "Khartoum is alive; a network problem on niledr's side" }),
    )?;
    assert_eq!(status, 200, "{body:#}");
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(30),
        &["cancelled", "rolled_back", "failed"],
    )?;
    assert_ne!(done["state"], "failed", "{done:#}");
    assert!(w.topo.postgres_standby().is_in_recovery()?);
    k.psql_app("CREATE TABLE still_primary(x int); INSERT INTO still_primary VALUES (1)")?;
    finish(w)
}

/// The shipped failover without its SQL smoke test (which would catch the skipped
/// promotion first): verification at the end is what is under test.
fn without_smoke_test(w: &World) -> Result<()> {
    let file = w.runbooks.join(format!("{FAILOVER}.toml"));
    let text = std::fs::read_to_string(&file)?;
    let cut = text
        .find("[[steps]]\nid = \"smoke-sql\"")
        .context("smoke-sql step")?;
    std::fs::write(&file, &text[..cut])?;
    Ok(())
}

#[test]
fn verification_only_observes_and_never_promotes() -> Result<()> {
    let w = start_with(
        |_, t| Ok(t),
        &[("NILEDR_FAILPOINTS", "skip:promote-port-sudan-pg")],
    )?;
    without_smoke_test(&w)?;
    scenario::kill_primary_after_writes(&w, 100)?;
    let id = scenario::propose_and_approve(&w, FAILOVER)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["needs_operator", "succeeded", "failed"],
    )?;
    assert_eq!(done["state"], "needs_operator", "{done:#}");
    let why = done["needs_operator"].as_str().unwrap();
    assert!(
        why.contains("still in recovery") && why.contains("retry"),
        "{why}"
    );
    assert!(
        w.topo.postgres_standby().is_in_recovery()?,
        "verification must not promote the standby"
    );
    finish(w)
}

#[test]
fn a_panicking_step_stops_for_an_operator() -> Result<()> {
    let w = start_with(
        |_, t| Ok(t),
        &[("NILEDR_FAILPOINTS", "panic:swap-pgbouncer")],
    )?;
    scenario::kill_primary_after_writes(&w, 100)?;
    let id = scenario::propose_and_approve(&w, FAILOVER)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(60),
        &["needs_operator", "succeeded", "failed", "rolled_back"],
    )?;
    assert_eq!(done["state"], "needs_operator", "{done:#}");
    assert_eq!(step(&done, "swap-pgbouncer")["state"], "crashed");
    assert!(
        done["needs_operator"]
            .as_str()
            .unwrap()
            .contains("ended abnormally")
    );
    finish(w)
}
