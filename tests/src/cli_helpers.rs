//! Runs the `niledr` client subcommands (plan, propose, approve, ...) the way a person does:
//! the daemon's URL and the caller's token come from `NILEDR_URL` / `NILEDR_TOKEN`, never
//! from the test process's own environment.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::daemon::niledr_binary;

/// One finished `niledr` run.
#[derive(Debug, Clone)]
pub struct CliRun {
    pub args: Vec<String>,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The run, if it exited 0; otherwise an error that shows everything it printed.
    pub fn ok(self) -> Result<CliRun> {
        if !self.success() {
            bail!("{self}");
        }
        Ok(self)
    }

    /// The value of the first `key: value` line of stdout (e.g. `id`, `digest`).
    pub fn field(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}:");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string())
    }

    /// stdout parsed as JSON (for `--json`).
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("stdout of niledr {:?} is not JSON:\n{self}", self.args))
    }
}

impl std::fmt::Display for CliRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "niledr {} exited {:?}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// `niledr ARGS` with exactly `env` set among the niledr variables (`NILEDR_URL`,
/// `NILEDR_TOKEN`); whatever the test process has in those is removed first.
pub fn niledr_command_env(args: &[&str], env: &[(&str, &str)]) -> Result<CliRun> {
    let mut cmd = Command::new(niledr_binary()?);
    cmd.args(args)
        .env_remove("NILEDR_URL")
        .env_remove("NILEDR_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running niledr")?;
    Ok(CliRun {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `niledr ARGS` against the daemon at `url`, as the holder of `token` (if any).
pub fn niledr_cli(url: &str, token: Option<&str>, args: &[&str]) -> Result<CliRun> {
    let mut env = vec![("NILEDR_URL", url)];
    if let Some(t) = token {
        env.push(("NILEDR_TOKEN", t));
    }
    niledr_command_env(args, &env)
}
