//! Prometheus metrics of the real daemon: `/metrics` of a live `niledr` against a real topology,
//! after a proposal, a cancel and a whole execution, is accepted by `promtool check metrics` and
//! counts what happened; the shipped alert rules pass `promtool check rules` and their unit
//! tests, and name only metrics niledr exposes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use niledr_orchestrator::metrics::families::{self, Kind};
use niledr_tests::cluster::start_cluster;
use niledr_tests::daemon::Niledr;
use niledr_tests::http::http_request;
use niledr_tests::scenario;
use niledr_tests::util::wait_until;
use serde_json::json;

const RUNBOOK: &str = "redis-failover-khartoum-to-port-sudan";

/// GET /metrics as `token`'s holder.
fn scrape(n: &Niledr, token: &str) -> Result<String> {
    let auth = format!("Bearer {token}");
    let r = http_request(
        n.listen,
        "GET",
        "/metrics",
        &[("Authorization", auth.as_str())],
        None,
        Duration::from_secs(10),
    )?;
    if r.status != 200 {
        bail!("GET /metrics: {} {}", r.status, r.body);
    }
    Ok(r.body)
}

/// The value of the sample line `series` (name and labels exactly as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrape until `series` reads `want`.
fn wait_value(n: &Niledr, token: &str, series: &str, want: f64) -> Result<String> {
    let mut last = String::new();
    let r = wait_until(Instant::now() + Duration::from_secs(30), || {
        last = scrape(n, token)?;
        Ok(value(&last, series) == Some(want))
    });
    r.with_context(|| format!("{series} never read {want}:\n{last}"))?;
    Ok(last)
}

fn promtool(args: &[&str], stdin: Option<&str>, dir: &Path) -> Result<Output> {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool (Debian package prometheus; run scripts/install-deps.sh)")?;
    let mut input = child.stdin.take().context("promtool stdin")?;
    input.write_all(stdin.unwrap_or_default().as_bytes())?;
    drop(input);
    Ok(child.wait_with_output()?)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// TYPE of every family in the exposition.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

#[test]
fn live_metrics_pass_promtool_and_count_what_happened() -> Result<()> {
    let w = scenario::start()?;
    let viewer = w.people.viewer.clone();
    let pending = format!("niledr_pending_approvals{{runbook=\"{RUNBOOK}\"}}");

    // A proposal waits for two approvers: pending, and aging.
    let ex = scenario::propose(&w.niledr, RUNBOOK, &w.people.operator)?;
    let first = ex["id"].as_str().context("id")?.to_string();
    wait_value(&w.niledr, &viewer, &pending, 1.0)?;
    let age = format!("niledr_pending_approval_age_seconds{{runbook=\"{RUNBOOK}\"}}");
    let mut aged = String::new();
    wait_until(Instant::now() + Duration::from_secs(30), || {
        aged = scrape(&w.niledr, &viewer)?;
        Ok(value(&aged, &age).is_some_and(|a| a >= 1.0))
    })
    .with_context(|| format!("{age} never reached 1 s:\n{aged}"))?;

    // Cancelled before it ran: counted, no duration observed.
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{first}/cancel"),
        Some(&w.people.operator),
        &json!({ "comment": "metrics test" }),
    )?;
    assert_eq!(status, 200, "{body:#}");
    let cancelled =
        format!("niledr_executions_total{{runbook=\"{RUNBOOK}\",outcome=\"cancelled\"}}");
    wait_value(&w.niledr, &viewer, &cancelled, 1.0)?;
    wait_value(&w.niledr, &viewer, &pending, 0.0)?;

    // A whole execution.
    let id = scenario::propose_and_approve(&w, RUNBOOK)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(120),
        &["succeeded", "failed", "rolled_back", "cancelled"],
    )?;
    let outcome = done["state"].as_str().context("state")?.to_string();
    assert_eq!(outcome, "succeeded", "{done:#}");
    let ended = format!("niledr_executions_total{{runbook=\"{RUNBOOK}\",outcome=\"{outcome}\"}}");
    let text = wait_value(&w.niledr, &viewer, &ended, 1.0)?;

    // promtool accepts the live output as it is.
    assert_promtool_clean(&text)?;

    // Every family is declared, typed as declared, with HELP; durations are histograms.
    let types = types(&text);
    for (name, kind) in &types {
        let f = families::family(name).with_context(|| format!("{name} is undeclared"))?;
        assert_eq!(kind, f.kind.as_str(), "{name}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}: HELP");
    }
    for name in [
        families::PROBE_LATENCY,
        families::STEP_DURATION,
        families::EXECUTION_DURATION,
        families::HTTP_DURATION,
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some("histogram"),
            "{name}"
        );
    }
    let steps = done["steps"].as_array().context("steps")?;
    for s in steps {
        let series = format!(
            "niledr_step_duration_seconds_count{{runbook=\"{RUNBOOK}\",kind=\"{}\",outcome=\"succeeded\"}}",
            s["kind"].as_str().context("kind")?
        );
        assert!(
            value(&text, &series).is_some_and(|n| n >= 1.0),
            "{series}:\n{text}"
        );
    }
    let ran = format!(
        "niledr_execution_duration_seconds_count{{runbook=\"{RUNBOOK}\",outcome=\"succeeded\"}}"
    );
    assert_eq!(
        value(&text, &ran),
        Some(1.0),
        "the cancelled one never ran:\n{text}"
    );
    assert!(
        text.contains("niledr_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/executions/{id}/approvals\",status=\"200\",le=\"+Inf\"}"),
        "route patterns label the API latency:\n{text}"
    );
    assert!(
        !text.contains(&format!("/api/v1/executions/{id}")),
        "no raw ids in labels"
    );

    // Sites: configured role and status one-hot, for every site the API lists.
    let (_, sites) = w.niledr.get("/api/v1/sites")?;
    for s in sites.as_array().context("sites")? {
        let (site, role, status) = (
            s["id"].as_str().unwrap(),
            s["role"].as_str().unwrap(),
            s["status"].as_str().unwrap(),
        );
        let series =
            format!("niledr_site_role{{site=\"{site}\",role=\"{role}\",kind=\"configured\"}}");
        assert_eq!(value(&text, &series), Some(1.0), "{series}");
        let ones = text
            .lines()
            .filter(|l| l.starts_with(&format!("niledr_site_role{{site=\"{site}\",")))
            .filter(|l| l.contains("kind=\"configured\"") && l.ends_with(" 1"))
            .count();
        assert_eq!(ones, 1, "one configured role per site: {site}");
        let series = format!("niledr_site_status{{site=\"{site}\",status=\"{status}\"}}");
        assert!(value(&text, &series).is_some(), "{series}:\n{text}");
    }
    let (_, services) = w.niledr.get("/api/v1/services")?;
    for s in services.as_array().context("services")? {
        let series = format!(
            "niledr_probe_failures_total{{service=\"{}\",kind=\"{}\"}}",
            s["id"].as_str().unwrap(),
            s["kind"].as_str().unwrap()
        );
        assert!(
            value(&text, &series).is_some(),
            "{series} from the start:\n{text}"
        );
    }
    assert_eq!(value(&text, "niledr_ready"), Some(1.0));
    assert_eq!(
        value(&text, "niledr_audit_chain_valid"),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains(&format!(
        "niledr_build_info{{version=\"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
    assert_eq!(value(&text, &pending), Some(0.0));
    scenario::finish(w, &[])
}

/// promtool accepts `text` with nothing to say.
fn assert_promtool_clean(text: &str) -> Result<()> {
    let out = promtool(&["check", "metrics"], Some(text), Path::new("."))?;
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics on the live /metrics: {}\n{text}",
        self::text(&out)
    );
    Ok(())
}

#[test]
fn in_a_cluster_only_the_leader_leads_and_reports_open_executions() -> Result<()> {
    let w = start_cluster(Duration::from_secs(3), &[])?;
    let leader = w.wait_leader(Duration::from_secs(10), None)?;
    let viewer = w.people.viewer.clone();
    let pending = format!("niledr_pending_approvals{{runbook=\"{RUNBOOK}\"}}");
    scenario::propose(&w.instances[leader].niledr, RUNBOOK, &w.people.operator)?;
    wait_value(&w.instances[leader].niledr, &viewer, &pending, 1.0)?;
    for (i, inst) in w.instances.iter().enumerate() {
        let text = wait_value(&inst.niledr, &viewer, "niledr_cluster_members", 3.0)?;
        let leads = if i == leader { 1.0 } else { 0.0 };
        assert_eq!(
            value(&text, "niledr_cluster_leader"),
            Some(leads),
            "{}",
            inst.name
        );
        assert_eq!(
            value(&text, "niledr_cluster_leader_known"),
            Some(1.0),
            "{}",
            inst.name
        );
        if i != leader {
            assert_ne!(
                value(&text, &pending),
                Some(1.0),
                "{}: only the instance running executions reports them",
                inst.name
            );
        }
        assert_promtool_clean(&text)?;
    }
    Ok(())
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

#[test]
fn shipped_alert_rules_pass_promtool_and_their_unit_tests() -> Result<()> {
    let dir = rules_dir();
    let out = promtool(&["check", "rules", "niledr-rules.yml"], None, &dir)?;
    assert!(out.status.success(), "promtool check rules: {}", text(&out));
    let out = promtool(&["test", "rules", "niledr-rules.test.yml"], None, &dir)?;
    assert!(out.status.success(), "promtool test rules: {}", text(&out));
    Ok(())
}

#[test]
fn alert_rules_name_only_metrics_niledr_exposes() -> Result<()> {
    let rules = std::fs::read_to_string(rules_dir().join("niledr-rules.yml"))?;
    let mut named = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !word.starts_with("niledr_") {
            continue;
        }
        named += 1;
        let known = families::family(word).is_some()
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                word.strip_suffix(s)
                    .and_then(families::family)
                    .is_some_and(|f| f.kind == Kind::Histogram)
            });
        assert!(known, "the rules use {word}, which niledr does not expose");
    }
    assert!(named > 10, "the rules name niledr metrics ({named})");
    Ok(())
}
