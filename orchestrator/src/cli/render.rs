//! Human-readable text for plans, executions and lists: what an on-call engineer reads before
//! approving, or while watching a run. Pure functions from wire values to `String`.

use std::fmt::Write as _;
use std::time::Duration;

use niledr_runbooks::{GuardOutcome, Plan, Target};
use niledr_web::types::{ExecutionView, RunbookSummaryView, StepView};
use serde_json::Value;

fn dur_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// A value on one line: connection strings read from files end in a newline.
fn one_line(s: &str) -> String {
    s.trim_end().replace('\n', "\\n")
}

fn target(t: &Target) -> String {
    match &t.address {
        Some(a) => format!("{} {} ({a})", t.kind, t.id),
        None => format!("{} {}", t.kind, t.id),
    }
}

fn outcome(o: GuardOutcome) -> &'static str {
    match o {
        GuardOutcome::Pass => "PASS",
        GuardOutcome::Fail => "FAIL",
        GuardOutcome::Unknown => "UNKNOWN",
    }
}

/// The approval policy as one line, from its JSON (a `RunbookSummaryView` or a plan).
fn policy(v: &Value) -> String {
    let required = v.get("required").and_then(Value::as_u64).unwrap_or(0);
    let roles: Vec<&str> = v
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut s = format!("{required} approval(s)");
    if !roles.is_empty() {
        let _ = write!(s, ", one each of {}", roles.join(" + "));
    }
    if let Some(ms) = v.get("expires_after_ms").and_then(Value::as_u64) {
        let _ = write!(s, ", valid {}", dur_ms(ms));
    }
    if v.get("break_glass").and_then(Value::as_bool) == Some(true) {
        s.push_str(", break-glass allowed");
    }
    if v.get("auto_approve").and_then(Value::as_bool) == Some(true) {
        s.push_str(", AUTO-APPROVED when triggered");
    }
    s
}

/// `niledr plan RUNBOOK`: steps with targets, guards, changes and rollback; then warnings,
/// what approvals are bound to, and the digest last (what approvers sign).
pub fn plan(p: &Plan) -> String {
    let mut o = String::new();
    let mode = serde_json::to_value(p.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
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
        .filter(|g| g.outcome == GuardOutcome::Fail)
        .count();
    if p.ready {
        let _ = writeln!(o, "Ready: yes (no guard fails now)");
    } else {
        let _ = writeln!(
            o,
            "Ready: NO — {failing} guard(s) fail now (see FAIL below)"
        );
    }
    let approval = serde_json::to_value(&p.approval).unwrap_or_default();
    let _ = writeln!(o, "Approval: {}", policy(&approval));
    if !p.lock_scope.is_empty() {
        let _ = writeln!(o, "Locks: {}", p.lock_scope.join(", "));
    }
    for s in &p.steps {
        let _ = writeln!(
            o,
            "\n{:>2}. {}  [{}]  {}",
            s.index + 1,
            s.id,
            s.kind.as_str(),
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
                outcome(g.outcome),
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
fn preconditions(o: &mut String, p: &Plan) {
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
            line.push_str(s.role.map_or("unknown role", |r| r.as_str()));
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
    if let Some(a) = e.plan.get("approval") {
        let _ = writeln!(o, "  policy:    {}", policy(a));
    }
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
        let required = e
            .plan
            .get("approval")
            .and_then(|a| a.get("required"))
            .and_then(Value::as_u64)
            .map(|r| format!("/{r}"))
            .unwrap_or_default();
        let _ = write!(
            o,
            "{}  {:<17}  {:<36}  by {:<10}  {}  approvals {approvals}{required}",
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
    if let Some(a) = e.plan.get("approval") {
        let _ = writeln!(o, "needs:  {}", policy(a));
    }
    let _ = writeln!(
        o,
        "approvers: read `niledr plan {}` or `niledr execution {}`, then `niledr approve {} --digest {}`",
        e.runbook, e.id, e.id, e.plan_digest
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_line_names_roles_and_break_glass() {
        let p = policy(&json!({
            "required": 2, "roles": ["incident_commander", "engineering_lead"],
            "expires_after_ms": 1_800_000, "break_glass": true, "auto_approve": false
        }));
        assert_eq!(
            p,
            "2 approval(s), one each of incident_commander + engineering_lead, valid 30m, break-glass allowed"
        );
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
            "needs_operator": null, "plan": {}
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
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
