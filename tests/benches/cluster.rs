//! Cluster-mode figures on real servers: takeover after the leader is SIGKILLed (from the kill
//! until every surviving instance names the same new leader and it says it leads), and
//! detection of a real loss of Khartoum's PostgreSQL (kill -9 until the failover proposal
//! exists), single-node and cluster side by side with the same trigger (`for = "5s"`).
//! Run: `cargo bench -p niledr-tests --bench cluster` (`-- --runs N`, default 5).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use niledr_tests::cluster::{ClusterSpec, start_cluster_with};
use niledr_tests::daemon::Niledr;
use niledr_tests::scenario::{self, start_with};

const FAILOVER: &str = "failover-khartoum-to-port-sudan";
const TTL: Duration = Duration::from_secs(3);
const FOR_FROM: &str = "for = \"30s\"";
const FOR_TO: &str = "for = \"5s\"";
/// Detections per mode (each on a fresh topology).
const DETECTIONS: usize = 3;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn line(what: &str, v: &mut [f64]) {
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(0.0, f64::max);
    println!(
        "{what:<44} median {:>6.2} s  min {min:>6.2} s  max {max:>6.2} s  ({} runs)",
        median(v),
        v.len()
    );
}

/// Kill -9 Khartoum's PostgreSQL and time until `via` shows the failover proposal.
fn until_proposal(via: &Niledr, kill: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t0 = Instant::now();
    kill()?;
    via.wait_json("/api/v1/executions", Duration::from_secs(90), |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|e| e["runbook"] == FAILOVER))
    })?;
    Ok(t0.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let runs = scenario::runs_arg(5);
    println!(
        "cluster benchmark: lease TTL {} s, {runs} runs",
        TTL.as_secs()
    );

    let mut w = start_cluster_with(ClusterSpec {
        runbook_edits: vec![("failover-khartoum-to-port-sudan.toml", FOR_FROM, FOR_TO)],
        ..ClusterSpec::loopback(TTL)
    })?;
    let mut takeovers = Vec::new();
    for run in 1..=runs {
        let leader = w.wait_leader(Duration::from_secs(20), None)?;
        let t0 = Instant::now();
        w.kill(leader)?;
        let next = w.wait_leader(TTL * 4, Some(leader))?;
        let took = t0.elapsed().as_secs_f64();
        println!(
            "run {run}: {} killed, {} leads after {took:.2} s",
            w.instances[leader].name, w.instances[next].name
        );
        takeovers.push(took);
        w.restart(leader)?;
    }
    drop(w);
    let mut cluster_detect = Vec::new();
    let mut single_detect = Vec::new();
    for _ in 0..DETECTIONS {
        let c = start_cluster_with(ClusterSpec {
            runbook_edits: vec![("failover-khartoum-to-port-sudan.toml", FOR_FROM, FOR_TO)],
            ..ClusterSpec::loopback(TTL)
        })?;
        let via = &c.instance("dr-cold-1")?.niledr;
        cluster_detect.push(until_proposal(via, || c.topo.postgres_primary().kill())?);
        drop(c);
        let s = start_with(
            |topo, text| {
                let f = topo
                    .base_dir()
                    .join("runbooks")
                    .join(format!("{FAILOVER}.toml"));
                let rb = std::fs::read_to_string(&f)?;
                std::fs::write(&f, rb.replace(FOR_FROM, FOR_TO)).context("editing the runbook")?;
                Ok(text)
            },
            &[],
        )?;
        single_detect.push(until_proposal(&s.niledr, || {
            s.topo.postgres_primary().kill()
        })?);
        drop(s);
    }

    println!();
    line("takeover after leader SIGKILL", &mut takeovers);
    line(
        "Khartoum PostgreSQL kill -9 -> proposal, cluster",
        &mut cluster_detect,
    );
    line(
        "Khartoum PostgreSQL kill -9 -> proposal, single",
        &mut single_detect,
    );
    println!("(both detections include the trigger's 5 s; probes every 1 s, 3 failures to down)");
    Ok(())
}
