//! Connection-string swap, file target: compare-and-swap of a whole file (atomic rename,
//! previous version kept as `FILE.prev`) fenced by the generation comment line it carries,
//! then an optional reload command; and its readiness check. The PgBouncer target lives in
//! `pgbouncer.rs`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::time::Instant;

use super::atomic_file::{
    body, check_not_newer, find_generation, prev_path, read_optional, ready, replace_keeping_prev,
    stamped, write_atomic,
};
pub use super::dns::StaleGeneration;

const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the file holds now, relative to a planned swap (the in-doubt check). Contents are
/// compared without their generation line.
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
        Some(c) if body(&c) == body(new) => FileState::New,
        Some(c) if body(&c) == body(expected_old) => FileState::Old,
        Some(c) => FileState::Unexpected(c),
    })
}

/// What `swap_file` will do to a file holding `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Content and generation already right.
    Done,
    /// Content already right, generation line raised to the execution's (no reload).
    Restamp(String),
    /// Write this (the old text kept as `FILE.prev`), then reload.
    Swap(String),
}

fn plan(
    path: &Path,
    text: &str,
    expected_old: &str,
    new: &str,
    generation: Option<u64>,
) -> Result<Plan> {
    let line = find_generation(path, text)?;
    check_not_newer(path, line.as_ref(), generation)?;
    let current = body(text);
    if current == body(new) {
        return Ok(match generation {
            Some(g) if line.map(|l| l.value) != Some(g) => {
                Plan::Restamp(stamped(path, text, &current, generation)?)
            }
            _ => Plan::Done,
        });
    }
    if current != body(expected_old) {
        bail!(
            "{}: content is neither the expected old value nor the new one (changed by someone else?); not swapped",
            path.display()
        );
    }
    Ok(Plan::Swap(stamped(path, text, &body(new), generation)?))
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
///
/// Contents are compared without their generation line (`# niledr-generation: N`, see
/// `docs/config.md`). With `generation: Some(n)` a file carrying a newer generation is
/// refused untouched ([`StaleGeneration`]) and the written file carries `n` (raised even when
/// the content was already `new`); `None` keeps whatever line the file has.
pub async fn swap_file(
    path: &Path,
    expected_old: &str,
    new: &str,
    reload: Option<&[String]>,
    generation: Option<u64>,
) -> Result<FileSwapOutcome> {
    let t0 = Instant::now();
    let p = path.to_path_buf();
    let (text, plan) = blocking({
        let (p, o, n) = (p.clone(), expected_old.to_string(), new.to_string());
        move || {
            let text = read_optional(&p)?
                .with_context(|| format!("{}: does not exist; nothing to swap", p.display()))?;
            let plan = plan(&p, &text, &o, &n, generation)?;
            Ok((text, plan))
        }
    })
    .await?;
    let outcome = |already_done, reload| FileSwapOutcome {
        path: p.clone(),
        already_done,
        previous: prev_path(&p),
        reload,
        took: t0.elapsed(),
    };
    let new_text = match plan {
        Plan::Done => return Ok(outcome(true, None)),
        Plan::Restamp(t) => {
            // `FILE.prev` keeps the version before the swap, for the rollback.
            let p = p.clone();
            blocking(move || write_atomic(&p, t.as_bytes())).await?;
            return Ok(outcome(true, None));
        }
        Plan::Swap(t) => t,
    };
    blocking({
        let (p, o) = (p.clone(), text.clone());
        move || replace_keeping_prev(&p, &o, &new_text)
    })
    .await?;
    let Some(argv) = reload else {
        return Ok(outcome(false, None));
    };
    match run_reload(argv).await {
        Ok(run) => Ok(outcome(false, Some(run))),
        Err(e) => {
            let restored = blocking({
                let p = p.clone();
                move || write_atomic(&p, text.as_bytes())
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
/// that it already happened (no-op). Same `generation` as the swap: a file carrying a newer
/// one is refused untouched.
pub async fn rollback_file(
    path: &Path,
    swapped_to: &str,
    reload: Option<&[String]>,
    generation: Option<u64>,
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
    let current = current.with_context(|| format!("{}: does not exist", path.display()))?;
    check_not_newer(path, find_generation(path, &current)?.as_ref(), generation)?;
    let (current, prev, swapped_to) = (body(&current), body(&prev), body(swapped_to));
    if current == swapped_to && prev != swapped_to {
        return swap_file(path, &swapped_to, &prev, reload, generation).await;
    }
    if prev == swapped_to {
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

/// Before the point of no return: will `swap_file` be able to replace `path`? The file
/// exists, is a regular file, readable and writable, its directory takes the temp file and
/// `FILE.prev`, and its generation line (if any) is readable.
pub async fn ready_file(path: &Path) -> Result<String> {
    let p = path.to_path_buf();
    blocking(move || ready(&p)).await
}
