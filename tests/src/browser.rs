//! A real browser for the console suites: Debian's `chromedriver` (package `chromium-driver`)
//! started on a free port, and a small synchronous W3C WebDriver client over HTTP/1.1
//! (chromedriver refuses HTTP/1.0): sessions, navigation, elements, script, screenshots. Each `Browser` is
//! its own WebDriver session: its own headless Chromium, profile and cookie jar.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::daemon::free_listen_addr;
use crate::util::wait_until;

/// WebDriver commands may wait for a page to load.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `chromedriver`, killed on drop.
pub struct Chromedriver {
    child: Child,
    pub addr: SocketAddr,
}

impl Chromedriver {
    pub fn start(log: &Path) -> Result<Chromedriver> {
        let addr = free_listen_addr()?;
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("chromedriver")
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("starting chromedriver (Debian package chromium-driver; scripts/install-deps.sh installs it)")?;
        let d = Chromedriver { child, addr };
        wait_until(Instant::now() + Duration::from_secs(20), || {
            Ok(request(d.addr, "GET", "/status", None)
                .is_ok_and(|(status, body)| status == 200 && body.contains("\"ready\":true")))
        })
        .context("chromedriver did not become ready")?;
        Ok(d)
    }

    /// A new headless Chromium session (a fresh profile: no cookies).
    pub fn browser(&self) -> Result<Browser> {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--disable-default-apps"]
            }
        }}});
        let v = call(self.addr, "POST", "/session", Some(&caps))?;
        let id = v["sessionId"]
            .as_str()
            .context("no sessionId in the new-session answer")?
            .to_string();
        Ok(Browser {
            driver: self.addr,
            id,
        })
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command; the `value` of the answer, or the WebDriver error as an error.
fn call(driver: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let text = body.map(Value::to_string);
    let (status, answer) = request(driver, method, path, text.as_deref())
        .with_context(|| format!("webdriver {method} {path}"))?;
    let v: Value = serde_json::from_str(&answer)
        .with_context(|| format!("webdriver {method} {path}: not JSON: {answer}"))?;
    if status != 200 {
        bail!(
            "webdriver {method} {path}: {status} {}: {}",
            v["value"]["error"],
            v["value"]["message"]
        );
    }
    Ok(v["value"].clone())
}

/// One HTTP/1.1 request with `Connection: close`; (status, body). Chunked bodies decoded.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let body = body.unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    // chromedriver keeps the connection open despite `Connection: close`: read by length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let end = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before the header ended");
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad status line")?;
    let field = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !raw.ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        return Ok((status, dechunk(&String::from_utf8_lossy(&raw[end..]))?));
    }
    let len: usize = field("content-length")
        .and_then(|v| v.parse().ok())
        .context("no Content-Length")?;
    while raw.len() < end + len {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before the body ended");
        }
        raw.extend_from_slice(&buf[..n]);
    }
    Ok((
        status,
        String::from_utf8_lossy(&raw[end..end + len]).into_owned(),
    ))
}

fn dechunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").context("chunk size line")?;
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..n).context("short chunk")?);
        rest = after.get(n + 2..).context("chunk end")?;
    }
}

/// One browser session.
pub struct Browser {
    driver: SocketAddr,
    id: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        call(
            self.driver,
            method,
            &format!("/session/{}{path}", self.id),
            body,
        )
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))?;
        Ok(())
    }

    /// Run `script` (a function body; `arguments` as usual) and return its value.
    pub fn eval(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Run an async script: the body gets `done` as its last argument.
    pub fn eval_async(&self, script: &str) -> Result<Value> {
        let body = format!("const done = arguments[arguments.length - 1]; {script}");
        self.cmd(
            "POST",
            "/execute/async",
            Some(&json!({ "script": body, "args": [] })),
        )
    }

    fn find(&self, css: &str) -> Result<Option<String>> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        Ok(v.as_array()
            .and_then(|a| a.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(str::to_string))
    }

    /// Wait until an element matching `css` exists; its WebDriver id.
    pub fn wait_for(&self, css: &str, within: Duration) -> Result<String> {
        let mut found = None;
        wait_until(Instant::now() + within, || {
            found = self.find(css)?;
            Ok(found.is_some())
        })
        .with_context(|| {
            format!(
                "no element {css:?} within {within:?}; page text:\n{}",
                self.text().unwrap_or_default()
            )
        })?;
        found.context("element vanished")
    }

    /// Wait until `script` (a function body) returns true.
    pub fn wait_true(&self, what: &str, script: &str, within: Duration) -> Result<()> {
        wait_until(Instant::now() + within, || {
            Ok(self.eval(script, json!([]))? == Value::Bool(true))
        })
        .with_context(|| {
            format!(
                "{what} within {within:?}; page text:\n{}",
                self.text().unwrap_or_default()
            )
        })
    }

    pub fn exists(&self, css: &str) -> Result<bool> {
        Ok(self.find(css)?.is_some())
    }

    pub fn click(&self, css: &str) -> Result<()> {
        self.on_element(css, "click", &json!({}))
    }

    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        self.on_element(css, "value", &json!({ "text": text }))
    }

    /// `POST /element/{id}/{what}` on the element matching `css`. A live page may re-render
    /// between finding and acting (an SSE event): a stale element is found again, a few times.
    fn on_element(&self, css: &str, what: &str, body: &Value) -> Result<()> {
        let mut tries = 0;
        loop {
            let e = self.wait_for(css, Duration::from_secs(15))?;
            match self.cmd("POST", &format!("/element/{e}/{what}"), Some(body)) {
                Err(err) if tries < 3 && format!("{err:#}").contains("stale element") => {
                    tries += 1;
                }
                r => return r.map(|_| ()),
            }
        }
    }

    /// The page's visible text.
    pub fn text(&self) -> Result<String> {
        Ok(self
            .eval(
                "return document.body ? document.body.innerText : '';",
                json!([]),
            )?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Save a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.cmd("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot is not a string")?)
            .context("screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(
            self.driver,
            "DELETE",
            &format!("/session/{}", self.id),
            None,
        );
    }
}

/// Where the console suites keep their screenshots: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}
