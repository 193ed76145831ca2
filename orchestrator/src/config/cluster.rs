//! The `[cluster]` section: this instance's name and site, the etcd endpoints (TLS and auth
//! options), the leader lease, and per site whether its instance fences its own primary when
//! it is cut off from the majority. Without `[cluster]` niledr runs single-node on redb.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::raw::Dur;
use super::{ConfigError, Loader, Site};

const DEFAULT_PREFIX: &str = "/niledr";
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// The raw `[cluster]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This instance's member name, unique in the cluster (e.g. "khartoum-1").
    pub name: Spanned<String>,
    /// The site this instance runs at (a `[sites]` key).
    pub site: Spanned<String>,
    /// etcd client URLs, e.g. ["http://10.0.1.2:2379", …].
    pub endpoints: Spanned<Vec<Spanned<String>>>,
    /// This instance's API URL as the other instances reach it (writes are forwarded there
    /// when it leads).
    pub advertise: Spanned<String>,
    /// Key prefix in etcd; several niledr clusters may share one etcd.
    pub prefix: Option<Spanned<String>>,
    /// Leader lease: a leader that cannot renew it for this long stops acting.
    pub lease_ttl: Option<Spanned<Dur>>,
    /// PEM CA bundle that signs the etcd servers' certificates (https:// endpoints).
    pub ca_file: Option<Spanned<String>>,
    /// Client certificate and key (PEM) when etcd requires client certificates.
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    /// etcd user (with `password_file`) when etcd has authentication enabled.
    pub user: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    /// Site → how long this site's instance may be cut off from etcd before it makes its local
    /// PostgreSQL primary read-only (must be below `lease_ttl`). Default: every site that
    /// holds a PostgreSQL service, at half the lease TTL; `"off"` disables it for a site.
    #[serde(default)]
    pub self_fence: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// `[cluster]`, checked.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub name: String,
    pub site: String,
    pub endpoints: Vec<String>,
    pub advertise: String,
    pub prefix: String,
    pub lease_ttl: Duration,
    pub tls: Option<ClusterTls>,
    pub auth: Option<(String, String)>,
    /// Site → self-fence bound (absent: the site's instance never fences itself).
    pub self_fence: BTreeMap<String, Duration>,
}

#[derive(Clone, Debug)]
pub struct ClusterTls {
    pub ca_pem: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Loader<'_> {
    pub(super) fn cluster(
        &self,
        raw: Option<&Spanned<RawCluster>>,
        sites: &BTreeMap<String, Site>,
        sites_with_postgres: &[String],
    ) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let table = raw.span();
        let r = raw.get_ref();
        self.check_id(&r.name, "cluster member")?;
        if !sites.contains_key(r.site.get_ref()) {
            return Err(self.err(
                r.site.span(),
                format!(
                    "cluster.site {:?} is not a configured site; use one of {:?}",
                    r.site.get_ref(),
                    sites.keys().collect::<Vec<_>>()
                ),
            ));
        }
        let endpoints = self.endpoints(&r.endpoints)?;
        let advertise = r.advertise.get_ref().trim_end_matches('/').to_string();
        if !(advertise.starts_with("http://") || advertise.starts_with("https://")) {
            return Err(self.err(
                r.advertise.span(),
                format!("advertise {advertise:?} must be this instance's API URL, e.g. \"http://10.0.1.2:7700\""),
            ));
        }
        let prefix = match &r.prefix {
            None => DEFAULT_PREFIX.to_string(),
            Some(p) if p.get_ref().starts_with('/') && !p.get_ref().ends_with('/') => {
                p.get_ref().clone()
            }
            Some(p) => {
                return Err(self.err(
                    p.span(),
                    "prefix must start with '/' and not end with one, e.g. \"/niledr/nilecare\"",
                ));
            }
        };
        let lease_ttl = match &r.lease_ttl {
            None => DEFAULT_LEASE_TTL,
            Some(t) if t.get_ref().0 >= MIN_LEASE_TTL && t.get_ref().0.subsec_millis() == 0 => {
                t.get_ref().0
            }
            Some(t) => {
                return Err(self.err(
                    t.span(),
                    "lease_ttl must be whole seconds and at least 2s (etcd leases count in seconds)",
                ));
            }
        };
        let self_fence = self.self_fence(r, sites, sites_with_postgres, lease_ttl)?;
        Ok(Some(ClusterConfig {
            name: r.name.get_ref().clone(),
            site: r.site.get_ref().clone(),
            endpoints,
            advertise,
            prefix,
            lease_ttl,
            tls: self.cluster_tls(r, table.clone())?,
            auth: self.cluster_auth(r, table)?,
            self_fence,
        }))
    }

    fn endpoints(&self, raw: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<String>, ConfigError> {
        if raw.get_ref().is_empty() {
            return Err(self.err(
                raw.span(),
                "cluster.endpoints is empty; list every etcd member's client URL, e.g. \"http://10.0.1.2:2379\"",
            ));
        }
        raw.get_ref()
            .iter()
            .map(|e| {
                let s = e.get_ref();
                if s.starts_with("http://") || s.starts_with("https://") {
                    Ok(s.trim_end_matches('/').to_string())
                } else {
                    Err(self.err(
                        e.span(),
                        format!(
                            "etcd endpoint {s:?} must be a URL such as \"http://10.0.1.2:2379\""
                        ),
                    ))
                }
            })
            .collect()
    }

    fn self_fence(
        &self,
        r: &RawCluster,
        sites: &BTreeMap<String, Site>,
        sites_with_postgres: &[String],
        lease_ttl: Duration,
    ) -> Result<BTreeMap<String, Duration>, ConfigError> {
        let mut out: BTreeMap<String, Duration> = sites_with_postgres
            .iter()
            .map(|s| (s.clone(), lease_ttl / 2))
            .collect();
        for (site, bound) in &r.self_fence {
            if !sites.contains_key(site.get_ref()) {
                return Err(self.err(
                    site.span(),
                    format!(
                        "self_fence names {:?}, which is not a configured site",
                        site.get_ref()
                    ),
                ));
            }
            if bound.get_ref() == "off" {
                out.remove(site.get_ref());
                continue;
            }
            let d = humantime::parse_duration(bound.get_ref()).map_err(|e| {
                self.err(
                    bound.span(),
                    format!(
                        "bad duration {:?} ({e}); write it like \"2s\", or \"off\"",
                        bound.get_ref()
                    ),
                )
            })?;
            if d.is_zero() || d >= lease_ttl {
                return Err(self.err(
                    bound.span(),
                    format!(
                        "self_fence must be above 0 and below lease_ttl ({}s): the primary must be read-only before the majority's lease on it expires",
                        lease_ttl.as_secs()
                    ),
                ));
            }
            out.insert(site.get_ref().clone(), d);
        }
        Ok(out)
    }

    fn cluster_tls(
        &self,
        r: &RawCluster,
        table: std::ops::Range<usize>,
    ) -> Result<Option<ClusterTls>, ConfigError> {
        let read = |f: &Spanned<String>| -> Result<Vec<u8>, ConfigError> {
            let path = self.resolve(f.get_ref());
            std::fs::read(&path)
                .map_err(|e| self.err(f.span(), format!("cannot read {}: {e}", path.display())))
        };
        let ca_pem = r.ca_file.as_ref().map(read).transpose()?;
        let identity = match (&r.cert_file, &r.key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => {
                return Err(self.err(
                    table,
                    "cert_file and key_file go together: set both or neither",
                ));
            }
        };
        Ok((ca_pem.is_some() || identity.is_some()).then_some(ClusterTls { ca_pem, identity }))
    }

    fn cluster_auth(
        &self,
        r: &RawCluster,
        table: std::ops::Range<usize>,
    ) -> Result<Option<(String, String)>, ConfigError> {
        match (&r.user, &r.password_file) {
            (None, None) => Ok(None),
            (Some(u), Some(f)) => {
                let path = self.resolve(f.get_ref());
                let pw = std::fs::read_to_string(&path).map_err(|e| {
                    self.err(f.span(), format!("cannot read {}: {e}", path.display()))
                })?;
                Ok(Some((u.get_ref().clone(), pw.trim_end().to_string())))
            }
            _ => Err(self.err(
                table,
                "user and password_file go together: set both or neither",
            )),
        }
    }
}
