//! The checked configuration: sites, services and their probes, DNS. `load` refuses a file with
//! unknown keys, unknown sites or services, bad durations or addresses, naming file, line and
//! column and what to fix.

mod backups;
pub mod cluster;
mod drills;
mod error;
pub mod hooks;
pub mod notifications;
mod raw;
mod sessions;
pub mod tsig;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use niledr_probes::{
    DnsSpec, HttpSpec, PgEndpoint, PgSpec, ProbeSpec, RedisEndpoint, RedisSpec, Target, Thresholds,
};
use sha2::{Digest, Sha256};
use toml::Spanned;

pub use error::ConfigError;
pub use raw::{ConnstrKind, Kind, SiteRole};
use raw::{RawConfig, RawProbe, RawService};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    /// sha256 of the file as loaded (audited at start).
    pub digest: String,
    pub listen: SocketAddr,
    pub store: PathBuf,
    pub sites: BTreeMap<String, Site>,
    pub services: BTreeMap<String, Service>,
    pub dns: Option<DnsConfig>,
    pub users_file: Option<PathBuf>,
    /// Rate limits of failed authentication (`[auth]`).
    pub auth_limits: crate::auth::limit::Limits,
    /// argon2 verifications at once (`[auth] verify_workers`).
    pub verify_workers: usize,
    /// Console sessions (`[auth] session_*`).
    pub sessions: crate::auth::session::SessionSettings,
    pub runbook_dirs: Vec<PathBuf>,
    pub drills: DrillsConfig,
    pub connstr: BTreeMap<String, ConnstrTarget>,
    /// `[cluster]`: several instances on etcd; `None` runs single-node on redb.
    pub cluster: Option<cluster::ClusterConfig>,
    /// `[api] metrics_public`: `/metrics` without a principal (default true).
    pub metrics_public: bool,
    /// `[hooks]`: pager tooling in (Alertmanager, PagerDuty, generic) and its matchers.
    pub hooks: hooks::HooksConfig,
    /// `[notifications]`: receivers and the outbox's retry policy (none: nobody is paged).
    pub notifications: notifications::NotificationsConfig,
}

#[derive(Clone, Debug)]
pub enum ConnstrTarget {
    File {
        path: PathBuf,
        template: String,
        reload_command: Option<Vec<String>>,
    },
    Pgbouncer {
        ini: PathBuf,
        database: String,
        dbname: String,
        admin: SocketAddr,
        user: String,
        password: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Site {
    pub id: String,
    pub role: SiteRole,
    pub address: Option<Ipv4Addr>,
    pub country: String,
    pub description: Option<String>,
    pub backup_dir: Option<PathBuf>,
    pub wal_archive: Option<PathBuf>,
    /// Cold-site backup objectives (`crate::topology::backups`).
    pub backups: crate::topology::backups::Objectives,
}

#[derive(Clone, Debug)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    pub history: u32,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub id: String,
    pub site: Option<String>,
    pub kind: Kind,
    pub critical: bool,
    pub upstream: Option<String>,
    pub spec: ProbeSpec,
    pub probe: ProbeSettings,
}

impl Service {
    pub fn target(&self) -> Target {
        Target {
            id: self.id.clone(),
            spec: self.spec.clone(),
            interval: self.probe.interval,
            timeout: self.probe.timeout,
        }
    }
}

pub use drills::{CanaryTarget, DrillsConfig};

#[derive(Clone, Debug)]
pub struct DnsConfig {
    pub zone: String,
    pub servers: Vec<SocketAddr>,
    pub tsig: Option<tsig::TsigKey>,
    /// The TXT record the platform's degradation level is published in, fully qualified
    /// (`_platform-mode.nilecare.sd.`).
    pub platform_mode_record: String,
}

/// Owner of the platform-mode record below the zone when the config names none.
pub const DEFAULT_PLATFORM_MODE_LABEL: &str = "_platform-mode";

/// Read and check a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read config file: {e}")))?;
    parse(path, &source)
}

/// Check config text (`path` is used for messages and to resolve relative paths).
pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(source)
        .map_err(|e| ConfigError::at(path, source, e.span(), e.message().trim().to_string()))?;
    Loader {
        path,
        source,
        base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
    }
    .check(raw)
}

struct Loader<'a> {
    path: &'a Path,
    source: &'a str,
    base: PathBuf,
}

impl Loader<'_> {
    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.source, Some(span), msg)
    }

    /// `dns.platform_mode_record`: labels below the zone (letters, digits, `-`, `_`).
    fn platform_mode_record(&self, d: &raw::RawDns) -> Result<String, ConfigError> {
        let zone = d.zone.get_ref();
        let Some(r) = &d.platform_mode_record else {
            return Ok(format!("{DEFAULT_PLATFORM_MODE_LABEL}.{zone}"));
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !r.get_ref().split('.').all(label_ok) {
            return Err(self.err(
                r.span(),
                format!(
                    "platform_mode_record {:?} must be a name relative to the zone {zone:?}, like \"{DEFAULT_PLATFORM_MODE_LABEL}\" (labels of letters, digits, '-' and '_', no final dot)",
                    r.get_ref()
                ),
            ));
        }
        Ok(format!("{}.{zone}", r.get_ref()))
    }

    /// A secret read from the file `f` names (relative to the config), trimmed; the file must
    /// exist and hold something. Never echoes the content.
    fn secret_text(&self, f: &toml::Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let p = self.resolve(f.get_ref());
        let text = std::fs::read_to_string(&p)
            .map_err(|e| self.err(f.span(), format!("cannot read {key} {}: {e}", p.display())))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(self.err(
                f.span(),
                format!(
                    "{key} {} is empty: put the secret on its first line",
                    p.display()
                ),
            ));
        }
        Ok(text)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let defaults = self.probe_settings(&raw.probe, None)?;
        let listen = match &raw.daemon.listen {
            Some(a) => a.get_ref().0,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::whole_file(self.path, "bad default listen"))?,
        };
        let store = self.resolve(
            raw.daemon
                .store
                .as_ref()
                .map_or("niledr.redb", |s| s.get_ref().as_str()),
        );

        let mut sites = BTreeMap::new();
        for (id, s) in &raw.sites {
            self.check_id(id, "site")?;
            let country = s.country.get_ref();
            if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(self.err(
                    s.country.span(),
                    format!(
                        "country {country:?} must be a two-letter ISO 3166 code such as \"SD\""
                    ),
                ));
            }
            sites.insert(
                id.get_ref().clone(),
                Site {
                    id: id.get_ref().clone(),
                    role: s.role,
                    address: match &s.address {
                        None => None,
                        Some(a) => Some(a.get_ref().parse().map_err(|_| {
                            self.err(a.span(), format!("site address {:?} must be an IPv4 address such as \"127.0.1.1\"", a.get_ref()))
                        })?),
                    },
                    country: country.clone(),
                    description: s.description.clone(),
                    backup_dir: s.backup_dir.as_deref().map(|p| self.resolve(p)),
                    wal_archive: s.wal_archive.as_deref().map(|p| self.resolve(p)),
                    backups: self.backup_objectives(s)?,
                },
            );
        }

        let dns = match &raw.dns {
            None => None,
            Some(d) => {
                let d = d.get_ref();
                if !d.zone.get_ref().ends_with('.') {
                    return Err(self.err(
                        d.zone.span(),
                        format!(
                            "zone {:?} must be fully qualified (end with a dot)",
                            d.zone.get_ref()
                        ),
                    ));
                }
                if d.servers.get_ref().is_empty() {
                    return Err(self.err(
                        d.servers.span(),
                        "dns.servers is empty; list every authoritative server as \"IP:PORT\"",
                    ));
                }
                let tsig = match &d.tsig_key_file {
                    None => None,
                    Some(f) => {
                        let file = self.resolve(f.get_ref());
                        Some(tsig::TsigKey::load(&file).map_err(|e| self.err(f.span(), e))?)
                    }
                };
                let platform_mode_record = self.platform_mode_record(d)?;
                Some(DnsConfig {
                    zone: d.zone.get_ref().clone(),
                    servers: d.servers.get_ref().iter().map(|a| a.get_ref().0).collect(),
                    tsig,
                    platform_mode_record,
                })
            }
        };

        let mut services = BTreeMap::new();
        for (id, svc) in &raw.services {
            self.check_id(id, "service")?;
            let service = self.service(id.get_ref(), svc, &raw, &defaults, &sites, dns.as_ref())?;
            services.insert(id.get_ref().clone(), service);
        }
        link_peers(&mut services);

        let users_file = raw
            .auth
            .as_ref()
            .map(|a| self.resolve(a.users_file.get_ref()));
        let (auth_limits, verify_workers) = self.auth_limits(raw.auth.as_ref())?;
        let sessions = self.sessions(raw.auth.as_ref())?;
        let runbook_dirs = raw
            .runbooks
            .as_ref()
            .map(|r| r.dirs.iter().map(|d| self.resolve(d.get_ref())).collect())
            .unwrap_or_default();
        let drills = self.drills(raw.drills.as_ref(), &services, dns.as_ref())?;
        let mut connstr = BTreeMap::new();
        for (id, c) in &raw.connstr {
            self.check_id(id, "connstr target")?;
            connstr.insert(id.get_ref().clone(), self.connstr(c)?);
        }

        let postgres_sites: Vec<String> = services
            .values()
            .filter(|s| s.kind == Kind::Postgres)
            .filter_map(|s| s.site.clone())
            .collect();
        let cluster = self.cluster(raw.cluster.as_ref(), &sites, &postgres_sites)?;
        let hooks = self.hooks(raw.hooks.as_ref(), &services)?;

        let notifications = self.notifications(raw.notifications.as_ref())?;

        Ok(Config {
            cluster,
            metrics_public: raw
                .api
                .as_ref()
                .and_then(|a| a.metrics_public)
                .unwrap_or(true),
            hooks,
            notifications,
            users_file,
            auth_limits,
            verify_workers,
            sessions,
            runbook_dirs,
            drills,
            connstr,
            path: self.path.to_path_buf(),
            digest: hex::encode(Sha256::digest(self.source.as_bytes())),
            listen,
            store,
            sites,
            services,
            dns,
        })
    }

    /// `[auth]` limits: counts at least 1, a window of at least one second; workers default to
    /// half the cores (at least one) so argon2 never takes every core.
    fn auth_limits(
        &self,
        raw: Option<&raw::RawAuth>,
    ) -> Result<(crate::auth::limit::Limits, usize), ConfigError> {
        let mut limits = crate::auth::limit::Limits::default();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut workers = (cores / 2).max(1);
        let Some(a) = raw else {
            return Ok((limits, workers));
        };
        let count = |v: &Option<Spanned<u32>>, key: &str, default: u32| match v {
            None => Ok(default),
            Some(n) if *n.get_ref() >= 1 => Ok(*n.get_ref()),
            Some(n) => Err(self.err(n.span(), format!("{key} must be at least 1"))),
        };
        limits.per_client = count(
            &a.failures_per_client,
            "failures_per_client",
            limits.per_client,
        )?;
        limits.per_client_user = count(
            &a.failures_per_client_user,
            "failures_per_client_user",
            limits.per_client_user,
        )?;
        workers = count(&a.verify_workers, "verify_workers", workers as u32)? as usize;
        if let Some(w) = &a.failure_window {
            if w.get_ref().0 < Duration::from_secs(1) {
                return Err(self.err(w.span(), "failure_window must be at least 1s"));
            }
            limits.window = w.get_ref().0;
        }
        Ok((limits, workers))
    }

    fn connstr(&self, c: &Spanned<raw::RawConnstr>) -> Result<ConnstrTarget, ConfigError> {
        let table = c.span();
        let c = c.get_ref();
        let need = |v: &Option<Spanned<String>>, key: &str| -> Result<String, ConfigError> {
            v.as_ref().map(|x| x.get_ref().clone()).ok_or_else(|| {
                self.err(
                    table.clone(),
                    format!("a {:?} connstr target needs `{key}`", c.kind.get_ref()).to_lowercase(),
                )
            })
        };
        Ok(match c.kind.get_ref() {
            ConnstrKind::File => {
                let template = need(&c.template, "template")?;
                if !template.contains("{host}") {
                    let span = c.template.as_ref().map_or(table.clone(), |t| t.span());
                    return Err(self.err(span, "template must contain {host} (and usually {port})"));
                }
                ConnstrTarget::File {
                    path: self.resolve(&need(&c.path, "path")?),
                    template,
                    reload_command: c.reload_command.clone(),
                }
            }
            ConnstrKind::Pgbouncer => {
                let password = match &c.password_file {
                    None => None,
                    Some(f) => {
                        let p = self.resolve(f.get_ref());
                        Some(
                            std::fs::read_to_string(&p)
                                .map_err(|e| {
                                    self.err(
                                        f.span(),
                                        format!("cannot read password file {}: {e}", p.display()),
                                    )
                                })?
                                .trim_end_matches(['\n', '\r'])
                                .to_string(),
                        )
                    }
                };
                ConnstrTarget::Pgbouncer {
                    ini: self.resolve(&need(&c.ini, "ini")?),
                    database: need(&c.database, "database")?,
                    dbname: c.dbname.clone().unwrap_or_else(|| "postgres".into()),
                    admin: c.admin.as_ref().map(|a| a.get_ref().0).ok_or_else(|| {
                        self.err(
                            table.clone(),
                            "a pgbouncer connstr target needs `admin` (IP:PORT of its console)",
                        )
                    })?,
                    user: c.user.clone().unwrap_or_else(|| "pgbouncer".into()),
                    password,
                }
            }
        })
    }

    fn check_id(&self, id: &Spanned<String>, what: &str) -> Result<(), ConfigError> {
        let ok = !id.get_ref().is_empty()
            && id
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(())
        } else {
            Err(self.err(
                id.span(),
                format!("{what} id {:?} may use only a-z, 0-9 and '-'", id.get_ref()),
            ))
        }
    }

    fn probe_settings(
        &self,
        p: &RawProbe,
        base: Option<&ProbeSettings>,
    ) -> Result<ProbeSettings, ConfigError> {
        let d = |v: &Option<Spanned<raw::Dur>>, dflt: Duration| {
            v.as_ref().map_or(dflt, |x| x.get_ref().0)
        };
        let interval = d(
            &p.interval,
            base.map_or(Duration::from_secs(1), |b| b.interval),
        );
        let timeout = d(
            &p.timeout,
            base.map_or(Duration::from_millis(500), |b| b.timeout),
        );
        let span_of = |v: &Option<Spanned<raw::Dur>>| v.as_ref().map(|x| x.span());
        if interval.is_zero() {
            return Err(self.err(
                span_of(&p.interval).unwrap_or(0..0),
                "interval must be greater than zero",
            ));
        }
        if timeout.is_zero() {
            return Err(self.err(
                span_of(&p.timeout).unwrap_or(0..0),
                "timeout must be greater than zero",
            ));
        }
        if timeout > interval {
            let span = span_of(&p.timeout).or(span_of(&p.interval)).unwrap_or(0..0);
            return Err(self.err(
                span,
                format!(
                    "timeout {} is longer than the interval {}; make the timeout at most the interval",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            ));
        }
        let count = |v: &Option<Spanned<u32>>, dflt: u32, name: &str| -> Result<u32, ConfigError> {
            match v {
                None => Ok(dflt),
                Some(x) if *x.get_ref() >= 1 => Ok(*x.get_ref()),
                Some(x) => Err(self.err(x.span(), format!("{name} must be at least 1"))),
            }
        };
        Ok(ProbeSettings {
            interval,
            timeout,
            thresholds: Thresholds {
                failure: count(
                    &p.failure_threshold,
                    base.map_or(3, |b| b.thresholds.failure),
                    "failure_threshold",
                )?,
                success: count(
                    &p.success_threshold,
                    base.map_or(2, |b| b.thresholds.success),
                    "success_threshold",
                )?,
            },
            history: count(&p.history, base.map_or(500, |b| b.history), "history")?,
        })
    }

    fn service(
        &self,
        id: &str,
        svc: &Spanned<RawService>,
        raw: &RawConfig,
        defaults: &ProbeSettings,
        sites: &BTreeMap<String, Site>,
        dns: Option<&DnsConfig>,
    ) -> Result<Service, ConfigError> {
        let table = svc.span();
        let s = svc.get_ref();
        let kind = *s.kind.get_ref();
        if let Some(site) = &s.site
            && !sites.contains_key(site.get_ref())
        {
            let known: Vec<&str> = sites.keys().map(String::as_str).collect();
            return Err(self.err(
                site.span(),
                format!(
                    "unknown site {:?}; known sites: {}",
                    site.get_ref(),
                    known.join(", ")
                ),
            ));
        }
        // Keys that belong to other kinds are refused at their own line.
        let allowed: &[&str] = match kind {
            Kind::Postgres => &[
                "address",
                "user",
                "password_file",
                "password_env",
                "database",
                "upstream",
            ],
            Kind::Redis => &["address", "password_file", "password_env", "upstream"],
            Kind::Http => &["url", "expect_status", "body_contains"],
            Kind::Tcp => &["address"],
            Kind::Dns => &["name", "expect"],
        };
        let present: [(&str, Option<Range<usize>>); 11] = [
            ("address", s.address.as_ref().map(|x| x.span())),
            ("user", s.user.as_ref().map(|x| x.span())),
            ("password_file", s.password_file.as_ref().map(|x| x.span())),
            ("password_env", s.password_env.as_ref().map(|x| x.span())),
            ("database", s.database.as_ref().map(|x| x.span())),
            ("upstream", s.upstream.as_ref().map(|x| x.span())),
            ("url", s.url.as_ref().map(|x| x.span())),
            ("expect_status", s.expect_status.as_ref().map(|x| x.span())),
            ("body_contains", s.body_contains.as_ref().map(|x| x.span())),
            ("name", s.name.as_ref().map(|x| x.span())),
            ("expect", s.expect.as_ref().map(|x| x.span())),
        ];
        for (key, span) in present {
            if let Some(span) = span
                && !allowed.contains(&key)
            {
                return Err(self.err(
                    span,
                    format!(
                        "`{key}` does not apply to a {} service; allowed here: {}",
                        kind_name(kind),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let need = |v: Option<Range<usize>>, key: &str| -> Result<(), ConfigError> {
            match v {
                Some(_) => Ok(()),
                None => Err(self.err(
                    table.clone(),
                    format!("service {id:?} ({}) needs `{key}`", kind_name(kind)),
                )),
            }
        };
        let probe = match &s.probe {
            Some(p) => self.probe_settings(p, Some(defaults))?,
            None => defaults.clone(),
        };
        let upstream = match &s.upstream {
            None => None,
            Some(u) => {
                let name = u.get_ref();
                let Some(other) = raw.services.iter().find(|(k, _)| k.get_ref() == name) else {
                    let known: Vec<&str> =
                        raw.services.keys().map(|k| k.get_ref().as_str()).collect();
                    return Err(self.err(
                        u.span(),
                        format!(
                            "unknown upstream service {name:?}; known services: {}",
                            known.join(", ")
                        ),
                    ));
                };
                if name == id {
                    return Err(self.err(u.span(), "a service cannot be its own upstream"));
                }
                if *other.1.get_ref().kind.get_ref() != kind {
                    return Err(self.err(
                        u.span(),
                        format!("upstream {name:?} is not a {} service", kind_name(kind)),
                    ));
                }
                Some((name.clone(), other.1.get_ref()))
            }
        };
        let spec = match kind {
            Kind::Postgres => {
                need(s.address.as_ref().map(|x| x.span()), "address")?;
                let endpoint = self.pg_endpoint(s)?;
                let upstream_ep = match &upstream {
                    Some((_, up)) => Some(self.pg_endpoint(up)?),
                    None => None,
                };
                ProbeSpec::Postgres(PgSpec {
                    endpoint,
                    upstream: upstream_ep,
                    peers: Vec::new(),
                })
            }
            Kind::Redis => {
                need(s.address.as_ref().map(|x| x.span()), "address")?;
                let endpoint = self.redis_endpoint(s)?;
                let upstream_ep = match &upstream {
                    Some((_, up)) => Some(self.redis_endpoint(up)?),
                    None => None,
                };
                ProbeSpec::Redis(RedisSpec {
                    endpoint,
                    upstream: upstream_ep,
                    peers: Vec::new(),
                })
            }
            Kind::Tcp => {
                need(s.address.as_ref().map(|x| x.span()), "address")?;
                ProbeSpec::Tcp {
                    address: s
                        .address
                        .as_ref()
                        .map(|a| a.get_ref().0)
                        .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
                }
            }
            Kind::Http => {
                let Some(url) = &s.url else {
                    return Err(self.err(table, format!("service {id:?} (http) needs `url`")));
                };
                let u = url.get_ref();
                let rest = u
                    .strip_prefix("http://")
                    .or_else(|| u.strip_prefix("https://"));
                if rest.is_none_or(|r| r.is_empty()) {
                    return Err(self.err(
                        url.span(),
                        format!("url {u:?} must start with http:// or https:// and name a host"),
                    ));
                }
                let expect_status = s.expect_status.as_ref().map_or(200, |x| *x.get_ref());
                if !(100..=599).contains(&expect_status) {
                    let span = s.expect_status.as_ref().map_or(table.clone(), |x| x.span());
                    return Err(self.err(
                        span,
                        "expect_status must be an HTTP status between 100 and 599",
                    ));
                }
                ProbeSpec::Http(HttpSpec {
                    url: u.clone(),
                    expect_status,
                    body_contains: s.body_contains.as_ref().map(|b| b.get_ref().clone()),
                })
            }
            Kind::Dns => {
                let Some(name) = &s.name else {
                    return Err(self.err(table, format!("service {id:?} (dns) needs `name`")));
                };
                let Some(dns) = dns else {
                    return Err(self.err(
                        s.kind.span(),
                        "a dns service needs a [dns] section listing the authoritative servers",
                    ));
                };
                let n = name.get_ref();
                if !n.ends_with('.') {
                    return Err(self.err(
                        name.span(),
                        format!("name {n:?} must be fully qualified (end with a dot)"),
                    ));
                }
                if !n.ends_with(&dns.zone) {
                    return Err(self.err(
                        name.span(),
                        format!("name {n:?} is outside the zone {:?}", dns.zone),
                    ));
                }
                let mut expect = Vec::new();
                if let Some(list) = &s.expect {
                    for a in list.get_ref() {
                        let ip: Ipv4Addr = a.get_ref().parse().map_err(|_| {
                            self.err(
                                a.span(),
                                format!("{:?} is not an IPv4 address", a.get_ref()),
                            )
                        })?;
                        expect.push(ip);
                    }
                } else {
                    return Err(self.err(
                        table,
                        format!(
                            "service {id:?} (dns) needs `expect`, the A answer set it should have"
                        ),
                    ));
                }
                ProbeSpec::Dns(DnsSpec {
                    name: n.clone(),
                    servers: dns.servers.clone(),
                    expect,
                })
            }
        };
        Ok(Service {
            id: id.to_string(),
            site: s.site.as_ref().map(|x| x.get_ref().clone()),
            kind,
            critical: s.critical,
            upstream: upstream.map(|(n, _)| n),
            spec,
            probe,
        })
    }

    fn password(&self, s: &RawService) -> Result<Option<String>, ConfigError> {
        match (&s.password_file, &s.password_env) {
            (Some(f), Some(_)) => {
                Err(self.err(f.span(), "give password_file or password_env, not both"))
            }
            (Some(f), None) => {
                let p = self.resolve(f.get_ref());
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    self.err(
                        f.span(),
                        format!("cannot read password file {}: {e}", p.display()),
                    )
                })?;
                Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
            }
            (None, Some(v)) => match std::env::var(v.get_ref()) {
                Ok(val) => Ok(Some(val)),
                Err(_) => Err(self.err(
                    v.span(),
                    format!("environment variable {} is not set", v.get_ref()),
                )),
            },
            (None, None) => Ok(None),
        }
    }

    fn pg_endpoint(&self, s: &RawService) -> Result<PgEndpoint, ConfigError> {
        Ok(PgEndpoint {
            address: s
                .address
                .as_ref()
                .map(|a| a.get_ref().0)
                .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            user: s
                .user
                .as_ref()
                .map_or("postgres".into(), |u| u.get_ref().clone()),
            password: self.password(s)?,
            database: s
                .database
                .as_ref()
                .map_or("postgres".into(), |d| d.get_ref().clone()),
        })
    }

    fn redis_endpoint(&self, s: &RawService) -> Result<RedisEndpoint, ConfigError> {
        Ok(RedisEndpoint {
            address: s
                .address
                .as_ref()
                .map(|a| a.get_ref().0)
                .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            password: self.password(s)?,
        })
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Postgres => "postgres",
        Kind::Redis => "redis",
        Kind::Http => "http",
        Kind::Tcp => "tcp",
        Kind::Dns => "dns",
    }
}

/// Every PostgreSQL (Redis) probe knows the other configured PostgreSQL (Redis) servers: a
/// standby's lag is measured against the one it streams from now (after a failback that is not
/// the configured `upstream`).
fn link_peers(services: &mut BTreeMap<String, Service>) {
    let pg: Vec<(String, niledr_probes::target::PgEndpoint)> = services
        .iter()
        .filter_map(|(id, s)| match &s.spec {
            ProbeSpec::Postgres(p) => Some((id.clone(), p.endpoint.clone())),
            _ => None,
        })
        .collect();
    let redis: Vec<(String, niledr_probes::target::RedisEndpoint)> = services
        .iter()
        .filter_map(|(id, s)| match &s.spec {
            ProbeSpec::Redis(r) => Some((id.clone(), r.endpoint.clone())),
            _ => None,
        })
        .collect();
    fn others<E: Clone>(all: &[(String, E)], id: &str) -> Vec<E> {
        all.iter()
            .filter(|(other, _)| other != id)
            .map(|(_, e)| e.clone())
            .collect()
    }
    for (id, s) in services.iter_mut() {
        match &mut s.spec {
            ProbeSpec::Postgres(p) => p.peers = others(&pg, id),
            ProbeSpec::Redis(r) => r.peers = others(&redis, id),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
