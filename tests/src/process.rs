//! `Component`: one real server process (and everything it forks), started in its own
//! process group, with fault injection (kill -9, SIGSTOP/SIGCONT), graceful stop and restart.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::layout::Site;
use crate::util::{Owner, log_tail, wait_until};

/// Readiness check: `Ok(())` when ready, `Err(reason)` while not (the last reason is
/// reported if the wait times out).
pub type ReadyCheck = Box<dyn Fn() -> Result<()> + Send + Sync>;

/// How to (re)start a component.
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Run as this user/group (PostgreSQL when we are root).
    pub owner: Option<Owner>,
    /// Run inside this network namespace (`ip netns` name; see `crate::netns`). `None`: ours.
    pub netns: Option<String>,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
    /// Sent to the leader by `stop()`: SIGINT (fast shutdown) for PostgreSQL, SIGTERM otherwise.
    pub graceful: Signal,
    pub start_timeout: Duration,
    /// Respawn if the process exits before it is ready and the end of its log contains
    /// one of these (PostgreSQL after kill -9, while the old shared memory or lock file is
    /// still around). Empty: never retry.
    pub retry_when_log_says: &'static [&'static str],
    pub ready: ReadyCheck,
}

struct State {
    child: Option<Child>,
    stopped: bool,
}

struct Inner {
    name: String,
    site: Option<Site>,
    address: SocketAddr,
    spec: ProcessSpec,
    state: Mutex<State>,
}

/// A handle to one server process. Cheap to clone; all clones control the same process.
/// The process is killed when the last clone is dropped (and by `Topology`'s drop).
#[derive(Clone)]
pub struct Component {
    inner: Arc<Inner>,
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.inner.name)
            .field("site", &self.inner.site)
            .field("address", &self.inner.address)
            .field("pid", &self.pid())
            .finish()
    }
}

const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

impl Component {
    /// Create the handle and start the process, waiting until it is ready.
    pub fn spawn(
        name: &str,
        site: Option<Site>,
        address: SocketAddr,
        spec: ProcessSpec,
    ) -> Result<Component> {
        become_subreaper();
        let c = Component {
            inner: Arc::new(Inner {
                name: name.to_string(),
                site,
                address,
                spec,
                state: Mutex::new(State {
                    child: None,
                    stopped: false,
                }),
            }),
        };
        c.start()?;
        Ok(c)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `None` for global components (DNS).
    pub fn site(&self) -> Option<Site> {
        self.inner.site
    }

    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    /// PID (= process group id) of the running leader process.
    pub fn pid(&self) -> Option<u32> {
        let mut st = self.lock();
        running_pid(&mut st)
    }

    /// Every live process of this component: the leader, its group and all descendants
    /// (PostgreSQL backends call setsid(), so the group alone is not enough).
    pub fn pids(&self) -> Vec<u32> {
        match self.pid() {
            Some(pid) => family(pid),
            None => Vec::new(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    pub fn log_path(&self) -> &Path {
        &self.inner.spec.log
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.inner.spec.log, lines)
    }

    /// Start the process again (same data, same port) and wait until it is ready.
    pub fn start(&self) -> Result<()> {
        let mut st = self.lock();
        if running_pid(&mut st).is_some() {
            bail!("{}: already running", self.inner.name);
        }
        self.start_locked(&mut st)
    }

    /// Graceful stop (SIGINT for PostgreSQL's fast shutdown, SIGTERM otherwise), waiting
    /// for every process of the component to exit; falls back to SIGKILL after 30 s.
    pub fn stop(&self) -> Result<()> {
        let mut st = self.lock();
        let Some(pid) = running_pid(&mut st) else {
            return self.kill_locked(&mut st);
        };
        let before = family_in(pid, true);
        if st.stopped {
            signal_all(&before, pid, Signal::SIGCONT);
            st.stopped = false;
        }
        let _ = kill(Pid::from_raw(pid as i32), self.inner.spec.graceful);
        let mut exited = false;
        let _ = wait_until(Instant::now() + STOP_TIMEOUT, || {
            exited = match st.child.as_mut() {
                Some(c) => c.try_wait().context("try_wait")?.is_some(),
                None => true,
            };
            Ok(exited)
        });
        if !exited {
            eprintln!(
                "{}: no exit {STOP_TIMEOUT:?} after {:?}; killing",
                self.inner.name, self.inner.spec.graceful
            );
        }
        // Reaps the leader, kills stragglers.
        self.kill_locked(&mut st)?;
        wait_gone(&self.inner.name, &before)
    }

    /// SIGKILL every process of the component (whole group and descendants) and reap it.
    pub fn kill(&self) -> Result<()> {
        let mut st = self.lock();
        self.kill_locked(&mut st)
    }

    /// `stop()` then `start()`.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// Freeze every process of the component (a hung server: connections hang, nothing
    /// answers). Returns once all of them are in the stopped state.
    pub fn sigstop(&self) -> Result<()> {
        let mut st = self.lock();
        let pid =
            running_pid(&mut st).with_context(|| format!("{}: not running", self.inner.name))?;
        signal_all(&[], pid, Signal::SIGSTOP);
        // Two passes: anything forked before the first SIGSTOP landed is caught by the second.
        for _ in 0..2 {
            signal_all(&family(pid), pid, Signal::SIGSTOP);
        }
        st.stopped = true;
        self.wait_state(pid, true)
    }

    /// Resume a component frozen by `sigstop()`; returns once none of its processes is stopped.
    pub fn sigcont(&self) -> Result<()> {
        let mut st = self.lock();
        let pid =
            running_pid(&mut st).with_context(|| format!("{}: not running", self.inner.name))?;
        signal_all(&family(pid), pid, Signal::SIGCONT);
        st.stopped = false;
        self.wait_state(pid, false)
    }

    /// Signals are delivered asynchronously: wait until every process is (not) stopped.
    fn wait_state(&self, pid: u32, stopped: bool) -> Result<()> {
        let is_stopped = |p: u32| matches!(process_state(p), Some('T' | 't'));
        wait_until(Instant::now() + GONE_TIMEOUT, || {
            Ok(family(pid).into_iter().all(|p| is_stopped(p) == stopped))
        })
        .with_context(|| {
            format!(
                "{}: processes not {} after signalling",
                self.inner.name,
                if stopped { "stopped" } else { "resumed" }
            )
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_once(&self) -> Result<Child> {
        let spec = &self.inner.spec;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("{}: opening log {}", self.inner.name, spec.log.display()))?;
        let err = log.try_clone().context("cloning log handle")?;
        let mut cmd = launcher(spec)?;
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        cmd.spawn()
            .with_context(|| format!("{}: spawning {}", self.inner.name, spec.program.display()))
    }

    fn start_locked(&self, st: &mut State) -> Result<()> {
        let spec = &self.inner.spec;
        let name = &self.inner.name;
        let deadline = Instant::now() + spec.start_timeout;
        let uid = spec
            .owner
            .map_or_else(|| nix::unistd::getuid().as_raw(), |o| o.uid);
        crate::shm::sweep_orphans_of(uid);
        loop {
            let mut child = self.spawn_once()?;
            let mut exited: Option<ExitStatus> = None;
            let mut last = String::from("not checked yet");
            let waited = wait_until(deadline, || {
                if let Some(s) = child.try_wait().context("try_wait")? {
                    exited = Some(s);
                    return Err(anyhow!("exited"));
                }
                match (spec.ready)() {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        last = format!("{e:#}");
                        Ok(false)
                    }
                }
            });
            if waited.is_ok() {
                st.child = Some(child);
                st.stopped = false;
                return Ok(());
            }
            if let Some(status) = exited {
                let mut left = family_of_group(child.id());
                signal_all(&left, child.id(), Signal::SIGKILL);
                wait_gone(name, &left)?;
                left.push(child.id());
                crate::shm::remove_created_by(&left);
                let tail = log_tail(&spec.log, 5);
                let transient = spec.retry_when_log_says.iter().any(|m| tail.contains(m));
                if transient && Instant::now() + Duration::from_millis(200) < deadline {
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
                bail!(
                    "{name}: exited during startup ({status}); log {}:\n{}",
                    spec.log.display(),
                    log_tail(&spec.log, 20)
                );
            }
            st.child = Some(child);
            let _ = self.kill_locked(st);
            bail!(
                "{name}: not ready within {:?} (last check: {last}); log {}:\n{}",
                spec.start_timeout,
                spec.log.display(),
                log_tail(&spec.log, 20)
            );
        }
    }

    fn kill_locked(&self, st: &mut State) -> Result<()> {
        let Some(mut child) = st.child.take() else {
            return Ok(());
        };
        st.stopped = false;
        let pid = child.id();
        // Freeze the leader first so it cannot fork while we collect its family.
        signal_all(&[], pid, Signal::SIGSTOP);
        let mut victims: BTreeSet<u32> = family_in(pid, true).into_iter().collect();
        // Second pass: whatever a still-running backend forked meanwhile.
        victims.extend(family_in(pid, true));
        victims.extend(family_of_group(pid));
        let victims: Vec<u32> = victims.into_iter().collect();
        signal_all(&victims, pid, Signal::SIGKILL);
        child
            .wait()
            .with_context(|| format!("{}: reaping pid {pid}", self.inner.name))?;
        wait_gone(&self.inner.name, &victims)?;
        crate::shm::remove_created_by(&victims);
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = state.child.take() {
            let pid = child.id();
            signal_all(&[], pid, Signal::SIGSTOP);
            let victims = family_in(pid, true);
            signal_all(&victims, pid, Signal::SIGKILL);
            let _ = child.wait();
            if wait_gone(&self.name, &victims).is_ok() {
                crate::shm::remove_created_by(&victims);
            }
        }
    }
}

/// The command that starts `spec.program` (no arguments yet): directly, or through
/// `nsenter` in its network namespace, which switches to the owner itself and then execs the
/// program, so the child's pid is still the server's.
fn launcher(spec: &ProcessSpec) -> Result<Command> {
    if let Some(ns) = &spec.netns {
        return crate::netns::command_in(ns, &spec.program, spec.owner);
    }
    let mut cmd = Command::new(&spec.program);
    if let Some(o) = spec.owner {
        cmd.uid(o.uid).gid(o.gid);
    }
    Ok(cmd)
}

fn running_pid(st: &mut State) -> Option<u32> {
    let child = st.child.as_mut()?;
    match child.try_wait() {
        Ok(None) => Some(child.id()),
        _ => None,
    }
}

/// Signal each pid and the process group led by `group`; errors (already gone) are ignored.
fn signal_all(pids: &[u32], group: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(-(group as i32)), sig);
    for &p in pids {
        let _ = kill(Pid::from_raw(p as i32), sig);
    }
}

/// Wait until none of `pids` is alive (zombies count as gone), then reap the ones that
/// were reparented to us.
fn wait_gone(name: &str, pids: &[u32]) -> Result<()> {
    let waited = wait_until(Instant::now() + GONE_TIMEOUT, || {
        Ok(pids.iter().all(|&p| !process_alive(p)))
    });
    for &p in pids {
        // ECHILD when it is not (or no longer) our child: fine.
        let _ = waitpid(Pid::from_raw(p as i32), Some(WaitPidFlag::WNOHANG));
    }
    waited.map_err(|_| {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| process_alive(p)).collect();
        anyhow!("{name}: processes {left:?} still alive {GONE_TIMEOUT:?} after SIGKILL")
    })
}

/// Orphans of our servers (PostgreSQL backends whose postmaster was SIGKILLed, nginx
/// workers) are reparented to us rather than to PID 1, so `wait_gone` can reap them and a
/// torn-down topology leaves not even zombies behind.
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            eprintln!("niledr-tests: PR_SET_CHILD_SUBREAPER failed ({e}); killed servers' orphans go to PID 1");
        }
    });
}

struct ProcStat {
    ppid: u32,
    pgrp: u32,
    state: char,
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ..." — comm may contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(ProcStat { ppid, pgrp, state })
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T` stopped, `Z` zombie, ...).
pub fn process_state(pid: u32) -> Option<char> {
    read_stat(pid).map(|s| s.state)
}

/// True if `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    matches!(read_stat(pid), Some(s) if s.state != 'Z' && s.state != 'X')
}

fn proc_table(with_zombies: bool) -> HashMap<u32, ProcStat> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?)))
        .filter(|(_, s)| with_zombies || (s.state != 'Z' && s.state != 'X'))
        .collect()
}

/// `root`, the members of its process group, and all their descendants (live processes only).
pub fn family(root: u32) -> Vec<u32> {
    family_in(root, false)
}

/// Like `family`, with zombies too (children that exited but were not reaped yet: once
/// their parent is killed they are reparented to us and must be reaped).
fn family_in(root: u32, with_zombies: bool) -> Vec<u32> {
    let table = proc_table(with_zombies);
    let mut out: BTreeSet<u32> = table
        .iter()
        .filter(|(pid, s)| **pid == root || s.pgrp == root)
        .map(|(pid, _)| *pid)
        .collect();
    loop {
        let more: Vec<u32> = table
            .iter()
            .filter(|(pid, s)| out.contains(&s.ppid) && !out.contains(pid))
            .map(|(pid, _)| *pid)
            .collect();
        if more.is_empty() {
            break;
        }
        out.extend(more);
    }
    out.into_iter().collect()
}

fn family_of_group(pgrp: u32) -> Vec<u32> {
    proc_table(true)
        .into_iter()
        .filter(|(_, s)| s.pgrp == pgrp)
        .map(|(pid, _)| pid)
        .collect()
}
