//! One niledr store on a real one-member etcd, driven directly (no daemon): for the suites
//! that check guarded writes (a deposed leader applies nothing) in the store and the outbox.

use std::time::Duration;

use anyhow::{Context, Result};
use niledr_orchestrator::cluster::Cluster;
use niledr_orchestrator::config::cluster::ClusterConfig;
use niledr_orchestrator::store::etcd::EtcdStore;

use niledr_tests::etcd::EtcdCluster;

pub const PREFIX: &str = "/niledr";
const LEADER: &str = "/niledr/leader";

/// etcd, the cluster client of member `khartoum-1` and its store, under `/niledr`.
pub struct StoreOnEtcd {
    pub store: EtcdStore,
    pub cluster: std::sync::Arc<Cluster>,
    pub etcd: EtcdCluster,
    /// Keeps the cluster client's tasks alive.
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl StoreOnEtcd {
    pub fn start(lease_ttl: Duration) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let etcd =
            EtcdCluster::start(dir.path(), &[("solo", std::net::Ipv4Addr::LOCALHOST, None)])?;
        let config = ClusterConfig {
            name: "khartoum-1".into(),
            site: "khartoum".into(),
            endpoints: etcd.endpoints(),
            advertise: "http://127.0.0.1:1".into(),
            prefix: PREFIX.into(),
            lease_ttl,
            tls: None,
            auth: None,
            self_fence: Default::default(),
        };
        let rt = tokio::runtime::Runtime::new()?;
        let cluster = rt.block_on(Cluster::connect(config))?;
        let store = EtcdStore::open(
            cluster.clients(),
            cluster.handle(),
            PREFIX,
            cluster.leadership.clone(),
        )?;
        Ok(StoreOnEtcd {
            store,
            cluster,
            etcd,
            _rt: rt,
            _dir: dir,
        })
    }

    /// `etcdctl` against this etcd; its standard output.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.etcd.endpoints().join(","))
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// This member holds the leader key: its guarded writes apply.
    pub fn lead(&self) -> Result<()> {
        self.etcdctl(&["put", LEADER, r#"{"name":"khartoum-1"}"#])?;
        let got: serde_json::Value =
            serde_json::from_str(&self.etcdctl(&["get", LEADER, "-w", "json"])?)?;
        let revision = got["kvs"][0]["create_revision"]
            .as_i64()
            .with_context(|| format!("no {LEADER}: {got}"))?;
        self.cluster.leadership.set(Some(revision));
        Ok(())
    }

    /// Another member took the key (this one's lease expired and a new key was created).
    pub fn depose(&self) -> Result<()> {
        self.etcdctl(&["del", LEADER])?;
        self.etcdctl(&["put", LEADER, r#"{"name":"port-sudan-1"}"#])?;
        Ok(())
    }

    /// How many audit entries etcd holds.
    pub fn audit_len(&self) -> Result<usize> {
        Ok(self.etcd.get_prefix("/niledr/audit/")?.len())
    }
}

impl Drop for StoreOnEtcd {
    fn drop(&mut self) {
        self.cluster.shutdown();
    }
}
