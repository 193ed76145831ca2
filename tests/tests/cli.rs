//! The `niledr` CLI against a real daemon and a real topology: a whole execution lifecycle
//! driven only through the binary (propose, approve ×2, pause, confirm, resume, show, list,
//! reject, cancel), and the errors a person sees when something is refused or unreachable.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use niledr_tests::cli_helpers::{CliRun, niledr_cli, niledr_command_env};
use niledr_tests::daemon::free_listen_addr;
use niledr_tests::scenario::{self, World};

const REVERT: &str = "dns-revert-to-khartoum";
const MANUAL_STEP: &str = "confirm-khartoum-primary";

fn start() -> Result<World> {
    scenario::start()
}

fn finish(w: World) -> Result<()> {
    scenario::finish(w, &[])
}

/// The CLI suite's vocabulary on top of the shared world.
trait Cli {
    fn cli(&self, token: Option<&str>, args: &[&str]) -> Result<CliRun>;
    fn token_file(&self, name: &str, token: &str) -> Result<PathBuf>;
    fn propose(&self, runbook: &str, reason: &str) -> Result<(String, String)>;
    fn execution_json(&self, id: &str) -> Result<serde_json::Value>;
}

impl Cli for World {
    /// `niledr ARGS` as the holder of `token`.
    fn cli(&self, token: Option<&str>, args: &[&str]) -> Result<CliRun> {
        niledr_cli(&self.niledr.url(), token, args)
    }

    /// A token file only its owner can read, as an engineer keeps it.
    fn token_file(&self, name: &str, token: &str) -> Result<PathBuf> {
        let p = self.topo.base_dir().join(format!("{name}.token"));
        std::fs::write(&p, format!("{token}\n"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        Ok(p)
    }

    /// `niledr propose RUNBOOK` as the operator: (id, digest) from its output.
    fn propose(&self, runbook: &str, reason: &str) -> Result<(String, String)> {
        let r = self
            .cli(
                Some(&self.people.operator),
                &["propose", runbook, "--reason", reason],
            )?
            .ok()?;
        assert!(r.stdout.contains("awaiting_approval"), "{r}");
        let id = r.field("id").unwrap_or_else(|| panic!("an id line: {r}"));
        let digest = r
            .field("digest")
            .unwrap_or_else(|| panic!("a digest line: {r}"));
        assert_eq!(digest.len(), 64, "a sha256 digest: {r}");
        Ok((id, digest))
    }

    fn execution_json(&self, id: &str) -> Result<serde_json::Value> {
        self.cli(Some(&self.people.viewer), &["execution", id, "--json"])?
            .ok()?
            .json()
    }
}

#[test]
fn a_whole_lifecycle_through_the_cli() -> Result<()> {
    let w = start()?;
    let p = &w.people;

    // What is there.
    let r = w.cli(Some(&w.people.viewer), &["runbooks"])?.ok()?;
    for name in [
        REVERT,
        "failover-khartoum-to-port-sudan",
        "switchover-khartoum-to-port-sudan",
        "failback-port-sudan-to-khartoum",
        "redis-failover-khartoum-to-port-sudan",
        "activate-dr-cold",
    ] {
        assert!(r.stdout.contains(name), "{name} listed: {r}");
    }
    assert!(
        r.stdout.contains("incident_commander + engineering_lead"),
        "{r}"
    );
    let r = w.cli(Some(&w.people.viewer), &["executions"])?.ok()?;
    assert_eq!(r.stdout.trim(), "no executions", "{r}");

    // Propose (operator), then the two approvals: the IC with a token file and the digest
    // she read, the engineering lead from the environment without --digest.
    let (id, digest) = w.propose(REVERT, "khartoum is healthy again")?;
    let r = w.cli(Some(&w.people.viewer), &["execution", &id])?.ok()?;
    assert!(r.stdout.contains("state:     awaiting_approval"), "{r}");
    assert!(r.stdout.contains(&digest), "{r}");
    assert!(r.stdout.contains("requester: khalid"), "{r}");

    let ic_file = w.token_file("amira", &p.ic)?;
    let r = niledr_command_env(
        &[
            "approve",
            &id,
            "--digest",
            &digest,
            "--comment",
            "read the plan",
            "--token-file",
            ic_file.to_str().unwrap(),
            "--url",
            &w.niledr.url(),
        ],
        &[],
    )?
    .ok()?;
    assert!(
        r.stdout.contains("is now awaiting_approval"),
        "one approval is not enough: {r}"
    );
    assert!(
        r.stdout.contains("approve amira [incident_commander]"),
        "{r}"
    );
    assert!(!r.stderr.contains("warning"), "a 0600 token file: {r}");

    let r = w
        .cli(Some(&p.lead), &["approve", &id, "--comment", "go"])?
        .ok()?;
    assert!(
        r.stderr.contains("no --digest given") && r.stderr.contains(&digest),
        "says it used the daemon's digest: {r}"
    );
    assert!(!r.stdout.contains("awaiting_approval"), "{r}");

    // The manual step waits for a person. Ask for a pause first: it takes effect once the
    // step is confirmed; then resume and let it run to the end.
    let waiting = w.niledr.wait_json(
        &format!("/api/v1/executions/{id}"),
        Duration::from_secs(60),
        |v| {
            v["steps"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["state"] == "waiting_confirmation"))
                || !matches!(v["state"].as_str(), Some("approved" | "running"))
        },
    )?;
    assert_eq!(waiting["state"], "running", "{waiting:#}");
    let r = w.cli(Some(&w.people.viewer), &["execution", &id])?.ok()?;
    assert!(r.stdout.contains("waiting_confirmation"), "{r}");

    let r = w
        .cli(Some(&p.operator), &["pause", &id, "--comment", "hold on"])?
        .ok()?;
    assert!(r.stdout.contains(&id), "{r}");
    let r = w
        .cli(
            Some(&p.operator),
            &[
                "confirm",
                &id,
                MANUAL_STEP,
                "--comment",
                "khartoum takes writes",
            ],
        )?
        .ok()?;
    assert!(r.stdout.contains(MANUAL_STEP), "{r}");
    let paused = w
        .niledr
        .wait_execution(&id, Duration::from_secs(30), &["paused"])?;
    let confirmed = paused["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == MANUAL_STEP)
        .unwrap();
    assert_eq!(confirmed["state"], "succeeded", "{paused:#}");
    assert!(
        confirmed["detail"]
            .as_str()
            .unwrap()
            .contains("khartoum takes writes"),
        "{confirmed:#}"
    );
    let r = w.cli(Some(&p.operator), &["resume", &id])?.ok()?;
    assert!(r.stdout.contains("resumed"), "{r}");

    let done = w.niledr.wait_execution(
        &id,
        Duration::from_secs(90),
        &["succeeded", "failed", "rolled_back", "cancelled"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");

    // What a person sees afterwards.
    let r = w.cli(Some(&w.people.viewer), &["execution", &id])?.ok()?;
    println!("{}", r.stdout);
    assert!(r.stdout.contains("state:     succeeded"), "{r}");
    assert!(
        r.stdout.contains("approve  amira [incident_commander]"),
        "{r}"
    );
    assert!(r.stdout.contains("approve  omar [engineering_lead]"), "{r}");
    let shown = w.execution_json(&id)?;
    assert_eq!(shown["state"], "succeeded");
    let steps = shown["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 11, "{shown:#}");
    for s in steps {
        let sid = s["id"].as_str().unwrap();
        assert_eq!(s["state"], "succeeded", "{s:#}");
        assert!(
            s["started_at"].is_string() && s["ended_at"].is_string(),
            "{s:#}"
        );
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {sid} ")))
            .unwrap_or_else(|| panic!("a line for step {sid}: {r}"));
        assert!(
            line.contains("succeeded") && line.contains("attempts 1"),
            "{line}"
        );
        // Timed steps show their duration; a manual step's wait for a person is not timed.
        if s["kind"] != "manual.confirm" {
            assert!(s["duration_ms"].as_f64().is_some(), "{s:#}");
            assert!(line.contains(" ms"), "{line}");
        }
    }
    for event in ["approval.approved", "pause", "resume", "succeeded"] {
        assert!(r.stdout.contains(event), "timeline mentions {event:?}: {r}");
    }
    let r = w.cli(Some(&w.people.viewer), &["executions"])?.ok()?;
    let line = r.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(line.contains("succeeded") && line.contains(REVERT), "{r}");

    // A single rejection ends the next proposal.
    let (id2, _) = w.propose(REVERT, "second thoughts")?;
    let r = w
        .cli(Some(&p.lead), &["reject", &id2, "--comment", "not now"])?
        .ok()?;
    assert!(r.stdout.contains("is now rejected"), "{r}");
    let r = w.cli(Some(&w.people.viewer), &["execution", &id2])?.ok()?;
    assert!(r.stdout.contains("state:     rejected"), "{r}");
    assert!(r.stdout.contains("reject   omar"), "{r}");
    assert!(r.stdout.contains("\"not now\""), "{r}");

    // And an operator may withdraw a proposal.
    let (id3, _) = w.propose(REVERT, "third")?;
    let r = w
        .cli(
            Some(&p.operator),
            &["cancel", &id3, "--comment", "withdrawn"],
        )?
        .ok()?;
    assert!(r.stdout.contains("is now cancelled"), "{r}");

    let r = w
        .cli(Some(&w.people.viewer), &["executions", "--json"])?
        .ok()?;
    let states: Vec<String> = r
        .json()?
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        states,
        ["cancelled", "rejected", "succeeded"],
        "newest first"
    );
    finish(w)
}

#[test]
fn refusals_and_an_absent_daemon_are_explained() -> Result<()> {
    let w = start()?;
    let p = &w.people;

    // A viewer cannot propose: the server's 403 message, exit 1.
    let r = w.cli(Some(&p.viewer), &["propose", REVERT, "--reason", "x"])?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("403"), "{r}");
    assert!(r.stderr.contains("viewer"), "the server's reason: {r}");
    assert!(r.stdout.is_empty(), "{r}");

    // Unknown runbook: 404 with the list of known ones, for plan and for propose.
    let r = w.cli(Some(&w.people.viewer), &["plan", "no-such-runbook"])?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("404") && r.stderr.contains("no runbook \"no-such-runbook\""),
        "{r}"
    );
    assert!(r.stderr.contains(REVERT), "names the known runbooks: {r}");
    let r = w.cli(
        Some(&p.operator),
        &["propose", "no-such-runbook", "--reason", "x"],
    )?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("no-such-runbook"), "{r}");
    let r = w.cli(Some(&w.people.viewer), &["execution", "no-such-id"])?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("404"), "{r}");

    // A wrong token is a 401 with a hint; no token at all is caught before any request.
    let r = w.cli(
        Some("not-a-real-token"),
        &["propose", REVERT, "--reason", "x"],
    )?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("401") && r.stderr.contains("NILEDR_TOKEN"),
        "{r}"
    );
    let r = w.cli(None, &["approve", "whatever"])?;
    assert_eq!(r.code, Some(2), "{r}");
    assert!(
        r.stderr.contains("--token-file") && r.stderr.contains("NILEDR_TOKEN"),
        "{r}"
    );
    // Reads need a principal too: no token is caught the same way, a wrong one is a 401.
    let r = w.cli(None, &["executions"])?;
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stderr.contains("NILEDR_TOKEN"), "{r}");
    let r = w.cli(Some("not-a-real-token"), &["executions"])?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("401"), "{r}");
    let missing = w.topo.base_dir().join("missing.token");
    let r = niledr_command_env(
        &[
            "cancel",
            "x",
            "--url",
            &w.niledr.url(),
            "--token-file",
            missing.to_str().unwrap(),
        ],
        &[],
    )?;
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stderr.contains("missing.token"), "{r}");

    // Approving a digest that is not the plan's is refused, and nothing counts.
    let (id, digest) = w.propose(REVERT, "digest check")?;
    let wrong = "0".repeat(64);
    let r = w.cli(Some(&p.ic), &["approve", &id, "--digest", &wrong])?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("409") && r.stderr.contains(&format!("the plan is now {digest}")),
        "{r}"
    );
    // The requester never counts (403), and a manual step cannot be confirmed before it runs.
    let r = w.cli(Some(&p.operator), &["approve", &id, "--digest", &digest])?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("403"), "{r}");
    let r = w.cli(Some(&p.operator), &["confirm", &id, MANUAL_STEP])?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("409") && r.stderr.contains("awaiting_approval"),
        "{r}"
    );
    let shown = w.execution_json(&id)?;
    assert_eq!(shown["state"], "awaiting_approval", "{shown:#}");
    assert!(
        shown["approvals"].as_array().unwrap().is_empty(),
        "{shown:#}"
    );
    w.cli(Some(&p.operator), &["cancel", &id])?.ok()?;

    // No daemon at the URL: say which URL and how to start one.
    let nobody = format!("http://{}", free_listen_addr()?);
    let r = niledr_cli(&nobody, Some(&p.viewer), &["executions"])?;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr
            .contains(&format!("cannot reach niledr at {nobody}/")),
        "{r}"
    );
    assert!(r.stderr.contains("niledr serve"), "{r}");
    // A bad URL is a usage error.
    let r = niledr_cli("ftp://example", None, &["executions"])?;
    assert_eq!(r.code, Some(2), "{r}");
    finish(w)
}
