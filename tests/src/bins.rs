//! Locating the server binaries (without relying on PATH) and the `postgres` system user.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::Owner;

const HINT: &str = "run scripts/install-deps.sh";

/// Every external program the harness runs, resolved once per topology.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    pub pg_basebackup: PathBuf,
    pub psql: PathBuf,
    pub redis_server: PathBuf,
    pub knotd: PathBuf,
    pub knsupdate: PathBuf,
    pub kdig: PathBuf,
    pub nginx: PathBuf,
    pub pgbouncer: PathBuf,
}

impl Binaries {
    pub fn locate() -> Result<Binaries> {
        let pg = pg_bindir()?;
        let in_pg = |name: &str| -> Result<PathBuf> {
            let p = pg.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                bail!("{name} not found in {} ({HINT})", pg.display())
            }
        };
        Ok(Binaries {
            initdb: in_pg("initdb")?,
            postgres: in_pg("postgres")?,
            pg_basebackup: in_pg("pg_basebackup")?,
            psql: in_pg("psql")?,
            redis_server: find("redis-server")?,
            knotd: find("knotd")?,
            knsupdate: find("knsupdate")?,
            kdig: find("kdig")?,
            nginx: find("nginx")?,
            pgbouncer: find("pgbouncer")?,
        })
    }
}

/// PostgreSQL's server bindir: `$NILEDR_PG_BINDIR`, else `pg_config --bindir` if it holds
/// `initdb` (Debian's /usr/bin/pg_config may be the client-only one), else the newest
/// `/usr/lib/postgresql/<version>/bin` (15 preferred).
pub fn pg_bindir() -> Result<PathBuf> {
    if let Some(dir) = env::var_os("NILEDR_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
        bail!("NILEDR_PG_BINDIR={} has no initdb", dir.display());
    }
    let preferred = Path::new("/usr/lib/postgresql/15/bin");
    if preferred.join("initdb").is_file() {
        return Ok(preferred.to_path_buf());
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").is_file().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    match versions.pop() {
        Some((_, dir)) => Ok(dir),
        None => bail!("PostgreSQL server binaries (initdb) not found ({HINT})"),
    }
}

/// Find a program on PATH or in the sbin directories (nginx and knotd live in /usr/sbin).
pub fn find(name: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found ({HINT})"))
}

/// When we are root, PostgreSQL must run as the `postgres` system user: its uid/gid.
/// `None` when not root (then everything runs as ourselves).
pub fn postgres_owner() -> Result<Option<Owner>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .context("looking up the postgres user")?
        .with_context(|| {
            format!("PostgreSQL refuses to run as root and there is no `postgres` user ({HINT})")
        })?;
    Ok(Some(Owner {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}
