//! Cluster mode against an etcd that requires TLS client certificates and password
//! authentication: niledr's `ca_file`, `cert_file`/`key_file` and `user`/`password_file` work
//! for real (it leads and journals a proposal in etcd), and a wrong password is refused at
//! start with a message that names etcd.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{Context, Result};
use niledr_tests::daemon::{Niledr, create_people, free_listen_addr};
use niledr_tests::etcd_tls::SecureEtcd;
use niledr_tests::scenario::{copy_runbooks, propose};
use niledr_tests::{ClusterOptions, ConfigOptions, Site, Topology};

#[test]
fn niledr_leads_over_tls_with_etcd_authentication_and_a_wrong_password_is_refused() -> Result<()> {
    let topo = Topology::start_free(None)?;
    let base = topo.base_dir().to_path_buf();
    let etcd = SecureEtcd::start(&base)?;
    let runbooks = base.join("runbooks");
    copy_runbooks(&runbooks)?;
    let people = create_people(&base.join("users.toml"))?;
    let password_file = base.join("etcd-password");
    std::fs::write(&password_file, format!("{}\n", etcd.root_password))?;
    let listen = free_listen_addr()?;
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let extra = format!(
        "ca_file = {}\ncert_file = {}\nkey_file = {}\nuser = \"root\"\npassword_file = {}\n",
        q(&etcd.tls.ca),
        q(&etcd.tls.cert),
        q(&etcd.tls.key),
        q(&password_file)
    );
    let opts = ConfigOptions {
        runbook_dir: Some(runbooks),
        store: Some(base.join("state").join("niledr.redb")),
        cluster: Some(ClusterOptions {
            name: "khartoum-1".into(),
            site: Site::Khartoum,
            endpoints: vec![etcd.endpoint()],
            advertise: format!("http://{listen}"),
            lease_ttl: Duration::from_secs(3),
            extra,
        }),
        ..ConfigOptions::with_listen(listen)
    };
    let config = topo.write_niledr_config(base.join("niledr.toml"), &opts)?;
    let log = base.join("niledr.log");
    let n = Niledr::start(&config, listen, &log)?;
    n.wait_json("/api/v1/cluster", Duration::from_secs(20), |v| {
        v["is_leader"] == true
    })?;
    n.wait_json("/readyz", Duration::from_secs(30), |v| {
        v["status"] == "ready"
    })?;
    // A guarded write over TLS with a token from the password login: journaled in etcd.
    let ex = propose(&n, "switchover-khartoum-to-port-sudan", &people.operator)?;
    let id = ex["id"].as_str().unwrap();
    let keys = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/niledr/executions/"])?;
    assert!(keys.contains(id), "{keys}");
    let (status, audit) = n.get("/api/v1/audit/verify")?;
    assert_eq!(status, 200, "{audit:#}");
    n.stop()?;

    // The wrong password: niledr refuses to start and says it is etcd.
    std::fs::write(&password_file, "not-the-password\n")?;
    let mut bad = Niledr::start_env(&config, listen, &log, &[], true)?;
    let status = bad
        .wait_exit(Duration::from_secs(20))
        .context("niledr kept running with a wrong etcd password")?;
    assert!(!status.success());
    let text = std::fs::read_to_string(&log)?;
    let last = text.lines().rev().take(5).collect::<Vec<_>>().join("\n");
    assert!(last.contains("etcd"), "the error names etcd: {last}");
    Ok(())
}
