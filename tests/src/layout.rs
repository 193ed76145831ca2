//! Sites and addresses: where each component of the NileCare topology listens.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// The three NileCare sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// Primary site (PostgreSQL primary, Redis primary, API).
    Khartoum,
    /// Hot standby (streaming replica, Redis replica, API).
    PortSudan,
    /// Cold standby (Omdurman): nothing runs, base backup + WAL archive only.
    DrCold,
}

impl Site {
    /// The site's name as used in niledr's config (`khartoum`, `port-sudan`, `dr-cold`).
    pub fn name(self) -> &'static str {
        match self {
            Site::Khartoum => "khartoum",
            Site::PortSudan => "port-sudan",
            Site::DrCold => "dr-cold",
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Ports of the services at one active site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SitePorts {
    pub postgres: u16,
    pub redis: u16,
    pub http: u16,
}

/// Where everything listens. The sandbox and the tests differ only in this (and the base dir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub khartoum: Ipv4Addr,
    pub port_sudan: Ipv4Addr,
    pub dr_cold: Ipv4Addr,
    pub khartoum_ports: SitePorts,
    pub port_sudan_ports: SitePorts,
    /// PgBouncer in front of khartoum's PostgreSQL, on khartoum's address.
    pub pgbouncer: u16,
    /// Authoritative DNS servers; the first is the primary (takes updates), the rest are
    /// secondaries fed by zone transfer + NOTIFY.
    pub dns: Vec<SocketAddr>,
    /// `None`: everything listens in the test process's own network namespace (loopback
    /// aliases). `Some`: each site's components run in that site's namespace (`Netns`).
    pub namespaces: Option<Namespaces>,
}

/// Which Linux network namespace each site and the DNS servers run in (see `crate::netns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    pub khartoum: String,
    pub port_sudan: String,
    pub dr_cold: String,
    /// Holds the bridge between the sites and the DNS servers' addresses.
    pub core: String,
    /// The private subnet every namespace address (and the test process's own one) is in.
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
}

impl Namespaces {
    /// The namespace of a site.
    pub fn of(&self, site: Site) -> &str {
        match site {
            Site::Khartoum => &self.khartoum,
            Site::PortSudan => &self.port_sudan,
            Site::DrCold => &self.dr_cold,
        }
    }

    /// `10.x.y.0/24`
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix_len)
    }
}

const KHARTOUM: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);
const PORT_SUDAN: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);
const DR_COLD: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 1);
const DNS_PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 9, 1);
const DNS_SECONDARY: Ipv4Addr = Ipv4Addr::new(127, 0, 9, 2);
const STANDARD_PORTS: SitePorts = SitePorts {
    postgres: 5432,
    redis: 6379,
    http: 80,
};
const STANDARD_PGBOUNCER: u16 = 6432;
const STANDARD_DNS: u16 = 53;
/// Where loopback-layout servers accept clients (and each other) from.
const LOOPBACK_NET: &str = "127.0.0.0/8";

impl Layout {
    /// Standard ports on the site loopback addresses (for people; needs root for 53 and 80).
    pub fn sandbox() -> Layout {
        Layout {
            khartoum: KHARTOUM,
            port_sudan: PORT_SUDAN,
            dr_cold: DR_COLD,
            khartoum_ports: STANDARD_PORTS,
            port_sudan_ports: STANDARD_PORTS,
            pgbouncer: STANDARD_PGBOUNCER,
            dns: vec![
                SocketAddr::from((DNS_PRIMARY, STANDARD_DNS)),
                SocketAddr::from((DNS_SECONDARY, STANDARD_DNS)),
            ],
            namespaces: None,
        }
    }

    /// Each site in its own network namespace of `net`, on its namespace address with the
    /// standard ports (every namespace has a port space of its own); DNS on the core
    /// namespace's addresses. Start it with `Topology::start_in(net, ..)`.
    pub fn netns(net: &Netns) -> Layout {
        Layout {
            khartoum: net.ip(Site::Khartoum),
            port_sudan: net.ip(Site::PortSudan),
            dr_cold: net.ip(Site::DrCold),
            khartoum_ports: STANDARD_PORTS,
            port_sudan_ports: STANDARD_PORTS,
            pgbouncer: STANDARD_PGBOUNCER,
            dns: net
                .dns_ips()
                .iter()
                .map(|&ip| SocketAddr::from((ip, STANDARD_DNS)))
                .collect(),
            namespaces: Some(net.namespaces().clone()),
        }
    }

    /// Same addresses, free ports (checked by binding on that very address; DNS ports are
    /// free for both UDP and TCP). Ports are random below the kernel's ephemeral range, and
    /// never handed out twice by one process, so topologies of parallel tests do not collide.
    pub fn free_ports() -> Result<Layout> {
        let site = |ip| -> Result<SitePorts> {
            Ok(SitePorts {
                postgres: free_tcp_port(ip)?,
                redis: free_tcp_port(ip)?,
                http: free_tcp_port(ip)?,
            })
        };
        Ok(Layout {
            khartoum: KHARTOUM,
            port_sudan: PORT_SUDAN,
            dr_cold: DR_COLD,
            khartoum_ports: site(KHARTOUM)?,
            port_sudan_ports: site(PORT_SUDAN)?,
            pgbouncer: free_tcp_port(KHARTOUM)?,
            dns: vec![
                SocketAddr::from((DNS_PRIMARY, free_dns_port(DNS_PRIMARY)?)),
                SocketAddr::from((DNS_SECONDARY, free_dns_port(DNS_SECONDARY)?)),
            ],
            namespaces: None,
        })
    }

    /// The network namespace a site's components run in (`None`: the test process's own).
    pub fn netns_of(&self, site: Site) -> Option<String> {
        self.namespaces.as_ref().map(|n| n.of(site).to_string())
    }

    /// The network namespace of the DNS servers (`None`: the test process's own).
    pub fn dns_netns(&self) -> Option<String> {
        self.namespaces.as_ref().map(|n| n.core.clone())
    }

    /// Networks (CIDR) whose clients and peers the servers accept: loopback, plus the
    /// namespaces' subnet (other sites, the test process) when there is one.
    pub fn client_networks(&self) -> Vec<String> {
        let mut nets = vec![LOOPBACK_NET.to_string()];
        nets.extend(self.namespaces.as_ref().map(Namespaces::cidr));
        nets
    }

    /// The address of a site (dr-cold has one although nothing listens there).
    pub fn ip(&self, site: Site) -> Ipv4Addr {
        match site {
            Site::Khartoum => self.khartoum,
            Site::PortSudan => self.port_sudan,
            Site::DrCold => self.dr_cold,
        }
    }

    /// Ports of an active site; `None` for dr-cold.
    pub fn ports(&self, site: Site) -> Option<SitePorts> {
        match site {
            Site::Khartoum => Some(self.khartoum_ports),
            Site::PortSudan => Some(self.port_sudan_ports),
            Site::DrCold => None,
        }
    }

    fn active(&self, site: Site) -> Result<(Ipv4Addr, SitePorts)> {
        let ports = self
            .ports(site)
            .with_context(|| format!("site {site} runs no services"))?;
        Ok((self.ip(site), ports))
    }

    pub fn postgres(&self, site: Site) -> Result<SocketAddr> {
        let (ip, p) = self.active(site)?;
        Ok(SocketAddr::from((ip, p.postgres)))
    }

    pub fn redis(&self, site: Site) -> Result<SocketAddr> {
        let (ip, p) = self.active(site)?;
        Ok(SocketAddr::from((ip, p.redis)))
    }

    pub fn http(&self, site: Site) -> Result<SocketAddr> {
        let (ip, p) = self.active(site)?;
        Ok(SocketAddr::from((ip, p.http)))
    }

    /// PgBouncer's listen address (khartoum's site address).
    pub fn pgbouncer(&self) -> SocketAddr {
        SocketAddr::from((self.khartoum, self.pgbouncer))
    }

    /// Every TCP address some component will listen on (DNS also needs UDP).
    pub fn all_tcp(&self) -> Vec<(String, SocketAddr)> {
        let mut out = Vec::new();
        for site in [Site::Khartoum, Site::PortSudan] {
            if let Ok((ip, p)) = self.active(site) {
                out.push((
                    format!("{site}-postgres"),
                    SocketAddr::from((ip, p.postgres)),
                ));
                out.push((format!("{site}-redis"), SocketAddr::from((ip, p.redis))));
                out.push((format!("{site}-api"), SocketAddr::from((ip, p.http))));
            }
        }
        out.push(("khartoum-pgbouncer".to_string(), self.pgbouncer()));
        for (i, a) in self.dns.iter().enumerate() {
            out.push((format!("dns-{}", i + 1), *a));
        }
        out
    }

    /// Fail early, with a useful message, if something already listens where we will.
    /// Namespaced layouts pass: their namespaces are new, and their addresses are not in
    /// this process's namespace to bind to.
    pub fn check_available(&self) -> Result<()> {
        if self.namespaces.is_some() {
            return Ok(());
        }
        for (what, addr) in self.all_tcp() {
            if let Err(e) = TcpListener::bind(addr) {
                bail!(
                    "{what}: {addr} is not available ({e}); is another sandbox or a system service \
                     (postgresql, redis-server, knot, nginx, pgbouncer) running? scripts/install-deps.sh stops them\n{}",
                    sockets_on(addr.port())
                );
            }
        }
        for addr in &self.dns {
            if let Err(e) = UdpSocket::bind(addr) {
                bail!("dns: udp {addr} is not available ({e})");
            }
        }
        Ok(())
    }
}

/// What `ss` lists on `port` (any address, any state), to name the process in the way.
fn sockets_on(port: u16) -> String {
    std::process::Command::new("ss")
        .args(["-Htanp", &format!("( sport = :{port} or dport = :{port} )")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(ss: {e})"))
}

fn handed_out() -> &'static Mutex<HashSet<(Ipv4Addr, u16)>> {
    static SEEN: OnceLock<Mutex<HashSet<(Ipv4Addr, u16)>>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(HashSet::new()))
}

fn claim(ip: Ipv4Addr, port: u16) -> bool {
    let mut seen = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    seen.insert((ip, port))
}

/// First port of the kernel's ephemeral range (clients' automatic source ports).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Lowest port we hand out.
const MIN_PORT: u16 = 10000;

/// A random port below the ephemeral range that is free on `ip` (TCP, and UDP too when
/// `udp`) and was not handed out before by this process.
///
/// Ports from `bind(0)` would come from the ephemeral range, where any client (a `kdig`
/// query, a knot NOTIFY) can be given the same port as its wildcard-bound source port
/// between our check and the server's bind. Below that range nothing is auto-assigned.
fn pick_port(ip: Ipv4Addr, udp: bool) -> Result<u16> {
    let high = ephemeral_low();
    if high <= MIN_PORT + 1000 {
        // Unusual kernel settings: fall back to the kernel's choice.
        let l = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
        return Ok(l.local_addr().context("local_addr")?.port());
    }
    let span = u32::from(high - MIN_PORT);
    for chunk in crate::util::random_bytes(4 * 200)?.chunks_exact(4) {
        let r = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let port = MIN_PORT + u16::try_from(r % span).context("port arithmetic")?;
        let tcp_free = TcpListener::bind((ip, port)).is_ok();
        let udp_free = !udp || UdpSocket::bind((ip, port)).is_ok();
        if tcp_free && udp_free && claim(ip, port) {
            return Ok(port);
        }
    }
    bail!("no free port on {ip}")
}

/// A TCP port that is free on `ip` right now and was not handed out before by this process.
pub fn free_tcp_port(ip: Ipv4Addr) -> Result<u16> {
    pick_port(ip, false)
}

/// A port free on `ip` for both UDP and TCP.
pub fn free_dns_port(ip: Ipv4Addr) -> Result<u16> {
    pick_port(ip, true)
}
