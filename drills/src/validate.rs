//! `parse_drill`: TOML text → checked `Drill`, refusing with file, line, column and what to fix
//! anything a scheduler could not run safely (unknown names, bad cron or time zone, faults that
//! do not fit their target, zero objectives, `[[automate]]` entries that name no manual step or
//! ask the host agent for something it cannot do to their target).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use jiff::civil::Time;
use niledr_runbooks::{Action, Catalog, Runbook, RunbookError, ServiceKind, SiteRole};

use crate::raw::{RawAbort, RawAutomation, RawDrill, RawObjectives, RawScenario, Str};
use crate::schedule;
use crate::schema::{
    AbortPolicy, ApprovalMode, Automation, BlackoutWindow, Cleanup, Drill, FaultKind, HostAction,
    Objectives, Scenario, Store,
};

/// The time zone drills run in unless they say otherwise.
pub const DEFAULT_TIMEZONE: &str = "Africa/Khartoum";
/// Peak hours: no scheduled drill unless the file says otherwise (`blackout = []`).
pub const DEFAULT_BLACKOUT: &str = "08:00-20:00";
pub const DEFAULT_RTO_FACTOR: f64 = 2.0;

type R<T> = Result<T, RunbookError>;

/// What `parse_drill` needs to know of a loaded runbook: its name and the ids of its manual
/// (`manual.confirm`) steps, in runbook order. Build it with `RunbookInfo::from(&runbook)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookInfo {
    pub name: String,
    pub manual_steps: Vec<String>,
}

impl From<&Runbook> for RunbookInfo {
    fn from(runbook: &Runbook) -> Self {
        RunbookInfo {
            name: runbook.name.clone(),
            manual_steps: runbook
                .steps
                .iter()
                .filter(|s| matches!(s.action, Action::ManualConfirm { .. }))
                .map(|s| s.id.clone())
                .collect(),
        }
    }
}

/// Parse and check a drill. `file` is only used in messages; `runbooks` are the runbooks the
/// orchestrator loaded (the drill's runbook and cleanup runbook must be among them; its
/// `[[automate]]` steps must be their manual steps).
pub fn parse_drill(
    file: &Path,
    text: &str,
    catalog: &Catalog,
    runbooks: &[RunbookInfo],
) -> Result<Drill, RunbookError> {
    let raw: RawDrill = toml::from_str(text)
        .map_err(|e| RunbookError::at(file, text, e.span(), e.message().trim_end().to_string()))?;
    Checker {
        file,
        text,
        catalog,
        runbooks,
    }
    .drill(raw)
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    catalog: &'a Catalog,
    runbooks: &'a [RunbookInfo],
}

use niledr_runbooks::validate::list;

impl Checker<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> RunbookError {
        RunbookError::at(self.file, self.text, Some(span), message)
    }

    /// 1-based line of a byte offset, for "first on line N" hints.
    fn line_of(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn drill(&self, raw: RawDrill) -> R<Drill> {
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(self.err(
                raw.name.span(),
                "a drill name is lower-case letters, digits and `-`, e.g. \"postgres-primary-failure\"",
            ));
        }
        let timezone = match &raw.timezone {
            None => DEFAULT_TIMEZONE.to_string(),
            Some(tz) => {
                let tz_name = tz.get_ref().trim();
                if jiff::tz::TimeZone::get(tz_name).is_err() {
                    return Err(self.err(
                        tz.span(),
                        format!(
                            "unknown time zone {tz_name:?}; use an IANA name such as \"{DEFAULT_TIMEZONE}\""
                        ),
                    ));
                }
                tz_name.to_string()
            }
        };
        let blackout = match &raw.blackout {
            None => vec![parse_window(DEFAULT_BLACKOUT).map_err(|m| self.err(0..0, m))?],
            Some(ws) => ws
                .get_ref()
                .iter()
                .map(|w| parse_window(w.get_ref()).map_err(|m| self.err(w.span(), m)))
                .collect::<R<Vec<_>>>()?,
        };
        let schedule = match &raw.schedule {
            None => None,
            Some(s) => {
                let expr = s.get_ref().trim().to_string();
                schedule::parse_cron(&expr).map_err(|m| self.err(s.span(), m))?;
                schedule::check_fires(&expr, &timezone, &blackout)
                    .map_err(|m| self.err(s.span(), m))?;
                Some(expr)
            }
        };
        let runbook = self.runbook_name(&raw.runbook)?;
        let approval = match &raw.approval {
            None => ApprovalMode::Live,
            Some(a) => match a.get_ref().as_str() {
                "live" => ApprovalMode::Live,
                "standing" => ApprovalMode::Standing,
                other => {
                    return Err(self.err(
                        a.span(),
                        format!(
                            "unknown approval mode {other:?}; use \"live\" (approve each run) or \"standing\" (two people pre-approve this file's digest)"
                        ),
                    ));
                }
            },
        };
        let scenario = self.scenario(raw.scenario.get_ref())?;
        let objectives = self.objectives(raw.objectives.get_ref(), raw.objectives.span())?;
        let abort = self.abort(raw.abort.as_ref().map(|a| a.get_ref()))?;
        let cleanup = raw
            .cleanup
            .as_ref()
            .map(|c| {
                self.runbook_name(&c.get_ref().runbook)
                    .map(|runbook| Cleanup { runbook })
            })
            .transpose()?;
        let automate = self.automate(
            raw.automate.as_deref().unwrap_or_default(),
            &runbook,
            cleanup.as_ref(),
        )?;
        let mut drill = Drill {
            name,
            description: raw.description.unwrap_or_default().trim().to_string(),
            schedule,
            timezone,
            blackout,
            runbook,
            approval,
            scenario,
            objectives,
            abort,
            cleanup,
            automate,
            digest: String::new(),
        };
        drill.digest = drill.compute_digest();
        Ok(drill)
    }

    fn runbook_name(&self, s: &Str) -> R<String> {
        let name = s.get_ref().trim();
        if self.runbooks.iter().any(|r| r.name == name) {
            Ok(name.to_string())
        } else {
            Err(self.err(
                s.span(),
                format!(
                    "unknown runbook {name:?}; loaded runbooks: {}",
                    list(self.runbooks.iter().map(|r| r.name.as_str()))
                ),
            ))
        }
    }

    /// `[[automate]]`: each names a manual step of the runbook or the cleanup runbook, once,
    /// with a host action that fits its target.
    fn automate(
        &self,
        raw: &[RawAutomation],
        runbook: &str,
        cleanup: Option<&Cleanup>,
    ) -> R<Vec<Automation>> {
        let mut sources: Vec<(&str, &RunbookInfo)> = Vec::new();
        for (role, name) in [
            ("runbook", Some(runbook)),
            ("cleanup runbook", cleanup.map(|c| c.runbook.as_str())),
        ] {
            if let Some(info) = name.and_then(|n| self.runbooks.iter().find(|r| r.name == n)) {
                sources.push((role, info));
            }
        }
        let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
        let mut out = Vec::new();
        for a in raw {
            let step = a.step.get_ref().trim().to_string();
            if !sources.iter().any(|(_, r)| r.manual_steps.contains(&step)) {
                let of = sources
                    .iter()
                    .map(|(role, r)| format!("{role} `{}`", r.name))
                    .collect::<Vec<_>>()
                    .join(" or ");
                let manual = sources
                    .iter()
                    .map(|(role, r)| format!("{role} `{}`: {}", r.name, list(&r.manual_steps)))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(self.err(
                    a.step.span(),
                    format!(
                        "{step:?} is not a manual step of {of}: `[[automate]]` names `manual.confirm` steps (steps of other kinds run by themselves); manual steps of {manual}"
                    ),
                ));
            }
            if let Some(first) = seen.get(&step) {
                return Err(self.err(
                    a.step.span(),
                    format!(
                        "step `{step}` is automated twice (first on line {}); keep one `[[automate]]` table per step",
                        self.line_of(first)
                    ),
                ));
            }
            seen.insert(step.clone(), a.step.span());
            let action_name = a.action.get_ref().trim();
            let Some(action) = HostAction::parse(action_name) else {
                return Err(self.err(
                    a.action.span(),
                    format!(
                        "unknown action {action_name:?}; expected one of {}",
                        list(HostAction::ALL.iter().map(|k| k.as_str()))
                    ),
                ));
            };
            let target = self.host_target(a, action)?;
            let of = self.reseed_of(a, action, target.as_deref())?;
            out.push(Automation {
                step,
                target,
                action,
                of,
                note: a
                    .note
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
            });
        }
        Ok(out)
    }

    /// The target of an automation: none for `confirm`, else a service or site it fits.
    fn host_target(&self, a: &RawAutomation, action: HostAction) -> R<Option<String>> {
        if !action.needs_target() {
            return match &a.target {
                None => Ok(None),
                Some(t) => Err(self.err(
                    t.span(),
                    "`confirm` takes no `target`: the drill confirms the step itself and no host acts; remove `target`, or pick the host action that performs the step",
                )),
            };
        }
        let Some(t) = &a.target else {
            return Err(self.err(
                a.action.span(),
                format!(
                    "`{action}` needs a `target`; targets that fit `{action}`: {}",
                    self.targets_for(action)
                ),
            ));
        };
        let target = t.get_ref().trim();
        let (fits, what) = if let Some(s) = self.catalog.services.get(target) {
            (
                action.fits_service(s.kind),
                format!("a {} service", s.kind.as_str()),
            )
        } else if let Some(s) = self.catalog.sites.get(target) {
            (
                action.fits_site(s.role),
                format!("a {} site", role_str(s.role)),
            )
        } else {
            let services = list(self.catalog.services.keys());
            let sites = list(self.catalog.sites.keys());
            return Err(self.err(
                t.span(),
                format!("unknown target {target:?}; services: {services}; sites: {sites}"),
            ));
        };
        if !fits {
            return Err(self.err(
                a.action.span(),
                format!(
                    "action `{action}` does not fit target {target:?} ({what}); actions that fit {target:?}: {}; targets that fit `{action}`: {}",
                    self.actions_for(target),
                    self.targets_for(action)
                ),
            ));
        }
        Ok(Some(target.to_string()))
    }

    /// `of`: required by `reseed` (another postgres service), refused elsewhere.
    fn reseed_of(
        &self,
        a: &RawAutomation,
        action: HostAction,
        target: Option<&str>,
    ) -> R<Option<String>> {
        let others = || {
            list(
                self.catalog
                    .services
                    .iter()
                    .filter(|(id, s)| {
                        s.kind == ServiceKind::Postgres && Some(id.as_str()) != target
                    })
                    .map(|(id, _)| id.as_str()),
            )
        };
        match (&a.of, action.needs_of()) {
            (None, false) => Ok(None),
            (Some(o), false) => Err(self.err(
                o.span(),
                format!(
                    "`of` only goes with `reseed` (the service to follow); remove it from this `{action}`"
                ),
            )),
            (None, true) => Err(self.err(
                a.action.span(),
                format!(
                    "`{action}` needs `of`: the postgres service the target follows once re-seeded; one of {}",
                    others()
                ),
            )),
            (Some(o), true) => {
                let of = o.get_ref().trim();
                let is_pg = self
                    .catalog
                    .services
                    .get(of)
                    .is_some_and(|s| s.kind == ServiceKind::Postgres);
                if !is_pg || Some(of) == target {
                    return Err(self.err(
                        o.span(),
                        format!(
                            "`of` is the postgres service the target follows once re-seeded, other than the target itself; {of:?} is not one; one of {}",
                            others()
                        ),
                    ));
                }
                Ok(Some(of.to_string()))
            }
        }
    }

    fn targets_for(&self, action: HostAction) -> String {
        let services = self
            .catalog
            .services
            .iter()
            .filter(|(_, s)| action.fits_service(s.kind))
            .map(|(id, _)| id.as_str());
        let sites = self
            .catalog
            .sites
            .iter()
            .filter(|(_, s)| action.fits_site(s.role))
            .map(|(id, _)| id.as_str());
        list(services.chain(sites))
    }

    fn actions_for(&self, target: &str) -> String {
        let fits = |a: HostAction| {
            if let Some(s) = self.catalog.services.get(target) {
                a.fits_service(s.kind)
            } else {
                self.catalog
                    .sites
                    .get(target)
                    .is_some_and(|s| a.fits_site(s.role))
            }
        };
        let actions: Vec<&str> = HostAction::ALL
            .into_iter()
            .filter(|a| fits(*a))
            .map(HostAction::as_str)
            .collect();
        if actions.is_empty() {
            "none (the host agent acts on postgres and redis services and on sites)".to_string()
        } else {
            actions.join(", ")
        }
    }

    fn scenario(&self, raw: &RawScenario) -> R<Scenario> {
        let fault_name = raw.fault.get_ref().trim();
        let Some(fault) = FaultKind::parse(fault_name) else {
            return Err(self.err(
                raw.fault.span(),
                format!(
                    "unknown fault {fault_name:?}; expected one of {}",
                    list(FaultKind::ALL.iter().map(|k| k.as_str()))
                ),
            ));
        };
        let target = raw.target.get_ref().trim().to_string();
        self.target_fits(fault, &target, raw.target.span())?;
        let lag_before_fault_ms = match &raw.lag_before_fault {
            None => None,
            Some(lag) => {
                if !fault.allows_lag_injection() {
                    return Err(self.err(
                        lag.span(),
                        format!(
                            "`lag_before_fault` does not apply to {fault}; it needs a fault that makes a standby take over (kill_primary_postgres, hang_primary_postgres, site_down)"
                        ),
                    ));
                }
                Some(self.duration(lag, "lag_before_fault")?)
            }
        };
        Ok(Scenario {
            fault,
            target,
            lag_before_fault_ms,
        })
    }

    fn target_fits(&self, fault: FaultKind, target: &str, span: Range<usize>) -> R<()> {
        let service = self.catalog.services.get(target);
        let site = self.catalog.sites.get(target);
        if service.is_none() && site.is_none() {
            let services = list(self.catalog.services.keys().map(String::as_str));
            let sites = list(self.catalog.sites.keys().map(String::as_str));
            return Err(self.err(
                span,
                format!("unknown target {target:?}; services: {services}; sites: {sites}"),
            ));
        }
        let kind = service.map(|s| s.kind);
        let ok = match fault {
            FaultKind::KillPrimaryPostgres | FaultKind::HangPrimaryPostgres => {
                kind == Some(ServiceKind::Postgres)
            }
            FaultKind::StopRedis => kind == Some(ServiceKind::Redis),
            FaultKind::SiteDown => site.is_some(),
            FaultKind::PlannedSwitchover => {
                site.is_some() || kind.is_some_and(ServiceKind::is_data_store)
            }
            FaultKind::ColdRestore => site.is_some_and(|s| s.role == SiteRole::ColdStandby),
        };
        if ok {
            return Ok(());
        }
        let what = match (service, site) {
            (Some(s), _) => format!("a {} service", s.kind.as_str()),
            (None, Some(s)) => format!("a site ({:?})", s.role),
            (None, None) => "unknown".to_string(),
        };
        let need = match fault {
            FaultKind::KillPrimaryPostgres | FaultKind::HangPrimaryPostgres => {
                "a postgres service, e.g. \"khartoum-postgres\""
            }
            FaultKind::StopRedis => "a redis service, e.g. \"khartoum-redis\"",
            FaultKind::SiteDown => "a site, e.g. \"khartoum\"",
            FaultKind::PlannedSwitchover => "a site or a postgres/redis service",
            FaultKind::ColdRestore => "a cold-standby site, e.g. \"dr-cold\"",
        };
        Err(self.err(
            span,
            format!("fault {fault} does not fit target {target:?} ({what}); it needs {need}"),
        ))
    }

    fn objectives(&self, raw: &RawObjectives, span: Range<usize>) -> R<Objectives> {
        let rto_ms = self.positive(&raw.rto, "rto")?;
        let mut rpo_ms = BTreeMap::new();
        for (store, value, key) in [
            (Store::Postgres, &raw.rpo_postgres, "rpo_postgres"),
            (Store::Redis, &raw.rpo_redis, "rpo_redis"),
        ] {
            if let Some(v) = value {
                rpo_ms.insert(store, self.positive(v, key)?);
            }
        }
        let no_lost_writes = raw.no_lost_writes.unwrap_or(false);
        if rpo_ms.is_empty() && !no_lost_writes {
            return Err(self.err(
                span,
                "`[objectives]` needs an RPO: `rpo_postgres` and/or `rpo_redis` (e.g. \"1m\"), or `no_lost_writes = true`",
            ));
        }
        Ok(Objectives {
            rto_ms,
            rpo_ms,
            no_lost_writes,
        })
    }

    fn abort(&self, raw: Option<&RawAbort>) -> R<AbortPolicy> {
        let rto_factor = match raw.and_then(|a| a.rto_factor.as_ref()) {
            None => DEFAULT_RTO_FACTOR,
            Some(f) => {
                let v = *f.get_ref();
                if !v.is_finite() || v <= 1.0 {
                    return Err(self.err(
                        f.span(),
                        format!(
                            "`rto_factor` must be a number above 1 (the drill aborts at factor × RTO objective); got {v}"
                        ),
                    ));
                }
                v
            }
        };
        Ok(AbortPolicy {
            rto_factor,
            max_lost_writes: raw
                .and_then(|a| a.max_lost_writes.as_ref())
                .map(|m| *m.get_ref()),
        })
    }

    fn duration(&self, s: &Str, key: &str) -> R<u64> {
        let text = s.get_ref().trim();
        let parsed = humantime::parse_duration(text).map_err(|e| {
            self.err(
                s.span(),
                format!("bad duration {text:?} for `{key}` ({e}); write it like \"500ms\", \"10s\" or \"4m\""),
            )
        })?;
        u64::try_from(parsed.as_millis())
            .map_err(|_| self.err(s.span(), format!("`{key}` is too long")))
    }

    fn positive(&self, s: &Str, key: &str) -> R<u64> {
        let ms = self.duration(s, key)?;
        if ms == 0 {
            return Err(self.err(
                s.span(),
                format!(
                    "`{key}` is zero: no drill can meet it; give the real objective (e.g. \"4m\"), or for zero data loss use `no_lost_writes = true`"
                ),
            ));
        }
        Ok(ms)
    }
}

fn role_str(role: SiteRole) -> &'static str {
    match role {
        SiteRole::Primary => "primary",
        SiteRole::HotStandby => "hot_standby",
        SiteRole::ColdStandby => "cold_standby",
    }
}

/// `"HH:MM-HH:MM"` in local time; the end is exclusive, may be `24:00`, and may be earlier than
/// the start (wraps past midnight).
pub fn parse_window(s: &str) -> Result<BlackoutWindow, String> {
    let bad = || {
        format!(
            "bad blackout window {s:?}; write it as \"HH:MM-HH:MM\" in local time, e.g. \"08:00-20:00\" (\"22:00-02:00\" wraps past midnight)"
        )
    };
    let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
    let time = |t: &str, end: bool| -> Option<Time> {
        let (h, m) = t.trim().split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let h: i8 = h.parse().ok()?;
        let m: i8 = m.parse().ok()?;
        if end && h == 24 && m == 0 {
            return Some(Time::midnight());
        }
        Time::new(h, m, 0, 0).ok()
    };
    let start = time(a, false).ok_or_else(bad)?;
    let end = time(b, true).ok_or_else(bad)?;
    if start == end {
        return Err(format!(
            "blackout window {s:?} is empty (start equals end); remove it, or write the hours it covers"
        ));
    }
    Ok(BlackoutWindow { start, end })
}
