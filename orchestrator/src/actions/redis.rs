//! Redis actions: promote a replica (`REPLICAOF NO ONE`) and point a server at a primary
//! (`REPLICAOF host port`), both idempotent through `ROLE`; fence a master before a planned
//! promotion (`CLIENT PAUSE WRITE` until its replica has every byte) and undo that fence.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value,
};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Where to connect (plain data).
#[derive(Clone)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({}:{})", self.host, self.port)
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl RedisTarget {
    pub fn new(host: impl Into<String>, port: u16, password: Option<String>) -> RedisTarget {
        RedisTarget {
            host: host.into(),
            port,
            password,
        }
    }

    async fn connect(&self) -> Result<MultiplexedConnection> {
        let mut settings = RedisConnectionInfo::default();
        if let Some(pw) = &self.password {
            settings = settings.set_password(pw);
        }
        let info = ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()
            .context("redis connection info")?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).with_context(|| format!("redis {self}"))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("connecting to redis {self}"))
    }
}

/// What `ROLE` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisRole {
    Primary {
        replicas: usize,
    },
    Replica {
        primary_host: String,
        primary_port: u16,
        /// `connect`, `connecting`, `sync` or `connected`.
        link: String,
    },
    Other(String),
}

impl fmt::Display for RedisRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisRole::Primary { replicas } => write!(f, "primary with {replicas} replica(s)"),
            RedisRole::Replica {
                primary_host,
                primary_port,
                link,
            } => write!(f, "replica of {primary_host}:{primary_port} ({link})"),
            RedisRole::Other(r) => write!(f, "{r}"),
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn parse_role(v: &Value) -> Result<RedisRole> {
    let Value::Array(items) = v else {
        bail!("ROLE answered {v:?}");
    };
    let kind = items.first().and_then(text).context("ROLE: empty reply")?;
    Ok(match kind.as_str() {
        "master" => RedisRole::Primary {
            replicas: match items.get(2) {
                Some(Value::Array(r)) => r.len(),
                _ => 0,
            },
        },
        "slave" => RedisRole::Replica {
            primary_host: items
                .get(1)
                .and_then(text)
                .context("ROLE: no primary host")?,
            primary_port: items
                .get(2)
                .and_then(text)
                .and_then(|p| p.parse().ok())
                .context("ROLE: no primary port")?,
            link: items.get(3).and_then(text).unwrap_or_default(),
        },
        other => RedisRole::Other(other.to_string()),
    })
}

async fn role_on(conn: &mut MultiplexedConnection) -> Result<RedisRole> {
    let v: Value = redis::cmd("ROLE").query_async(conn).await.context("ROLE")?;
    parse_role(&v)
}

/// The server's role (in-doubt check for both actions).
pub async fn role(target: &RedisTarget) -> Result<RedisRole> {
    let mut c = target.connect().await?;
    role_on(&mut c)
        .await
        .with_context(|| format!("redis {target}"))
}

/// Before → after of a role change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub before: RedisRole,
    pub after: RedisRole,
    /// The role was already the wanted one: nothing was sent.
    pub already_done: bool,
    pub took: Duration,
}

/// `REPLICAOF NO ONE` unless `ROLE` already says primary. Rollback: `replicaof` the old primary.
pub async fn promote(target: &RedisTarget) -> Result<RoleChange> {
    let t0 = Instant::now();
    let mut c = target.connect().await?;
    let before = role_on(&mut c)
        .await
        .with_context(|| format!("redis {target}"))?;
    if matches!(before, RedisRole::Primary { .. }) {
        return Ok(RoleChange {
            after: before.clone(),
            before,
            already_done: true,
            took: t0.elapsed(),
        });
    }
    let _: Value = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut c)
        .await
        .with_context(|| format!("redis {target}: REPLICAOF NO ONE"))?;
    let after = role_on(&mut c).await?;
    if !matches!(after, RedisRole::Primary { .. }) {
        return Err(anyhow!(
            "redis {target}: still {after} after REPLICAOF NO ONE"
        ));
    }
    Ok(RoleChange {
        before,
        after,
        already_done: false,
        took: t0.elapsed(),
    })
}

/// Best effort `CLIENT UNPAUSE` on a server that has just become a replica: a paused replica
/// applies nothing from its new master, and the writes a `fence` held now fail with READONLY
/// at once instead of when the pause expires. Older servers (no UNPAUSE) are never paused.
async fn lift_pause(conn: &mut MultiplexedConnection) {
    let _: Result<Value, _> = redis::cmd("CLIENT").arg("UNPAUSE").query_async(conn).await;
}

/// `REPLICAOF host port` unless `ROLE` already names that primary. Returns once the
/// command is accepted; the link state in `after` shows how far the sync got (poll `role`
/// for `connected`). `REPLICAOF` is not a write, so it runs on a master paused by `fence`; once
/// it is a replica the pause is lifted. Rollback: `promote`, or `replicaof` the previous primary.
pub async fn replicaof(target: &RedisTarget, host: &str, port: u16) -> Result<RoleChange> {
    let t0 = Instant::now();
    let mut c = target.connect().await?;
    let before = role_on(&mut c)
        .await
        .with_context(|| format!("redis {target}"))?;
    if let RedisRole::Replica {
        primary_host,
        primary_port,
        ..
    } = &before
        && primary_host == host
        && *primary_port == port
    {
        lift_pause(&mut c).await;
        return Ok(RoleChange {
            after: before.clone(),
            before,
            already_done: true,
            took: t0.elapsed(),
        });
    }
    let _: Value = redis::cmd("REPLICAOF")
        .arg(host)
        .arg(port)
        .query_async(&mut c)
        .await
        .with_context(|| format!("redis {target}: REPLICAOF {host} {port}"))?;
    let after = role_on(&mut c).await?;
    match &after {
        RedisRole::Replica {
            primary_host,
            primary_port,
            ..
        } if primary_host == host && *primary_port == port => {}
        other => bail!("redis {target}: {other} after REPLICAOF {host} {port}"),
    }
    lift_pause(&mut c).await;
    Ok(RoleChange {
        before,
        after,
        already_done: false,
        took: t0.elapsed(),
    })
}

/// `INFO replication` as `field → value`.
fn parse_info(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn replication_on(
    conn: &mut MultiplexedConnection,
) -> Result<std::collections::BTreeMap<String, String>> {
    let v: Value = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await
        .context("INFO replication")?;
    let t = match &v {
        Value::VerbatimString { text, .. } => text.clone(),
        other => text(other).with_context(|| format!("INFO replication answered {other:?}"))?,
    };
    Ok(parse_info(&t))
}

/// Where a server is in its replication stream: the history id and the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    /// `master_replid`: a replica reports its master's.
    replid: String,
    /// A master's `master_repl_offset`; a replica's `slave_repl_offset` (what it processed).
    offset: u64,
    /// `role:slave` with `master_link_status:up`, or a master.
    linked: bool,
}

fn position(info: &std::collections::BTreeMap<String, String>) -> Result<Position> {
    let field = |k: &str| {
        info.get(k)
            .cloned()
            .with_context(|| format!("INFO replication has no {k}"))
    };
    let replica = info.get("role").map(String::as_str) == Some("slave");
    let offset_field = if replica {
        "slave_repl_offset"
    } else {
        "master_repl_offset"
    };
    let offset = field(offset_field)?
        .parse::<i64>()
        .with_context(|| format!("INFO replication: bad {offset_field}"))?;
    Ok(Position {
        replid: field("master_replid")?,
        offset: u64::try_from(offset).unwrap_or(0),
        linked: !replica || info.get("master_link_status").map(String::as_str) == Some("up"),
    })
}

/// What a fence found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceOutcome {
    /// How long client writes stay paused unless unpaused (rollback) or the master becomes a
    /// replica (writes then fail with READONLY).
    pub pause_ms: u64,
    /// The master's `master_repl_offset` once paused.
    pub master_offset: u64,
    /// The replica's offset when first checked and when it matched.
    pub replica_offset_before: u64,
    pub replica_offset: u64,
    /// From the pause until the replica matched.
    pub waited: Duration,
    pub took: Duration,
}

impl FenceOutcome {
    pub fn summary(&self, master: &str, replica: &str) -> String {
        format!(
            "{master} writes paused for up to {} s (CLIENT PAUSE WRITE) at offset {}; {replica} at {} → {} (caught up after {:.1} ms) in {:.1} ms",
            self.pause_ms / 1000,
            self.master_offset,
            self.replica_offset_before,
            self.replica_offset,
            self.waited.as_secs_f64() * 1000.0,
            self.took.as_secs_f64() * 1000.0
        )
    }
}

/// How often the fence re-reads the replica's offset.
const FENCE_POLL: Duration = Duration::from_millis(20);

/// `CLIENT PAUSE pause_ms WRITE` on `master` (write commands from clients block, reads and
/// `REPLICAOF` go on; Redis ≥ 6.2), then wait until `replica` has processed the master's
/// `master_repl_offset` on the same replication history. Idempotent: re-issuing the pause
/// extends it. If the replica does not catch up within `timeout` the pause is lifted (the
/// master stays the only writable one) and the step fails. Rollback: `unpause`.
pub async fn fence(
    master: &RedisTarget,
    replica: &RedisTarget,
    pause_ms: u64,
    timeout: Duration,
) -> Result<FenceOutcome> {
    let t0 = Instant::now();
    let mut m = master.connect().await?;
    let role = role_on(&mut m)
        .await
        .with_context(|| format!("redis {master}"))?;
    if !matches!(role, RedisRole::Primary { .. }) {
        bail!("redis {master} is {role}, not a master: nothing to fence");
    }
    let mut r = replica.connect().await?;
    let _: Value = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause_ms)
        .arg("WRITE")
        .query_async(&mut m)
        .await
        .with_context(|| {
            format!("redis {master}: CLIENT PAUSE {pause_ms} WRITE (needs Redis ≥ 6.2)")
        })?;
    let paused_at = Instant::now();
    let deadline = paused_at + timeout;
    let result = async {
        // Paused, the master's offset no longer moves (replication PINGs are paused too).
        let target = position(&replication_on(&mut m).await.with_context(|| format!("redis {master}"))?)?;
        let mut first = None;
        loop {
            let seen = position(
                &replication_on(&mut r)
                    .await
                    .with_context(|| format!("redis {replica}"))?,
            )?;
            first.get_or_insert(seen.offset);
            if seen.replid != target.replid {
                bail!(
                    "redis {replica} is not replicating {master}'s history (replid {} ≠ {})",
                    seen.replid,
                    target.replid
                );
            }
            if seen.linked && seen.offset >= target.offset {
                return Ok(FenceOutcome {
                    pause_ms,
                    master_offset: target.offset,
                    replica_offset_before: first.unwrap_or(seen.offset),
                    replica_offset: seen.offset,
                    waited: paused_at.elapsed(),
                    took: t0.elapsed(),
                });
            }
            if Instant::now() >= deadline {
                bail!(
                    "redis {replica} at offset {} (link {}) did not reach {master}'s {} within {timeout:?}",
                    seen.offset,
                    if seen.linked { "up" } else { "down" },
                    target.offset
                );
            }
            tokio::time::sleep(FENCE_POLL).await;
        }
    }
    .await;
    if let Err(e) = &result {
        // Not caught up: lift the pause so the master (still the only master) takes writes.
        let lifted: Result<Value, _> = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async(&mut m)
            .await;
        return Err(anyhow!(
            "{e:#}; {}",
            match lifted {
                Ok(_) => format!("{master} unpaused"),
                Err(u) => format!(
                    "CLIENT UNPAUSE on {master} failed too ({u}): writes resume when the pause expires"
                ),
            }
        ));
    }
    result
}

/// What `unpause` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpauseOutcome {
    pub role: RedisRole,
    pub took: Duration,
}

/// `CLIENT UNPAUSE`: the inverse of `fence`. Harmless when not paused.
pub async fn unpause(target: &RedisTarget) -> Result<UnpauseOutcome> {
    let t0 = Instant::now();
    let mut c = target.connect().await?;
    let _: Value = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut c)
        .await
        .with_context(|| format!("redis {target}: CLIENT UNPAUSE"))?;
    let role = role_on(&mut c)
        .await
        .with_context(|| format!("redis {target}"))?;
    Ok(UnpauseOutcome {
        role,
        took: t0.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_replication_positions() {
        let master = parse_info(
            "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nmaster_replid:abc\r\nmaster_repl_offset:1819\r\n",
        );
        assert_eq!(
            position(&master).ok(),
            Some(Position {
                replid: "abc".into(),
                offset: 1819,
                linked: true
            })
        );
        let replica = parse_info(
            "role:slave\r\nmaster_link_status:down\r\nslave_repl_offset:1700\r\nmaster_replid:abc\r\nmaster_repl_offset:1819\r\n",
        );
        assert_eq!(
            position(&replica).ok(),
            Some(Position {
                replid: "abc".into(),
                offset: 1700,
                linked: false
            })
        );
        assert!(position(&parse_info("role:master\r\n")).is_err());
    }

    #[test]
    fn parses_role_replies() {
        let master = Value::Array(vec![
            bulk("master"),
            Value::Int(10),
            Value::Array(vec![Value::Nil]),
        ]);
        assert_eq!(
            parse_role(&master).ok(),
            Some(RedisRole::Primary { replicas: 1 })
        );
        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.1.1"),
            Value::Int(6379),
            bulk("connected"),
            Value::Int(10),
        ]);
        assert_eq!(
            parse_role(&replica).ok(),
            Some(RedisRole::Replica {
                primary_host: "127.0.1.1".into(),
                primary_port: 6379,
                link: "connected".into()
            })
        );
    }
}
