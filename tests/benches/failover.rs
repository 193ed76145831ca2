//! Failover benchmark on a real topology: from the second approval to the last step done,
//! total and per step, and niledr's own overhead per step (journal commits and scheduling
//! between steps). Run: `cargo bench -p niledr-tests --bench failover` (`-- --runs N`, default 3).

use std::time::Duration;

use anyhow::{Context, Result};
use niledr_tests::scenario::{self, start};

const FAILOVER: &str = "failover-khartoum-to-port-sudan";

fn ts(v: &serde_json::Value) -> Result<jiff::Timestamp> {
    v.as_str()
        .context("timestamp")?
        .parse()
        .context("parse timestamp")
}

fn main() -> Result<()> {
    let runs = scenario::runs_arg(3);
    println!(
        "failover benchmark: kill -9 of the khartoum PostgreSQL primary, then {FAILOVER} with two approvals; {runs} runs, each on a fresh topology"
    );
    let mut totals = Vec::new();
    let mut per_step: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for run in 1..=runs {
        let w = start()?;
        scenario::kill_primary_after_writes(&w, 1000)?;
        let id = scenario::propose_and_approve(&w, FAILOVER)?;
        let done = w.niledr.wait_execution(
            &id,
            Duration::from_secs(120),
            &["succeeded", "failed", "rolled_back"],
        )?;
        anyhow::ensure!(done["state"] == "succeeded", "run {run}: {}", done["state"]);
        let second_approval = ts(&done["approvals"][1]["at"])?;
        let steps = done["steps"].as_array().context("steps")?;
        let last_done = ts(&steps.last().context("no steps")?["ended_at"])?;
        let total = last_done.duration_since(second_approval).as_secs_f64() * 1000.0;
        totals.push(total);
        // niledr's overhead for a step: from the previous step's end (or the approval) to this
        // step's start, plus the journal commit of its outcome.
        let mut prev_end = second_approval;
        for (i, s) in steps.iter().enumerate() {
            let start = ts(&s["started_at"])?;
            let end = ts(&s["ended_at"])?;
            let gap = start.duration_since(prev_end).as_secs_f64() * 1000.0;
            let overhead = gap.max(0.0) + s["overhead_ms"].as_f64().unwrap_or(0.0);
            let dur = s["duration_ms"].as_f64().unwrap_or(0.0);
            if per_step.len() <= i {
                per_step.push((
                    s["id"].as_str().unwrap_or("?").to_string(),
                    Vec::new(),
                    Vec::new(),
                ));
            }
            per_step[i].1.push(dur);
            per_step[i].2.push(overhead);
            prev_end = end;
        }
        println!("run {run}: {total:.1} ms from the second approval to the last step done");
        scenario::finish(w, &[])?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "\n{:<26} {:>12} {:>16}",
        "step", "action ms", "niledr overhead ms"
    );
    for (id, d, o) in &per_step {
        println!("{id:<26} {:>12.1} {:>16.2}", mean(d), mean(o));
    }
    let overhead_sum: f64 = per_step.iter().map(|(_, _, o)| mean(o)).sum();
    println!(
        "\ntotal: mean {:.1} ms, min {:.1} ms, max {:.1} ms; niledr overhead (all steps) {:.1} ms, {:.2} ms per step",
        mean(&totals),
        totals.iter().cloned().fold(f64::INFINITY, f64::min),
        totals.iter().cloned().fold(0.0, f64::max),
        overhead_sum,
        overhead_sum / per_step.len().max(1) as f64
    );
    Ok(())
}
