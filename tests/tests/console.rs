//! The console in a real browser (headless Chromium through chromedriver) against the real
//! `niledr` binary and a real topology:
//! - two approvers in two browser sessions approve a switchover through the page, while a third
//!   session that proposed it watches the steps advance live over SSE without a reload;
//! - a viewer sees no action buttons and a forged POST with the viewer's session and a valid
//!   CSRF token is refused (403); a cookie-authenticated POST without the CSRF token is
//!   refused (403) and changes nothing; the page loads nothing from outside niledr and every
//!   console response carries the CSP;
//! - sessions: cookie attributes, sign-out, an edited users file ends a session, sign-in and
//!   sign-out audited without the token.
//!
//! Screenshots of every page go to `target/console-screenshots/`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use niledr_tests::browser::{Browser, Chromedriver, screenshot_dir};
use niledr_tests::http::{header_value, raw_request};
use niledr_tests::scenario::{self, World};
use serde_json::{Value, json};

const SWITCHOVER: &str = "switchover-khartoum-to-port-sudan";
const ALLOWED_ERRORS: &[&str] = &[];

fn driver(w: &World, name: &str) -> Result<Chromedriver> {
    Chromedriver::start(&w.topo.base_dir().join(format!("chromedriver-{name}.log")))
}

/// Open the console, sign in with `token` through the sign-in page, wait for the overview.
fn sign_in(b: &Browser, w: &World, token: &str, shot: Option<&str>) -> Result<()> {
    b.goto(&format!("{}/#/", w.niledr.url()))?;
    b.wait_for("#signin-token", Duration::from_secs(15))?;
    if let Some(name) = shot {
        b.screenshot(&screenshot_dir().join(name))?;
    }
    b.type_into("#signin-token", token)?;
    b.click("#signin-submit")?;
    b.wait_for("#me-name", Duration::from_secs(15))?;
    b.wait_for("#sites article", Duration::from_secs(15))?;
    Ok(())
}

fn screenshot(b: &Browser, name: &str) -> Result<()> {
    b.screenshot(&screenshot_dir().join(name))
}

/// `fetch` from inside the page (its cookie jar); returns `{status, body}`.
fn page_fetch(
    b: &Browser,
    method: &str,
    path: &str,
    body: Value,
    csrf: Option<&str>,
) -> Result<Value> {
    let script = format!(
        "const h = {{'content-type': 'application/json'}}; const csrf = {csrf};
         if (csrf) h['x-csrf-token'] = csrf;
         fetch({path}, {{method: {method}, headers: h, body: JSON.stringify({body}), credentials: 'same-origin'}})
           .then(async (r) => done({{status: r.status, body: await r.text()}}))
           .catch((e) => done({{status: -1, body: String(e)}}));",
        csrf = serde_json::to_string(&csrf)?,
        path = serde_json::to_string(path)?,
        method = serde_json::to_string(method)?,
    );
    b.eval_async(&script)
}

fn csrf_of(b: &Browser) -> Result<String> {
    let v = b.eval_async(
        "fetch('/api/v1/session', {credentials: 'same-origin'}).then((r) => r.json()).then((j) => done(j.csrf_token));",
    )?;
    v.as_str()
        .map(str::to_string)
        .context("no csrf_token from GET /api/v1/session")
}

#[test]
fn two_approvers_approve_in_the_browser_and_a_third_session_watches_it_run_live() -> Result<()> {
    let w = scenario::start()?;
    let cd = driver(&w, "approvals")?;
    let (watcher, ic, lead) = (cd.browser()?, cd.browser()?, cd.browser()?);

    // The operator proposes through the runbook page (plan preview, reason) and stays on the
    // execution page.
    sign_in(&watcher, &w, &w.people.operator, None)?;
    watcher.goto(&format!("{}/#/runbooks/{SWITCHOVER}", w.niledr.url()))?;
    watcher.wait_for("#plan li", Duration::from_secs(60))?;
    screenshot(&watcher, "runbook-plan.png")?;
    watcher.type_into("#propose-reason", "browser test: planned move")?;
    watcher.click("[data-action=propose]")?;
    watcher.wait_true(
        "the execution page opened",
        "return location.hash.startsWith('#/executions/') && !!document.querySelector('#steps');",
        Duration::from_secs(15),
    )?;
    let id = watcher
        .eval(
            "return decodeURIComponent(location.hash.slice('#/executions/'.length));",
            json!([]),
        )?
        .as_str()
        .context("execution id from the hash")?
        .to_string();
    // A marker on window and a record of every step state the page shows: a reload would
    // lose both.
    watcher.eval(
        "window.__marker = 'still-here'; window.__seen = new Set();
         const look = () => document.querySelectorAll('#steps tr[data-state]').forEach((tr) => window.__seen.add(tr.dataset.state));
         look(); new MutationObserver(look).observe(document.querySelector('#exec-live'), {subtree: true, childList: true});",
        json!([]),
    )?;
    assert!(
        !watcher.exists("[data-action=approve]")?,
        "an operator is not offered Approve"
    );

    // The incident commander and the engineering lead, each in their own browser.
    for (b, token, user, shot) in [
        (
            &ic,
            &w.people.ic,
            "amira",
            Some("execution-awaiting-approval.png"),
        ),
        (&lead, &w.people.lead, "omar", None),
    ] {
        sign_in(b, &w, token, None)?;
        assert!(
            b.text()?.contains("waiting for approval"),
            "the banner names the waiting execution:\n{}",
            b.text()?
        );
        b.goto(&format!("{}/#/executions/{id}", w.niledr.url()))?;
        b.wait_for("[data-action=approve]", Duration::from_secs(15))?;
        if let Some(name) = shot {
            screenshot(b, name)?;
        }
        b.type_into("#approve-comment", "read the plan in the console")?;
        b.click("[data-action=approve]")?;
        b.wait_true(
            &format!("{user}'s approval shown"),
            &format!("return document.querySelector('#approvals').innerText.includes('{user}');"),
            Duration::from_secs(15),
        )?;
    }

    // The watcher's page follows the run to the end on its own.
    watcher.wait_true(
        "the watcher sees the execution succeed",
        "return document.querySelector('#exec-state').dataset.state === 'succeeded';",
        Duration::from_secs(120),
    )?;
    let marker = watcher.eval("return window.__marker;", json!([]))?;
    assert_eq!(
        marker, "still-here",
        "the watcher's page was never reloaded"
    );
    let seen = watcher.eval("return [...window.__seen];", json!([]))?;
    let seen: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        seen.contains(&"pending") && seen.contains(&"succeeded"),
        "the watcher saw steps go from pending to succeeded live: {seen:?}"
    );
    let all_done = watcher.eval(
        "return [...document.querySelectorAll('#steps tr[data-state]')].every((tr) => ['succeeded', 'skipped'].includes(tr.dataset.state));",
        json!([]),
    )?;
    assert_eq!(all_done, true, "every step shown done");
    // And the server agrees.
    let (_, ex) = get(&w, &format!("/api/v1/executions/{id}"))?;
    assert!(ex.contains("\"state\":\"succeeded\""), "{ex}");
    screenshot(&watcher, "execution-succeeded.png")?;
    watcher.goto(&format!("{}/#/", w.niledr.url()))?;
    watcher.wait_for("#sites article", Duration::from_secs(15))?;
    screenshot(&watcher, "overview-after-switchover.png")?;
    drop((watcher, ic, lead));
    drop(cd);
    scenario::finish(w, ALLOWED_ERRORS)
}

#[test]
fn a_viewer_gets_no_buttons_forged_and_csrf_less_posts_are_refused_and_nothing_leaves_niledr()
-> Result<()> {
    let w = scenario::start()?;
    let ex = scenario::propose(&w.niledr, SWITCHOVER, &w.people.operator)?;
    let id = ex["id"].as_str().unwrap().to_string();
    let cd = driver(&w, "viewer")?;
    let viewer = cd.browser()?;
    sign_in(&viewer, &w, &w.people.viewer, Some("sign-in.png"))?;
    viewer.wait_for(
        &format!("#executions tr[data-id=\"{id}\"]"),
        Duration::from_secs(15),
    )?;
    screenshot(&viewer, "overview.png")?;
    assert!(
        viewer.text()?.contains("1 execution waiting for approval"),
        "{}",
        viewer.text()?
    );

    viewer.goto(&format!("{}/#/executions/{id}", w.niledr.url()))?;
    viewer.wait_for("#steps tr[data-step]", Duration::from_secs(15))?;
    let text = viewer.text()?;
    assert!(
        text.contains("2 more approvers (incident_commander + engineering_lead)"),
        "{text}"
    );
    assert!(
        !viewer.exists("[data-action]")?,
        "a viewer is offered no action:\n{text}"
    );
    screenshot(&viewer, "execution-as-viewer.png")?;

    // A forged approval with the viewer's own session and a valid CSRF token: the server
    // refuses it on the role.
    let csrf = csrf_of(&viewer)?;
    let digest = ex["plan_digest"].as_str().unwrap();
    let body = json!({ "decision": "approve", "plan_digest": digest, "comment": "forged" });
    let r = page_fetch(
        &viewer,
        "POST",
        &format!("/api/v1/executions/{id}/approvals"),
        body.clone(),
        Some(&csrf),
    )?;
    assert_eq!(r["status"], 403, "{r}");
    assert!(r["body"].as_str().unwrap().contains("role viewer"), "{r}");

    // Every other page, for the origin check and the screenshots.
    for (hash, wait, shot) in [
        ("#/runbooks", "#runbooks tr", "runbooks.png"),
        ("#/drills", "#drills tr", "drills.png"),
        ("#/audit", "#verify.up", "audit.png"),
    ] {
        viewer.goto(&format!("{}/{hash}", w.niledr.url()))?;
        viewer.wait_for(wait, Duration::from_secs(30))?;
        assert!(
            !viewer.exists("[data-action]")?,
            "no action for a viewer on {hash}"
        );
        screenshot(&viewer, shot)?;
    }
    let audit = viewer.text()?;
    assert!(audit.contains("chain verifies"), "{audit}");
    // Nothing but niledr: every resource the page loaded is same-origin, and the CSP says so.
    let foreign = viewer.eval(
        "return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => new URL(n).origin !== location.origin);",
        json!([]),
    )?;
    assert_eq!(foreign, json!([]), "requests outside niledr");
    let loaded = viewer.eval(
        "return performance.getEntriesByType('resource').length;",
        json!([]),
    )?;
    assert!(
        loaded.as_u64().unwrap() >= 5,
        "the check saw the page's requests: {loaded}"
    );
    for path in [
        "/",
        "/assets/app.js",
        "/assets/pages.js",
        "/assets/style.css",
    ] {
        let (status, head, _) = raw_request(w.niledr.listen, "GET", path, &[], "")?;
        assert_eq!(status, 200, "{path}");
        let csp = header_value(&head, "content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
            "{path}: {head}"
        );
    }

    // The API description viewer on the viewer's session: the live document's operations,
    // from niledr only (swagger-ui is vendored).
    viewer.goto(&format!("{}/api/v1/docs", w.niledr.url()))?;
    viewer.wait_for(".swagger-ui .opblock", Duration::from_secs(20))?;
    assert!(
        viewer.text()?.contains("/api/v1/executions"),
        "the operations are listed"
    );
    let foreign = viewer.eval(
        "return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => new URL(n).origin !== location.origin);",
        json!([]),
    )?;
    assert_eq!(foreign, json!([]), "the docs viewer reached outside niledr");
    screenshot(&viewer, "api-docs.png")?;
    // Without a session it says how to get one instead of a bare "Unauthorized".
    let anonymous = cd.browser()?;
    anonymous.goto(&format!("{}/api/v1/docs", w.niledr.url()))?;
    anonymous.wait_true(
        "the viewer explains the sign-in",
        "return document.body.innerText.includes('needs a principal');",
        Duration::from_secs(15),
    )?;
    assert!(anonymous.exists("a[href='/#/sign-in']")?);
    drop(anonymous);

    // An operator's session: a POST without the CSRF token is refused and changes nothing;
    // with it, the same POST works.
    let operator = cd.browser()?;
    sign_in(&operator, &w, &w.people.operator, None)?;
    let cancel = format!("/api/v1/executions/{id}/cancel");
    let r = page_fetch(
        &operator,
        "POST",
        &cancel,
        json!({ "comment": "no csrf" }),
        None,
    )?;
    assert_eq!(r["status"], 403, "{r}");
    assert!(r["body"].as_str().unwrap().contains("X-CSRF-Token"), "{r}");
    let r = page_fetch(
        &operator,
        "POST",
        &cancel,
        json!({ "comment": "wrong" }),
        Some("0000"),
    )?;
    assert_eq!(r["status"], 403, "{r}");
    let (_, still) = get(&w, &format!("/api/v1/executions/{id}"))?;
    assert!(
        still.contains("\"state\":\"awaiting_approval\""),
        "nothing applied: {still}"
    );
    let csrf = csrf_of(&operator)?;
    let r = page_fetch(
        &operator,
        "POST",
        &cancel,
        json!({ "comment": "with csrf" }),
        Some(&csrf),
    )?;
    assert_eq!(r["status"], 200, "{r}");
    drop((viewer, operator));
    drop(cd);
    scenario::finish(w, ALLOWED_ERRORS)
}

#[test]
fn sessions_are_http_only_cookies_that_end_on_sign_out_and_on_a_changed_users_file() -> Result<()> {
    let w = scenario::start()?;
    let addr = w.niledr.listen;
    let sign_in = |extra: &[(&str, &str)]| -> Result<(String, String, Value)> {
        let body = json!({ "token": w.people.ic }).to_string();
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(extra);
        let (status, head, body) = raw_request(addr, "POST", "/api/v1/session", &headers, &body)?;
        if status != 200 {
            bail!("sign-in: {status} {body}");
        }
        let set = header_value(&head, "set-cookie").context("Set-Cookie")?;
        let v: Value = serde_json::from_str(&body)?;
        Ok((set, v["csrf_token"].as_str().unwrap().to_string(), v))
    };
    let (set, csrf, view) = sign_in(&[])?;
    assert_eq!(view["principal"]["name"], "amira");
    assert_eq!(view["principal"]["role"], "approver");
    assert_eq!(view["principal"]["tags"], json!(["incident_commander"]));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure: {set}");
    let (secure, _, _) = sign_in(&[("X-Forwarded-Proto", "https")])?;
    assert!(secure.contains("; Secure"), "{secure}");
    let cookie = set.split(';').next().unwrap().to_string();
    let with_cookie = [("Cookie", cookie.as_str())];

    let (status, _, body) = raw_request(addr, "GET", "/api/v1/session", &with_cookie, "")?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&csrf), "{body}");
    // Sign-out is a mutation: it needs the CSRF token too.
    let (status, _, body) = raw_request(addr, "DELETE", "/api/v1/session", &with_cookie, "")?;
    assert_eq!(status, 403, "{body}");
    let mut with_csrf = with_cookie.to_vec();
    with_csrf.push(("X-CSRF-Token", csrf.as_str()));
    let (status, head, _) = raw_request(addr, "DELETE", "/api/v1/session", &with_csrf, "")?;
    assert_eq!(status, 204);
    assert!(
        header_value(&head, "set-cookie")
            .unwrap()
            .contains("Max-Age=0"),
        "{head}"
    );
    let (status, _, body) = raw_request(addr, "GET", "/api/v1/session", &with_cookie, "")?;
    assert_eq!(status, 401, "{body}");

    // A session does not outlive a change of the users file.
    let (set, _, _) = sign_in(&[])?;
    let cookie = set.split(';').next().unwrap().to_string();
    let (status, _, _) = raw_request(
        addr,
        "GET",
        "/api/v1/session",
        &[("Cookie", cookie.as_str())],
        "",
    )?;
    assert_eq!(status, 200);
    let users = w.topo.base_dir().join("users.toml");
    let out = niledr_tests::daemon::niledr_command(&[
        "user",
        "add",
        "--users-file",
        users.to_str().unwrap(),
        "hana",
        "--role",
        "viewer",
    ])?;
    assert!(out.status.success());
    let (status, _, body) = raw_request(
        addr,
        "GET",
        "/api/v1/session",
        &[("Cookie", cookie.as_str())],
        "",
    )?;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("users file changed"), "{body}");

    let token_secret = w.people.ic.rsplit('_').next().unwrap().to_string();
    let cookie_value = cookie[COOKIE_PREFIX.len()..].to_string();

    // Sign-in attempts pass the same rate limits as bearer tokens: wrong tokens for one user
    // from one address end in 429 with Retry-After.
    let wrong = json!({ "token": "ndr_salma_0000" }).to_string();
    let json_type = [("Content-Type", "application/json")];
    let mut throttled = None;
    for attempt in 1..=25 {
        let (status, head, body) =
            raw_request(addr, "POST", "/api/v1/session", &json_type, &wrong)?;
        match status {
            401 => continue,
            429 => {
                throttled = Some((attempt, header_value(&head, "retry-after"), body));
                break;
            }
            other => bail!("wrong sign-in {attempt}: {other} {body}"),
        }
    }
    let (attempt, retry_after, body) = throttled.context("no 429 after 25 wrong sign-ins")?;
    assert!(
        attempt > 1 && retry_after.is_some(),
        "{attempt} {retry_after:?} {body}"
    );

    // Sign-in and sign-out are audited, and neither the token nor the cookie reaches the
    // audit chain or the log.
    let log = std::fs::read_to_string(&w.niledr.log)?;
    assert!(
        !log.contains(&token_secret) && !log.contains(&cookie_value),
        "the log stays clean"
    );
    let store = w.topo.base_dir().join("state").join("niledr.redb");
    let World {
        niledr,
        agent,
        topo,
        ..
    } = w;
    scenario::check_and_stop(niledr, ALLOWED_ERRORS)?;
    let audit = niledr_orchestrator::store::Store::open(&store)?.audit_entries()?;
    drop(agent);
    drop(topo);
    let of = |action: &str| {
        audit
            .iter()
            .filter(|a| a.action == action && a.actor == "amira")
            .count()
    };
    assert_eq!(of("session.signed_in"), 3, "three sign-ins as amira");
    assert_eq!(of("session.signed_out"), 1, "one sign-out");
    for a in &audit {
        let text = a.detail.to_string();
        assert!(
            !text.contains(&token_secret) && !text.contains(&cookie_value),
            "{text}"
        );
    }
    Ok(())
}

const COOKIE_PREFIX: &str = "niledr_session=";

/// GET with the viewer's bearer token; (status, body).
fn get(w: &World, path: &str) -> Result<(u16, String)> {
    let auth = format!("Bearer {}", w.people.viewer);
    let (status, _, body) = raw_request(
        w.niledr.listen,
        "GET",
        path,
        &[("Authorization", auth.as_str())],
        "",
    )?;
    Ok((status, body))
}

#[test]
fn the_drills_page_charts_a_measured_run_against_its_objectives_and_shows_its_report() -> Result<()>
{
    let w = scenario::start()?;
    let drill = "planned-switchover";
    let (status, run) = w.niledr.post(
        &format!("/api/v1/drills/{drill}/runs"),
        Some(&w.people.operator),
        &json!({ "reason": "console test: a measured run to chart" }),
    )?;
    assert_eq!(status, 202, "{run:#}");
    let id = run["id"].as_str().unwrap().to_string();
    scenario::approve_drill_run(&w, drill, &id)?;
    let run = scenario::wait_run(&w, &id, true)?;
    assert_eq!(run["state"], "finished", "{run:#}");
    let rto_ms = run["report"]["rto"]["total_ms"]
        .as_u64()
        .context("measured RTO")?;

    let cd = driver(&w, "drills")?;
    let viewer = cd.browser()?;
    sign_in(&viewer, &w, &w.people.viewer, None)?;
    viewer.goto(&format!("{}/#/drills", w.niledr.url()))?;
    let chart = format!("#chart-rto-{drill}");
    viewer.wait_for(&format!("{chart} rect"), Duration::from_secs(30))?;
    // One bar, titled with the run's measured RTO, under the objective line (4 min).
    let title = viewer.eval(
        &format!(
            "return [...document.querySelectorAll('{chart} rect title')].map((t) => t.textContent);"
        ),
        json!([]),
    )?;
    let shown = format!("{:.1} s", rto_ms as f64 / 1000.0);
    assert_eq!(
        title,
        json!([format!(
            "{id}: {}",
            if rto_ms >= 1000 {
                shown
            } else {
                format!("{rto_ms} ms")
            }
        )])
    );
    let text = viewer.eval(
        &format!("return document.querySelector('{chart}').textContent;"),
        json!([]),
    )?;
    assert!(
        text.as_str().unwrap().contains("objective 240.0 s"),
        "{text}"
    );
    assert!(
        viewer.exists(&format!("#chart-rpo-{drill}-postgres rect"))?,
        "an RPO bar for postgres"
    );
    viewer.eval(
        "document.querySelector('#charts').scrollIntoView();",
        json!([]),
    )?;
    screenshot(&viewer, "drills-charts.png")?;

    viewer.goto(&format!("{}/#/drills/runs/{id}", w.niledr.url()))?;
    viewer.wait_true(
        "the Markdown report is shown",
        "const r = document.querySelector('#drill-report'); return !!r && r.textContent.includes('RTO');",
        Duration::from_secs(15),
    )?;
    let (_, md) = get(&w, &format!("/api/v1/drill-runs/{id}?format=md"))?;
    let shown = viewer.eval(
        "return document.querySelector('#drill-report').textContent;",
        json!([]),
    )?;
    assert_eq!(shown.as_str().unwrap(), md, "the report as text, unchanged");
    screenshot(&viewer, "drill-run-report.png")?;
    drop(viewer);
    drop(cd);
    scenario::finish(w, ALLOWED_ERRORS)
}

/// A test runbook `name`: two people (or break-glass) approve, then `steps` (TOML).
fn test_runbook(name: &str, description: &str, steps: &str) -> String {
    format!(
        r#"name = "{name}"
description = "{description}"
mode = "planned"

[approval]
required = 2
roles = ["incident_commander", "engineering_lead"]
break_glass = true
{steps}"#
    )
}

/// Three manual steps with break-glass allowed: every control of the execution page has
/// something to act on, and nothing touches the servers.
const CONTROLS: &str = "console-controls";
const CONTROLS_STEPS: &str = r#"
[[steps]]
id = "check-one"
kind = "manual.confirm"
item = "first check done by hand"

[[steps]]
id = "check-two"
kind = "manual.confirm"
item = "second check done by hand"

[[steps]]
id = "check-three"
kind = "manual.confirm"
item = "third check done by hand"
"#;

/// A harmless step declared irreversible, then one that cannot succeed while Khartoum's
/// PostgreSQL is up: past the point of no return the failure stops for an operator, whose way
/// on is a retry.
const RETRY: &str = "console-retry";
const RETRY_STEPS: &str = r#"
[[steps]]
id = "ttl-db"
kind = "dns.set_ttl"
name = "db.nilecare.sd."
ttl = 30
irreversible = true
reason = "test: from here on a failure stops for an operator"

[[steps]]
id = "hold"
kind = "wait"
until = { service_down = "khartoum-postgres" }
timeout = "1s"
"#;

/// Every audit entry about execution `id` as (actor, kind, detail).
fn audit_of(w: &World, id: &str) -> Result<Vec<(String, String, Value)>> {
    let audit = w
        .niledr
        .get_json_as(
            &format!("/api/v1/audit?execution={id}&limit=200"),
            Some(&w.people.viewer),
        )?
        .1;
    Ok(audit["entries"]
        .as_array()
        .context("audit entries")?
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default().to_string(),
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["detail"].clone(),
            )
        })
        .collect())
}

/// Wait until the execution page shows `state` (it follows SSE; no reload). On a timeout the
/// error carries what the server holds and the daemon's last log lines.
fn wait_state(b: &Browser, w: &World, id: &str, state: &str) -> Result<()> {
    b.wait_true(
        &format!("the page shows {state}"),
        &format!("return document.querySelector('#exec-state').dataset.state === '{state}';"),
        Duration::from_secs(20),
    )
    .with_context(|| {
        let record = w
            .niledr
            .get_json_as(&format!("/api/v1/executions/{id}"), Some(&w.people.viewer))
            .map(|(_, v)| format!("{:#}", v["timeline"]))
            .unwrap_or_else(|e| e.to_string());
        let log = std::fs::read_to_string(&w.niledr.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!(
            "the server's timeline: {record}\nlog tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })
}

/// Wait until the page offers the confirm of `step`, then confirm it with a comment.
fn confirm_step(b: &Browser, step: &str) -> Result<()> {
    b.wait_for(
        &format!("[data-action=confirm][data-step='{step}']"),
        Duration::from_secs(20),
    )?;
    b.type_into(
        "#confirm-comment",
        &format!("{step}: verified in the browser"),
    )?;
    b.click("[data-action=confirm]")
}

/// Break-glass, confirm, pause, resume and cancel through the execution page's buttons, as
/// the people allowed to: each is checked against the server's record and audit.
#[test]
fn break_glass_confirm_pause_resume_and_cancel_from_the_execution_page() -> Result<()> {
    let w = scenario::start_with(
        |topo, text| {
            let dir = topo.base_dir().join("runbooks");
            std::fs::write(
                dir.join("console-controls.toml"),
                test_runbook(
                    CONTROLS,
                    "Browser test: three manual checks.",
                    CONTROLS_STEPS,
                ),
            )?;
            std::fs::write(
                dir.join("console-retry.toml"),
                test_runbook(
                    RETRY,
                    "Browser test: a person retries a failed step.",
                    RETRY_STEPS,
                ),
            )?;
            Ok(text)
        },
        &[],
    )?;
    let (status, e) = w.niledr.post(
        "/api/v1/executions",
        Some(&w.people.operator),
        &json!({ "runbook": CONTROLS, "reason": "browser test of the controls" }),
    )?;
    assert_eq!(status, 201, "{e:#}");
    let id = e["id"].as_str().context("execution id")?.to_string();
    let cd = driver(&w, "controls")?;
    let (ic, operator) = (cd.browser()?, cd.browser()?);

    // One incident commander approves alone, with a written reason.
    sign_in(&ic, &w, &w.people.ic, None)?;
    ic.goto(&format!("{}/#/executions/{id}", w.niledr.url()))?;
    ic.wait_for("[data-action=break-glass]", Duration::from_secs(15))?;
    ic.type_into(
        "#break-glass-reason",
        "engineering lead unreachable at 03:00",
    )?;
    screenshot(&ic, "execution-break-glass.png")?;
    ic.click("[data-action=break-glass]")?;
    wait_state(&ic, &w, &id, "running")?;
    // The approval's answer and the SSE events race; the view with the higher revision wins,
    // so an older one (here: forged from the current) never replaces what the page shows.
    let kept = ic.eval(
        "const cur = App.executions.get(arguments[0]);
         return [cur.revision, App.put({...cur, state: 'approved', revision: cur.revision - 1}).state];",
        json!([id]),
    )?;
    assert!(kept[0].as_u64().is_some_and(|r| r > 1), "{kept}");
    assert_eq!(kept[1], "running", "an older view replaced a newer one");

    // The operator confirms by hand, pauses, resumes and finally cancels.
    sign_in(&operator, &w, &w.people.operator, None)?;
    operator.goto(&format!("{}/#/executions/{id}", w.niledr.url()))?;
    confirm_step(&operator, "check-one")?;
    operator.wait_for(
        "[data-action=confirm][data-step='check-two']",
        Duration::from_secs(20),
    )?;
    operator.type_into("#control-comment", "hold after this check")?;
    operator.click("[data-action=pause]")?;
    // Pausing takes effect once the current step ends: confirming it leaves the run paused.
    confirm_step(&operator, "check-two")?;
    wait_state(&operator, &w, &id, "paused")?;
    screenshot(&operator, "execution-paused.png")?;
    operator.click("[data-action=resume]")?;
    wait_state(&operator, &w, &id, "running")?;
    operator.wait_for(
        "[data-action=confirm][data-step='check-three']",
        Duration::from_secs(20),
    )?;
    operator.type_into("#control-comment", "stop here: test done")?;
    operator.click("[data-action=cancel]")?;
    operator.wait_true(
        "the page shows the run ended by the cancel",
        "return ['cancelled', 'rolled_back'].includes(document.querySelector('#exec-state').dataset.state);",
        Duration::from_secs(30),
    )?;
    screenshot(&operator, "execution-cancelled.png")?;

    // Retry: an execution stopped past its point of no return offers it to the operator.
    let (status, e) = w.niledr.post(
        "/api/v1/executions",
        Some(&w.people.operator),
        &json!({ "runbook": RETRY, "reason": "browser test of retry" }),
    )?;
    assert_eq!(status, 201, "{e:#}");
    let retry_id = e["id"].as_str().context("execution id")?.to_string();
    let (status, a) = w.niledr.post(
        &format!("/api/v1/executions/{retry_id}/approvals"),
        Some(&w.people.ic),
        &json!({ "decision": "approve", "plan_digest": e["plan_digest"],
                 "break_glass_reason": "browser test" }),
    )?;
    assert_eq!(status, 200, "{a:#}");
    operator.goto(&format!("{}/#/executions/{retry_id}", w.niledr.url()))?;
    wait_state(&operator, &w, &retry_id, "needs_operator")?;
    operator.wait_for("[data-action=retry]", Duration::from_secs(15))?;
    operator.type_into("#retry-comment", "checked: try the step again")?;
    screenshot(&operator, "execution-needs-operator.png")?;
    operator.click("[data-action=retry]")?;
    operator.wait_true(
        "the retried step ran a second time",
        "return document.querySelector('#steps').innerText.includes('×2');",
        Duration::from_secs(30),
    )?;
    wait_state(&operator, &w, &retry_id, "needs_operator")?;

    // The record agrees with what the pages showed, and the audit names who did what.
    let ex = w
        .niledr
        .get_json_as(&format!("/api/v1/executions/{id}"), Some(&w.people.viewer))?
        .1;
    assert_eq!(ex["approvals"][0]["user"], "amira", "{ex:#}");
    assert_eq!(
        ex["approvals"][0]["break_glass_reason"], "engineering lead unreachable at 03:00",
        "{ex:#}"
    );
    let states: Vec<&str> = ex["steps"]
        .as_array()
        .context("steps")?
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(states[..2], ["succeeded", "succeeded"], "{ex:#}");
    assert_ne!(
        states[2], "succeeded",
        "check-three was never confirmed: {ex:#}"
    );
    let done = audit_of(&w, &id)?;
    for want in [
        ("amira", "approval.break_glass"),
        ("khalid", "execution.pause"),
        ("khalid", "execution.resume"),
        ("khalid", "execution.cancel"),
    ] {
        assert!(
            done.iter()
                .any(|(a, k, _)| (a.as_str(), k.as_str()) == want),
            "{want:?} in the audit: {done:?}"
        );
    }
    let retried = audit_of(&w, &retry_id)?;
    assert!(
        retried
            .iter()
            .any(|(a, k, d)| a == "khalid" && k == "execution.retry" && d["step"] == "hold"),
        "khalid's retry of hold in the audit: {retried:?}"
    );
    drop((ic, operator));
    drop(cd);
    scenario::finish(w, ALLOWED_ERRORS)
}
