//! The registry's output: names, TYPE and HELP lines, buckets, the one-hot and open-execution
//! gauges, the HTTP route label; `promtool check metrics` on it; docs/metrics.md complete.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusRecorder;
use niledr_probes::{Observation, PgObservation, ProbeResult, Status};

use super::executions::{OpenExecution, ran_for};
use super::families::{self as f, FAMILIES, Kind};
use super::*;
use crate::records::{ExecutionRecordV1, StatusChangeV1, TimelineEntryV1};

/// Render what `record` records into a fresh recorder built like the daemon's.
fn rendered(record: impl FnOnce()) -> String {
    let recorder: PrometheusRecorder = builder().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe();
        record();
    });
    handle.render()
}

/// A family as rendered: TYPE, whether HELP preceded it, sample lines.
#[derive(Debug, Default)]
struct Rendered {
    kind: String,
    help: bool,
    samples: Vec<String>,
}

fn parse(text: &str) -> BTreeMap<String, Rendered> {
    let mut out: BTreeMap<String, Rendered> = BTreeMap::new();
    let mut last_help = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            last_help = rest.split_whitespace().next().map(str::to_string);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            let e = out.entry(name.to_string()).or_default();
            e.kind = kind.to_string();
            e.help = last_help.as_deref() == Some(name);
        } else if !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let family = out
                .keys()
                .filter(|k| name.starts_with(k.as_str()))
                .max_by_key(|k| k.len())
                .cloned()
                .unwrap_or_else(|| panic!("sample before its TYPE line: {line}"));
            out.entry(family)
                .or_default()
                .samples
                .push(line.to_string());
        }
    }
    out
}

fn probe(target: &str, ok: bool, lag: Option<u64>) -> ProbeResult {
    ProbeResult {
        target: target.into(),
        kind: "postgres",
        ok,
        started_at: jiff::Timestamp::now(),
        latency: Duration::from_millis(7),
        schedule_lag: Duration::from_millis(1),
        error: (!ok).then(|| "connection refused".to_string()),
        observation: Observation::Postgres(PgObservation {
            in_recovery: true,
            lag_bytes: lag,
            replay_delay_seconds: lag.map(|_| 0.5),
            ..Default::default()
        }),
    }
}

fn execution(runbook: &str, timeline: Vec<TimelineEntryV1>) -> ExecutionRecordV1 {
    ExecutionRecordV1 {
        v: 1,
        id: "e1".into(),
        runbook: runbook.into(),
        reason: "test".into(),
        requester: "khalid".into(),
        created_at: jiff::Timestamp::now().to_string(),
        state: "succeeded".into(),
        machine: serde_json::Value::Null,
        plan_digest: String::new(),
        plan: serde_json::Value::Null,
        preconditions: serde_json::Value::Null,
        approvals: vec![],
        steps: vec![],
        timeline,
        needs_operator: None,
        generation: None,
        past_point_of_no_return: false,
        revision: 0,
        expires_at_ms: None,
    }
}

fn entry(at: jiff::Timestamp, event: &str) -> TimelineEntryV1 {
    TimelineEntryV1 {
        at: at.to_string(),
        event: event.into(),
        detail: String::new(),
    }
}

/// Everything the daemon's parts record, once.
fn record_everything() {
    probes_init([("pg-a", "postgres")]);
    executions_init(["rb"]);
    record_probe(&probe("pg-b", true, Some(1024)));
    record_probe(&probe("pg-b", false, None));
    record_status("pg-b", Status::Degraded);
    status_changed(&StatusChangeV1 {
        v: 1,
        seq: 1,
        at: String::new(),
        scope: "service".into(),
        id: "pg-b".into(),
        site: Some("b".into()),
        from: "up".into(),
        to: "degraded".into(),
        reason: String::new(),
    });
    let now = jiff::Timestamp::now();
    let started = now - jiff::SignedDuration::from_secs(42);
    execution_ended(
        &execution("rb", vec![entry(started, "approved → running")]),
        "succeeded",
    );
    step_finished("rb", "dns.cutover", "succeeded", Duration::from_millis(30));
    open_executions(["rb"], [], 0);
    // As the notification worker records them.
    metrics::counter!(f::NOTIFICATIONS, "receiver" => "pager", "outcome" => "delivered")
        .increment(1);
    // As the live topology records them.
    metrics::gauge!(f::TRIGGERS_PAUSED).set(0.0);
    metrics::gauge!(f::COLD_BACKUP_AGE, "site" => "cold", "what" => "base_backup").set(3600.0);
    drill_run_ended("d", "missed");
    upkeep::audit_verified(
        &crate::audit::VerifyReport {
            entries: 3,
            head: String::new(),
            broken: None,
        },
        now,
    );
    metrics::counter!(f::AUTH_REFUSED, "limit" => "client").increment(1);
}

#[test]
fn every_family_follows_the_naming_conventions() {
    for fam in FAMILIES {
        let n = fam.name;
        assert!(n.starts_with("niledr_"), "{n}: niledr_ prefix");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{n}: snake_case"
        );
        assert!(!fam.help.is_empty(), "{n}: HELP text");
        assert_eq!(
            n.ends_with("_total"),
            fam.kind == Kind::Counter,
            "{n}: _total exactly on counters"
        );
        assert!(
            !n.ends_with("_milliseconds") && !n.ends_with("_ms"),
            "{n}: base units (seconds)"
        );
        match fam.kind {
            Kind::Histogram => {
                assert!(n.ends_with("_seconds"), "{n}: durations in seconds");
                assert!(fam.buckets.len() >= 5, "{n}: buckets");
                assert!(
                    fam.buckets.windows(2).all(|w| w[0] < w[1]),
                    "{n}: buckets ascending"
                );
            }
            _ => assert!(fam.buckets.is_empty(), "{n}: buckets only on histograms"),
        }
        for l in fam.labels {
            assert!(
                !l.starts_with("__") && *l != "le" && *l != "quantile",
                "{n}: reserved label {l}"
            );
        }
    }
    let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), FAMILIES.len(), "names are unique");
}

#[test]
fn the_registry_renders_help_type_and_buckets_for_what_is_recorded() {
    let text = rendered(record_everything);
    let families = parse(&text);
    for (name, r) in &families {
        let fam = f::family(name).unwrap_or_else(|| panic!("{name} is not in FAMILIES"));
        assert_eq!(r.kind, fam.kind.as_str(), "{name}: TYPE");
        assert!(r.help, "{name}: HELP line before TYPE:\n{text}");
        assert!(!r.samples.is_empty(), "{name}: samples");
        for s in &r.samples {
            for l in fam.labels {
                assert!(
                    !s.contains('{') || s.contains(&format!("{l}=")) || *l == "git_commit",
                    "{name}: label {l} in {s}"
                );
            }
        }
    }
    // Histograms are histograms (explicit buckets), never summaries.
    assert!(!text.contains("quantile="), "{text}");
    assert!(!text.contains(" summary"), "{text}");
    let lat = &families[f::PROBE_LATENCY].samples;
    assert!(
        lat.iter()
            .any(|s| s.contains("le=\"0.01\"") && s.ends_with(" 2")),
        "both 7 ms runs under 0.01: {lat:?}"
    );
    assert!(
        lat.iter()
            .any(|s| s.contains("le=\"0.005\"") && s.ends_with(" 0")),
        "{lat:?}"
    );
    assert!(lat.iter().any(|s| s.contains("le=\"+Inf\"")), "{lat:?}");
    let dur = &families[f::EXECUTION_DURATION].samples;
    assert!(
        dur.iter()
            .any(|s| s.contains("le=\"30\"") && s.ends_with(" 0"))
            && dur
                .iter()
                .any(|s| s.contains("le=\"60\"") && s.ends_with(" 1")),
        "a 42 s execution lands between 30 and 60: {dur:?}"
    );
    assert!(text.contains("niledr_probe_failures_total{service=\"pg-b\",kind=\"postgres\"} 1"));
    assert!(text.contains("niledr_executions_total{runbook=\"rb\",outcome=\"succeeded\"} 1"));
    assert!(
        text.contains(
            "niledr_status_changes_total{scope=\"service\",id=\"pg-b\",to=\"degraded\"} 1"
        )
    );
    assert!(text.contains(&format!(
        "niledr_build_info{{version=\"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("niledr_audit_chain_valid 1"), "{text}");
    // Known series start at 0 (an increase, not a new series, on the first event).
    assert!(text.contains("niledr_probe_failures_total{service=\"pg-a\",kind=\"postgres\"} 0"));
    assert!(text.contains("niledr_executions_total{runbook=\"rb\",outcome=\"expired\"} 0"));
}

#[test]
fn one_hot_status_sets_exactly_one() {
    let text = rendered(|| {
        record_status("svc", Status::Up);
        record_status("svc", Status::Down);
    });
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("niledr_service_status{"))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.contains(&"niledr_service_status{service=\"svc\",status=\"down\"} 1"));
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(" 1")).count(),
        1,
        "{lines:?}"
    );
}

#[test]
fn open_executions_count_by_state_and_drop_back_to_zero() {
    let text = rendered(|| {
        open_executions(
            ["a", "b"],
            [
                OpenExecution {
                    runbook: "a",
                    state: "awaiting_approval",
                    created_ms: 1_000,
                },
                OpenExecution {
                    runbook: "a",
                    state: "awaiting_approval",
                    created_ms: 61_000,
                },
                OpenExecution {
                    runbook: "b",
                    state: "needs_operator",
                    created_ms: 0,
                },
            ],
            121_000,
        );
    });
    assert!(
        text.contains("niledr_pending_approvals{runbook=\"a\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("niledr_pending_approval_age_seconds{runbook=\"a\"} 120"),
        "oldest: {text}"
    );
    assert!(
        text.contains("niledr_pending_approvals{runbook=\"b\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("niledr_pending_approval_age_seconds{runbook=\"b\"} 0"),
        "{text}"
    );
    assert!(text.contains("niledr_open_executions{runbook=\"b\",state=\"needs_operator\"} 1"));
    assert!(text.contains("niledr_open_executions{runbook=\"b\",state=\"running\"} 0"));

    // Once nothing is open, every series reads 0 (none is left at its old value).
    let text = rendered(|| {
        open_executions(
            ["a"],
            [OpenExecution {
                runbook: "a",
                state: "awaiting_approval",
                created_ms: 0,
            }],
            5_000,
        );
        open_executions(["a"], [], 6_000);
    });
    assert!(
        text.contains("niledr_pending_approvals{runbook=\"a\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("niledr_pending_approval_age_seconds{runbook=\"a\"} 0"),
        "{text}"
    );
}

#[test]
fn execution_duration_runs_from_the_first_start() {
    let t0: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
    let rec = execution(
        "rb",
        vec![
            entry(t0, "proposed → awaiting_approval"),
            entry(
                t0 + jiff::SignedDuration::from_secs(60),
                "approved → running",
            ),
            entry(t0 + jiff::SignedDuration::from_secs(70), "paused → running"),
        ],
    );
    let end = t0 + jiff::SignedDuration::from_secs(100);
    assert_eq!(ran_for(&rec, end), Some(Duration::from_secs(40)));
    let never = execution("rb", vec![entry(t0, "awaiting_approval → rejected")]);
    assert_eq!(ran_for(&never, end), None, "a rejected proposal never ran");
}

#[tokio::test]
async fn http_requests_are_labelled_by_route_pattern() {
    use axum::Router;
    use axum::routing::get;
    let recorder: PrometheusRecorder = builder().build_recorder();
    let handle = recorder.handle();
    let app = Router::new()
        .route("/things/{id}", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(http::track));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    // The middleware records on the server's tasks: give them this recorder.
    let _guard = metrics::set_default_local_recorder(&recorder);
    for path in ["/things/1", "/things/2", "/nothing"] {
        client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
    }
    server.abort();
    let text = handle.render();
    assert!(
        text.contains("niledr_http_request_duration_seconds_count{method=\"GET\",route=\"/things/{id}\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(
        !text.contains("/things/1"),
        "raw paths never become labels: {text}"
    );
}

/// promtool must be installed (scripts/install-deps.sh installs Debian's `prometheus`).
pub fn promtool_check_metrics(text: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; run scripts/install-deps.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    child.wait_with_output().expect("promtool output")
}

#[test]
fn promtool_accepts_the_registry_output() {
    let text = rendered(record_everything);
    let out = promtool_check_metrics(&text);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docs_list_every_family_with_its_type() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .expect("docs/metrics.md");
    for fam in FAMILIES {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}`", fam.name)))
            .unwrap_or_else(|| panic!("docs/metrics.md has no row for {}", fam.name));
        assert!(
            row.contains(&format!("| {} |", fam.kind.as_str())),
            "{}: type in {row}",
            fam.name
        );
        for l in fam.labels {
            assert!(
                row.contains(&format!("`{l}`")),
                "{}: label {l} in {row}",
                fam.name
            );
        }
    }
}
