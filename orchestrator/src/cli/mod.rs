//! `niledr` subcommands that talk to a running daemon over its HTTP API: plan, runbooks,
//! executions, execution, propose, approve, reject, cancel, pause, resume, confirm, retry, and the
//! `drill` group (see `drill`), `status`, `pause-triggers` and `resume-triggers` (see `status`).
//! Each takes `--url` / `NILEDR_URL` and `--token-file` / `NILEDR_TOKEN` (see `conn`).
//! Exit codes: 0 done, 1 the daemon refused or could not be reached, 2 bad usage, 3 a drill
//! run that did not meet its objectives (`drill run`).

pub mod audit;
pub mod client;
pub mod conn;
pub mod drill;
pub mod render;
pub mod status;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use niledr_web::types::{ExecutionView, RunbookSummaryView};
use serde_json::{Value, json};

pub use client::{CliError, Client};
pub use conn::Connection;

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Dry-run RUNBOOK: what it would do now (changes nothing).
    ///
    /// Every step with its targets, guards (evaluated against live probes), changes
    /// before → after and rollback; then warnings and the plan digest approvals are bound to.
    Plan {
        runbook: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the runbooks the daemon loaded.
    Runbooks {
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List executions, newest first, one line each.
    Executions {
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one execution: state, approvals, steps, timeline.
    Execution {
        id: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Propose running RUNBOOK (operator or above); prints the id and plan digest.
    Propose {
        runbook: String,
        /// Why (kept in the audit log and shown to approvers).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Approve execution ID (approver), bound to the plan digest you read.
    Approve {
        id: String,
        /// The plan digest you read (`niledr plan` / `niledr execution`). Without it, the
        /// digest the daemon holds now is used, and the command says so.
        #[arg(long, value_name = "D")]
        digest: Option<String>,
        /// A comment for the timeline and the audit log.
        #[arg(long, value_name = "C", default_value = "", hide_default_value = true)]
        comment: String,
        /// Approve alone, with a written reason (only where the runbook allows it; audited
        /// and announced).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Reject execution ID: a single rejection ends it.
    Reject(OnExecution),
    /// Cancel execution ID (a running one rolls back after its current step).
    Cancel(OnExecution),
    /// Each site's configured and current role, status, lag, DNS answers, cold-site backups,
    /// and whether triggers are paused (like `patronictl list`).
    Status {
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Maintenance mode (operator or above): runbook triggers stay quiet until resumed;
    /// proposals by hand still work. Audited with the reason.
    PauseTriggers {
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// End maintenance mode: triggers open proposals again (operator or above; audited).
    ResumeTriggers {
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Pause execution ID after its current step.
    Pause(OnExecution),
    /// Resume a paused execution ID.
    Resume(OnExecution),
    /// Confirm step STEP of execution ID: a manual step (the checklist item is done), or a
    /// step waiting for a confirm (e.g. a fence whose old primary does not answer; say in
    /// --comment what you verified).
    Confirm(OnStep),
    /// Roll forward an execution that needs an operator: run STEP (a step id, or `verify`)
    /// again and continue. Past the point of no return this is the way forward once the
    /// cause is fixed; nothing is ever rolled back there.
    Retry(OnStep),
    /// Drills: list, show, approve (standing), run now and follow, runs, report.
    Drill {
        #[command(subcommand)]
        command: drill::DrillCommand,
    },
}

/// Arguments of the commands that act on one step of an execution.
#[derive(Args, Debug)]
pub struct OnStep {
    id: String,
    step: String,
    /// A comment for the timeline and the audit log.
    #[arg(long, value_name = "C", default_value = "", hide_default_value = true)]
    comment: String,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Arguments shared by the commands that act on one execution with an optional comment.
#[derive(Args, Debug)]
pub struct OnExecution {
    id: String,
    /// A comment for the timeline and the audit log.
    #[arg(long, value_name = "C", default_value = "", hide_default_value = true)]
    comment: String,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Run one remote subcommand: print its output, or `error: ...` on stderr.
pub fn run(cmd: RemoteCommand) -> ExitCode {
    let result = match cmd {
        // The one group with an exit code of its own (a drill that missed its objectives).
        RemoteCommand::Drill { command } => drill::execute(command),
        cmd => execute(cmd).map(|text| (text, 0)),
    };
    match result {
        Ok((text, code)) => {
            print!("{text}");
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Every request carries the caller's token: reads need a principal too (viewer or above).
fn connect(conn: &Connection) -> Result<Client, CliError> {
    Client::new(conn.base_url()?, Some(conn.required_token()?))
}

/// GET `path`; with `--json` print it as is, else decode it as `T` (`what`
/// names it in errors) and render.
fn show<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    path: &[&str],
    json: bool,
    what: &str,
    render: impl FnOnce(&T) -> String,
) -> Result<String, CliError> {
    let v = connect(conn)?.get(path)?;
    if json {
        return Ok(pretty(&v));
    }
    Ok(render(&client::decode(v, what)?))
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

fn execute(cmd: RemoteCommand) -> Result<String, CliError> {
    match cmd {
        RemoteCommand::Drill { command } => drill::execute(command).map(|(text, _)| text),
        RemoteCommand::Plan {
            runbook,
            json,
            conn,
        } => {
            let c = connect(&conn)?;
            let v = c.get(&["api", "v1", "runbooks", &runbook, "plan"])?;
            if json {
                return Ok(pretty(&v));
            }
            match serde_json::from_value::<niledr_web::types::PlanView>(v.clone()) {
                Ok(p) => Ok(render::plan(&p)),
                // A daemon of another version: still show everything it said.
                Err(e) => Ok(format!(
                    "(this plan's format is not the one this niledr knows: {e}; raw JSON follows)\n{}",
                    pretty(&v)
                )),
            }
        }
        RemoteCommand::Runbooks { json, conn } => show(
            &conn,
            &["api", "v1", "runbooks"],
            json,
            "runbook list",
            |l: &Vec<RunbookSummaryView>| render::runbooks(l),
        ),
        RemoteCommand::Executions { json, conn } => show(
            &conn,
            &["api", "v1", "executions"],
            json,
            "execution list",
            |l: &Vec<ExecutionView>| render::executions(l),
        ),
        RemoteCommand::Execution { id, json, conn } => show(
            &conn,
            &["api", "v1", "executions", &id],
            json,
            "execution",
            render::execution,
        ),
        RemoteCommand::Propose {
            runbook,
            reason,
            json,
            conn,
        } => {
            if reason.trim().is_empty() {
                return Err(CliError::Usage(
                    "--reason must say why (approvers and the audit log read it)".into(),
                ));
            }
            let c = connect(&conn)?;
            let v = c.post(
                &["api", "v1", "executions"],
                &json!({ "runbook": runbook, "reason": reason }),
            )?;
            if json {
                return Ok(pretty(&v));
            }
            Ok(render::proposed(&client::decode(v, "execution")?))
        }
        RemoteCommand::Approve {
            id,
            digest,
            comment,
            break_glass,
            json,
            conn,
        } => {
            let c = connect(&conn)?;
            if break_glass.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(CliError::Usage(
                    "--break-glass needs a written reason".into(),
                ));
            }
            let digest = match digest {
                Some(d) => d,
                None => {
                    let current: ExecutionView =
                        client::decode(c.get(&["api", "v1", "executions", &id])?, "execution")?;
                    eprintln!(
                        "note: no --digest given: approving the plan the daemon holds now, digest {} \
                         (pass --digest to bind your approval to the plan you read)",
                        current.plan_digest
                    );
                    current.plan_digest
                }
            };
            if let Some(r) = &break_glass {
                eprintln!(
                    "BREAK-GLASS: approving {id} alone because: {r} — this is audited and announced"
                );
            }
            let v = c.post(
                &["api", "v1", "executions", &id, "approvals"],
                &json!({
                    "decision": "approve",
                    "comment": comment,
                    "plan_digest": digest,
                    "break_glass_reason": break_glass,
                }),
            )?;
            mutation_output("approved", v, json)
        }
        RemoteCommand::Reject(OnExecution {
            id,
            comment,
            json,
            conn,
        }) => {
            let c = connect(&conn)?;
            let v = c.post(
                &["api", "v1", "executions", &id, "approvals"],
                &json!({ "decision": "reject", "comment": comment }),
            )?;
            mutation_output("rejected", v, json)
        }
        RemoteCommand::Cancel(OnExecution {
            id,
            comment,
            json,
            conn,
        }) => control(&conn, &id, "cancel", "cancel requested for", &comment, json),
        RemoteCommand::Pause(OnExecution {
            id,
            comment,
            json,
            conn,
        }) => control(&conn, &id, "pause", "pause requested for", &comment, json),
        RemoteCommand::Resume(OnExecution {
            id,
            comment,
            json,
            conn,
        }) => control(&conn, &id, "resume", "resumed", &comment, json),
        RemoteCommand::Status { json, conn } => status::status(&conn, json),
        RemoteCommand::PauseTriggers { reason, json, conn } => {
            status::set_triggers(&conn, true, &reason, json)
        }
        RemoteCommand::ResumeTriggers { reason, json, conn } => {
            status::set_triggers(&conn, false, &reason, json)
        }
        RemoteCommand::Confirm(a) => on_step(a, "confirm", "confirmed step"),
        RemoteCommand::Retry(a) => on_step(a, "retry", "retrying from step"),
    }
}

fn on_step(a: OnStep, endpoint: &str, verb: &str) -> Result<String, CliError> {
    let c = connect(&a.conn)?;
    let v = c.post(
        &["api", "v1", "executions", &a.id, endpoint],
        &json!({ "step": a.step, "comment": a.comment }),
    )?;
    mutation_output(&format!("{verb} {} of", a.step), v, a.json)
}

fn control(
    conn: &Connection,
    id: &str,
    endpoint: &str,
    verb: &str,
    comment: &str,
    json: bool,
) -> Result<String, CliError> {
    let c = connect(conn)?;
    let v = c.post(
        &["api", "v1", "executions", id, endpoint],
        &json!({ "comment": comment }),
    )?;
    mutation_output(verb, v, json)
}

fn mutation_output(verb: &str, v: Value, json: bool) -> Result<String, CliError> {
    if json {
        return Ok(pretty(&v));
    }
    let e: ExecutionView = client::decode(v, "execution")?;
    let mut out = render::outcome_line(verb, &e);
    let approvals: Vec<String> = e
        .approvals
        .iter()
        .map(|a| format!("{} {} [{}]", a.decision, a.user, a.tags.join(", ")))
        .collect();
    if !approvals.is_empty() {
        out.push_str(&format!("approvals: {}\n", approvals.join("; ")));
    }
    Ok(out)
}
