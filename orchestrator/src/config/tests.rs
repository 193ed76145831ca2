//! Table-driven checks of what the loader accepts and how it refuses.

use std::path::Path;

use super::*;

const VALID: &str = r#"
[daemon]
listen = "127.0.0.1:8080"
store = "state/niledr.redb"

[probe]
interval = "1s"
timeout = "500ms"

[sites.khartoum]
role = "primary"
country = "SD"

[sites.port-sudan]
role = "hot_standby"
country = "SD"

[services.khartoum-postgres]
site = "khartoum"
kind = "postgres"
critical = true
address = "127.0.1.1:5432"
user = "niledr"

[services.port-sudan-postgres]
site = "port-sudan"
kind = "postgres"
address = "127.0.2.1:5432"
upstream = "khartoum-postgres"

[services.khartoum-api]
site = "khartoum"
kind = "http"
url = "http://127.0.1.1/health"

[dns]
zone = "nilecare.sd."
servers = ["127.0.9.1:53"]

[services.dns-db]
kind = "dns"
name = "db.nilecare.sd."
expect = ["127.0.1.1"]
"#;

fn load_str(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("/etc/niledr/niledr.toml"), text)
}

#[test]
fn valid_config_loads() {
    let c = load_str(VALID).expect("valid");
    assert_eq!(c.sites.len(), 2);
    assert_eq!(c.services.len(), 4);
    assert_eq!(c.store, Path::new("/etc/niledr/state/niledr.redb"));
    let standby = &c.services["port-sudan-postgres"];
    assert_eq!(standby.upstream.as_deref(), Some("khartoum-postgres"));
    match &standby.spec {
        ProbeSpec::Postgres(p) => {
            assert_eq!(p.upstream.as_ref().map(|u| u.address.port()), Some(5432))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.services["khartoum-api"].probe.timeout,
        Duration::from_millis(500)
    );
}

/// (replace this, with that, text on the line the error must point at, message fragment)
const BAD: &[(&str, &str, &str, &str)] = &[
    (
        "user = \"niledr\"",
        "usr = \"niledr\"",
        "usr =",
        "unknown field `usr`",
    ),
    (
        "site = \"port-sudan\"",
        "site = \"port-sudn\"",
        "port-sudn",
        "unknown site \"port-sudn\"",
    ),
    (
        "interval = \"1s\"",
        "interval = \"1 sec ond\"",
        "1 sec ond",
        "bad duration",
    ),
    (
        "timeout = \"500ms\"",
        "timeout = \"5s\"",
        "timeout = \"5s\"",
        "longer than the interval",
    ),
    (
        "address = \"127.0.2.1:5432\"",
        "address = \"127.0.2.1\"",
        "address = \"127.0.2.1\"",
        "write IP:PORT",
    ),
    (
        "upstream = \"khartoum-postgres\"",
        "upstream = \"khartoum-pg\"",
        "khartoum-pg\"",
        "unknown upstream service",
    ),
    (
        "url = \"http://127.0.1.1/health\"",
        "url = \"127.0.1.1/health\"",
        "url = \"127",
        "must start with http://",
    ),
    (
        "role = \"hot_standby\"",
        "role = \"warm\"",
        "warm",
        "unknown variant `warm`",
    ),
    (
        "country = \"SD\"\n\n[sites.port",
        "country = \"Sudan\"\n\n[sites.port",
        "Sudan",
        "two-letter",
    ),
    (
        "expect = [\"127.0.1.1\"]",
        "expect = [\"127.0.1\"]",
        "127.0.1\"]",
        "not an IPv4 address",
    ),
    (
        "kind = \"http\"",
        "kind = \"http\"\naddress = \"127.0.0.1:80\"",
        "\"127.0.0.1:80\"",
        "`address` does not apply to a http service",
    ),
    (
        "kind = \"http\"",
        "kind = \"smtp\"",
        "smtp",
        "unknown variant `smtp`",
    ),
    (
        "servers = [\"127.0.9.1:53\"]",
        "servers = []",
        "servers = []",
        "dns.servers is empty",
    ),
    (
        "[probe]\n",
        "[probe]\nfailure_threshold = 0\n",
        "failure_threshold",
        "at least 1",
    ),
    (
        "[daemon]\n",
        "[deamon]\n",
        "[deamon]",
        "unknown field `deamon`",
    ),
];

fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

#[test]
fn invalid_configs_are_refused_with_line_and_fix() {
    for (from, to, needle, fragment) in BAD {
        assert!(VALID.contains(from), "test case does not apply: {from}");
        let text = VALID.replacen(from, to, 1);
        let err = match load_str(&text) {
            Ok(_) => panic!("accepted a bad config: {to}"),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert_eq!(
            err.line,
            line_of(&text, needle),
            "wrong line for {to:?}: {shown}"
        );
        assert!(
            shown.contains(fragment),
            "message for {to:?} lacks {fragment:?}: {shown}"
        );
        assert!(shown.starts_with("/etc/niledr/niledr.toml:"), "{shown}");
    }
}

#[test]
fn missing_password_file_is_refused_at_its_line() {
    let text = VALID.replacen(
        "user = \"niledr\"",
        "user = \"niledr\"\npassword_file = \"nope/pw\"",
        1,
    );
    let err = load_str(&text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(":24:") && err.contains("cannot read password file"),
        "{err}"
    );
}

#[test]
fn unreadable_file_names_the_file() {
    let err = load(Path::new("/nonexistent/niledr.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("/nonexistent/niledr.toml: cannot read config file"),
        "{err}"
    );
}

#[test]
fn auth_limits_default_parse_and_refuse_nonsense() {
    let defaults = load_str(VALID).expect("valid");
    assert_eq!(defaults.auth_limits, crate::auth::limit::Limits::default());
    assert!(defaults.verify_workers >= 1);
    let auth = "[auth]\nusers_file = \"users.toml\"\n";
    let set = format!(
        "{VALID}\n{auth}failures_per_client = 7\nfailures_per_client_user = 2\nfailure_window = \"30s\"\nverify_workers = 3\n"
    );
    let c = load_str(&set).expect("valid limits");
    assert_eq!(
        c.auth_limits,
        crate::auth::limit::Limits {
            per_client: 7,
            per_client_user: 2,
            window: Duration::from_secs(30),
        }
    );
    assert_eq!(c.verify_workers, 3);
    let bad: &[(&str, &str, &str)] = &[
        (
            "failures_per_client = 0",
            "failures_per_client",
            "at least 1",
        ),
        (
            "failures_per_client_user = 0",
            "failures_per_client_user",
            "at least 1",
        ),
        ("verify_workers = 0", "verify_workers", "at least 1"),
        (
            "failure_window = \"200ms\"",
            "failure_window",
            "at least 1s",
        ),
    ];
    for (line, needle, fragment) in bad {
        let text = format!("{VALID}\n{auth}{line}\n");
        let err = load_str(&text).expect_err(line);
        assert_eq!(err.line, line_of(&text, needle), "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }
}

#[test]
fn session_settings_default_parse_and_refuse_nonsense() {
    use crate::auth::session::SessionSettings;
    assert_eq!(
        load_str(VALID).expect("valid").sessions,
        SessionSettings::default()
    );
    let auth = "[auth]\nusers_file = \"users.toml\"\n";
    let set = format!(
        "{VALID}\n{auth}session_idle_timeout = \"10m\"\nsession_lifetime = \"8h\"\nsession_secure_cookie = true\n"
    );
    let c = load_str(&set).expect("valid session settings");
    assert_eq!(
        c.sessions,
        SessionSettings {
            idle: Duration::from_secs(600),
            lifetime: Duration::from_secs(8 * 3600),
            secure_cookie: true,
        }
    );
    let bad: &[(&str, &str, &str)] = &[
        (
            "session_idle_timeout = \"30s\"",
            "session_idle_timeout",
            "at least 1m",
        ),
        (
            "session_idle_timeout = \"2h\"\nsession_lifetime = \"1h\"",
            "session_lifetime",
            "at least session_idle_timeout (2h)",
        ),
    ];
    for (lines, needle, fragment) in bad {
        let text = format!("{VALID}\n{auth}{lines}\n");
        let err = load_str(&text).expect_err(lines);
        assert_eq!(err.line, line_of(&text, needle), "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    }
}

#[test]
fn metrics_are_public_by_default_and_can_be_closed() {
    assert!(load_str(VALID).expect("valid").metrics_public);
    let closed = format!("{VALID}\n[api]\nmetrics_public = false\n");
    assert!(!load_str(&closed).expect("valid").metrics_public);
    let typo = format!("{VALID}\n[api]\nmetrics_pubic = false\n");
    let err = load_str(&typo).expect_err("an unknown key").to_string();
    let line = 1 + typo
        .lines()
        .position(|l| l.starts_with("metrics_pubic"))
        .unwrap();
    assert!(
        err.contains("metrics_pubic") && err.contains(&format!(":{line}:")),
        "{err}"
    );
}

#[test]
fn cold_site_objectives_parse_and_refuse_nonsense() {
    let cold = "[sites.dr-cold]\nrole = \"cold_standby\"\ncountry = \"SD\"\n";
    let ok = format!(
        "{VALID}\n{cold}backup_dir = \"b\"\nwal_archive = \"w\"\nmax_base_backup_age = \"2h\"\nmax_wal_archive_age = \"5m\"\nmax_restore_test_age = \"35d\"\n"
    );
    let c = load_str(&ok).expect("valid objectives");
    let o = c.sites["dr-cold"].backups;
    assert_eq!(o.max_base_backup_age, Some(Duration::from_secs(7200)));
    assert_eq!(o.max_wal_archive_age, Some(Duration::from_secs(300)));
    assert_eq!(
        o.max_restore_test_age,
        Some(Duration::from_secs(35 * 86_400))
    );
    assert_eq!(
        c.sites["dr-cold"].backup_dir.as_deref(),
        Some(Path::new("/etc/niledr/b"))
    );
    // (extra lines, the line the error must point at, message fragment)
    let bad = [
        (
            "max_wal_archive_age = \"5m\"\n",
            "max_wal_archive_age",
            "needs wal_archive",
        ),
        (
            "backup_dir = \"b\"\nmax_base_backup_age = \"0s\"\n",
            "max_base_backup_age",
            "more than 0",
        ),
        (
            "max_base_backup_age = \"2h\"\n",
            "max_base_backup_age",
            "needs backup_dir",
        ),
        (
            "max_restore_test_age = \"soon\"\n",
            "max_restore_test_age",
            "bad duration",
        ),
    ];
    for (extra, needle, fragment) in bad {
        let text = format!("{VALID}\n{cold}{extra}");
        let err = load_str(&text).expect_err(extra);
        let shown = err.to_string();
        assert_eq!(err.line, line_of(&text, needle), "{shown}");
        assert!(shown.contains(fragment), "{shown}");
    }
}
