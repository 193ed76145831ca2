//! The per-site HTTP health endpoint (nginx, generated config, `daemon off;`) and a raw
//! HTTP/1.0 GET over `TcpStream`, a raw request with its head, and a console sign-in.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::bins::Binaries;
use crate::layout::{Layout, Site};
use crate::process::{Component, ProcessSpec};
use crate::util::{make_dir, write_file};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// `GET path` with HTTP/1.0 (the server closes the connection; no chunking).
pub fn http_get(address: SocketAddr, path: &str) -> Result<HttpResponse> {
    http_request(address, "GET", path, &[], None, IO_TIMEOUT)
}

/// One HTTP/1.0 request with extra `headers` and an optional `body`; `timeout` bounds each
/// read and write (the server closes the connection; no chunking).
pub fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&address, IO_TIMEOUT)
        .with_context(|| format!("http {address}: connect"))?;
    s.set_read_timeout(Some(timeout))
        .context("set_read_timeout")?;
    s.set_write_timeout(Some(timeout))
        .context("set_write_timeout")?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or_default());
    s.write_all(head.as_bytes())
        .with_context(|| format!("http {address}: write"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("http {address}: read"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("http {address}: no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("http {address}: bad status line {:?}", head.lines().next()))?;
    Ok(HttpResponse {
        status,
        body: body.to_string(),
    })
}

/// One site's health endpoint.
#[derive(Debug, Clone)]
pub struct HttpHealth {
    component: Component,
    config: PathBuf,
}

impl Deref for HttpHealth {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.component
    }
}

impl HttpHealth {
    pub fn component(&self) -> &Component {
        &self.component
    }

    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// `http://ADDR:PORT/health`
    pub fn url(&self) -> String {
        format!("http://{}/health", self.address())
    }

    /// GET /health.
    pub fn health(&self) -> Result<HttpResponse> {
        http_get(self.address(), "/health")
    }
}

/// The body `/health` answers at `site`.
pub fn health_body(site: Site) -> String {
    format!("ok site={}\n", site.name())
}

/// Write the config and start `nginx -c CONF -p PREFIX -e ERRLOG` on `site`'s address in
/// `layout` (in the site's namespace when it has one).
pub(crate) fn start(
    bins: &Binaries,
    name: &str,
    site: Site,
    layout: &Layout,
    prefix: &Path,
    log: PathBuf,
) -> Result<HttpHealth> {
    let address = layout.http(site)?;
    make_dir(prefix, 0o755, None)?;
    make_dir(&prefix.join("tmp"), 0o755, None)?;
    let p = prefix.display();
    let user = if nix::unistd::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\n{user}pid {p}/nginx.pid;\nerror_log stderr notice;\n\
         events {{ worker_connections 128; }}\n\
         http {{\n  access_log off;\n  default_type text/plain;\n\
           client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n  fastcgi_temp_path {p}/tmp/fastcgi;\n\
           uwsgi_temp_path {p}/tmp/uwsgi;\n  scgi_temp_path {p}/tmp/scgi;\n\
           server {{\n    listen {address};\n    location = /health {{ return 200 \"ok site={site}\\n\"; }}\n\
             location / {{ return 404 \"not found\\n\"; }}\n  }}\n}}\n",
        site = site.name(),
    );
    let config = prefix.join("nginx.conf");
    write_file(&config, &conf, 0o644, None)?;
    let spec = ProcessSpec {
        program: bins.nginx.clone(),
        args: vec![
            "-c".into(),
            config.clone().into(),
            "-p".into(),
            prefix.to_path_buf().into(),
            // Before reading the config nginx opens its compiled-in error log; keep it here.
            "-e".into(),
            "stderr".into(),
        ],
        env: Vec::new(),
        cwd: Some(prefix.to_path_buf()),
        owner: None,
        netns: layout.netns_of(site),
        log,
        graceful: Signal::SIGTERM,
        start_timeout: Duration::from_secs(30),
        retry_when_log_says: &[],
        ready: Box::new(move || {
            let r = http_get(address, "/health")?;
            if r.status == 200 {
                Ok(())
            } else {
                bail!("/health answered {}", r.status)
            }
        }),
    };
    Ok(HttpHealth {
        component: Component::spawn(name, Some(site), address, spec)?,
        config,
    })
}

/// One HTTP/1.0 request with its response head: (status, head, body).
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").context("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status")?;
    Ok((status, head.to_string(), body.to_string()))
}

/// A response header's value (the first of that name, any case).
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// Sign in to the console at `addr` with `token`: the `niledr_session=…` cookie pair and the
/// session's CSRF token.
pub fn console_session(addr: SocketAddr, token: &str) -> Result<(String, String)> {
    let body = format!("{{\"token\": \"{token}\"}}");
    let (status, head, answer) = raw_request(
        addr,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "application/json")],
        &body,
    )?;
    anyhow::ensure!(status == 200, "sign-in at {addr}: {status} {answer}");
    let cookie = header_value(&head, "set-cookie")
        .and_then(|c| c.split(';').next().map(str::to_string))
        .context("no session cookie")?;
    let v: serde_json::Value = serde_json::from_str(&answer)?;
    let csrf = v["csrf_token"]
        .as_str()
        .context("no csrf_token")?
        .to_string();
    Ok((cookie, csrf))
}
