//! Redis 7 primary and replica (`replicaof`, `requirepass`/`masterauth`, no persistence)
//! and a tiny RESP client over `TcpStream`.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::bins::Binaries;
use crate::layout::Site;
use crate::process::{Component, ProcessSpec};
use crate::util::{make_dir, write_file};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Resp>>),
}

impl fmt::Display for Resp {
    /// Like `redis-cli --raw`: strings bare, nil empty, arrays one element per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Simple(s) | Resp::Bulk(Some(s)) => f.write_str(s),
            Resp::Error(e) => write!(f, "(error) {e}"),
            Resp::Int(i) => write!(f, "{i}"),
            Resp::Bulk(None) | Resp::Array(None) => Ok(()),
            Resp::Array(Some(items)) => {
                let lines: Vec<String> = items.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
        }
    }
}

/// Send one command (authenticating first when `password` is set) and read the reply.
/// A Redis error reply is returned as `Err`.
pub fn command(address: SocketAddr, password: Option<&str>, args: &[&str]) -> Result<Resp> {
    let stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)
        .with_context(|| format!("redis {address}: connect"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .context("set_read_timeout")?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .context("set_write_timeout")?;
    let mut writer = stream.try_clone().context("clone stream")?;
    let mut reader = BufReader::new(stream);
    let mut send = |args: &[&str]| -> Result<Resp> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        writer
            .write_all(&buf)
            .with_context(|| format!("redis {address}: write"))?;
        let reply = read_reply(&mut reader).with_context(|| format!("redis {address}: read"))?;
        if let Resp::Error(e) = &reply {
            bail!(
                "redis {address} {}: {e}",
                args.first().copied().unwrap_or("")
            );
        }
        Ok(reply)
    };
    if let Some(pw) = password {
        send(&["AUTH", pw])?;
    }
    send(args)
}

fn read_reply(r: &mut impl BufRead) -> Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed");
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).context("empty reply line")?;
    Ok(match kind {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Int(rest.parse().context("integer reply")?),
        "$" => {
            let len: i64 = rest.parse().context("bulk length")?;
            if len < 0 {
                Resp::Bulk(None)
            } else {
                let mut buf = vec![0u8; usize::try_from(len)? + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Resp::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let n: i64 = rest.parse().context("array length")?;
            if n < 0 {
                Resp::Array(None)
            } else {
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(read_reply(r)?);
                }
                Resp::Array(Some(items))
            }
        }
        other => bail!("unknown RESP type {other:?}"),
    })
}

/// A Redis server: a `Component` plus a client.
#[derive(Debug, Clone)]
pub struct Redis {
    component: Component,
    password: Arc<str>,
    config: PathBuf,
}

impl Deref for Redis {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.component
    }
}

impl Redis {
    pub fn component(&self) -> &Component {
        &self.component
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// Run one command, e.g. `redis_cli(&["SET", "k", "v"])`.
    pub fn redis_cli(&self, args: &[&str]) -> Result<Resp> {
        command(self.address(), Some(&self.password), args)
    }

    /// `GET key` (None when missing).
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        match self.redis_cli(&["GET", key])? {
            Resp::Bulk(v) => Ok(v),
            other => bail!("GET {key}: unexpected reply {other:?}"),
        }
    }

    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        self.redis_cli(&["SET", key, value]).map(drop)
    }

    /// One field of `INFO section` (e.g. `info_field("replication", "master_link_status")`).
    pub fn info_field(&self, section: &str, field: &str) -> Result<Option<String>> {
        Ok(info_field(
            &self.redis_cli(&["INFO", section])?.to_string(),
            field,
        ))
    }
}

fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':'))
        .map(str::to_string)
}

/// One Redis server to start.
pub(crate) struct RedisInstance<'a> {
    pub name: &'a str,
    pub site: Site,
    pub address: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub password: Arc<str>,
    pub replica_of: Option<SocketAddr>,
    /// Network namespace to run in (`None`: ours).
    pub netns: Option<String>,
}

/// Write the config (the password stays out of `ps`) and start `redis-server CONF`.
pub(crate) fn start(bins: &Binaries, r: &RedisInstance<'_>) -> Result<Redis> {
    let (address, dir, password, replica_of) =
        (r.address, r.dir.as_path(), r.password.clone(), r.replica_of);
    make_dir(dir, 0o700, None)?;
    let mut conf = format!(
        "bind {}\nport {}\nprotected-mode no\ndaemonize no\nlogfile \"\"\n\
         requirepass {pw}\nmasterauth {pw}\nsave \"\"\nappendonly no\ndir {}\n\
         repl-diskless-sync yes\nrepl-diskless-sync-delay 0\nreplica-read-only yes\n",
        address.ip(),
        address.port(),
        dir.display(),
        pw = password,
    );
    if let Some(up) = replica_of {
        conf.push_str(&format!("replicaof {} {}\n", up.ip(), up.port()));
    }
    let config = dir.join("redis.conf");
    write_file(&config, &conf, 0o600, None)?;
    let pw = password.clone();
    let ready: crate::process::ReadyCheck = if replica_of.is_some() {
        Box::new(move || {
            let info = command(address, Some(&pw), &["INFO", "replication"])?.to_string();
            match info_field(&info, "master_link_status").as_deref() {
                Some("up") => Ok(()),
                other => bail!("master_link_status {other:?}"),
            }
        })
    } else {
        Box::new(move || command(address, Some(&pw), &["PING"]).map(drop))
    };
    let spec = ProcessSpec {
        program: bins.redis_server.clone(),
        args: vec![config.clone().into()],
        env: Vec::new(),
        cwd: Some(dir.to_path_buf()),
        owner: None,
        netns: r.netns.clone(),
        log: r.log.clone(),
        graceful: Signal::SIGTERM,
        start_timeout: Duration::from_secs(30),
        retry_when_log_says: &[],
        ready,
    };
    Ok(Redis {
        component: Component::spawn(r.name, Some(r.site), address, spec)?,
        password,
        config,
    })
}
