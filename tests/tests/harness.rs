//! Tests of the harness itself: a free-ports topology really runs and behaves.

// A failed step should fail the test loudly; the workspace's unwrap lint targets library code.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use niledr_tests::{ConfigOptions, Site, Topology, ZONE, all_gone, process_state, shm, wait_until};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn refuses(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

/// How many SysV shared memory segments the processes `pids` created.
fn segments_of(pids: &[u32]) -> usize {
    shm::segments()
        .iter()
        .filter(|s| pids.contains(&s.creator))
        .count()
}

#[test]
fn orphaned_shared_memory_of_a_dead_creator_is_swept_and_another_owners_is_not() {
    // ipcmk creates an unattached segment and exits: exactly what a SIGKILLed server leaves.
    let made = std::process::Command::new("ipcmk")
        .args(["-M", "64"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let text = String::from_utf8_lossy(&made.stdout);
    let id: u64 = text.split_whitespace().last().unwrap().parse().unwrap();
    let ours = nix::unistd::getuid().as_raw();
    let present = |id: u64| shm::segments().iter().any(|s| s.shmid == id);
    assert!(present(id), "{text}");
    // Only the given owner's orphans are swept.
    let other_uid = ours.wrapping_add(1);
    shm::sweep_orphans(other_uid);
    assert!(present(id), "another owner's segment was removed");
    shm::sweep_orphans(ours);
    assert!(!present(id), "the orphan survived the sweep");
}

#[test]
fn leftover_dev_shm_files_are_swept_unless_a_live_process_maps_them() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["PostgreSQL.1", "PostgreSQL.2", "other.3"] {
        fs::write(dir.path().join(name), [0u8; 4096]).unwrap();
    }
    // A live process maps PostgreSQL.2, as a running server maps its segments.
    let held = dir.path().join("PostgreSQL.2");
    let mut holder = std::process::Command::new("python3")
        .arg("-c")
        .arg("import mmap,sys,time\nf=open(sys.argv[1],'r+b')\nm=mmap.mmap(f.fileno(),0)\nprint('mapped',flush=True)\ntime.sleep(60)")
        .arg(&held)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "mapped");

    shm::sweep_unmapped_files(dir.path(), "PostgreSQL.", nix::unistd::getuid().as_raw());
    let left = |name: &str| dir.path().join(name).exists();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!left("PostgreSQL.1"), "an unmapped leftover survived");
    assert!(left("PostgreSQL.2"), "a mapped segment was removed");
    assert!(left("other.3"), "a file without the prefix was removed");
}

#[test]
fn topology_runs_replicates_and_tears_down() {
    let topo = Topology::start_free(None).unwrap();
    eprintln!("free-ports topology started in {:?}", topo.started_in());
    let layout = topo.layout().clone();
    let khartoum = layout.ip(Site::Khartoum);
    let port_sudan = layout.ip(Site::PortSudan);

    // PostgreSQL: standby streams and sees the primary's rows.
    let (primary, standby) = (topo.postgres_primary(), topo.postgres_standby());
    assert!(!primary.is_in_recovery().unwrap());
    assert!(standby.is_in_recovery().unwrap());
    assert_eq!(
        primary.streaming_replicas().unwrap(),
        vec!["port-sudan".to_string()]
    );
    primary.write_rows(100).unwrap();
    wait_until(soon(), || Ok(standby.row_count().ok() == Some(100))).unwrap();

    // Replay pause keeps rows invisible on the standby until resumed.
    standby.pause_replay().unwrap();
    primary.write_rows(5).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(standby.row_count().unwrap(), 100);
    standby.resume_replay().unwrap();
    wait_until(soon(), || Ok(standby.row_count().ok() == Some(105))).unwrap();

    // Redis: the replica has the primary's key and is read-only.
    let (rp, rr) = (topo.redis_primary(), topo.redis_replica());
    rp.set("patient:1", "bed-7").unwrap();
    wait_until(soon(), || {
        Ok(rr.get("patient:1")?.as_deref() == Some("bed-7"))
    })
    .unwrap();
    assert!(rr.set("x", "y").is_err());
    assert_eq!(
        rr.info_field("replication", "master_link_status")
            .unwrap()
            .as_deref(),
        Some("up")
    );

    // DNS: every authoritative server answers khartoum.
    let servers = topo.dns_servers();
    assert_eq!(servers.len(), 2);
    for &s in &servers {
        assert_eq!(
            topo.dig_a(&format!("db.{ZONE}"), s).unwrap(),
            vec![khartoum]
        );
    }
    // A TSIG-signed update moves db to port-sudan on every server (secondary via NOTIFY+IXFR).
    topo.knsupdate(&format!(
        "prereq yxrrset db.{ZONE} A {khartoum}\nupdate delete db.{ZONE} A\nupdate add db.{ZONE} 60 A {port_sudan}"
    ))
    .unwrap();
    for &s in &servers {
        wait_until(soon(), || {
            Ok(topo.dig_a(&format!("db.{ZONE}"), s)? == vec![port_sudan])
        })
        .unwrap();
    }
    // A wrong key is refused and changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let wrong = niledr_tests::TsigKey::write(
        "niledr-key",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        dir.path().join("wrong.tsig"),
        dir.path().join("wrong.tsig.knot"),
    )
    .unwrap();
    let err = topo
        .dns()
        .knsupdate_with_key(
            &wrong.knot_file,
            &format!("update add cache.{ZONE} 60 A {port_sudan}"),
        )
        .unwrap_err();
    eprintln!("wrong key: {err:#}");
    assert_eq!(
        topo.dig_a(&format!("cache.{ZONE}"), servers[0]).unwrap(),
        vec![khartoum]
    );

    // HTTP health per site.
    for site in [Site::Khartoum, Site::PortSudan] {
        let r = topo.http(site).unwrap().health().unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, format!("ok site={site}\n").as_str())
        );
    }

    // Cold site: base backup and WAL archive are there.
    let cold = topo.cold_site();
    assert!(cold.base_backup.join("PG_VERSION").is_file());
    assert!(fs::read_dir(&cold.wal_archive).unwrap().next().is_some());

    // The niledr config renders with this topology's addresses.
    let cfg = topo
        .write_niledr_config(
            topo.base_dir().join("niledr.toml"),
            &ConfigOptions::default(),
        )
        .unwrap();
    let text = fs::read_to_string(cfg).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        table["services"]["port-sudan-postgres"]["address"].as_str(),
        Some(
            layout
                .postgres(Site::PortSudan)
                .unwrap()
                .to_string()
                .as_str()
        )
    );

    // Drop leaves no process behind, and no shared memory segment either.
    let pids = topo.pids();
    assert!(pids.len() >= 8, "{pids:?}");
    assert_eq!(segments_of(&pids), 2, "one per running PostgreSQL server");
    // Dynamic shared memory is in the data directories, never in /dev/shm (a killed server
    // would leave it there).
    let in_dev_shm: Vec<_> = fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("PostgreSQL."))
        .collect();
    assert!(in_dev_shm.is_empty(), "{in_dev_shm:?}");
    drop(topo);
    assert!(all_gone(&pids), "left behind: {pids:?}");
    assert_eq!(segments_of(&pids), 0, "shared memory left behind");
    // Not even zombies: orphans were reparented to us and reaped.
    let left: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(left.is_empty(), "still in the process table: {left:?}");
}

#[test]
fn postgres_faults_kill_restart_sigstop() {
    let topo = Topology::start_free(None).unwrap();
    let primary = topo.postgres_primary();
    let addr = primary.address();
    primary.write_rows(10).unwrap();

    // kill -9: the port refuses, every process of the server is gone (with the SysV segment
    // PostgreSQL cannot remove when killed); restart brings it back.
    let before = primary.pids();
    assert_eq!(segments_of(&before), 1, "PostgreSQL's interlock segment");
    primary.kill().unwrap();
    assert!(!primary.is_running());
    assert!(refuses(addr));
    assert!(all_gone(&before), "{before:?}");
    assert_eq!(
        segments_of(&before),
        0,
        "the killed server's segment is removed"
    );
    primary.restart().unwrap();
    assert_eq!(primary.row_count().unwrap(), 10);

    // The standby reconnects and streams again.
    let standby = topo.postgres_standby();
    wait_until(soon(), || {
        Ok(primary.streaming_replicas()? == vec!["port-sudan".to_string()])
    })
    .unwrap();
    primary.write_rows(1).unwrap();
    wait_until(soon(), || Ok(standby.row_count().ok() == Some(11))).unwrap();

    // SIGSTOP freezes every process of the server (postmaster and backends), SIGCONT resumes.
    primary.sigstop().unwrap();
    let pids = primary.pids();
    assert!(pids.len() > 3, "{pids:?}");
    assert!(
        pids.iter().all(|p| process_state(*p) == Some('T')),
        "{pids:?}"
    );
    primary.sigcont().unwrap();
    assert!(
        pids.iter().all(|p| process_state(*p) != Some('T')),
        "{pids:?}"
    );
    assert_eq!(primary.row_count().unwrap(), 11);

    // Graceful restart keeps the data.
    topo.redis_replica().restart().unwrap();
    primary.restart().unwrap();
    assert_eq!(primary.row_count().unwrap(), 11);
}
