//! Knot DNS: the authoritative primary for `nilecare.sd.` (RFC 2136 updates signed with
//! TSIG hmac-sha256), secondaries fed by AXFR/IXFR + NOTIFY, and `knsupdate`/`kdig` helpers.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::bins::Binaries;
use crate::layout::Layout;
use crate::process::{Component, ProcessSpec};
use crate::util::{base64, make_dir, random_bytes, run_capture, write_file};

/// The service zone.
pub const ZONE: &str = "nilecare.sd.";
/// Name of the TSIG key allowed to update the zone.
pub const TSIG_KEY_NAME: &str = "niledr-key";
/// TTL of the service records (lowered for failover).
pub const RECORD_TTL: u32 = 60;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// A TSIG key and the two files it is written to.
#[derive(Debug, Clone)]
pub struct TsigKey {
    pub name: String,
    /// Base64 secret.
    pub secret: String,
    /// BIND format `key "niledr-key" { algorithm hmac-sha256; secret "..."; };` (niledr reads this).
    pub bind_file: PathBuf,
    /// `hmac-sha256:niledr-key:SECRET`, the only format Knot 3.2's `knsupdate -k` / `kdig -k` read.
    pub knot_file: PathBuf,
}

impl TsigKey {
    /// A fresh random 256-bit key written to `<secrets>/niledr.tsig` and `<secrets>/niledr.tsig.knot`.
    pub fn generate(secrets: &Path) -> Result<TsigKey> {
        let secret = base64(&random_bytes(32)?);
        Self::write(
            TSIG_KEY_NAME,
            &secret,
            secrets.join("niledr.tsig"),
            secrets.join("niledr.tsig.knot"),
        )
    }

    /// Write a key with the given name/secret to the two files.
    pub fn write(
        name: &str,
        secret: &str,
        bind_file: PathBuf,
        knot_file: PathBuf,
    ) -> Result<TsigKey> {
        write_file(
            &bind_file,
            &format!("key \"{name}\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n"),
            0o600,
            None,
        )?;
        write_file(
            &knot_file,
            &format!("hmac-sha256:{name}:{secret}\n"),
            0o600,
            None,
        )?;
        Ok(TsigKey {
            name: name.to_string(),
            secret: secret.to_string(),
            bind_file,
            knot_file,
        })
    }
}

/// One authoritative server (`knotd` in the foreground).
#[derive(Debug, Clone)]
pub struct DnsServer {
    component: Component,
    config: PathBuf,
    primary: bool,
}

impl Deref for DnsServer {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.component
    }
}

impl DnsServer {
    pub fn component(&self) -> &Component {
        &self.component
    }

    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// The primary takes updates; secondaries transfer the zone from it.
    pub fn is_primary(&self) -> bool {
        self.primary
    }
}

/// The authoritative DNS of the topology: servers (primary first), key and client helpers.
#[derive(Debug, Clone)]
pub struct Dns {
    servers: Vec<DnsServer>,
    key: TsigKey,
    kdig: PathBuf,
    knsupdate: PathBuf,
}

impl Dns {
    pub fn servers(&self) -> &[DnsServer] {
        &self.servers
    }

    /// Addresses of every authoritative server, primary first.
    pub fn dns_servers(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.address()).collect()
    }

    pub fn primary(&self) -> &DnsServer {
        &self.servers[0]
    }

    pub fn key(&self) -> &TsigKey {
        &self.key
    }

    /// The BIND-format key file (what niledr's `[dns] tsig_key_file` points at).
    pub fn tsig_key_file(&self) -> PathBuf {
        self.key.bind_file.clone()
    }

    /// Send an RFC 2136 update to the primary with our TSIG key. `script` holds the
    /// `update ...` / `prereq ...` lines; `server`, `zone` and `send` are added.
    pub fn knsupdate(&self, script: &str) -> Result<String> {
        self.knsupdate_with_key(&self.key.knot_file, script)
    }

    /// Same with another key file (Knot `-y` format), e.g. a wrong key.
    pub fn knsupdate_with_key(&self, knot_key_file: &Path, script: &str) -> Result<String> {
        let server = self.primary().address();
        let mut full = format!("server {} {}\nzone {ZONE}\n", server.ip(), server.port());
        full.push_str(script.trim_end());
        full.push('\n');
        if !script.lines().any(|l| l.trim() == "send") {
            full.push_str("send\n");
        }
        let mut cmd = Command::new(&self.knsupdate);
        cmd.arg("-k")
            .arg(knot_key_file)
            .args(["-t", "3", "-r", "1"]);
        let out = run_capture("knsupdate", cmd, Some(&full), CLIENT_TIMEOUT)?;
        // knsupdate exits 0 on some refusals; its ";; ERROR" lines are the reliable signal.
        if !out.success || out.stderr.contains("ERROR") || out.stdout.contains("ERROR") {
            bail!(
                "knsupdate to {server} failed ({}): {}{}",
                out.status,
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }

    /// A records of `name` as answered by `server` (`kdig +short`).
    pub fn dig_a(&self, name: &str, server: SocketAddr) -> Result<Vec<Ipv4Addr>> {
        dig_a(&self.kdig, name, server)
    }

    /// Any record type of `name` as answered by `server` (`kdig +short`, one line per record).
    pub fn dig(&self, rtype: &str, name: &str, server: SocketAddr) -> Result<Vec<String>> {
        dig(&self.kdig, rtype, name, server)
    }
}

/// `kdig @server -p port +short A name`, parsed.
pub fn dig_a(kdig: &Path, name: &str, server: SocketAddr) -> Result<Vec<Ipv4Addr>> {
    let lines = dig(kdig, "A", name, server)?;
    let mut addrs: Vec<Ipv4Addr> = lines.iter().filter_map(|l| l.parse().ok()).collect();
    if addrs.is_empty() && lines.iter().any(|l| l.contains(";;")) {
        bail!("kdig {name} @{server}: {}", lines.join("\n"));
    }
    addrs.sort();
    Ok(addrs)
}

/// `kdig @server -p port +short RTYPE name`: the answer lines, trimmed, as printed
/// (TXT strings keep their quotes; an SOA is one line of seven fields).
pub fn dig(kdig: &Path, rtype: &str, name: &str, server: SocketAddr) -> Result<Vec<String>> {
    let mut cmd = Command::new(kdig);
    cmd.arg(format!("@{}", server.ip())).args([
        "-p",
        &server.port().to_string(),
        "+short",
        "+timeout=1",
        "+retry=1",
        rtype,
        name,
    ]);
    let out = run_capture("kdig", cmd, None, CLIENT_TIMEOUT)?;
    if !out.success {
        bail!(
            "kdig {name} {rtype} @{server} failed ({}): {}{}",
            out.status,
            out.stdout.trim(),
            out.stderr.trim()
        );
    }
    Ok(out
        .stdout
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Records every server starts with: the services all point at `target` (khartoum).
pub(crate) fn zone_file(servers: &[SocketAddr], target: Ipv4Addr) -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}\n$TTL {RECORD_TTL}\n\
         @ IN SOA ns1.{ZONE} hostmaster.{ZONE} 1 60 30 3600 {RECORD_TTL}\n"
    );
    for (i, s) in servers.iter().enumerate() {
        z.push_str(&format!(
            "@ IN NS ns{}.{ZONE}\nns{} IN A {}\n",
            i + 1,
            i + 1,
            s.ip()
        ));
    }
    for name in ["db", "cache", "api"] {
        z.push_str(&format!("{name} {RECORD_TTL} IN A {target}\n"));
    }
    z
}

/// Start every server of `layout.dns` (primary first) under `dir`, serving `zone_text`, in
/// the layout's DNS namespace when it has one.
pub(crate) fn start(
    bins: &Binaries,
    layout: &Layout,
    dir: &Path,
    logs: &Path,
    key: TsigKey,
    zone_text: &str,
) -> Result<Dns> {
    if layout.dns.is_empty() {
        bail!("no DNS server in the layout");
    }
    let mut servers = Vec::new();
    for i in 0..layout.dns.len() {
        servers.push(start_server(bins, layout, i, dir, logs, &key, zone_text)?);
    }
    Ok(Dns {
        servers,
        key,
        kdig: bins.kdig.clone(),
        knsupdate: bins.knsupdate.clone(),
    })
}

/// Server `i` of `layout.dns` (0: the primary, with the zone file).
fn start_server(
    bins: &Binaries,
    layout: &Layout,
    i: usize,
    dir: &Path,
    logs: &Path,
    key: &TsigKey,
    zone_text: &str,
) -> Result<DnsServer> {
    let addr = layout.dns[i];
    let name = if i == 0 {
        "dns-primary".to_string()
    } else {
        format!("dns-secondary-{i}")
    };
    let home = dir.join(&name);
    for sub in ["run", "db", "zones"] {
        make_dir(&home.join(sub), 0o755, None)?;
    }
    if i == 0 {
        write_file(
            &home.join("zones").join(format!("{ZONE}zone")),
            zone_text,
            0o644,
            None,
        )?;
    }
    let config = home.join("knot.conf");
    let peers = layout.client_networks().join(", ");
    write_file(
        &config,
        &knot_conf(&layout.dns, i, &home, key, &peers),
        0o600,
        None,
    )?;

    let kdig = bins.kdig.clone();
    let spec = ProcessSpec {
        program: bins.knotd.clone(),
        args: vec!["-c".into(), config.clone().into()],
        env: Vec::new(),
        cwd: Some(home.clone()),
        owner: None,
        netns: layout.dns_netns(),
        log: logs.join(format!("{name}.log")),
        graceful: Signal::SIGTERM,
        start_timeout: Duration::from_secs(30),
        retry_when_log_says: &[],
        ready: Box::new(move || {
            // Serving the zone (a secondary: transferred it). Not "answers khartoum": a
            // restarted server may carry updates from its journal.
            let got = dig_a(&kdig, &format!("db.{ZONE}"), addr)?;
            if got.is_empty() {
                bail!("no A record for db.{ZONE} yet")
            } else {
                Ok(())
            }
        }),
    };
    Ok(DnsServer {
        component: Component::spawn(&name, None, addr, spec)?,
        config,
        primary: i == 0,
    })
}

/// `knot.conf` of server `i` of `addrs` (0: the primary, NOTIFYing the others); transfers
/// and NOTIFYs are accepted from the networks in `peers` (`a/n, b/m`).
fn knot_conf(addrs: &[SocketAddr], i: usize, home: &Path, key: &TsigKey, peers: &str) -> String {
    let (addr, primary_addr, secondaries) = (addrs[i], addrs[0], &addrs[1..]);
    let mut conf = format!(
        "server:\n    rundir: \"{run}\"\n    listen: {ip}@{port}\n\n\
         log:\n  - target: stderr\n    any: info\n\n\
         database:\n    storage: \"{db}\"\n\n\
         key:\n  - id: {key}\n    algorithm: hmac-sha256\n    secret: {secret}\n\n",
        run = home.join("run").display(),
        ip = addr.ip(),
        port = addr.port(),
        db = home.join("db").display(),
        key = key.name,
        secret = key.secret,
    );
    let zone = if i == 0 {
        if !secondaries.is_empty() {
            conf.push_str("remote:\n");
            for (j, s) in secondaries.iter().enumerate() {
                conf.push_str(&format!(
                    "  - id: secondary-{}\n    address: {}@{}\n",
                    j + 1,
                    s.ip(),
                    s.port()
                ));
            }
            conf.push('\n');
        }
        conf.push_str(&format!(
            "acl:\n  - id: update\n    key: {}\n    action: update\n  - id: transfer\n    address: [{peers}]\n    action: transfer\n\n",
            key.name
        ));
        let notify: Vec<String> = (1..=secondaries.len())
            .map(|j| format!("secondary-{j}"))
            .collect();
        format!(
            "    file: {ZONE}zone\n    acl: [update, transfer]\n{}",
            if notify.is_empty() {
                String::new()
            } else {
                format!("    notify: [{}]\n", notify.join(", "))
            }
        )
    } else {
        conf.push_str(&format!(
            "remote:\n  - id: primary\n    address: {}@{}\n\n\
             acl:\n  - id: notify\n    address: [{peers}]\n    action: notify\n\n",
            primary_addr.ip(),
            primary_addr.port()
        ));
        "    master: primary\n    acl: [notify]\n".to_string()
    };
    conf.push_str(&format!(
        "template:\n  - id: default\n    storage: \"{}\"\n    zonefile-sync: -1\n    journal-content: changes\n\n\
         zone:\n  - domain: {ZONE}\n{zone}",
        home.join("zones").display()
    ));
    conf
}

/// The zone's SOA serial as `server` answers it (it moves once per applied UPDATE).
pub fn soa_serial(server: std::net::SocketAddr) -> Result<u64> {
    let out = std::process::Command::new("kdig")
        .args([
            format!("@{}", server.ip()),
            "-p".into(),
            server.port().to_string(),
            "+short".into(),
            "SOA".into(),
            ZONE.into(),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no SOA serial in {text:?}"))
}
