//! PostgreSQL steps: the lag gate, fencing the old primary (with evidence when it does not
//! answer), promotion and the switchover wait — forward, undo, observe-only verification and
//! readiness side by side.

use std::time::Duration;

use niledr_probes::ProbeSpec;
use niledr_runbooks::{FenceMode, OnUnreachable};

use super::context::{StepContext, StepError, StepOutcome, fatal, untouched};
use super::took;
use crate::actions::{self, postgres::FenceOutcome};
use crate::util::poll_until;

/// How long the standby must be seen without a WAL stream from the old primary before that
/// counts as evidence the old primary is gone (sampled every `EVIDENCE_POLL`).
const EVIDENCE_WINDOW: Duration = Duration::from_secs(1);
const EVIDENCE_POLL: Duration = Duration::from_millis(250);
/// The longest the fence waits for that evidence (a hung primary keeps its standby's stream
/// "streaming" until the standby's `wal_receiver_timeout`); within the step's timeout.
const EVIDENCE_WAIT: Duration = Duration::from_secs(12);

/// The lag gate of one `postgres.check_lag` attempt.
#[derive(Debug, Clone, Copy)]
pub struct LagGate {
    pub max_lag_bytes: u64,
    pub max_lag_seconds: Option<u64>,
    pub max_lag_age_ms: Option<u64>,
    /// Break-glass approval: stale evidence is accepted, loudly.
    pub break_glass: bool,
}

pub async fn check_lag(
    ctx: &StepContext,
    service: &str,
    gate: LagGate,
) -> Result<String, StepError> {
    let standby = ctx.pg(service)?;
    // Whom it streams from right now; the config's `upstream` when it does not stream (the
    // primary is down). After a switchover the direction is reversed, so the static config
    // alone would measure against the wrong server.
    let upstream = match live_upstream(ctx, service).await {
        Some(u) => u,
        None => upstream_of(ctx, service)?,
    };
    let primary = ctx.pg(&upstream)?;
    let r = actions::postgres::check_lag(
        &standby,
        &primary,
        gate.max_lag_bytes,
        gate.max_lag_seconds.map_or(f64::INFINITY, |s| s as f64),
    )
    .await?;
    if r.within_bounds {
        return Ok(r.reason);
    }
    let Some(primary_error) = r.primary_error else {
        return Err(StepError {
            error: format!("lag gate: {}", r.reason),
            retryable: true,
            untouched: true,
        });
    };
    // The primary is gone, so the lag cannot be measured now: the last lag the probes measured
    // while it was alive is what the standby has at most lost.
    let history = |id: &str| -> Result<Vec<(String, bool, Option<u64>)>, StepError> {
        Ok(ctx
            .store
            .probe_history(id, 500)
            .map_err(|e| fatal(format!("reading probe history of {id}: {e:#}")))?
            .into_iter()
            .map(|p| (p.at, p.ok, p.lag))
            .collect())
    };
    let bound = gate
        .max_lag_age_ms
        .map_or_else(|| probe_interval(ctx, service) * 3, Duration::from_millis);
    let evidence = LagEvidence {
        standby: &history(service)?,
        primary: &history(&upstream)?,
        primary_name: &upstream,
        now: jiff::Timestamp::now(),
    };
    evidence
        .judge(gate, bound)
        .map(|ok| format!("primary unreachable ({primary_error}); {ok}"))
        .map_err(fatal)
}

/// Probe history (newest first: time, ok, lag) of the standby and of its gone primary.
struct LagEvidence<'a> {
    standby: &'a [(String, bool, Option<u64>)],
    primary: &'a [(String, bool, Option<u64>)],
    primary_name: &'a str,
    now: jiff::Timestamp,
}

impl LagEvidence<'_> {
    /// The last measured lag counts only if it was measured at most `bound` before the
    /// primary was last seen answering (older evidence proves nothing), unless break-glass.
    fn judge(&self, gate: LagGate, bound: Duration) -> Result<String, String> {
        let Some((lag, at)) = self
            .standby
            .iter()
            .find_map(|(at, _, lag)| lag.map(|l| (l, at)))
        else {
            return Err("lag gate: the primary is unreachable and no lag was ever measured".into());
        };
        let measured = parse_ts(at)?;
        let last_alive = match self.primary.iter().find(|(_, ok, _)| *ok) {
            Some((t, _, _)) => parse_ts(t)?,
            None => self.now,
        };
        let age = Duration::try_from(last_alive.duration_since(measured)).unwrap_or(Duration::ZERO);
        let upstream = self.primary_name;
        let stale = format!(
            "the last measured lag ({lag} B at {at}) is {:.1} s older than the moment {upstream} \
             was last seen answering, more than max_lag_age {:.1} s",
            age.as_secs_f64(),
            bound.as_secs_f64()
        );
        let stale_note = if age <= bound {
            String::new()
        } else if gate.break_glass {
            format!(" (BREAK-GLASS: accepted although {stale})")
        } else {
            return Err(format!(
                "lag gate: {stale}: stale evidence (break-glass approval, or a step with a larger max_lag_age, to proceed anyway)"
            ));
        };
        if lag > gate.max_lag_bytes {
            return Err(format!(
                "lag gate: last measured lag {lag} B at {at} exceeds {} B",
                gate.max_lag_bytes
            ));
        }
        Ok(format!(
            "last measured lag {lag} B at {at} ({:.1} s before {upstream} was last seen) is within {} B{stale_note}",
            age.as_secs_f64(),
            gate.max_lag_bytes
        ))
    }
}

fn parse_ts(s: &str) -> Result<jiff::Timestamp, String> {
    s.parse()
        .map_err(|e| format!("probe history holds an unreadable time {s:?}: {e}"))
}

fn probe_interval(ctx: &StepContext, service: &str) -> Duration {
    ctx.config
        .services
        .get(service)
        .map_or(Duration::from_secs(1), |s| s.probe.interval)
}

pub async fn fence(
    ctx: &StepContext,
    service: &str,
    mode: FenceMode,
    on_unreachable: OnUnreachable,
    timeout: Duration,
) -> Result<StepOutcome, StepError> {
    if mode == FenceMode::Stop {
        return Err(fatal(
            "fence mode `stop` needs shell access to the old primary's host, which niledr does not have; use `read_only`",
        ));
    }
    let r = actions::postgres::fence(&ctx.pg(service)?).await?;
    let FenceOutcome::Unreachable { error } = &r else {
        return Ok(StepOutcome::Done(r.summary()));
    };
    let down_for = probe_down_for(ctx, service);
    let unreachable = format!("unreachable: {service} did not answer ({error}); {down_for}");
    match on_unreachable {
        OnUnreachable::Proceed => Ok(StepOutcome::Done(format!(
            "{unreachable}; not fenced, proceeding (on_unreachable = proceed)"
        ))),
        OnUnreachable::Confirm => Ok(StepOutcome::AwaitConfirm(format!(
            "{unreachable}; waiting for an operator's confirm (on_unreachable = confirm)"
        ))),
        OnUnreachable::RequireEvidence => match standby_evidence(
            ctx,
            service,
            EVIDENCE_WAIT.min(timeout.saturating_sub(Duration::from_secs(2))),
        )
        .await
        {
            Ok(evidence) => Ok(StepOutcome::Done(format!(
                "{unreachable}; evidence it is gone: {evidence}"
            ))),
            Err(no) => Ok(StepOutcome::AwaitConfirm(format!(
                "{unreachable}; NO evidence it is gone: {no}; it may still take writes where \
                 niledr cannot see: waiting for an operator's confirm"
            ))),
        },
    }
}

/// How long niledr's own probes have failed the service (from the health model).
fn probe_down_for(ctx: &StepContext, service: &str) -> String {
    let Ok(model) = ctx.shared.model.read() else {
        return "health model unavailable".into();
    };
    match model.services.get(service) {
        Some(s) => {
            let since = jiff::Timestamp::now().duration_since(s.since);
            format!(
                "niledr's probes: {} for {:.1} s ({})",
                s.status,
                since.as_secs_f64(),
                s.reason
            )
        }
        None => "not probed by niledr".into(),
    }
}

/// The holistic check: every standby the config streams from `service` must show no WAL
/// stream from it in its own `pg_stat_wal_receiver` for `EVIDENCE_WINDOW` on end, within
/// `wait`. `Err` says what was seen instead.
async fn standby_evidence(
    ctx: &StepContext,
    service: &str,
    wait: Duration,
) -> Result<String, String> {
    let addr = ctx.service_addr(service).map_err(|e| format!("{e:#}"))?;
    let standbys: Vec<&String> = ctx
        .config
        .services
        .iter()
        .filter(|(_, s)| {
            s.upstream.as_deref() == Some(service) && matches!(s.spec, ProbeSpec::Postgres(_))
        })
        .map(|(id, _)| id)
        .collect();
    if standbys.is_empty() {
        return Err(format!(
            "no service in the config has `upstream = \"{service}\"`, so no standby can confirm"
        ));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = Vec::new();
    for id in standbys {
        let target = ctx.pg(id).map_err(|e| format!("{e:#}"))?;
        seen.push(lost_upstream(id, &target, addr, deadline).await?);
    }
    Ok(seen.join("; "))
}

/// Poll one standby until it has shown no stream from `addr` for `EVIDENCE_WINDOW` on end,
/// or `deadline` passes (then `Err` with what it last showed).
async fn lost_upstream(
    id: &str,
    target: &crate::actions::postgres::PgTarget,
    addr: std::net::SocketAddr,
    deadline: tokio::time::Instant,
) -> Result<String, String> {
    let host = addr.ip().to_string();
    let since = std::sync::Mutex::new(None::<tokio::time::Instant>);
    let last = std::sync::Mutex::new(String::new());
    let waited = tokio::time::Instant::now();
    let r = poll_until(deadline, EVIDENCE_POLL, || async {
        let (streaming, s) = actions::postgres::streams_from(target, &host, addr.port())
            .await
            .map_err(|e| format!("{id} does not answer ({e:#})"))?;
        if let Ok(mut l) = last.lock() {
            *l = s;
        }
        let Ok(mut since) = since.lock() else {
            return Ok(false);
        };
        if streaming {
            *since = None;
            return Ok(false);
        }
        let start = *since.get_or_insert_with(tokio::time::Instant::now);
        Ok(start.elapsed() >= EVIDENCE_WINDOW)
    })
    .await;
    let last = last.into_inner().unwrap_or_default();
    match r {
        Ok(()) => Ok(format!(
            "{id} has no WAL stream from {addr} for {:.1} s on end ({last}; waited {:.1} s)",
            EVIDENCE_WINDOW.as_secs_f64(),
            waited.elapsed().as_secs_f64()
        )),
        Err(Some(why)) => Err(why),
        Err(None) => Err(format!(
            "{id} still streams from it after {:.1} s ({last})",
            waited.elapsed().as_secs_f64()
        )),
    }
}

pub async fn promote(
    ctx: &StepContext,
    service: &str,
    timeout: Duration,
) -> Result<String, StepError> {
    let target = ctx.pg(service).map_err(untouched)?;
    let r = actions::postgres::promote(&target, timeout).await?;
    Ok(r.summary())
}

pub async fn wait_caught_up(
    ctx: &StepContext,
    service: &str,
    of: &str,
    timeout: Duration,
) -> Result<String, StepError> {
    let r = actions::postgres::wait_caught_up(&ctx.pg(service)?, &ctx.pg(of)?, timeout).await?;
    Ok(format!(
        "{service} replayed {} ≥ {of}'s {} after {:.1} ms",
        r.replay_lsn,
        r.target_lsn,
        r.waited.as_secs_f64() * 1000.0
    ))
}

/// Undo a fence (only ever before the point of no return).
pub async fn unfence(ctx: &StepContext, service: &str) -> Result<String, StepError> {
    let r = actions::postgres::unfence(&ctx.pg(service)?).await?;
    Ok(format!(
        "{service} writable again (was read-only: {}; login given back to [{}]){}",
        r.was_read_only,
        r.roles.join(", "),
        took(r.took)
    ))
}

/// Verification of a promotion: observe only — the server is out of recovery and a new
/// session is writable. Never promotes.
pub async fn verify_promoted(ctx: &StepContext, service: &str) -> Result<String, StepError> {
    let s = actions::postgres::observe(&ctx.pg(service)?).await?;
    if s.in_recovery {
        return Err(fatal(format!(
            "{service} is still in recovery (a standby): it was not promoted"
        )));
    }
    if s.read_only {
        return Err(fatal(format!(
            "{service} is a primary but read-only: it does not take writes"
        )));
    }
    Ok(format!(
        "{service} is a writable primary on timeline {}",
        s.timeline
    ))
}

/// Does the server answer (the precondition of acting on it)?
pub async fn ready_answers(ctx: &StepContext, service: &str) -> Result<String, String> {
    let target = ctx.pg(service).map_err(|e| format!("{e:#}"))?;
    match actions::postgres::observe(&target).await {
        Ok(s) => Ok(format!(
            "{service} answers ({})",
            if s.in_recovery { "standby" } else { "primary" }
        )),
        Err(e) => Err(format!("{service} does not answer: {e:#}")),
    }
}

/// The configured PostgreSQL service `service`'s WAL receiver is connected to, if any.
async fn live_upstream(ctx: &StepContext, service: &str) -> Option<String> {
    let (host, port) = actions::postgres::wal_sender(&ctx.pg(service).ok()?)
        .await
        .ok()??;
    ctx.config
        .services
        .iter()
        .find_map(|(id, s)| match &s.spec {
            ProbeSpec::Postgres(p)
                if id != service
                    && p.endpoint.address.port() == port
                    && p.endpoint.address.ip().to_string() == host =>
            {
                Some(id.clone())
            }
            _ => None,
        })
}

fn upstream_of(ctx: &StepContext, service: &str) -> Result<String, StepError> {
    ctx.config
        .services
        .get(service)
        .and_then(|s| s.upstream.clone())
        .ok_or_else(|| {
            fatal(format!(
                "{service} has no `upstream` in the config to measure lag against"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(break_glass: bool) -> LagGate {
        LagGate {
            max_lag_bytes: 1000,
            max_lag_seconds: None,
            max_lag_age_ms: Some(3000),
            break_glass,
        }
    }

    fn judge(
        standby: &[(&str, bool, Option<u64>)],
        primary: &[(&str, bool, Option<u64>)],
        g: LagGate,
    ) -> Result<String, String> {
        let own = |h: &[(&str, bool, Option<u64>)]| -> Vec<(String, bool, Option<u64>)> {
            h.iter()
                .map(|(t, ok, l)| ((*t).to_string(), *ok, *l))
                .collect()
        };
        LagEvidence {
            standby: &own(standby),
            primary: &own(primary),
            primary_name: "khartoum-postgres",
            now: "2026-12-01T10:00:00Z".parse().unwrap(),
        }
        .judge(g, Duration::from_millis(3000))
    }

    #[test]
    fn stale_lag_evidence_is_refused_unless_break_glass() {
        // Fresh: measured 1 s before the primary's last good probe.
        let fresh = judge(
            &[
                ("2026-12-01T09:59:40Z", true, None),
                ("2026-12-01T09:59:29Z", true, Some(10)),
            ],
            &[
                ("2026-12-01T09:59:40Z", false, None),
                ("2026-12-01T09:59:30Z", true, None),
            ],
            gate(false),
        );
        assert!(
            fresh.as_ref().is_ok_and(|s| s.contains("10 B")),
            "{fresh:?}"
        );
        // Stale: the lag was last measured 20 s before the primary was last seen.
        let standby = [("2026-12-01T09:59:10Z", true, Some(10))];
        let primary = [("2026-12-01T09:59:30Z", true, None)];
        let e = judge(&standby, &primary, gate(false)).unwrap_err();
        assert!(
            e.contains("20.0 s older") && e.contains("stale evidence"),
            "{e}"
        );
        let bg = judge(&standby, &primary, gate(true)).unwrap();
        assert!(bg.contains("BREAK-GLASS"), "{bg}");
        // Too much lag is refused even with break-glass; no measurement at all too.
        let big = [("2026-12-01T09:59:29Z", true, Some(5000))];
        assert!(
            judge(&big, &primary, gate(true))
                .unwrap_err()
                .contains("exceeds")
        );
        assert!(
            judge(&[], &primary, gate(true))
                .unwrap_err()
                .contains("no lag was ever measured")
        );
    }
}
