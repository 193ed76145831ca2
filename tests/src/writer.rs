//! `SideWriter`: an application writer inside one site's network namespace, committing through
//! the service name (`db.<zone>`, resolved at the authoritative DNS each time; the last answer
//! is kept when DNS cannot be reached, as a resolver's cache would) as the application role.
//! Every acknowledged insert is logged with the server that executed it, so split brain is
//! counted from the writers' logs and from both databases.

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::bins::pg_bindir;
use crate::netns::Netns;
use crate::{APP_USER, Site, ZONE};

/// The table both writers insert into; `server` is the address of the server that ran it.
pub const SPLIT_BRAIN_TABLE: &str = "CREATE TABLE IF NOT EXISTS split_brain (\
     id bigserial PRIMARY KEY, side text NOT NULL, \
     server text NOT NULL DEFAULT host(inet_server_addr()), \
     at timestamptz NOT NULL DEFAULT clock_timestamp()); \
     GRANT SELECT, INSERT ON split_brain TO app; \
     GRANT USAGE ON SEQUENCE split_brain_id_seq TO app";

pub struct SideWriter {
    child: Child,
    pub log: PathBuf,
}

/// One acknowledged insert: (server address, commit time as PostgreSQL printed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub server: String,
    pub at: String,
}

impl SideWriter {
    /// Start writing from `site`'s namespace as `side`, through DNS server `dns`, starting
    /// from `initial` (the address applications had before anything happened).
    pub fn start(
        net: &Netns,
        site: Site,
        side: &str,
        dns: SocketAddr,
        initial: Ipv4Addr,
        password: &str,
        log: &Path,
    ) -> Result<SideWriter> {
        let psql = pg_bindir()?.join("psql");
        let script = format!(
            "addr={initial}\n\
             while :; do\n\
               a=$(kdig @{dns_ip} -p {dns_port} +short +timeout=1 +retry=0 A db.{ZONE} 2>/dev/null | head -n1)\n\
               case \"$a\" in [0-9]*) addr=$a ;; esac\n\
               if out=$({psql} -X -q -At -h \"$addr\" -p 5432 -U {APP_USER} -d postgres \
                  -c \"INSERT INTO split_brain(side) VALUES ('{side}') RETURNING server, at\" 2>&1); then\n\
                 echo \"ACK $out\"\n\
               else\n\
                 echo \"ERR $(date +%s.%N) $addr $out\" | tr '\\n' ' '; echo\n\
               fi\n\
               sleep 0.02\n\
             done\n",
            dns_ip = dns.ip(),
            dns_port = dns.port(),
            psql = psql.display(),
        );
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = net
            .command(site, "/bin/bash")?
            .args(["-c", &script])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "1")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .process_group(0)
            .spawn()
            .context("starting the writer")?;
        Ok(SideWriter {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Every acknowledged insert so far, in order.
    pub fn acks(&self) -> Result<Vec<Ack>> {
        let f = std::fs::File::open(&self.log)?;
        Ok(std::io::BufReader::new(f)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| {
                let rest = l.strip_prefix("ACK ")?;
                let (server, at) = rest.split_once('|')?;
                Some(Ack {
                    server: server.to_string(),
                    at: at.to_string(),
                })
            })
            .collect())
    }

    /// Stop the loop (and a psql it is running).
    pub fn stop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for SideWriter {
    fn drop(&mut self) {
        self.stop();
    }
}
