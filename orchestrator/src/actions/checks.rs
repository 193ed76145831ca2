//! Smoke tests through the production path: resolve the service name at the authoritative
//! DNS, connect, write a row and read it back (`sql_check`); an HTTP status check (`http_check`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::Connection;
use tokio::time::Instant;

use super::dns::query_a;
use super::postgres::PgTarget;

const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a successful SQL smoke test saw.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCheckOutcome {
    /// The name's A set at the authoritative server.
    pub resolved: Vec<Ipv4Addr>,
    /// The address that took the write.
    pub server: SocketAddr,
    /// `id` of the `niledr_smoke` row written and read back.
    pub row_id: i64,
    pub resolve_took: Duration,
    pub connect_took: Duration,
    pub write_took: Duration,
    pub total: Duration,
}

/// Resolve `name` at `dns_server` (directly, no cache), connect to the first address that
/// answers on `port`, write a row into `niledr_smoke` (created if missing) and read it back.
pub async fn sql_check(
    dns_server: SocketAddr,
    name: &str,
    port: u16,
    user: &str,
    password: &str,
    database: &str,
) -> Result<SqlCheckOutcome> {
    let t0 = Instant::now();
    let resolved = query_a(dns_server, name).await?.addrs;
    if resolved.is_empty() {
        bail!("{name} has no A record at {dns_server}");
    }
    let resolve_took = t0.elapsed();
    let mut errors = Vec::new();
    let mut found = None;
    for ip in &resolved {
        let target = PgTarget::new(ip.to_string(), port, user, password).with_database(database);
        match target.connect().await {
            Ok(c) => {
                found = Some((c, SocketAddr::from((*ip, port))));
                break;
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let Some((mut conn, server)) = found else {
        bail!(
            "{name} → {resolved:?}: no address accepted a connection: {}",
            errors.join("; ")
        );
    };
    let connect_took = t0.elapsed() - resolve_took;
    let tw = Instant::now();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS niledr_smoke (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text)",
    )
    .execute(&mut conn)
    .await
    .with_context(|| format!("{server}: creating niledr_smoke (read-only server?)"))?;
    let note = format!("niledr smoke {}", jiff::Timestamp::now());
    let row_id: i64 =
        sqlx::query_scalar("INSERT INTO niledr_smoke (note) VALUES ($1) RETURNING id")
            .bind(&note)
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("{server}: writing to niledr_smoke (read-only server?)"))?;
    let back: Option<String> = sqlx::query_scalar("SELECT note FROM niledr_smoke WHERE id = $1")
        .bind(row_id)
        .fetch_optional(&mut conn)
        .await
        .with_context(|| format!("{server}: reading niledr_smoke back"))?;
    let _ = conn.close().await;
    if back.as_deref() != Some(note.as_str()) {
        bail!("{server}: row {row_id} read back as {back:?}, wrote {note:?}");
    }
    Ok(SqlCheckOutcome {
        resolved,
        server,
        row_id,
        resolve_took,
        connect_took,
        write_took: tw.elapsed(),
        total: t0.elapsed(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheckOutcome {
    pub status: u16,
    pub took: Duration,
}

/// GET `url` and require `expect_status`.
pub async fn http_check(url: &str, expect_status: u16) -> Result<HttpCheckOutcome> {
    let t0 = Instant::now();
    let client = niledr_probes::kinds::http_client();
    let resp = client
        .get(url)
        .timeout(HTTP_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    if status != expect_status {
        bail!("GET {url}: status {status}, expected {expect_status}");
    }
    Ok(HttpCheckOutcome {
        status,
        took: t0.elapsed(),
    })
}
