//! `parse_runbook`: TOML text → checked `Runbook`, refusing with file, line and what to fix
//! anything the orchestrator could not run safely (unknown names, wrong service kinds,
//! destructive steps without rollback, data stores promoted outside Sudan).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use crate::approval::{ApprovalPolicy, Tolerance};
use crate::catalog::{Catalog, ConnstrKind, ServiceKind};
use crate::error::RunbookError;
use crate::raw::{RawApproval, RawRunbook, RawStep, RawTrigger, RawUntil, Str};
use crate::schema::{
    Action, Endpoint, Mode, Rollback, RollbackStep, Runbook, Step, StepKind, Trigger, WaitCondition,
};

/// The only country where patient data may live.
pub const PHI_COUNTRY: &str = "SD";

const DEFAULT_BACKOFF_MS: u64 = 1_000;
const MAX_RETRIES: u32 = 10;

/// Parse and check a runbook. `file` is only used in messages.
pub fn parse_runbook(file: &Path, text: &str, catalog: &Catalog) -> Result<Runbook, RunbookError> {
    let raw: RawRunbook =
        toml::from_str(text).map_err(|e| RunbookError::from_toml(file, text, &e))?;
    let mut checker = Checker {
        file,
        text,
        catalog,
        targets: Catalog::default(),
    };
    checker.runbook(raw)
}

type R<T> = Result<T, RunbookError>;

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    catalog: &'a Catalog,
    /// What the runbook names, copied from the catalog as we go.
    targets: Catalog,
}

/// "a, b, c" (or "none") for "known ...:" hints in error messages; also used by drill files.
pub fn list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> RunbookError {
        RunbookError::at(self.file, self.text, Some(span), message)
    }

    fn runbook(&mut self, raw: RawRunbook) -> R<Runbook> {
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(self.err(
                raw.name.span(),
                "a runbook name is lower-case letters, digits and `-`, e.g. \"failover-khartoum-to-port-sudan\"",
            ));
        }
        let mode = raw.mode.as_ref().map_or(Mode::Unplanned, |m| *m.get_ref());
        let Some(raw_steps) = raw.steps else {
            return Err(self.err(
                0..0,
                "a runbook needs at least one `[[steps]]` table with `id` and `kind`",
            ));
        };
        if raw_steps.get_ref().is_empty() {
            return Err(self.err(raw_steps.span(), "`steps` is empty; add `[[steps]]` tables"));
        }
        let mut steps: Vec<Step> = Vec::new();
        let mut ids: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for raw_step in raw_steps.get_ref() {
            let step = self.step(raw_step.get_ref(), raw_step.span(), true)?;
            let id_span = raw_step
                .get_ref()
                .id
                .as_ref()
                .map_or(raw_step.span(), Spanned::span);
            if let Some(first) = ids.get(&step.id) {
                let first_line = self.text[..first.start.min(self.text.len())]
                    .matches('\n')
                    .count()
                    + 1;
                return Err(self.err(
                    id_span,
                    format!(
                        "duplicate step id `{}` (first used on line {first_line}); step ids must be unique",
                        step.id
                    ),
                ));
            }
            ids.insert(step.id.clone(), id_span);
            steps.push(step);
        }
        self.gates(mode, &steps, raw_steps.get_ref())?;
        let services = self.scope(raw.services.as_ref(), &steps, raw_steps.get_ref())?;
        let trigger = raw.trigger.as_ref().map(|t| self.trigger(t)).transpose()?;
        let approval = match &raw.approval {
            Some(a) => self.approval(a, trigger.is_some())?,
            None => ApprovalPolicy::default(),
        };
        Ok(Runbook {
            name,
            description: raw.description.unwrap_or_default(),
            mode,
            services,
            approval,
            trigger,
            steps,
            targets: std::mem::take(&mut self.targets),
        })
    }

    /// Lag gates: a planned runbook waits for the standby to catch up before promoting it (a
    /// Redis replica: its master fenced by `redis.fence` first); an unplanned one checks its
    /// lag first.
    fn gates(&self, mode: Mode, steps: &[Step], raw: &[Spanned<RawStep>]) -> R<()> {
        for (i, step) in steps.iter().enumerate() {
            if let Action::RedisPromote { service } = &step.action
                && mode == Mode::Planned
                && !steps[..i].iter().any(|s| {
                    matches!(&s.action, Action::RedisFence { replica, .. } if replica == service)
                })
            {
                return Err(self.err(
                    raw[i].get_ref().kind.span(),
                    format!(
                        "a planned runbook promises zero data loss: add a `redis.fence` step (service = its current master, replica = \"{service}\") before promoting `{service}`, so the master stops taking writes and `{service}` has them all"
                    ),
                ));
            }
            let Action::PostgresPromote { service } = &step.action else {
                continue;
            };
            let earlier = &steps[..i];
            let caught_up = earlier.iter().any(|s| {
                matches!(&s.action, Action::PostgresWaitCaughtUp { service: s, .. } if s == service)
            });
            let lag_checked = earlier.iter().any(|s| {
                matches!(&s.action, Action::PostgresCheckLag { service: s, .. } if s == service)
            });
            let span = raw[i].get_ref().kind.span();
            match mode {
                Mode::Planned if !caught_up => {
                    return Err(self.err(
                        span,
                        format!(
                            "a planned runbook promises zero data loss: add a `postgres.wait_caught_up` step for `{service}` before promoting it"
                        ),
                    ));
                }
                Mode::Unplanned if !caught_up && !lag_checked => {
                    return Err(self.err(
                        span,
                        format!(
                            "add a `postgres.check_lag` step for `{service}` before promoting it, so the data that may be lost is bounded"
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The lock scope: as written (every service a step acts on must be in it) or derived.
    fn scope(
        &mut self,
        written: Option<&Spanned<Vec<Str>>>,
        steps: &[Step],
        raw: &[Spanned<RawStep>],
    ) -> R<Vec<String>> {
        let mut derived: BTreeSet<String> = BTreeSet::new();
        for step in steps {
            derived.extend(step.action.services().into_iter().map(str::to_string));
            if let Some(name) = step.action.dns_name()
                && let Some(id) = self.catalog.dns_service_for(name)
            {
                derived.insert(id.to_string());
                self.copy_service(id);
            }
        }
        let Some(written) = written else {
            return Ok(derived.into_iter().collect());
        };
        let mut scope = Vec::new();
        for s in written.get_ref() {
            let id = self.service(s, None, "`services`")?;
            if !scope.contains(&id) {
                scope.push(id);
            }
        }
        for (step, raw) in steps.iter().zip(raw) {
            if let Some(acted) = step.action.acts_on()
                && !scope.iter().any(|s| s == acted)
            {
                let span = raw
                    .get_ref()
                    .service
                    .as_ref()
                    .map_or(written.span(), Spanned::span);
                return Err(self.err(
                    span,
                    format!(
                        "step `{}` acts on `{acted}`, which is missing from `services` (the lock scope) at the top of the file; add it there",
                        step.id
                    ),
                ));
            }
        }
        Ok(scope)
    }

    fn trigger(&mut self, t: &Spanned<RawTrigger>) -> R<Trigger> {
        let t = t.get_ref();
        let service_down = self.service(&t.service_down, None, "`service_down`")?;
        let standby = t
            .standby
            .as_ref()
            .map(|s| self.service(s, None, "`standby`"))
            .transpose()?;
        let for_ms = t.for_.as_ref().map_or(30_000, |d| d.get_ref().0);
        Ok(Trigger {
            service_down,
            for_ms,
            standby,
            max_standby_lag_bytes: t.max_standby_lag_bytes,
        })
    }

    fn approval(&self, a: &Spanned<RawApproval>, has_trigger: bool) -> R<ApprovalPolicy> {
        let d = ApprovalPolicy::default();
        let raw = a.get_ref();
        let mut roles: Vec<String> = Vec::new();
        if let Some(rs) = &raw.roles {
            for r in rs.get_ref() {
                let role = r.get_ref().trim().to_string();
                if role.is_empty() {
                    return Err(self.err(r.span(), "a role name cannot be empty"));
                }
                if roles.contains(&role) {
                    return Err(self.err(
                        r.span(),
                        format!("role `{role}` is listed twice; each role needs one approver"),
                    ));
                }
                roles.push(role);
            }
        }
        let required = raw.required.as_ref().map_or(d.required, |r| *r.get_ref());
        if let Some(r) = &raw.required {
            if required == 0 {
                return Err(self.err(
                    r.span(),
                    "`required = 0` would let anyone run this; use `auto_approve = true` with a trigger instead, or require at least 1",
                ));
            }
            if (required as usize) < roles.len() {
                return Err(self.err(
                    r.span(),
                    format!(
                        "`required = {required}` but {} roles each need their own approver; raise `required` to {} or drop a role",
                        roles.len(),
                        roles.len()
                    ),
                ));
            }
        }
        let expires_after_ms = match &raw.expires_after {
            Some(e) if e.get_ref().0 == 0 => {
                return Err(self.err(e.span(), "`expires_after` must be longer than 0s"));
            }
            Some(e) => e.get_ref().0,
            None => d.expires_after_ms,
        };
        let auto_approve = raw.auto_approve.as_ref().is_some_and(|a| *a.get_ref());
        if let Some(a) = &raw.auto_approve
            && auto_approve
            && !has_trigger
        {
            return Err(self.err(
                a.span(),
                "`auto_approve = true` only applies to proposals opened by a `[trigger]`; add one or remove auto_approve",
            ));
        }
        let dt = Tolerance::default();
        let tolerance = raw.tolerance.as_ref().map_or(dt.clone(), |t| Tolerance {
            lag_bytes: t.lag_bytes.unwrap_or(dt.lag_bytes),
            lag_seconds: t.lag_seconds.unwrap_or(dt.lag_seconds),
        });
        Ok(ApprovalPolicy {
            required: required.max(u32::try_from(roles.len()).unwrap_or(u32::MAX)),
            roles,
            expires_after_ms,
            break_glass: raw.break_glass.unwrap_or(false),
            auto_approve,
            tolerance,
        })
    }

    fn step(&mut self, raw: &RawStep, whole: Range<usize>, top: bool) -> R<Step> {
        let kind = StepKind::parse(raw.kind.get_ref().trim()).ok_or_else(|| {
            self.err(
                raw.kind.span(),
                format!(
                    "unknown step kind `{}`; known kinds: {}",
                    raw.kind.get_ref(),
                    StepKind::ALL.map(StepKind::as_str).join(", ")
                ),
            )
        })?;
        let id = match (&raw.id, top) {
            (Some(id), true) => {
                let s = id.get_ref().trim();
                if s.is_empty() || s.chars().any(char::is_whitespace) {
                    return Err(self.err(
                        id.span(),
                        "a step id is a short name without spaces, e.g. \"promote-pg\"",
                    ));
                }
                s.to_string()
            }
            (None, true) => {
                return Err(self.err(
                    whole,
                    "every step needs an `id = \"...\"` (used in the journal and the API)",
                ));
            }
            (Some(id), false) => {
                return Err(self.err(
                    id.span(),
                    "a rollback has no `id`; it is journaled under its step's id",
                ));
            }
            (None, false) => String::new(),
        };
        if !top {
            for (present, what) in [
                (raw.rollback.as_ref().map(Spanned::span), "rollback"),
                (raw.irreversible.as_ref().map(Spanned::span), "irreversible"),
                (raw.reason.as_ref().map(Spanned::span), "reason"),
                (raw.verify.as_ref().map(Spanned::span), "verify"),
            ] {
                if let Some(span) = present {
                    return Err(self.err(span, format!("a rollback cannot have `{what}`")));
                }
            }
        }
        let allowed = kind.params();
        for (param, span) in raw.params_present() {
            if !allowed.contains(&param) {
                return Err(self.err(
                    span,
                    format!(
                        "`{param}` does not apply to `{}`; it takes: {}",
                        kind.as_str(),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let action = self.action(kind, raw)?;
        let timeout_ms = match &raw.timeout {
            Some(t) if t.get_ref().0 == 0 => {
                return Err(self.err(t.span(), "`timeout` must be longer than 0s"));
            }
            Some(t) => t.get_ref().0,
            None => kind.default_timeout_ms(),
        };
        let retries = match &raw.retries {
            Some(r) if *r.get_ref() > MAX_RETRIES => {
                return Err(self.err(
                    r.span(),
                    format!(
                        "at most {MAX_RETRIES} retries; a step that keeps failing needs a person"
                    ),
                ));
            }
            Some(r) => *r.get_ref(),
            None => kind.default_retries(),
        };
        let backoff_ms = raw
            .backoff
            .as_ref()
            .map_or(DEFAULT_BACKOFF_MS, |b| b.get_ref().0);
        if !top {
            return Ok(Step {
                id,
                description: raw.description.clone(),
                action,
                timeout_ms,
                retries,
                backoff_ms,
                verify: true,
                rollback: Rollback::None,
            });
        }
        let rollback = self.rollback(kind, raw)?;
        Ok(Step {
            id,
            description: raw.description.clone(),
            action,
            timeout_ms,
            retries,
            backoff_ms,
            verify: raw.verify.as_ref().is_none_or(|v| *v.get_ref()),
            rollback,
        })
    }

    fn rollback(&mut self, kind: StepKind, raw: &RawStep) -> R<Rollback> {
        let irreversible = raw.irreversible.as_ref().filter(|i| *i.get_ref());
        if let Some(reason) = &raw.reason
            && irreversible.is_none()
        {
            return Err(self.err(
                reason.span(),
                "`reason` explains `irreversible = true`; add that or remove the reason",
            ));
        }
        if !kind.is_destructive() {
            if let Some(r) = &raw.rollback {
                return Err(self.err(
                    r.span(),
                    format!("`{}` changes nothing; remove `rollback`", kind.as_str()),
                ));
            }
            if let Some(i) = irreversible {
                return Err(self.err(
                    i.span(),
                    format!("`{}` changes nothing; remove `irreversible`", kind.as_str()),
                ));
            }
            return Ok(Rollback::None);
        }
        match (&raw.rollback, irreversible) {
            (Some(_), Some(i)) => Err(self.err(
                i.span(),
                "a step with a `rollback` is not irreversible; keep one of the two",
            )),
            (Some(r), None) => {
                let step = self.step(r.get_ref(), r.span(), false)?;
                if step.action.kind() == kind && step.action == self.action(kind, raw)? {
                    return Err(self.err(
                        r.span(),
                        "this rollback repeats the step itself; write the action that undoes it",
                    ));
                }
                Ok(Rollback::Explicit(RollbackStep {
                    action: step.action,
                    timeout_ms: step.timeout_ms,
                    retries: step.retries,
                    backoff_ms: step.backoff_ms,
                }))
            }
            (None, Some(i)) => {
                let reason = raw
                    .reason
                    .as_ref()
                    .map(|r| r.get_ref().trim().to_string())
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| {
                        self.err(
                            i.span(),
                            "`irreversible = true` needs `reason = \"...\"`: why it cannot be undone and what to do instead",
                        )
                    })?;
                Ok(Rollback::Irreversible { reason })
            }
            (None, None) if kind.has_inverse() => Ok(Rollback::Inverse),
            (None, None) => Err(self.err(
                raw.kind.span(),
                format!(
                    "`{}` changes the world but has no rollback: add `rollback = {{ kind = \"...\", ... }}`, or `irreversible = true` with `reason = \"...\"`",
                    kind.as_str()
                ),
            )),
        }
    }

    fn required<'r>(
        &self,
        kind: StepKind,
        raw: &RawStep,
        v: &'r Option<Str>,
        param: &str,
    ) -> R<&'r Str> {
        v.as_ref().ok_or_else(|| {
            self.err(
                raw.kind.span(),
                format!("`{}` needs `{param} = \"...\"`", kind.as_str()),
            )
        })
    }

    fn action(&mut self, kind: StepKind, raw: &RawStep) -> R<Action> {
        let k = kind.as_str();
        let pg = Some(&[ServiceKind::Postgres][..]);
        let redis = Some(&[ServiceKind::Redis][..]);
        Ok(match kind {
            StepKind::PostgresCheckLag => {
                let service =
                    self.service(self.required(kind, raw, &raw.service, "service")?, pg, k)?;
                let max_lag_bytes = raw
                    .max_lag_bytes
                    .as_ref()
                    .map(|b| *b.get_ref())
                    .ok_or_else(|| {
                        self.err(
                            raw.kind.span(),
                            format!(
                                "`{k}` needs `max_lag_bytes = N` (the most WAL you accept to lose)"
                            ),
                        )
                    })?;
                Action::PostgresCheckLag {
                    service,
                    max_lag_bytes,
                    max_lag_seconds: raw.max_lag_seconds.as_ref().map(|s| *s.get_ref()),
                    max_lag_age_ms: raw.max_lag_age.as_ref().map(|d| d.get_ref().0),
                }
            }
            StepKind::PostgresFence => {
                let service =
                    self.service(self.required(kind, raw, &raw.service, "service")?, pg, k)?;
                let mode = raw.mode.as_ref().map(|m| *m.get_ref()).ok_or_else(|| {
                    self.err(
                        raw.kind.span(),
                        format!("`{k}` needs `mode = \"read_only\"` or `mode = \"stop\"`"),
                    )
                })?;
                Action::PostgresFence {
                    service,
                    mode,
                    on_unreachable: raw
                        .on_unreachable
                        .as_ref()
                        .map(|m| *m.get_ref())
                        .unwrap_or_default(),
                }
            }
            StepKind::PostgresPromote => {
                let s = self.required(kind, raw, &raw.service, "service")?;
                let service = self.service(s, pg, k)?;
                self.residency(s, &service, k)?;
                Action::PostgresPromote { service }
            }
            StepKind::RedisFence => {
                let service =
                    self.service(self.required(kind, raw, &raw.service, "service")?, redis, k)?;
                let replica_raw = self.required(kind, raw, &raw.replica, "replica")?;
                let replica = self.service(replica_raw, redis, k)?;
                if replica == service {
                    return Err(self.err(
                        replica_raw.span(),
                        format!(
                            "`replica` must name the replica that will take over, not the fenced master `{service}`"
                        ),
                    ));
                }
                Action::RedisFence {
                    service,
                    replica,
                    unreachable_after_ms: raw.unreachable_after.as_ref().map(|d| d.get_ref().0),
                }
            }
            StepKind::RedisPromote => {
                let s = self.required(kind, raw, &raw.service, "service")?;
                let service = self.service(s, redis, k)?;
                self.residency(s, &service, k)?;
                Action::RedisPromote { service }
            }
            StepKind::PostgresWaitCaughtUp | StepKind::RedisReplicaOf => {
                let kinds = if kind == StepKind::RedisReplicaOf {
                    redis
                } else {
                    pg
                };
                let service =
                    self.service(self.required(kind, raw, &raw.service, "service")?, kinds, k)?;
                let of_raw = self.required(kind, raw, &raw.of, "of")?;
                let of = self.service(of_raw, kinds, k)?;
                if of == service {
                    return Err(self.err(
                        of_raw.span(),
                        format!("`of` must name another service than `{service}`"),
                    ));
                }
                if kind == StepKind::RedisReplicaOf {
                    Action::RedisReplicaOf {
                        service,
                        of,
                        unreachable_after_ms: raw.unreachable_after.as_ref().map(|d| d.get_ref().0),
                    }
                } else {
                    Action::PostgresWaitCaughtUp { service, of }
                }
            }
            StepKind::ConnstrSwap => {
                let t = self.required(kind, raw, &raw.target, "target")?;
                let target_kind =
                    *self
                        .catalog
                        .connstr_targets
                        .get(t.get_ref())
                        .ok_or_else(|| {
                            self.err(
                                t.span(),
                                format!(
                                    "unknown connection-string target `{}`; known targets: {}",
                                    t.get_ref(),
                                    list(self.catalog.connstr_targets.keys())
                                ),
                            )
                        })?;
                self.targets
                    .connstr_targets
                    .insert(t.get_ref().clone(), target_kind);
                let kinds: &[ServiceKind] = match target_kind {
                    ConnstrKind::Pgbouncer => &[ServiceKind::Postgres],
                    ConnstrKind::File => &[ServiceKind::Postgres, ServiceKind::Redis],
                };
                let to = self.required(kind, raw, &raw.to_service, "to_service")?;
                let to_service = self.service(to, Some(kinds), k)?;
                self.needs_address(to, &to_service)?;
                Action::ConnstrSwap {
                    target: t.get_ref().clone(),
                    to_service,
                }
            }
            StepKind::DnsSetTtl => {
                let name = self.dns_name(self.required(kind, raw, &raw.name, "name")?)?;
                let ttl = raw.ttl.as_ref().ok_or_else(|| {
                    self.err(raw.kind.span(), format!("`{k}` needs `ttl = SECONDS`"))
                })?;
                if *ttl.get_ref() == 0 || *ttl.get_ref() > 86_400 {
                    return Err(self.err(ttl.span(), "`ttl` is in seconds, between 1 and 86400"));
                }
                Action::DnsSetTtl {
                    name,
                    ttl: *ttl.get_ref(),
                }
            }
            StepKind::DnsCutover => {
                let name = self.dns_name(self.required(kind, raw, &raw.name, "name")?)?;
                let from = self.endpoint(raw, &raw.from_site, &raw.from_service, "from", false)?;
                let to = self.endpoint(raw, &raw.to_site, &raw.to_service, "to", true)?;
                let Some(to) = to else {
                    return Err(self.err(
                        raw.kind.span(),
                        format!("`{k}` needs `to_site` or `to_service`"),
                    ));
                };
                if from.as_ref() == Some(&to) {
                    return Err(self.err(
                        raw.kind.span(),
                        "`from` and `to` are the same; nothing would change",
                    ));
                }
                Action::DnsCutover { name, from, to }
            }
            StepKind::DnsVerify => {
                let name = self.dns_name(self.required(kind, raw, &raw.name, "name")?)?;
                let Some(expect) =
                    self.endpoint(raw, &raw.expect_site, &raw.expect_service, "expect", true)?
                else {
                    return Err(self.err(
                        raw.kind.span(),
                        format!("`{k}` needs `expect_site` or `expect_service`"),
                    ));
                };
                Action::DnsVerify { name, expect }
            }
            StepKind::SqlCheck => {
                let name = self.dns_name(self.required(kind, raw, &raw.name, "name")?)?;
                let via = self.service(self.required(kind, raw, &raw.via, "via")?, pg, k)?;
                Action::SqlCheck { name, via }
            }
            StepKind::HttpCheck => {
                let url = self.required(kind, raw, &raw.url, "url")?;
                let u = url.get_ref().trim();
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
                    return Err(self.err(url.span(), "`url` must be an http:// or https:// URL"));
                }
                Action::HttpCheck {
                    url: u.to_string(),
                    expect_status: raw.expect_status.as_ref().map(|s| *s.get_ref()),
                }
            }
            StepKind::ManualConfirm => {
                let item = self.required(kind, raw, &raw.item, "item")?;
                if item.get_ref().trim().is_empty() {
                    return Err(self.err(
                        item.span(),
                        "`item` says what the person confirms; it cannot be empty",
                    ));
                }
                Action::ManualConfirm {
                    item: item.get_ref().trim().to_string(),
                }
            }
            StepKind::Wait => {
                let until = raw.until.as_ref().ok_or_else(|| {
                    self.err(
                        raw.kind.span(),
                        "`wait` needs `until = { service_up = \"...\" }`, `{ service_down = \"...\" }` or `{ replicating = \"...\", of = \"...\" }`",
                    )
                })?;
                Action::Wait {
                    until: self.until(until)?,
                }
            }
            StepKind::PlatformMode => self.platform_mode(raw)?,
        })
    }

    /// `platform.mode`: a level niledr owns (0, 4, 5), published only where the config gives
    /// a zone to publish it in.
    fn platform_mode(&mut self, raw: &RawStep) -> R<Action> {
        let level = raw.level.as_ref().ok_or_else(|| {
            self.err(
                raw.kind.span(),
                "`platform.mode` needs `level = 0`, `4` (database failover in progress) or `5` (running in DR mode)",
            )
        })?;
        if !crate::schema::PLATFORM_LEVELS.contains(level.get_ref()) {
            return Err(self.err(
                level.span(),
                format!(
                    "level {} is not one niledr sets: use 0 (normal), 4 (database failover in progress) or 5 (running in DR mode at another site)",
                    level.get_ref()
                ),
            ));
        }
        if self.catalog.platform_mode_record.is_none() {
            return Err(self.err(
                raw.kind.span(),
                "`platform.mode` publishes the level as a TXT record in the service zone: the config needs a [dns] section",
            ));
        }
        self.targets.platform_mode_record = self.catalog.platform_mode_record.clone();
        let message = match &raw.message {
            Some(m) if m.get_ref().trim().is_empty() => {
                return Err(self.err(
                    m.span(),
                    "`message` cannot be empty; leave it out for the level's standard wording",
                ));
            }
            Some(m) if m.get_ref().len() > crate::schema::PLATFORM_MESSAGE_MAX => {
                return Err(self.err(
                    m.span(),
                    format!(
                        "`message` is at most {} bytes (it travels in a DNS TXT record)",
                        crate::schema::PLATFORM_MESSAGE_MAX
                    ),
                ));
            }
            m => m.as_ref().map(|m| m.get_ref().trim().to_string()),
        };
        Ok(Action::PlatformMode {
            level: *level.get_ref(),
            message,
        })
    }

    fn until(&mut self, u: &Spanned<RawUntil>) -> R<WaitCondition> {
        let raw = u.get_ref();
        let set = [&raw.service_up, &raw.service_down, &raw.replicating]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            return Err(self.err(
                u.span(),
                "`until` takes exactly one of `service_up`, `service_down`, `replicating`",
            ));
        }
        if raw.replicating.is_none()
            && let Some(extra) = raw
                .of
                .as_ref()
                .map(Spanned::span)
                .or(raw.lag_below_bytes.as_ref().map(Spanned::span))
        {
            return Err(self.err(extra, "`of` and `lag_below_bytes` go with `replicating`"));
        }
        if let Some(s) = &raw.service_up {
            return Ok(WaitCondition::ServiceUp {
                service: self.service(s, None, "`wait`")?,
            });
        }
        if let Some(s) = &raw.service_down {
            return Ok(WaitCondition::ServiceDown {
                service: self.service(s, None, "`wait`")?,
            });
        }
        let Some(r) = &raw.replicating else {
            return Err(self.err(u.span(), "`until` needs a condition"));
        };
        let kinds = Some(&[ServiceKind::Postgres, ServiceKind::Redis][..]);
        let service = self.service(r, kinds, "`wait` (replicating)")?;
        let of_raw = raw.of.as_ref().ok_or_else(|| {
            self.err(
                u.span(),
                "`replicating` needs `of = \"...\"` (the primary it streams from)",
            )
        })?;
        let of = self.service(of_raw, kinds, "`wait` (replicating)")?;
        if self.catalog.services.get(&service).map(|s| s.kind)
            != self.catalog.services.get(&of).map(|s| s.kind)
        {
            return Err(self.err(
                of_raw.span(),
                "`replicating` and `of` must be the same kind of service",
            ));
        }
        Ok(WaitCondition::Replicating {
            service,
            of,
            lag_below_bytes: raw.lag_below_bytes.as_ref().map(|b| *b.get_ref()),
        })
    }

    /// `X_site` or `X_service`, at most one; `required` refuses neither.
    fn endpoint(
        &mut self,
        raw: &RawStep,
        site: &Option<Str>,
        service: &Option<Str>,
        what: &str,
        required: bool,
    ) -> R<Option<Endpoint>> {
        match (site, service) {
            (Some(_), Some(b)) => Err(self.err(
                b.span(),
                format!("write `{what}_site` or `{what}_service`, not both"),
            )),
            (Some(s), None) => Ok(Some(Endpoint::Site(self.site(s)?))),
            (None, Some(s)) => {
                let id = self.service(s, None, "DNS")?;
                let svc = self.catalog.services.get(&id);
                if svc.is_some_and(|c| c.kind == ServiceKind::Dns || c.site.is_none()) {
                    return Err(self.err(
                        s.span(),
                        format!("`{id}` has no site or address a DNS name could point at"),
                    ));
                }
                self.needs_address(s, &id)?;
                Ok(Some(Endpoint::Service(id)))
            }
            (None, None) if required => Err(self.err(
                raw.kind.span(),
                format!(
                    "`{}` needs `{what}_site` or `{what}_service`",
                    raw.kind.get_ref()
                ),
            )),
            (None, None) => Ok(None),
        }
    }

    /// Services a value is taken from need an address in the config.
    fn needs_address(&self, s: &Str, id: &str) -> R<()> {
        match self.catalog.services.get(id) {
            Some(c) if c.address.is_none() && c.kind != ServiceKind::Http => Err(self.err(
                s.span(),
                format!("service `{id}` has no `address` in the config; the step needs one"),
            )),
            _ => Ok(()),
        }
    }

    fn copy_service(&mut self, id: &str) {
        if let Some(svc) = self.catalog.services.get(id) {
            if let Some(site) = &svc.site
                && let Some(s) = self.catalog.sites.get(site)
            {
                self.targets.sites.insert(site.clone(), s.clone());
            }
            if let Some(n) = &svc.dns_name {
                self.targets.dns_names.insert(n.clone());
            }
            self.targets.services.insert(id.to_string(), svc.clone());
        }
    }

    /// A known service, of one of `kinds` when given; `what` names the step kind or key.
    fn service(&mut self, s: &Str, kinds: Option<&[ServiceKind]>, what: &str) -> R<String> {
        let id = s.get_ref().trim();
        let Some(svc) = self.catalog.services.get(id) else {
            return Err(self.err(
                s.span(),
                format!(
                    "unknown service `{id}`; known services: {}",
                    list(self.catalog.services.keys())
                ),
            ));
        };
        if let Some(kinds) = kinds
            && !kinds.contains(&svc.kind)
        {
            let want: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            return Err(self.err(
                s.span(),
                format!(
                    "{what} needs a {} service, but `{id}` is {}",
                    want.join(" or "),
                    svc.kind.as_str()
                ),
            ));
        }
        self.copy_service(id);
        Ok(id.to_string())
    }

    /// PHI residency: only promote a data store at a site in Sudan.
    fn residency(&self, s: &Str, id: &str, what: &str) -> R<()> {
        let svc = self.catalog.services.get(id);
        let site_id = svc.and_then(|c| c.site.as_deref());
        let site = site_id.and_then(|x| self.catalog.sites.get(x));
        match (site_id, site) {
            (Some(_), Some(site)) if site.country.trim().eq_ignore_ascii_case(PHI_COUNTRY) => Ok(()),
            (Some(site_id), Some(site)) => Err(self.err(
                s.span(),
                format!(
                    "PHI must stay in Sudan: `{what}` would make `{id}` at site `{site_id}` (country {:?}) a writable primary; promote a data store at a site whose country is {PHI_COUNTRY}",
                    site.country
                ),
            )),
            _ => Err(self.err(
                s.span(),
                format!(
                    "PHI must stay in Sudan: `{id}` has no known site, so `{what}` cannot prove it stays in {PHI_COUNTRY}; give the service a `site`"
                ),
            )),
        }
    }

    fn site(&mut self, s: &Str) -> R<String> {
        let id = s.get_ref().trim();
        let Some(site) = self.catalog.sites.get(id) else {
            return Err(self.err(
                s.span(),
                format!(
                    "unknown site `{id}`; known sites: {}",
                    list(self.catalog.sites.keys())
                ),
            ));
        };
        self.targets.sites.insert(id.to_string(), site.clone());
        // The site's services give it an address when the site itself has none.
        let at_site: Vec<String> = self
            .catalog
            .services
            .iter()
            .filter(|(_, c)| c.site.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for k in at_site {
            self.copy_service(&k);
        }
        Ok(id.to_string())
    }

    fn dns_name(&mut self, s: &Str) -> R<String> {
        let Some(name) = self.catalog.resolve_dns_name(s.get_ref()) else {
            return Err(self.err(
                s.span(),
                format!(
                    "unknown DNS name `{}`; known names: {}",
                    s.get_ref(),
                    list(self.catalog.dns_names.iter())
                ),
            ));
        };
        self.targets.dns_names.insert(name.clone());
        Ok(name)
    }
}
