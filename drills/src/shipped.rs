//! The drills shipped for the NileCare sandbox (`drills/nilecare/*.toml`), embedded at compile
//! time so tests and `check-config` can use them without reading files.

/// `(file name, text)` of every shipped drill.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "postgres-primary-failure.toml",
        include_str!("../nilecare/postgres-primary-failure.toml"),
    ),
    (
        "postgres-primary-hang.toml",
        include_str!("../nilecare/postgres-primary-hang.toml"),
    ),
    (
        "planned-switchover.toml",
        include_str!("../nilecare/planned-switchover.toml"),
    ),
    (
        "lagging-standby-failure.toml",
        include_str!("../nilecare/lagging-standby-failure.toml"),
    ),
    (
        "redis-failure.toml",
        include_str!("../nilecare/redis-failure.toml"),
    ),
    (
        "cold-site-restore.toml",
        include_str!("../nilecare/cold-site-restore.toml"),
    ),
];
