//! Notifications out, end to end: the real `niledr` binary against the real topology pages a
//! local fake receiver (named a fake: there is no Slack or PagerDuty here) that fails its
//! first attempts; every attempt is audited; a proposal's page says who is still needed and
//! links the console; a hanging receiver delays nobody else; and a SIGKILL after a send but
//! before it is marked delivered produces no duplicate for a receiver that honours the dedup key.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use niledr_orchestrator::records::AuditRecordV1;
use niledr_orchestrator::store::{RedbStore, SharedStore};
use niledr_tests::daemon::Niledr;
use niledr_tests::http::http_request;
use niledr_tests::scenario::{self, World};
use niledr_tests::wait_until;
use serde_json::{Value, json};

#[path = "common/etcd_store.rs"]
mod etcd_store;

const FAILOVER: &str = "failover-khartoum-to-port-sudan";
const CONSOLE: &str = "https://niledr.test.sd";
/// In the webhook URL's path, as in Slack's: must never be shown.
const URL_TOKEN: &str = "T0K3N-in-the-path";
const ROUTING_KEY: &str = "R0UTING-KEY-0123456789";
const HOOK_SECRET: &str = "hmac-secret-for-the-hook";

/// One request the fake receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: String,
    /// What the fake answered.
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A FAKE webhook/PagerDuty receiver on a local port: records every request; fails the first
/// `fail[path prefix]` requests under a path with 503; never answers under `/hang`.
struct FakeReceiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    _rt: tokio::runtime::Runtime,
}

impl FakeReceiver {
    fn start(fail: &[(&str, u32)]) -> Result<FakeReceiver> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fail: Arc<Mutex<HashMap<String, u32>>> = Arc::new(Mutex::new(
            fail.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        ));
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let g = got.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (got, fail) = (g.clone(), fail.clone());
            async move {
                let path = uri.path().to_string();
                if path.starts_with("/hang") {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let failing = {
                    let mut f = fail.lock().unwrap_or_else(|e| e.into_inner());
                    match f.iter_mut().find(|(p, _)| path.starts_with(p.as_str())) {
                        Some((_, n)) if *n > 0 => {
                            *n -= 1;
                            true
                        }
                        _ => false,
                    }
                };
                let status = if failing {
                    StatusCode::SERVICE_UNAVAILABLE
                } else if path.starts_with("/pd") {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                };
                got.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Received {
                        path,
                        headers: headers
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                        status: status.as_u16(),
                    });
                (status, "ok")
            }
        });
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeReceiver { port, got, _rt: rt })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self, prefix: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Wait until `pred` holds for the requests under `prefix`.
    fn wait(
        &self,
        prefix: &str,
        within: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Result<Vec<Received>> {
        wait_until(Instant::now() + within, || Ok(pred(&self.requests(prefix)))).with_context(
            || format!("fake receiver under {prefix}: {:#?}", self.requests(prefix)),
        )?;
        Ok(self.requests(prefix))
    }
}

/// The `[notifications]` section for `receivers` (TOML text of each `[[…receivers]]`).
fn section(receivers: &[String]) -> String {
    let mut s = format!(
        "\n[notifications]\nconsole_url = \"{CONSOLE}/\"\nmax_attempts = 4\nbackoff_initial = \"300ms\"\nbackoff_max = \"1s\"\n"
    );
    for r in receivers {
        s.push_str("\n[[notifications.receivers]]\n");
        s.push_str(r);
    }
    s
}

fn secret_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n"))?;
    Ok(p)
}

fn get(w: &World, path: &str, token: &str) -> Result<(u16, String)> {
    let auth = format!("Bearer {token}");
    let r = http_request(
        w.niledr.listen,
        "GET",
        path,
        &[("Authorization", &auth)],
        None,
        Duration::from_secs(10),
    )?;
    Ok((r.status, r.body))
}

fn notifications(w: &World) -> Result<Value> {
    let (status, body) = get(w, "/api/v1/notifications?limit=1000", &w.people.viewer)?;
    if status != 200 {
        bail!("GET /api/v1/notifications: {status} {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

fn entries_of<'a>(v: &'a Value, receiver: &str) -> Vec<&'a Value> {
    v["notifications"]
        .as_array()
        .map(|a| a.iter().filter(|n| n["receiver"] == receiver).collect())
        .unwrap_or_default()
}

fn post(w: &World, path: &str, token: &str, body: &Value) -> Result<Value> {
    let (status, v) = w.niledr.post(path, Some(token), body)?;
    if !(200..300).contains(&status) {
        bail!("POST {path}: {status} {v:#}");
    }
    Ok(v)
}

/// The audit chain as the stopped daemon left it.
fn audit_of(store: &Path) -> Result<Vec<AuditRecordV1>> {
    RedbStore::open(store)?.audit_entries()
}

fn attempts_audited(audit: &[AuditRecordV1], id: &str) -> Vec<(String, u64)> {
    audit
        .iter()
        .filter(|a| a.action.starts_with("notification.") && a.detail["id"] == id)
        .map(|a| (a.action.clone(), a.detail["attempt"].as_u64().unwrap_or(0)))
        .collect()
}

#[test]
fn pages_say_who_is_needed_survive_failing_receivers_and_are_audited_per_attempt() -> Result<()> {
    let fake = FakeReceiver::start(&[("/hook", 2), ("/pd", 1)])?;
    let (hook, pd, hang) = (
        fake.url(&format!("/hook/{URL_TOKEN}")),
        fake.url("/pd"),
        fake.url("/hang"),
    );
    let w = scenario::start_with(
        |topo, text| {
            let dir = topo.base_dir();
            let key = secret_file(dir, "pd.key", ROUTING_KEY)?;
            let secret = secret_file(dir, "hook.secret", HOOK_SECRET)?;
            Ok(text
                + &section(&[
                    format!(
                        "name = \"oncall-chat\"\nkind = \"webhook\"\nurl = \"{hook}\"\nsecret_file = \"{}\"\nevents = [\"proposal_waiting\", \"approval_given\", \"ended\"]\ntimeout = \"3s\"\n",
                        secret.display()
                    ),
                    format!(
                        "name = \"pagerduty\"\nkind = \"pagerduty\"\nurl = \"{pd}\"\nrouting_key_file = \"{}\"\nevents = [\"proposal_waiting\", \"approval_given\", \"ended\"]\n",
                        key.display()
                    ),
                    format!(
                        "name = \"stuck\"\nkind = \"webhook\"\nurl = \"{hang}\"\nevents = [\"proposal_waiting\"]\ntimeout = \"2s\"\n"
                    ),
                ]))
        },
        &[],
    )?;
    let ex = scenario::propose(&w.niledr, FAILOVER, &w.people.operator)?;
    let id = ex["id"].as_str().context("id")?.to_string();
    let digest = ex["plan_digest"].as_str().context("digest")?.to_string();

    // The chat hook fails twice, then takes the page: three attempts of one delivery id.
    let got = fake.wait("/hook", Duration::from_secs(30), |r| {
        r.iter().any(|x| x.status == 200)
    })?;
    let first = &got[0];
    assert!(
        got[..3]
            .iter()
            .all(|r| r.header("x-niledr-delivery") == first.header("x-niledr-delivery")),
        "{got:#?}"
    );
    assert_eq!(
        got[..3]
            .iter()
            .map(|r| (r.status, r.header("x-niledr-attempt").to_string()))
            .collect::<Vec<_>>(),
        [(503, "1".into()), (503, "2".into()), (200, "3".into())]
    );
    assert_eq!(
        first.header("idempotency-key"),
        first.header("x-niledr-delivery")
    );
    assert_eq!(first.header("x-niledr-event"), "proposal_waiting");
    let text = first.json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.contains(&format!("{FAILOVER} waits for approval")),
        "{text}"
    );
    assert!(text.contains("2 more approvers with the roles incident_commander and engineering_lead, not khalid (the requester)"), "{text}");
    assert!(
        text.contains(&format!("{CONSOLE}/#/executions/{id}")),
        "{text}"
    );
    assert!(first.json()["blocks"].is_array(), "{}", first.body);
    // The body is signed with the hook's secret over "<timestamp>.<body>".
    let ts = first.header("x-niledr-timestamp");
    assert_eq!(
        first.header("x-niledr-signature"),
        niledr_orchestrator::notify::payload::signature(HOOK_SECRET, ts, got[2].body.as_bytes())
    );

    // While the stuck receiver hangs, an approval commits and is announced to the others.
    post(
        &w,
        &format!("/api/v1/executions/{id}/approvals"),
        &w.people.ic,
        &json!({ "decision": "approve", "comment": "read the plan", "plan_digest": digest }),
    )?;
    let stuck = notifications(&w)?;
    let stuck = entries_of(&stuck, "stuck");
    assert_eq!(stuck.len(), 1, "{stuck:#?}");
    // It was being tried (and hanging) while the approval went through.
    assert!(
        stuck[0]["attempts"].as_u64() >= Some(1) && stuck[0]["state"] != "delivered",
        "{stuck:#?}"
    );
    let got = fake.wait("/hook", Duration::from_secs(30), |r| {
        r.iter()
            .any(|x| x.status == 200 && x.header("x-niledr-event") == "approval_given")
    })?;
    let approval = got
        .iter()
        .find(|x| x.header("x-niledr-event") == "approval_given")
        .context("approval")?;
    let text = approval.json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.contains("amira approved")
            && text.contains("1 more approver with the roles engineering_lead"),
        "{text}"
    );

    // Cancelled: PagerDuty gets trigger, trigger, resolve for one dedup key, in that order.
    post(
        &w,
        &format!("/api/v1/executions/{id}/cancel"),
        &w.people.operator,
        &json!({ "comment": "drill over" }),
    )?;
    let pd_got = fake.wait("/pd", Duration::from_secs(30), |r| {
        r.iter().filter(|x| x.status == 202).count() == 3
    })?;
    let accepted: Vec<Value> = pd_got
        .iter()
        .filter(|x| x.status == 202)
        .map(Received::json)
        .collect();
    assert_eq!(
        accepted
            .iter()
            .map(|v| v["event_action"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["trigger", "trigger", "resolve"]
    );
    for v in &accepted {
        assert_eq!(
            (v["dedup_key"].as_str(), v["routing_key"].as_str()),
            (Some(id.as_str()), Some(ROUTING_KEY)),
            "{v}"
        );
    }
    assert_eq!(accepted[0]["payload"]["severity"], "critical");
    assert!(
        accepted[0]["payload"]["summary"]
            .as_str()
            .unwrap_or("")
            .contains("2 more approvers"),
        "{}",
        accepted[0]
    );
    assert_eq!(
        pd_got[0].status, 503,
        "the first PagerDuty attempt was failed by the fake"
    );

    // The API shows the outbox with its delivery state, and no secret.
    let (status, raw) = get(&w, "/api/v1/notifications", &w.people.viewer)?;
    assert_eq!(status, 200, "{raw}");
    for secret in [URL_TOKEN, ROUTING_KEY, HOOK_SECRET] {
        assert!(!raw.contains(secret), "the API shows {secret}: {raw}");
    }
    let v: Value = serde_json::from_str(&raw)?;
    let hook_id = first.header("x-niledr-delivery").to_string();
    let e = v["notifications"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"] == hook_id.as_str()))
        .context("entry")?;
    assert_eq!(
        (
            e["state"].as_str(),
            e["attempts"].as_u64(),
            e["event"].as_str()
        ),
        (Some("delivered"), Some(3), Some("proposal_waiting")),
        "{e:#}"
    );
    assert!(
        v["receivers"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["url"] == fake.url(""))),
        "{v:#}"
    );
    let (status, _) = get(&w, "/api/v1/notifications?limit=0", &w.people.viewer)?;
    assert_eq!(status, 400);
    let (status, _) = get(&w, "/api/v1/notifications", "ndr_nobody_wrong")?;
    assert_eq!(status, 401);

    // The hanging receiver's page is given up after max_attempts, visibly.
    let mut stuck_id = String::new();
    wait_until(Instant::now() + Duration::from_secs(40), || {
        let v = notifications(&w)?;
        let e = entries_of(&v, "stuck");
        stuck_id = e
            .first()
            .and_then(|n| n["id"].as_str())
            .unwrap_or_default()
            .to_string();
        Ok(e.first().is_some_and(|n| {
            n["state"] == "failed"
                && n["attempts"] == 4
                && n["last_error"]
                    .as_str()
                    .is_some_and(|x| x.contains("no answer within"))
        }))
    })?;

    let store = w.topo.base_dir().join("state").join("niledr.redb");
    let log = w.niledr.log.clone();
    let World { niledr, topo, .. } = w;
    scenario::check_and_stop(niledr, &["notification given up"])?;
    let audit = audit_of(&store)?;
    assert_eq!(
        attempts_audited(&audit, &hook_id),
        [
            ("notification.failed".to_string(), 1),
            ("notification.failed".to_string(), 2),
            ("notification.delivered".to_string(), 3)
        ]
    );
    let given_up: Vec<(String, u64)> = attempts_audited(&audit, &stuck_id);
    assert_eq!(
        given_up.last(),
        Some(&("notification.given_up".to_string(), 4)),
        "{given_up:?}"
    );
    assert_eq!(
        given_up.len(),
        4,
        "three failures and the give-up: {given_up:?}"
    );
    let all = serde_json::to_string(&audit)? + &std::fs::read_to_string(&log)?;
    for secret in [URL_TOKEN, ROUTING_KEY, HOOK_SECRET] {
        assert!(!all.contains(secret), "audit or log shows {secret}");
    }
    drop(topo);
    Ok(())
}

#[test]
fn sigkill_between_send_and_mark_sends_no_duplicate_under_the_dedup_key() -> Result<()> {
    let fake = FakeReceiver::start(&[])?;
    let hook = fake.url("/hook");
    // A receiver the config drops before the restart: its message must not wait forever.
    let gone = format!(
        "name = \"gone\"\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"proposal_waiting\"]\n",
        fake.url("/hang")
    );
    let gone_section = format!("\n[[notifications.receivers]]\n{gone}");
    let w = scenario::start_with(
        |_, text| {
            Ok(text
                + &section(&[
                    format!(
                        "name = \"oncall-chat\"\nkind = \"webhook\"\nurl = \"{hook}\"\nevents = [\"proposal_waiting\", \"approval_given\", \"ended\"]\n"
                    ),
                    gone.clone(),
                ]))
        },
        &[],
    )?;
    let (config, listen, log) = (
        w.niledr.config.clone(),
        w.niledr.listen,
        w.niledr.log.clone(),
    );
    let mut w = scenario::restart(w, &[("NILEDR_FAILPOINTS", "notify_after_send:oncall-chat")])?;
    // The page can reach the receiver (and niledr die at its failpoint) before the proposal's
    // answer is written: the proposal is committed with its outbox entry either way, so its id
    // is read back after the restart when the answer was cut off.
    let proposed = scenario::propose(&w.niledr, FAILOVER, &w.people.operator)
        .ok()
        .and_then(|ex| ex["id"].as_str().map(str::to_string));
    // The receiver takes the page; niledr dies before it marks it delivered.
    let status = w.niledr.wait_exit(Duration::from_secs(30)).context(
        "niledr did not stop at its failpoint: build it with --features niledr-orchestrator/failpoints",
    )?;
    assert_eq!(status.signal(), Some(9), "killed by its failpoint");
    let before = fake.requests("/hook");
    assert_eq!(before.len(), 1, "{before:#?}");
    let delivery = before[0].header("x-niledr-delivery").to_string();

    // After the restart the entry is in doubt: sent again under the same dedup key.
    let text = std::fs::read_to_string(&config)?;
    assert!(text.contains(&gone_section), "{text}");
    std::fs::write(&config, text.replace(&gone_section, ""))?;
    w.niledr = Niledr::start(&config, listen, &log)?;
    let id = match proposed {
        Some(id) => id,
        None => {
            let (_, list) = w.niledr.get("/api/v1/executions")?;
            let all = list.as_array().context("executions")?;
            assert_eq!(
                all.len(),
                1,
                "one proposal, committed before the kill: {list:#}"
            );
            all[0]["id"].as_str().context("id")?.to_string()
        }
    };
    wait_until(Instant::now() + Duration::from_secs(30), || {
        let v = notifications(&w)?;
        let e = entries_of(&v, "oncall-chat");
        Ok(!e.is_empty() && e.iter().all(|n| n["state"] == "delivered"))
    })?;
    post(
        &w,
        &format!("/api/v1/executions/{id}/cancel"),
        &w.people.operator,
        &json!({ "comment": "test over" }),
    )?;
    wait_until(Instant::now() + Duration::from_secs(30), || {
        let v = notifications(&w)?;
        let e = entries_of(&v, "oncall-chat");
        Ok(e.len() == 2 && e.iter().all(|n| n["state"] == "delivered"))
    })?;
    let outbox = notifications(&w)?;
    let orphan = entries_of(&outbox, "gone");
    assert_eq!(orphan.len(), 1, "{outbox:#}");
    assert_eq!(orphan[0]["state"], "failed", "{outbox:#}");
    assert!(
        orphan[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer configured")),
        "{outbox:#}"
    );
    let ids: Vec<String> = entries_of(&outbox, "oncall-chat")
        .iter()
        .filter_map(|n| n["id"].as_str().map(str::to_string))
        .collect();

    // What a receiver honouring the dedup key keeps: one message per outbox entry, no more.
    let got = fake.requests("/hook");
    let mut by_key: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        by_key
            .entry(r.header("x-niledr-delivery").to_string())
            .or_default()
            .push(r);
    }
    let mut want = ids.clone();
    want.sort();
    assert_eq!(by_key.keys().cloned().collect::<Vec<_>>(), want, "{got:#?}");
    let resent = &by_key[&delivery];
    assert_eq!(
        resent
            .iter()
            .map(|r| r.header("x-niledr-attempt"))
            .collect::<Vec<_>>(),
        ["1", "2"],
        "the in-doubt entry was sent again, once"
    );
    assert_eq!(
        resent[0].json()["text"],
        resent[1].json()["text"],
        "the same message"
    );
    assert!(
        by_key
            .iter()
            .filter(|(k, _)| **k != delivery)
            .all(|(_, v)| v.len() == 1),
        "{by_key:#?}"
    );

    let store = w.topo.base_dir().join("state").join("niledr.redb");
    let World { niledr, topo, .. } = w;
    scenario::check_and_stop(niledr, &["is no longer configured"])?;
    let audit = audit_of(&store)?;
    let orphan_id = orphan[0]["id"].as_str().context("orphan id")?;
    assert_eq!(
        attempts_audited(&audit, orphan_id)
            .last()
            .map(|a| a.0.as_str()),
        Some("notification.given_up")
    );
    assert_eq!(
        attempts_audited(&audit, &delivery),
        [
            ("notification.in_doubt".to_string(), 1),
            ("notification.delivered".to_string(), 2)
        ]
    );
    drop(topo);
    Ok(())
}

#[test]
fn a_hanging_receiver_delays_no_failover_and_pagerduty_follows_the_incident() -> Result<()> {
    let fake = FakeReceiver::start(&[])?;
    let (pd, hang) = (fake.url("/pd"), fake.url("/hang"));
    let all = "[\"proposal_waiting\", \"approval_given\", \"step_failed\", \"needs_operator\", \"succeeded\", \"ended\"]";
    let w = scenario::start_with(
        |topo, text| {
            let key = secret_file(topo.base_dir(), "pd.key", ROUTING_KEY)?;
            Ok(text
                + &section(&[
                    format!(
                        "name = \"pagerduty\"\nkind = \"pagerduty\"\nurl = \"{pd}\"\nrouting_key_file = \"{}\"\nevents = {all}\n",
                        key.display()
                    ),
                    format!(
                        "name = \"stuck\"\nkind = \"webhook\"\nurl = \"{hang}\"\nevents = {all}\ntimeout = \"20s\"\n"
                    ),
                ]))
        },
        &[],
    )?;
    scenario::kill_primary_after_writes(&w, 100)?;
    let ex = scenario::propose(&w.niledr, FAILOVER, &w.people.operator)?;
    let id = ex["id"].as_str().context("id")?.to_string();
    let digest = ex["plan_digest"].as_str().context("digest")?.to_string();
    for token in [&w.people.ic, &w.people.lead] {
        let (status, body) = scenario::approve(&w.niledr, &id, token, &digest)?;
        assert_eq!(status, 200, "{body:#}");
    }
    let approved = Instant::now();
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(90),
        &["succeeded", "failed", "rolled_back", "needs_operator"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    println!(
        "FIGURE second approval → succeeded with a hanging receiver: {:?}",
        approved.elapsed()
    );

    // The whole failover ran while the stuck receiver still hung on its very first message.
    let v = notifications(&w)?;
    let stuck = entries_of(&v, "stuck");
    let oldest = stuck.last().context("stuck entries")?;
    assert_eq!(
        (oldest["event"].as_str(), oldest["attempts"].as_u64()),
        (Some("proposal_waiting"), Some(1)),
        "{stuck:#?}"
    );
    assert_eq!(oldest["state"], "in_flight", "{oldest:#}");
    assert!(
        stuck
            .iter()
            .filter(|n| n["event"] != "proposal_waiting")
            .all(|n| n["attempts"] == 0),
        "later ones wait their turn: {stuck:#?}"
    );

    // PagerDuty: one incident (dedup key = execution id) opened, updated, acknowledged, resolved.
    let got = fake.wait("/pd", Duration::from_secs(30), |r| {
        r.iter().any(|x| x.json()["event_action"] == "resolve")
    })?;
    let actions: Vec<String> = got
        .iter()
        .map(|r| r.json()["event_action"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        actions,
        ["trigger", "trigger", "acknowledge", "resolve"],
        "{got:#?}"
    );
    assert!(got.iter().all(|r| r.json()["dedup_key"] == id.as_str()));
    assert!(
        got[2].json().get("payload").is_none(),
        "acknowledge carries no payload"
    );
    let stuck_requests = fake.requests("/hang");
    assert_eq!(
        stuck_requests.len(),
        0,
        "the fake never answered (and so never recorded) the stuck hook"
    );
    scenario::finish(w, &["NEEDS AN OPERATOR"])
}

fn outbox_entry(id: &str) -> niledr_orchestrator::records::NotificationV1 {
    serde_json::from_value(json!({
        "v": 1, "id": id, "receiver": "pagerduty", "event": "proposal_waiting", "subject": "e1",
        "dedup_key": "e1", "action": "trigger", "severity": "critical", "summary": "s",
        "details": [], "link": null, "created_at": "t", "state": "pending", "attempts": 0,
        "next_attempt_at": "t", "last_error": null, "delivered_at": null, "in_flight_by": null
    }))
    .unwrap_or_else(|e| panic!("outbox entry: {e}"))
}

/// Cluster mode keeps the outbox in etcd: written in the execution's guarded transaction,
/// rewritten only by the leader (a deposed leader's mark applies nothing).
#[test]
fn the_cluster_outbox_lives_in_etcd_and_only_the_leader_writes_it() -> Result<()> {
    use niledr_orchestrator::records::ExecutionRecordV1;
    use niledr_orchestrator::store::{AuditEvent, NotLeader};

    let on = etcd_store::StoreOnEtcd::start(Duration::from_secs(3))?;
    let (store, etcd) = (&on.store, &on.etcd);
    on.lead()?;

    let exec: ExecutionRecordV1 = serde_json::from_value(json!({
        "v": 1, "id": "e1", "runbook": "r", "reason": "", "requester": "k", "created_at": "t",
        "state": "awaiting_approval", "machine": null, "plan_digest": "d", "plan": null,
        "preconditions": null, "approvals": [], "steps": [], "timeline": [],
        "needs_operator": null, "generation": null
    }))?;
    let transition = || AuditEvent {
        actor: "k",
        action: "execution.transition",
        detail: json!({ "to": "awaiting_approval" }),
    };
    store.save_execution_notifying(
        &exec,
        vec![transition()],
        &[outbox_entry("01-a"), outbox_entry("01-b")],
    )?;
    let keys: Vec<String> = etcd
        .get_prefix("/niledr/notifications/")?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        ["/niledr/notifications/01-a", "/niledr/notifications/01-b"]
    );
    let mut a = outbox_entry("01-a");
    a.state = "delivered".into();
    a.attempts = 1;
    store.save_notification(
        &a,
        vec![AuditEvent {
            actor: "niledr",
            action: "notification.delivered",
            detail: json!({ "id": "01-a" }),
        }],
    )?;
    let listed: Vec<(String, String)> = store
        .notifications()?
        .into_iter()
        .map(|n| (n.id, n.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("01-a".to_string(), "delivered".to_string()),
            ("01-b".to_string(), "pending".to_string())
        ]
    );
    store.delete_notifications(&["01-a".to_string()])?;
    assert_eq!(store.notifications()?.len(), 1);

    // Deposed: marking an entry applies nothing, not even its audit entry.
    on.depose()?;
    let audit_before = on.audit_len()?;
    let mut b = outbox_entry("01-b");
    b.state = "delivered".into();
    let e = store
        .save_notification(
            &b,
            vec![AuditEvent {
                actor: "niledr",
                action: "notification.delivered",
                detail: json!({ "id": "01-b" }),
            }],
        )
        .expect_err("a deposed leader marked a notification");
    assert!(e.downcast_ref::<NotLeader>().is_some(), "{e:#}");
    assert_eq!(store.notifications()?[0].state, "pending");
    assert_eq!(on.audit_len()?, audit_before);
    assert!(store.delete_notifications(&["01-b".to_string()]).is_err());
    assert_eq!(store.notifications()?.len(), 1);
    Ok(())
}
