//! Connection-string swap, file target: compare-and-swap of a whole file (atomic rename,
//! previous version kept as `FILE.prev`), then an optional reload command; the PgBouncer
//! target lives in `pgbouncer.rs`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::time::Instant;

use super::atomic_file::{prev_path, read_optional, replace_keeping_prev, write_atomic};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the file holds now, relative to a planned swap (the in-doubt check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Old,
    New,
    Missing,
    /// Neither: someone else changed it.
    Unexpected(String),
}

pub fn observe_file(path: &Path, expected_old: &str, new: &str) -> Result<FileState> {
    Ok(match read_optional(path)? {
        None => FileState::Missing,
        Some(c) if c == new => FileState::New,
        Some(c) if c == expected_old => FileState::Old,
        Some(c) => FileState::Unexpected(c),
    })
}

/// A reload command that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRun {
    pub command: Vec<String>,
    pub took: Duration,
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSwapOutcome {
    pub path: PathBuf,
    /// The file already held the new content: not written again, `FILE.prev` untouched.
    pub already_done: bool,
    /// Where the version before this swap is kept.
    pub previous: PathBuf,
    pub reload: Option<ReloadRun>,
    pub took: Duration,
}

/// Run `argv` (no shell) to completion within `RELOAD_TIMEOUT`; non-zero exit is an error.
pub async fn run_reload(argv: &[String]) -> Result<ReloadRun> {
    let t0 = Instant::now();
    let (program, args) = argv.split_first().context("empty reload command")?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting reload command {argv:?}"))?;
    let out = tokio::time::timeout(RELOAD_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("reload command {argv:?} did not finish within {RELOAD_TIMEOUT:?}"))?
        .with_context(|| format!("reload command {argv:?}"))?;
    if !out.status.success() {
        bail!(
            "reload command {argv:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(ReloadRun {
        command: argv.to_vec(),
        took: t0.elapsed(),
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("file task failed: {e}"))?
}

/// Swap `path` from `expected_old` to `new`: refused unless the file holds exactly
/// `expected_old` (or already `new`: then a no-op, reload not rerun). The old content is
/// kept as `FILE.prev`. If the reload command fails, the old content is put back (and the
/// reload tried again) before the error is returned: no half-applied swap.
pub async fn swap_file(
    path: &Path,
    expected_old: &str,
    new: &str,
    reload: Option<&[String]>,
) -> Result<FileSwapOutcome> {
    let t0 = Instant::now();
    let p = path.to_path_buf();
    let state = blocking({
        let (p, o, n) = (p.clone(), expected_old.to_string(), new.to_string());
        move || observe_file(&p, &o, &n)
    })
    .await?;
    let outcome = |already_done, reload| FileSwapOutcome {
        path: p.clone(),
        already_done,
        previous: prev_path(&p),
        reload,
        took: t0.elapsed(),
    };
    match state {
        FileState::New => return Ok(outcome(true, None)),
        FileState::Old => {}
        FileState::Missing => bail!("{}: does not exist; nothing to swap", path.display()),
        FileState::Unexpected(_) => bail!(
            "{}: content is neither the expected old value nor the new one (changed by someone else?); not swapped",
            path.display()
        ),
    }
    blocking({
        let (p, o, n) = (p.clone(), expected_old.to_string(), new.to_string());
        move || replace_keeping_prev(&p, &o, &n)
    })
    .await?;
    let Some(argv) = reload else {
        return Ok(outcome(false, None));
    };
    match run_reload(argv).await {
        Ok(run) => Ok(outcome(false, Some(run))),
        Err(e) => {
            let restored = blocking({
                let (p, o) = (p.clone(), expected_old.to_string());
                move || write_atomic(&p, o.as_bytes())
            })
            .await;
            let reloaded = run_reload(argv).await;
            Err(e.context(format!(
                "{}: swap undone ({}; reload after restore: {})",
                path.display(),
                match restored {
                    Ok(()) => "previous content restored".to_string(),
                    Err(r) => format!("RESTORE FAILED: {r:#}"),
                },
                match reloaded {
                    Ok(_) => "ok".to_string(),
                    Err(r) => format!("{r:#}"),
                }
            )))
        }
    }
}

/// Undo `swap_file`: put `FILE.prev` back, refused unless the file still holds `swapped_to`.
/// Afterwards `FILE.prev` holds `swapped_to`, which is how a repeated rollback recognises
/// that it already happened (no-op).
pub async fn rollback_file(
    path: &Path,
    swapped_to: &str,
    reload: Option<&[String]>,
) -> Result<FileSwapOutcome> {
    let t0 = Instant::now();
    let (current, prev) = blocking({
        let p = path.to_path_buf();
        move || Ok((read_optional(&p)?, read_optional(&prev_path(&p))?))
    })
    .await?;
    let prev = prev.with_context(|| {
        format!(
            "{}: no previous version to roll back to",
            prev_path(path).display()
        )
    })?;
    if current.as_deref() == Some(swapped_to) && prev != swapped_to {
        return swap_file(path, swapped_to, &prev, reload).await;
    }
    if current.is_some() && prev == swapped_to {
        return Ok(FileSwapOutcome {
            path: path.to_path_buf(),
            already_done: true,
            previous: prev_path(path),
            reload: None,
            took: t0.elapsed(),
        });
    }
    bail!(
        "{}: does not hold the swapped-to content (changed by someone else?); not rolled back",
        path.display()
    )
}
