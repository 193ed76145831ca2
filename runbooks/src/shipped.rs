//! The runbooks shipped for the NileCare topology (`runbooks/nilecare/*.toml`), embedded at
//! compile time so tests and `check-config` can use them without reading files.

/// `(file name, text)` of every shipped runbook.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "failover-khartoum-to-port-sudan.toml",
        include_str!("../nilecare/failover-khartoum-to-port-sudan.toml"),
    ),
    (
        "switchover-khartoum-to-port-sudan.toml",
        include_str!("../nilecare/switchover-khartoum-to-port-sudan.toml"),
    ),
    (
        "failback-port-sudan-to-khartoum.toml",
        include_str!("../nilecare/failback-port-sudan-to-khartoum.toml"),
    ),
    (
        "redis-failover-khartoum-to-port-sudan.toml",
        include_str!("../nilecare/redis-failover-khartoum-to-port-sudan.toml"),
    ),
    (
        "dns-revert-to-khartoum.toml",
        include_str!("../nilecare/dns-revert-to-khartoum.toml"),
    ),
    (
        "activate-dr-cold.toml",
        include_str!("../nilecare/activate-dr-cold.toml"),
    ),
    (
        "redis-failback-port-sudan-to-khartoum.toml",
        include_str!("../nilecare/redis-failback-port-sudan-to-khartoum.toml"),
    ),
    (
        "revert-dr-cold-to-khartoum.toml",
        include_str!("../nilecare/revert-dr-cold-to-khartoum.toml"),
    ),
];

/// The sandbox topology as a `Catalog`: what the orchestrator builds from the sandbox config,
/// and what the shipped runbooks and drills are validated against in tests.
pub fn sandbox_catalog() -> crate::Catalog {
    use crate::{Catalog, ConnstrKind, ServiceKind, SiteRole};
    use ServiceKind::*;
    let mut c = Catalog::default()
        .with_site("khartoum", SiteRole::Primary, "SD")
        .with_site("port-sudan", SiteRole::HotStandby, "SD")
        .with_site("dr-cold", SiteRole::ColdStandby, "SD")
        .with_service(
            "khartoum-postgres",
            Postgres,
            Some("khartoum"),
            Some("127.0.1.1:5432"),
        )
        .with_service(
            "port-sudan-postgres",
            Postgres,
            Some("port-sudan"),
            Some("127.0.2.1:5432"),
        )
        .with_service(
            "khartoum-redis",
            Redis,
            Some("khartoum"),
            Some("127.0.1.1:6379"),
        )
        .with_service(
            "port-sudan-redis",
            Redis,
            Some("port-sudan"),
            Some("127.0.2.1:6379"),
        )
        .with_service("khartoum-api", Http, Some("khartoum"), None)
        .with_service("port-sudan-api", Http, Some("port-sudan"), None)
        .with_service(
            "khartoum-api-tcp",
            Tcp,
            Some("khartoum"),
            Some("127.0.1.1:80"),
        )
        .with_service(
            "port-sudan-api-tcp",
            Tcp,
            Some("port-sudan"),
            Some("127.0.2.1:80"),
        )
        .with_dns_service("dns-db", "db.nilecare.sd.")
        .with_dns_service("dns-cache", "cache.nilecare.sd.")
        .with_dns_service("dns-api", "api.nilecare.sd.")
        .with_connstr("app-env", ConnstrKind::File)
        .with_connstr("pgbouncer", ConnstrKind::Pgbouncer);
    if let Some(cold) = c.sites.get_mut("dr-cold") {
        cold.address = Some("127.0.3.1".to_string());
    }
    c.platform_mode_record = Some("_platform-mode.nilecare.sd.".to_string());
    c
}
