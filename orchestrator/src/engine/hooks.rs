//! What a pager alert does, decided on the engine's thread (`crate::hooks::memory` holds the
//! rules): a firing alert becomes evidence on its service and opens at most one proposal per
//! outage (deduplicated by fingerprint and by the execution the runbook's outage already
//! has, remembered in the store across restarts); a resolved alert is noted on that
//! execution and audited, and never cancels anything. Proposals opened by alerts always wait
//! for people: `auto_approve` applies to probe triggers only. Every alert is audited.

use niledr_web::HookSource;
use niledr_web::types::{AlertEvidenceView, HookAlertResultView, PrincipalView};

use super::Engine;
use crate::hooks::RoutedAlert;
use crate::hooks::memory::{self, AlertMemoryV1, Decision, Memory};
use crate::hooks::parse::AlertStatus;

/// The principal proposals opened by `source`'s alerts are attributed to.
pub fn hook_principal(source: HookSource) -> PrincipalView {
    PrincipalView {
        name: format!("niledr-hook:{}", source.as_str()),
        role: "operator".into(),
        tags: Vec::new(),
    }
}

fn ms_str(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

impl Engine {
    /// The stored alert memory (a memory that does not decode is an error someone sees, and
    /// starts empty: the worst case is one more proposal, which still needs two people).
    pub(super) fn load_alert_memory(store: &crate::store::Store) -> Memory {
        match store.meta(memory::MEMORY_KEY) {
            Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_else(|e| {
                tracing::error!(
                    "the stored pager alert memory does not decode ({e}): starting with none"
                );
                Memory::new()
            }),
            Ok(None) => Memory::new(),
            Err(e) => {
                tracing::error!("reading the pager alert memory failed: {e:#}");
                Memory::new()
            }
        }
    }

    /// Why alerts may not propose now (evidence only), if they may not. Maintenance mode
    /// (`triggers paused`) plugs in here too, the one place that decides it for alerts.
    fn alerts_quiet(&self, service: &str) -> Option<String> {
        if let Some(d) = &self.drill_active {
            return Some(format!(
                "drill {d} is running: it owns the outage it causes"
            ));
        }
        if self.keep_fenced.contains(service) {
            return Some(format!(
                "{service} was already failed over from: this outage is handled"
            ));
        }
        None
    }

    /// An execution open now for `runbook`.
    fn open_for(&self, runbook: &str) -> Option<String> {
        self.live
            .iter()
            .find(|(_, l)| l.record.runbook == runbook)
            .map(|(id, _)| id.clone())
    }

    /// The execution a still-firing alert opened for `runbook` (for the probe trigger: an
    /// outage the pager already proposed for gets no second proposal).
    pub(super) fn alert_outage_execution(&self, runbook: &str) -> Option<String> {
        memory::outage_execution(&self.alert_memory, runbook, None)
    }

    /// Firing alerts on `service` (for the detection verdict's audit).
    pub(super) fn alert_evidence(&self, service: &str) -> Vec<AlertEvidenceView> {
        self.alert_memory
            .values()
            .filter(|m| m.service == service && m.status == "firing")
            .map(evidence)
            .collect()
    }

    /// Handle one hook call's alerts; commits the memory before answering.
    pub(super) fn hook(
        &mut self,
        source: HookSource,
        alerts: Vec<RoutedAlert>,
    ) -> Vec<HookAlertResultView> {
        let now = self.clock.now_ms();
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let results: Vec<HookAlertResultView> = alerts
            .into_iter()
            .map(|a| self.hook_alert(source, a, now))
            .collect();
        memory::prune(&mut self.alert_memory, now);
        self.save_alert_memory();
        // One commit for the call's audit entries (a group may carry many alerts).
        self.audit_alerts(source, &results);
        results
    }

    fn hook_alert(&mut self, source: HookSource, a: RoutedAlert, now: i64) -> HookAlertResultView {
        let RoutedAlert { alert, route } = a;
        let mut result = HookAlertResultView {
            fingerprint: alert.fingerprint.clone(),
            status: alert.status.as_str().into(),
            matcher: route.as_ref().map(|r| r.name.clone()),
            service: route.as_ref().map(|r| r.service.clone()),
            runbook: route.as_ref().map(|r| r.runbook.clone()),
            outcome: String::new(),
            execution: None,
            detail: String::new(),
        };
        match (&route, alert.status) {
            (None, _) => {
                result.outcome = "unmatched".into();
                result.detail = "no [[hooks.matchers]] entry matches its labels".into();
            }
            (Some(_), AlertStatus::Ignored) => {
                result.outcome = "ignored".into();
                result.detail = "neither firing nor resolved".into();
            }
            (Some(route), status) => {
                let key = memory::key(source.as_str(), &alert.fingerprint);
                let prev = self.alert_memory.get(&key).cloned();
                let decision = match status {
                    AlertStatus::Firing => {
                        let outage = memory::outage_execution(
                            &self.alert_memory,
                            &route.runbook,
                            self.open_for(&route.runbook).as_deref(),
                        );
                        memory::firing(prev.as_ref(), outage, self.alerts_quiet(&route.service))
                    }
                    _ => memory::resolved(prev.as_ref()),
                };
                let execution = self.act(source, &alert, route, decision, &mut result);
                let mut rec = prev.unwrap_or_else(|| AlertMemoryV1 {
                    v: 1,
                    source: source.as_str().into(),
                    fingerprint: alert.fingerprint.clone(),
                    matcher: route.name.clone(),
                    service: route.service.clone(),
                    runbook: route.runbook.clone(),
                    name: alert.name.clone(),
                    summary: alert.summary.clone(),
                    status: String::new(),
                    first_seen_ms: now,
                    last_seen_ms: now,
                    resolved_ms: None,
                    execution: None,
                });
                if rec.status == "resolved" && status == AlertStatus::Firing {
                    // Firing again after it resolved: a new outage.
                    rec.first_seen_ms = now;
                    rec.execution = None;
                }
                rec.status = status.as_str().into();
                rec.last_seen_ms = now;
                rec.resolved_ms = (status == AlertStatus::Resolved).then_some(now);
                rec.summary = alert.summary.clone();
                if execution.is_some() {
                    rec.execution = execution;
                }
                result.execution = rec.execution.clone();
                self.alert_memory.insert(key, rec);
            }
        }
        result
    }

    /// Carry out `decision`; returns the execution the alert now belongs to, if it changed.
    fn act(
        &mut self,
        source: HookSource,
        alert: &crate::hooks::parse::Incoming,
        route: &crate::hooks::matchers::Route,
        decision: Decision,
        result: &mut HookAlertResultView,
    ) -> Option<String> {
        let what = format!(
            "{} alert {:?} ({}){}",
            source.as_str(),
            alert.name,
            alert.fingerprint,
            if alert.summary.is_empty() {
                String::new()
            } else {
                format!(": {}", alert.summary)
            }
        );
        match decision {
            Decision::Propose => {
                let who = hook_principal(source);
                let reason = format!("{what} (matcher {})", route.name);
                match self.create(&who, &route.runbook, &reason) {
                    Ok(id) => {
                        tracing::warn!(runbook = %route.runbook, %id, "a pager alert opened a failover proposal: {reason}");
                        result.outcome = "proposed".into();
                        result.detail = "a proposal waits for approval".into();
                        Some(id)
                    }
                    Err(e) => {
                        tracing::info!(runbook = %route.runbook, "a pager alert did not open a proposal: {}", e.message());
                        result.outcome = "refused".into();
                        result.detail = e.message().to_string();
                        None
                    }
                }
            }
            Decision::Attach(id) => {
                self.annotate(
                    &id,
                    "alert",
                    &format!("{what} fired; it belongs to this outage"),
                );
                result.outcome = "attached".into();
                result.detail = format!("noted on execution {id}, already open for this outage");
                Some(id)
            }
            Decision::Duplicate(id) => {
                result.outcome = "duplicate".into();
                result.detail = "already received for this outage".into();
                id
            }
            Decision::Quiet(why) => {
                result.outcome = "quiet".into();
                result.detail = format!("evidence only, no proposal: {why}");
                None
            }
            Decision::Annotate(id) => {
                result.outcome = "annotated".into();
                match &id {
                    Some(id) => {
                        self.annotate(
                            id,
                            "alert_resolved",
                            &format!("{what} resolved; nothing was cancelled"),
                        );
                        result.detail = format!("noted on execution {id}; nothing was cancelled");
                    }
                    None => result.detail = "no execution belongs to it; audited".into(),
                }
                id
            }
        }
    }

    /// A note on an execution's timeline, committed: a live one through the journal, a
    /// finished one by appending to its stored record.
    fn annotate(&mut self, id: &str, event: &str, detail: &str) {
        if self.live.contains_key(id) {
            self.note(id, event, detail);
            if let Err(e) = self.save(id, vec![]) {
                tracing::error!(%id, "journaling an alert note failed: {e:#}");
            }
            return;
        }
        match self.store.execution(id) {
            Ok(Some(mut rec)) => {
                rec.timeline.push(crate::records::TimelineEntryV1 {
                    at: super::now_str(),
                    event: event.into(),
                    detail: detail.into(),
                });
                rec.revision += 1;
                if let Err(e) = self.store.save_execution(&rec, vec![]) {
                    tracing::error!(%id, "saving an alert note failed: {e:#}");
                }
            }
            Ok(None) => {
                tracing::warn!(%id, "an alert names execution {id}, which is not in the journal")
            }
            Err(e) => {
                tracing::error!(%id, "reading execution {id} for an alert note failed: {e:#}")
            }
        }
    }

    fn audit_alerts(&self, source: HookSource, results: &[HookAlertResultView]) {
        let actor = format!("hook:{}", source.as_str());
        let entries = results.iter().map(|r| crate::store::AuditEvent {
            actor: &actor,
            action: "hook.alert",
            detail: serde_json::json!({
                "source": source.as_str(),
                "fingerprint": r.fingerprint,
                "status": r.status,
                "matcher": r.matcher,
                "service": r.service,
                "runbook": r.runbook,
                "outcome": r.outcome,
                "execution": r.execution,
                "detail": r.detail,
            }),
        });
        let mut entries: Vec<crate::store::AuditEvent> = entries.collect();
        if entries.is_empty() {
            // A call about no alert (a PagerDuty event not about an incident) is audited too.
            entries.push(crate::store::AuditEvent {
                actor: &actor,
                action: "hook.alert",
                detail: serde_json::json!({
                    "source": source.as_str(),
                    "outcome": "ignored",
                    "detail": "the call carried no alert",
                }),
            });
        }
        if let Err(e) = self.store.append_audit(entries) {
            tracing::error!("auditing a pager alert failed: {e:#}");
        }
    }

    fn save_alert_memory(&self) {
        match serde_json::to_string(&self.alert_memory) {
            Ok(v) => {
                if let Err(e) = self.store.set_meta(memory::MEMORY_KEY, &v) {
                    tracing::error!("saving the pager alert memory failed: {e:#}");
                }
            }
            Err(e) => tracing::error!("the pager alert memory does not serialise: {e}"),
        }
        self.publish_alert_evidence();
    }

    /// The firing alerts, per service, for the service views.
    pub(super) fn publish_alert_evidence(&self) {
        let mut board: std::collections::BTreeMap<String, Vec<AlertEvidenceView>> =
            Default::default();
        for m in self.alert_memory.values().filter(|m| m.status == "firing") {
            board
                .entry(m.service.clone())
                .or_default()
                .push(evidence(m));
        }
        match self.shared.alerts.write() {
            Ok(mut g) => *g = board,
            Err(p) => *p.into_inner() = board,
        }
    }
}

fn evidence(m: &AlertMemoryV1) -> AlertEvidenceView {
    AlertEvidenceView {
        source: m.source.clone(),
        fingerprint: m.fingerprint.clone(),
        name: m.name.clone(),
        summary: m.summary.clone(),
        matcher: m.matcher.clone(),
        runbook: m.runbook.clone(),
        execution: m.execution.clone(),
        first_seen: ms_str(m.first_seen_ms),
        last_seen: ms_str(m.last_seen_ms),
    }
}
