//! A cold site's health is its backups: the age of the newest base backup, of the WAL
//! archive's last segment (the cold site's RPO right now) and of the last restore drill, each
//! against an objective from the config. `scan` reads the directories (on the watcher's own
//! thread, so a slow mount delays nothing else); `judge` is pure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use niledr_probes::Status;

/// `[sites.X] max_*_age`: none set means the age is shown but never degrades the site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Objectives {
    pub max_base_backup_age: Option<Duration>,
    pub max_wal_archive_age: Option<Duration>,
    pub max_restore_test_age: Option<Duration>,
}

/// What is on disk: the newest base backup and the newest archived WAL segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// `None`: no `backup_dir` configured. `Err`: it cannot be read.
    pub base_backup: Option<Result<Option<(PathBuf, jiff::Timestamp)>, String>>,
    pub wal_segment: Option<Result<Option<(String, jiff::Timestamp)>, String>>,
}

/// The last finished restore drill of the site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreTest {
    pub run: String,
    pub drill: String,
    pub at: jiff::Timestamp,
    pub verdict: Option<String>,
}

/// A cold site's freshness as judged at `checked_at`.
#[derive(Clone, Debug, PartialEq)]
pub struct Freshness {
    pub site: String,
    pub scan: Scan,
    pub restore: Option<RestoreTest>,
    pub objectives: Objectives,
    pub checked_at: jiff::Timestamp,
    pub status: Status,
    pub reason: String,
}

impl Freshness {
    pub fn base_backup_age(&self) -> Option<Duration> {
        let (_, at) = self.scan.base_backup.as_ref()?.as_ref().ok()?.as_ref()?;
        Some(age(self.checked_at, *at))
    }

    pub fn wal_archive_age(&self) -> Option<Duration> {
        let (_, at) = self.scan.wal_segment.as_ref()?.as_ref().ok()?.as_ref()?;
        Some(age(self.checked_at, *at))
    }
}

fn age(now: jiff::Timestamp, then: jiff::Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(now.as_millisecond() - then.as_millisecond()).unwrap_or(0))
}

fn mtime(p: &Path) -> Option<jiff::Timestamp> {
    let t = std::fs::metadata(p).ok()?.modified().ok()?;
    jiff::Timestamp::try_from(t).ok()
}

/// A plain-format base backup is a directory holding `backup_manifest` (written last) or
/// `backup_label`; a tar-format one a `base.tar*` file. Its time is that file's mtime.
fn backup_time(dir: &Path) -> Option<(PathBuf, jiff::Timestamp)> {
    for marker in ["backup_manifest", "backup_label"] {
        if let Some(t) = mtime(&dir.join(marker)) {
            return Some((dir.to_path_buf(), t));
        }
    }
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("base.tar"))
        .filter_map(|e| mtime(&e.path()).map(|t| (dir.to_path_buf(), t)))
        .max_by_key(|(_, t)| *t)
}

/// The newest base backup in `dir`: `dir` itself, or any of its immediate subdirectories
/// (one per backup, as backup tools lay them out).
pub fn newest_base_backup(dir: &Path) -> Result<Option<(PathBuf, jiff::Timestamp)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut best = backup_time(dir);
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if let Some(found) = backup_time(&p).filter(|_| p.is_dir())
            && best.as_ref().is_none_or(|(_, t)| found.1 > *t)
        {
            best = Some(found);
        }
    }
    Ok(best)
}

/// A WAL segment's file name: 24 hex digits, optionally compressed (`.gz`, `.zst`, …) or
/// `.partial`; timeline history and backup history files are not segments.
fn is_segment(name: &str) -> bool {
    name.len() >= 24
        && name.as_bytes()[..24].iter().all(u8::is_ascii_hexdigit)
        && !name.contains(".history")
        && !name.contains(".backup")
}

/// The newest archived WAL segment in `dir` (by modification time).
pub fn newest_segment(dir: &Path) -> Result<Option<(String, jiff::Timestamp)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_segment(&name) {
                return None;
            }
            let t = e.metadata().ok()?.modified().ok()?;
            Some((name, jiff::Timestamp::try_from(t).ok()?))
        })
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0))))
}

pub fn scan(backup_dir: Option<&Path>, wal_archive: Option<&Path>) -> Scan {
    Scan {
        base_backup: backup_dir.map(newest_base_backup),
        wal_segment: wal_archive.map(newest_segment),
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The site's status from what is on disk and the last restore drill, naming every objective
/// that is exceeded. A backup directory that cannot be read, or holds no base backup, is
/// `down` (the site could not be activated); an exceeded objective is `degraded`.
pub fn judge(
    now: jiff::Timestamp,
    scan: &Scan,
    restore: Option<&RestoreTest>,
    obj: &Objectives,
) -> (Status, String) {
    let mut down = Vec::new();
    let mut degraded = Vec::new();
    let mut fine = Vec::new();
    let check = |what: &str, at: jiff::Timestamp, max: Option<Duration>, key: &str| {
        let a = age(now, at);
        match max {
            Some(m) if a > m => Err(format!(
                "{what} is {} old, over {key} {}",
                human(a),
                human(m)
            )),
            _ => Ok(format!("{what} {} old", human(a))),
        }
    };
    let mut verdicts = Vec::new();
    match &scan.base_backup {
        None => {}
        Some(Err(e)) => down.push(format!("base backups: {e}")),
        Some(Ok(None)) => down.push("no base backup in backup_dir".to_string()),
        Some(Ok(Some((_, at)))) => verdicts.push(check(
            "base backup",
            *at,
            obj.max_base_backup_age,
            "max_base_backup_age",
        )),
    }
    match &scan.wal_segment {
        None => {}
        Some(Err(e)) => down.push(format!("WAL archive: {e}")),
        Some(Ok(None)) => degraded.push("the WAL archive holds no segment".to_string()),
        Some(Ok(Some((_, at)))) => verdicts.push(check(
            "last archived WAL segment",
            *at,
            obj.max_wal_archive_age,
            "max_wal_archive_age",
        )),
    }
    match (restore, obj.max_restore_test_age) {
        (Some(r), max) => verdicts.push(check(
            "last restore drill",
            r.at,
            max,
            "max_restore_test_age",
        )),
        (None, Some(_)) => {
            degraded.push("no restore drill has finished yet (max_restore_test_age)".to_string())
        }
        (None, None) => {}
    }
    for v in verdicts {
        match v {
            Ok(f) => fine.push(f),
            Err(d) => degraded.push(d),
        }
    }
    if !down.is_empty() {
        down.extend(degraded);
        return (Status::Down, down.join("; "));
    }
    if !degraded.is_empty() {
        return (Status::Degraded, degraded.join("; "));
    }
    (Status::Up, fine.join(", "))
}

/// The sites whose backups are watched: any with `backup_dir` or `wal_archive`.
pub fn watched(config: &crate::config::Config) -> Vec<(String, Option<PathBuf>, Option<PathBuf>)> {
    config
        .sites
        .values()
        .filter(|s| s.backup_dir.is_some() || s.wal_archive.is_some())
        .map(|s| (s.id.clone(), s.backup_dir.clone(), s.wal_archive.clone()))
        .collect()
}

/// How often the backup directories are read.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Read every watched site's directories every `CHECK_EVERY` on a thread of its own and send
/// the scans to the event loop, until `stop`.
pub fn spawn_watcher(
    sites: Vec<(String, Option<PathBuf>, Option<PathBuf>)>,
    tx: tokio::sync::mpsc::Sender<crate::event_loop::Event>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if sites.is_empty() {
        return Ok(None);
    }
    let t = std::thread::Builder::new()
        .name("niledr-backups".into())
        .spawn(move || {
            while !stop.is_cancelled() {
                let scans = sites
                    .iter()
                    .map(|(id, b, w)| (id.clone(), scan(b.as_deref(), w.as_deref())))
                    .collect();
                if tx
                    .blocking_send(crate::event_loop::Event::Backups(scans))
                    .is_err()
                {
                    return;
                }
                let deadline = std::time::Instant::now() + CHECK_EVERY;
                while !stop.is_cancelled() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })?;
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("test timestamp")
    }

    #[test]
    fn judge_table() {
        let now = ts("2026-12-01T12:00:00Z");
        let base = |at: &str| Some(Ok(Some((PathBuf::from("/b"), ts(at)))));
        let wal = |at: &str| Some(Ok(Some(("000000010000000000000003".to_string(), ts(at)))));
        let obj = Objectives {
            max_base_backup_age: Some(Duration::from_secs(3600)),
            max_wal_archive_age: Some(Duration::from_secs(60)),
            max_restore_test_age: None,
        };
        let restore = RestoreTest {
            run: "r".into(),
            drill: "d".into(),
            at: ts("2026-11-30T12:00:00Z"),
            verdict: Some("met".into()),
        };
        // (case, scan, restore, objectives, status, reason contains)
        type Row<'a> = (
            &'a str,
            Scan,
            Option<&'a RestoreTest>,
            Objectives,
            Status,
            &'a str,
        );
        let rows: Vec<Row<'_>> = vec![
            (
                "fresh",
                Scan {
                    base_backup: base("2026-12-01T11:30:00Z"),
                    wal_segment: wal("2026-12-01T11:59:30Z"),
                },
                None,
                obj,
                Status::Up,
                "base backup 30m old",
            ),
            (
                "old base backup",
                Scan {
                    base_backup: base("2026-12-01T09:00:00Z"),
                    wal_segment: wal("2026-12-01T11:59:30Z"),
                },
                None,
                obj,
                Status::Degraded,
                "over max_base_backup_age 1h",
            ),
            (
                "old WAL archive",
                Scan {
                    base_backup: base("2026-12-01T11:30:00Z"),
                    wal_segment: wal("2026-12-01T11:50:00Z"),
                },
                None,
                obj,
                Status::Degraded,
                "last archived WAL segment is 10m old, over max_wal_archive_age 1m",
            ),
            (
                "no objectives: shown, never degraded",
                Scan {
                    base_backup: base("2026-01-01T00:00:00Z"),
                    wal_segment: None,
                },
                None,
                Objectives::default(),
                Status::Up,
                "base backup",
            ),
            (
                "no base backup",
                Scan {
                    base_backup: Some(Ok(None)),
                    wal_segment: wal("2026-12-01T11:59:30Z"),
                },
                None,
                obj,
                Status::Down,
                "no base backup",
            ),
            (
                "unreadable archive",
                Scan {
                    base_backup: base("2026-12-01T11:30:00Z"),
                    wal_segment: Some(Err("cannot read /w: denied".into())),
                },
                None,
                obj,
                Status::Down,
                "cannot read /w",
            ),
            (
                "empty archive",
                Scan {
                    base_backup: base("2026-12-01T11:30:00Z"),
                    wal_segment: Some(Ok(None)),
                },
                None,
                obj,
                Status::Degraded,
                "holds no segment",
            ),
            (
                "restore never tested",
                Scan {
                    base_backup: base("2026-12-01T11:30:00Z"),
                    wal_segment: None,
                },
                None,
                Objectives {
                    max_restore_test_age: Some(Duration::from_secs(86_400 * 35)),
                    ..obj
                },
                Status::Degraded,
                "no restore drill",
            ),
            (
                "restore tested too long ago",
                Scan {
                    base_backup: base("2026-12-01T11:30:00Z"),
                    wal_segment: None,
                },
                Some(&restore),
                Objectives {
                    max_restore_test_age: Some(Duration::from_secs(3600)),
                    ..obj
                },
                Status::Degraded,
                "over max_restore_test_age 1h",
            ),
            (
                "restore tested recently",
                Scan {
                    base_backup: base("2026-12-01T11:30:00Z"),
                    wal_segment: None,
                },
                Some(&restore),
                Objectives {
                    max_restore_test_age: Some(Duration::from_secs(86_400 * 35)),
                    ..obj
                },
                Status::Up,
                "last restore drill 1day old",
            ),
        ];
        for (case, scan, restore, obj, status, text) in rows {
            let (st, why) = judge(now, &scan, restore, &obj);
            assert_eq!(st, status, "{case}: {why}");
            assert!(why.contains(text), "{case}: {why:?} lacks {text:?}");
        }
    }

    #[test]
    fn scan_finds_the_newest_backup_and_segment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backups = dir.path().join("backups");
        let archive = dir.path().join("archive");
        std::fs::create_dir_all(backups.join("2026-12-01T10")).expect("mkdir");
        std::fs::create_dir_all(&archive).expect("mkdir");
        let empty = scan(Some(&backups), Some(&archive));
        assert_eq!(empty.base_backup, Some(Ok(None)));
        assert_eq!(empty.wal_segment, Some(Ok(None)));
        std::fs::write(backups.join("2026-12-01T10").join("backup_label"), "x").expect("write");
        for name in [
            "000000010000000000000001",
            "00000002.history",
            "000000010000000000000001.00000028.backup",
            "README",
        ] {
            std::fs::write(archive.join(name), "x").expect("write");
        }
        let s = scan(Some(&backups), Some(&archive));
        let (path, _) = s
            .base_backup
            .clone()
            .and_then(Result::ok)
            .flatten()
            .expect("a base backup");
        assert!(path.ends_with("2026-12-01T10"), "{path:?}");
        let (seg, _) = s
            .wal_segment
            .clone()
            .and_then(Result::ok)
            .flatten()
            .expect("a segment");
        assert_eq!(seg, "000000010000000000000001");
        let missing = scan(Some(&dir.path().join("nope")), None);
        assert!(matches!(missing.base_backup, Some(Err(ref e)) if e.contains("cannot read")));
        assert_eq!(missing.wal_segment, None);
    }
}
