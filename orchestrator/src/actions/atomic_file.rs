//! Crash-safe file replacement shared by the connection-string targets: temp file in the same
//! directory, fsync, rename, fsync the directory; the previous version kept as `FILE.prev`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// Where the version before the last swap is kept.
pub fn prev_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    path.with_file_name(name)
}

/// The file's content, `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::from(e).context(format!("reading {}", path.display()))),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(
        ".{name}.niledr-tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Replace `path` with `contents` atomically: readers see the old or the new file, never a
/// mix, and after a crash one of them is on disk. Mode and owner of an existing file are kept
/// (a server running as another user must still read it). Blocking: call from
/// `spawn_blocking`.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic_like(path, contents, path)
}

/// `write_atomic`, taking mode and owner from `template` (if it exists) instead.
fn write_atomic_like(path: &Path, contents: &[u8], template: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing = fs::metadata(template).ok();
    let mode = existing
        .as_ref()
        .map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let tmp = temp_path(path);
    let written = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        if let Some(m) = &existing {
            // Only root may give a file away; as its owner we keep the same uid anyway.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", tmp.display()))?;
        f.write_all(contents)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync directory {}", dir.display()))
}

/// Keep `old` as `FILE.prev` (same mode and owner as `FILE`: it may hold secrets too), then
/// write `new` to `FILE`, both atomically.
pub fn replace_keeping_prev(path: &Path, old: &str, new: &str) -> Result<()> {
    write_atomic_like(&prev_path(path), old.as_bytes(), path)?;
    write_atomic(path, new.as_bytes())
}
