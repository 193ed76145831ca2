//! Pager tooling in (`POST /api/v1/hooks/{alertmanager,pagerduty,generic}`, docs/hooks.md):
//! each call is authenticated (`verify`), its body read in its source's format (`parse`),
//! replays refused, and every alert routed by the `[[hooks.matchers]]` (`matchers`) to a
//! service and a runbook; the engine then decides, on its own thread, what each alert does
//! (`crate::engine` `hooks.rs`, with the memory and the rules in `memory`). Refusals are
//! answered 401 (409 for a replay, 400 for a body that is not the format) and audited, with
//! bursts counted (`refusals`).

pub mod matchers;
pub mod memory;
pub mod parse;
pub mod refusals;
pub mod verify;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use niledr_web::types::HookAnswerView;
use niledr_web::{ApiError, HookRequest, HookSource};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::config::hooks::Secrets;
use crate::event_loop::Event;
use crate::store::{AuditEvent, Store};
use verify::Refusal;

/// Every `[[hooks.matchers]]` runbook must be loaded; refused at its file:line:column.
pub fn check_runbooks(
    config: &Config,
    runbooks: &std::collections::BTreeMap<String, crate::engine::LoadedRunbook>,
) -> Result<(), crate::config::ConfigError> {
    let known: Vec<&str> = runbooks.keys().map(String::as_str).collect();
    config.hooks.check_runbooks(&known)
}

/// An alert and the matcher entry it fell under (none: it is audited as unmatched).
#[derive(Clone, Debug)]
pub struct RoutedAlert {
    pub alert: parse::Incoming,
    pub route: Option<matchers::Route>,
}

/// Why a call was not taken.
#[derive(Debug)]
enum NotTaken {
    Refused(Refusal),
    BadBody(String),
}

impl From<Refusal> for NotTaken {
    fn from(r: Refusal) -> Self {
        NotTaken::Refused(r)
    }
}

impl NotTaken {
    fn kind(&self) -> &'static str {
        match self {
            NotTaken::Refused(r) => r.kind(),
            NotTaken::BadBody(_) => "bad_payload",
        }
    }

    fn api(self) -> ApiError {
        match self {
            NotTaken::Refused(r @ Refusal::Replayed(_)) => ApiError::Conflict(r.to_string()),
            NotTaken::Refused(r) => ApiError::Unauthorized(r.to_string()),
            NotTaken::BadBody(m) => ApiError::BadRequest(m),
        }
    }

    fn message(&self) -> String {
        match self {
            NotTaken::Refused(r) => r.to_string(),
            NotTaken::BadBody(m) => m.clone(),
        }
    }
}

/// Store meta key of the event ids seen within the replay window.
const SEEN_KEY: &str = "hooks.seen_ids";

pub struct HookService {
    config: Arc<Config>,
    store: Arc<Store>,
    engine_tx: mpsc::Sender<Event>,
    seen: Mutex<verify::Seen>,
    refusals: refusals::RefusalLog,
}

impl HookService {
    pub fn new(config: Arc<Config>, store: Arc<Store>, engine_tx: mpsc::Sender<Event>) -> Self {
        let seen = Mutex::new(Self::load_seen(&store));
        HookService {
            config,
            store,
            engine_tx,
            seen,
            refusals: refusals::RefusalLog::default(),
        }
    }

    /// Verify, parse, route and hand the alerts to the engine; answers once what they
    /// caused (proposals, notes, the alert memory, their audit) is committed.
    pub async fn handle(&self, req: HookRequest) -> Result<HookAnswerView, ApiError> {
        let source = req.source;
        let Some(secrets) = self.config.hooks.secrets(source) else {
            return Err(ApiError::NotFound(format!(
                "the {0} hook is not configured: add [hooks.{0}] to the config",
                source.as_str()
            )));
        };
        let alerts = match self.accept(secrets, &req) {
            Ok(a) => a,
            Err(e) => {
                self.refused(&req, &e).await;
                return Err(e.api());
            }
        };
        let routes = &self.config.hooks.routes;
        let alerts: Vec<RoutedAlert> = alerts
            .into_iter()
            .map(|alert| RoutedAlert {
                route: matchers::route(routes, source, &alert.labels).cloned(),
                alert,
            })
            .collect();
        let (reply, rx) = oneshot::channel();
        let ev = Event::Engine(Box::new(crate::engine::EngineEvent::Hook {
            source,
            alerts,
            reply,
        }));
        let gone = || {
            ApiError::Unavailable(
                "executions are not running on this instance (no [runbooks], shutting down, or not the leader); retry".into(),
            )
        };
        self.engine_tx.send(ev).await.map_err(|_| gone())?;
        let alerts = rx.await.map_err(|_| gone())?;
        Ok(HookAnswerView {
            source: source.as_str().into(),
            alerts,
        })
    }

    fn accept(
        &self,
        secrets: &Secrets,
        req: &HookRequest,
    ) -> Result<Vec<parse::Incoming>, NotTaken> {
        let window = self.config.hooks.replay_window;
        let now = jiff::Timestamp::now();
        match req.source {
            HookSource::Alertmanager => {
                verify::bearer(secrets, req.authorization.as_deref())?;
                parse::alertmanager(&req.body).map_err(NotTaken::BadBody)
            }
            HookSource::PagerDuty => {
                verify::pagerduty(secrets, req.signature.as_deref(), &req.body)?;
                let d = parse::pagerduty(&req.body).map_err(NotTaken::BadBody)?;
                verify::check_window(d.occurred_at.as_millisecond(), now.as_millisecond(), window)?;
                self.first_time(&format!("pagerduty:{}", d.event_id))?;
                Ok(d.alerts)
            }
            HookSource::Generic => {
                let ts = verify::generic(
                    secrets,
                    req.signature.as_deref(),
                    req.timestamp.as_deref(),
                    &req.body,
                    now.as_second(),
                    window,
                )?;
                let alerts = parse::generic(&req.body).map_err(NotTaken::BadBody)?;
                // The signed content identifies the delivery (however its signature header is
                // written): the same timestamp and body again is a replay.
                use sha2::Digest;
                let digest = hex::encode(sha2::Sha256::digest(&req.body));
                self.first_time(&format!("generic:{ts}:{digest}"))?;
                Ok(alerts)
            }
        }
    }

    fn first_time(&self, id: &str) -> Result<(), Refusal> {
        let mut seen = match self.seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = jiff::Timestamp::now().as_millisecond();
        seen.first_time(id, now, self.config.hooks.replay_window)?;
        // Kept before the delivery is acted on, so a restart refuses its replay too. A store
        // that cannot keep it costs at most a duplicate alert (deduplicated by fingerprint).
        let kept = serde_json::to_string(&*seen)
            .map_err(anyhow::Error::from)
            .and_then(|json| self.store.set_meta(SEEN_KEY, &json));
        if let Err(e) = kept {
            tracing::warn!("cannot keep hook event id {id:?} in the store: {e:#}");
        }
        Ok(())
    }

    /// The event ids remembered before a restart (none when nothing was kept, or it does
    /// not read: logged, and then only the replay window protects).
    fn load_seen(store: &Store) -> verify::Seen {
        match store.meta(SEEN_KEY) {
            Ok(None) => verify::Seen::default(),
            Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_else(|e| {
                tracing::error!("the kept hook event ids do not read ({e}); starting without them");
                verify::Seen::default()
            }),
            Err(e) => {
                tracing::error!("cannot read the kept hook event ids: {e:#}");
                verify::Seen::default()
            }
        }
    }

    /// Audit (and log) a refused call, bursts counted.
    async fn refused(&self, req: &HookRequest, e: &NotTaken) {
        let source = req.source.as_str();
        let refusals::Note::Audit { suppressed } = self.refusals.note(req.source, Instant::now())
        else {
            return;
        };
        let client = req.client.map(|c| c.to_string());
        tracing::warn!(
            source,
            client = client.as_deref().unwrap_or("-"),
            refusal = e.kind(),
            suppressed_before = suppressed,
            "hook call refused: {}",
            e.message()
        );
        let detail = serde_json::json!({
            "source": source,
            "client": client,
            "refusal": e.kind(),
            "reason": e.message(),
            "suppressed_before": suppressed,
        });
        let store = self.store.clone();
        let actor = format!("hook:{source}");
        let written = tokio::task::spawn_blocking(move || {
            store.append_audit(vec![AuditEvent {
                actor: &actor,
                action: "hook.refused",
                detail,
            }])
        })
        .await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::error!("cannot audit a refused hook call: {err:#}"),
            Err(err) => tracing::error!("the hook refusal audit task failed: {err}"),
        }
    }
}
