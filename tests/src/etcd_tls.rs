//! `SecureEtcd`: one real etcd member that requires TLS client certificates (a test CA made
//! with `openssl`) and has password authentication enabled (user `root`): the setup a site
//! would run in production, for the cluster-mode test of niledr's TLS and auth options.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::layout::free_tcp_port;
use crate::process::{Component, ProcessSpec};
use crate::util::{make_dir, random_hex};

/// The PEM files: the CA, and one certificate (server and client use) for 127.0.0.1.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct SecureEtcd {
    pub component: Component,
    pub client: SocketAddr,
    pub tls: EtcdTls,
    pub root_password: String,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A CA and a certificate for `127.0.0.1` signed by it (serverAuth + clientAuth).
pub fn generate_tls(dir: &Path) -> Result<EtcdTls> {
    make_dir(dir, 0o700, None)?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=niledr-test-ca",
        ],
    )?;
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
            "-subj", "/CN=root",
        ],
    )?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "node.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    )?;
    Ok(EtcdTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    })
}

impl SecureEtcd {
    /// Start the member under `base`, then add user `root` and enable authentication.
    pub fn start(base: &Path) -> Result<SecureEtcd> {
        let tls = generate_tls(&base.join("etcd-tls"))?;
        let ip = Ipv4Addr::LOCALHOST;
        let client = SocketAddr::from((ip, free_tcp_port(ip)?));
        let peer = SocketAddr::from((ip, free_tcp_port(ip)?));
        let dir = base.join("etcd-secure");
        make_dir(&dir, 0o700, None)?;
        let args: Vec<std::ffi::OsString> = [
            "--name",
            "secure",
            "--data-dir",
            &dir.join("data").display().to_string(),
            "--listen-client-urls",
            &format!("https://{client}"),
            "--advertise-client-urls",
            &format!("https://{client}"),
            "--listen-peer-urls",
            &format!("http://{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://{peer}"),
            "--initial-cluster",
            &format!("secure=http://{peer}"),
            "--cert-file",
            &tls.cert.display().to_string(),
            "--key-file",
            &tls.key.display().to_string(),
            "--trusted-ca-file",
            &tls.ca.display().to_string(),
            "--client-cert-auth",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let spec = ProcessSpec {
            program: PathBuf::from("/usr/bin/etcd"),
            args,
            env: Vec::new(),
            cwd: Some(dir.clone()),
            owner: None,
            log: base.join("etcd-secure.log"),
            graceful: Signal::SIGTERM,
            start_timeout: Duration::from_secs(20),
            retry_when_log_says: &[],
            netns: None,
            ready: Box::new(move || {
                std::net::TcpStream::connect_timeout(&client, Duration::from_millis(200))
                    .map(drop)
                    .context("client port not open yet")
            }),
        };
        let component = Component::spawn("etcd-secure", None, client, spec)?;
        let e = SecureEtcd {
            component,
            client,
            tls,
            root_password: random_hex(12)?,
        };
        crate::wait_until(std::time::Instant::now() + Duration::from_secs(20), || {
            Ok(e.etcdctl(&["endpoint", "health"]).is_ok())
        })
        .context("the TLS etcd member never became healthy")?;
        let pw = format!("--new-user-password={}", e.root_password);
        e.etcdctl(&["user", "add", "root", "--interactive=false", &pw])?;
        e.etcdctl(&["auth", "enable"])?;
        Ok(e)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.client)
    }

    /// `etcdctl` with the client certificate (its CN, `root`, authenticates once auth is on).
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg(format!("--cacert={}", self.tls.ca.display()))
            .arg(format!("--cert={}", self.tls.cert.display()))
            .arg(format!("--key={}", self.tls.key.display()))
            .args(args)
            .output()
            .context("running etcdctl")?;
        if !out.status.success() {
            bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
