//! Crash-safe file replacement shared by the connection-string targets: temp file in the same
//! directory, fsync, rename, fsync the directory; the previous version kept as `FILE.prev`.
//! Also what those files share besides: the fencing-generation comment line they carry and
//! the readiness check that a swap will be able to write them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};

use super::dns::StaleGeneration;

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

// ---------------------------------------------------------------------------------------
// The fencing generation in a file: one comment line `<prefix> niledr-generation: N`.

const GENERATION_KEY: &str = "niledr-generation:";
/// Comment syntaxes recognised on a generation line (`#` env/YAML/TOML/shell, `;` ini,
/// `//` JavaScript-like, `--` SQL).
const COMMENT_PREFIXES: [&str; 4] = ["#", ";", "//", "--"];

/// The generation line a file carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationLine {
    /// 0-based line number.
    pub index: usize,
    pub prefix: &'static str,
    pub value: u64,
}

/// `(prefix, value text)` when `line` is a generation comment.
fn generation_comment(line: &str) -> Option<(&'static str, &str)> {
    let l = line.trim();
    COMMENT_PREFIXES.iter().find_map(|p| {
        let rest = l
            .strip_prefix(p)?
            .trim_start()
            .strip_prefix(GENERATION_KEY)?;
        Some((*p, rest.trim()))
    })
}

/// The file's generation line; an unreadable value or a second line is an error (a token
/// that does not decode is not "no token").
pub fn find_generation(path: &Path, text: &str) -> Result<Option<GenerationLine>> {
    let mut found: Option<GenerationLine> = None;
    for (index, line) in text.lines().enumerate() {
        let Some((prefix, v)) = generation_comment(line) else {
            continue;
        };
        let value = v.parse().with_context(|| {
            format!(
                "{}:{}: generation line {line:?} does not hold a number; fix it by hand",
                path.display(),
                index + 1
            )
        })?;
        if let Some(first) = &found {
            bail!(
                "{}: two generation lines ({} and {}); keep one",
                path.display(),
                first.index + 1,
                index + 1
            );
        }
        found = Some(GenerationLine {
            index,
            prefix,
            value,
        });
    }
    Ok(found)
}

/// `text` without its generation line: what compare-and-swaps of the content compare.
pub fn body(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| generation_comment(l).is_none())
        .collect()
}

/// The comment prefix a generation line gets in `path`: that of its current line, else by
/// extension (`.ini` `;`, `.sql` `--`, JavaScript-like `//`, anything else `#`). JSON has no
/// comments and cannot carry one.
pub fn comment_prefix(path: &Path, existing: Option<&GenerationLine>) -> Result<&'static str> {
    if let Some(l) = existing {
        return Ok(l.prefix);
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    Ok(match ext.as_deref() {
        Some("ini") => ";",
        Some("sql") => "--",
        Some("js" | "mjs" | "cjs" | "ts" | "jsonc" | "json5") => "//",
        Some("json") => bail!(
            "{}: JSON has no comments, so the file cannot carry the niledr generation line; use a format with comments (env, ini, YAML, TOML)",
            path.display()
        ),
        _ => "#",
    })
}

/// Refuse (a [`StaleGeneration`]) when the file carries a generation newer than `held`.
pub fn check_not_newer(
    path: &Path,
    line: Option<&GenerationLine>,
    held: Option<u64>,
) -> Result<()> {
    match (line, held) {
        (Some(l), Some(held)) if l.value > held => Err(anyhow::Error::new(StaleGeneration {
            held,
            found: l.value,
            place: format!("{} (line {})", path.display(), l.index + 1),
        })),
        _ => Ok(()),
    }
}

/// What to write when `path`, now holding `current`, is to hold `new_body`: with the
/// generation line set to `held` (or the current line kept as it is when `held` is `None`),
/// where the current file had it, else as the first line. Refuses a stale `held`.
pub fn stamped(path: &Path, current: &str, new_body: &str, held: Option<u64>) -> Result<String> {
    let line = find_generation(path, current)?;
    check_not_newer(path, line.as_ref(), held)?;
    let Some(value) = held.or(line.as_ref().map(|l| l.value)) else {
        return Ok(new_body.to_string());
    };
    let prefix = comment_prefix(path, line.as_ref())?;
    let eol = if new_body.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut lines: Vec<&str> = new_body.split_inclusive('\n').collect();
    // Never after an unterminated last line (it would join it).
    let terminated = lines.iter().take_while(|l| l.ends_with('\n')).count();
    let at = line.map_or(0, |l| l.index).min(terminated);
    let stamp = format!("{prefix} {GENERATION_KEY} {value}{eol}");
    lines.insert(at, &stamp);
    Ok(lines.concat())
}

// ---------------------------------------------------------------------------------------
// Readiness: will a swap be able to replace this file?

/// The file is a regular file (not a symlink, which the rename would replace), readable as
/// text and writable (also by its mode: a read-only file is refused even for root), its
/// directory takes the temp file and `FILE.prev`, and its generation line (if any) is
/// readable. Blocking. Returns what it found.
pub fn ready(path: &Path) -> Result<String> {
    let shown = path.display();
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{shown}: does not exist"),
        Err(e) => bail!("{shown}: cannot be examined: {e}"),
    };
    if meta.file_type().is_symlink() {
        bail!(
            "{shown}: is a symbolic link; the swap would replace the link itself, so name its target instead"
        );
    }
    if !meta.is_file() {
        bail!("{shown}: is not a regular file");
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o222 == 0 {
        bail!("{shown}: is read-only (mode {mode:04o}); the swap rewrites it");
    }
    let text = fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{shown}: not readable as text: {e}"))?;
    OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{shown}: not writable: {e}"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir_writable(&dir).with_context(|| {
        format!(
            "{shown}: its directory cannot take the swap's temp file and {}",
            prev_path(path).display()
        )
    })?;
    let line = find_generation(path, &text)?;
    comment_prefix(path, line.as_ref())?;
    Ok(format!(
        "{shown}: regular file, readable and writable (mode {mode:04o}), directory writable, generation {}",
        line.map_or_else(|| "none yet".to_string(), |l| l.value.to_string())
    ))
}

/// By mode and by creating (then removing) a file there, as the swap will.
fn dir_writable(dir: &Path) -> Result<()> {
    let mode = fs::metadata(dir)
        .with_context(|| format!("examining {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o222 == 0 {
        bail!(
            "{} is read-only (mode {:04o})",
            dir.display(),
            mode & 0o7777
        );
    }
    let probe = temp_path(&dir.join("ready"));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("{} is not writable", dir.display()))?;
    fs::remove_file(&probe).with_context(|| format!("removing {}", probe.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_line_is_found_replaced_in_place_and_stripped() {
        let p = Path::new("/etc/app/db.env");
        let text = "A=1\n# niledr-generation: 7\nB=2\n";
        let line = find_generation(p, text).unwrap().unwrap();
        assert_eq!((line.index, line.prefix, line.value), (1, "#", 7));
        assert_eq!(body(text), "A=1\nB=2\n");
        assert_eq!(
            stamped(p, text, "A=3\nB=2\n", Some(8)).unwrap(),
            "A=3\n# niledr-generation: 8\nB=2\n"
        );
        // `None` keeps the current value; no line and no generation adds none.
        assert_eq!(
            stamped(p, text, "A=3\n", None).unwrap(),
            "A=3\n# niledr-generation: 7\n"
        );
        assert_eq!(stamped(p, "A=1\n", "A=3", None).unwrap(), "A=3");
        // New line first; never glued to an unterminated last line.
        assert_eq!(
            stamped(p, "A=1", "A=3", Some(1)).unwrap(),
            "# niledr-generation: 1\nA=3"
        );
        let e = stamped(p, text, "A=3\n", Some(6)).unwrap_err();
        assert!(e.downcast_ref::<StaleGeneration>().is_some(), "{e:#}");
        assert!(format!("{e}").contains("generation 6 is older than generation 7"));
    }

    #[test]
    fn comment_prefix_follows_the_file() {
        let ini = Path::new("pgbouncer.ini");
        assert_eq!(
            stamped(ini, "", "[databases]\n", Some(2)).unwrap(),
            "; niledr-generation: 2\n[databases]\n"
        );
        let kept = "[x]\n# niledr-generation: 1\n";
        assert_eq!(find_generation(ini, kept).unwrap().unwrap().prefix, "#");
        assert_eq!(comment_prefix(Path::new("a.sql"), None).unwrap(), "--");
        assert!(comment_prefix(Path::new("a.json"), None).is_err());
        assert!(find_generation(ini, "; niledr-generation: x\n").is_err());
        assert!(find_generation(ini, "# niledr-generation: 1\n; niledr-generation: 2\n").is_err());
    }
}
