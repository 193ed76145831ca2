//! The topology with each site in its own network namespace: it streams across the bridge,
//! `cut`/`heal` and `isolate`/`rejoin` partition it for real, and the world leaves nothing
//! behind.

// A failed step should fail the test loudly; the workspace's unwrap lint targets library code.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use niledr_tests::util::Captured;
use niledr_tests::{
    Component, Netns, Postgres, Site, Topology, ZONE, process_alive, process_state, wait_until,
};

fn within(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn world() -> (Netns, Topology) {
    let net = Netns::create().expect("creating the network namespaces");
    let topo = Topology::start_in(&net, None).unwrap();
    eprintln!(
        "netns world {} started in {:?}",
        net.suffix(),
        topo.started_in()
    );
    (net, topo)
}

fn reaches(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// `psql` run inside `site`'s namespace against `target`, giving up after 2 s of connecting.
fn psql_from(net: &Netns, site: Site, target: &Postgres, sql: &str) -> Captured {
    let a = target.address();
    let conninfo = format!(
        "host={} port={} user=niledr password={} dbname=postgres connect_timeout=2",
        a.ip(),
        a.port(),
        target.password()
    );
    let psql = niledr_tests::bins::pg_bindir().unwrap().join("psql");
    net.exec(site, psql, &["-X", "-q", "-At", "-d", &conninfo, "-c", sql])
        .unwrap()
}

fn ns_inode(path: &str) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .ino()
}

/// The component's server process (not the nsenter wrapper) is in its site's namespace
/// (DNS: the core one).
fn assert_in_its_namespace(net: &Netns, c: &Component) {
    let pid = c.pid().unwrap();
    let ns = c
        .site()
        .map_or(net.namespaces().core.as_str(), |s| net.ns(s));
    assert_eq!(
        ns_inode(&format!("/proc/{pid}/ns/net")),
        ns_inode(&format!("/run/netns/{ns}")),
        "{} (pid {pid}) is not in {ns}",
        c.name()
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_ne!(
        comm.trim(),
        "nsenter",
        "{}: pid {pid} is the wrapper",
        c.name()
    );
}

/// The standby's upstream as `pg_stat_wal_receiver` shows it while streaming.
fn streams_from(standby: &Postgres) -> Option<String> {
    standby.streaming_from().unwrap()
}

#[test]
fn sites_run_in_their_namespaces_and_stream_across_the_bridge() {
    let (net, topo) = world();
    // Every server process (not a wrapper) is inside its site's namespace, DNS in the core.
    for c in topo.components() {
        assert_in_its_namespace(&net, &c);
    }
    // A restart (the same spec) lands in the namespace again, and stop reached the server.
    let replica = topo.redis_replica();
    let before = replica.pid().unwrap();
    replica.restart().unwrap();
    assert!(
        !process_alive(before),
        "redis replica pid {before} survived its stop"
    );
    assert_in_its_namespace(&net, replica.component());
    let primary = topo.postgres_primary();
    let pid = primary.pid().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("postgres"), "primary's pid runs {exe:?}");
    primary.sigstop().unwrap();
    assert_eq!(
        process_state(pid),
        Some('T'),
        "SIGSTOP missed the postmaster"
    );
    primary.sigcont().unwrap();

    let (khartoum, port_sudan) = (net.ip(Site::Khartoum), net.ip(Site::PortSudan));
    assert_eq!(
        streams_from(topo.postgres_standby()),
        Some(format!("{khartoum}:5432"))
    );
    assert_eq!(
        primary
            .psql("SELECT client_addr FROM pg_stat_replication")
            .unwrap(),
        port_sudan.to_string()
    );
    assert_eq!(
        replica.info_field("replication", "master_host").unwrap(),
        Some(khartoum.to_string())
    );
    for &server in &topo.dns_servers() {
        assert_eq!(
            topo.dig_a(&format!("db.{ZONE}"), server).unwrap(),
            vec![khartoum]
        );
    }
    assert_eq!(topo.pgbouncer().psql("nilecare", "SELECT 1").unwrap(), "1");
    let bodies: Vec<u16> = topo
        .http_endpoints()
        .iter()
        .map(|h| h.health().unwrap().status)
        .collect();
    assert_eq!(bodies, vec![200, 200]);
}

#[test]
fn cut_stops_streaming_and_heal_restores_it() {
    let (net, topo) = world();
    let (primary, standby) = (topo.postgres_primary(), topo.postgres_standby());
    let khartoum = format!("{}:5432", net.ip(Site::Khartoum));
    assert_eq!(streams_from(standby), Some(khartoum.clone()));

    let t0 = Instant::now();
    net.cut(Site::Khartoum, Site::PortSudan).unwrap();
    // wal_receiver_timeout = 5s: the receiver gives up on the silent connection.
    wait_until(within(15), || Ok(streams_from(standby).is_none())).unwrap();
    eprintln!("WAL receiver gone {:?} after the cut", t0.elapsed());
    // Cut from each other, not from anybody else.
    let refused = psql_from(&net, Site::PortSudan, primary, "SELECT 1");
    assert!(!refused.success, "port-sudan still reaches khartoum");
    assert_eq!(primary.psql("SELECT 1").unwrap(), "1");
    assert_eq!(standby.psql("SELECT 1").unwrap(), "1");
    for target in [primary, standby] {
        let out = psql_from(&net, Site::DrCold, target, "SELECT 1");
        assert!(out.success, "dr-cold → {}: {}", target.name(), out.stderr);
    }
    primary.write_rows(10).unwrap();

    let t1 = Instant::now();
    net.heal(Site::Khartoum, Site::PortSudan).unwrap();
    wait_until(within(40), || {
        Ok(streams_from(standby).as_deref() == Some(&khartoum))
    })
    .unwrap();
    eprintln!("streaming again {:?} after the heal", t1.elapsed());
    wait_until(within(10), || Ok(standby.row_count().ok() == Some(10))).unwrap();
}

#[test]
fn isolated_site_keeps_committing_locally() {
    let (net, topo) = world();
    let primary = topo.postgres_primary();
    primary
        .psql("CREATE TABLE ward_log (id serial PRIMARY KEY, note text NOT NULL)")
        .unwrap();

    net.isolate(Site::Khartoum).unwrap();
    assert!(
        !reaches(primary.address()),
        "the test process still reaches khartoum"
    );
    for from in [Site::PortSudan, Site::DrCold] {
        let out = psql_from(&net, from, primary, "SELECT 1");
        assert!(!out.success, "{from} still reaches isolated khartoum");
    }
    // A writer inside khartoum commits to its local primary all along.
    for i in 1..=5 {
        let out = psql_from(
            &net,
            Site::Khartoum,
            primary,
            &format!("INSERT INTO ward_log (note) VALUES ('isolated {i}') RETURNING id"),
        );
        assert!(out.success, "write {i} inside khartoum: {}", out.stderr);
        assert_eq!(out.stdout.trim(), i.to_string());
    }

    net.rejoin(Site::Khartoum).unwrap();
    wait_until(within(10), || Ok(reaches(primary.address()))).unwrap();
    assert_eq!(primary.psql("SELECT count(*) FROM ward_log").unwrap(), "5");
    let standby = topo.postgres_standby();
    wait_until(within(40), || {
        Ok(standby
            .psql("SELECT count(*) FROM ward_log")
            .ok()
            .as_deref()
            == Some("5"))
    })
    .unwrap();
}

fn listed(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every namespace and every link of the test process's namespace, one name a line.
fn everything_listed() -> String {
    listed(&["netns", "list"]) + &listed(&["-o", "link", "show"])
}

#[test]
fn drop_removes_every_namespace_link_and_rule() {
    let net = Netns::create().expect("creating the network namespaces");
    net.cut(Site::Khartoum, Site::PortSudan).unwrap();
    net.isolate(Site::DrCold).unwrap();
    let names = net.names();
    let listed = everything_listed();
    for name in &names {
        assert!(listed.contains(name.as_str()), "{name} was never created");
    }
    drop(net);
    let listed = everything_listed();
    for name in &names {
        assert!(!listed.contains(name.as_str()), "{name} is left over");
    }
}

#[test]
fn a_crashed_runs_leftovers_are_swept() {
    // What a SIGKILLed test leaves: a namespace and our side of its veth, no lock held.
    let stale = format!("ndr{:04x}", std::process::id() as u16 ^ 0x5a5a);
    let stale_ns = format!("ndr-{}-core", &stale[3..]);
    let ip = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["netns", "add", &stale_ns]), "ip netns add {stale_ns}");
    let linked = ip(&[
        "link", "add", &stale, "type", "veth", "peer", "name", "host", "netns", &stale_ns,
    ]);
    // Another test's `Netns::create` may sweep the namespace away in between: fine, as
    // long as it really is gone.
    assert!(
        linked || !listed(&["netns", "list"]).contains(&stale_ns),
        "ip link add {stale} failed"
    );
    let _net = Netns::create().expect("creating the network namespaces");
    let listed = everything_listed();
    assert!(!listed.contains(&stale_ns), "{stale_ns} survived");
    assert!(!listed.contains(&stale), "{stale} survived");
}
