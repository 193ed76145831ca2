//! API security end to end, against the real `niledr` binary and a real topology:
//!
//! - Secrets never leave the daemon: `S3cret` goes into the application's env file and the
//!   PgBouncer ini; a plan, a proposal and a switchover (both connection-string swaps) run;
//!   then every GET route the router is built from (`niledr_web::routes()`, with real path
//!   parameters from the data) is called as each role, and every body, the SSE stream, the
//!   audit chain as stored and the daemon's log are searched for it: zero hits. Each read
//!   needs a principal (401 anonymous) unless its route is public.
//! - `GET /api/v1/audit` and `niledr audit list` filter by actor, execution and time and page
//!   by seq over a daemon's real executions.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use niledr_tests::cli_helpers::niledr_cli;
use niledr_tests::scenario::{self, World};
use niledr_web::access::Access;
use serde_json::{Value, json};

const SECRET: &str = "S3cret";
const SWITCHOVER: &str = "switchover-khartoum-to-port-sudan";

/// Put the secret where operators keep passwords: the env file's URL (and the template the
/// swap writes) and the PgBouncer `[databases]` entry.
fn with_secrets(w: &niledr_tests::Topology, config: String) -> Result<String> {
    let env = w.base_dir().join("app").join("database.env");
    let text = std::fs::read_to_string(&env)?;
    let with = text.replace(
        "postgres://niledr@",
        &format!("postgres://niledr:{SECRET}@"),
    );
    assert_ne!(text, with, "the env file holds a URL: {text}");
    std::fs::write(&env, format!("{with}PGPASSWORD={SECRET}\n"))?;
    let ini = w.pgbouncer().ini_file().to_path_buf();
    let text = std::fs::read_to_string(&ini)?;
    let entry = text
        .lines()
        .find(|l| l.contains("dbname=postgres") && l.contains(" = host="))
        .context("the [databases] entry")?
        .to_string();
    std::fs::write(
        &ini,
        text.replace(&entry, &format!("{entry} password={SECRET}")),
    )?;
    let edited = config.replace(
        "postgres://niledr@",
        &format!("postgres://niledr:{SECRET}@"),
    );
    assert_ne!(config, edited, "the config's env template");
    Ok(edited)
}

/// One GET as `token`: (status, body). SSE answers are read for `sse` then cut.
fn get(at: SocketAddr, path: &str, token: Option<&str>, sse: Duration) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(at)?;
    s.set_read_timeout(Some(if path.starts_with("/api/v1/events") {
        sse
    } else {
        Duration::from_secs(60)
    }))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {at}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET {path}: no status line in {text:?}"))?;
    Ok((status, text))
}

/// The SSE stream as a viewer sees it, collected on a thread while the test runs.
fn record_events(at: SocketAddr, token: &str) -> Result<Arc<Mutex<String>>> {
    let mut s = TcpStream::connect(at)?;
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: {at}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
    )?;
    let seen = Arc::new(Mutex::new(String::new()));
    let out = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                return;
            }
            out.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Ok(seen)
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x[key].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every concrete path of a routed path, parameters filled from the daemon's own data. A
/// parameter this does not know fails the test, naming the route.
fn expand(w: &World, route: &str) -> Result<Vec<String>> {
    let list = |p: &str, key: &str| -> Result<Vec<String>> { Ok(ids(&w.niledr.get(p)?.1, key)) };
    let fill = |values: Vec<String>, param: &str| -> Vec<String> {
        values.iter().map(|v| route.replace(param, v)).collect()
    };
    Ok(match route {
        r if !r.contains('{') => match r {
            "/api/v1/audit" => vec!["/api/v1/audit?limit=1000".into()],
            "/api/v1/status-changes" => vec!["/api/v1/status-changes?limit=1000".into()],
            _ => vec![r.to_string()],
        },
        "/api/v1/sites/{site}" => fill(list("/api/v1/sites", "id")?, "{site}"),
        "/api/v1/services/{id}/history" => fill(list("/api/v1/services", "id")?, "{id}"),
        "/api/v1/sites/{site}/health" => fill(list("/api/v1/sites", "id")?, "{site}"),
        "/api/v1/services/{id}/health" => fill(list("/api/v1/services", "id")?, "{id}"),
        "/api/v1/cluster/vouch/{service}" => fill(list("/api/v1/services", "id")?, "{service}"),
        "/api/v1/executions/{id}" => fill(list("/api/v1/executions", "id")?, "{id}"),
        "/api/v1/drills/{name}" => fill(list("/api/v1/drills", "name")?, "{name}"),
        "/api/v1/runbooks/{name}/plan" => fill(list("/api/v1/runbooks", "name")?, "{name}"),
        "/api/v1/drill-runs/{id}" => {
            let mut runs = list("/api/v1/drill-runs", "id")?;
            if runs.is_empty() {
                runs.push("no-such-run".into()); // the 404's body is searched too
            }
            let mut out = fill(runs.clone(), "{id}");
            out.extend(
                runs.iter()
                    .map(|r| format!("/api/v1/drill-runs/{r}?format=md")),
            );
            out
        }
        "/assets/{*path}" => ["app.js", "pages.js", "index.html", "style.css"]
            .iter()
            .map(|a| format!("/assets/{a}"))
            .collect(),
        other => bail!("no path parameters known for route {other}: teach expand() its values"),
    })
}

#[test]
fn no_secret_leaves_the_daemon_and_every_read_needs_a_principal() -> Result<()> {
    let w = scenario::start_with(with_secrets, &[])?;
    let at = w.niledr.listen;
    let p = w.people.clone();
    let events = record_events(at, &p.viewer)?;

    // The plan shows where connections go, without the password.
    let (status, plan) = w
        .niledr
        .get(&format!("/api/v1/runbooks/{SWITCHOVER}/plan"))?;
    assert_eq!(status, 200, "{plan:#}");
    let shown = plan.to_string();
    assert!(!shown.contains(SECRET), "{plan:#}");
    let before: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "connstr.swap")
        .flat_map(|s| s["changes"].as_array().unwrap().iter())
        .filter_map(|c| c["before"].as_str())
        .collect();
    assert_eq!(
        before.len(),
        2,
        "both swaps show what they replace: {plan:#}"
    );
    assert!(
        before
            .iter()
            .any(|b| b.contains("postgres://niledr:***@") && b.contains("PGPASSWORD=***"))
            && before
                .iter()
                .any(|b| b.contains("dbname=postgres") && b.contains("password=***")),
        "host, port and database stay, the password is masked: {before:?}"
    );

    // A proposal, two approvals, the switchover with both swaps.
    let id = scenario::propose_and_approve(&w, SWITCHOVER)?;
    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(120),
        &["succeeded", "failed", "needs_operator", "rolled_back"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let swap = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "swap-pgbouncer")
        .cloned()
        .context("swap-pgbouncer step")?;
    assert!(
        swap["detail"].as_str().unwrap().contains("password=***"),
        "the outcome says what was there, masked: {swap:#}"
    );
    // The secret really was in the world (so the searches below could have found it).
    let ini = std::fs::read_to_string(w.topo.pgbouncer().ini_file())?;
    let env = std::fs::read_to_string(w.topo.base_dir().join("app/database.env"))?;
    assert!(
        env.contains(SECRET),
        "the swap wrote the template with its password: {env}"
    );
    assert!(
        std::fs::read_dir(w.topo.pgbouncer().ini_file().parent().unwrap())?
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .any(|t| t.contains(SECRET))
            || ini.contains(SECRET),
        "the previous ini is kept with its password"
    );

    // Every GET route, as every role.
    let callers: [(&str, Option<&str>); 4] = [
        ("anonymous", None),
        ("viewer", Some(&p.viewer)),
        ("operator", Some(&p.operator)),
        ("approver", Some(&p.ic)),
    ];
    let mut hits = Vec::new();
    let mut wrong = Vec::new();
    let mut called = BTreeSet::new();
    for route in niledr_web::routes().iter().filter(|r| r.method == "GET") {
        for path in expand(&w, route.path)? {
            for (who, token) in callers {
                let (status, body) = get(at, &path, token, Duration::from_secs(2))?;
                called.insert(route.path);
                if body.contains(SECRET) {
                    hits.push(format!("GET {path} as {who}"));
                }
                // `[api] metrics_public` is left at its default (true).
                let public = matches!(route.access, Access::Public | Access::Metrics);
                let refused = status == 401 || status == 403;
                if token.is_none() && !public && status != 401 {
                    wrong.push(format!("GET {path} anonymous: {status}, want 401"));
                }
                // The console's session route answers only its cookie (401 to a token).
                let cookie_only = route.path == "/api/v1/session";
                if (token.is_some() || public) && refused && !cookie_only {
                    wrong.push(format!("GET {path} as {who}: {status} {body}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(hits.is_empty(), "{SECRET} in: {}", hits.join("\n"));
    assert!(called.len() >= 20, "every GET route was called: {called:?}");

    // The audit pages hold the execution's entries, none with the secret.
    let (_, audit) = w
        .niledr
        .get(&format!("/api/v1/audit?execution={id}&limit=1000"))?;
    assert!(
        audit["entries"].as_array().unwrap().len() >= 10,
        "{audit:#}"
    );
    let seen = events.lock().unwrap().clone();
    assert!(
        seen.contains("event: status"),
        "the stream carried the switchover: {seen}"
    );
    assert!(!seen.contains(SECRET), "SSE: {seen}");

    let (store, log) = (
        w.topo.base_dir().join("state/niledr.redb"),
        w.niledr.log.clone(),
    );
    let World {
        niledr,
        topo,
        agent,
        ..
    } = w;
    scenario::check_and_stop(niledr, &[])?;
    let chain = niledr_orchestrator::store::Store::open(&store)?.audit_entries()?;
    assert!(chain.len() >= 20, "{} audit entries", chain.len());
    let stored = serde_json::to_string(&chain)?;
    assert!(
        !stored.contains(SECRET),
        "the stored audit chain holds the secret"
    );
    assert!(
        stored.contains("password=***"),
        "the swap's audit outcome, masked"
    );
    let log = std::fs::read_to_string(&log)?;
    assert!(!log.contains(SECRET), "the daemon log holds the secret");
    drop((agent, topo));
    Ok(())
}

#[test]
fn the_audit_api_filters_and_pages_real_executions() -> Result<()> {
    let w = scenario::start()?;
    let p = w.people.clone();
    // Two executions: one rejected by the lead, one approved once then cancelled.
    let first = scenario::propose(&w.niledr, SWITCHOVER, &p.operator)?;
    let first = first["id"].as_str().unwrap().to_string();
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{first}/approvals"),
        Some(&p.lead),
        &json!({ "decision": "reject", "comment": "not now" }),
    )?;
    assert_eq!(status, 200, "{body:#}");
    let second = scenario::propose(&w.niledr, SWITCHOVER, &p.operator)?;
    let digest = second["plan_digest"].as_str().unwrap().to_string();
    let second = second["id"].as_str().unwrap().to_string();
    let (status, body) = scenario::approve(&w.niledr, &second, &p.ic, &digest)?;
    assert_eq!(status, 200, "{body:#}");
    let (status, body) = w.niledr.post(
        &format!("/api/v1/executions/{second}/cancel"),
        Some(&p.operator),
        &json!({ "comment": "changed our mind" }),
    )?;
    assert_eq!(status, 200, "{body:#}");

    let page = |q: &str| -> Result<Value> {
        let (status, v) = w.niledr.get(&format!("/api/v1/audit?{q}"))?;
        assert_eq!(status, 200, "{q}: {v:#}");
        Ok(v)
    };
    let entries = |v: &Value| v["entries"].as_array().unwrap().clone();

    // By execution: only that execution's entries, and its approval among them.
    let mine = entries(&page(&format!("execution={second}&limit=1000"))?);
    assert!(mine.len() >= 3, "{mine:#?}");
    assert!(
        mine.iter().all(|e| e["execution"] == second.as_str()),
        "{mine:#?}"
    );
    assert!(
        mine.iter()
            .any(|e| e["kind"] == "approval.approved" && e["actor"] == "amira")
    );
    let other = entries(&page(&format!("execution={first}&limit=1000"))?);
    assert!(
        other
            .iter()
            .any(|e| e["kind"] == "approval.rejected" && e["actor"] == "omar")
    );
    assert!(other.iter().all(|e| e["execution"] == first.as_str()));

    // By actor.
    let omar = entries(&page("actor=omar&limit=1000")?);
    assert!(
        !omar.is_empty() && omar.iter().all(|e| e["actor"] == "omar"),
        "{omar:#?}"
    );

    // Paging by seq walks the whole chain exactly once, in order.
    let all = entries(&page("limit=1000")?);
    let mut walked = Vec::new();
    let mut after = 0;
    loop {
        let v = page(&format!("after={after}&limit=3"))?;
        let got = entries(&v);
        assert!(got.len() <= 3);
        walked.extend(got.iter().map(|e| e["seq"].as_u64().unwrap()));
        match v["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    let every: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(walked, every);
    assert!(
        every.windows(2).all(|w| w[0] < w[1]) && every.len() >= 8,
        "{every:?}"
    );

    // By time: entries from the second proposal on are exactly those at or after its time.
    let t = mine[0]["at"].as_str().unwrap().to_string();
    let since = entries(&page(&format!("since={t}&limit=1000"))?);
    let want: Vec<&Value> = all
        .iter()
        .filter(|e| e["at"].as_str().unwrap() >= t.as_str())
        .collect();
    assert_eq!(since.len(), want.len());
    let until = entries(&page(&format!("until={t}&limit=1000"))?);
    assert_eq!(until.len() + since.len(), all.len());

    // Bad parameters are 400 with a message; reads need a principal.
    for q in [
        "since=yesterday",
        "after=-1",
        "limit=0",
        "chain=local",
        "colour=red",
    ] {
        let (status, v) = w.niledr.get(&format!("/api/v1/audit?{q}"))?;
        assert_eq!(status, 400, "{q}: {v:#}");
        assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v:#}");
    }
    let r = w.niledr.get_as("/api/v1/audit", None)?;
    assert_eq!(r.status, 401, "{}", r.body);

    // The CLI: a table with the next page's --after, and the same entries as JSON.
    let url = w.niledr.url();
    let run = niledr_cli(
        &url,
        Some(&p.viewer),
        &["audit", "list", "--execution", &second],
    )?
    .ok()?;
    assert!(run.stdout.lines().next().unwrap().contains("KIND"), "{run}");
    assert!(
        run.stdout.contains("approval.approved") && run.stdout.contains("end of chain"),
        "{run}"
    );
    let run = niledr_cli(&url, Some(&p.viewer), &["audit", "list", "--limit", "2"])?.ok()?;
    assert!(run.stdout.contains("more: --after 2"), "{run}");
    let json = niledr_cli(
        &url,
        Some(&p.viewer),
        &["audit", "list", "--actor", "omar", "--json"],
    )?
    .ok()?
    .json()?;
    assert_eq!(
        json["entries"].as_array().unwrap().len(),
        omar.len(),
        "{json:#}"
    );
    let bad = niledr_cli(&url, Some(&p.viewer), &["audit", "list", "--since", "soon"])?;
    assert_eq!(bad.code, Some(1), "{bad}");
    assert!(
        bad.stderr.contains("400") && bad.stderr.contains("since"),
        "{bad}"
    );
    scenario::finish(w, &[])
}
