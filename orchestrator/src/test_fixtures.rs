//! Test fixtures shared by unit tests of several modules: a three-site catalog (alpha primary,
//! beta hot standby, gamma cold) and a failover runbook over it.

use niledr_runbooks::{Catalog, ServiceKind, SiteRole};

/// alpha → beta: lag check, fence, promote (irreversible), Redis promote and follow, DNS cutover.
pub const RUNBOOK: &str = r#"
name = "alpha-to-beta"
description = "t"
mode = "unplanned"

[approval]
required = 2

[[steps]]
id = "lag"
kind = "postgres.check_lag"
service = "beta-pg"
max_lag_bytes = 1000

[[steps]]
id = "fence"
kind = "postgres.fence"
service = "alpha-pg"
mode = "read_only"

[[steps]]
id = "promote"
kind = "postgres.promote"
service = "beta-pg"
irreversible = true
reason = "new timeline"

[[steps]]
id = "kv-promote"
kind = "redis.promote"
service = "beta-kv"
irreversible = true
reason = "r"

[[steps]]
id = "kv-follows"
kind = "redis.replicaof"
service = "alpha-kv"
of = "beta-kv"
irreversible = true
reason = "r"

[[steps]]
id = "cutover"
kind = "dns.cutover"
name = "db.example."
to_site = "beta"
"#;

/// Sites alpha, beta, gamma with PostgreSQL and Redis at alpha and beta, and `db.example.`.
pub fn catalog() -> Catalog {
    let mut c = Catalog::default()
        .with_site("alpha", SiteRole::Primary, "SD")
        .with_site("beta", SiteRole::HotStandby, "SD")
        .with_site("gamma", SiteRole::ColdStandby, "SD");
    for (site, addr) in [
        ("alpha", "10.0.1.1"),
        ("beta", "10.0.2.1"),
        ("gamma", "10.0.3.1"),
    ] {
        if let Some(s) = c.sites.get_mut(site) {
            s.address = Some(addr.into());
        }
    }
    c.with_service(
        "alpha-pg",
        ServiceKind::Postgres,
        Some("alpha"),
        Some("10.0.1.1:5432"),
    )
    .with_service(
        "beta-pg",
        ServiceKind::Postgres,
        Some("beta"),
        Some("10.0.2.1:5432"),
    )
    .with_service(
        "alpha-kv",
        ServiceKind::Redis,
        Some("alpha"),
        Some("10.0.1.1:6379"),
    )
    .with_service(
        "beta-kv",
        ServiceKind::Redis,
        Some("beta"),
        Some("10.0.2.1:6379"),
    )
    .with_dns_service("name-db", "db.example.")
}
