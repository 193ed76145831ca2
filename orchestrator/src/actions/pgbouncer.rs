//! Connection-string swap, PgBouncer target: rewrite one `[databases]` entry of the ini file
//! atomically (fenced by the generation comment line the ini carries), `RELOAD` on the admin
//! console, and check with `SHOW DATABASES` that PgBouncer now points where we said; any
//! failure puts the previous file back. Also its readiness check.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::time::Instant;

use super::atomic_file::{
    body, check_not_newer, find_generation, prev_path, read_optional, ready as file_ready,
    replace_keeping_prev, stamped, write_atomic,
};
use super::postgres::connect_with;

/// How to reach PgBouncer's admin console (database `pgbouncer`, a user in `admin_users`).
#[derive(Clone)]
pub struct PgBouncerAdmin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for PgBouncerAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PgBouncerAdmin({}@{}:{})",
            self.user, self.host, self.port
        )
    }
}

impl PgBouncerAdmin {
    /// The admin console speaks only the simple query protocol, which `sqlx::raw_sql` uses.
    /// sqlx's default `extra_float_digits` startup parameter is one PgBouncer rejects
    /// unless `ignore_startup_parameters` lists it, so it is not sent.
    async fn connect(&self) -> Result<PgConnection> {
        let opts = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .password(&self.password)
            .database("pgbouncer")
            .extra_float_digits(None)
            .statement_cache_capacity(0)
            .disable_statement_logging();
        connect_with(
            &opts,
            &format!("PgBouncer admin console {}:{}", self.host, self.port),
        )
        .await
    }
}

/// One row of `SHOW DATABASES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownDatabase {
    pub name: String,
    pub host: Option<String>,
    pub port: i32,
    pub database: Option<String>,
}

/// `SHOW DATABASES` row for `db` (what PgBouncer actually uses, the in-doubt check).
pub async fn show_database(admin: &PgBouncerAdmin, db: &str) -> Result<Option<ShownDatabase>> {
    let mut c = admin.connect().await?;
    let rows: Vec<PgRow> = sqlx::raw_sql("SHOW DATABASES")
        .fetch_all(&mut c)
        .await
        .context("PgBouncer: SHOW DATABASES")?;
    let _ = c.close().await;
    for r in rows {
        let name: String = r.try_get("name").context("SHOW DATABASES: name")?;
        if name == db {
            return Ok(Some(ShownDatabase {
                name,
                host: r.try_get("host").context("SHOW DATABASES: host")?,
                port: r.try_get("port").context("SHOW DATABASES: port")?,
                database: r.try_get("database").context("SHOW DATABASES: database")?,
            }));
        }
    }
    Ok(None)
}

async fn reload(admin: &PgBouncerAdmin) -> Result<Duration> {
    let t0 = Instant::now();
    let mut c = admin.connect().await?;
    sqlx::raw_sql("RELOAD")
        .execute(&mut c)
        .await
        .context("PgBouncer: RELOAD")?;
    let _ = c.close().await;
    Ok(t0.elapsed())
}

// ---------------------------------------------------------------------------------------
// The ini file

fn tokens(value: &str) -> Vec<String> {
    let mut t: Vec<String> = value.split_whitespace().map(str::to_string).collect();
    t.sort();
    t
}

/// Same entry, ignoring spacing and the order of `key=value` pairs.
fn same_entry(a: &str, b: &str) -> bool {
    tokens(a) == tokens(b)
}

fn param<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    value
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// `(line index, value)` of `db`'s entry in the `[databases]` section.
fn find_entry(ini: &str, db: &str) -> Option<(usize, String)> {
    let mut in_databases = false;
    for (i, line) in ini.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with(';') || l.starts_with('#') {
            continue;
        }
        if let Some(section) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            in_databases = section.trim().eq_ignore_ascii_case("databases");
            continue;
        }
        if !in_databases {
            continue;
        }
        if let Some((k, v)) = l.split_once('=')
            && k.trim().trim_matches('"') == db
        {
            return Some((i, v.trim().to_string()));
        }
    }
    None
}

/// The ini text with `db`'s entry set to `value` (every other byte unchanged).
fn set_entry(ini: &str, db: &str, value: &str) -> Result<String> {
    let (idx, _) = find_entry(ini, db).with_context(|| format!("no [databases] entry {db:?}"))?;
    let mut out = String::with_capacity(ini.len() + value.len());
    for (i, line) in ini.split_inclusive('\n').enumerate() {
        if i == idx {
            let eol = &line[line.trim_end_matches(['\r', '\n']).len()..];
            out.push_str(&format!("{db} = {value}{eol}"));
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// The `[databases]` entry of `db` in `ini` (in-doubt check on the file side).
pub fn read_entry(ini: &Path, db: &str) -> Result<Option<String>> {
    let text = read_optional(ini)?.with_context(|| format!("{} does not exist", ini.display()))?;
    Ok(find_entry(&text, db).map(|(_, v)| v))
}

// ---------------------------------------------------------------------------------------
// swap / rollback

/// What a swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBouncerSwapOutcome {
    pub database: String,
    pub before: String,
    pub after: String,
    /// File and PgBouncer already held the new entry: nothing written, no reload.
    pub already_done: bool,
    /// What `SHOW DATABASES` says afterwards.
    pub shown: ShownDatabase,
    pub reload_took: Option<Duration>,
    pub previous: PathBuf,
    pub took: Duration,
}

fn shows(shown: &Option<ShownDatabase>, entry: &str) -> bool {
    let Some(s) = shown else { return false };
    let host_ok = param(entry, "host").is_none_or(|h| s.host.as_deref() == Some(h));
    let port_ok = param(entry, "port")
        .and_then(|p| p.parse::<i32>().ok())
        .is_none_or(|p| s.port == p);
    host_ok && port_ok
}

/// Reload and wait (briefly) until `SHOW DATABASES` reflects `entry`.
async fn reload_and_verify(
    admin: &PgBouncerAdmin,
    db: &str,
    entry: &str,
) -> Result<(Duration, ShownDatabase)> {
    let took = reload(admin).await?;
    let last = std::sync::Mutex::new(None);
    let r = crate::util::poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let shown = show_database(admin, db).await?;
            let ok = shows(&shown, entry);
            if let Ok(mut l) = last.lock() {
                *l = shown;
            }
            anyhow::Ok(ok)
        },
    )
    .await;
    let shown = last.into_inner().ok().flatten();
    match r {
        Ok(()) => Ok((took, shown.context("checked above")?)),
        Err(Some(e)) => Err(e),
        Err(None) => {
            bail!("PgBouncer still shows {shown:?} for {db:?} after RELOAD; expected {entry:?}")
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("file task failed: {e}"))?
}

/// Point PgBouncer's database `db` at `new` (e.g. `host=127.0.2.1 port=5432 dbname=postgres`):
/// refused unless the entry is `expected_old` (compare-and-swap; spacing and pair order do
/// not matter). Already `new` in the file → only checks PgBouncer uses it (reloading if a
/// crash came between rename and RELOAD). If RELOAD or the check fails, the previous file is
/// restored and reloaded before the error is returned.
///
/// With `generation: Some(n)` an ini carrying a newer generation line is refused untouched
/// ([`super::dns::StaleGeneration`]) and the written ini carries `n` (raised even when the
/// entry was already `new`); `None` keeps whatever line the ini has.
pub async fn swap(
    ini: &Path,
    db: &str,
    expected_old: &str,
    new: &str,
    admin: &PgBouncerAdmin,
    generation: Option<u64>,
) -> Result<PgBouncerSwapOutcome> {
    let t0 = Instant::now();
    let path = ini.to_path_buf();
    let (text, line) = blocking({
        let p = path.clone();
        move || {
            let text =
                read_optional(&p)?.with_context(|| format!("{} does not exist", p.display()))?;
            let line = find_generation(&p, &text)?;
            check_not_newer(&p, line.as_ref(), generation)?;
            Ok((text, line.map(|l| l.value)))
        }
    })
    .await?;
    let (_, current) = find_entry(&text, db)
        .with_context(|| format!("{}: no [databases] entry {db:?}", ini.display()))?;
    let outcome = |already_done, reload_took, shown| PgBouncerSwapOutcome {
        database: db.to_string(),
        before: current.clone(),
        after: new.to_string(),
        already_done,
        shown,
        reload_took,
        previous: prev_path(&path),
        took: t0.elapsed(),
    };
    if same_entry(&current, new) {
        if generation.is_some() && line != generation {
            // Raise the generation line only; `INI.prev` keeps the version before the swap.
            let restamped = stamped(&path, &text, &body(&text), generation)?;
            let p = path.clone();
            blocking(move || write_atomic(&p, restamped.as_bytes())).await?;
        }
        let shown = show_database(admin, db).await?;
        if shows(&shown, new) {
            return Ok(outcome(true, None, shown.context("checked above")?));
        }
        // In doubt: the file was swapped but PgBouncer was not reloaded.
        let (took, shown) = reload_and_verify(admin, db, new).await?;
        return Ok(outcome(false, Some(took), shown));
    }
    if !same_entry(&current, expected_old) {
        bail!(
            "{}: [databases] {db} = {current:?}, expected {expected_old:?} (changed by someone else?); not swapped",
            ini.display()
        );
    }
    let new_text = stamped(&path, &text, &body(&set_entry(&text, db, new)?), generation)?;
    blocking({
        let (p, o, n) = (path.clone(), text.clone(), new_text);
        move || replace_keeping_prev(&p, &o, &n)
    })
    .await?;
    match reload_and_verify(admin, db, new).await {
        Ok((took, shown)) => Ok(outcome(false, Some(took), shown)),
        Err(e) => Err(undo(ini, text, admin, e).await),
    }
}

/// A swap whose RELOAD or check failed: put the file as it was (`text`) back and reload.
async fn undo(ini: &Path, text: String, admin: &PgBouncerAdmin, e: anyhow::Error) -> anyhow::Error {
    let restored = blocking({
        let p = ini.to_path_buf();
        move || write_atomic(&p, text.as_bytes())
    })
    .await;
    let reloaded = reload(admin).await;
    e.context(format!(
        "{}: swap undone ({}; RELOAD after restore: {})",
        ini.display(),
        match restored {
            Ok(()) => "previous file restored".to_string(),
            Err(r) => format!("RESTORE FAILED: {r:#}"),
        },
        match reloaded {
            Ok(_) => "ok".to_string(),
            Err(r) => format!("{r:#}"),
        }
    ))
}

/// Undo `swap`: the entry from the kept previous file (`INI.prev`) goes back, refused unless
/// the entry still is `swapped_to`. Repeating it is a no-op (then `INI.prev` holds `swapped_to`).
/// Same `generation` as the swap: an ini carrying a newer one is refused untouched.
pub async fn rollback(
    ini: &Path,
    db: &str,
    swapped_to: &str,
    admin: &PgBouncerAdmin,
    generation: Option<u64>,
) -> Result<PgBouncerSwapOutcome> {
    let (current, prev) = blocking({
        let p = ini.to_path_buf();
        let db = db.to_string();
        move || {
            let cur = read_entry(&p, &db)?;
            let prev =
                read_optional(&prev_path(&p))?.and_then(|t| find_entry(&t, &db).map(|(_, v)| v));
            Ok((cur, prev))
        }
    })
    .await?;
    let current =
        current.with_context(|| format!("{}: no [databases] entry {db:?}", ini.display()))?;
    let prev = prev.with_context(|| {
        format!(
            "{}: no previous version of entry {db:?} to roll back to",
            prev_path(ini).display()
        )
    })?;
    if same_entry(&current, swapped_to) && !same_entry(&prev, swapped_to) {
        return swap(ini, db, swapped_to, &prev, admin, generation).await;
    }
    if same_entry(&prev, swapped_to) {
        // Rolled back already: make sure PgBouncer uses the restored entry.
        return swap(ini, db, swapped_to, &current, admin, generation).await;
    }
    bail!(
        "{}: [databases] {db} = {current:?} is not the swapped-to entry {swapped_to:?}; not rolled back",
        ini.display()
    )
}

// ---------------------------------------------------------------------------------------
// readiness

/// Before the point of no return: will `swap` work? The ini is a writable regular file in a
/// writable directory with a readable generation line (as for a connection-string file), it
/// has the `[databases]` entry `db`, and the admin console answers with `SHOW DATABASES`
/// listing `db`.
pub async fn ready(ini: &Path, db: &str, admin: &PgBouncerAdmin) -> Result<String> {
    let (file, entry) = blocking({
        let (p, db) = (ini.to_path_buf(), db.to_string());
        move || {
            let file = file_ready(&p)?;
            let entry = read_entry(&p, &db)?
                .with_context(|| format!("{}: no [databases] entry {db:?}", p.display()))?;
            Ok((file, entry))
        }
    })
    .await?;
    let shown = show_database(admin, db).await?.with_context(|| {
        format!(
            "PgBouncer {}:{}: SHOW DATABASES does not list {db:?} (is the ini at {} the one it runs with, and reloaded?)",
            admin.host,
            admin.port,
            ini.display()
        )
    })?;
    Ok(format!(
        "{file}; [databases] {db} = {entry}; PgBouncer {}:{} lists it ({}:{})",
        admin.host,
        admin.port,
        shown.host.as_deref().unwrap_or("-"),
        shown.port
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "[databases]\n; comment\nnilecare = host=127.0.1.1 port=5432 dbname=postgres\nother=host=x\n\n[pgbouncer]\nlisten_port = 6432\n";

    #[test]
    fn finds_and_rewrites_only_the_entry() {
        assert_eq!(
            find_entry(INI, "nilecare").map(|(_, v)| v).as_deref(),
            Some("host=127.0.1.1 port=5432 dbname=postgres")
        );
        assert!(find_entry(INI, "listen_port").is_none());
        let out = set_entry(INI, "nilecare", "host=127.0.2.1 port=5432 dbname=postgres")
            .unwrap_or_default();
        assert_eq!(out, INI.replace("host=127.0.1.1", "host=127.0.2.1"));
        assert!(same_entry("port=1  host=a", "host=a port=1"));
        assert_eq!(param("host=a port=7", "port"), Some("7"));
    }
}
