//! Small shared helpers: readiness polling, log tails, random secrets, file writing with owners.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Poll `predicate` until it returns `Ok(true)` or `deadline` passes.
///
/// Polls start at 10 ms and back off to 100 ms; there is never a long bare sleep.
/// `Ok(false)` means "not yet"; an `Err` is fatal and returned at once (use it when
/// the thing being waited for can no longer happen, e.g. the process exited).
pub fn wait_until(deadline: Instant, mut predicate: impl FnMut() -> Result<bool>) -> Result<()> {
    let mut pause = Duration::from_millis(10);
    loop {
        if predicate()? {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("timed out");
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The last `lines` lines of a (log) file, or a note saying why it could not be read.
pub fn log_tail(path: &Path, lines: usize) -> String {
    const MAX: u64 = 16 * 1024;
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf)
}

/// A random lowercase hex string (safe in every config syntax we write), `bytes` bytes of entropy.
pub fn random_hex(bytes: usize) -> Result<String> {
    Ok(random_bytes(bytes)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Who owns the files of a component that must not run as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Create `dir` (and parents) with `mode`, owned by `owner` when given.
pub fn make_dir(dir: &Path, mode: u32, owner: Option<Owner>) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dir.display()))?;
    chown(dir, owner)
}

/// Write `contents` to a new file with `mode`, owned by `owner` when given.
pub fn write_file(path: &Path, contents: &str, mode: u32, owner: Option<Owner>) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    chown(path, owner)
}

/// Append `contents` to an existing file.
pub fn append_file(path: &Path, contents: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("appending to {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))
}

fn chown(path: &Path, owner: Option<Owner>) -> Result<()> {
    if let Some(o) = owner {
        std::os::unix::fs::chown(path, Some(o.uid), Some(o.gid))
            .with_context(|| format!("chown {} to {}:{}", path.display(), o.uid, o.gid))?;
    }
    Ok(())
}

/// Run a short-lived command to completion with its output appended to `log`;
/// on failure the error names `what` and carries the log's tail.
pub fn run_logged(what: &str, mut cmd: Command, log: &Path, timeout: Duration) -> Result<()> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    let err = out.try_clone().context("cloning log handle")?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{what}: spawning {:?}", cmd.get_program()))?;
    let deadline = Instant::now() + timeout;
    let mut status = None;
    let waited = wait_until(deadline, || {
        status = child.try_wait().context("waiting for child")?;
        Ok(status.is_some())
    });
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "{what}: did not finish within {timeout:?}; log {}:\n{}",
            log.display(),
            log_tail(log, 20)
        );
    }
    match status {
        Some(s) if s.success() => Ok(()),
        other => bail!(
            "{what}: failed ({}); log {}:\n{}",
            other.map_or("unknown status".to_string(), |s| s.to_string()),
            log.display(),
            log_tail(log, 20)
        ),
    }
}

/// Output of a command run to completion with a time limit.
#[derive(Debug)]
pub struct Captured {
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` with `stdin` fed to it, capturing stdout/stderr; kill it after `timeout`
/// (a SIGSTOPped server would otherwise hang a client forever).
pub fn run_capture(
    what: &str,
    mut cmd: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Captured> {
    use std::process::Stdio;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{what}: spawning {:?}", cmd.get_program()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("{what}: writing stdin"))?;
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut status = None;
    let waited = wait_until(Instant::now() + timeout, || {
        status = child.try_wait().context("try_wait")?;
        Ok(status.is_some())
    });
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(s) => Ok(Captured {
            success: s.success(),
            status: s.to_string(),
            stdout,
            stderr,
        }),
        None => bail!(
            "{what}: no answer within {timeout:?} (stderr: {})",
            stderr.trim()
        ),
    }
}

/// Refuse paths that would need quoting inside the configs and shell commands we generate.
pub fn check_plain_path(path: &Path) -> Result<()> {
    let s = path
        .to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))?;
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, '\'' | '"' | '$' | '`' | '\\' | '\n' | ';' | '#' | ' '))
    {
        bail!("path {s:?} contains {c:?}; use a plain directory name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }
}
