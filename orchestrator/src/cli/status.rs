//! `niledr status` (a table like `patronictl list`: each site's configured and current role,
//! status, lag, the DNS names answering there, cold-site freshness, and maintenance mode) and
//! `niledr pause-triggers` / `resume-triggers`.

use niledr_web::types::{SiteView, TopologyView, TriggersView};
use serde_json::json;

use super::{CliError, Connection, client, connect, pretty};

fn age(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

fn lag(site: &SiteView) -> String {
    let parts: Vec<String> = site
        .services
        .iter()
        .filter_map(|s| {
            let r = s.replication.as_ref()?;
            Some(format!(
                "{} {}",
                s.id,
                r.lag_bytes.map_or("-".into(), |b| format!("{b} B"))
            ))
            .filter(|_| r.role != "primary" && r.role != "master")
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn dns_here(t: &TopologyView, site: &str) -> String {
    let names: Vec<String> = t
        .dns
        .iter()
        .filter(|d| d.answer_site.as_deref() == Some(site))
        .map(|d| {
            if d.matches {
                d.name.clone()
            } else {
                format!("{} (MISMATCH)", d.name)
            }
        })
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

fn backups(site: &SiteView) -> String {
    match &site.backups {
        None => "-".into(),
        Some(b) => format!(
            "{}: base {}, WAL {}, restore tested {}",
            b.status,
            age(b.base_backup_age_seconds),
            age(b.wal_archive_age_seconds),
            b.restore_tested_at.as_deref().unwrap_or("never")
        ),
    }
}

fn maintenance(t: &TriggersView) -> String {
    if t.paused {
        format!(
            "MAINTENANCE: triggers paused by {} at {}: {}",
            t.by.as_deref().unwrap_or("?"),
            t.at.as_deref().unwrap_or("?"),
            t.reason.as_deref().unwrap_or("")
        )
    } else {
        "triggers: active".into()
    }
}

/// The table.
pub fn render(sites: &[SiteView], t: &TopologyView) -> String {
    let mut rows = vec![[
        "SITE".to_string(),
        "ROLE".into(),
        "CURRENT".into(),
        "STATUS".into(),
        "LAG".into(),
        "DNS".into(),
        "BACKUPS".into(),
    ]];
    for s in sites {
        rows.push([
            s.id.clone(),
            s.role.clone(),
            s.current_role.clone(),
            s.status.clone(),
            lag(s),
            dns_here(t, &s.id),
            backups(s),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let place = |p: &Option<niledr_web::types::PlacementView>| match p {
        Some(p) => format!(
            "{} at {} ({})",
            p.service,
            p.site.as_deref().unwrap_or("-"),
            p.status
        ),
        None => "unknown".into(),
    };
    out.push_str(&format!(
        "PostgreSQL primary: {}; Redis master: {}\n{}\n",
        place(&t.postgres_primary),
        place(&t.redis_master),
        maintenance(&t.triggers)
    ));
    out
}

pub fn status(conn: &Connection, json: bool) -> Result<String, CliError> {
    let c = connect(conn)?;
    let sites = c.get(&["api", "v1", "sites"])?;
    let topo = c.get(&["api", "v1", "topology"])?;
    if json {
        return Ok(pretty(&json!({ "sites": sites, "topology": topo })));
    }
    let sites: Vec<SiteView> = client::decode(sites, "site list")?;
    let topo: TopologyView = client::decode(topo, "topology")?;
    Ok(render(&sites, &topo))
}

pub fn set_triggers(
    conn: &Connection,
    pause: bool,
    reason: &str,
    json: bool,
) -> Result<String, CliError> {
    if reason.trim().is_empty() {
        return Err(CliError::Usage(
            "--reason must say why (it is audited)".into(),
        ));
    }
    let c = connect(conn)?;
    let what = if pause { "pause" } else { "resume" };
    let v = c.post(
        &["api", "v1", "triggers", what],
        &json!({ "reason": reason }),
    )?;
    if json {
        return Ok(pretty(&v));
    }
    let t: TriggersView = client::decode(v, "triggers")?;
    Ok(format!("{}\n", maintenance(&t)))
}
