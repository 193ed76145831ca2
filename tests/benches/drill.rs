//! Drill benchmark: the `postgres-primary-failure` drill run by the daemon with a standing
//! pre-approval, 1 s probe interval and 1 s DNS TTL (the runbooks' `dns.set_ttl` steps set to
//! 1 s), several runs on one topology (each run's failback restores it). Prints RTO with its
//! phases and RPO per store for each run, then median / min / max.
//! Run: `cargo bench -p niledr-tests --bench drill` (`-- --runs N`, default 5).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use niledr_tests::scenario::{self, World};
use serde_json::{Value, json};

const DRILL: &str = "postgres-primary-failure";

fn run_once(w: &World) -> Result<Value> {
    let (status, run) = w.niledr.post(
        &format!("/api/v1/drills/{DRILL}/runs"),
        Some(&w.people.operator),
        &json!({ "reason": "benchmark" }),
    )?;
    anyhow::ensure!(status == 202, "start: {status} {run}");
    let id = run["id"].as_str().context("id")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, run) = w.niledr.get(&format!("/api/v1/drill-runs/{id}"))?;
        if run["state"] != "running" {
            if run["state"] != "finished" {
                bail!("run {id} ended {}: {run:#}", run["state"]);
            }
            return Ok(run);
        }
        if Instant::now() > deadline {
            bail!("run {id} did not end");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stats(name: &str, v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        println!("  {name:<22} -");
        return;
    }
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    println!(
        "  {name:<22} median {median:>8.0} ms   min {:>8.0} ms   max {:>8.0} ms",
        v[0],
        v[v.len() - 1]
    );
}

fn main() -> Result<()> {
    let runs = scenario::runs_arg(5);
    let w = scenario::start_with(
        |topo, text| {
            for rb in [
                "failover-khartoum-to-port-sudan.toml",
                "failback-port-sudan-to-khartoum.toml",
            ] {
                let p = topo.base_dir().join("runbooks").join(rb);
                let t = std::fs::read_to_string(&p)?.replace("ttl = 60", "ttl = 1");
                std::fs::write(&p, t)?;
            }
            Ok(text)
        },
        &[],
    )?;
    scenario::approve_drill(&w, DRILL)?;
    println!(
        "drill benchmark: {DRILL} (kill -9 of khartoum PostgreSQL), standing approval, probe interval 1 s × threshold 3, DNS TTL 1 s, canary 100 Hz per store; {runs} runs on one topology (failback between runs)"
    );
    let keys = [
        ("rto", "/total_ms"),
        ("detection", "/phases/detection_ms"),
        ("decision", "/phases/decision_ms"),
        ("dns convergence", "/phases/dns_convergence_ms"),
        ("verification", "/phases/verification_ms"),
    ];
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); keys.len() + 3];
    for i in 1..=runs {
        let run = run_once(&w)?;
        let r = &run["report"];
        let rto = &r["rto"];
        let mut line = format!("run {i}:");
        for (k, (name, ptr)) in keys.iter().enumerate() {
            if let Some(ms) = rto.pointer(ptr).and_then(Value::as_f64) {
                cols[k].push(ms);
                line.push_str(&format!(" {name} {ms:.0} ms;"));
            }
        }
        let steps: f64 = rto["phases"]["execution"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["ms"].as_f64()).sum())
            .unwrap_or(0.0);
        cols[keys.len()].push(steps);
        let accounted: f64 = keys[1..]
            .iter()
            .filter_map(|(_, p)| rto.pointer(p).and_then(Value::as_f64))
            .sum::<f64>()
            + steps;
        let unaccounted = rto["total_ms"].as_f64().unwrap_or(0.0) - accounted;
        cols[keys.len() + 1].push(unaccounted);
        line.push_str(&format!(
            " steps {steps:.0} ms; unaccounted {unaccounted:.0} ms;"
        ));
        for l in r["rpo"].as_array().cloned().unwrap_or_default() {
            let window = match (l["last_surviving_at"].as_str(), l["last_lost_at"].as_str()) {
                (Some(a), Some(b)) => {
                    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
                        (Ok(a), Ok(b)) => {
                            format!("{:.0} ms", b.duration_since(a).as_secs_f64() * 1000.0)
                        }
                        _ => "-".into(),
                    }
                }
                _ => "0 ms".into(),
            };
            line.push_str(&format!(
                " RPO {} {} lost of {} acknowledged ({window});",
                l["store"].as_str().unwrap_or("?"),
                l["lost"],
                l["acknowledged"],
            ));
            if l["store"] == "postgres" {
                cols[keys.len() + 2].push(l["lost"].as_f64().unwrap_or(0.0));
            }
        }
        println!("{line} cleanup {} ms", r["cleanup"]["duration_ms"]);
    }
    println!("summary over {runs} runs:");
    for (k, (name, _)) in keys.iter().enumerate() {
        stats(name, &mut cols[k]);
    }
    stats("runbook steps", &mut cols[keys.len()]);
    stats("unaccounted", &mut cols[keys.len() + 1]);
    let mut lost = cols[keys.len() + 2].clone();
    lost.sort_by(f64::total_cmp);
    println!("  postgres lost writes   {lost:?}");
    scenario::finish(w, &[])
}
