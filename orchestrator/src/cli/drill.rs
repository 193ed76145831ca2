//! `niledr drill ...`: list, show, approve (standing, or one live run before its fault), run
//! (and follow, through approval), runs, report. `drill run` exits 0 when the drill met its
//! objectives, 3 when it ended without meeting them (missed, aborted, not measured, failed,
//! interrupted, rejected, expired), 1 on errors, 2 on bad usage.

use std::time::{Duration, Instant};

use clap::Subcommand;
use niledr_web::types::{DrillRunView, DrillView};
use serde_json::{Value, json};

use super::client::{self, CliError, Client};
use super::conn::Connection;
use super::{connect, pretty, render};

/// How often `drill run` asks how the run is going.
const POLL: Duration = Duration::from_millis(500);
/// How long `drill run` keeps asking through a daemon that does not answer (a restart) before
/// it gives up following; the run itself goes on in the daemon.
const PATIENCE: Duration = Duration::from_secs(60);
/// `drill run`'s exit code when the run finished without meeting its objectives.
pub const EXIT_NOT_MET: u8 = 3;

#[derive(Subcommand, Debug)]
pub enum DrillCommand {
    /// List the drills the daemon loaded: schedule, next due slot, approval, last verdict.
    List {
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show drill NAME: definition, digest, upcoming slots (and why any is skipped), standing
    /// approvals.
    Show {
        name: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Pre-approve drill NAME (approval = "standing"), bound to the digest of its file: once
    /// enough people have, it runs unattended on its schedule. A changed file needs new
    /// approvals. With `--run ID`: approve (or `--reject`) that run of a live drill, which
    /// awaits approval; the approval that completes the policy injects its fault.
    Approve {
        name: String,
        /// Decide on this run of a live drill (`niledr drill runs --drill NAME`) instead of
        /// pre-approving the drill file.
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        /// With `--run`: reject the run (it ends; nothing is injected).
        #[arg(long, requires = "run")]
        reject: bool,
        /// The drill digest you read (`niledr drill show`, or the run's). Without it, the
        /// digest as the daemon holds it now is used, and the command says so.
        #[arg(long, value_name = "D")]
        digest: Option<String>,
        /// A comment for the audit log.
        #[arg(long, value_name = "C", default_value = "", hide_default_value = true)]
        comment: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Run drill NAME now and follow it: progress on stderr, then its report (Markdown) on
    /// stdout. A live drill's run first awaits two approvals of the run (`niledr drill approve
    /// NAME --run ID`); nothing is injected before, and this command waits for them. Exit 0
    /// when every objective was met, 3 when the run missed, aborted, measured nothing, failed,
    /// was interrupted, rejected or expired, 1 on errors.
    Run {
        name: String,
        /// Why (kept with the run and in the audit log).
        #[arg(
            long,
            value_name = "TEXT",
            default_value = "",
            hide_default_value = true
        )]
        reason: String,
        /// Start the run and return at once with its id (exit 0).
        #[arg(long)]
        no_wait: bool,
        /// Print the run's JSON instead of the Markdown report.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List drill runs, newest first.
    Runs {
        /// Only the runs of this drill.
        #[arg(long, value_name = "NAME")]
        drill: Option<String>,
        /// At most this many runs (1 to 1000) [default: 50].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: Option<u16>,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print the report of drill run ID as Markdown (for a post-drill review).
    Report {
        id: String,
        /// Print the run's JSON (with the full report) instead of Markdown.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Run one drill subcommand: what to print on stdout and the exit code.
pub fn execute(cmd: DrillCommand) -> Result<(String, u8), CliError> {
    match cmd {
        DrillCommand::List { json, conn } => done(super::show(
            &conn,
            &["api", "v1", "drills"],
            json,
            "drill list",
            |l: &Vec<DrillView>| render::drills(l),
        )?),
        DrillCommand::Show { name, json, conn } => done(super::show(
            &conn,
            &["api", "v1", "drills", &name],
            json,
            "drill",
            render::drill,
        )?),
        DrillCommand::Approve {
            name,
            run: Some(id),
            reject,
            digest,
            comment,
            json,
            conn,
        } => {
            let c = connect(&conn)?;
            let run_path = ["api", "v1", "drill-runs", id.as_str()];
            let digest = current_digest(&c, &run_path, digest, &format!("run {id} of {name}"))?;
            let decision = if reject { "reject" } else { "approve" };
            let v = c.post(
                &["api", "v1", "drills", &name, "runs", &id, "approvals"],
                &json!({ "digest": digest, "decision": decision, "comment": comment }),
            )?;
            if json {
                return done(pretty(&v));
            }
            done(render::drill_run(&client::decode(v, "drill run")?))
        }
        DrillCommand::Approve {
            name,
            run: None,
            digest,
            comment,
            json,
            conn,
            ..
        } => {
            let c = connect(&conn)?;
            let path = ["api", "v1", "drills", name.as_str()];
            let digest = current_digest(&c, &path, digest, &format!("drill {name}"))?;
            let v = c.post(
                &["api", "v1", "drills", &name, "approvals"],
                &json!({ "digest": digest, "comment": comment }),
            )?;
            if json {
                return done(pretty(&v));
            }
            done(render::drill_approved(&client::decode(v, "drill")?))
        }
        DrillCommand::Run {
            name,
            reason,
            no_wait,
            json,
            conn,
        } => {
            let c = connect(&conn)?;
            let v = c.post(
                &["api", "v1", "drills", &name, "runs"],
                &json!({ "reason": reason }),
            )?;
            let run: DrillRunView = client::decode(v.clone(), "drill run")?;
            if no_wait {
                if json {
                    return done(pretty(&v));
                }
                let mut text = render::drill_run(&run);
                text.push_str(&format!(
                    "watch it: niledr drill runs --drill {}; its report once it ends: \
                     niledr drill report {}\n",
                    run.drill, run.id
                ));
                return done(text);
            }
            if run.state == "awaiting_approval" {
                eprintln!(
                    "drill run {} of {} awaits approval before its fault (nothing is injected \
                     until then): {}",
                    run.id,
                    run.drill,
                    run.approval_needed.as_deref().unwrap_or("two approvals")
                );
            } else {
                eprintln!("started drill run {} of {}", run.id, run.drill);
            }
            let (v, run) = follow(&c, v, run)?;
            let code = exit_code(&run);
            eprintln!(
                "drill run {} {}: verdict {}",
                run.id,
                run.state,
                run.verdict.as_deref().unwrap_or("none")
            );
            if json {
                return Ok((pretty(&v), code));
            }
            match markdown(&c, &run.id) {
                Ok(md) => Ok((md, code)),
                // A run that failed before it measured anything may have no report.
                Err(e @ CliError::Http { .. }) => {
                    eprintln!("note: no report for this run ({e}); its record follows");
                    Ok((render::drill_run(&run), code))
                }
                Err(e) => Err(e),
            }
        }
        DrillCommand::Runs {
            drill,
            limit,
            json,
            conn,
        } => {
            let c = connect(&conn)?;
            let limit = limit.map(|n| n.to_string());
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(d) = &drill {
                query.push(("drill", d));
            }
            if let Some(n) = &limit {
                query.push(("limit", n));
            }
            let v = c.get_query(&["api", "v1", "drill-runs"], &query)?;
            if json {
                return done(pretty(&v));
            }
            let list: Vec<DrillRunView> = client::decode(v, "drill run list")?;
            match drill {
                Some(d) if list.is_empty() => done(format!(
                    "no runs of drill {d} (the drills: niledr drill list)\n"
                )),
                _ => done(render::drill_runs(&list)),
            }
        }
        DrillCommand::Report { id, json, conn } => {
            let c = connect(&conn)?;
            if json {
                return done(pretty(&c.get(&["api", "v1", "drill-runs", &id])?));
            }
            done(markdown(&c, &id)?)
        }
    }
}

/// The digest to approve: the one given, or the one at `path` now (said on stderr, so the
/// approver knows what they bound their approval to).
fn current_digest(
    c: &Client,
    path: &[&str],
    given: Option<String>,
    what: &str,
) -> Result<String, CliError> {
    if let Some(d) = given {
        return Ok(d);
    }
    let v = c.get(path)?;
    let digest = v["digest"]
        .as_str()
        .ok_or_else(|| CliError::Other(format!("the daemon's answer for {what} has no digest")))?
        .to_string();
    eprintln!(
        "note: no --digest given: approving {what} as the daemon holds it now, digest {digest} \
         (pass --digest to bind your approval to what you read)"
    );
    Ok(digest)
}

fn done(text: String) -> Result<(String, u8), CliError> {
    Ok((text, 0))
}

fn markdown(c: &Client, id: &str) -> Result<String, CliError> {
    let mut md = c.get_text(&["api", "v1", "drill-runs", id], &[("format", "md")])?;
    if !md.ends_with('\n') {
        md.push('\n');
    }
    Ok(md)
}

/// 0 when the drill met its objectives; `EXIT_NOT_MET` for any other end.
pub fn exit_code(run: &DrillRunView) -> u8 {
    let broke = matches!(run.state.as_str(), "failed" | "interrupted");
    if run.verdict.as_deref() == Some("met") && !broke {
        0
    } else {
        EXIT_NOT_MET
    }
}

/// What `DrillRunView::phase` goes through, in order.
const PHASES: &[&str] = &[
    "approval",
    "preflight",
    "canary",
    "fault",
    "detection",
    "decision",
    "execution",
    "measuring",
    "cleanup",
    "done",
];

/// The phase to show a note under. Notes carry no phase of their own and several can arrive
/// between two polls: a note whose event names a phase starts it; any other note stays in the
/// phase before it.
fn phase_of(before: &str, event: &str) -> String {
    if PHASES.contains(&event) {
        event.to_string()
    } else {
        before.to_string()
    }
}

/// Poll the run while it awaits approval or runs, printing each new note to stderr. A daemon
/// that stops answering for a while (a restart) is waited for; an error answer ends it.
fn follow(
    c: &Client,
    mut v: Value,
    mut run: DrillRunView,
) -> Result<(Value, DrillRunView), CliError> {
    let mut shown = 0;
    let mut phase = run.phase.clone();
    let mut failing_since: Option<Instant> = None;
    loop {
        for n in run.notes.iter().skip(shown) {
            phase = phase_of(&phase, &n.event);
            eprintln!("{}", render::drill_progress(&phase, n));
        }
        shown = shown.max(run.notes.len());
        // Notes after this poll are at least in the phase it reported.
        phase.clone_from(&run.phase);
        if !matches!(run.state.as_str(), "running" | "awaiting_approval") {
            return Ok((v, run));
        }
        std::thread::sleep(POLL);
        let polled = c
            .get(&["api", "v1", "drill-runs", &run.id])
            .and_then(|v| Ok((v.clone(), client::decode::<DrillRunView>(v, "drill run")?)));
        match polled {
            Ok((new_v, new_run)) => {
                v = new_v;
                run = new_run;
                failing_since = None;
            }
            Err(e @ (CliError::Http { .. } | CliError::Usage(_))) => return Err(e),
            Err(e) => {
                let since = *failing_since.get_or_insert_with(|| {
                    eprintln!("warning: {e}; still trying");
                    Instant::now()
                });
                if since.elapsed() > PATIENCE {
                    return Err(CliError::Other(format!(
                        "{e}; stopped following drill run {id} (it goes on in the daemon): see \
                         `niledr drill report {id}`",
                        id = run.id
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &str, verdict: Option<&str>) -> DrillRunView {
        serde_json::from_value(json!({
            "id": "r1", "drill": "d", "digest": "x", "trigger": "on_demand",
            "requested_by": "amira", "state": state, "phase": "done", "scheduled_for": null,
            "started_at": "t0", "finished_at": "t1", "execution": null,
            "cleanup_execution": null, "error": null, "verdict": verdict, "report": null,
            "approvals": [], "approval_needed": null, "approval_deadline": null,
            "notes": []
        }))
        .expect("a valid run")
    }

    #[test]
    fn notes_between_polls_take_the_phase_they_name() {
        let mut phase = "canary".to_string();
        let labels: Vec<String> = ["fault", "host_action", "detection", "detected"]
            .iter()
            .map(|e| {
                phase = phase_of(&phase, e);
                phase.clone()
            })
            .collect();
        assert_eq!(labels, ["fault", "fault", "detection", "detection"]);
    }

    #[test]
    fn only_a_met_verdict_exits_zero() {
        assert_eq!(exit_code(&run("finished", Some("met"))), 0);
        for (state, verdict) in [
            ("finished", Some("missed")),
            ("finished", Some("not_measured")),
            ("aborted", Some("aborted")),
            ("failed", None),
            ("failed", Some("met")),
            ("interrupted", None),
            ("rejected", None),
            ("expired", None),
            ("finished", None),
        ] {
            assert_eq!(
                exit_code(&run(state, verdict)),
                EXIT_NOT_MET,
                "{state} {verdict:?}"
            );
        }
    }
}
