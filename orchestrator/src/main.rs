//! The `niledr` command line: serve, check-config, user add, audit verify, and the API
//! client subcommands (plan, runbooks, executions, propose, approve, ..., drill; see `cli`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use niledr_orchestrator::{auth, config, serve, store};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "niledr",
    version,
    about = "NileCare disaster-recovery and failover orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: probes, event loop, HTTP API and console.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file and exit: 0 if valid, 1 with file:line:column and what to fix if not.
    CheckConfig { file: PathBuf },
    /// Manage people and their tokens.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Audit chain commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Talk to a running daemon (plan, propose, approve, ..., drill ...).
    #[command(flatten)]
    Remote(niledr_orchestrator::cli::RemoteCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user and print their new token once (only its argon2 hash is stored).
    Add {
        /// The users file (the config's [auth] users_file).
        #[arg(long)]
        users_file: PathBuf,
        name: String,
        /// viewer, operator, approver or admin.
        #[arg(long)]
        role: String,
        /// Role tags for approvals: incident_commander, engineering_lead (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain of a store (the daemon must be stopped; otherwise use
    /// GET /api/v1/audit/verify).
    Verify {
        /// Take the store path from this config file.
        #[arg(long, short, conflicts_with = "store")]
        config: Option<PathBuf>,
        /// Or name the store file directly.
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// List a running daemon's audit entries (GET /api/v1/audit): filter by actor,
    /// execution and time, page with --after.
    List(niledr_orchestrator::cli::audit::AuditList),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Remote(cmd) => niledr_orchestrator::cli::run(cmd),
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(c)
                if c.users_file
                    .as_ref()
                    // A missing users file is allowed (the daemon warns and refuses every
                    // mutation); a malformed one is refused.
                    .is_some_and(|f| f.exists() && auth::load_users(f).is_err()) =>
            {
                let f = c.users_file.as_deref().unwrap_or(std::path::Path::new(""));
                let e = auth::load_users(f)
                    .err()
                    .map(|e| format!("{e:#}"))
                    .unwrap_or_default();
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
            Ok(c) => {
                let catalog = niledr_orchestrator::world::catalog(&c);
                let loaded =
                    niledr_orchestrator::engine::load_runbooks(&c, &catalog).and_then(|rb| {
                        niledr_orchestrator::hooks::check_runbooks(&c, &rb)?;
                        let infos = niledr_orchestrator::drills::runbook_infos(
                            rb.values().map(|l| &l.runbook),
                        );
                        niledr_orchestrator::drills::load_drills(&c, &catalog, &infos)
                            .map(|d| (rb, d))
                    });
                match loaded {
                    Ok((runbooks, drills)) => {
                        for w in missing_files(&c) {
                            eprintln!("warning: {w}");
                        }
                        println!(
                            "{}: OK ({} sites, {} services, {} runbooks, {} drills, store {})",
                            file.display(),
                            c.sites.len(),
                            c.services.len(),
                            runbooks.len(),
                            drills.len(),
                            c.store.display()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::User {
            command:
                UserCommand::Add {
                    users_file,
                    name,
                    role,
                    tags,
                },
        } => {
            let Some(role) = auth::Role::parse(&role) else {
                eprintln!("error: unknown role {role:?}; use viewer, operator, approver or admin");
                return ExitCode::from(2);
            };
            match auth::add_user(&users_file, &name, role, &tags) {
                Ok(token) => {
                    eprintln!(
                        "added {name} ({role}) to {}; the token is shown only now:",
                        users_file.display()
                    );
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit {
            command: AuditCommand::List(args),
        } => match niledr_orchestrator::cli::audit::list(args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config: cfg,
                    store: st,
                },
        } => {
            let path = match (cfg, st) {
                (_, Some(p)) => p,
                (Some(c), None) => match config::load(&c) {
                    Ok(c) => c.store,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                (None, None) => {
                    eprintln!("error: give --config FILE or --store PATH");
                    return ExitCode::from(2);
                }
            };
            match store::verify_file(&path) {
                Ok(r) => match r.broken {
                    None => {
                        println!("audit chain OK: {} entries, head {}", r.entries, r.head);
                        ExitCode::SUCCESS
                    }
                    Some((seq, why)) => {
                        eprintln!(
                            "audit chain BROKEN at entry {seq}: {why} ({} entries read)",
                            r.entries
                        );
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config: path } => {
            init_tracing();
            let config = match config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: refusing to start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async {
                let shutdown = CancellationToken::new();
                let signals = shutdown.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("signal received");
                    signals.cancel();
                });
                serve::serve(config, shutdown).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("niledr stopped: {e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NILEDR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(niledr_orchestrator::redact::log::Writer)
        .init();
}

/// Files the config names that a failover will write but that are not there yet: allowed at
/// load (they may be created later), but a runbook swapping them is not ready until they are.
fn missing_files(c: &config::Config) -> Vec<String> {
    c.connstr
        .iter()
        .filter_map(|(name, t)| {
            let path = match t {
                config::ConnstrTarget::File { path, .. } => path,
                config::ConnstrTarget::Pgbouncer { ini, .. } => ini,
            };
            (!path.exists()).then(|| {
                format!(
                    "[connstr.{name}] {} does not exist: a runbook that swaps it is not ready (it stops before touching anything) until the file is created",
                    path.display()
                )
            })
        })
        .collect()
}
