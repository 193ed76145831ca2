//! PostgreSQL 15: the primary (initdb + `postgres -D`), the streaming standby
//! (`pg_basebackup -R -C -S`), the cold site's base backup, and `psql` helpers.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::bins::{Binaries, pg_bindir, postgres_owner};
use crate::layout::{Layout, Site};
use crate::process::{Component, ProcessSpec};
use crate::util::{Owner, append_file, make_dir, run_capture, run_logged, wait_until, write_file};

/// The superuser (and replication user) initdb creates.
pub const PG_USER: &str = "niledr";
/// The application role (LOGIN, not a superuser; same password as `PG_USER` in the harness).
pub const APP_USER: &str = "app";
/// Name of the physical replication slot the port-sudan standby streams from.
pub const STANDBY_SLOT: &str = "port_sudan";
/// Table `write_rows` fills.
pub const HARNESS_TABLE: &str = "niledr_harness";

const PSQL_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach one server with `psql` over TCP.
#[derive(Debug, Clone)]
pub struct PgConn {
    psql: PathBuf,
    address: SocketAddr,
    password: Arc<str>,
}

impl PgConn {
    /// A `psql` connection to the server at `address` as the `niledr` superuser (e.g. the
    /// restored dr-cold server, which no harness handle of a test owns).
    pub fn new(address: SocketAddr, password: &str) -> Result<PgConn> {
        Ok(PgConn {
            psql: pg_bindir()?.join("psql"),
            address,
            password: password.into(),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Run `sql` with `psql -X -At -v ON_ERROR_STOP=1`; stdout without the final newline.
    pub fn query(&self, sql: &str) -> Result<String> {
        self.query_as(PG_USER, sql)
    }

    /// `query` as role `user` (same password: the harness gives its roles one password).
    pub fn query_as(&self, user: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new(&self.psql);
        cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.address.ip().to_string())
            .arg("-p")
            .arg(self.address.port().to_string())
            .args(["-U", user, "-d", "postgres", "-c", sql])
            .env("PGPASSWORD", &*self.password)
            .env("PGCONNECT_TIMEOUT", "3");
        let out = run_capture("psql", cmd, None, PSQL_TIMEOUT)?;
        if !out.success {
            bail!(
                "psql {} {sql:?}: {} ({})",
                self.address,
                out.stderr.trim(),
                out.status
            );
        }
        Ok(out.stdout.trim_end_matches('\n').to_string())
    }
}

/// Which PostgreSQL this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    Primary,
    Standby,
}

/// A PostgreSQL server: a `Component` (kill, sigstop, restart, ...) plus SQL helpers.
#[derive(Debug, Clone)]
pub struct Postgres {
    component: Component,
    conn: PgConn,
    role: PgRole,
    data_dir: PathBuf,
    socket_dir: PathBuf,
}

impl Deref for Postgres {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.component
    }
}

impl Postgres {
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// The role it was started with (a promoted standby still says `Standby`).
    pub fn role(&self) -> PgRole {
        self.role
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn password(&self) -> &str {
        &self.conn.password
    }

    /// `postgresql://niledr:PASSWORD@ADDR/postgres`
    pub fn url(&self) -> String {
        format!(
            "postgresql://{PG_USER}:{}@{}/postgres",
            self.conn.password,
            self.address()
        )
    }

    /// Run SQL through the `psql` binary over TCP (`-At`: unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.conn
            .query(sql)
            .with_context(|| self.name().to_string())
    }

    /// `psql` as the application role `APP_USER`.
    pub fn psql_app(&self, sql: &str) -> Result<String> {
        self.conn
            .query_as(APP_USER, sql)
            .with_context(|| format!("{} as {APP_USER}", self.name()))
    }

    pub fn is_in_recovery(&self) -> Result<bool> {
        Ok(self.psql("SELECT pg_is_in_recovery()")? == "t")
    }

    /// Standby only: stop applying WAL (it is still received).
    pub fn pause_replay(&self) -> Result<()> {
        self.psql("SELECT pg_wal_replay_pause()").map(drop)
    }

    pub fn resume_replay(&self) -> Result<()> {
        self.psql("SELECT pg_wal_replay_resume()").map(drop)
    }

    /// Create `niledr_harness` if needed and insert `n` rows (to make WAL).
    pub fn write_rows(&self, n: u64) -> Result<()> {
        self.psql(&format!(
            "CREATE TABLE IF NOT EXISTS {HARNESS_TABLE} (id bigserial PRIMARY KEY, payload text NOT NULL, \
             written_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             INSERT INTO {HARNESS_TABLE} (payload) SELECT md5(g::text) FROM generate_series(1, {n}) g"
        ))
        .map(drop)
    }

    /// Rows in `niledr_harness` (an error if the table does not exist here yet).
    pub fn row_count(&self) -> Result<i64> {
        let s = self.psql(&format!("SELECT count(*) FROM {HARNESS_TABLE}"))?;
        s.parse()
            .with_context(|| format!("count(*) answered {s:?}"))
    }

    /// `application_name`s of standbys in state `streaming` (primary side).
    pub fn streaming_replicas(&self) -> Result<Vec<String>> {
        let s = self.psql(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1",
        )?;
        Ok(s.lines().map(str::to_string).collect())
    }

    /// Current WAL position: written (primary) or replayed (standby).
    pub fn wal_lsn(&self) -> Result<String> {
        self.psql("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END")
    }

    /// `default_transaction_read_only` as a new session sees it (niledr's read-only fence).
    pub fn is_read_only(&self) -> Result<bool> {
        Ok(self.psql("SHOW default_transaction_read_only")? == "on")
    }

    /// Standby only: `host:port` its WAL receiver streams from, if it is streaming.
    pub fn streaming_from(&self) -> Result<Option<String>> {
        let s = self.psql(
            "SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'",
        )?;
        Ok(Some(s).filter(|s| !s.is_empty()))
    }

    /// `application_name` it uses as a standby (its site's name, as the harness's standby).
    pub fn application_name(&self) -> String {
        self.site()
            .map_or_else(|| self.name().to_string(), |s| s.name().to_string())
    }

    /// Name of the physical replication slot this server streams from when it is a standby.
    pub fn slot_name(&self) -> String {
        self.application_name().replace('-', "_")
    }

    /// What an operator does before a failback: turn this server (a former primary, or any
    /// server) into a streaming standby of `primary`, the way the runbooks' manual steps
    /// describe. Stops it cleanly, re-seeds its data directory with `method`, points it at
    /// `primary` through a physical replication slot (re-created there), starts it and waits
    /// until `primary` sees it streaming. Runs the PostgreSQL tools as the `postgres` user.
    pub fn reseed_as_standby_of(&self, primary: &Postgres, method: Reseed) -> Result<Reseeded> {
        let t0 = Instant::now();
        let bindir = pg_bindir()?;
        let owner = postgres_owner()?;
        let root = self
            .data_dir
            .parent()
            .context("data dir has no parent")?
            .to_path_buf();
        let logs = self
            .log_path()
            .parent()
            .context("log has no directory")?
            .to_path_buf();
        let app = self.application_name();
        let slot = self.slot_name();
        let up = primary.address();
        let command = |program: &str| {
            let mut cmd = Command::new(bindir.join(program));
            cmd.current_dir(&root).env("PGPASSWORD", self.password());
            if let Some(o) = owner {
                std::os::unix::process::CommandExt::uid(&mut cmd, o.uid);
                std::os::unix::process::CommandExt::gid(&mut cmd, o.gid);
            }
            cmd
        };

        // A clean shutdown (pg_rewind needs one; a base backup replaces everything anyway).
        self.stop()?;
        let stopped = t0.elapsed();
        // A fresh slot on the new primary: an old one (e.g. from before a switchover) would
        // hold a stale position, or be in use by nobody and pin WAL forever.
        primary.psql(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{slot}' AND NOT active; \
             SELECT pg_create_physical_replication_slot('{slot}', true) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')"
        ))?;
        let log = logs.join(format!("{}-reseed.log", self.name()));
        // pg_rewind needs the target's WAL back to the divergence point; when a checkpoint
        // recycled it (a long partition), a person re-seeds from a base backup instead.
        let rewound = match method {
            Reseed::Rewind => {
                // A just-promoted primary's control file still names the old timeline until
                // its first checkpoint; pg_rewind (15) reads it there and would wrongly say
                // "no rewind required".
                primary.psql("CHECKPOINT")?;
                let mut cmd = command("pg_rewind");
                cmd.arg("--target-pgdata")
                    .arg(&self.data_dir)
                    .arg(format!(
                        "--source-server=host={} port={} user={PG_USER} dbname=postgres",
                        up.ip(),
                        up.port()
                    ))
                    .args(["--write-recovery-conf", "--no-sync", "--progress"]);
                match run_logged(
                    &format!("{}: pg_rewind", self.name()),
                    cmd,
                    &log,
                    Duration::from_secs(300),
                ) {
                    Ok(_) => true,
                    Err(e) => {
                        eprintln!(
                            "{}: pg_rewind failed, re-seeding from a base backup: {e:#}",
                            self.name()
                        );
                        false
                    }
                }
            }
            Reseed::BaseBackup => false,
        };
        if !rewound {
            std::fs::remove_dir_all(&self.data_dir)
                .with_context(|| format!("removing {}", self.data_dir.display()))?;
            make_dir(&self.data_dir, 0o700, owner)?;
            let mut cmd = command("pg_basebackup");
            cmd.arg("-D")
                .arg(&self.data_dir)
                .args([
                    "-R",
                    "-S",
                    &slot,
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-w",
                    "--no-sync",
                ])
                .args(upstream_args(up));
            run_logged(
                &format!("{}: pg_basebackup", self.name()),
                cmd,
                &log,
                Duration::from_secs(300),
            )?;
        }
        let copied = t0.elapsed();
        // The configuration came from the primary: this instance's address wins again, and
        // it follows the primary (pg_rewind reports "no rewind required" without writing
        // standby.signal when the histories did not diverge).
        append_file(
            &self.data_dir.join("postgresql.conf"),
            &PgSetup::instance_settings(self.address(), &self.socket_dir),
        )?;
        append_file(
            &self.data_dir.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host={} port={} user={PG_USER} password={} application_name={app}'\n\
                 primary_slot_name = '{slot}'\n",
                up.ip(),
                up.port(),
                self.password(),
            ),
        )?;
        write_file(&self.data_dir.join("standby.signal"), "", 0o600, owner)?;
        self.start()?;
        let mut last = String::new();
        wait_until(Instant::now() + Duration::from_secs(60), || {
            let streaming = primary.streaming_replicas().map(|r| r.contains(&app));
            let recovering = self.is_in_recovery();
            last = format!("streaming: {streaming:?}, in recovery: {recovering:?}");
            Ok(matches!((streaming, recovering), (Ok(true), Ok(true))))
        })
        .map_err(|_| {
            anyhow::anyhow!(
                "{}: not streaming from {} within 60 s ({last}); log:\n{}",
                self.name(),
                primary.name(),
                self.log_tail(20)
            )
        })?;
        Ok(Reseeded {
            method,
            stopped,
            copied: copied - stopped,
            streaming: t0.elapsed() - copied,
            total: t0.elapsed(),
        })
    }
}

/// How to re-seed a server as a standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseed {
    /// `pg_rewind --source-server` (needs `wal_log_hints`, set by the harness): copies only
    /// what changed since the histories diverged.
    Rewind,
    /// Wipe the data directory and take a fresh `pg_basebackup -R -S SLOT`.
    BaseBackup,
}

/// What a re-seed took.
#[derive(Debug, Clone, Copy)]
pub struct Reseeded {
    pub method: Reseed,
    /// Clean shutdown of the server.
    pub stopped: Duration,
    /// pg_rewind or pg_basebackup.
    pub copied: Duration,
    /// Start until the primary sees it streaming.
    pub streaming: Duration,
    pub total: Duration,
}

/// Everything the PostgreSQL set-up steps share.
pub(crate) struct PgSetup<'a> {
    pub bins: &'a Binaries,
    /// `postgres` system user when we are root.
    pub owner: Option<Owner>,
    pub password: Arc<str>,
    pub password_file: &'a Path,
    pub wal_archive: &'a Path,
    pub logs: &'a Path,
    /// Which network namespace each site's server runs in, and whom pg_hba lets in.
    pub layout: &'a Layout,
}

impl PgSetup<'_> {
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd).env("PGPASSWORD", &*self.password);
        if let Some(o) = self.owner {
            std::os::unix::process::CommandExt::uid(&mut cmd, o.uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, o.gid);
        }
        cmd
    }

    fn conn(&self, address: SocketAddr) -> PgConn {
        PgConn {
            psql: self.bins.psql.clone(),
            address,
            password: self.password.clone(),
        }
    }

    /// Per-instance overrides: appended last, so they win over anything copied from the primary.
    /// Dynamic shared memory lives in the data directory (`mmap`), not in `/dev/shm`: a
    /// SIGKILLed server never removes its `/dev/shm/PostgreSQL.*` files, and a suite kills
    /// hundreds (gigabytes of RAM-backed tmpfs); the temp data directory goes with the test.
    fn instance_settings(address: SocketAddr, socket_dir: &Path) -> String {
        format!(
            "\n# niledr harness: this instance\nlisten_addresses = '{}'\nport = {}\nunix_socket_directories = '{}'\n\
             dynamic_shared_memory_type = mmap\n",
            address.ip(),
            address.port(),
            socket_dir.display()
        )
    }

    fn component(
        &self,
        name: &str,
        site: Site,
        address: SocketAddr,
        dirs: &InstanceDirs,
        role: PgRole,
    ) -> Result<Postgres> {
        self.component_within(name, site, address, dirs, role, Duration::from_secs(60))
    }

    /// Like `component`, waiting up to `start_timeout` until it accepts connections.
    fn component_within(
        &self,
        name: &str,
        site: Site,
        address: SocketAddr,
        dirs: &InstanceDirs,
        role: PgRole,
        start_timeout: Duration,
    ) -> Result<Postgres> {
        let conn = self.conn(address);
        let probe = conn.clone();
        let spec = ProcessSpec {
            program: self.bins.postgres.clone(),
            args: vec!["-D".into(), dirs.data.clone().into()],
            env: Vec::new(),
            cwd: Some(dirs.root.clone()),
            owner: self.owner,
            netns: self.layout.netns_of(site),
            log: self.logs.join(format!("{name}.log")),
            graceful: Signal::SIGINT,
            start_timeout,
            // After kill -9: the dead server's shared memory / lock file linger for a moment.
            retry_when_log_says: &["shared memory", "lock file", "already in use"],
            ready: Box::new(move || probe.query("SELECT 1").map(drop)),
        };
        let component = Component::spawn(name, Some(site), address, spec)?;
        Ok(Postgres {
            component,
            conn,
            role,
            data_dir: dirs.data.clone(),
            socket_dir: dirs.socket.clone(),
        })
    }

    /// initdb + configuration + start: the khartoum primary.
    pub fn primary(
        &self,
        name: &str,
        site: Site,
        address: SocketAddr,
        root: &Path,
    ) -> Result<Postgres> {
        let dirs = InstanceDirs::create(root, self.owner)?;
        let mut initdb = self.command(&self.bins.initdb, &dirs.root);
        initdb
            .arg("-D")
            .arg(&dirs.data)
            .arg(format!("--username={PG_USER}"))
            .arg("--pwfile")
            .arg(self.password_file)
            .args([
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]);
        let log = self.logs.join(format!("{name}-initdb.log"));
        run_logged(
            &format!("{name}: initdb"),
            initdb,
            &log,
            Duration::from_secs(120),
        )?;

        let archive = self.wal_archive.display();
        append_file(
            &dirs.data.join("postgresql.conf"),
            &format!(
                "\n# niledr harness: replication and archiving\n\
                 wal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\nhot_standby = on\n\
                 wal_keep_size = 64MB\nwal_receiver_status_interval = 1s\n\
                 wal_receiver_timeout = 5s\n\
                 wal_log_hints = on\n\
                 archive_mode = on\narchive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'\n\
                 archive_timeout = '10s'\n\
                 shared_buffers = 16MB\nmax_connections = 50\nlog_line_prefix = '%m [%p] '\n{}",
                Self::instance_settings(address, &dirs.socket)
            ),
        )?;
        let mut hba = String::from("\n# niledr harness: every site address\n");
        for net in self.layout.client_networks() {
            hba.push_str(&format!(
                "host all all {net} scram-sha-256\nhost replication {PG_USER} {net} scram-sha-256\n"
            ));
        }
        append_file(&dirs.data.join("pg_hba.conf"), &hba)?;
        self.component(name, site, address, &dirs, PgRole::Primary)
    }

    /// `pg_basebackup -R -C -S port_sudan` from the primary, then start it as a hot standby.
    pub fn standby(
        &self,
        name: &str,
        site: Site,
        address: SocketAddr,
        root: &Path,
        primary: &Postgres,
    ) -> Result<Postgres> {
        let dirs = InstanceDirs::create(root, self.owner)?;
        let up = primary.address();
        let mut bb = self.command(&self.bins.pg_basebackup, &dirs.root);
        bb.arg("-D")
            .arg(&dirs.data)
            .args([
                "-R",
                "-C",
                "-S",
                STANDBY_SLOT,
                "-X",
                "stream",
                "-c",
                "fast",
                "-w",
                "--no-sync",
            ])
            .args(upstream_args(up));
        let log = self.logs.join(format!("{name}-basebackup.log"));
        run_logged(
            &format!("{name}: pg_basebackup"),
            bb,
            &log,
            Duration::from_secs(300),
        )?;
        append_file(
            &dirs.data.join("postgresql.conf"),
            &Self::instance_settings(address, &dirs.socket),
        )?;
        // Our own primary_conninfo (appended, so it wins over the one -R wrote) names the standby.
        append_file(
            &dirs.data.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host={} port={} user={PG_USER} password={} application_name={}'\n",
                up.ip(),
                up.port(),
                self.password,
                site.name()
            ),
        )?;
        self.component(name, site, address, &dirs, PgRole::Standby)
    }

    /// The cold site's base backup: plain format, `-X none` (WAL comes from the archive).
    pub fn cold_backup(&self, primary: &Postgres, dest: &Path) -> Result<()> {
        make_dir(dest, 0o700, self.owner)?;
        let up = primary.address();
        let parent = dest.parent().unwrap_or(dest);
        let mut bb = self.command(&self.bins.pg_basebackup, parent);
        bb.arg("-D")
            .arg(dest)
            .args(["-X", "none", "-c", "fast", "-w", "--no-sync"])
            .args(upstream_args(up));
        let log = self.logs.join("dr-cold-basebackup.log");
        run_logged("dr-cold: pg_basebackup", bb, &log, Duration::from_secs(300))
    }
}

impl PgSetup<'_> {
    /// The cold site's restore (what an operator does at dr-cold): a fresh data directory in
    /// `root` (anything there before is removed) holding a copy of the plain-format
    /// `base_backup`, set to replay the WAL archive (`restore_command`, latest timeline) and
    /// promote at its end (`recovery.signal`), listening on `address`, archiving nothing. Not
    /// started: see `start_cold`.
    pub fn restore_cold(&self, base_backup: &Path, root: &Path, address: SocketAddr) -> Result<()> {
        if root.exists() {
            std::fs::remove_dir_all(root)
                .with_context(|| format!("removing the previous restore {}", root.display()))?;
        }
        let dirs = InstanceDirs::create(root, self.owner)?;
        if !base_backup.join("PG_VERSION").is_file() {
            bail!("{} holds no base backup", base_backup.display());
        }
        // As the postgres user, so everything copied is owned by it (and modes are kept).
        let mut cp = self.command(&crate::bins::find("cp")?, &dirs.root);
        let mut from = base_backup.as_os_str().to_owned();
        from.push("/.");
        cp.arg("-a").arg(from).arg(&dirs.data);
        let log = self.logs.join("dr-cold-postgres-restore.log");
        run_logged(
            "dr-cold: copying the base backup",
            cp,
            &log,
            Duration::from_secs(300),
        )?;
        for stale in ["postmaster.pid", "postmaster.opts", "standby.signal"] {
            let p = dirs.data.join(stale);
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
        let archive = self.wal_archive.display();
        append_file(
            &dirs.data.join("postgresql.conf"),
            &format!(
                "\n# niledr harness: dr-cold restore from the base backup and the WAL archive\n\
                 archive_mode = off\nrestore_command = 'cp {archive}/%f %p'\n\
                 recovery_target_timeline = 'latest'\nrecovery_target_action = 'promote'\n\
                 primary_conninfo = ''\nprimary_slot_name = ''\n{}",
                Self::instance_settings(address, &dirs.socket)
            ),
        )?;
        write_file(&dirs.data.join("recovery.signal"), "", 0o600, self.owner)
    }

    /// Start the instance `restore_cold` prepared in `root`; returns once it accepts
    /// connections (a hot standby during archive recovery), waiting up to `within`.
    pub fn start_cold(
        &self,
        name: &str,
        root: &Path,
        address: SocketAddr,
        within: Duration,
    ) -> Result<Postgres> {
        let dirs = InstanceDirs {
            root: root.to_path_buf(),
            data: root.join("data"),
            socket: root.join("socket"),
        };
        if !dirs.data.join("PG_VERSION").is_file() {
            bail!("{name}: nothing restored in {}", dirs.data.display());
        }
        self.component_within(name, Site::DrCold, address, &dirs, PgRole::Standby, within)
    }
}

struct InstanceDirs {
    root: PathBuf,
    data: PathBuf,
    socket: PathBuf,
}

impl InstanceDirs {
    fn create(root: &Path, owner: Option<Owner>) -> Result<InstanceDirs> {
        let d = InstanceDirs {
            root: root.to_path_buf(),
            data: root.join("data"),
            // Outside the data dir: pg_basebackup must not copy the primary's socket lock.
            socket: root.join("socket"),
        };
        make_dir(&d.root, 0o755, owner)?;
        make_dir(&d.data, 0o700, owner)?;
        make_dir(&d.socket, 0o755, owner)?;
        Ok(d)
    }
}

/// `-h HOST -p PORT -U niledr` for a client of the server at `up` (pg_basebackup, pg_rewind).
fn upstream_args(up: std::net::SocketAddr) -> [String; 6] {
    [
        "-h".into(),
        up.ip().to_string(),
        "-p".into(),
        up.port().to_string(),
        "-U".into(),
        PG_USER.into(),
    ]
}
