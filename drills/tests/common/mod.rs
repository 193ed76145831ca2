//! The sandbox topology as a `Catalog` (as in runbooks/tests) and the shipped runbook names.

#![allow(dead_code)]

use std::path::Path;

use niledr_drills::{Drill, parse_drill};
use niledr_runbooks::{
    Catalog, ConnstrKind, ServiceKind, SiteRole, parse_runbook, shipped::SHIPPED,
};

pub fn sandbox_catalog() -> Catalog {
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
    c
}

/// The names of the shipped runbooks, as parsed (so a renamed runbook breaks these tests).
pub fn runbook_names() -> Vec<String> {
    let catalog = sandbox_catalog();
    SHIPPED
        .iter()
        .map(|(file, text)| {
            parse_runbook(Path::new(file), text, &catalog)
                .unwrap_or_else(|e| panic!("{e}"))
                .name
        })
        .collect()
}

pub fn parse(text: &str) -> Result<Drill, String> {
    parse_drill(
        Path::new("drills/test.toml"),
        text,
        &sandbox_catalog(),
        &runbook_names(),
    )
    .map_err(|e| e.to_string())
}

pub const MINIMAL: &str = r#"
name = "postgres-primary-failure"
schedule = "0 2 1 * *"
runbook = "failover-khartoum-to-port-sudan"
[scenario]
fault = "kill_primary_postgres"
target = "khartoum-postgres"
[objectives]
rto = "4m"
rpo_postgres = "1m"
"#;
