//! Pager tooling in, end to end: a real Alertmanager fires at niledr (bearer token from a
//! file) and opens exactly one proposal for the mapped runbook however often it re-sends,
//! across a rejection and a restart; the resolution annotates and cancels nothing, a running
//! execution included; PagerDuty-signed and generic-signed calls (signatures computed here
//! with `openssl`, no PagerDuty service exists here) are accepted, wrong signatures get 401,
//! replays and old events are refused, and every refusal is in the audit chain.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use niledr_tests::alertmanager::{Alertmanager, Timing};
use niledr_tests::http::http_request;
use niledr_tests::scenario::{self, World};
use niledr_tests::wait_until;
use serde_json::{Value, json};

const AM_TOKEN: &str = "am-token-5d1c0e7b9a8f4e2a";
const PD_SECRET: &str = "pd-secret-8f14e45fceea167a";
const GENERIC_SECRET: &str = "generic-secret-c9f0f895fb98ab91";
const PG_RUNBOOK: &str = "failover-khartoum-to-port-sudan";
const REDIS_RUNBOOK: &str = "redis-failover-khartoum-to-port-sudan";

/// The `[hooks]` section (docs/hooks.md), secrets in files next to the config.
fn with_hooks(base: &Path, text: String) -> Result<String> {
    let file = |name: &str, secret: &str| -> Result<String> {
        let p = base.join(name);
        std::fs::write(&p, format!("{secret}\n"))?;
        Ok(p.display().to_string())
    };
    Ok(format!(
        "{text}\n[hooks]\nreplay_window = \"1m\"\n\n[hooks.alertmanager]\ntoken_file = \"{am}\"\n\n\
         [hooks.pagerduty]\nsecret_file = \"{pd}\"\n\n[hooks.generic]\nsecret_file = \"{gen}\"\n\n\
         [[hooks.matchers]]\nname = \"khartoum-postgres-down\"\nsources = [\"alertmanager\"]\n\
         match = ['alertname=\"PostgresDown\"', 'site=\"khartoum\"']\nservice = \"khartoum-postgres\"\nrunbook = \"{PG_RUNBOOK}\"\n\n\
         [[hooks.matchers]]\nname = \"khartoum-redis-paged\"\nsources = [\"pagerduty\", \"generic\"]\n\
         match = ['service=~\"NileCare (Cache|Redis)\"']\nservice = \"khartoum-redis\"\nrunbook = \"{REDIS_RUNBOOK}\"\n",
        am = file("am.token", AM_TOKEN)?,
        pd = file("pd.secret", PD_SECRET)?,
        gen = file("generic.secret", GENERIC_SECRET)?,
    ))
}

fn start(env: &[(&str, &str)]) -> Result<World> {
    scenario::start_with(|topo, text| with_hooks(topo.base_dir(), text), env)
}

/// GET with the viewer's token (reads need a principal).
fn get(w: &World, path: &str) -> Result<Value> {
    let auth = format!("Bearer {}", w.people.viewer);
    let r = http_request(
        w.niledr.listen,
        "GET",
        path,
        &[("Authorization", &auth)],
        None,
        Duration::from_secs(10),
    )?;
    if r.status != 200 {
        bail!("GET {path}: {} {}", r.status, r.body);
    }
    serde_json::from_str(&r.body).with_context(|| format!("GET {path}: {}", r.body))
}

fn wait_get(
    w: &World,
    path: &str,
    within: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> Result<Value> {
    let mut last = Value::Null;
    wait_until(Instant::now() + within, || {
        last = get(w, path)?;
        Ok(pred(&last))
    })
    .with_context(|| format!("GET {path} never matched; last:\n{last:#}"))?;
    Ok(last)
}

fn by(w: &World, requester: &str, runbook: &str) -> Result<Vec<Value>> {
    Ok(get(w, "/api/v1/executions")?
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["requester"] == requester && e["runbook"] == runbook)
        .cloned()
        .collect())
}

fn service(w: &World, id: &str) -> Result<Value> {
    let all = get(w, "/api/v1/services")?;
    Ok(all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
        .clone())
}

/// POST a raw body with headers; (status, JSON).
fn post_raw(w: &World, path: &str, headers: &[(&str, &str)], body: &str) -> Result<(u16, Value)> {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    let r = http_request(
        w.niledr.listen,
        "POST",
        path,
        &h,
        Some(body),
        Duration::from_secs(30),
    )?;
    let v = serde_json::from_str(&r.body).with_context(|| format!("POST {path}: {}", r.body))?;
    Ok((r.status, v))
}

/// Hex HMAC-SHA256 by `openssl`, independent of niledr's code.
fn hmac(secret: &str, message: &str) -> Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(message.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .context("openssl output")?
        .to_string())
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Wait until Alertmanager delivered `n` more webhook notifications than `since`
/// (successful ones: while niledr restarts, deliveries fail and Alertmanager retries).
fn deliveries(am: &Alertmanager, since: u64, n: u64) -> Result<u64> {
    let mut seen = since;
    wait_until(Instant::now() + Duration::from_secs(30), || {
        let (sent, failed) = am.notifications()?;
        seen = sent.saturating_sub(failed);
        Ok(seen >= since + n)
    })
    .with_context(|| {
        format!(
            "alertmanager delivered {seen}, waited for {}:\n{}",
            since + n,
            am.log_tail(30)
        )
    })?;
    Ok(seen)
}

fn timeline_has(ex: &Value, event: &str) -> bool {
    ex["timeline"]
        .as_array()
        .is_some_and(|t| t.iter().any(|e| e["event"] == event))
}

/// Stop niledr (log and audit chain checked) and read its audit entries from the store.
fn audit_after(w: World) -> Result<Vec<Value>> {
    let store = w.topo.base_dir().join("state/niledr.redb");
    let topo = w.topo;
    scenario::check_and_stop(w.niledr, &[])?;
    let entries = niledr_orchestrator::store::Store::open(&store)?.audit_entries()?;
    drop(topo);
    entries
        .into_iter()
        .map(|e| serde_json::to_value(e).map_err(Into::into))
        .collect()
}

#[test]
fn alertmanager_opens_one_proposal_per_outage_and_a_resolution_cancels_nothing() -> Result<()> {
    // The cutover step waits, so the execution is seen running when the alert resolves.
    let env = [
        ("NILEDR_FAILPOINTS", "delay:cutover-db"),
        ("NILEDR_FAILPOINT_DELAY_MS", "8000"),
    ];
    let w = start(&env)?;
    let token = w.topo.base_dir().join("am.token");
    let url = format!("{}/api/v1/hooks/alertmanager", w.niledr.url());
    let am = Alertmanager::start(
        &w.topo.base_dir().join("alertmanager"),
        &url,
        &token,
        Timing::default(),
    )?;
    let labels = json!({"alertname": "PostgresDown", "site": "khartoum", "severity": "page"});
    let started = now().to_string();
    am.fire(
        &labels,
        &json!({"summary": "Khartoum PostgreSQL primary unreachable"}),
        &started,
    )?;

    let t0 = Instant::now();
    let all = wait_get(&w, "/api/v1/executions", Duration::from_secs(30), |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["requester"] == "niledr-hook:alertmanager")
        })
    })?;
    println!(
        "observed: alert posted to Alertmanager -> proposal in niledr after {:?}",
        t0.elapsed()
    );
    let p1 = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["requester"] == "niledr-hook:alertmanager")
        .unwrap()
        .clone();
    let id1 = p1["id"].as_str().unwrap().to_string();
    assert_eq!(p1["runbook"], PG_RUNBOOK, "{p1:#}");
    assert_eq!(
        p1["state"], "awaiting_approval",
        "an alert never approves: {p1:#}"
    );
    assert!(
        p1["reason"].as_str().unwrap().contains("PostgresDown"),
        "{p1:#}"
    );
    // Evidence on the service.
    let svc = service(&w, "khartoum-postgres")?;
    assert_eq!(svc["alerts"][0]["name"], "PostgresDown", "{svc:#}");
    assert_eq!(svc["alerts"][0]["execution"], id1.as_str(), "{svc:#}");

    // Alertmanager re-sends every repeat_interval: still one proposal.
    let (sent, failed) = am.notifications()?;
    let sent = deliveries(&am, sent - failed, 2)?;
    assert_eq!(by(&w, "niledr-hook:alertmanager", PG_RUNBOOK)?.len(), 1);

    // Rejected, then re-sent: the outage already had its proposal (the memory, not a lock).
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id1}/approvals"),
        Some(&w.people.ic),
        &json!({"decision": "reject", "comment": "looking into it first"}),
    )?;
    assert_eq!(status, 200, "{body:#}");
    let sent = deliveries(&am, sent, 1)?;
    assert_eq!(by(&w, "niledr-hook:alertmanager", PG_RUNBOOK)?.len(), 1);
    // Across a restart too (the memory is in the store).
    let w = scenario::restart(w, &env)?;
    let sent = deliveries(&am, sent, 2)?;
    assert_eq!(
        by(&w, "niledr-hook:alertmanager", PG_RUNBOOK)?.len(),
        1,
        "no second proposal after a restart"
    );

    // Resolved: noted on the proposal; the evidence is gone.
    am.resolve(&labels, &started, &now().to_string())?;
    let ex = wait_get(
        &w,
        &format!("/api/v1/executions/{id1}"),
        Duration::from_secs(30),
        |e| timeline_has(e, "alert_resolved"),
    )?;
    assert_eq!(ex["state"], "rejected");
    let svc = service(&w, "khartoum-postgres")?;
    assert_eq!(svc["alerts"], json!([]), "{svc:#}");

    // Firing again is a new outage: one new proposal, approved by two people, runs.
    let started2 = now().to_string();
    am.fire(&labels, &json!({"summary": "down again"}), &started2)?;
    let all = wait_get(&w, "/api/v1/executions", Duration::from_secs(30), |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .filter(|e| e["requester"] == "niledr-hook:alertmanager")
                .count()
                == 2
        })
    })?;
    let p2 = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["requester"] == "niledr-hook:alertmanager" && e["id"] != id1.as_str())
        .unwrap()
        .clone();
    let id2 = p2["id"].as_str().unwrap().to_string();
    let digest = p2["plan_digest"].as_str().unwrap();
    for t in [&w.people.ic, &w.people.lead] {
        let (status, body) = scenario::approve(&w.niledr, &id2, t, digest)?;
        assert_eq!(status, 200, "{body:#}");
    }
    wait_get(
        &w,
        &format!("/api/v1/executions/{id2}"),
        Duration::from_secs(60),
        |e| {
            e["steps"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["id"] == "cutover-db" && s["state"] == "running")
            })
        },
    )?;
    // The alert resolves while the execution runs: noted, nothing cancelled.
    am.resolve(&labels, &started2, &now().to_string())?;
    let ex = wait_get(
        &w,
        &format!("/api/v1/executions/{id2}"),
        Duration::from_secs(30),
        |e| timeline_has(e, "alert_resolved"),
    )?;
    assert_eq!(
        ex["state"], "running",
        "a resolution does not stop an execution: {ex:#}"
    );
    let done = w.niledr.wait_execution(
        &id2,
        Duration::from_secs(90),
        &[
            "succeeded",
            "failed",
            "needs_operator",
            "cancelled",
            "rolled_back",
        ],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(by(&w, "niledr-hook:alertmanager", PG_RUNBOOK)?.len(), 2);
    let (total, failed) = am.notifications()?;
    println!(
        "observed: alertmanager delivered {total} webhook notifications ({failed} failed; {sent} before the second outage)"
    );

    // A wrong bearer token: 401, audited.
    let (status, body) = post_raw(
        &w,
        "/api/v1/hooks/alertmanager",
        &[("Authorization", "Bearer not-the-token")],
        "{}",
    )?;
    assert_eq!(status, 401, "{body:#}");
    drop(am);
    let audit = audit_after(w)?;
    let alerts: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "hook.alert")
        .collect();
    let outcomes = |o: &str| {
        alerts
            .iter()
            .filter(|e| e["detail"]["outcome"] == o)
            .count()
    };
    assert_eq!(outcomes("proposed"), 2, "{alerts:#?}");
    assert!(
        outcomes("duplicate") >= 4,
        "every re-send audited as a duplicate: {alerts:#?}"
    );
    assert_eq!(outcomes("annotated"), 2, "{alerts:#?}");
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "hook.refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["detail"]["refusal"], "bad_credentials");
    let text = serde_json::to_string(&audit)?;
    assert!(
        !text.contains(AM_TOKEN),
        "the token never reaches the audit"
    );
    Ok(())
}

fn pagerduty_body(event_id: &str, event_type: &str, occurred_at: &str) -> String {
    json!({"event": {
        "id": event_id, "event_type": event_type, "resource_type": "incident", "occurred_at": occurred_at,
        "agent": {"id": "PLH1HKV", "type": "user_reference", "summary": "On-call"},
        "client": {"name": "PagerDuty"},
        "data": {"id": "Q1NILE", "type": "incident", "status": "triggered", "number": 7,
                 "title": "Khartoum Redis not answering", "html_url": "https://nilecare.pagerduty.com/incidents/Q1NILE",
                 "urgency": "high", "service": {"id": "PSVC1", "summary": "NileCare Redis", "type": "service_reference"}}
    }})
    .to_string()
}

fn post_pagerduty(w: &World, body: &str, signature: &str) -> Result<(u16, Value)> {
    post_raw(
        w,
        "/api/v1/hooks/pagerduty",
        &[("X-PagerDuty-Signature", signature)],
        body,
    )
}

fn post_generic(w: &World, body: &str, ts: i64, secret: &str) -> Result<(u16, Value)> {
    let sig = format!("sha256={}", hmac(secret, &format!("{ts}.{body}"))?);
    let ts = ts.to_string();
    post_raw(
        w,
        "/api/v1/hooks/generic",
        &[("X-Niledr-Timestamp", &ts), ("X-Niledr-Signature", &sig)],
        body,
    )
}

#[test]
fn pagerduty_and_generic_hooks_verify_signatures_and_refuse_replays() -> Result<()> {
    let w = start(&[])?;
    let occurred = now().to_string();
    let body = pagerduty_body("ev-trigger-1", "incident.triggered", &occurred);
    let good = format!("v1={}", hmac(PD_SECRET, &body)?);
    let rotated = format!(
        "v1={},{good}",
        hmac("an-older-secret-being-rotated", &body)?
    );

    // A wrong signature first: 401, nothing opened.
    let wrong = format!("v1={}", hmac("not-the-secret-at-all", &body)?);
    let (status, v) = post_pagerduty(&w, &body, &wrong)?;
    assert_eq!(status, 401, "{v:#}");
    let (status, v) = post_raw(&w, "/api/v1/hooks/pagerduty", &[], &body)?;
    assert_eq!(status, 401, "unsigned: {v:#}");
    assert!(by(&w, "niledr-hook:pagerduty", REDIS_RUNBOOK)?.is_empty());

    // Signed (two signatures, as while PagerDuty rotates its secret): one proposal.
    let (status, v) = post_pagerduty(&w, &body, &rotated)?;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["alerts"][0]["outcome"], "proposed", "{v:#}");
    let id = v["alerts"][0]["execution"].as_str().unwrap().to_string();
    let ex = get(&w, &format!("/api/v1/executions/{id}"))?;
    assert_eq!(
        (ex["runbook"].as_str(), ex["state"].as_str()),
        (Some(REDIS_RUNBOOK), Some("awaiting_approval"))
    );
    assert_eq!(
        service(&w, "khartoum-redis")?["alerts"][0]["source"],
        "pagerduty"
    );

    // The same delivery again: a replay, refused.
    let (status, v) = post_pagerduty(&w, &body, &good)?;
    assert_eq!(status, 409, "{v:#}");
    // A well-signed event older than the replay window (1 min): refused.
    let old = (now() - jiff::SignedDuration::from_secs(120)).to_string();
    let stale = pagerduty_body("ev-old-1", "incident.triggered", &old);
    let (status, v) = post_pagerduty(&w, &stale, &format!("v1={}", hmac(PD_SECRET, &stale)?))?;
    assert_eq!(status, 401, "{v:#}");

    // A generic alert of the same outage: attached to the open proposal, not a second one.
    let generic = json!({"alerts": [{"fingerprint": "redis-khartoum", "status": "firing",
        "labels": {"alertname": "RedisDown", "service": "NileCare Cache"}, "annotations": {"summary": "no PONG"}}]})
    .to_string();
    let ts = now().as_second();
    let (status, v) = post_generic(&w, &generic, ts, "wrong-secret-0123456789")?;
    assert_eq!(status, 401, "{v:#}");
    let (status, v) = post_generic(&w, &generic, ts - 120, GENERIC_SECRET)?;
    assert_eq!(status, 401, "an old timestamp: {v:#}");
    let (status, v) = post_generic(&w, &generic, ts, GENERIC_SECRET)?;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(
        (
            v["alerts"][0]["outcome"].as_str(),
            v["alerts"][0]["execution"].as_str()
        ),
        (Some("attached"), Some(id.as_str())),
        "{v:#}"
    );
    let (status, v) = post_generic(&w, &generic, ts, GENERIC_SECRET)?;
    assert_eq!(status, 409, "the same signed delivery again: {v:#}");
    // Written differently (upper-case hex, a second bogus signature), still the same delivery.
    let sig = format!(
        "sha256=00ff, sha256={}",
        hmac(GENERIC_SECRET, &format!("{ts}.{generic}"))?.to_uppercase()
    );
    let (status, v) = post_raw(
        &w,
        "/api/v1/hooks/generic",
        &[
            ("X-Niledr-Timestamp", &ts.to_string()),
            ("X-Niledr-Signature", &sig),
        ],
        &generic,
    )?;
    assert_eq!(status, 409, "a re-encoded replay: {v:#}");
    // A restart forgets no event id: the first PagerDuty delivery again is still a replay.
    let w = scenario::restart(w, &[])?;
    let (status, v) = post_pagerduty(&w, &body, &good)?;
    assert_eq!(status, 409, "a replay after a restart: {v:#}");
    // Not the format: 400.
    let (status, v) = post_generic(&w, "{\"alerts\": 3}", ts, GENERIC_SECRET)?;
    assert_eq!(status, 400, "{v:#}");

    // PagerDuty resolves the incident: noted, the proposal still waits.
    let resolved = pagerduty_body("ev-resolve-1", "incident.resolved", &now().to_string());
    let (status, v) = post_pagerduty(
        &w,
        &resolved,
        &format!("v1={}", hmac(PD_SECRET, &resolved)?),
    )?;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["alerts"][0]["outcome"], "annotated", "{v:#}");
    let ex = get(&w, &format!("/api/v1/executions/{id}"))?;
    assert!(
        timeline_has(&ex, "alert_resolved") && timeline_has(&ex, "alert"),
        "{ex:#}"
    );
    assert_eq!(ex["state"], "awaiting_approval");
    assert_eq!(by(&w, "niledr-hook:pagerduty", REDIS_RUNBOOK)?.len(), 1);

    let log = std::fs::read_to_string(&w.niledr.log)?;
    let audit = audit_after(w)?;
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "hook.refused")
        .collect();
    let kinds: Vec<&str> = refused
        .iter()
        .map(|e| e["detail"]["refusal"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "bad_credentials",
            "missing_credentials",
            "replayed",
            "outside_replay_window",
            "bad_credentials",
            "outside_replay_window",
            "replayed",
            "replayed",
            "replayed",
            "bad_payload"
        ],
        "{refused:#?}"
    );
    assert!(
        refused.iter().all(|e| e["detail"]["client"] == "127.0.0.1"),
        "{refused:#?}"
    );
    let text = serde_json::to_string(&audit)?;
    for secret in [PD_SECRET, GENERIC_SECRET] {
        assert!(
            !text.contains(secret) && !log.contains(secret),
            "a secret leaked"
        );
    }
    Ok(())
}

/// Wait until niledr's log has a line containing `text`.
fn wait_log(w: &World, text: &str, within: Duration) -> Result<()> {
    wait_until(Instant::now() + within, || {
        Ok(std::fs::read_to_string(&w.niledr.log)?.contains(text))
    })
    .with_context(|| format!("niledr never logged {text:?}"))
}

#[test]
fn a_probe_trigger_opens_no_second_proposal_for_an_outage_the_pager_proposed_for() -> Result<()> {
    let w = scenario::start_with(
        |topo, text| {
            let rb = topo
                .base_dir()
                .join("runbooks")
                .join(format!("{REDIS_RUNBOOK}.toml"));
            let body = std::fs::read_to_string(&rb)?;
            assert!(body.contains("for = \"30s\""), "{}", rb.display());
            std::fs::write(&rb, body.replacen("for = \"30s\"", "for = \"2s\"", 1))?;
            with_hooks(topo.base_dir(), text)
        },
        &[],
    )?;
    let generic = json!({"alerts": [{"fingerprint": "redis-khartoum", "status": "firing",
        "labels": {"alertname": "RedisDown", "service": "NileCare Redis"}}]})
    .to_string();
    let (status, v) = post_generic(&w, &generic, now().as_second(), GENERIC_SECRET)?;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["alerts"][0]["outcome"], "proposed", "{v:#}");
    let id = v["alerts"][0]["execution"].as_str().unwrap().to_string();
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{id}/approvals"),
        Some(&w.people.lead),
        &json!({"decision": "reject", "comment": "a blip, we think"}),
    )?;
    assert_eq!(status, 200, "{body:#}");
    // The outage turns out real: the probes judge Redis down, and the trigger stays quiet.
    w.topo.redis_primary().kill()?;
    wait_log(
        &w,
        "a pager alert already opened execution",
        Duration::from_secs(30),
    )?;
    let all = get(&w, "/api/v1/executions")?;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 1, "one proposal for the outage: {all:#?}");
    assert_eq!(all[0]["id"], id.as_str());
    scenario::finish(w, &[])
}
