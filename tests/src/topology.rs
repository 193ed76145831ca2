//! `Topology`: starts the whole three-site NileCare world for a `Layout` in a base dir,
//! hands out the component handles, and tears every process down on drop.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::bins::{Binaries, postgres_owner};
use crate::config::{self, ConfigOptions};
use crate::dns::{self, Dns, TsigKey};
use crate::http::{self, HttpHealth};
use crate::layout::{Layout, Site};
use crate::netns::Netns;
use crate::pgbouncer::{self, PgBouncer};
use crate::postgres::{APP_USER, PgSetup, Postgres};
use crate::process::{Component, process_alive};
use crate::redis::{self, Redis};
use crate::util::{
    Owner, check_plain_path, log_tail, make_dir, random_hex, wait_until, write_file,
};

/// File that marks a directory as a topology base dir (the sandbox only wipes such dirs).
pub const MARKER: &str = ".niledr-topology";

/// Paths of the generated secrets.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub dir: PathBuf,
    /// Password of the `niledr` PostgreSQL superuser.
    pub postgres_password_file: PathBuf,
    /// `requirepass` / `masterauth` of both Redis servers.
    pub redis_password_file: PathBuf,
    pub tsig: TsigKey,
}

/// The cold site: nothing runs; a plain-format base backup taken with `-X none` (its WAL
/// is in the archive) and the primary's continuous WAL archive.
#[derive(Debug, Clone)]
pub struct ColdSite {
    pub address: Ipv4Addr,
    pub base_backup: PathBuf,
    pub wal_archive: PathBuf,
}

/// The running topology. Dropping it SIGKILLs every process (SIGCONT first) and waits.
pub struct Topology {
    layout: Layout,
    base: PathBuf,
    postgres_primary: Postgres,
    postgres_standby: Postgres,
    redis_primary: Redis,
    redis_replica: Redis,
    pgbouncer: PgBouncer,
    dns: Dns,
    http: Vec<HttpHealth>,
    cold: ColdSite,
    secrets: Secrets,
    started_in: Duration,
    /// The network world of `start_in` (kept alive as long as the processes in it).
    netns: Option<Netns>,
    // Declared last: removed only after every process is gone.
    _tmp: Option<TempDir>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("base", &self.base)
            .field("layout", &self.layout)
            .field("components", &self.components())
            .finish()
    }
}

const REPLICATION_TIMEOUT: Duration = Duration::from_secs(60);

impl Topology {
    /// `start` on free ports, picked again (up to three times) when one of them was taken
    /// between picking and starting: a daemon's DNS client binds random UDP source ports, so a
    /// free port can be gone a moment later.
    pub fn start_free(base_dir: Option<PathBuf>) -> Result<Topology> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Topology::start(Layout::free_ports()?, base_dir.clone()) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("is not available") => {
                    eprintln!("topology: {e:#}; picking other ports");
                }
                other => return other,
            }
        }
    }

    /// Start everything. `base_dir: None` uses a fresh temp dir (deleted on drop); a given
    /// dir is created if needed and must be empty (it is kept).
    pub fn start(layout: Layout, base_dir: Option<PathBuf>) -> Result<Topology> {
        let t0 = Instant::now();
        let bins = Binaries::locate()?;
        let pg_owner = postgres_owner()?;
        layout.check_available()?;
        let (tmp, base) = match base_dir {
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("niledr-topology-")
                    .tempdir()
                    .context("creating temp dir")?;
                let path = tmp.path().to_path_buf();
                (Some(tmp), path)
            }
            Some(dir) => {
                fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                if fs::read_dir(&dir)?.next().is_some() {
                    bail!("base dir {} is not empty", dir.display());
                }
                (None, dir.canonicalize().context("canonicalizing base dir")?)
            }
        };
        check_plain_path(&base)?;
        // The postgres user must be able to reach its directories inside.
        make_dir(&base, 0o755, None)?;
        write_file(
            &base.join(MARKER),
            "niledr-tests topology base dir\n",
            0o644,
            None,
        )?;
        let logs = base.join("logs");
        make_dir(&logs, 0o755, None)?;
        make_dir(&base.join("state"), 0o700, None)?;
        make_dir(&base.join("dr-cold"), 0o755, None)?;

        let secrets_dir = base.join("secrets");
        make_dir(&secrets_dir, 0o711, None)?;
        let pg_password: Arc<str> = random_hex(16)?.into();
        let redis_password: Arc<str> = random_hex(16)?.into();
        let secrets = Secrets {
            postgres_password_file: secrets_dir.join("postgres.password"),
            redis_password_file: secrets_dir.join("redis.password"),
            tsig: TsigKey::generate(&secrets_dir)?,
            dir: secrets_dir,
        };
        // initdb --pwfile reads it as the postgres user.
        write_file(
            &secrets.postgres_password_file,
            &pg_password,
            0o600,
            pg_owner,
        )?;
        write_file(&secrets.redis_password_file, &redis_password, 0o600, None)?;

        let cold = ColdSite {
            address: layout.dr_cold,
            base_backup: base.join("dr-cold").join("base-backup"),
            wal_archive: base.join("dr-cold").join("wal-archive"),
        };
        make_dir(&cold.wal_archive, 0o750, pg_owner)?;

        let setup = PgSetup {
            bins: &bins,
            owner: pg_owner,
            password: pg_password,
            password_file: &secrets.postgres_password_file,
            wal_archive: &cold.wal_archive,
            logs: &logs,
            layout: &layout,
        };

        // PostgreSQL (the slow chain) on its own thread; everything else meanwhile.
        let (pg, rest) = thread::scope(|scope| {
            let pg = scope.spawn(|| start_postgres(&setup, &layout, &base, &cold));
            let pg_credentials = (&setup.password, pg_owner);
            let rest = start_others(
                &bins,
                &layout,
                &base,
                &logs,
                &secrets,
                &redis_password,
                pg_credentials,
            );
            let pg = pg
                .join()
                .unwrap_or_else(|_| Err(anyhow!("PostgreSQL start-up thread panicked")));
            (pg, rest)
        });
        let (postgres_primary, postgres_standby) = pg?;
        let (redis_primary, redis_replica, pgbouncer, dns, http) = rest?;

        Ok(Topology {
            layout,
            base,
            postgres_primary,
            postgres_standby,
            redis_primary,
            redis_replica,
            pgbouncer,
            dns,
            http,
            cold,
            secrets,
            started_in: t0.elapsed(),
            netns: None,
            _tmp: tmp,
        })
    }

    /// Start everything with each site in its own network namespace of `net`
    /// (`Layout::netns`): PostgreSQL, Redis, nginx and PgBouncer in their site's namespace,
    /// Knot DNS in the core one. The topology keeps `net` alive until its processes are gone.
    pub fn start_in(net: &Netns, base_dir: Option<PathBuf>) -> Result<Topology> {
        let mut topo = Topology::start(Layout::netns(net), base_dir)?;
        topo.netns = Some(net.clone());
        Ok(topo)
    }

    /// The network world this topology runs in (`None`: loopback aliases).
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.base.join("logs")
    }

    /// How long `start` took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    pub fn postgres_primary(&self) -> &Postgres {
        &self.postgres_primary
    }

    pub fn postgres_standby(&self) -> &Postgres {
        &self.postgres_standby
    }

    /// PostgreSQL at an active site (`None` for dr-cold).
    pub fn postgres(&self, site: Site) -> Option<&Postgres> {
        match site {
            Site::Khartoum => Some(&self.postgres_primary),
            Site::PortSudan => Some(&self.postgres_standby),
            Site::DrCold => None,
        }
    }

    pub fn redis_primary(&self) -> &Redis {
        &self.redis_primary
    }

    pub fn redis_replica(&self) -> &Redis {
        &self.redis_replica
    }

    pub fn redis(&self, site: Site) -> Option<&Redis> {
        match site {
            Site::Khartoum => Some(&self.redis_primary),
            Site::PortSudan => Some(&self.redis_replica),
            Site::DrCold => None,
        }
    }

    /// PgBouncer at khartoum (database `nilecare` → khartoum's PostgreSQL).
    pub fn pgbouncer(&self) -> &PgBouncer {
        &self.pgbouncer
    }

    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    /// Every authoritative server, primary first.
    pub fn dns_servers(&self) -> Vec<SocketAddr> {
        self.dns.dns_servers()
    }

    /// BIND-format TSIG key file (for niledr).
    pub fn tsig_key_file(&self) -> PathBuf {
        self.dns.tsig_key_file()
    }

    /// RFC 2136 update to the primary DNS server, signed with the TSIG key.
    pub fn knsupdate(&self, script: &str) -> Result<String> {
        self.dns.knsupdate(script)
    }

    pub fn dig_a(&self, name: &str, server: SocketAddr) -> Result<Vec<Ipv4Addr>> {
        self.dns.dig_a(name, server)
    }

    pub fn http(&self, site: Site) -> Option<&HttpHealth> {
        self.http.iter().find(|h| h.site() == Some(site))
    }

    pub fn http_endpoints(&self) -> &[HttpHealth] {
        &self.http
    }

    pub fn cold_site(&self) -> &ColdSite {
        &self.cold
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Every component, in start order.
    pub fn components(&self) -> Vec<Component> {
        let mut v = vec![
            self.postgres_primary.component().clone(),
            self.postgres_standby.component().clone(),
            self.redis_primary.component().clone(),
            self.redis_replica.component().clone(),
            self.pgbouncer.component().clone(),
        ];
        v.extend(self.dns.servers().iter().map(|s| s.component().clone()));
        v.extend(self.http.iter().map(|h| h.component().clone()));
        v
    }

    /// Every live process of every component.
    pub fn pids(&self) -> Vec<u32> {
        self.components().iter().flat_map(Component::pids).collect()
    }

    /// Write niledr's config for this topology (see docs/config.md).
    pub fn write_niledr_config(
        &self,
        path: impl AsRef<Path>,
        opts: &ConfigOptions,
    ) -> Result<PathBuf> {
        config::write(self, path.as_ref(), opts)
    }

    /// Kill everything now and report failures (drop does the same, silently).
    pub fn shutdown(self) -> Result<()> {
        let errors = self.teardown();
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("teardown: {}", errors.join("; "))
        }
    }

    fn teardown(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for c in self.components().iter().rev() {
            if c.is_running() {
                let _ = c.sigcont();
            }
            if let Err(e) = c.kill() {
                errors.push(format!("{e:#}"));
            }
        }
        errors
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("niledr-tests: {e}");
        }
    }
}

/// Primary, standby (streaming), then the cold site's base backup and first archived WAL.
fn start_postgres(
    setup: &PgSetup<'_>,
    layout: &Layout,
    base: &Path,
    cold: &ColdSite,
) -> Result<(Postgres, Postgres)> {
    let primary = setup.primary(
        "khartoum-postgres",
        Site::Khartoum,
        layout.postgres(Site::Khartoum)?,
        &base.join("khartoum").join("postgres"),
    )?;
    // An application role (not a superuser), as applications should connect: the fence
    // takes its login away. Created before the standby is cloned, so both servers have it.
    primary.psql(&format!(
        "CREATE ROLE {APP_USER} LOGIN PASSWORD '{}'; GRANT CREATE ON SCHEMA public TO {APP_USER}",
        primary.password().replace('\'', "''")
    ))?;
    // The cold site's backup runs while the standby is cloned and started.
    let (standby, cold_done) = thread::scope(|scope| {
        let cold_done = scope.spawn(|| cold_backup(setup, &primary, cold));
        let standby = start_standby(setup, layout, base, &primary);
        let cold_done = cold_done
            .join()
            .unwrap_or_else(|_| Err(anyhow!("dr-cold backup thread panicked")));
        (standby, cold_done)
    });
    let standby = standby?;
    cold_done?;
    Ok((primary, standby))
}

fn start_standby(
    setup: &PgSetup<'_>,
    layout: &Layout,
    base: &Path,
    primary: &Postgres,
) -> Result<Postgres> {
    let standby = setup.standby(
        "port-sudan-postgres",
        Site::PortSudan,
        layout.postgres(Site::PortSudan)?,
        &base.join("port-sudan").join("postgres"),
        primary,
    )?;
    let app = Site::PortSudan.name();
    let mut last = String::new();
    wait_until(Instant::now() + REPLICATION_TIMEOUT, || {
        let streaming = primary.streaming_replicas().map(|r| r.iter().any(|a| a == app));
        let recovering = standby.is_in_recovery();
        last = format!("streaming: {streaming:?}, standby in recovery: {recovering:?}");
        Ok(matches!((streaming, recovering), (Ok(true), Ok(true))))
    })
    .map_err(|_| {
        anyhow!(
            "port-sudan-postgres: not streaming from khartoum within {REPLICATION_TIMEOUT:?} ({last}); log:\n{}",
            standby.log_tail(20)
        )
    })?;
    Ok(standby)
}

/// Base backup into dr-cold, then wait for the first archived WAL segment.
fn cold_backup(setup: &PgSetup<'_>, primary: &Postgres, cold: &ColdSite) -> Result<()> {
    setup.cold_backup(primary, &cold.base_backup)?;
    wait_until(Instant::now() + REPLICATION_TIMEOUT, || {
        Ok(fs::read_dir(&cold.wal_archive)?.next().is_some())
    })
    .map_err(|_| {
        anyhow!(
            "dr-cold: WAL archive {} still empty; primary log:\n{}",
            cold.wal_archive.display(),
            log_tail(primary.log_path(), 20)
        )
    })
}

type Others = (Redis, Redis, PgBouncer, Dns, Vec<HttpHealth>);

fn start_others(
    bins: &Binaries,
    layout: &Layout,
    base: &Path,
    logs: &Path,
    secrets: &Secrets,
    redis_password: &Arc<str>,
    (pg_password, pg_owner): (&Arc<str>, Option<Owner>),
) -> Result<Others> {
    let redis_primary = redis::start(
        bins,
        &redis::RedisInstance {
            name: "khartoum-redis",
            site: Site::Khartoum,
            address: layout.redis(Site::Khartoum)?,
            dir: base.join("khartoum").join("redis"),
            log: logs.join("khartoum-redis.log"),
            password: redis_password.clone(),
            replica_of: None,
            netns: layout.netns_of(Site::Khartoum),
        },
    )?;
    let redis_replica = redis::start(
        bins,
        &redis::RedisInstance {
            name: "port-sudan-redis",
            site: Site::PortSudan,
            address: layout.redis(Site::PortSudan)?,
            dir: base.join("port-sudan").join("redis"),
            log: logs.join("port-sudan-redis.log"),
            password: redis_password.clone(),
            replica_of: Some(redis_primary.address()),
            netns: layout.netns_of(Site::PortSudan),
        },
    )?;
    // PgBouncer connects to PostgreSQL only when a client does: it can start meanwhile.
    let pgbouncer = pgbouncer::start(
        bins,
        layout,
        &base.join("khartoum").join("pgbouncer"),
        logs.join("khartoum-pgbouncer.log"),
        pg_password.clone(),
        pg_owner,
    )?;
    let zone = dns::zone_file(&layout.dns, layout.ip(Site::Khartoum));
    let dns = dns::start(
        bins,
        layout,
        &base.join("dns"),
        logs,
        secrets.tsig.clone(),
        &zone,
    )?;
    let mut endpoints = Vec::new();
    for site in [Site::Khartoum, Site::PortSudan] {
        let name = format!("{site}-api");
        endpoints.push(http::start(
            bins,
            &name,
            site,
            layout,
            &base.join(site.name()).join("nginx"),
            logs.join(format!("{name}.log")),
        )?);
    }
    Ok((redis_primary, redis_replica, pgbouncer, dns, endpoints))
}

/// True if no process of `pids` is alive (zombies count as gone).
pub fn all_gone(pids: &[u32]) -> bool {
    pids.iter().all(|&p| !process_alive(p))
}
