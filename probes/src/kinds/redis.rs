//! `redis` probe: role, master link status, replication offset and the offset lag against the
//! upstream primary, all from `INFO replication`.

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::Outcome;
use crate::result::{Observation, RedisObservation};
use crate::target::{RedisEndpoint, RedisSpec};

pub struct RedisProber {
    spec: RedisSpec,
    conn: Option<MultiplexedConnection>,
    upstream: Option<MultiplexedConnection>,
    /// Whom `upstream` is connected to.
    upstream_addr: Option<std::net::SocketAddr>,
}

impl RedisProber {
    pub fn new(spec: RedisSpec) -> Self {
        Self {
            spec,
            conn: None,
            upstream: None,
            upstream_addr: None,
        }
    }

    /// The server a replica's lag is measured against: the configured peer it follows now,
    /// or else its configured upstream.
    fn upstream_for(&self, obs: &RedisObservation) -> Option<&RedisEndpoint> {
        let followed = obs.master.as_ref().and_then(|(host, port)| {
            self.spec
                .peers
                .iter()
                .find(|e| e.address.port() == *port && e.address.ip().to_string() == *host)
        });
        followed.or(self.spec.upstream.as_ref())
    }

    pub fn reset(&mut self) {
        self.conn = None;
        self.upstream = None;
    }

    pub async fn run(&mut self) -> Outcome {
        let info = match info_replication(&mut self.conn, &self.spec.endpoint).await {
            Ok(info) => info,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        let mut obs = parse_info(&info);
        // A master (a promoted replica too) lags behind nobody.
        if let Some(up) = self
            .upstream_for(&obs)
            .filter(|_| obs.role != "master")
            .cloned()
        {
            if self.upstream_addr != Some(up.address) {
                self.upstream = None;
                self.upstream_addr = Some(up.address);
            }
            obs.lag_against = Some(up.address);
            match info_replication(&mut self.upstream, &up).await {
                Ok(up_info) => {
                    let up_obs = parse_info(&up_info);
                    if let (Some(theirs), Some(ours)) = (up_obs.repl_offset, obs.repl_offset) {
                        obs.offset_lag = Some(theirs.saturating_sub(ours));
                    }
                }
                Err(e) => {
                    self.upstream = None;
                    obs.upstream_error = Some(e);
                }
            }
        }
        Ok(Observation::Redis(obs))
    }
}

async fn info_replication(
    slot: &mut Option<MultiplexedConnection>,
    ep: &RedisEndpoint,
) -> Result<String, String> {
    if slot.is_none() {
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(pw) = &ep.password {
            settings = settings.set_password(pw);
        }
        let info = ConnectionAddr::Tcp(ep.address.ip().to_string(), ep.address.port())
            .into_connection_info()
            .map_err(|e| format!("redis address {}: {e}", ep.address))?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| format!("redis {}: {e}", ep.address))?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("connect {}: {e}", ep.address))?;
        *slot = Some(conn);
    }
    let conn = slot
        .as_mut()
        .ok_or_else(|| "connection vanished".to_string())?;
    redis::cmd("INFO")
        .arg("replication")
        .query_async::<String>(conn)
        .await
        .map_err(|e| format!("INFO replication {}: {e}", ep.address))
}

/// Parse the `key:value` lines of `INFO replication`.
pub fn parse_info(info: &str) -> RedisObservation {
    let mut obs = RedisObservation::default();
    let mut master_offset = None;
    let mut slave_offset = None;
    let (mut master_host, mut master_port) = (None, None);
    for line in info.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        match k {
            "role" => obs.role = v.to_string(),
            "master_link_status" => obs.master_link_up = Some(v == "up"),
            "master_repl_offset" => master_offset = v.parse().ok(),
            "slave_repl_offset" => slave_offset = v.parse().ok(),
            "connected_slaves" => obs.connected_replicas = v.parse().ok(),
            "master_host" => master_host = Some(v.to_string()),
            "master_port" => master_port = v.parse::<u16>().ok(),
            _ => {}
        }
    }
    obs.master = master_host.zip(master_port);
    obs.repl_offset = if obs.role == "slave" {
        slave_offset.or(master_offset)
    } else {
        master_offset
    };
    obs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replica_info() {
        let info = "# Replication\r\nrole:slave\r\nmaster_host:127.0.1.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nslave_repl_offset:1234\r\nmaster_repl_offset:1234\r\n";
        let obs = parse_info(info);
        assert_eq!(obs.role, "slave");
        assert_eq!(obs.master, Some(("127.0.1.1".to_string(), 6379)));
        assert_eq!(obs.master_link_up, Some(true));
        assert_eq!(obs.repl_offset, Some(1234));
    }

    #[test]
    fn parses_primary_info() {
        let info = "role:master\r\nconnected_slaves:1\r\nmaster_repl_offset:99\r\n";
        let obs = parse_info(info);
        assert_eq!(obs.role, "master");
        assert_eq!(obs.master_link_up, None);
        assert_eq!(obs.connected_replicas, Some(1));
        assert_eq!(obs.repl_offset, Some(99));
    }
}
