//! The drills' canary writer and RTO/RPO measurement against a real topology, with failover
//! driven directly (harness + the orchestrator's actions, no daemon):
//!
//! - lag: the standby's WAL receiver is stopped, so acknowledged commits never reach it; the
//!   khartoum site dies (PostgreSQL and Redis killed at T0), port-sudan is promoted and the
//!   names cut over. The measured lost count must equal the test's own count (acknowledged
//!   seqs minus rows on the new primary, read with psql), RPO > 0, RTO measured.
//! - clean: streaming kept (synchronous: asynchronous streaming may lose the last commits
//!   acknowledged before a kill -9), kill + promote + cutover: no acknowledged PostgreSQL
//!   write lost.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use niledr_drills::canary::{
    Canary, CanaryConfig, CanaryHandle, CanaryLog, PgCanary, Ports, RedisCanary, Store,
};
use niledr_drills::measure::{self, Measurement, PgSource, RedisSource, StoreMeasurement};
use niledr_orchestrator::actions::{dns, postgres, redis};
use niledr_tests::postgres::PG_USER;
use niledr_tests::{Postgres, Redis, Resp, Site, Topology, ZONE, wait_until};
use tokio::runtime::Runtime;

const TABLE: &str = "canary_drill";
const PREFIX: &str = "canary:";

fn runtime() -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn config(topo: &Topology) -> Result<CanaryConfig> {
    let l = topo.layout();
    let mut pg_ports = BTreeMap::new();
    let mut redis_ports = BTreeMap::new();
    for site in [Site::Khartoum, Site::PortSudan] {
        pg_ports.insert(l.ip(site), l.postgres(site)?.port());
        redis_ports.insert(l.ip(site), l.redis(site)?.port());
    }
    let mut c = CanaryConfig::new(topo.dns_servers());
    c.postgres = Some(PgCanary {
        name: format!("db.{ZONE}"),
        ports: Ports {
            default: 5432,
            by_address: pg_ports,
        },
        user: PG_USER.into(),
        password: topo.postgres_primary().password().into(),
        database: "postgres".into(),
        table: TABLE.into(),
    });
    c.redis = Some(RedisCanary {
        name: format!("cache.{ZONE}"),
        ports: Ports {
            default: 6379,
            by_address: redis_ports,
        },
        password: Some(topo.redis_primary().password().into()),
        key_prefix: PREFIX.into(),
    });
    Ok(c)
}

fn pg_target(pg: &Postgres) -> postgres::PgTarget {
    let a = pg.address();
    postgres::PgTarget::new(a.ip().to_string(), a.port(), PG_USER, pg.password())
}

fn pg_source(pg: &Postgres) -> PgSource {
    let a = pg.address();
    PgSource {
        host: a.ip().to_string(),
        port: a.port(),
        user: PG_USER.into(),
        password: pg.password().into(),
        database: "postgres".into(),
        table: TABLE.into(),
    }
}

fn redis_source(r: &Redis) -> RedisSource {
    RedisSource {
        address: r.address(),
        password: Some(r.password().into()),
        key_prefix: PREFIX.into(),
    }
}

fn wait_acked(canary: &CanaryHandle, store: Store, at_least: u64, what: &str) -> Result<()> {
    wait_until(Instant::now() + Duration::from_secs(30), || {
        Ok(canary.acked(store) >= at_least)
    })
    .with_context(|| {
        format!(
            "{what}: {store} canary stuck at {} acknowledged writes",
            canary.acked(store)
        )
    })
}

/// Start the canary and let it run until both stores have acknowledged writes.
fn start_canary(rt: &Runtime, topo: &Topology) -> Result<CanaryHandle> {
    let cfg = config(topo)?;
    let canary = rt.block_on(async { Canary::start(cfg) })?;
    wait_acked(&canary, Store::Postgres, 200, "start")?;
    wait_acked(&canary, Store::Redis, 200, "start")?;
    Ok(canary)
}

/// Promote port-sudan's PostgreSQL and point `db` at it (TTL 1 s).
async fn fail_over_postgres(topo: &Topology) -> Result<()> {
    let l = topo.layout();
    let key = dns::load_key(&topo.tsig_key_file())?;
    let p = postgres::promote(&pg_target(topo.postgres_standby()), Duration::from_secs(30)).await?;
    println!("  {}", p.summary());
    let (k, ps) = (l.ip(Site::Khartoum), l.ip(Site::PortSudan));
    dns::cutover(
        topo.dns_servers()[0],
        ZONE,
        &format!("db.{ZONE}"),
        &[k],
        &[ps],
        1,
        &key,
        None,
    )
    .await?;
    Ok(())
}

async fn fail_over_redis(topo: &Topology) -> Result<()> {
    let l = topo.layout();
    let key = dns::load_key(&topo.tsig_key_file())?;
    let r = topo.redis_replica();
    let target = redis::RedisTarget::new(
        r.address().ip().to_string(),
        r.address().port(),
        Some(r.password().into()),
    );
    redis::promote(&target).await?;
    let (k, ps) = (l.ip(Site::Khartoum), l.ip(Site::PortSudan));
    dns::cutover(
        topo.dns_servers()[0],
        ZONE,
        &format!("cache.{ZONE}"),
        &[k],
        &[ps],
        1,
        &key,
        None,
    )
    .await?;
    Ok(())
}

/// The test's own view: seqs on `pg`, read with psql.
fn psql_seqs(pg: &Postgres) -> Result<BTreeSet<i64>> {
    pg.psql(&format!("SELECT seq FROM {TABLE}"))?
        .lines()
        .map(|l| l.parse::<i64>().with_context(|| format!("seq {l:?}")))
        .collect()
}

/// The test's own view of Redis: `KEYS canary:*` through the harness client.
fn redis_seqs(r: &Redis) -> Result<BTreeSet<i64>> {
    let Resp::Array(Some(items)) = r.redis_cli(&["KEYS", &format!("{PREFIX}*")])? else {
        bail!("KEYS: unexpected reply");
    };
    Ok(items
        .into_iter()
        .filter_map(|i| match i {
            Resp::Bulk(Some(k)) => k.strip_prefix(PREFIX)?.parse().ok(),
            _ => None,
        })
        .collect())
}

/// Acknowledged seqs missing from `present`.
fn own_lost(log: &CanaryLog, store: Store, present: &BTreeSet<i64>) -> u64 {
    log.store(store).map_or(0, |l| {
        l.acks.iter().filter(|a| !present.contains(&a.seq)).count() as u64
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn print(title: &str, m: &Measurement, log: &CanaryLog) {
    println!("{title}");
    println!(
        "  canary: every {:?} per store, timeout {:?}, ran {}",
        m.canary_interval,
        m.canary_timeout,
        ms(m.canary_ran_for)
    );
    for (store, s) in [(Store::Postgres, &m.postgres), (Store::Redis, &m.redis)] {
        let (Some(StoreMeasurement { rto, rpo }), Some(l)) = (s, log.store(store)) else {
            continue;
        };
        println!(
            "  {store}: {} acked / {} attempts, {} failures, {} reconnects",
            l.acks.len(),
            l.attempts,
            l.failure_count,
            l.reconnect_count
        );
        println!(
            "    RTO {} (detection {}, outage seen by clients {}, longest gap {}), recovered on {:?}",
            rto.rto.map_or("-".into(), ms),
            rto.first_failure_after_t0.map_or("-".into(), ms),
            rto.outage_seen.map_or("-".into(), ms),
            rto.longest_gap.map_or("-".into(), |g| ms(g.length)),
            rto.recovered_by.map(|a| a.server)
        );
        if let Some(r) = rpo {
            println!(
                "    RPO {} lost of {} acked on {} (ranges {:?}), window {}{}; last surviving seq {:?}, last lost {:?}",
                r.lost,
                r.acknowledged,
                r.checked_on,
                r.lost_ranges
                    .iter()
                    .map(|x| format!("{}-{}", x.first, x.last))
                    .collect::<Vec<_>>(),
                ms(r.rpo),
                if r.rpo_is_lower_bound {
                    " (lower bound)"
                } else {
                    ""
                },
                r.last_surviving_before_loss.map(|a| a.seq),
                r.last_lost.map(|a| a.seq),
            );
        }
    }
}

fn assert_rto_measured(m: &StoreMeasurement, ps: std::net::Ipv4Addr) {
    let rto = m.rto.rto.expect("service came back while the canary ran");
    assert!(
        rto > Duration::ZERO && rto < Duration::from_secs(60),
        "{rto:?}"
    );
    assert!(m.rto.outage_observed, "the canary saw the outage");
    let by = m.rto.recovered_by.unwrap();
    assert_eq!(by.server.ip(), ps, "recovered through the new primary");
}

#[test]
fn lost_writes_match_own_count_when_wal_never_reached_the_standby() -> Result<()> {
    let topo = Topology::start_free(None)?;
    let rt = runtime()?;
    let ps = topo.layout().ip(Site::PortSudan);
    let (primary, standby) = (topo.postgres_primary(), topo.postgres_standby());
    let canary = start_canary(&rt, &topo)?;

    // Lag: the WAL receiver stopped (so new commits never reach port-sudan), then replay
    // paused. In this order: a paused startup process does not act on the new conninfo.
    standby.psql("ALTER SYSTEM SET primary_conninfo = ''")?;
    standby.psql("SELECT pg_reload_conf()")?;
    wait_until(Instant::now() + Duration::from_secs(20), || {
        Ok(standby.psql("SELECT count(*) FROM pg_stat_wal_receiver")? == "0")
    })
    .context("the standby's WAL receiver did not stop")?;
    standby.pause_replay()?;
    let before = canary.acked(Store::Postgres);
    wait_acked(&canary, Store::Postgres, before + 50, "lag")?;

    // T0: the khartoum site's data stores die.
    let t0 = Instant::now();
    primary.kill()?;
    topo.redis_primary().kill()?;
    rt.block_on(async {
        fail_over_postgres(&topo).await?;
        fail_over_redis(&topo).await
    })?;
    let failed_over = t0.elapsed();
    let (p, r) = (canary.acked(Store::Postgres), canary.acked(Store::Redis));
    wait_acked(&canary, Store::Postgres, p + 100, "after failover")?;
    wait_acked(&canary, Store::Redis, r + 100, "after failover")?;
    let log = rt.block_on(canary.stop());

    let m = rt.block_on(measure::measure(
        &log,
        t0,
        Some(&pg_source(standby)),
        Some(&redis_source(topo.redis_replica())),
    ))?;
    print(
        &format!(
            "lag case (kill at T0, promote + cutover done {} after T0):",
            ms(failed_over)
        ),
        &m,
        &log,
    );

    let pg = m.postgres.as_ref().unwrap();
    let pg_rpo = pg.rpo.as_ref().unwrap();
    let own = own_lost(&log, Store::Postgres, &psql_seqs(standby)?);
    assert!(
        own > 0,
        "the test lost no acknowledged write: the lag did not happen"
    );
    assert_eq!(pg_rpo.lost, own, "measured lost == the test's own count");
    assert!(pg_rpo.rpo > Duration::ZERO);
    assert!(!pg_rpo.rpo_is_lower_bound);
    assert_rto_measured(pg, ps);

    let rd = m.redis.as_ref().unwrap();
    let rd_own = own_lost(&log, Store::Redis, &redis_seqs(topo.redis_replica())?);
    assert_eq!(
        rd.rpo.as_ref().unwrap().lost,
        rd_own,
        "redis: measured == own"
    );
    assert_rto_measured(rd, ps);
    // Serializable as it is (the report wraps it).
    serde_json::to_string(&m)?;
    Ok(())
}

#[test]
fn no_acknowledged_write_lost_when_streaming() -> Result<()> {
    let topo = Topology::start_free(None)?;
    let rt = runtime()?;
    let ps = topo.layout().ip(Site::PortSudan);
    let (primary, standby) = (topo.postgres_primary(), topo.postgres_standby());
    // Asynchronous streaming can lose the last commits acknowledged just before a kill -9
    // (seen: 1 write, 15 ms): "clean" needs every acknowledged commit flushed on the standby.
    primary.psql(&format!(
        "ALTER SYSTEM SET synchronous_standby_names = '\"{}\"'",
        standby.application_name()
    ))?;
    primary.psql("SELECT pg_reload_conf()")?;
    wait_until(Instant::now() + Duration::from_secs(20), || {
        Ok(primary.psql("SELECT sync_state FROM pg_stat_replication")? == "sync")
    })
    .context("port-sudan never became a synchronous standby")?;
    let canary = start_canary(&rt, &topo)?;

    let t0 = Instant::now();
    primary.kill()?;
    rt.block_on(fail_over_postgres(&topo))?;
    let failed_over = t0.elapsed();
    let p = canary.acked(Store::Postgres);
    wait_acked(&canary, Store::Postgres, p + 100, "after failover")?;
    let log = rt.block_on(canary.stop());

    let m = rt.block_on(measure::measure(
        &log,
        t0,
        Some(&pg_source(standby)),
        Some(&redis_source(topo.redis_primary())),
    ))?;
    print(
        &format!(
            "clean case (kill at T0, promote + cutover done {} after T0):",
            ms(failed_over)
        ),
        &m,
        &log,
    );
    let pg = m.postgres.as_ref().unwrap();
    let pg_rpo = pg.rpo.as_ref().unwrap();
    assert_eq!(own_lost(&log, Store::Postgres, &psql_seqs(standby)?), 0);
    assert_eq!(pg_rpo.lost, 0, "{pg_rpo:?}");
    assert_eq!(pg_rpo.rpo, Duration::ZERO);
    assert_rto_measured(pg, ps);
    // Redis was not touched: nothing lost, no outage.
    let rd = m.redis.as_ref().unwrap();
    assert_eq!(rd.rpo.as_ref().unwrap().lost, 0);
    assert!(!rd.rto.outage_observed);
    Ok(())
}

#[test]
fn hung_primary_is_noticed_by_timeout() -> Result<()> {
    let topo = Topology::start_free(None)?;
    let rt = runtime()?;
    let ps = topo.layout().ip(Site::PortSudan);
    let (primary, standby) = (topo.postgres_primary(), topo.postgres_standby());
    let canary = start_canary(&rt, &topo)?;

    // T0: SIGSTOP — connections stay open, nothing answers (the topology SIGCONTs on drop).
    let t0 = Instant::now();
    primary.sigstop()?;
    rt.block_on(fail_over_postgres(&topo))?;
    let failed_over = t0.elapsed();
    let p = canary.acked(Store::Postgres);
    wait_acked(&canary, Store::Postgres, p + 100, "after failover")?;
    let log = rt.block_on(canary.stop());

    let m = rt.block_on(measure::measure(&log, t0, Some(&pg_source(standby)), None))?;
    print(
        &format!(
            "hang case (SIGSTOP at T0, promote + cutover done {} after T0):",
            ms(failed_over)
        ),
        &m,
        &log,
    );
    let pg = m.postgres.as_ref().unwrap();
    let pg_rpo = pg.rpo.as_ref().unwrap();
    assert_eq!(
        pg_rpo.lost,
        own_lost(&log, Store::Postgres, &psql_seqs(standby)?),
        "measured lost == the test's own count"
    );
    assert_rto_measured(pg, ps);
    // Only a timeout can tell a hung server: the first failure comes no later than one
    // write timeout (plus scheduling) after T0.
    let detected = pg.rto.first_failure_after_t0.unwrap();
    assert!(
        detected <= log.timeout + Duration::from_millis(200),
        "{detected:?}"
    );
    assert!(
        log.postgres
            .as_ref()
            .unwrap()
            .failures
            .iter()
            .any(|f| f.error.contains("no answer within")),
        "a timeout was recorded"
    );
    Ok(())
}
