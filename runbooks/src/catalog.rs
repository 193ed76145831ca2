//! `Catalog`: what a runbook may name (sites, services, connection-string targets, DNS names),
//! as plain data the orchestrator builds from its config.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteRole {
    Primary,
    HotStandby,
    ColdStandby,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Postgres,
    Redis,
    Http,
    Tcp,
    Dns,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Postgres => "postgres",
            ServiceKind::Redis => "redis",
            ServiceKind::Http => "http",
            ServiceKind::Tcp => "tcp",
            ServiceKind::Dns => "dns",
        }
    }

    /// Holds patient data: promoting one outside Sudan breaks PHI residency.
    pub fn is_data_store(self) -> bool {
        matches!(self, ServiceKind::Postgres | ServiceKind::Redis)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnstrKind {
    /// A file rewritten atomically (write, fsync, rename), previous version kept.
    File,
    /// A PgBouncer `[databases]` entry, applied with `RELOAD`.
    Pgbouncer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSite {
    pub role: SiteRole,
    /// ISO 3166-1 alpha-2, e.g. "SD".
    pub country: String,
    /// The IP the site's service names answer with after a cutover; when absent, the IP of a
    /// service at the site is used.
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogService {
    pub kind: ServiceKind,
    /// `None` for services that belong to no site (DNS names).
    #[serde(default)]
    pub site: Option<String>,
    /// `IP:PORT` from the config, when it has one.
    #[serde(default)]
    pub address: Option<String>,
    /// For `dns` services: the name they watch (`db.nilecare.sd.`).
    #[serde(default)]
    pub dns_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub sites: BTreeMap<String, CatalogSite>,
    pub services: BTreeMap<String, CatalogService>,
    pub connstr_targets: BTreeMap<String, ConnstrKind>,
    /// Fully qualified names in the zone that runbooks may change (`db.nilecare.sd.`).
    pub dns_names: BTreeSet<String>,
    /// The TXT record the platform's degradation level is published in
    /// (`_platform-mode.nilecare.sd.`); `None` when the config has no zone to publish it in.
    #[serde(default)]
    pub platform_mode_record: Option<String>,
}

impl Catalog {
    pub fn with_site(mut self, id: &str, role: SiteRole, country: &str) -> Self {
        self.sites.insert(
            id.to_string(),
            CatalogSite {
                role,
                country: country.to_string(),
                address: None,
            },
        );
        self
    }

    pub fn with_service(
        mut self,
        id: &str,
        kind: ServiceKind,
        site: Option<&str>,
        address: Option<&str>,
    ) -> Self {
        self.services.insert(
            id.to_string(),
            CatalogService {
                kind,
                site: site.map(str::to_string),
                address: address.map(str::to_string),
                dns_name: None,
            },
        );
        self
    }

    /// A `dns` service watching `name`; the name also becomes a known DNS name.
    pub fn with_dns_service(mut self, id: &str, name: &str) -> Self {
        let name = normalize_dns_name(name);
        self.services.insert(
            id.to_string(),
            CatalogService {
                kind: ServiceKind::Dns,
                site: None,
                address: None,
                dns_name: Some(name.clone()),
            },
        );
        self.dns_names.insert(name);
        self
    }

    pub fn with_connstr(mut self, id: &str, kind: ConnstrKind) -> Self {
        self.connstr_targets.insert(id.to_string(), kind);
        self
    }

    pub fn with_dns_name(mut self, name: &str) -> Self {
        self.dns_names.insert(normalize_dns_name(name));
        self
    }

    /// Resolve what a runbook wrote for a DNS name: a name in the zone (with or without the
    /// final dot) or the id of a `dns` service. Returns the normalized name.
    pub fn resolve_dns_name(&self, written: &str) -> Option<String> {
        let normalized = normalize_dns_name(written);
        if self
            .dns_names
            .iter()
            .any(|n| normalize_dns_name(n) == normalized)
        {
            return Some(normalized);
        }
        self.services
            .get(written)
            .filter(|s| s.kind == ServiceKind::Dns)
            .and_then(|s| s.dns_name.as_deref())
            .map(normalize_dns_name)
    }

    /// The `dns` service watching `name`, if any (for the lock scope).
    pub fn dns_service_for(&self, name: &str) -> Option<&str> {
        let name = normalize_dns_name(name);
        self.services
            .iter()
            .find(|(_, s)| {
                s.kind == ServiceKind::Dns
                    && s.dns_name.as_deref().map(normalize_dns_name) == Some(name.clone())
            })
            .map(|(id, _)| id.as_str())
    }
}

/// Lower case with one final dot: `DB.nilecare.sd` → `db.nilecare.sd.`.
pub fn normalize_dns_name(name: &str) -> String {
    let trimmed = name.trim().trim_end_matches('.').to_ascii_lowercase();
    format!("{trimmed}.")
}

/// The IP part of `IP:PORT` (also `[v6]:port`), or the text itself when it has no port.
pub fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hosts() {
        assert_eq!(normalize_dns_name("DB.nilecare.sd"), "db.nilecare.sd.");
        assert_eq!(normalize_dns_name("db.nilecare.sd."), "db.nilecare.sd.");
        assert_eq!(host_of("127.0.2.1:5432"), "127.0.2.1");
        assert_eq!(host_of("[::1]:5432"), "::1");
        assert_eq!(host_of("127.0.2.1"), "127.0.2.1");
        let c = Catalog::default().with_dns_service("dns-db", "db.nilecare.sd.");
        assert_eq!(
            c.resolve_dns_name("dns-db").as_deref(),
            Some("db.nilecare.sd.")
        );
        assert_eq!(
            c.resolve_dns_name("db.nilecare.sd").as_deref(),
            Some("db.nilecare.sd.")
        );
        assert_eq!(c.resolve_dns_name("www.nilecare.sd"), None);
        assert_eq!(c.dns_service_for("db.nilecare.sd."), Some("dns-db"));
    }
}
