//! Runs the real `niledr` binary against a topology: start, wait ready, read the API, stop
//! gracefully or SIGKILL, and check its log for unexpected ERROR lines.
//!
//! Reads need a principal: a `Niledr` reads with the viewer token found in `reader.token`
//! next to its config (written by `create_people` / `create_reader`), across restarts too.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::http::{HttpResponse, http_get, http_request};
use crate::util::{log_tail, wait_until};

/// Where the `niledr` binary is: `$NILEDR_BIN`, else next to the running test's target dir
/// (`target/debug/deps/<test>` → `target/debug/niledr`). `scripts/test.sh` builds it first.
pub fn niledr_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("NILEDR_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join("niledr");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    bail!(
        "the niledr binary was not found next to {}; build it first: cargo build --workspace --bins",
        exe.display()
    )
}

/// A free TCP port on 127.0.0.1 for the daemon's API.
pub fn free_listen_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?)
}

/// Run `niledr ARGS` to completion (check-config, audit verify, ...).
pub fn niledr_command(args: &[&str]) -> Result<Output> {
    Command::new(niledr_binary()?)
        .args(args)
        .output()
        .context("running niledr")
}

/// The file next to a config that holds the token the harness reads the API with.
pub const READER_TOKEN_FILE: &str = "reader.token";

/// The reader token for the daemon of `config`, if `create_people` / `create_reader` wrote one.
fn reader_for(config: &Path) -> Option<String> {
    let dir = config.parent()?;
    let t = std::fs::read_to_string(dir.join(READER_TOKEN_FILE)).ok()?;
    Some(t.trim().to_string()).filter(|t| !t.is_empty())
}

/// Keep `token` as the reader token of configs in `dir`.
fn write_reader(dir: &Path, token: &str) -> Result<()> {
    crate::util::write_file(&dir.join(READER_TOKEN_FILE), token, 0o600, None)
}

pub struct Niledr {
    child: Option<Child>,
    pub listen: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The bearer token every read sends (`reader.token` next to the config).
    pub reader: Option<String>,
}

impl Niledr {
    /// Start `niledr serve --config CONFIG`, logging to `log` (appended), and wait for /healthz.
    pub fn start(config: &Path, listen: SocketAddr, log: &Path) -> Result<Niledr> {
        Self::start_env(config, listen, log, &[], false)
    }

    /// Like `start`, with extra environment (e.g. `NILEDR_FAILPOINTS`). With `may_crash`, a
    /// daemon killed by a failpoint before it answered is returned rather than an error.
    pub fn start_env(
        config: &Path,
        listen: SocketAddr,
        log: &Path,
        env: &[(&str, &str)],
        may_crash: bool,
    ) -> Result<Niledr> {
        Self::start_in(None, config, listen, log, env, may_crash)
    }

    /// `start_env` inside network namespace `netns` (a site of a `Netns` world).
    pub fn start_in(
        netns: Option<&str>,
        config: &Path,
        listen: SocketAddr,
        log: &Path,
        env: &[(&str, &str)],
        may_crash: bool,
    ) -> Result<Niledr> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let bin = niledr_binary()?;
        let mut cmd = match netns {
            Some(ns) => crate::netns::command_in(ns, &bin, None)?,
            None => Command::new(&bin),
        };
        let child = cmd
            .args(["serve", "--config"])
            .arg(config)
            .env("NILEDR_LOG", "info,sqlx=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .context("spawning niledr serve")?;
        let mut d = Niledr {
            child: Some(child),
            listen,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            reader: reader_for(config),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        wait_until(deadline, || {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                if may_crash {
                    return Ok(true);
                }
                bail!("niledr exited with {status}:\n{}", log_tail(&d.log, 30));
            }
            Ok(http_get(listen, "/healthz").is_ok_and(|r| r.status == 200))
        })
        .with_context(|| format!("niledr did not answer /healthz:\n{}", log_tail(&d.log, 30)))?;
        Ok(d)
    }

    /// A handle to no process (yet): the seat a test keeps while niledr is stopped.
    pub fn detached(config: &Path, listen: SocketAddr, log: &Path) -> Niledr {
        Niledr {
            child: None,
            listen,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            reader: reader_for(config),
        }
    }

    /// Wait for the process to end on its own (a failpoint's SIGKILL); returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            bail!("niledr is not running")
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "niledr still running after {within:?}:\n{}",
                    log_tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the daemon now and reap it; the handle stays (detached) for a restart.
    pub fn sigkill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("SIGKILL niledr")?;
            c.wait()?;
        }
        Ok(())
    }

    /// The daemon's base URL, for CLI commands (`NILEDR_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// GET `path` with the reader token (none when there is no `reader.token`).
    pub fn get_raw(&self, path: &str) -> Result<HttpResponse> {
        self.get_as(path, self.reader.as_deref())
    }

    /// GET `path` as the holder of `token` (`None`: anonymous).
    pub fn get_as(&self, path: &str, token: Option<&str>) -> Result<HttpResponse> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        http_request(
            self.listen,
            "GET",
            path,
            &headers,
            None,
            Duration::from_secs(30),
        )
    }

    /// GET a JSON endpoint; returns (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let r = self.get_raw(path)?;
        let body = serde_json::from_str(&r.body)
            .with_context(|| format!("GET {path}: body is not JSON: {:?}", r.body))?;
        Ok((r.status, body))
    }

    pub fn get_text(&self, path: &str) -> Result<(u16, String)> {
        let r = self.get_raw(path)?;
        Ok((r.status, r.body))
    }

    /// Wait until the JSON at `path` satisfies `pred`; returns that JSON.
    pub fn wait_json(
        &self,
        path: &str,
        within: Duration,
        pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        poll_json(
            &format!("GET {path}"),
            within,
            || Ok(self.get(path)?.1),
            pred,
        )
    }

    /// A service's view from `/api/v1/services`.
    pub fn service(&self, id: &str) -> Result<serde_json::Value> {
        let (_, all) = self.get("/api/v1/services")?;
        all.as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            .cloned()
            .with_context(|| format!("no service {id} in /api/v1/services"))
    }

    /// Wait until service `id` satisfies `pred`; returns its view.
    pub fn wait_service(
        &self,
        id: &str,
        within: Duration,
        pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        poll_json(&format!("service {id}"), within, || self.service(id), pred)
    }

    /// SIGTERM and wait; the daemon must exit 0.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).context("SIGTERM niledr")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("niledr exited with {status}:\n{}", log_tail(&self.log, 30));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("niledr did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// ERROR lines in the log that match none of `allowed`.
    pub fn unexpected_errors(&self, allowed: &[&str]) -> Result<Vec<String>> {
        let f = File::open(&self.log)?;
        Ok(BufReader::new(f)
            .lines()
            .map_while(|l| l.ok())
            .filter(|l| l.contains(" ERROR ") || l.starts_with("error:"))
            .filter(|l| !allowed.iter().any(|a| l.contains(a)))
            .collect())
    }

    /// Open `/api/v1/events` and collect `status` events on a thread until `until` says stop
    /// or `within` passes.
    pub fn watch_events(&self) -> Result<EventWatch> {
        let mut s = TcpStream::connect(self.listen)?;
        let auth = self
            .reader
            .as_deref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{auth}\r\n",
            self.listen
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = BufReader::new(s.try_clone()?);
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(data) = line.strip_prefix("data:")
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim())
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        Ok(EventWatch { rx, _stream: s })
    }
}

/// Poll `fetch` until `pred` holds; on timeout, say what was last seen.
fn poll_json(
    what: &str,
    within: Duration,
    mut fetch: impl FnMut() -> Result<serde_json::Value>,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let mut last = serde_json::Value::Null;
    let r = wait_until(Instant::now() + within, || {
        let v = fetch()?;
        let ok = pred(&v);
        last = v;
        Ok(ok)
    });
    match r {
        Ok(()) => Ok(last),
        Err(e) => bail!("{e}: {what} never matched within {within:?}; last seen:\n{last:#}"),
    }
}

pub struct EventWatch {
    rx: std::sync::mpsc::Receiver<serde_json::Value>,
    _stream: TcpStream,
}

impl EventWatch {
    /// The first event matching `pred` within `within`.
    pub fn wait_for(
        &self,
        within: Duration,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if pred(&v) => return Ok(v),
                Ok(_) => continue,
                Err(_) => bail!("no matching status event within {within:?}"),
            }
        }
    }
}

impl Drop for Niledr {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Tokens of the people the end-to-end tests act as.
#[derive(Debug, Clone)]
pub struct People {
    /// approver, tag incident_commander
    pub ic: String,
    /// approver, tag engineering_lead
    pub lead: String,
    /// approver, tag engineering_lead (a second lead, for wrong-role checks)
    pub lead2: String,
    /// operator (proposes executions)
    pub operator: String,
    /// viewer
    pub viewer: String,
}

/// `niledr user add` (the real CLI): the new user's token.
fn add_user(users_file: &Path, name: &str, role: &str, tags: &[&str]) -> Result<String> {
    let mut args = vec![
        "user",
        "add",
        "--users-file",
        users_file.to_str().unwrap_or_default(),
        name,
        "--role",
        role,
    ];
    for t in tags {
        args.push("--tag");
        args.push(t);
    }
    let out = niledr_command(&args)?;
    if !out.status.success() {
        bail!(
            "niledr user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The directory the harness keeps `reader.token` in: the users file's (the configs' too).
fn dir_of(users_file: &Path) -> &Path {
    users_file.parent().unwrap_or(Path::new("."))
}

/// Create the users with `niledr user add` (the real CLI) and return their tokens; the
/// viewer's becomes the harness's reader token.
pub fn create_people(users_file: &Path) -> Result<People> {
    let add = |name: &str, role: &str, tags: &[&str]| add_user(users_file, name, role, tags);
    let people = People {
        ic: add("amira", "approver", &["incident_commander"])?,
        lead: add("omar", "approver", &["engineering_lead"])?,
        lead2: add("salma", "approver", &["engineering_lead"])?,
        operator: add("khalid", "operator", &[])?,
        viewer: add("nour", "viewer", &[])?,
    };
    write_reader(dir_of(users_file), &people.viewer)?;
    Ok(people)
}

/// For suites without people: one viewer (`reader`) whose token the harness reads with.
pub fn create_reader(users_file: &Path) -> Result<String> {
    let token = add_user(users_file, "reader", "viewer", &[])?;
    write_reader(dir_of(users_file), &token)?;
    Ok(token)
}

impl Niledr {
    /// POST a JSON body with a bearer token; returns (status, JSON body).
    pub fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        let text = body.to_string();
        let mut s = TcpStream::connect(self.listen)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{text}",
            self.listen,
            text.len()
        )?;
        let mut raw = String::new();
        std::io::Read::read_to_string(&mut s, &mut raw)?;
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .with_context(|| format!("POST {path}: no header end in {raw:?}"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("POST {path}: bad status line"))?;
        let json = serde_json::from_str(body)
            .with_context(|| format!("POST {path}: body is not JSON: {body:?}"))?;
        Ok((status, json))
    }

    /// GET a JSON endpoint as the holder of `token` (`None`: anonymous, for the endpoints
    /// load balancers call); returns (status, JSON body).
    pub fn get_json_as(&self, path: &str, token: Option<&str>) -> Result<(u16, serde_json::Value)> {
        let r = self.get_as(path, token)?;
        let json = serde_json::from_str(&r.body)
            .with_context(|| format!("GET {path}: body is not JSON: {:?}", r.body))?;
        Ok((r.status, json))
    }

    /// Wait until execution `id` is in one of `states`; returns its view.
    pub fn wait_execution(
        &self,
        id: &str,
        within: Duration,
        states: &[&str],
    ) -> Result<serde_json::Value> {
        let path = format!("/api/v1/executions/{id}");
        poll_json(
            &format!("execution {id} in {states:?}"),
            within,
            || Ok(self.get(&path)?.1),
            |v| v["state"].as_str().is_some_and(|s| states.contains(&s)),
        )
    }
}
