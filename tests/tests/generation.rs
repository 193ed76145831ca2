//! The fencing generation as a real token, against real servers: a DNS cutover, a
//! connection-string file swap and a PgBouncer swap from an execution holding an older
//! generation are refused (naming both) and change nothing; the same generation again
//! succeeds. And the readiness probes run before the point of no return: TSIG accepted
//! (without changing the zone), connection-string file and PgBouncer ready.

// A failed step should fail the test loudly; the workspace's unwrap lint targets library code.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use niledr_orchestrator::actions::dns::{self, StaleGeneration, TsigKey};
use niledr_orchestrator::actions::{connstr, pgbouncer as pgb};
use niledr_tests::{Site, Topology, ZONE, wait_until};

const GENERATION_RECORD: &str = "_niledr-generation.nilecare.sd.";

fn start() -> Topology {
    let topo = Topology::start_free(None).unwrap();
    eprintln!("topology started in {:?}", topo.started_in());
    topo
}

/// The refusal is a `StaleGeneration` naming both generations and the place.
fn assert_stale(e: &anyhow::Error, held: u64, found: u64, place: &str) {
    let text = format!("{e:#}");
    let stale = e
        .downcast_ref::<StaleGeneration>()
        .unwrap_or_else(|| panic!("not a StaleGeneration: {text}"));
    assert_eq!((stale.held, stale.found), (held, found), "{text}");
    assert!(
        text.contains(&format!(
            "generation {held} is older than generation {found}"
        )),
        "{text}"
    );
    assert!(text.contains(place), "{text}");
    eprintln!("refused: {text}");
}

fn soa_serial(topo: &Topology, server: SocketAddr) -> u64 {
    let soa = topo.dns().dig("SOA", ZONE, server).unwrap();
    soa.first()
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("SOA of {ZONE} at {server}: {soa:?}"))
}

/// Every authoritative server answers `want` for `name` and `generation` in the TXT record.
fn assert_everywhere(topo: &Topology, name: &str, want: Ipv4Addr, generation: u64) {
    let quoted = format!("\"{generation}\"");
    wait_until(Instant::now() + Duration::from_secs(30), || {
        Ok(topo.dns_servers().iter().all(|&s| {
            topo.dns().dig("TXT", GENERATION_RECORD, s).ok() == Some(vec![quoted.clone()])
                && topo.dig_a(name, s).ok() == Some(vec![want])
        }))
    })
    .unwrap();
    for s in topo.dns_servers() {
        assert_eq!(topo.dig_a(name, s).unwrap(), vec![want], "server {s}");
        assert_eq!(
            topo.dns().dig("TXT", GENERATION_RECORD, s).unwrap(),
            vec![quoted.clone()],
            "server {s}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_cutover_is_fenced_by_the_generation_and_tsig_is_proved_without_change() {
    let topo = start();
    let layout = topo.layout().clone();
    let (khartoum, port_sudan, dr_cold) = (
        layout.ip(Site::Khartoum),
        layout.ip(Site::PortSudan),
        layout.dr_cold,
    );
    let primary = topo.dns_servers()[0];
    let key = dns::load_key(&topo.tsig_key_file()).unwrap();
    let (db, cache) = (format!("db.{ZONE}"), format!("cache.{ZONE}"));

    // Readiness: the key is proved with a signed update that cannot apply.
    let serial = soa_serial(&topo, primary);
    let proof = dns::prove_tsig(primary, ZONE, &key).await.unwrap();
    eprintln!("prove_tsig: {proof}");
    let wrong = TsigKey {
        secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        ..key.clone()
    };
    let e = dns::prove_tsig(primary, ZONE, &wrong).await.unwrap_err();
    assert!(
        format!("{e:#}").contains(&format!("TSIG authentication failed at {primary}")),
        "{e:#}"
    );
    eprintln!("prove_tsig, wrong key: {e:#}");
    assert_eq!(
        soa_serial(&topo, primary),
        serial,
        "the probe changed the zone"
    );
    assert_eq!(dns::query_generation(primary, ZONE).await.unwrap(), None);

    // Generation 8 cuts over first; the stale generation 7 comes second.
    let c8 = dns::cutover(
        primary,
        ZONE,
        &db,
        &[khartoum],
        &[port_sudan],
        30,
        &key,
        Some(8),
    )
    .await
    .unwrap();
    assert!(!c8.already_done, "{c8:?}");
    assert_eq!((c8.generation_before, c8.generation), (None, Some(8)));
    let serial = soa_serial(&topo, primary);
    for (from, to) in [(khartoum, dr_cold), (port_sudan, khartoum)] {
        // The second is generation 7 cutting back: its A-record prerequisite would hold.
        let e = dns::cutover(primary, ZONE, &db, &[from], &[to], 30, &key, Some(7))
            .await
            .unwrap_err();
        assert_stale(&e, 7, 8, GENERATION_RECORD);
    }
    assert_eq!(
        soa_serial(&topo, primary),
        serial,
        "a stale cutover sent an update"
    );
    assert_everywhere(&topo, &db, port_sudan, 8);

    // The same generation again (retry, in-doubt step) is a no-op; a second name of the same
    // execution cuts over under the same generation.
    let again = dns::cutover(
        primary,
        ZONE,
        &db,
        &[khartoum],
        &[port_sudan],
        30,
        &key,
        Some(8),
    )
    .await
    .unwrap();
    assert!(again.already_done, "{again:?}");
    assert_eq!(
        soa_serial(&topo, primary),
        serial,
        "the retry sent an update"
    );
    let c = dns::cutover(
        primary,
        ZONE,
        &cache,
        &[khartoum],
        &[port_sudan],
        30,
        &key,
        Some(8),
    )
    .await
    .unwrap();
    assert!(!c.already_done);
    assert_eq!((c.generation_before, c.generation), (Some(8), Some(8)));
    assert_everywhere(&topo, &cache, port_sudan, 8);

    // A newer execution whose A record is already right still raises the generation, so the
    // older one can no longer cut back.
    let c9 = dns::cutover(
        primary,
        ZONE,
        &db,
        &[khartoum],
        &[port_sudan],
        30,
        &key,
        Some(9),
    )
    .await
    .unwrap();
    assert!(c9.already_done, "{c9:?}");
    assert_eq!((c9.generation_before, c9.generation), (Some(8), Some(9)));
    let e = dns::cutover(
        primary,
        ZONE,
        &db,
        &[port_sudan],
        &[khartoum],
        60,
        &key,
        Some(8),
    )
    .await
    .unwrap_err();
    assert_stale(&e, 8, 9, GENERATION_RECORD);
    assert_everywhere(&topo, &db, port_sudan, 9);

    // Its rollback (cut back before the point of no return) runs under its own generation.
    let back = dns::cutover(
        primary,
        ZONE,
        &db,
        &[port_sudan],
        &[khartoum],
        60,
        &key,
        Some(9),
    )
    .await
    .unwrap();
    assert!(!back.already_done);
    assert_everywhere(&topo, &db, khartoum, 9);

    // The A record is not what this execution expected: the server refuses the whole
    // message (A and TXT), and says what it holds.
    let e = dns::cutover(
        primary,
        ZONE,
        &db,
        &[dr_cold],
        &[port_sudan],
        30,
        &key,
        Some(9),
    )
    .await
    .unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("compare-and-swap refused"), "{text}");
    assert!(
        text.contains("the generation record holds 9, expected 9"),
        "{text}"
    );
    eprintln!("A record changed: {text}");
    assert_everywhere(&topo, &db, khartoum, 9);

    // A generation record someone else changed to garbage is an error, not "no generation".
    topo.knsupdate(&format!(
        "update delete {GENERATION_RECORD} TXT\nupdate add {GENERATION_RECORD} 60 TXT \"oops\""
    ))
    .unwrap();
    let e = dns::cutover(
        primary,
        ZONE,
        &db,
        &[khartoum],
        &[port_sudan],
        30,
        &key,
        Some(10),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("not a generation number"),
        "{e:#}"
    );
    assert_eq!(topo.dig_a(&db, primary).unwrap(), vec![khartoum]);
}

const OLD: &str = "DATABASE_URL=postgresql://app@127.0.1.1:5432/nilecare\n";
const NEW: &str = "DATABASE_URL=postgresql://app@127.0.2.1:5432/nilecare\n";
const COLD: &str = "DATABASE_URL=postgresql://app@127.0.3.1:5432/nilecare\n";

#[tokio::test]
async fn connstr_file_swap_is_fenced_by_the_generation_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nilecare-db.env");
    fs::write(&path, OLD).unwrap();
    let shown = path.display().to_string();
    eprintln!("ready: {}", connstr::ready_file(&path).await.unwrap());

    let s = connstr::swap_file(&path, OLD, NEW, None, Some(8))
        .await
        .unwrap();
    assert!(!s.already_done);
    let swapped = fs::read_to_string(&path).unwrap();
    assert_eq!(swapped, format!("# niledr-generation: 8\n{NEW}"));
    assert_eq!(fs::read_to_string(&s.previous).unwrap(), OLD);

    // Generation 7, too late: neither its swap nor its rollback touches the file.
    let e = connstr::swap_file(&path, NEW, COLD, None, Some(7))
        .await
        .unwrap_err();
    assert_stale(&e, 7, 8, &shown);
    let e = connstr::rollback_file(&path, NEW, None, Some(7))
        .await
        .unwrap_err();
    assert_stale(&e, 7, 8, &shown);
    assert_eq!(fs::read(&path).unwrap(), swapped.as_bytes());

    // The same generation again: done, nothing written.
    let again = connstr::swap_file(&path, OLD, NEW, None, Some(8))
        .await
        .unwrap();
    assert!(again.already_done);
    assert_eq!(fs::read(&path).unwrap(), swapped.as_bytes());

    // The engine passes the whole current file as the expected old value: the line is ignored
    // in the comparison, and the swap writes the execution's generation where it was.
    let s9 = connstr::swap_file(&path, &swapped, COLD, None, Some(9))
        .await
        .unwrap();
    assert!(!s9.already_done);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("# niledr-generation: 9\n{COLD}")
    );
    let r = connstr::rollback_file(&path, COLD, None, Some(9))
        .await
        .unwrap();
    assert!(!r.already_done);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("# niledr-generation: 9\n{NEW}")
    );
}

#[tokio::test]
async fn connstr_ready_file_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.env");
    let e = connstr::ready_file(&missing).await.unwrap_err();
    assert!(format!("{e:#}").contains(&format!("{}: does not exist", missing.display())));

    let path = dir.path().join("db.env");
    fs::write(&path, OLD).unwrap();
    let chmod = |p: &Path, mode| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    chmod(&path, 0o444);
    let e = connstr::ready_file(&path).await.unwrap_err();
    assert!(format!("{e:#}").contains("read-only (mode 0444)"), "{e:#}");
    eprintln!("read-only file: {e:#}");
    chmod(&path, 0o640);
    connstr::ready_file(&path).await.unwrap();

    chmod(dir.path(), 0o555);
    let e = connstr::ready_file(&path).await.unwrap_err();
    chmod(dir.path(), 0o755);
    let text = format!("{e:#}");
    assert!(
        text.contains(&path.display().to_string()) && text.contains("read-only"),
        "{text}"
    );
    eprintln!("read-only directory: {text}");

    let link = dir.path().join("link.env");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let e = connstr::ready_file(&link).await.unwrap_err();
    assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
    let json = dir.path().join("db.json");
    fs::write(&json, "{}").unwrap();
    let e = connstr::ready_file(&json).await.unwrap_err();
    assert!(format!("{e:#}").contains("JSON has no comments"), "{e:#}");
    fs::write(&path, format!("# niledr-generation: soon\n{OLD}")).unwrap();
    let e = connstr::ready_file(&path).await.unwrap_err();
    assert!(format!("{e:#}").contains("does not hold a number"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_swap_is_fenced_by_the_generation_line_and_ready_checks_the_entry() {
    let topo = start();
    let layout = topo.layout().clone();
    let bouncer = topo.pgbouncer();
    let admin = pgb::PgBouncerAdmin {
        host: bouncer.address().ip().to_string(),
        port: bouncer.address().port(),
        user: bouncer.admin_user().to_string(),
        password: bouncer.password().to_string(),
    };
    let (ini, db) = (bouncer.ini_file().to_path_buf(), bouncer.database());
    let entry = |site| {
        let a = layout.postgres(site).unwrap();
        format!("host={} port={} dbname=postgres", a.ip(), a.port())
    };
    let (old, new) = (entry(Site::Khartoum), entry(Site::PortSudan));
    let cold = "host=127.0.3.1 port=5432 dbname=postgres";

    eprintln!("ready: {}", pgb::ready(&ini, db, &admin).await.unwrap());
    let e = pgb::ready(&ini, "no_such_db", &admin).await.unwrap_err();
    assert!(format!("{e:#}").contains("\"no_such_db\""), "{e:#}");
    eprintln!("ready, wrong database: {e:#}");
    // In the ini but not in PgBouncer (never reloaded): not ready either.
    let original = fs::read_to_string(&ini).unwrap();
    let edited = original.replacen(
        "[databases]\n",
        "[databases]\nunloaded = host=127.0.3.1\n",
        1,
    );
    fs::write(&ini, &edited).unwrap();
    let e = pgb::ready(&ini, "unloaded", &admin).await.unwrap_err();
    fs::write(&ini, &original).unwrap();
    assert!(
        format!("{e:#}").contains("SHOW DATABASES does not list \"unloaded\""),
        "{e:#}"
    );
    eprintln!("ready, not reloaded: {e:#}");

    let s = pgb::swap(&ini, db, &old, &new, &admin, Some(8))
        .await
        .unwrap();
    assert!(!s.already_done);
    let swapped = fs::read_to_string(&ini).unwrap();
    // PgBouncer took the `;` comment line: RELOAD worked and it serves the new entry.
    assert!(
        swapped.starts_with("; niledr-generation: 8\n[databases]\n"),
        "{swapped}"
    );
    let port = layout.postgres(Site::PortSudan).unwrap().port();
    assert_eq!(s.shown.port, i32::from(port));

    let shown = ini.display().to_string();
    let e = pgb::swap(&ini, db, &new, cold, &admin, Some(7))
        .await
        .unwrap_err();
    assert_stale(&e, 7, 8, &shown);
    let e = pgb::rollback(&ini, db, &new, &admin, Some(7))
        .await
        .unwrap_err();
    assert_stale(&e, 7, 8, &shown);
    assert_eq!(fs::read(&ini).unwrap(), swapped.as_bytes());
    let still = pgb::show_database(&admin, db).await.unwrap().unwrap();
    assert_eq!(still.port, i32::from(port));

    let again = pgb::swap(&ini, db, &old, &new, &admin, Some(8))
        .await
        .unwrap();
    assert!(again.already_done);
    assert_eq!(fs::read(&ini).unwrap(), swapped.as_bytes());

    let r = pgb::rollback(&ini, db, &new, &admin, Some(8))
        .await
        .unwrap();
    assert!(!r.already_done);
    assert_eq!(
        pgb::read_entry(&ini, db).unwrap().as_deref(),
        Some(old.as_str())
    );
    assert!(
        fs::read_to_string(&ini)
            .unwrap()
            .starts_with("; niledr-generation: 8\n")
    );
    pgb::ready(&ini, db, &admin).await.unwrap();
}
