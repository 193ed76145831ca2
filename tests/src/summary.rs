//! The human summary of a running topology: one row per component with how to connect.

use std::fmt::Write as _;

use crate::dns::ZONE;
use crate::postgres::PG_USER;
use crate::topology::Topology;

/// A table (site, component, address, pid, how to connect) plus DNS update and log hints.
pub fn render(topo: &Topology) -> String {
    let secrets = topo.secrets();
    let mut rows: Vec<[String; 5]> = Vec::new();
    let pid = |p: Option<u32>| p.map_or("-".to_string(), |p| p.to_string());
    for pg in [topo.postgres_primary(), topo.postgres_standby()] {
        let a = pg.address();
        rows.push([
            site_name(pg.site()),
            pg.name().to_string(),
            a.to_string(),
            pid(pg.pid()),
            format!(
                "PGPASSWORD=$(cat {}) psql -h {} -p {} -U {PG_USER} postgres",
                secrets.postgres_password_file.display(),
                a.ip(),
                a.port()
            ),
        ]);
    }
    for r in [topo.redis_primary(), topo.redis_replica()] {
        let a = r.address();
        rows.push([
            site_name(r.site()),
            r.name().to_string(),
            a.to_string(),
            pid(r.pid()),
            format!(
                "redis-cli -h {} -p {} --no-auth-warning -a $(cat {})",
                a.ip(),
                a.port(),
                secrets.redis_password_file.display()
            ),
        ]);
    }
    let b = topo.pgbouncer();
    rows.push([
        site_name(b.site()),
        b.name().to_string(),
        b.address().to_string(),
        pid(b.pid()),
        format!(
            "PGPASSWORD=$(cat {}) psql -h {} -p {} -U {PG_USER} {} (admin: {}; ini {})",
            secrets.postgres_password_file.display(),
            b.address().ip(),
            b.address().port(),
            b.database(),
            b.admin_database(),
            b.ini_file().display()
        ),
    ]);
    for h in topo.http_endpoints() {
        rows.push([
            site_name(h.site()),
            h.name().to_string(),
            h.address().to_string(),
            pid(h.pid()),
            format!("curl {}", h.url()),
        ]);
    }
    for d in topo.dns().servers() {
        let a = d.address();
        rows.push([
            "(global)".to_string(),
            d.name().to_string(),
            a.to_string(),
            pid(d.pid()),
            format!("kdig @{} -p {} +short A db.{ZONE}", a.ip(), a.port()),
        ]);
    }
    let cold = topo.cold_site();
    rows.push([
        "dr-cold".to_string(),
        "base-backup + wal-archive".to_string(),
        cold.address.to_string(),
        "-".to_string(),
        format!(
            "ls {} {}",
            cold.base_backup.display(),
            cold.wal_archive.display()
        ),
    ]);

    let header = ["SITE", "COMPONENT", "ADDRESS", "PID", "CONNECT"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let primary = topo.dns().primary().address();
    let _ = write!(
        out,
        "\nDNS update (TSIG {key}; BIND-format key for niledr: {bind}):\n  \
         printf 'server {ip} {port}\\nzone {ZONE}\\nupdate delete db.{ZONE} A\\nupdate add db.{ZONE} 60 A {standby}\\nsend\\n' \
         | knsupdate -k {knot}\n\
         Logs: {logs}\n",
        key = secrets.tsig.name,
        bind = secrets.tsig.bind_file.display(),
        ip = primary.ip(),
        port = primary.port(),
        standby = topo.layout().port_sudan,
        knot = secrets.tsig.knot_file.display(),
        logs = topo.logs_dir().display(),
    );
    out
}

fn site_name(site: Option<crate::layout::Site>) -> String {
    site.map_or("(global)".to_string(), |s| s.name().to_string())
}
