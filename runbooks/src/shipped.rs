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
];
