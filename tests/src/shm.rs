//! Shared memory that killed servers leave behind. A SIGKILLed PostgreSQL never removes its
//! System V interlock segment; a suite kills hundreds of them, and the kernel's
//! `kernel.shmmni` (4096 by default, shared by everything on the machine) then runs out and
//! every new PostgreSQL fails with "could not create shared memory segment". The harness
//! removes what the processes it killed created, and once per run sweeps older orphans: SysV
//! segments and the `/dev/shm/PostgreSQL.*` files of earlier runs that nothing maps.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::process::process_alive;

/// One row of `/proc/sysvipc/shm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub shmid: u64,
    pub creator: u32,
    pub attached: u64,
    pub uid: u32,
}

/// The machine's segments (empty when the kernel has no SysV IPC or the file is unreadable).
pub fn segments() -> Vec<Segment> {
    fs::read_to_string("/proc/sysvipc/shm")
        .map(|text| parse(&text))
        .unwrap_or_default()
}

fn parse(text: &str) -> Vec<Segment> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split_whitespace().collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(id), Some(cpid), Some(nattch), Some(uid)) =
        (at("shmid"), at("cpid"), at("nattch"), at("uid"))
    else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(Segment {
                shmid: f.get(id)?.parse().ok()?,
                creator: f.get(cpid)?.parse().ok()?,
                attached: f.get(nattch)?.parse().ok()?,
                uid: f.get(uid)?.parse().ok()?,
            })
        })
        .collect()
}

/// Remove the unattached segments that `pids` (now dead) created. Best effort: a failure
/// only means the segment stays, as it would have without us.
pub fn remove_created_by(pids: &[u32]) {
    let pids: HashSet<u32> = pids.iter().copied().collect();
    remove(
        segments()
            .into_iter()
            .filter(|s| s.attached == 0 && pids.contains(&s.creator)),
    );
}

/// Once per process and owner: remove unattached segments owned by `uid` whose creator is
/// gone (left by earlier runs that were killed before they could clean up). A segment in
/// use is attached, and one still being set up has a live creator, so neither is touched.
pub fn sweep_orphans_of(uid: u32) {
    static SWEPT: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
    if swept.contains(&uid) {
        return;
    }
    swept.push(uid);
    sweep_orphans(uid);
    sweep_unmapped_files(Path::new("/dev/shm"), "PostgreSQL.", uid);
}

/// Remove unattached segments owned by `uid` whose creator is gone, every time it is called.
pub fn sweep_orphans(uid: u32) {
    remove(
        segments()
            .into_iter()
            .filter(|s| s.uid == uid && s.attached == 0 && !process_alive(s.creator)),
    );
}

/// Remove the files in `dir` named `prefix*`, owned by `uid`, that no live process maps
/// (POSIX dynamic shared memory of a server that was killed).
pub fn sweep_unmapped_files(dir: &Path, prefix: &str, uid: u32) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let candidates: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid && m.is_file()))
        .map(|e| e.path())
        .collect();
    if candidates.is_empty() {
        return;
    }
    let mapped = mapped_files();
    for path in candidates.iter().filter(|p| !mapped.contains(*p)) {
        let _ = fs::remove_file(path);
    }
}

/// Every file some live process maps, from `/proc/*/maps`.
fn mapped_files() -> HashSet<PathBuf> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return HashSet::new();
    };
    procs
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| fs::read_to_string(e.path().join("maps")).ok())
        .flat_map(|maps| {
            maps.lines()
                .filter_map(|line| line.find('/').map(|at| PathBuf::from(&line[at..])))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn remove(victims: impl Iterator<Item = Segment>) {
    let ids: Vec<String> = victims.map(|s| s.shmid.to_string()).collect();
    // ipcrm takes many ids at once; chunks keep the command line short.
    for chunk in ids.chunks(256) {
        let mut cmd = Command::new("ipcrm");
        for id in chunk {
            cmd.arg("-m").arg(id);
        }
        let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
  10027202      65536   600                    56 22534 22534      0   101   104   101   104 1796118306 1796118309 1796118304                  4096                     0
  10035938      65537   600                    56 22593 22600      2   101   104   101   104 1796118306 1796118309 1796118305                  4096                     0
";

    #[test]
    fn parses_the_kernel_table_by_column_name() {
        let rows = parse(SAMPLE);
        assert_eq!(
            rows,
            vec![
                Segment {
                    shmid: 65536,
                    creator: 22534,
                    attached: 0,
                    uid: 101
                },
                Segment {
                    shmid: 65537,
                    creator: 22593,
                    attached: 2,
                    uid: 101
                },
            ]
        );
        assert!(parse("").is_empty());
        assert!(parse("key shmid\n1 2\n").is_empty(), "missing columns");
    }
}
