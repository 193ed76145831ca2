//! The host agent: a small authenticated HTTP server through which niledr's drills inject
//! faults (kill -9, SIGSTOP/SIGCONT, stop/start), cut and restore a standby's WAL stream,
//! re-seed a server as a standby, and restore, recover and retire the cold site. In
//! production an agent on each machine would do this; here the harness owns the server
//! processes, so it must be the one acting on them (its bookkeeping and teardown stay right).
//! It records every action asked of it (`requested`), so a test can tell whether a drill
//! injected anything at all.
//!
//! Protocol (every request carries `Authorization: Bearer <token>`, else 401):
//! - `GET /v1/health` → 200 `{"ok":true}`
//! - `POST /v1/actions` with `{"target": "...", "action": "...", "of": null | "service-id"}`
//!   → 200 `{"detail": "...", "took_ms": N}`; 400 (bad body, unknown action, bad
//!   combination), 404 (unknown target), 409 (not possible in the current state) or 500
//!   (the action failed) with `{"error": "..."}`. Actions run one at a time.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::bins::{Binaries, postgres_owner};
use crate::config::AgentRef;
use crate::http::{HttpHealth, http_request};
use crate::layout::{Layout, Site};
use crate::postgres::{PgSetup, Postgres, Reseed};
use crate::process::{Component, process_state};
use crate::redis::Redis;
use crate::topology::Topology;
use crate::util::{Owner, random_hex, wait_until, write_file};

/// Name of the token file in the topology's base dir.
pub const TOKEN_FILE: &str = "host-agent.token";
/// How long `recover` waits for the cold site to replay the archive and be promoted.
pub const RECOVER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `detach_wal` / `attach_wal` wait for the WAL receiver to stop / stream.
const WAL_RECEIVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Name (and log file name) of the restored dr-cold PostgreSQL.
const COLD_NAME: &str = "dr-cold-postgres";

const POSTGRES_ACTIONS: &str =
    "kill, hang, resume, stop, start, detach_wal, attach_wal, reseed (with `of`)";
const REDIS_ACTIONS: &str = "kill, hang, resume, stop, start";
const SITE_ACTIONS: &str = "kill, start";
const COLD_ACTIONS: &str = "restore, recover, retire";

/// The running agent. Dropping it stops the server and kills what the agent started itself
/// (the dr-cold PostgreSQL), SIGCONT first.
pub struct HostAgent {
    addr: SocketAddr,
    token: String,
    token_file: PathBuf,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HostAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostAgent")
            .field("url", &self.url())
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl HostAgent {
    /// Bind 127.0.0.1:0, write a fresh token to `<base>/host-agent.token` (mode 0600) and
    /// serve on a thread of its own (with its own tokio runtime).
    pub fn start(topo: &Topology) -> Result<HostAgent> {
        let token = random_hex(32)?;
        let token_file = topo.base_dir().join(TOKEN_FILE);
        write_file(&token_file, &token, 0o600, None)?;

        let layout = topo.layout();
        let primary = topo.postgres_primary();
        let cold_site = topo.cold_site();
        let cold = ColdPlan {
            bins: Binaries::locate()?,
            owner: postgres_owner()?,
            password: primary.password().into(),
            password_file: topo.secrets().postgres_password_file.clone(),
            base_backup: cold_site.base_backup.clone(),
            wal_archive: cold_site.wal_archive.clone(),
            logs: topo.logs_dir(),
            root: topo.base_dir().join("dr-cold").join("postgres"),
            // The same port as khartoum's: the cold site replaces it, DNS moves, port stays.
            address: SocketAddr::from((
                layout.ip(Site::DrCold),
                layout.postgres(Site::Khartoum)?.port(),
            )),
            layout: layout.clone(),
        };
        let shared = Arc::new(Shared {
            token: token.clone(),
            postgres: vec![
                topo.postgres_primary().clone(),
                topo.postgres_standby().clone(),
            ],
            redis: vec![topo.redis_primary().clone(), topo.redis_replica().clone()],
            http: topo.http_endpoints().to_vec(),
            cold,
            acts: Mutex::new(Acts::default()),
            requested: Mutex::new(Vec::new()),
        });

        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("host-agent: binding 127.0.0.1:0")?;
        listener
            .set_nonblocking(true)
            .context("host-agent: set_nonblocking")?;
        let addr = listener.local_addr().context("host-agent: local_addr")?;
        let app = router(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("host-agent".into())
            .spawn(move || serve(listener, app, stopped, ready_tx))
            .context("host-agent: spawning its thread")?;
        let mut agent = HostAgent {
            addr,
            token,
            token_file,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(agent),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                agent.stop.take();
                Err(anyhow!("host-agent: its thread ended before serving"))
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The file holding the bearer token (mode 0600).
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// What niledr's config needs (`ConfigOptions::agent`).
    pub fn agent_ref(&self) -> AgentRef {
        AgentRef {
            url: self.url(),
            token_file: self.token_file.clone(),
        }
    }

    /// One request to the agent (HTTP/1.0), with `token` as bearer when given; returns the
    /// status and the JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let text = body.map(Value::to_string);
        if text.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        // `recover` may take minutes.
        let r = http_request(
            self.addr,
            method,
            path,
            &headers,
            text.as_deref(),
            RECOVER_TIMEOUT + Duration::from_secs(60),
        )?;
        let json = serde_json::from_str(&r.body).with_context(|| {
            format!("host-agent {method} {path}: body is not JSON: {:?}", r.body)
        })?;
        Ok((r.status, json))
    }

    /// `POST /v1/actions` with the agent's token; returns the status and the JSON body.
    pub fn act(&self, target: &str, action: &str, of: Option<&str>) -> Result<(u16, Value)> {
        self.request(
            "POST",
            "/v1/actions",
            Some(&self.token),
            Some(&json!({ "target": target, "action": action, "of": of })),
        )
    }

    /// Every action niledr asked of the agent so far (`"kill khartoum-postgres"`, `"reseed
    /// khartoum-postgres (of port-sudan-postgres)"`), oldest first, whatever its outcome.
    pub fn requested(&self) -> Vec<String> {
        self.shared
            .requested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The restored dr-cold PostgreSQL while it runs (after `recover`).
    pub fn cold_postgres(&self) -> Option<Postgres> {
        match &self.shared.lock_acts().cold {
            Cold::Running(pg) => Some(pg.clone()),
            _ => None,
        }
    }

    /// Where the restored dr-cold PostgreSQL listens (dr-cold's address, khartoum's port).
    pub fn cold_address(&self) -> SocketAddr {
        self.shared.cold.address
    }

    /// The restored dr-cold data directory's parent (`<base>/dr-cold/postgres`).
    pub fn cold_root(&self) -> &Path {
        &self.shared.cold.root
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let cold = std::mem::take(&mut self.shared.lock_acts().cold);
        if let Cold::Running(pg) = cold {
            if pg.is_running() {
                let _ = pg.sigcont();
            }
            if let Err(e) = pg.kill() {
                eprintln!("host-agent: {e:#}");
            }
        }
    }
}

/// The server thread: a current-thread runtime serving until `stopped` fires.
fn serve(
    listener: std::net::TcpListener,
    app: Router,
    stopped: tokio::sync::oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(anyhow!(e).context("host-agent: building its runtime")));
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(anyhow!(e).context("host-agent: listener")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        tokio::select! {
            r = axum::serve(listener, app).into_future() => {
                if let Err(e) = r {
                    eprintln!("host-agent: server ended: {e}");
                }
            }
            _ = stopped => {}
        }
    });
    // An action still running on a blocking thread is not waited for (it holds the action
    // lock; `Drop` takes that lock afterwards).
    rt.shutdown_timeout(Duration::from_secs(2));
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/actions", post(actions))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared)
}

/// Everything the handlers share: the token, clones of the topology's handles, and the
/// action lock with what actions remember.
struct Shared {
    token: String,
    postgres: Vec<Postgres>,
    redis: Vec<Redis>,
    http: Vec<HttpHealth>,
    cold: ColdPlan,
    acts: Mutex<Acts>,
    /// Every well-formed action request, in order (`"kill khartoum-postgres"`), whatever its
    /// outcome: what tests read to tell whether a fault was injected at all.
    requested: Mutex<Vec<String>>,
}

/// What a cold restore needs.
struct ColdPlan {
    bins: Binaries,
    owner: Option<Owner>,
    password: Arc<str>,
    password_file: PathBuf,
    base_backup: PathBuf,
    wal_archive: PathBuf,
    logs: PathBuf,
    /// `<base>/dr-cold/postgres` (data/ and socket/ inside).
    root: PathBuf,
    address: SocketAddr,
    layout: Layout,
}

impl ColdPlan {
    fn setup(&self) -> PgSetup<'_> {
        PgSetup {
            bins: &self.bins,
            owner: self.owner,
            password: self.password.clone(),
            password_file: &self.password_file,
            wal_archive: &self.wal_archive,
            logs: &self.logs,
            layout: &self.layout,
        }
    }
}

/// State kept between actions (guarded by the action lock).
#[derive(Default)]
struct Acts {
    /// `primary_conninfo` saved by `detach_wal`, per service id.
    saved_conninfo: HashMap<String, String>,
    cold: Cold,
}

#[derive(Default)]
enum Cold {
    #[default]
    Nothing,
    /// A data directory ready for `recover`.
    Restored,
    /// Started by `recover` (killed when the agent is dropped).
    Running(Postgres),
}

/// A failed request: the HTTP status and what went wrong.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    fn conflict(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::CONFLICT, message)
    }

    fn response(&self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

type Acted = std::result::Result<String, Failure>;

async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if same(t.as_bytes(), shared.token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(
                json!({ "error": "missing or wrong bearer token (Authorization: Bearer <token>)" }),
            ),
        )
            .into_response(),
    }
}

/// Constant-time comparison (for equal lengths).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health() -> Json<Value> {
    Json(json!({ "ok": true }))
}

async fn not_found(req: Request) -> Response {
    Failure::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {} (GET /v1/health, POST /v1/actions)",
            req.method(),
            req.uri().path()
        ),
    )
    .response()
}

#[derive(Debug, Clone)]
struct ActionRequest {
    target: String,
    action: String,
    of: Option<String>,
}

fn parse_request(body: &[u8]) -> std::result::Result<ActionRequest, Failure> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::bad(format!("the body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Failure::bad("the body must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "target" | "action" | "of"))
    {
        return Err(Failure::bad(format!(
            "unknown field {k:?} (expected target, action, of)"
        )));
    }
    let field = |k: &str| match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Failure::bad(format!("{k} must be a string, not {other}"))),
    };
    Ok(ActionRequest {
        target: field("target")?.ok_or_else(|| Failure::bad("missing field `target`"))?,
        action: field("action")?.ok_or_else(|| Failure::bad("missing field `action`"))?,
        of: field("of")?,
    })
}

async fn actions(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(f) => {
            println!("host-agent: rejected a request: {}", f.message);
            return f.response();
        }
    };
    let label = match &req.of {
        Some(of) => format!("{} {} (of {of})", req.action, req.target),
        None => format!("{} {}", req.action, req.target),
    };
    shared
        .requested
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(label.clone());
    let run = {
        let req = req.clone();
        tokio::task::spawn_blocking(move || shared.act(&req))
    };
    let (result, took) = run.await.unwrap_or_else(|e| {
        (
            Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the action panicked: {e}"),
            )),
            Duration::ZERO,
        )
    });
    let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(detail) => {
            println!("host-agent: {label}: {detail} ({took_ms} ms)");
            Json(json!({ "detail": detail, "took_ms": took_ms })).into_response()
        }
        Err(f) => {
            println!(
                "host-agent: {label}: FAILED ({}) after {took_ms} ms: {}",
                f.status.as_u16(),
                f.message
            );
            f.response()
        }
    }
}

/// What a target names.
enum Target<'a> {
    Postgres(&'a Postgres),
    Redis(&'a Redis),
    Site(Site),
}

impl Shared {
    fn lock_acts(&self) -> MutexGuard<'_, Acts> {
        self.acts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resolve(&self, id: &str) -> std::result::Result<Target<'_>, Failure> {
        if let Some(pg) = self.postgres.iter().find(|p| p.name() == id) {
            return Ok(Target::Postgres(pg));
        }
        if let Some(r) = self.redis.iter().find(|r| r.name() == id) {
            return Ok(Target::Redis(r));
        }
        if let Some(site) = [Site::Khartoum, Site::PortSudan, Site::DrCold]
            .into_iter()
            .find(|s| s.name() == id)
        {
            return Ok(Target::Site(site));
        }
        let mut known: Vec<&str> = self.postgres.iter().map(|p| p.name()).collect();
        known.extend(self.redis.iter().map(|r| r.name()));
        known.extend(["khartoum", "port-sudan", "dr-cold"]);
        Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("unknown target {id:?} (known: {})", known.join(", ")),
        ))
    }

    /// Run one action under the action lock; the duration excludes waiting for the lock.
    fn act(&self, req: &ActionRequest) -> (Acted, Duration) {
        let mut acts = self.lock_acts();
        let t0 = Instant::now();
        let result = self.dispatch(req, &mut acts);
        (result, t0.elapsed())
    }

    fn dispatch(&self, req: &ActionRequest, acts: &mut Acts) -> Acted {
        let target = self.resolve(&req.target)?;
        let action = req.action.as_str();
        if req.of.is_some() && action != "reseed" {
            return Err(Failure::bad(format!(
                "`of` is only for reseed, not for {action}"
            )));
        }
        match target {
            Target::Postgres(pg) => match action {
                "kill" | "hang" | "resume" | "stop" | "start" => {
                    component_action(pg.component(), action)
                }
                "detach_wal" => detach_wal(pg, acts),
                "attach_wal" => attach_wal(pg, acts),
                "reseed" => {
                    let of = req
                        .of
                        .as_deref()
                        .ok_or_else(|| Failure::bad("reseed needs `of`: the service to follow"))?;
                    let source = match self.resolve(of)? {
                        Target::Postgres(p) => p,
                        _ => {
                            return Err(Failure::bad(format!(
                                "`of` must be a PostgreSQL service, not {of:?}"
                            )));
                        }
                    };
                    if source.name() == pg.name() {
                        return Err(Failure::bad(format!("{of} cannot follow itself")));
                    }
                    let detail = reseed(pg, source)?;
                    acts.saved_conninfo.remove(pg.name());
                    Ok(detail)
                }
                other => Err(unknown_action(other, &req.target, POSTGRES_ACTIONS)),
            },
            Target::Redis(r) => match action {
                "kill" | "hang" | "resume" | "stop" | "start" => {
                    component_action(r.component(), action)
                }
                other => Err(unknown_action(other, &req.target, REDIS_ACTIONS)),
            },
            Target::Site(Site::DrCold) => match action {
                "restore" => self.cold_restore(acts),
                "recover" => self.cold_recover(acts),
                "retire" => self.cold_retire(acts),
                other => Err(unknown_action(other, &req.target, COLD_ACTIONS)),
            },
            Target::Site(site) => match action {
                "kill" => self.site_kill(site),
                "start" => self.site_start(site),
                other => Err(unknown_action(other, &req.target, SITE_ACTIONS)),
            },
        }
    }

    /// PostgreSQL, Redis and the nginx health endpoint at `site`, in start order.
    fn site_components(&self, site: Site) -> Vec<Component> {
        let mut v: Vec<Component> = Vec::new();
        v.extend(
            self.postgres
                .iter()
                .filter(|p| p.site() == Some(site))
                .map(|p| p.component().clone()),
        );
        v.extend(
            self.redis
                .iter()
                .filter(|r| r.site() == Some(site))
                .map(|r| r.component().clone()),
        );
        v.extend(
            self.http
                .iter()
                .filter(|h| h.site() == Some(site))
                .map(|h| h.component().clone()),
        );
        v
    }

    fn site_kill(&self, site: Site) -> Acted {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for c in self.site_components(site) {
            let n = c.pids().len();
            match c.kill() {
                Ok(()) if n == 0 => done.push(format!("{} was not running", c.name())),
                Ok(()) => done.push(format!("{} killed ({n} processes)", c.name())),
                Err(e) => failed.push(format!("{}: {e:#}", c.name())),
            }
        }
        finish_all(&format!("site {site} down (SIGKILL)"), done, failed)
    }

    fn site_start(&self, site: Site) -> Acted {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for c in self.site_components(site) {
            if c.is_running() {
                done.push(format!("{} already running", c.name()));
                continue;
            }
            match c.start() {
                Ok(()) => done.push(format!(
                    "{} started (pid {})",
                    c.name(),
                    c.pid().map_or("?".into(), |p| p.to_string())
                )),
                Err(e) => failed.push(format!("{}: {e:#}", c.name())),
            }
        }
        finish_all(&format!("site {site} started"), done, failed)
    }

    fn cold_restore(&self, acts: &mut Acts) -> Acted {
        if let Cold::Running(pg) = &acts.cold
            && pg.is_running()
        {
            return Err(Failure::conflict(format!(
                "the dr-cold PostgreSQL is running on {}: retire it first",
                pg.address()
            )));
        }
        acts.cold = Cold::Nothing;
        let plan = &self.cold;
        plan.setup()
            .restore_cold(&plan.base_backup, &plan.root, plan.address)?;
        acts.cold = Cold::Restored;
        let segments = wal_segments(&plan.wal_archive);
        Ok(format!(
            "restored the base backup {} ({:.1} MB) into {}; restore_command copies from {} \
             ({} WAL segments there now), recovery_target_timeline 'latest', promote at the end; \
             will listen on {}; not started (recover starts it)",
            plan.base_backup.display(),
            dir_size(&plan.base_backup) as f64 / 1e6,
            plan.root.join("data").display(),
            plan.wal_archive.display(),
            segments.len(),
            plan.address
        ))
    }

    fn cold_recover(&self, acts: &mut Acts) -> Acted {
        match &acts.cold {
            Cold::Nothing => {
                return Err(Failure::conflict(
                    "nothing restored at dr-cold: run restore first",
                ));
            }
            Cold::Running(pg) if pg.is_running() => {
                return Ok(format!(
                    "already running on {} (in recovery: {})",
                    pg.address(),
                    pg.is_in_recovery()
                        .map_or_else(|e| format!("unknown: {e:#}"), |r| r.to_string())
                ));
            }
            _ => {}
        }
        let plan = &self.cold;
        let log = plan.logs.join(format!("{COLD_NAME}.log"));
        let log_from = std::fs::metadata(&log).map_or(0, |m| m.len());
        let t0 = Instant::now();
        let deadline = t0 + RECOVER_TIMEOUT;
        let pg = plan
            .setup()
            .start_cold(COLD_NAME, &plan.root, plan.address, RECOVER_TIMEOUT)?;
        acts.cold = Cold::Running(pg.clone());
        let accepting = t0.elapsed();
        let mut last = String::new();
        wait_until(deadline, || {
            match pg.is_in_recovery() {
                Ok(r) => {
                    last = format!("in recovery: {r}");
                    Ok(!r)
                }
                Err(e) => {
                    last = format!("{e:#}");
                    Ok(false)
                }
            }
        })
        .map_err(|_| {
            anyhow!(
                "{COLD_NAME}: still not promoted {RECOVER_TIMEOUT:?} after start ({last}); log:\n{}",
                pg.log_tail(20)
            )
        })?;
        let replayed = t0.elapsed();
        // A real write: assigns a transaction id (impossible in recovery or read-only).
        pg.psql("CREATE TEMP TABLE niledr_agent_write_check AS SELECT txid_current() AS xid")
            .context("the promoted dr-cold server refused a write")?;
        let info = pg.psql(
            "SELECT pg_last_wal_replay_lsn(), ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
        )?;
        let (lsn, timeline) = info.split_once('|').unwrap_or((info.as_str(), "?"));
        let restored = restored_segments(&log, log_from);
        Ok(format!(
            "recovered on {}: accepting connections after {:.1} s, replayed {restored} archived WAL \
             segments and promoted after {:.1} s; last replayed LSN {lsn}, now on timeline {timeline}; \
             accepts writes",
            plan.address,
            accepting.as_secs_f64(),
            replayed.as_secs_f64(),
        ))
    }

    fn cold_retire(&self, acts: &mut Acts) -> Acted {
        let previous = std::mem::take(&mut acts.cold);
        let mut what = Vec::new();
        if let Cold::Running(pg) = &previous
            && pg.is_running()
        {
            let t0 = Instant::now();
            if let Err(e) = pg.stop() {
                // Keep the handle: it is still ours to kill.
                acts.cold = previous;
                return Err(e.into());
            }
            what.push(format!(
                "stopped the dr-cold PostgreSQL on {} in {} ms",
                pg.address(),
                t0.elapsed().as_millis()
            ));
        }
        drop(previous);
        let root = &self.cold.root;
        if root.exists() {
            std::fs::remove_dir_all(root)
                .with_context(|| format!("removing {}", root.display()))?;
            what.push(format!("removed {}", root.display()));
        }
        if what.is_empty() {
            Ok("nothing to retire at dr-cold".to_string())
        } else {
            Ok(what.join("; "))
        }
    }
}

fn unknown_action(action: &str, target: &str, valid: &str) -> Failure {
    Failure::bad(format!(
        "unknown action {action:?} for {target} (valid: {valid})"
    ))
}

/// One detail line for several components, or a 500 naming the ones that failed.
fn finish_all(what: &str, done: Vec<String>, failed: Vec<String>) -> Acted {
    if failed.is_empty() {
        Ok(format!("{what}: {}", done.join("; ")))
    } else {
        Err(anyhow!(
            "{what}: failed for {} (done: {})",
            failed.join("; "),
            if done.is_empty() {
                "nothing".to_string()
            } else {
                done.join("; ")
            }
        )
        .into())
    }
}

/// Frozen by SIGSTOP (its leader is in state T).
fn frozen(c: &Component) -> bool {
    c.pid()
        .and_then(process_state)
        .is_some_and(|s| matches!(s, 'T' | 't'))
}

/// kill / hang / resume / stop / start of one server.
fn component_action(c: &Component, action: &str) -> Acted {
    let name = c.name();
    match action {
        "kill" => {
            let leader = c.pid();
            let n = c.pids().len();
            c.kill()?;
            match leader {
                None => Ok(format!("{name} was not running")),
                Some(pid) => Ok(format!(
                    "SIGKILL to {n} processes of {name} (leader pid {pid}), all reaped"
                )),
            }
        }
        "hang" => {
            let pid = c
                .pid()
                .ok_or_else(|| Failure::conflict(format!("{name} is not running")))?;
            c.sigstop()?;
            Ok(format!(
                "SIGSTOP to {} processes of {name} (leader pid {pid}), all stopped",
                c.pids().len()
            ))
        }
        "resume" => {
            let pid = c
                .pid()
                .ok_or_else(|| Failure::conflict(format!("{name} is not running")))?;
            if !frozen(c) {
                // SIGCONT anyway: a straggler may still be stopped.
                c.sigcont()?;
                return Ok(format!("{name} already running (pid {pid}), not stopped"));
            }
            c.sigcont()?;
            Ok(format!(
                "SIGCONT to {} processes of {name} (leader pid {pid}), all running",
                c.pids().len()
            ))
        }
        "stop" => {
            if !c.is_running() {
                c.kill()?;
                return Ok(format!("{name} was not running"));
            }
            let t0 = Instant::now();
            c.stop()?;
            Ok(format!(
                "{name} stopped cleanly (graceful shutdown, every process exited) in {} ms",
                t0.elapsed().as_millis()
            ))
        }
        "start" => {
            if let Some(pid) = c.pid() {
                return Ok(if frozen(c) {
                    format!("{name} already running (pid {pid}) but frozen by SIGSTOP: resume it")
                } else {
                    format!("{name} already running (pid {pid})")
                });
            }
            c.start()?;
            Ok(format!(
                "{name} started (pid {}), accepting connections on {}",
                c.pid().map_or("?".into(), |p| p.to_string()),
                c.address()
            ))
        }
        other => Err(Failure::bad(format!("unknown action {other:?}"))),
    }
}

/// A running standby (else 409).
fn running_standby(pg: &Postgres, what: &str) -> std::result::Result<(), Failure> {
    if !pg.is_running() {
        return Err(Failure::conflict(format!("{} is not running", pg.name())));
    }
    if frozen(pg.component()) {
        return Err(Failure::conflict(format!(
            "{} is frozen by SIGSTOP: resume it first",
            pg.name()
        )));
    }
    if !pg.is_in_recovery()? {
        return Err(Failure::conflict(format!(
            "{} is a primary (not in recovery): {what}",
            pg.name()
        )));
    }
    Ok(())
}

fn wal_receivers(pg: &Postgres) -> Result<u32> {
    let n = pg.psql("SELECT count(*) FROM pg_stat_wal_receiver")?;
    n.parse()
        .with_context(|| format!("count(*) answered {n:?}"))
}

/// Stop the standby's WAL receipt (not just replay): save `primary_conninfo`, set it to ''
/// and reload; wait until the WAL receiver is gone.
fn detach_wal(pg: &Postgres, acts: &mut Acts) -> Acted {
    running_standby(pg, "it receives no WAL to detach from")?;
    let t0 = Instant::now();
    let current = pg.psql("SHOW primary_conninfo")?;
    let note = if current.is_empty() {
        if acts.saved_conninfo.contains_key(pg.name()) {
            "already detached: primary_conninfo is empty, the saved one is kept for attach_wal"
        } else {
            "primary_conninfo was already empty and nothing is saved: attach_wal will have nothing to restore"
        }
    } else {
        acts.saved_conninfo
            .insert(pg.name().to_string(), current.clone());
        pg.psql("ALTER SYSTEM SET primary_conninfo = ''")?;
        pg.psql("SELECT pg_reload_conf()")?;
        "primary_conninfo saved and set to '', configuration reloaded"
    };
    wait_until(Instant::now() + WAL_RECEIVER_TIMEOUT, || {
        Ok(wal_receivers(pg)? == 0)
    })
    .map_err(|e| {
        anyhow!(
            "{}: WAL receiver still running {WAL_RECEIVER_TIMEOUT:?} after clearing primary_conninfo ({e:#})",
            pg.name()
        )
    })?;
    let received = pg.psql("SELECT pg_last_wal_receive_lsn()")?;
    Ok(format!(
        "{note}; no WAL receiver at {} after {} ms; WAL received up to {received}",
        pg.name(),
        t0.elapsed().as_millis()
    ))
}

/// Restore the `primary_conninfo` `detach_wal` saved, reload, wait until streaming.
fn attach_wal(pg: &Postgres, acts: &mut Acts) -> Acted {
    running_standby(pg, "it receives no WAL to attach")?;
    let t0 = Instant::now();
    let saved = acts.saved_conninfo.get(pg.name()).cloned();
    let current = pg.psql("SHOW primary_conninfo")?;
    let note = match saved {
        Some(conninfo) => {
            pg.psql(&format!(
                "ALTER SYSTEM SET primary_conninfo = '{}'",
                conninfo.replace('\'', "''")
            ))?;
            pg.psql("SELECT pg_reload_conf()")?;
            "primary_conninfo restored, configuration reloaded"
        }
        None if !current.is_empty() => "primary_conninfo was not detached",
        None => {
            return Err(Failure::conflict(format!(
                "{}: primary_conninfo is empty and detach_wal saved none",
                pg.name()
            )));
        }
    };
    let mut from = None;
    wait_until(Instant::now() + WAL_RECEIVER_TIMEOUT, || {
        from = pg.streaming_from()?;
        Ok(from.is_some())
    })
    .map_err(|e| {
        anyhow!(
            "{}: not streaming {WAL_RECEIVER_TIMEOUT:?} after restoring primary_conninfo ({e:#}); log:\n{}",
            pg.name(),
            pg.log_tail(10)
        )
    })?;
    acts.saved_conninfo.remove(pg.name());
    Ok(format!(
        "{} streaming again from {} after {} ms ({note})",
        pg.name(),
        from.unwrap_or_default(),
        t0.elapsed().as_millis()
    ))
}

/// Make `pg` a streaming standby of `source`: pg_rewind, falling back to a base backup.
fn reseed(pg: &Postgres, source: &Postgres) -> Acted {
    if !source.is_running() || frozen(source.component()) {
        return Err(Failure::conflict(format!(
            "{} is not running (or frozen): nothing to follow",
            source.name()
        )));
    }
    if source.is_in_recovery()? {
        return Err(Failure::conflict(format!(
            "{} is in recovery: re-seed from a primary",
            source.name()
        )));
    }
    let up = source.address().to_string();
    if pg.is_running()
        && !frozen(pg.component())
        && pg.is_in_recovery().unwrap_or(false)
        && pg.streaming_from().ok().flatten().as_deref() == Some(up.as_str())
    {
        return Ok(format!(
            "{} is already a standby streaming from {} ({up}); nothing to do",
            pg.name(),
            source.name()
        ));
    }
    let (done, fallback) = match pg.reseed_as_standby_of(source, Reseed::Rewind) {
        Ok(r) => (r, String::new()),
        Err(e) => {
            println!(
                "host-agent: reseed {}: pg_rewind failed, falling back to a base backup: {e:#}",
                pg.name()
            );
            let r = pg.reseed_as_standby_of(source, Reseed::BaseBackup)?;
            (r, format!(" after pg_rewind failed ({e:#})"))
        }
    };
    let from = pg.streaming_from()?.unwrap_or_else(|| "?".to_string());
    Ok(format!(
        "{} is a standby of {} streaming from {from}, re-seeded by {}{fallback}: stopped in {:.1} s, \
         copied in {:.1} s, streaming {:.1} s later; {:.1} s in all",
        pg.name(),
        source.name(),
        match done.method {
            Reseed::Rewind => "pg_rewind",
            Reseed::BaseBackup => "pg_basebackup",
        },
        done.stopped.as_secs_f64(),
        done.copied.as_secs_f64(),
        done.streaming.as_secs_f64(),
        done.total.as_secs_f64()
    ))
}

/// Names of the WAL segment files (24 hex digits) in `dir`, sorted.
pub fn wal_segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Total size of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// How many "restored log file" lines the server logged after byte `from` of its log.
fn restored_segments(log: &Path, from: u64) -> usize {
    let Ok(text) = std::fs::read(log) else {
        return 0;
    };
    let start = usize::try_from(from).unwrap_or(0).min(text.len());
    String::from_utf8_lossy(&text[start..])
        .lines()
        .filter(|l| l.contains("restored log file"))
        .count()
}
