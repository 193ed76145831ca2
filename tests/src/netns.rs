//! `Netns`: a per-test network world of Linux network namespaces — one per site plus a core
//! one holding the bridge and the DNS servers' addresses — with partitions between sites
//! (`cut`/`heal`, `isolate`/`rejoin`), commands run inside a site, and removal on drop
//! (stale worlds of crashed runs are swept at creation).
//!
//! Wiring, for world `ndr-<sfx>-*` on subnet `10.213.N.0/24`:
//! - namespace `…-core`: bridge `br0` with the DNS addresses `.53` and `.54`;
//! - `…-khartoum` (`.11`), `…-port-sudan` (`.12`), `…-dr-cold` (`.13`): `lo` and `eth0`,
//!   a veth whose peer is a port of `br0`;
//! - the test process's namespace: veth `ndr<sfx>` (`.1`), its peer a port of `br0`, so the
//!   test process reaches every address directly, on a device of its own.
//!
//! Nothing else of the test process's namespace is touched; firewall rules live only in the
//! site namespaces and vanish with them.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::bins;
use crate::layout::{Namespaces, Site};
use crate::util::{Captured, Owner, random_bytes, random_hex, run_capture};

/// Every name a world creates starts with this (namespaces `ndr-<sfx>-…`, link `ndr<sfx>`).
pub const PREFIX: &str = "ndr";
/// Lock files: `setup.lock` serialises creation and sweeping, `<sfx>.lock` is held by a
/// live world for as long as it lives (a crashed run's lock is free again: it is stale).
const LOCK_DIR: &str = "/run/niledr-netns";
/// Worlds live in `10.213.N.0/24`, N chosen so no route of this namespace overlaps.
const NET_OCTETS: (u8, u8) = (10, 213);
const PREFIX_LEN: u8 = 24;
const HOST: u8 = 1;
const DNS: [u8; 2] = [53, 54];
const SITES: [Site; 3] = [Site::Khartoum, Site::PortSudan, Site::DrCold];
/// The site end of each veth, inside the site's namespace.
const SITE_LINK: &str = "eth0";
const BRIDGE: &str = "br0";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

fn host_octet(site: Site) -> u8 {
    match site {
        Site::Khartoum => 11,
        Site::PortSudan => 12,
        Site::DrCold => 13,
    }
}

/// A network world; cheap to clone, removed when the last clone is dropped.
#[derive(Clone)]
pub struct Netns {
    inner: Arc<World>,
}

struct World {
    suffix: String,
    third_octet: u8,
    namespaces: Namespaces,
    host_link: String,
    tools: Tools,
    faults: Mutex<Faults>,
    /// Held while the world lives; the file is removed on drop.
    lock: (File, PathBuf),
}

struct Tools {
    ip: PathBuf,
    iptables: PathBuf,
}

#[derive(Default)]
struct Faults {
    cuts: HashSet<(Site, Site)>,
    isolated: HashSet<Site>,
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netns")
            .field("namespaces", &self.inner.namespaces)
            .field("host_link", &self.inner.host_link)
            .finish()
    }
}

impl Netns {
    /// Create a fresh world (root only), first removing stale worlds of crashed runs.
    pub fn create() -> Result<Netns> {
        ensure!(
            nix::unistd::geteuid().is_root(),
            "network namespaces need root (ip netns, veth, iptables); run the netns tests as root"
        );
        let tools = Tools {
            ip: bins::find("ip")?,
            iptables: bins::find("iptables")?,
        };
        bins::find("nsenter")?;
        fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
        let setup = File::create(Path::new(LOCK_DIR).join("setup.lock"))
            .context("opening the netns setup lock")?;
        setup.lock().context("taking the netns setup lock")?;
        sweep_stale(&tools)?;
        let suffix = unused_suffix(&tools)?;
        let third_octet = free_subnet(&tools)?;
        let lock_path = Path::new(LOCK_DIR).join(format!("{suffix}.lock"));
        let mut lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.try_lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        writeln!(lock, "pid {} subnet {third_octet}", std::process::id())?;
        let ns = |role: &str| format!("{PREFIX}-{suffix}-{role}");
        let world = World {
            namespaces: Namespaces {
                khartoum: ns(Site::Khartoum.name()),
                port_sudan: ns(Site::PortSudan.name()),
                dr_cold: ns(Site::DrCold.name()),
                core: ns("core"),
                subnet: Ipv4Addr::new(NET_OCTETS.0, NET_OCTETS.1, third_octet, 0),
                prefix_len: PREFIX_LEN,
            },
            host_link: format!("{PREFIX}{suffix}"),
            suffix,
            third_octet,
            tools,
            faults: Mutex::new(Faults::default()),
            lock: (lock, lock_path),
        };
        // On failure `world` is dropped here, which removes whatever was built.
        world.build()?;
        drop(setup);
        Ok(Netns {
            inner: Arc::new(world),
        })
    }

    /// The random part of every name of this world.
    pub fn suffix(&self) -> &str {
        &self.inner.suffix
    }

    pub fn namespaces(&self) -> &Namespaces {
        &self.inner.namespaces
    }

    /// The namespace of a site.
    pub fn ns(&self, site: Site) -> &str {
        self.inner.namespaces.of(site)
    }

    /// Every namespace and every link in the test process's namespace this world created.
    pub fn names(&self) -> Vec<String> {
        let n = &self.inner.namespaces;
        vec![
            n.core.clone(),
            n.khartoum.clone(),
            n.port_sudan.clone(),
            n.dr_cold.clone(),
            self.inner.host_link.clone(),
        ]
    }

    /// A site's address (on `eth0` in its namespace).
    pub fn ip(&self, site: Site) -> Ipv4Addr {
        self.inner.addr(host_octet(site))
    }

    /// The DNS servers' addresses (on the core namespace's bridge), primary first.
    pub fn dns_ips(&self) -> Vec<Ipv4Addr> {
        DNS.iter().map(|&o| self.inner.addr(o)).collect()
    }

    /// The test process's own address in the world (its veth `ndr<sfx>`).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.inner.addr(HOST)
    }

    /// Drop every packet between sites `a` and `b`, both directions (iptables DROP on the
    /// peer's address in INPUT and OUTPUT, in both sites' namespaces). Established
    /// connections stall rather than fail. Each site still reaches, and is reached by, the
    /// third site, DNS and the test process.
    pub fn cut(&self, a: Site, b: Site) -> Result<()> {
        let key = pair(a, b)?;
        let mut faults = self.inner.faults();
        ensure!(faults.cuts.insert(key), "{a} and {b} are already cut apart");
        let done = self
            .inner
            .drop_between(a, b, "-I")
            .and_then(|()| self.inner.drop_between(b, a, "-I"));
        if done.is_err() {
            faults.cuts.remove(&key);
            let _ = self.inner.drop_between(a, b, "-D");
            let _ = self.inner.drop_between(b, a, "-D");
        }
        done
    }

    /// Undo `cut(a, b)`.
    pub fn heal(&self, a: Site, b: Site) -> Result<()> {
        let key = pair(a, b)?;
        let mut faults = self.inner.faults();
        ensure!(faults.cuts.remove(&key), "{a} and {b} are not cut apart");
        self.inner.drop_between(a, b, "-D")?;
        self.inner.drop_between(b, a, "-D")
    }

    /// Take `site`'s `eth0` down inside its namespace: nothing gets in or out — not from
    /// the other sites, not from DNS, not from the test process — while its processes keep
    /// running and still talk to each other on the site address (its local route stays).
    pub fn isolate(&self, site: Site) -> Result<()> {
        let mut faults = self.inner.faults();
        ensure!(faults.isolated.insert(site), "{site} is already isolated");
        self.inner.site_link(site, "down")
    }

    /// Undo `isolate(site)`: `eth0` up again (the kernel restores the subnet route).
    pub fn rejoin(&self, site: Site) -> Result<()> {
        let mut faults = self.inner.faults();
        ensure!(faults.isolated.remove(&site), "{site} is not isolated");
        self.inner.site_link(site, "up")
    }

    /// `program` set up to run inside `site`'s namespace (as ourselves); add arguments,
    /// environment and stdio as usual.
    pub fn command(&self, site: Site, program: impl AsRef<Path>) -> Result<Command> {
        command_in(self.ns(site), program.as_ref(), None)
    }

    /// Run `program args` inside `site`'s namespace to completion (killed after 30 s);
    /// a non-zero exit is not an error here: look at `success`.
    pub fn exec(&self, site: Site, program: impl AsRef<Path>, args: &[&str]) -> Result<Captured> {
        let mut cmd = self.command(site, program.as_ref())?;
        cmd.args(args);
        run_capture(
            &format!("{} in {site}", program.as_ref().display()),
            cmd,
            None,
            COMMAND_TIMEOUT,
        )
    }
}

/// `program` run inside network namespace `ns` (`nsenter --net=/run/netns/NS`), as `owner`
/// when given (nsenter enters, then drops privileges). nsenter execs the program, so the
/// spawned child's pid is the program's own: signals reach it, not a wrapper.
pub fn command_in(ns: &str, program: &Path, owner: Option<Owner>) -> Result<Command> {
    let mut cmd = Command::new(bins::find("nsenter")?);
    cmd.arg(format!("--net=/run/netns/{ns}"));
    if let Some(o) = owner {
        cmd.arg(format!("--setuid={}", o.uid))
            .arg(format!("--setgid={}", o.gid));
    }
    cmd.arg("--").arg(program);
    Ok(cmd)
}

/// The two sites, in a fixed order (the key of a cut).
fn pair(a: Site, b: Site) -> Result<(Site, Site)> {
    ensure!(a != b, "cannot cut {a} from itself");
    let rank = |s: Site| SITES.iter().position(|&x| x == s);
    Ok(if rank(a) < rank(b) { (a, b) } else { (b, a) })
}

impl World {
    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(NET_OCTETS.0, NET_OCTETS.1, self.third_octet, host)
    }

    fn cidr_of(&self, host: u8) -> String {
        format!("{}/{PREFIX_LEN}", self.addr(host))
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        run(&self.tools.ip, args).map(drop)
    }

    /// Namespaces, bridge, one veth per site and one to the test process, `lo` up everywhere.
    fn build(&self) -> Result<()> {
        let n = &self.namespaces;
        let core = n.core.as_str();
        for ns in [core, &n.khartoum, &n.port_sudan, &n.dr_cold] {
            self.ip(&["netns", "add", ns])?;
            self.ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        self.ip(&[
            "-n",
            core,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        for octet in DNS {
            self.ip(&[
                "-n",
                core,
                "addr",
                "add",
                &self.cidr_of(octet),
                "dev",
                BRIDGE,
            ])?;
        }
        self.ip(&["-n", core, "link", "set", BRIDGE, "up"])?;
        for site in SITES {
            let ns = n.of(site);
            self.veth_to_bridge(SITE_LINK, Some(ns), site.name())?;
            let addr = self.cidr_of(host_octet(site));
            self.ip(&["-n", ns, "addr", "add", &addr, "dev", SITE_LINK])?;
            self.ip(&["-n", ns, "link", "set", SITE_LINK, "up"])?;
        }
        let host = self.host_link.as_str();
        self.veth_to_bridge(host, None, "host")?;
        self.ip(&["addr", "add", &self.cidr_of(HOST), "dev", host])?;
        self.ip(&["link", "set", host, "up"])
    }

    /// A veth `name` in `ns` (`None`: ours) whose peer `port` is a port of the core bridge.
    fn veth_to_bridge(&self, name: &str, ns: Option<&str>, port: &str) -> Result<()> {
        let core = self.namespaces.core.as_str();
        let mut args = vec!["link", "add", name];
        if let Some(ns) = ns {
            args.extend(["netns", ns]);
        }
        args.extend(["type", "veth", "peer", "name", port, "netns", core]);
        self.ip(&args)?;
        self.ip(&["-n", core, "link", "set", port, "master", BRIDGE, "up"])
    }

    /// Insert (`-I`) or delete (`-D`) the rules in `at`'s namespace that drop `peer`'s traffic.
    fn drop_between(&self, at: Site, peer: Site, op: &str) -> Result<()> {
        let peer_ip = self.addr(host_octet(peer)).to_string();
        for (chain, side) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
            let mut cmd = command_in(self.namespaces.of(at), &self.tools.iptables, None)?;
            cmd.args(["-w", op, chain, side, &peer_ip, "-j", "DROP"]);
            check(&format!("iptables in {at}"), cmd)?;
        }
        Ok(())
    }

    fn site_link(&self, site: Site, state: &str) -> Result<()> {
        self.ip(&[
            "-n",
            self.namespaces.of(site),
            "link",
            "set",
            SITE_LINK,
            state,
        ])
    }

    /// Remove everything (what does not exist is skipped); errors are reported, not raised.
    fn teardown(&self) {
        remove_world(&self.tools, &self.suffix);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.teardown();
        let _ = fs::remove_file(&self.lock.1);
        // The lock itself is released when the file is closed, right after.
    }
}

/// Remove the root-side link and every namespace of world `suffix`, quietly skipping what
/// is already gone. Deleting a namespace's name does not kill processes still inside it;
/// they are cut off from everything (their namespace's links go with it or are detached).
fn remove_world(tools: &Tools, suffix: &str) {
    let link = format!("{PREFIX}{suffix}");
    if root_links(tools).contains(&link) {
        report(run(&tools.ip, &["link", "del", &link]));
    }
    let prefix = format!("{PREFIX}-{suffix}-");
    for ns in list_netns(tools) {
        if ns.starts_with(&prefix) {
            report(run(&tools.ip, &["netns", "del", &ns]));
        }
    }
}

fn report(r: Result<String>) {
    if let Err(e) = r {
        eprintln!("niledr-tests: netns teardown: {e:#}");
    }
}

/// The `<sfx>` of a name this module makes (`ndr-<sfx>-…` or `ndr<sfx>`), if it is one.
fn suffix_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PREFIX)?;
    let (sfx, tail) = match rest.strip_prefix('-') {
        Some(r) => (r.get(..4)?, r.get(4..)?),
        None => (rest.get(..4)?, rest.get(4..)?),
    };
    let hex = sfx
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let shape = if rest.starts_with('-') {
        tail.starts_with('-')
    } else {
        tail.is_empty()
    };
    (hex && shape).then_some(sfx)
}

/// Is world `suffix` alive, i.e. is its lock file held?
fn is_live(suffix: &str) -> Result<bool> {
    let path = Path::new(LOCK_DIR).join(format!("{suffix}.lock"));
    let Ok(file) = OpenOptions::new().read(true).open(&path) else {
        return Ok(false);
    };
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("testing the lock {}", path.display()))
        }
    }
}

/// Remove worlds whose lock nobody holds (their test process died without its drop).
/// Called with the setup lock held, so no world is half-created meanwhile.
fn sweep_stale(tools: &Tools) -> Result<()> {
    let locks = fs::read_dir(LOCK_DIR)
        .with_context(|| format!("reading {LOCK_DIR}"))?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".lock")
                .map(str::to_string)
        });
    let mut suffixes: Vec<String> = list_netns(tools)
        .into_iter()
        .chain(root_links(tools))
        .filter_map(|n| suffix_of(&n).map(str::to_string))
        .chain(locks.filter(|s| s.len() == 4))
        .collect();
    suffixes.sort();
    suffixes.dedup();
    for sfx in suffixes {
        if !is_live(&sfx)? {
            eprintln!("niledr-tests: removing stale netns world {PREFIX}-{sfx} of a crashed run");
            remove_world(tools, &sfx);
            let _ = fs::remove_file(Path::new(LOCK_DIR).join(format!("{sfx}.lock")));
        }
    }
    Ok(())
}

/// A random 4-hex-digit suffix no namespace, link or lock file uses yet.
fn unused_suffix(tools: &Tools) -> Result<String> {
    let taken: HashSet<String> = list_netns(tools)
        .into_iter()
        .chain(root_links(tools))
        .filter_map(|n| suffix_of(&n).map(str::to_string))
        .collect();
    for _ in 0..100 {
        let sfx = random_hex(2)?;
        let lock = Path::new(LOCK_DIR).join(format!("{sfx}.lock"));
        if !taken.contains(&sfx) && !lock.exists() {
            return Ok(sfx);
        }
    }
    bail!("no unused netns suffix after 100 tries")
}

/// A third octet N such that `10.213.N.0/24` overlaps no route of our namespace (a live
/// world's subnet is routed via its link, so parallel worlds never share one).
fn free_subnet(tools: &Tools) -> Result<u8> {
    let routes = routes(tools)?;
    let base = u32::from(Ipv4Addr::new(NET_OCTETS.0, NET_OCTETS.1, 0, 0));
    for &n in &random_bytes(64)? {
        let candidate = (base | (u32::from(n) << 8), PREFIX_LEN);
        if !routes.iter().any(|&r| overlaps(r, candidate)) {
            return Ok(n);
        }
    }
    bail!(
        "no free /24 in {}.{}.0.0/16 (every one tried overlaps a route here)",
        NET_OCTETS.0,
        NET_OCTETS.1
    )
}

/// Destinations of every IPv4 route of our namespace (all tables), as (network, length).
fn routes(tools: &Tools) -> Result<Vec<(u32, u8)>> {
    let out = run(&tools.ip, &["-4", "-o", "route", "show", "table", "all"])?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let mut dest = words.next()?;
            if matches!(
                dest,
                "local"
                    | "broadcast"
                    | "unicast"
                    | "multicast"
                    | "anycast"
                    | "unreachable"
                    | "blackhole"
                    | "prohibit"
                    | "throw"
                    | "nat"
            ) {
                dest = words.next()?;
            }
            parse_cidr(dest)
        })
        .collect())
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32); `default` and the like are not destinations we overlap.
fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, len.parse().ok()?),
        None => (s, 32),
    };
    let ip: Ipv4Addr = ip.parse().ok()?;
    (len <= 32).then_some((u32::from(ip), len))
}

fn overlaps((a, alen): (u32, u8), (b, blen): (u32, u8)) -> bool {
    let len = alen.min(blen);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    a & mask == b & mask
}

/// Names of every network namespace (`ip netns list`).
fn list_netns(tools: &Tools) -> Vec<String> {
    run(&tools.ip, &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Names of every link of our namespace (`veth@peer` suffixes stripped).
fn root_links(tools: &Tools) -> Vec<String> {
    run(&tools.ip, &["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?;
            Some(name.split('@').next()?.to_string())
        })
        .collect()
}

/// `program args` to completion; its stdout, or an error carrying stderr.
fn run(program: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    check(&format!("{} {}", program.display(), args.join(" ")), cmd)
}

/// Run to completion; stdout, or (a non-zero exit) an error carrying stderr.
fn check(what: &str, cmd: Command) -> Result<String> {
    let out = run_capture(what, cmd, None, COMMAND_TIMEOUT)?;
    if !out.success {
        bail!("{what}: {} ({})", out.stderr.trim(), out.status);
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_read_only_from_our_own_names() {
        let cases = [
            ("ndr-0a9f-khartoum", Some("0a9f")),
            ("ndr-0a9f-core", Some("0a9f")),
            ("ndr0a9f", Some("0a9f")),
            ("ndr0a9f0", None),
            ("ndr-0A9F-core", None),
            ("ndr-0a9fcore", None),
            ("ndr-0a9", None),
            ("eth0", None),
            ("ndrx", None),
        ];
        for (name, want) in cases {
            assert_eq!(suffix_of(name), want, "{name}");
        }
    }

    #[test]
    fn overlap_is_by_the_shorter_prefix() {
        let net = |s| parse_cidr(s).unwrap();
        assert!(overlaps(net("10.0.0.0/8"), net("10.213.4.0/24")));
        assert!(overlaps(net("10.213.4.7"), net("10.213.4.0/24")));
        assert!(overlaps(net("0.0.0.0/0"), net("10.213.4.0/24")));
        assert!(!overlaps(net("10.213.5.0/24"), net("10.213.4.0/24")));
        assert!(!overlaps(net("192.0.2.0/24"), net("10.213.4.0/24")));
        assert_eq!(parse_cidr("default"), None);
    }
}
