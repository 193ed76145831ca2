//! Redis actions: promote a replica (`REPLICAOF NO ONE`) and point a server at a primary
//! (`REPLICAOF host port`), both idempotent through `ROLE`.

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

/// `REPLICAOF host port` unless `ROLE` already names that primary. Returns once the
/// command is accepted; the link state in `after` shows how far the sync got (poll `role`
/// for `connected`). Rollback: `promote`, or `replicaof` the previous primary.
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
    Ok(RoleChange {
        before,
        after,
        already_done: false,
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
