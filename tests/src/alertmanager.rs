//! A real Prometheus Alertmanager (Debian `prometheus-alertmanager`) for the pager-hook
//! tests: started on a free port in its own directory, clustering off, with one webhook
//! receiver pointed at niledr (`send_resolved`, a bearer token from a file, short
//! group_wait / group_interval / repeat_interval so a test sees the first notification,
//! re-sends and the resolution within seconds). Alerts are posted to its `/api/v2/alerts`,
//! as Prometheus does; `notifications` reads its own count of webhook deliveries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use nix::sys::signal::Signal;

use crate::daemon::free_listen_addr;
use crate::http::{http_get, http_request};
use crate::process::{Component, ProcessSpec};
use crate::util::{make_dir, write_file};

/// Where Debian installs it.
const BINARY: &str = "prometheus-alertmanager";

/// Alertmanager's timing (`route` settings).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            group_wait: Duration::from_secs(1),
            group_interval: Duration::from_secs(1),
            repeat_interval: Duration::from_secs(3),
        }
    }
}

pub struct Alertmanager {
    component: Component,
    pub listen: SocketAddr,
    pub config: PathBuf,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn find_binary() -> Result<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin"])
    {
        let p = Path::new(dir).join(BINARY);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{BINARY} is not installed; run scripts/install-deps.sh (Debian package prometheus-alertmanager)"
    )
}

impl Alertmanager {
    /// Start it in `dir` with one receiver posting to `webhook_url` with
    /// `Authorization: Bearer <contents of token_file>`.
    pub fn start(
        dir: &Path,
        webhook_url: &str,
        token_file: &Path,
        timing: Timing,
    ) -> Result<Alertmanager> {
        make_dir(dir, 0o755, None)?;
        make_dir(&dir.join("data"), 0o755, None)?;
        let listen = free_listen_addr()?;
        let config = dir.join("alertmanager.yml");
        let yaml = format!(
            "route:\n  receiver: niledr\n  group_by: ['alertname', 'site']\n  group_wait: {gw}\n  group_interval: {gi}\n  repeat_interval: {ri}\n\
             receivers:\n  - name: niledr\n    webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials_file: '{token}'\n",
            gw = ms(timing.group_wait),
            gi = ms(timing.group_interval),
            ri = ms(timing.repeat_interval),
            token = token_file.display(),
        );
        write_file(&config, &yaml, 0o644, None)?;
        let spec = ProcessSpec {
            program: find_binary()?,
            args: vec![
                format!("--config.file={}", config.display()).into(),
                format!("--storage.path={}", dir.join("data").display()).into(),
                format!("--web.listen-address={listen}").into(),
                // No gossip: one instance, no port of its own for a cluster.
                "--cluster.listen-address=".into(),
                "--log.level=debug".into(),
            ],
            env: Vec::new(),
            cwd: Some(dir.to_path_buf()),
            owner: None,
            netns: None,
            log: dir.join("alertmanager.log"),
            graceful: Signal::SIGTERM,
            start_timeout: Duration::from_secs(30),
            retry_when_log_says: &[],
            ready: Box::new(move || {
                let r = http_get(listen, "/-/ready")?;
                if r.status == 200 {
                    Ok(())
                } else {
                    bail!("/-/ready answered {}", r.status)
                }
            }),
        };
        let component = Component::spawn("alertmanager", None, listen, spec)?;
        Ok(Alertmanager {
            component,
            listen,
            config,
        })
    }

    pub fn component(&self) -> &Component {
        &self.component
    }

    /// POST alerts to `/api/v2/alerts` (what Prometheus does).
    pub fn post_alerts(&self, alerts: &serde_json::Value) -> Result<()> {
        let body = alerts.to_string();
        let r = http_request(
            self.listen,
            "POST",
            "/api/v2/alerts",
            &[("Content-Type", "application/json")],
            Some(&body),
            Duration::from_secs(10),
        )?;
        if r.status != 200 {
            bail!("alertmanager refused the alerts ({}): {}", r.status, r.body);
        }
        Ok(())
    }

    /// Fire an alert with `labels` and `annotations`, started at `starts_at` (RFC 3339);
    /// it stays firing for Alertmanager's resolve_timeout (5 min) unless re-posted or resolved.
    pub fn fire(
        &self,
        labels: &serde_json::Value,
        annotations: &serde_json::Value,
        starts_at: &str,
    ) -> Result<()> {
        self.post_alerts(&serde_json::json!([{
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts_at,
            "generatorURL": "http://prometheus.test/graph",
        }]))
    }

    /// Resolve the alert with `labels` (same labels: same fingerprint) as of `ends_at`.
    pub fn resolve(
        &self,
        labels: &serde_json::Value,
        starts_at: &str,
        ends_at: &str,
    ) -> Result<()> {
        self.post_alerts(&serde_json::json!([{
            "labels": labels,
            "startsAt": starts_at,
            "endsAt": ends_at,
        }]))
    }

    /// Webhook notifications Alertmanager sent so far, (attempted, failed), from its own
    /// metrics (`alertmanager_notifications_total`, `_failed_total`, integration webhook).
    pub fn notifications(&self) -> Result<(u64, u64)> {
        let r = http_get(self.listen, "/metrics")?;
        if r.status != 200 {
            bail!("alertmanager /metrics answered {}", r.status);
        }
        let read = |name: &str| -> u64 {
            r.body
                .lines()
                .filter(|l| l.starts_with(name) && l.contains("integration=\"webhook\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .sum()
        };
        Ok((
            read("alertmanager_notifications_total{"),
            read("alertmanager_notifications_failed_total{"),
        ))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.component.log_tail(lines)
    }
}
