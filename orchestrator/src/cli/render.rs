//! Human-readable text for plans, executions, drills and lists: what an on-call engineer reads
//! before approving, or while watching a run. Pure functions from wire values to `String`.

use std::fmt::Write as _;
use std::time::Duration;

use niledr_web::types::{
    ApprovalPolicyView, DrillRunView, DrillView, ExecutionView, PlanTargetView, PlanView,
    ReadinessView, RunbookSummaryView, StandingApprovalView, StepView, TimelineNoteView,
};
use serde_json::Value;

fn dur_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// A value on one line: connection strings read from files end in a newline.
fn one_line(s: &str) -> String {
    s.trim_end().replace('\n', "\\n")
}

fn target(t: &PlanTargetView) -> String {
    match &t.address {
        Some(a) => format!("{} {} ({a})", t.kind, t.id),
        None => format!("{} {}", t.kind, t.id),
    }
}

fn outcome(o: &str) -> String {
    o.to_ascii_uppercase()
}

/// The approval policy as one line (of a `RunbookSummaryView` or a plan).
fn policy(a: &ApprovalPolicyView) -> String {
    let mut s = format!("{} approval(s)", a.required);
    if !a.roles.is_empty() {
        let _ = write!(s, ", one each of {}", a.roles.join(" + "));
    }
    let _ = write!(s, ", valid {}", dur_ms(a.expires_after_ms));
    if a.break_glass {
        s.push_str(", break-glass allowed");
    }
    if a.auto_approve {
        s.push_str(", AUTO-APPROVED when triggered");
    }
    s
}

/// `niledr plan RUNBOOK`: steps with targets, guards, changes and rollback; then warnings,
/// what approvals are bound to, and the digest last (what approvers sign).
pub fn plan(p: &PlanView) -> String {
    let mut o = String::new();
    let mode = &p.mode;
    let _ = writeln!(
        o,
        "Plan for {} ({mode}) — a dry run: nothing was changed.",
        p.runbook
    );
    let _ = writeln!(o, "Guards are judged on the probes' latest results.");
    let failing = p
        .steps
        .iter()
        .flat_map(|s| &s.guards)
        .filter(|g| g.outcome == "fail")
        .count();
    let not_ready: Vec<&ReadinessView> = p.readiness.iter().filter(|r| !r.ready).collect();
    if p.ready {
        let _ = writeln!(
            o,
            "Ready: yes (no guard fails now; every step checked ready against the real world)"
        );
    } else {
        let _ = writeln!(
            o,
            "Ready: NO — {failing} guard(s) fail now, {} step(s) not ready (see FAIL and NOT READY below)",
            not_ready.len()
        );
        for r in &not_ready {
            let _ = writeln!(o, "  NOT READY {}: {}", r.step, r.why);
        }
    }
    match &p.point_of_no_return {
        Some(step) => {
            let _ = writeln!(
                o,
                "Point of no return: {step} — a failure before it rolls back; from it on nothing is rolled back (retry, or the failback runbook)"
            );
        }
        None => {
            let _ = writeln!(o, "Point of no return: none (every step can be undone)");
        }
    }
    let _ = writeln!(o, "Approval: {}", policy(&p.approval));
    if !p.lock_scope.is_empty() {
        let _ = writeln!(o, "Locks: {}", p.lock_scope.join(", "));
    }
    for s in &p.steps {
        let _ = writeln!(
            o,
            "\n{:>2}. {}  [{}]  {}",
            s.index + 1,
            s.id,
            s.kind,
            s.summary
        );
        if s.targets.is_empty() {
            let _ = writeln!(o, "    targets: (none)");
        }
        for t in &s.targets {
            let _ = writeln!(o, "    target:  {}", target(t));
        }
        for g in &s.guards {
            let _ = writeln!(
                o,
                "    guard:   {:<7} {} — {}",
                outcome(&g.outcome),
                g.check,
                g.why
            );
        }
        for c in &s.changes {
            let _ = writeln!(
                o,
                "    change:  {}: {} → {}",
                c.what,
                one_line(&c.before),
                one_line(&c.after)
            );
        }
        for n in &s.notes {
            let _ = writeln!(o, "    note:    {n}");
        }
        if let Some(r) = p.readiness.iter().find(|r| r.step == s.id) {
            let _ = writeln!(
                o,
                "    ready:   {} — {}",
                if r.ready { "yes" } else { "NOT READY" },
                r.why
            );
        }
        if Some(&s.id) == p.point_of_no_return.as_ref() {
            let _ = writeln!(
                o,
                "    >>> POINT OF NO RETURN: from this step on nothing is undone"
            );
        } else if s.after_point_of_no_return {
            let _ = writeln!(o, "    (after the point of no return: not rolled back)");
        }
        if !s.verification.is_empty() {
            let _ = writeln!(o, "    verify:  {}", s.verification);
        }
        let _ = writeln!(o, "    rollback: {}", s.rollback);
        let mut limits = format!("    timeout {}", dur_ms(s.timeout_ms));
        if s.retries > 0 {
            let _ = write!(
                limits,
                ", {} retr{} (backoff {})",
                s.retries,
                if s.retries == 1 { "y" } else { "ies" },
                dur_ms(s.backoff_ms)
            );
        }
        let _ = writeln!(o, "{limits}");
    }
    if p.warnings.is_empty() {
        let _ = writeln!(o, "\nWarnings: none");
    } else {
        let _ = writeln!(o, "\nWarnings:");
        for w in &p.warnings {
            let _ = writeln!(o, "  ! {w}");
        }
    }
    preconditions(&mut o, p);
    let _ = writeln!(o, "\nDigest: {}", p.digest);
    o
}

/// The snapshot approvals are bound to (drift beyond tolerance voids them at start).
fn preconditions(o: &mut String, p: &PlanView) {
    let pre = &p.preconditions;
    if pre.services.is_empty() && pre.dns.is_empty() && pre.connstr.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nApprovals are bound to what is observed now:");
    for (id, s) in &pre.services {
        let mut line = format!("  {id}: ");
        if !s.reachable {
            line.push_str("not answering");
        } else {
            line.push_str(s.role.as_deref().unwrap_or("unknown role"));
        }
        if let Some(t) = s.timeline {
            let _ = write!(line, ", timeline {t}");
        }
        if let Some(b) = s.lag_bytes {
            let _ = write!(line, ", lag {b} B");
        }
        if let Some(sec) = s.lag_seconds {
            let _ = write!(line, " / {sec:.1} s");
        }
        let _ = writeln!(o, "{line}");
    }
    for (name, answers) in &pre.dns {
        let shown = if answers.is_empty() {
            "no answer".to_string()
        } else {
            answers.join(", ")
        };
        let _ = writeln!(o, "  {name} → {shown}");
    }
    for (target, value) in &pre.connstr {
        let _ = writeln!(
            o,
            "  connection string {target}: {}",
            value.as_deref().map_or("not read".into(), one_line)
        );
    }
}

fn step_line(o: &mut String, i: usize, s: &StepView) {
    let took = s
        .duration_ms
        .map(|d| format!("{d:.1} ms"))
        .unwrap_or_else(|| "-".into());
    let _ = write!(
        o,
        "  {:>2}. {:<28} {:<24} {:<21} attempts {:<2} {:>11}",
        i + 1,
        s.id,
        s.kind,
        s.state,
        s.attempts,
        took
    );
    if let Some(ov) = s.overhead_ms {
        let _ = write!(o, "  (niledr {ov:.1} ms)");
    }
    let _ = writeln!(o);
    if !s.detail.is_empty() {
        let _ = writeln!(o, "      {}", s.detail);
    }
    if let Some(e) = &s.error {
        let _ = writeln!(o, "      error: {e}");
    }
    if let Some(r) = &s.rollback {
        let _ = writeln!(o, "      rollback: {r}");
    }
}

/// `niledr execution ID`.
pub fn execution(e: &ExecutionView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Execution {}", e.id);
    let _ = writeln!(o, "  runbook:   {}", e.runbook);
    let _ = writeln!(o, "  state:     {}", e.state);
    if let Some(n) = &e.needs_operator {
        let _ = writeln!(o, "  NEEDS AN OPERATOR: {n}");
    }
    let _ = writeln!(o, "  requester: {}", e.requester);
    let _ = writeln!(o, "  reason:    {}", e.reason);
    let _ = writeln!(o, "  created:   {}", e.created_at);
    let _ = writeln!(o, "  digest:    {}", e.plan_digest);
    let _ = writeln!(o, "  policy:    {}", policy(&e.plan.approval));
    let _ = writeln!(o, "\nApprovals ({}):", e.approvals.len());
    if e.approvals.is_empty() {
        let _ = writeln!(o, "  none yet");
    }
    for a in &e.approvals {
        let tags = if a.tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", a.tags.join(", "))
        };
        let _ = write!(o, "  {:<8} {}{tags}  {}", a.decision, a.user, a.at);
        if !a.comment.is_empty() {
            let _ = write!(o, "  \"{}\"", a.comment);
        }
        if let Some(r) = &a.break_glass_reason {
            let _ = write!(o, "  BREAK-GLASS: {r}");
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "\nSteps ({}):", e.steps.len());
    for (i, s) in e.steps.iter().enumerate() {
        step_line(&mut o, i, s);
    }
    let _ = writeln!(o, "\nTimeline:");
    for t in &e.timeline {
        if t.detail.is_empty() {
            let _ = writeln!(o, "  {}  {}", t.at, t.event);
        } else {
            let _ = writeln!(o, "  {}  {}  {}", t.at, t.event, t.detail);
        }
    }
    o
}

/// One line per execution, newest first (as the API lists them).
pub fn executions(list: &[ExecutionView]) -> String {
    if list.is_empty() {
        return "no executions\n".into();
    }
    let mut o = String::new();
    for e in list {
        let approvals = e
            .approvals
            .iter()
            .filter(|a| a.decision == "approve")
            .count();
        let required = e.plan.approval.required;
        let _ = write!(
            o,
            "{}  {:<17}  {:<36}  by {:<10}  {}  approvals {approvals}/{required}",
            e.id, e.state, e.runbook, e.requester, e.created_at
        );
        if e.needs_operator.is_some() {
            o.push_str("  NEEDS AN OPERATOR");
        }
        o.push('\n');
    }
    o
}

/// `niledr runbooks`.
pub fn runbooks(list: &[RunbookSummaryView]) -> String {
    if list.is_empty() {
        return "no runbooks loaded\n".into();
    }
    let mut o = String::new();
    for r in list {
        let _ = writeln!(
            o,
            "{}  ({} steps; {})",
            r.name,
            r.steps,
            policy(&r.approval)
        );
        let _ = writeln!(o, "    {}", r.description);
        if !r.services.is_empty() {
            let _ = writeln!(o, "    services: {}", r.services.join(", "));
        }
        let _ = writeln!(o, "    file: {}", r.file);
    }
    o
}

/// The short answer to a mutation: which execution, its state, what to do next.
pub fn outcome_line(verb: &str, e: &ExecutionView) -> String {
    let mut o = format!("{verb} {}: {} is now {}\n", e.id, e.runbook, e.state);
    if let Some(n) = &e.needs_operator {
        let _ = writeln!(o, "NEEDS AN OPERATOR: {n}");
    }
    if let Some(s) = e.steps.iter().find(|s| s.state == "waiting_confirmation") {
        let _ = writeln!(
            o,
            "waiting for a person: niledr confirm {} {}  ({})",
            e.id, s.id, s.detail
        );
    }
    o
}

/// `niledr propose`: the id and the digest approvers must sign.
pub fn proposed(e: &ExecutionView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "proposed {}: {} is {}", e.id, e.runbook, e.state);
    let _ = writeln!(o, "id:     {}", e.id);
    let _ = writeln!(o, "digest: {}", e.plan_digest);
    let _ = writeln!(o, "needs:  {}", policy(&e.plan.approval));
    let _ = writeln!(
        o,
        "approvers: read `niledr plan {}` or `niledr execution {}`, then `niledr approve {} --digest {}`",
        e.runbook, e.id, e.id, e.plan_digest
    );
    o
}

/// Columns padded to their widest cell (the last one is not padded).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut o = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                o.push_str(cell);
            } else {
                let _ = write!(o, "{cell:<w$}  ");
            }
        }
        o.push('\n');
    }
    o
}

/// `0 2 1 * * (Africa/Khartoum)`, or `on demand`.
fn schedule(d: &DrillView) -> String {
    match &d.schedule {
        Some(s) => format!("{s} ({})", d.timezone),
        None => "on demand".into(),
    }
}

/// `live`, or `standing, approved: yes|no`.
fn approval_mode(d: &DrillView) -> String {
    if d.approval == "standing" {
        let yes = if d.standing_approved { "yes" } else { "no" };
        format!("standing, approved: {yes}")
    } else {
        d.approval.clone()
    }
}

fn last_verdict(d: &DrillView) -> String {
    match (&d.last_verdict, &d.last_run) {
        (Some(v), _) => v.clone(),
        (None, Some(run)) => format!("none yet (run {run})"),
        (None, None) => "never run".into(),
    }
}

/// The drill JSON (scenario, objectives) as `key: value` lines; `*_ms` numbers as durations.
fn fields(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let (name, v) = match k.strip_suffix("_ms") {
                    Some(base) => (base, as_durations(v)),
                    None => (k.as_str(), v.clone()),
                };
                let key = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                };
                fields(&key, &v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Milliseconds (alone or in a map of them, as `rpo_ms` per store) as durations.
fn as_durations(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map_or_else(|| v.clone(), |ms| Value::String(dur_ms(ms))),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), as_durations(v)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

fn standing_line(o: &mut String, a: &StandingApprovalView) {
    let roles = if a.roles.is_empty() {
        String::new()
    } else {
        format!(" [{}]", a.roles.join(", "))
    };
    let digest: String = a.digest.chars().take(16).collect();
    let which = if a.current {
        "current file"
    } else {
        "AN OLDER FILE (does not count)"
    };
    let _ = write!(
        o,
        "  {}{roles}  {}  digest {digest}… ({which})",
        a.user, a.at
    );
    if !a.comment.is_empty() {
        let _ = write!(o, "  \"{}\"", a.comment);
    }
    o.push('\n');
}

/// What standing approval the drill has and what it still needs.
fn standing_status(o: &mut String, d: &DrillView) {
    if d.approval != "standing" {
        let _ = writeln!(
            o,
            "Approval: live — people approve each run as it starts (no standing approval needed)"
        );
        return;
    }
    if d.standing_approved {
        let _ = writeln!(
            o,
            "Standing approval: complete — it may run unattended on its schedule"
        );
    } else {
        let needs = d
            .standing_needs
            .as_deref()
            .unwrap_or("more approvals needed");
        let _ = writeln!(o, "Standing approval: NOT complete — {needs}");
    }
}

/// `niledr drill list`.
pub fn drills(list: &[DrillView]) -> String {
    if list.is_empty() {
        return "no drills loaded\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            let next = d
                .upcoming
                .iter()
                .find(|s| s.due)
                .map_or_else(|| "-".to_string(), |s| s.at.clone());
            vec![
                d.name.clone(),
                schedule(d),
                next,
                approval_mode(d),
                last_verdict(d),
            ]
        })
        .collect();
    table(
        &["drill", "schedule", "next due", "approval", "last verdict"],
        &rows,
    )
}

/// `niledr drill show NAME`.
pub fn drill(d: &DrillView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Drill {}", d.name);
    let _ = writeln!(o, "  description: {}", d.description);
    let _ = writeln!(o, "  file:        {}", d.file);
    let _ = writeln!(o, "  runbook:     {}", d.runbook);
    let _ = writeln!(o, "  schedule:    {}", schedule(d));
    let _ = writeln!(o, "  approval:    {}", approval_mode(d));
    let _ = writeln!(o, "  last:        {}", last_verdict(d));
    let _ = writeln!(o, "  digest:      {}", d.digest);
    let scenario = serde_json::to_value(&d.scenario).unwrap_or_default();
    let objectives = serde_json::to_value(&d.objectives).unwrap_or_default();
    for (title, v) in [("Scenario", &scenario), ("Objectives", &objectives)] {
        let mut lines = Vec::new();
        fields("", v, &mut lines);
        let _ = writeln!(o, "\n{title}:");
        if lines.is_empty() {
            let _ = writeln!(o, "  (none)");
        }
        for (k, v) in lines {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    if d.schedule.is_some() {
        let _ = writeln!(o, "\nUpcoming slots ({}):", d.timezone);
        if d.upcoming.is_empty() {
            let _ = writeln!(o, "  none");
        }
        for s in &d.upcoming {
            match &s.skipped_because {
                Some(why) => {
                    let _ = writeln!(o, "  {}  skipped: {why}", s.at);
                }
                None if s.due => {
                    let _ = writeln!(o, "  {}  due", s.at);
                }
                None => {
                    let _ = writeln!(o, "  {}  not due", s.at);
                }
            }
        }
    }
    let _ = writeln!(o, "\nStanding approvals ({}):", d.standing_approvals.len());
    if d.standing_approvals.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for a in &d.standing_approvals {
        standing_line(&mut o, a);
    }
    o.push('\n');
    standing_status(&mut o, d);
    o
}

/// `niledr drill approve`: who has approved the file as loaded, and what is still needed.
pub fn drill_approved(d: &DrillView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "approved drill {} (digest {})", d.name, d.digest);
    let current: Vec<&StandingApprovalView> =
        d.standing_approvals.iter().filter(|a| a.current).collect();
    if current.is_empty() {
        let _ = writeln!(o, "approved by: nobody for this digest");
    } else {
        let who: Vec<String> = current
            .iter()
            .map(|a| format!("{} [{}]", a.user, a.roles.join(", ")))
            .collect();
        let _ = writeln!(o, "approved by: {}", who.join("; "));
    }
    standing_status(&mut o, d);
    o
}

/// `niledr drill runs`.
pub fn drill_runs(list: &[DrillRunView]) -> String {
    if list.is_empty() {
        return "no drill runs\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let state = match r.state.as_str() {
                "running" => format!("running ({})", r.phase),
                "awaiting_approval" => format!("awaiting approval ({} given)", r.approvals.len()),
                other => other.to_string(),
            };
            vec![
                r.id.clone(),
                r.drill.clone(),
                r.trigger.clone(),
                state,
                r.verdict.clone().unwrap_or_else(|| "-".into()),
                r.started_at.clone(),
                r.finished_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "id", "drill", "trigger", "state", "verdict", "started", "finished",
        ],
        &rows,
    )
}

/// A drill run in short: what `niledr drill run --no-wait` prints, and the fallback when a run
/// has no report.
pub fn drill_run(r: &DrillRunView) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "drill run {}: {} is {} ({})",
        r.id, r.drill, r.state, r.phase
    );
    let _ = writeln!(o, "id:        {}", r.id);
    let _ = writeln!(o, "digest:    {}", r.digest);
    let _ = writeln!(o, "trigger:   {} by {}", r.trigger, r.requested_by);
    let _ = writeln!(o, "started:   {}", r.started_at);
    for a in &r.approvals {
        let _ = writeln!(
            o,
            "{:<10} {} [{}] at {}{}",
            format!("{}:", a.decision),
            a.user,
            a.roles.join(", "),
            a.at,
            if a.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", one_line(&a.comment))
            }
        );
    }
    if let Some(n) = &r.approval_needed {
        let _ = writeln!(o, "needs:     {n}");
    }
    if let Some(d) = &r.approval_deadline {
        let _ = writeln!(o, "expires:   {d} unless approved");
    }
    if let Some(f) = &r.finished_at {
        let _ = writeln!(o, "finished:  {f}");
    }
    if let Some(e) = &r.execution {
        let _ = writeln!(o, "execution: {e}");
    }
    if let Some(e) = &r.cleanup_execution {
        let _ = writeln!(o, "cleanup:   {e}");
    }
    if let Some(v) = &r.verdict {
        let _ = writeln!(o, "verdict:   {v}");
    }
    if let Some(e) = &r.error {
        let _ = writeln!(o, "error:     {e}");
    }
    for n in &r.notes {
        let _ = writeln!(o, "  {}  {}", n.at, note_text(n));
    }
    o
}

fn note_text(n: &TimelineNoteView) -> String {
    if n.detail.is_empty() {
        n.event.clone()
    } else {
        format!("{}: {}", n.event, n.detail)
    }
}

/// A progress line while following a run: `[phase] event: detail`.
pub fn drill_progress(phase: &str, n: &TimelineNoteView) -> String {
    format!("[{phase}] {}", note_text(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_line_names_roles_and_break_glass() {
        let p = policy(&serde_json::from_value(policy_json()).expect("a valid policy"));
        assert_eq!(
            p,
            "2 approval(s), one each of incident_commander + engineering_lead, valid 30m, break-glass allowed"
        );
    }

    fn policy_json() -> Value {
        json!({
            "required": 2, "roles": ["incident_commander", "engineering_lead"],
            "expires_after_ms": 1_800_000, "break_glass": true, "auto_approve": false,
            "tolerance": {"lag_bytes": 16_777_216, "lag_seconds": 30}
        })
    }

    #[test]
    fn execution_text_shows_steps_and_errors() {
        let e: ExecutionView = serde_json::from_value(json!({
            "id": "x1", "runbook": "rb", "reason": "r", "state": "rolled_back",
            "requester": "khalid", "created_at": "t0", "plan_digest": "abc",
            "approvals": [{"user": "amira", "tags": ["incident_commander"], "decision": "approve",
                           "comment": "ok", "at": "t1", "break_glass_reason": null}],
            "steps": [{"id": "cutover-db", "kind": "dns.cutover", "state": "failed", "attempts": 2,
                       "started_at": "t2", "ended_at": "t3", "duration_ms": 12.5, "detail": "d",
                       "error": "TSIG authentication failed", "rollback": null, "overhead_ms": 0.4}],
            "timeline": [{"at": "t4", "event": "failed", "detail": ""}],
            "needs_operator": null,
            "plan": {"runbook": "rb", "mode": "unplanned", "digest": "abc", "steps": [],
                     "warnings": [], "ready": true, "lock_scope": [], "approval": policy_json(),
                     "preconditions": {"services": {}, "dns": {}, "connstr": {}},
                     "point_of_no_return": null, "readiness": []}
        }))
        .expect("a valid view");
        let text = execution(&e);
        for want in [
            "state:     rolled_back",
            "approve  amira [incident_commander]",
            "cutover-db",
            "12.5 ms",
            "error: TSIG authentication failed",
            "t4  failed",
            "policy:    2 approval(s), one each of incident_commander + engineering_lead",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }

    fn drill_view() -> DrillView {
        serde_json::from_value(json!({
            "name": "postgres-primary-failure", "description": "kill -9 the primary",
            "file": "/etc/niledr/drills/p.toml", "runbook": "failover-khartoum-to-port-sudan",
            "schedule": "0 2 1 * *", "timezone": "Africa/Khartoum", "approval": "standing",
            "digest": "0123456789abcdef0123",
            "scenario": {"fault": "kill_primary_postgres", "target": "khartoum-postgres",
                         "lag_before_fault_ms": null},
            "objectives": {"rto_ms": 240000, "rpo_ms": {"postgres": 60000}, "no_lost_writes": false},
            "upcoming": [
                {"at": "2026-02-01T02:00:00+02:00[Africa/Khartoum]", "due": true, "skipped_because": null},
                {"at": "2026-03-01T02:00:00+02:00[Africa/Khartoum]", "due": false,
                 "skipped_because": "blackout 00:00-04:00"}
            ],
            "last_verdict": null, "last_run": null,
            "standing_approvals": [
                {"user": "amira", "roles": ["approver"], "digest": "0123456789abcdef0123",
                 "at": "t1", "comment": "read it", "current": true},
                {"user": "khalid", "roles": ["admin"], "digest": "ffff", "at": "t0",
                 "comment": "", "current": false}
            ],
            "standing_approved": false,
            "standing_needs": "one more approver (engineering_lead)"
        }))
        .expect("a valid drill")
    }

    #[test]
    fn drill_list_is_a_table_with_the_next_due_slot() {
        let text = drills(&[drill_view()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("DRILL "), "{text}");
        for want in [
            "postgres-primary-failure",
            "0 2 1 * * (Africa/Khartoum)",
            "2026-02-01T02:00:00+02:00[Africa/Khartoum]",
            "standing, approved: no",
            "never run",
        ] {
            assert!(lines[1].contains(want), "{want:?} in\n{text}");
        }
        // Columns line up: every cell of the header starts where the row's does.
        assert_eq!(lines[0].find("SCHEDULE"), lines[1].find("0 2 1"), "{text}");
    }

    #[test]
    fn drill_show_has_slots_objectives_and_what_approval_still_needs() {
        let text = drill(&drill_view());
        for want in [
            "digest:      0123456789abcdef0123",
            "fault: kill_primary_postgres",
            "rto: 4m",
            "rpo.postgres: 1m",
            "2026-03-01T02:00:00+02:00[Africa/Khartoum]  skipped: blackout 00:00-04:00",
            "amira [approver]  t1  digest 0123456789abcdef… (current file)  \"read it\"",
            "khalid [admin]  t0  digest ffff… (AN OLDER FILE (does not count))",
            "NOT complete — one more approver (engineering_lead)",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert!(
            !text.contains("lag_before_fault"),
            "null fields are left out:\n{text}"
        );
        let approved = drill_approved(&drill_view());
        assert!(
            approved.contains("approved by: amira [approver]\n"),
            "{approved}"
        );
    }

    #[test]
    fn drill_runs_and_progress_lines() {
        let r: DrillRunView = serde_json::from_value(json!({
            "id": "r7", "drill": "redis-failure", "digest": "x", "trigger": "schedule",
            "requested_by": "niledr-scheduler", "state": "running", "phase": "detection",
            "scheduled_for": null, "started_at": "t0", "finished_at": null, "execution": null,
            "cleanup_execution": null, "error": null, "verdict": null, "report": null,
            "notes": [{"at": "t1", "event": "fault_injected", "detail": "stop redis"}]
        }))
        .expect("a valid run");
        let text = drill_runs(std::slice::from_ref(&r));
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.split_whitespace().collect::<Vec<_>>()
                    == [
                        "r7",
                        "redis-failure",
                        "schedule",
                        "running",
                        "(detection)",
                        "-",
                        "t0",
                        "-"
                    ]),
            "{text}"
        );
        assert_eq!(
            drill_progress(&r.phase, &r.notes[0]),
            "[detection] fault_injected: stop redis"
        );
    }

    #[test]
    fn a_run_awaiting_approval_says_who_approved_and_what_is_missing() {
        let r: DrillRunView = serde_json::from_value(json!({
            "id": "r8", "drill": "cold-site-restore", "digest": "sha256:ab", "trigger": "on_demand",
            "requested_by": "khalid", "state": "awaiting_approval", "phase": "approval",
            "scheduled_for": null, "started_at": "t0", "finished_at": null, "execution": null,
            "cleanup_execution": null, "error": null, "verdict": null, "report": null,
            "approvals": [{"user": "omar", "roles": ["engineering_lead"], "decision": "approve",
                           "digest": "sha256:ab", "at": "t1", "comment": "read it"}],
            "approval_needed": "1 of 2 approvals, still missing: incident_commander",
            "approval_deadline": "t9", "notes": []
        }))
        .expect("a valid run");
        let list = drill_runs(std::slice::from_ref(&r));
        assert!(list.contains("awaiting approval (1 given)"), "{list}");
        let text = drill_run(&r);
        for want in [
            "approve:   omar [engineering_lead] at t1: read it",
            "needs:     1 of 2 approvals, still missing: incident_commander",
            "expires:   t9 unless approved",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
