//! The platform's degradation level as applications see it: a watcher reads the platform-mode
//! TXT record from every authoritative server (every few seconds, and at once after a
//! `platform.mode` step), keeps the latest reading for the API and the plans, and announces
//! each change to the SSE stream.

use std::net::SocketAddr;
use std::sync::RwLock;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::actions::dns::mode::{self, PlatformMode};
use crate::config::DnsConfig;

/// How often the record is read back when nothing nudges the watcher.
const READ_EVERY: Duration = Duration::from_secs(2);

/// One reading of the record on every authoritative server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlatformReading {
    /// The record's name; `None` when the config has no zone (nothing is published).
    pub record: Option<String>,
    /// What the first server that answered holds (`None`: no record: level 0, never changed).
    pub mode: Option<PlatformMode>,
    /// Every server answered the same.
    pub agree: bool,
    pub servers: Vec<ServerReading>,
    /// RFC 3339; `None` before the first reading.
    pub observed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReading {
    pub server: SocketAddr,
    pub level: Option<u8>,
    pub error: Option<String>,
}

impl PlatformReading {
    pub fn level(&self) -> u8 {
        self.mode.as_ref().map_or(0, |m| m.level)
    }

    /// The same published state (what a change event is about), ignoring when it was read.
    fn same_state(&self, other: &PlatformReading) -> bool {
        self.mode == other.mode && self.agree == other.agree && self.record == other.record
    }
}

/// The latest reading and its change announcements; lives in `Shared`.
pub struct PlatformWatch {
    current: RwLock<PlatformReading>,
    changes: broadcast::Sender<PlatformReading>,
    nudge: Notify,
}

impl Default for PlatformWatch {
    fn default() -> Self {
        PlatformWatch {
            current: RwLock::new(PlatformReading::default()),
            changes: broadcast::channel(64).0,
            nudge: Notify::new(),
        }
    }
}

impl PlatformWatch {
    pub fn current(&self) -> PlatformReading {
        match self.current.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Observed level for plans (`None` before the first reading or with no zone).
    pub fn observed_level(&self) -> Option<u8> {
        let r = self.current();
        r.observed_at.as_ref().and(r.record.as_ref())?;
        Some(r.level())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PlatformReading> {
        self.changes.subscribe()
    }

    /// Read the record again now (a step just changed it).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    fn store(&self, reading: PlatformReading) {
        let changed = {
            let mut cur = match self.current.write() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            let changed = !cur.same_state(&reading) || cur.observed_at.is_none();
            *cur = reading.clone();
            changed
        };
        if changed {
            if let Some(m) = &reading.mode {
                tracing::info!(level = m.level, reason = %m.reason, "platform level observed");
            }
            let _ = self.changes.send(reading);
        }
    }

    /// Read the record until `stop`; does nothing without a zone.
    pub async fn run(&self, dns: Option<DnsConfig>, stop: CancellationToken) {
        let Some(dns) = dns else { return };
        loop {
            self.store(read_all(&dns).await);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(READ_EVERY) => {}
            }
        }
    }
}

/// Every server's reading; the published state is the first server's that answered.
async fn read_all(dns: &DnsConfig) -> PlatformReading {
    let record = dns.platform_mode_record.clone();
    let mut servers = Vec::new();
    let mut modes = Vec::new();
    for s in &dns.servers {
        match mode::read(*s, &record).await {
            Ok(held) => {
                servers.push(ServerReading {
                    server: *s,
                    level: Some(held.mode.as_ref().map_or(0, |m| m.level)),
                    error: None,
                });
                modes.push(held.mode);
            }
            Err(e) => servers.push(ServerReading {
                server: *s,
                level: None,
                error: Some(format!("{e:#}")),
            }),
        }
    }
    let agree = servers.iter().all(|s| s.error.is_none()) && modes.windows(2).all(|w| w[0] == w[1]);
    PlatformReading {
        record: Some(record),
        mode: modes.into_iter().next().flatten(),
        agree,
        servers,
        observed_at: Some(jiff::Timestamp::now().to_string()),
    }
}
