//! `niledr audit list`: a page of the daemon's audit chain (`GET /api/v1/audit`), filtered by
//! actor, execution and time, as a table (or `--json`), with the next page's `--after`.

use std::fmt::Write as _;

use clap::Args;
use niledr_web::types::{AuditEntryView, AuditPageView};

use super::client::{self, CliError};
use super::conn::Connection;
use super::{connect, pretty};

/// Arguments of `niledr audit list`.
#[derive(Args, Debug)]
pub struct AuditList {
    /// Entries after this seq (the previous page's last; 0 = from the start).
    #[arg(long, value_name = "SEQ")]
    after: Option<u64>,
    /// At most this many entries (1 to 1000, default 100).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Only this actor's entries (a user, `niledr`, `drill:<name>`).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Only entries about this execution.
    #[arg(long, value_name = "ID")]
    execution: Option<String>,
    /// From this time on (RFC 3339, e.g. 2026-12-01T03:00:00Z).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Cluster mode: `local` reads this instance's chain of status changes.
    #[arg(long, value_name = "shared|local")]
    chain: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

pub fn list(a: AuditList) -> Result<String, CliError> {
    let (after, limit) = (
        a.after.map(|n| n.to_string()),
        a.limit.map(|n| n.to_string()),
    );
    let query: Vec<(&str, &str)> = [
        ("after", after.as_deref()),
        ("limit", limit.as_deref()),
        ("actor", a.actor.as_deref()),
        ("execution", a.execution.as_deref()),
        ("since", a.since.as_deref()),
        ("until", a.until.as_deref()),
        ("chain", a.chain.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let v = connect(&a.conn)?.get_query(&["api", "v1", "audit"], &query)?;
    if a.json {
        return Ok(pretty(&v));
    }
    Ok(table(&client::decode::<AuditPageView>(v, "audit page")?))
}

fn detail(e: &AuditEntryView) -> String {
    e.detail
        .iter()
        .filter(|(k, _)| k.as_str() != "id" || e.execution.is_none())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line per entry, then where the next page starts.
pub fn table(p: &AuditPageView) -> String {
    let mut o = String::new();
    if p.entries.is_empty() {
        let _ = writeln!(
            o,
            "no audit entries match (chain {}, head seq {})",
            p.chain, p.head_seq
        );
        return o;
    }
    let _ = writeln!(
        o,
        "{:>6}  {:<24}  {:<16}  {:<26}  {:<36}  DETAIL",
        "SEQ", "AT", "ACTOR", "KIND", "EXECUTION"
    );
    for e in &p.entries {
        let _ = writeln!(
            o,
            "{:>6}  {:<24}  {:<16}  {:<26}  {:<36}  {}",
            e.seq,
            e.at,
            e.actor,
            e.kind,
            e.execution.as_deref().unwrap_or("-"),
            detail(e)
        );
    }
    match p.next_after {
        Some(n) => {
            let _ = writeln!(o, "more: --after {n}");
        }
        None => {
            let _ = writeln!(o, "end of chain {} (head seq {})", p.chain, p.head_seq);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_renders_one_line_per_entry_and_the_next_after() {
        let e = |seq: u64, exec: Option<&str>| AuditEntryView {
            seq,
            at: "2026-12-01T00:00:00Z".into(),
            actor: "amira".into(),
            kind: "approval.approved".into(),
            execution: exec.map(str::to_string),
            detail: [
                ("id".to_string(), "e1".to_string()),
                ("digest".into(), "ab".into()),
            ]
            .into(),
            prev_hash: "p".into(),
            hash: "h".into(),
        };
        let p = AuditPageView {
            chain: "shared".into(),
            entries: vec![e(7, Some("e1")), e(8, None)],
            next_after: Some(8),
            head_seq: 20,
        };
        let t = table(&p);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[1].contains("     7  2026-12-01T00:00:00Z") && lines[1].contains("digest=ab"),
            "{t}"
        );
        assert!(
            !lines[1].contains("id=e1"),
            "the execution column already says it: {t}"
        );
        assert!(lines[2].contains("id=e1"), "{t}");
        assert_eq!(lines[3], "more: --after 8");
        let empty = AuditPageView {
            entries: vec![],
            next_after: None,
            ..p
        };
        assert_eq!(
            table(&empty),
            "no audit entries match (chain shared, head seq 20)\n"
        );
    }
}
