//! PgBouncer in front of khartoum's PostgreSQL (database `nilecare`), in the foreground as
//! the `postgres` user when we are root, with its ini, userlist, log and pidfile in the base dir.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use nix::sys::signal::Signal;

use crate::bins::Binaries;
use crate::layout::{Layout, Site};
use crate::postgres::PG_USER;
use crate::process::{Component, ProcessSpec};
use crate::util::{Owner, make_dir, run_capture, write_file};

/// The database PgBouncer serves (pointing at khartoum's `postgres` database).
pub const PGBOUNCER_DB: &str = "nilecare";
/// The admin console's database name.
pub const ADMIN_DB: &str = "pgbouncer";

const PSQL_TIMEOUT: Duration = Duration::from_secs(30);

/// The running PgBouncer: a `Component` plus its files and credentials.
#[derive(Debug, Clone)]
pub struct PgBouncer {
    component: Component,
    ini: PathBuf,
    userlist: PathBuf,
    password: Arc<str>,
    psql: PathBuf,
}

impl Deref for PgBouncer {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.component
    }
}

impl PgBouncer {
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// `pgbouncer.ini` (its `[databases]` section is what connection-string swaps rewrite).
    pub fn ini_file(&self) -> &Path {
        &self.ini
    }

    pub fn userlist_file(&self) -> &Path {
        &self.userlist
    }

    /// Admin console user (in `admin_users`), also the user of database `nilecare`.
    pub fn admin_user(&self) -> &str {
        PG_USER
    }

    /// Same password as PostgreSQL's `niledr`.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `nilecare`.
    pub fn database(&self) -> &str {
        PGBOUNCER_DB
    }

    /// `pgbouncer` (the admin console).
    pub fn admin_database(&self) -> &str {
        ADMIN_DB
    }

    /// `postgresql://niledr:PASSWORD@ADDR/nilecare`
    pub fn url(&self) -> String {
        format!(
            "postgresql://{PG_USER}:{}@{}/{PGBOUNCER_DB}",
            self.password,
            self.address()
        )
    }

    /// Run SQL through PgBouncer with `psql -X -At` on database `db` (`nilecare`, or
    /// `pgbouncer` for the admin console).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        psql(&self.psql, self.address(), &self.password, db, sql)
    }

    /// An admin console command, e.g. `admin("SHOW DATABASES")`.
    pub fn admin(&self, sql: &str) -> Result<String> {
        self.psql(ADMIN_DB, sql)
    }
}

fn psql(psql: &Path, address: SocketAddr, password: &str, db: &str, sql: &str) -> Result<String> {
    let mut cmd = Command::new(psql);
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(address.ip().to_string())
        .arg("-p")
        .arg(address.port().to_string())
        .args(["-U", PG_USER, "-d", db, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "3");
    let out = run_capture("psql", cmd, None, PSQL_TIMEOUT)?;
    if !out.success {
        bail!(
            "psql {address}/{db} {sql:?}: {} ({})",
            out.stderr.trim(),
            out.status
        );
    }
    Ok(out.stdout.trim_end_matches('\n').to_string())
}

/// Write ini + userlist (owned by `owner`: PgBouncer refuses to run as root) and start
/// `pgbouncer INI` in the foreground, at khartoum in `layout` (in front of its PostgreSQL).
pub(crate) fn start(
    bins: &Binaries,
    layout: &Layout,
    dir: &Path,
    log: PathBuf,
    password: Arc<str>,
    owner: Option<Owner>,
) -> Result<PgBouncer> {
    let (address, postgres) = (layout.pgbouncer(), layout.postgres(Site::Khartoum)?);
    make_dir(dir, 0o700, owner)?;
    let userlist = dir.join("userlist.txt");
    write_file(
        &userlist,
        &format!("\"{PG_USER}\" \"{password}\"\n"),
        0o600,
        owner,
    )?;
    let d = dir.display();
    let ini_text = format!(
        "[databases]\n\
         {PGBOUNCER_DB} = host={pg_ip} port={pg_port} dbname=postgres\n\n\
         [pgbouncer]\n\
         listen_addr = {ip}\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = scram-sha-256\nauth_file = {userlist}\n\
         admin_users = {PG_USER}\n\
         pool_mode = session\nmax_client_conn = 100\ndefault_pool_size = 10\n\
         ignore_startup_parameters = extra_float_digits\n\
         server_login_retry = 1\n\
         logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n",
        pg_ip = postgres.ip(),
        pg_port = postgres.port(),
        ip = address.ip(),
        port = address.port(),
        userlist = userlist.display(),
    );
    let ini = dir.join("pgbouncer.ini");
    write_file(&ini, &ini_text, 0o600, owner)?;
    let (psql_bin, pw) = (bins.psql.clone(), password.clone());
    let spec = ProcessSpec {
        program: bins.pgbouncer.clone(),
        args: vec![ini.clone().into()],
        env: Vec::new(),
        cwd: Some(dir.to_path_buf()),
        owner,
        netns: layout.netns_of(Site::Khartoum),
        log,
        // SIGINT waits for clients to finish; SIGTERM shuts down at once.
        graceful: Signal::SIGTERM,
        start_timeout: Duration::from_secs(30),
        retry_when_log_says: &[],
        ready: Box::new(move || psql(&psql_bin, address, &pw, ADMIN_DB, "SHOW VERSION").map(drop)),
    };
    Ok(PgBouncer {
        component: Component::spawn("khartoum-pgbouncer", Some(Site::Khartoum), address, spec)?,
        ini,
        userlist,
        password,
        psql: bins.psql.clone(),
    })
}
