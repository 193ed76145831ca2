// niledr console pages: overview, execution, runbooks (plan preview, propose), drills
// (schedule, history, RTO/RPO charts, report) and audit. Each page renders from the API and
// registers how it reacts to live events (App.page); buttons appear only for roles that may
// use them. Everything shown comes from niledr; a missing route says so.
"use strict";

const Pages = {};

const when = (t) => t ? esc(String(t).replace("T", " ").replace(/\.\d+Z$/, "Z")) : "";
const ms = (v) => v == null ? "—" : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;

function kv(obj) {
  if (!obj || typeof obj !== "object") return esc(obj);
  return `<dl class="kv">${Object.entries(obj).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v && typeof v === "object" ? esc(JSON.stringify(v)) : esc(v)}</dd>`).join("")}</dl>`;
}

function lag(s) {
  const r = s.replication;
  if (!r) return "";
  const parts = [r.role];
  if (r.lag_bytes != null) parts.push(`lag ${r.lag_bytes} B`);
  if (r.replay_delay_seconds != null) parts.push(`delay ${r.replay_delay_seconds.toFixed(1)} s`);
  if (r.streaming === false) parts.push("not streaming");
  if (r.master_link_up === false) parts.push("link down");
  if (r.upstream_error) parts.push(`upstream: ${r.upstream_error}`);
  return esc(parts.join(", "));
}

function dnsAnswers(s) {
  if (!s.dns) return "";
  const d = s.dns;
  return `${esc(d.name)} → ${d.servers.map((x) => `${esc(x.server)}: ${x.error ? `<span class="error">${esc(x.error)}</span>` : esc(x.answers.join(", ") || "no answer")}`).join("; ")}
    ${d.matches_expected ? pill("up", "as expected") : pill("down", `expected ${d.expected.join(", ")}`)}`;
}

const serviceRows = (services) => services.map((s) => `<tr data-service="${esc(s.id)}">
  <td>${esc(s.id)}<br><span class="muted">${esc(s.kind)}${s.critical ? ", critical" : ""}</span></td>
  <td>${pill(s.status)}</td><td>${s.dns ? dnsAnswers(s) : `${esc(s.reason)}<br><span class="muted">${lag(s)}</span>`}</td></tr>`).join("");

// ---- overview
Pages.overview = async (view) => {
  const page = { onStatus: () => Pages.overview(view), onPoll: () => Pages.overview(view), onExecution: () => Pages.overview(view) };
  App.page = page;
  const [sites, services, topo, changes, executions] = await Promise.all([
    api("/api/v1/sites").catch((e) => e),
    api("/api/v1/services").catch((e) => e),
    api("/api/v1/topology").catch((e) => e),
    api("/api/v1/status-changes?limit=15").catch((e) => e),
    api("/api/v1/executions").catch((e) => e),
  ]);
  if (App.page !== page) return; // navigated away meanwhile
  const siteCards = sites instanceof Error ? unavailable("sites", sites) : sites.map((s) => `
    <article class="card ${esc(s.status)}" data-site="${esc(s.id)}">
      <h2>${esc(s.id)} ${pill(s.status)}</h2>
      ${s.current_role != null
        ? `<p>role now: <b class="site-role">${esc(s.current_role)}</b> <span class="muted">(configured ${esc(s.role)})</span></p>`
        : `<p>configured role: <b>${esc(s.role)}</b> <span class="unavailable">(the role it holds now is not available from this daemon)</span></p>`}
      <p class="reason">${esc(s.reason)} <span class="muted">since ${when(s.since)}</span></p>
      ${s.role === "cold_standby" || s.current_role === "cold_standby" ? `<div><b>Backups</b> ${"backups" in s ? (s.backups ? kv(s.backups) : '<span class="muted">no backup freshness reported</span>') : '<span class="unavailable">cold-site freshness: not available from this daemon</span>'}</div>` : ""}
      <table>${serviceRows(s.services)}</table>
    </article>`).join("");
  const global = services instanceof Error ? [] : services.filter((s) => !s.site);
  const topoHtml = topo instanceof Error ? unavailable("live topology", topo) : kv(topo);
  if (!(executions instanceof Error)) executions.forEach((e) => App.put(e));
  const recent = [...App.executions.values()].sort((a, b) => b.created_at.localeCompare(a.created_at)).slice(0, 10);
  view.innerHTML = `<div class="grid" id="sites">${siteCards}</div>
    <h2>DNS names</h2>${global.length ? `<table id="dns">${serviceRows(global)}</table>` : '<p class="muted">no DNS services configured</p>'}
    <h2>Live topology</h2><div class="card" id="topology">${topoHtml}</div>
    <h2>Executions</h2>${executionTable(recent)}
    <h2>Status changes</h2>${changes instanceof Error ? unavailable("status changes", changes) : `<table id="events">${changes.map((c) => `<tr><td class="muted">${when(c.at)}</td><td>${esc(c.scope)} <b>${esc(c.id)}</b></td><td>${pill(c.from)} → ${pill(c.to)}</td><td>${esc(c.reason)}</td></tr>`).join("")}</table>`}`;
};

function executionTable(list) {
  if (!list.length) return '<p class="muted">no executions yet</p>';
  return `<table id="executions"><tr><th>runbook</th><th>state</th><th>requested by</th><th>approvals</th><th>created</th></tr>${list.map((e) => `
    <tr class="clickable" data-id="${esc(e.id)}"><td><a href="#/executions/${enc(e.id)}">${esc(e.runbook)}</a><br><span class="muted">${esc(e.id)}</span></td>
    <td>${pill(e.state)}</td><td>${esc(e.requester)}</td><td>${e.approvals.map((a) => esc(`${a.user} (${a.decision})`)).join(", ")}</td><td class="muted">${when(e.created_at)}</td></tr>`).join("")}</table>`;
}

// ---- execution
function planSteps(plan) {
  return `<ol id="plan">${(plan.steps || []).map((p) => `<li data-plan-step="${esc(p.id)}"><b>${esc(p.id)}</b> ${esc(p.summary)}
    ${p.id === plan.point_of_no_return ? ' <span class="pill down">point of no return</span>' : p.after_point_of_no_return ? ' <span class="pill">after the point of no return</span>' : ""}
    ${(p.changes || []).map((c) => `<div class="change">${esc(c.what)}: <span class="before">${esc(c.before)}</span> → <span class="after">${esc(c.after)}</span></div>`).join("")}
    ${(p.notes || []).map((n) => `<div class="muted">${esc(n)}</div>`).join("")}</li>`).join("")}</ol>
    ${(plan.warnings || []).length ? `<div class="banner degraded" id="warnings"><b>Warnings</b><ul>${plan.warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul></div>` : ""}
    ${plan.point_of_no_return ? `<p id="ponr">Point of no return: <b>${esc(plan.point_of_no_return)}</b> <span class="muted">(before it a failure rolls back; from it on nothing is undone)</span></p>` : '<p class="muted" id="ponr">No irreversible step: every step can be rolled back.</p>'}`;
}

const TERMINAL = ["succeeded", "failed", "rolled_back", "cancelled", "rejected", "expired"];

function actionPanel(e) {
  const parts = [];
  const waiting = e.state === "awaiting_approval";
  if (waiting && can("approver")) {
    parts.push(`<p><input type="text" id="approve-comment" class="wide" placeholder="comment (what you checked)">
      <button class="primary" data-action="approve">Approve this plan</button> <button class="danger" data-action="reject">Reject</button></p>`);
    if (e.plan.approval && e.plan.approval.break_glass) {
      parts.push(`<p><input type="text" id="break-glass-reason" class="wide" placeholder="break-glass reason (required; loudly audited)">
        <button class="danger" data-action="break-glass">Break glass: approve alone</button></p>`);
    }
  }
  if (can("operator") && !TERMINAL.includes(e.state)) {
    const confirmable = e.steps.find((s) => s.state === "waiting_confirmation");
    if (confirmable) {
      parts.push(`<p>Step <b>${esc(confirmable.id)}</b> waits for a confirm: ${esc(confirmable.detail)}<br>
        <input type="text" id="confirm-comment" class="wide" placeholder="what you verified (required)">
        <button class="primary" data-action="confirm" data-step="${esc(confirmable.id)}">Confirm and proceed</button></p>`);
    }
    if (e.state === "needs_operator") {
      const firstOpen = (e.steps.find((s) => s.state !== "succeeded") || { id: "verify" }).id;
      parts.push(`<p><input type="text" id="retry-comment" class="wide" placeholder="what you fixed or checked">
        retry from <select id="retry-step">${e.steps.map((s) => s.id).concat(["verify"]).map((id) => `<option${id === firstOpen ? " selected" : ""}>${esc(id)}</option>`).join("")}</select>
        <button class="primary" data-action="retry">Retry (roll forward)</button></p>`);
    }
    parts.push(`<p><input type="text" id="control-comment" placeholder="comment">
      ${e.state === "paused" ? '<button data-action="resume">Resume</button>' : ""}
      ${["running", "approved", "verifying"].includes(e.state) ? '<button data-action="pause">Pause</button>' : ""}
      <button class="danger" data-action="cancel">Cancel the execution</button></p>`);
  }
  return parts.length ? `<div class="actions" id="actions"><h3>Actions</h3>${parts.join("")}<p class="error" id="action-error"></p></div>` : "";
}

function wireActions(e, view) {
  const id = enc(e.id);
  const val = (sel) => ($(sel, view) || { value: "" }).value;
  const run = async (path, body) => {
    try {
      const updated = await api(`/api/v1/executions/${id}/${path}`, { method: "POST", body });
      Pages.showExecution(view, App.put(updated), true);
    } catch (err) { $("#action-error", view).textContent = `${err.status}: ${err.message}`; }
  };
  const on = (action, f) => { const b = $(`[data-action="${action}"]`, view); if (b) b.onclick = f; };
  on("approve", () => run("approvals", { decision: "approve", plan_digest: e.plan_digest, comment: val("#approve-comment") }));
  on("reject", () => run("approvals", { decision: "reject", plan_digest: e.plan_digest, comment: val("#approve-comment") }));
  on("break-glass", () => run("approvals", { decision: "approve", plan_digest: e.plan_digest, comment: val("#approve-comment"), break_glass_reason: val("#break-glass-reason") }));
  on("confirm", (ev) => run("confirm", { step: ev.target.dataset.step, comment: val("#confirm-comment") }));
  on("retry", () => run("retry", { step: val("#retry-step"), comment: val("#retry-comment") }));
  for (const c of ["cancel", "pause", "resume"]) on(c, () => run(c, { comment: val("#control-comment") }));
}

function headParts(e) {
  const needed = stillNeeded(e);
  return `<h2>${esc(e.runbook)} <span id="exec-state" data-state="${esc(e.state)}">${pill(e.state)}</span></h2>
    <p>${esc(e.reason)} <span class="muted">requested by ${esc(e.requester)} at ${when(e.created_at)}; plan ${esc(e.plan_digest.slice(0, 16))}…</span></p>
    ${e.needs_operator ? `<div class="banner down" id="needs-operator"><b>NEEDS AN OPERATOR</b><p>${esc(e.needs_operator)}</p></div>` : ""}
    <h3>Approvals</h3>
    <table id="approvals">${e.approvals.length ? e.approvals.map((a) => `<tr><td><b>${esc(a.user)}</b> <span class="muted">${esc(a.tags.join(", "))}</span></td><td>${pill(a.decision === "approve" ? "up" : "down", a.decision)}</td><td>${esc(a.comment)}${a.break_glass_reason ? `<br><b>break glass:</b> ${esc(a.break_glass_reason)}` : ""}</td><td class="muted">${when(a.at)}</td></tr>`).join("") : '<tr><td class="muted">none yet</td></tr>'}</table>
    <p id="still-needed">Still needed: <b>${esc(e.state === "awaiting_approval" ? neededText(needed) : "nothing (no longer awaiting approval)")}</b></p>`;
}

function progressParts(e) {
  return `<h3>Steps</h3>
    <table id="steps"><tr><th>step</th><th>state</th><th>took</th><th>detail</th></tr>${e.steps.map((s) => `<tr data-step="${esc(s.id)}" data-state="${esc(s.state)}">
      <td>${esc(s.id)}<br><span class="muted">${esc(s.kind)}</span></td><td>${pill(s.state)}${s.attempts > 1 ? ` <span class="muted">×${s.attempts}</span>` : ""}</td>
      <td class="muted">${ms(s.duration_ms)}</td><td>${esc(s.error || s.detail)}${s.rollback ? `<br><span class="muted">rollback: ${esc(s.rollback)}</span>` : ""}</td></tr>`).join("")}</table>
    <h3>Timeline</h3>
    <ol id="timeline">${e.timeline.map((t) => `<li><span class="muted">${when(t.at)}</span> <b>${esc(t.event)}</b> ${esc(t.detail)}</li>`).join("")}</ol>`;
}

Pages.showExecution = (view, e, force) => {
  const head = $("#exec-head", view);
  if (!head) return;
  head.innerHTML = headParts(e);
  $("#exec-live", view).innerHTML = progressParts(e);
  // Re-render the actions only when what one can do changed; what someone is typing survives
  // a re-render the server caused (after their own action, `force`, the used fields clear).
  const signature = JSON.stringify([e.state, e.approvals.length, e.steps.map((s) => s.state === "waiting_confirmation"), App.session.principal.role]);
  if (force || signature !== Pages.actionSignature) {
    Pages.actionSignature = signature;
    const box = $("#exec-actions", view);
    const typed = force ? [] : [...box.querySelectorAll("input[id]")].filter((i) => i.value).map((i) => [i.id, i.value]);
    box.innerHTML = actionPanel(e);
    for (const [id, value] of typed) { const i = box.querySelector(`#${CSS.escape(id)}`); if (i) i.value = value; }
    wireActions(e, view);
  }
};

Pages.execution = async (view, id) => {
  let e;
  try { e = App.put(await api(`/api/v1/executions/${enc(id)}`)); } catch (err) { view.innerHTML = unavailable(`execution ${id}`, err); return; }
  view.innerHTML = `<p><a href="#/">← overview</a></p><div id="exec-head"></div><div id="exec-actions"></div>
    <details ${e.state === "awaiting_approval" ? "open" : ""}><summary><b>Plan</b> (before → after of every step; read before approving)</summary>${planSteps(e.plan)}</details>
    <div id="exec-live"></div>`;
  Pages.actionSignature = null;
  Pages.showExecution(view, e, true);
  App.page = {
    onExecution: (u) => { if (u.id === e.id) { e = App.put(u); Pages.showExecution(view, e); } },
    onPoll: async () => { try { e = App.put(await api(`/api/v1/executions/${enc(id)}`)); Pages.showExecution(view, e); } catch (_) { /* shown by the band */ } },
  };
};

// ---- runbooks
Pages.runbooks = async (view) => {
  App.page = {};
  let list;
  try { list = await api("/api/v1/runbooks"); } catch (e) { view.innerHTML = unavailable("runbooks", e); return; }
  view.innerHTML = `<h2>Runbooks</h2><table id="runbooks"><tr><th>runbook</th><th>services</th><th>steps</th><th>approval</th></tr>${list.map((r) => `
    <tr class="clickable"><td><a href="#/runbooks/${enc(r.name)}">${esc(r.name)}</a><br><span class="muted">${esc(r.description)}</span></td>
    <td>${esc(r.services.join(", "))}</td><td>${esc(r.steps)}</td><td>${esc(r.approval.required ?? "")} people${(r.approval.roles || []).length ? " (" + esc(r.approval.roles.join(" + ")) + ")" : ""}${r.approval.break_glass ? ", break-glass allowed" : ""}</td></tr>`).join("")}</table>`;
};

Pages.runbook = async (view, name) => {
  App.page = {};
  view.innerHTML = `<p><a href="#/runbooks">← runbooks</a></p><h2>${esc(name)}</h2><p class="muted" id="plan-loading">planning against the live world (a dry run: nothing changes)…</p>`;
  let plan;
  try { plan = await api(`/api/v1/runbooks/${enc(name)}/plan`); } catch (e) { view.innerHTML += unavailable("plan", e); return; }
  const notReady = (plan.readiness || []).filter((r) => !r.ready);
  view.innerHTML = `<p><a href="#/runbooks">← runbooks</a></p><h2>${esc(name)} <span class="muted">plan preview</span></h2>
    <p>${notReady.length ? `<span class="pill down">not ready</span> ${notReady.map((r) => `${esc(r.step)}: ${esc(r.why)}`).join("; ")}` : `<span class="pill up">every step checked ready now</span>`}
    <span class="muted">digest ${esc(plan.digest.slice(0, 16))}…; needs ${esc(plan.approval.required)} approvers${plan.approval.roles.length ? " (" + esc(plan.approval.roles.join(" + ")) + ")" : ""}</span></p>
    ${planSteps(plan)}
    ${can("operator") ? `<div class="actions" id="propose"><h3>Propose</h3><p><input type="text" id="propose-reason" class="wide" placeholder="why this runbook should run (required)">
      <button class="primary" data-action="propose">Propose for approval</button></p><p class="error" id="propose-error"></p></div>` : ""}`;
  const b = $('[data-action="propose"]', view);
  if (b) b.onclick = async () => {
    try {
      const e = await api("/api/v1/executions", { method: "POST", body: { runbook: name, reason: $("#propose-reason").value } });
      App.put(e);
      renderWaiting();
      location.hash = `#/executions/${enc(e.id)}`;
    } catch (err) { $("#propose-error").textContent = `${err.status}: ${err.message}`; }
  };
};

// ---- drills
// "2026-12-22T01:00:00+02:00[Africa/Khartoum]" → "2026-12-22 01:00 +02:00" (the zone is shown once).
const slot = (t) => esc(String(t).replace(/\[.*\]$/, "").replace("T", " ").replace(/:00([+-]\d\d:\d\d|Z)$/, " $1"));

function slots(d) {
  if (!d.schedule) return '<span class="muted">on demand only</span>';
  return `${esc(d.schedule)} <span class="muted">(${esc(d.timezone)})</span>` + d.upcoming.map((s) => s.skipped_because
    ? `<br><span class="muted">skipped ${slot(s.at)}: ${esc(s.skipped_because)}</span>` : `<br>next: ${slot(s.at)}`).join("");
}

// RPO of one store as time: newest lost − newest surviving (0 when nothing was lost).
function rpoMs(loss) {
  if (!loss.lost) return 0;
  if (!loss.last_lost_at || !loss.last_surviving_at) return null;
  return Math.max(0, Date.parse(loss.last_lost_at) - Date.parse(loss.last_surviving_at));
}

// A bar per run against a dashed objective line; built as SVG text from numbers only.
function chart(title, id, bars, objective) {
  const W = 520, H = 170, L = 60, B = 30, T = 22;
  const max = Math.max(1, objective || 0, ...bars.map((b) => b.value || 0)) * 1.15;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const bw = Math.min(40, (W - L - 10) / Math.max(1, bars.length) - 6);
  const rects = bars.map((b, i) => {
    const x = L + 6 + i * (bw + 6);
    const ok = objective == null || (b.value != null && b.value <= objective);
    return b.value == null
      ? `<text x="${x}" y="${H - B - 4}">n/a</text>`
      : `<rect x="${x}" y="${y(b.value)}" width="${bw}" height="${H - B - y(b.value)}" fill="${ok ? "#1a7f37" : "#cf222e"}"><title>${esc(b.label)}: ${esc(ms(b.value))}</title></rect>
         <text x="${x}" y="${y(b.value) - 3}">${esc(ms(b.value))}</text><text x="${x}" y="${H - B + 14}">${esc(b.short)}</text>`;
  }).join("");
  const obj = objective == null ? "" : `<line x1="${L}" x2="${W - 4}" y1="${y(objective)}" y2="${y(objective)}" stroke="#1d2330" stroke-dasharray="5 3"/>
    <text x="${W - 6}" y="${y(objective) - 4}" text-anchor="end">objective ${esc(ms(objective))}</text>`;
  return `<svg class="chart" id="${esc(id)}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">
    <text x="8" y="15">${esc(title)}</text><text x="8" y="${y(max / 1.15) + 4}">${esc(ms(max / 1.15))}</text><text x="8" y="${H - B}">0</text>
    <line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#8c959f"/><line x1="${L}" x2="${W - 4}" y1="${H - B}" y2="${H - B}" stroke="#8c959f"/>${obj}${rects}</svg>`;
}

function drillCharts(d, runs) {
  const measured = runs.filter((r) => r.drill === d.name && r.report).reverse();
  if (!measured.length) return `<p class="muted">no measured runs of ${esc(d.name)} yet</p>`;
  const short = (r) => when(r.started_at).slice(5, 16);
  const rto = chart(`${d.name}: RTO per run`, `chart-rto-${d.name}`, measured.map((r) => ({ label: r.id, short: short(r), value: r.report.rto ? r.report.rto.total_ms : null })), d.objectives && d.objectives.rto_ms);
  // Per store: the drill's RPO objective, or 0 when no acknowledged write may be lost.
  const objectives = (d.objectives && d.objectives.rpo_ms) || {};
  const stores = [...new Set([...Object.keys(objectives), ...measured.flatMap((r) => (r.report.rpo || []).map((x) => x.store))])];
  const rpo = stores.map((st) => chart(`${d.name}: RPO (${st}) per run`, `chart-rpo-${d.name}-${st}`, measured.map((r) => {
    const loss = (r.report.rpo || []).find((x) => x.store === st);
    return { label: r.id, short: short(r), value: loss ? rpoMs(loss) : null };
  }), objectives[st] ?? (d.objectives && d.objectives.no_lost_writes ? 0 : null))).join(" ");
  return `${rto} ${rpo}`;
}

Pages.drills = async (view) => {
  App.page = { onPoll: () => Pages.drills(view) };
  const [drills, runs] = await Promise.all([api("/api/v1/drills").catch((e) => e), api("/api/v1/drill-runs?limit=50").catch((e) => e)]);
  if (drills instanceof Error) { view.innerHTML = unavailable("drills", drills); return; }
  const runList = runs instanceof Error ? [] : runs;
  view.innerHTML = `<h2>Drills</h2><table id="drills"><tr><th>drill</th><th>schedule (next runs, blackout skips)</th><th>approval</th><th>last verdict</th><th></th></tr>${drills.map((d) => `
    <tr data-drill="${esc(d.name)}"><td><b>${esc(d.name)}</b><br><span class="muted">${esc(d.description)}<br>runbook ${esc(d.runbook)}</span></td><td>${slots(d)}</td>
    <td>${esc(d.approval)}${d.approval === "standing" ? ` ${d.standing_approved ? pill("up", "approved") : pill("degraded", "not approved")}<br><span class="muted">${esc(d.standing_approvals.filter((a) => a.current).map((a) => a.user).join(", ") || "nobody yet")}</span>${d.standing_needs ? `<br>needs: ${esc(d.standing_needs)}` : ""}` : ""}</td>
    <td>${d.last_verdict ? pill(d.last_verdict) : '<span class="muted">—</span>'}</td>
    <td>${can("operator") ? `<button data-action="run-drill" data-drill="${esc(d.name)}">Run now</button>` : ""}${can("approver") && d.approval === "standing" ? ` <button data-action="approve-drill" data-drill="${esc(d.name)}">Approve drill</button>` : ""}</td></tr>`).join("")}</table>
    ${can("operator") ? `<p><input type="text" id="drill-reason" class="wide" placeholder="reason for running or approving a drill (kept in the audit log)"></p><p class="error" id="drill-error"></p>` : ""}
    <h2>RTO and RPO against objectives</h2><div id="charts">${drills.map((d) => drillCharts(d, runList)).join("")}</div>
    <h2>History</h2>${runs instanceof Error ? unavailable("drill runs", runs) : `<table id="drill-runs"><tr><th>run</th><th>trigger</th><th>state</th><th>verdict</th><th>started</th></tr>${runList.map((r) => `
      <tr class="clickable"><td><a href="#/drills/runs/${enc(r.id)}">${esc(r.drill)}</a><br><span class="muted">${esc(r.id)}</span></td><td>${esc(r.trigger)}<br><span class="muted">${esc(r.requested_by)}</span></td>
      <td>${pill(r.state)} <span class="muted">${esc(r.phase)}</span></td><td>${r.verdict ? pill(r.verdict) : "—"}</td><td class="muted">${when(r.started_at)}</td></tr>`).join("")}</table>`}`;
  const err = (e) => { $("#drill-error").textContent = `${e.status}: ${e.message}`; };
  view.querySelectorAll('[data-action="run-drill"]').forEach((b) => b.onclick = async () => {
    try {
      const run = await api(`/api/v1/drills/${enc(b.dataset.drill)}/runs`, { method: "POST", body: { reason: $("#drill-reason").value } });
      location.hash = `#/drills/runs/${enc(run.id)}`;
    } catch (e) { err(e); }
  });
  view.querySelectorAll('[data-action="approve-drill"]').forEach((b) => b.onclick = async () => {
    const d = drills.find((x) => x.name === b.dataset.drill);
    try { await api(`/api/v1/drills/${enc(d.name)}/approvals`, { method: "POST", body: { digest: d.digest, comment: $("#drill-reason").value } }); Pages.drills(view); } catch (e) { err(e); }
  });
};

Pages.drillRun = async (view, id) => {
  let r;
  try { r = await api(`/api/v1/drill-runs/${enc(id)}`); } catch (e) { view.innerHTML = unavailable(`drill run ${id}`, e); return; }
  const running = ["running", "awaiting_approval"].includes(r.state);
  App.page = running ? { onPoll: () => Pages.drillRun(view, id), onExecution: (e) => { if (e.id === r.execution) Pages.drillRun(view, id); } } : {};
  const links = [r.execution && `<a href="#/executions/${enc(r.execution)}">execution</a>`, r.cleanup_execution && `<a href="#/executions/${enc(r.cleanup_execution)}">cleanup</a>`].filter(Boolean).join(", ");
  view.innerHTML = `<p><a href="#/drills">← drills</a></p><h2>${esc(r.drill)} ${pill(r.state)} ${r.verdict ? pill(r.verdict) : ""}</h2>
    <p class="muted">${esc(r.id)}: ${esc(r.trigger)} by ${esc(r.requested_by)}, started ${when(r.started_at)}${r.finished_at ? ", ended " + when(r.finished_at) : ""}; phase ${esc(r.phase)} ${links}</p>
    ${r.error ? `<p class="error">${esc(r.error)}</p>` : ""}
    ${r.state === "awaiting_approval" ? `<div class="banner degraded">${esc(r.approval_needed || "")} <span class="muted">(expires ${when(r.approval_deadline)})</span>
      ${can("approver") ? `<p><input type="text" id="run-comment" class="wide" placeholder="comment"> <button class="primary" data-action="approve-run">Approve this run</button> <button class="danger" data-action="reject-run">Reject</button></p><p class="error" id="run-error"></p>` : ""}</div>` : ""}
    <h3>Progress</h3><ol>${r.notes.map((n) => `<li><span class="muted">${when(n.at)}</span> <b>${esc(n.event)}</b> ${esc(n.detail)}</li>`).join("")}</ol>
    <h3>Report</h3><pre class="report" id="drill-report">${running ? "the report is written when the run ends" : "loading the report…"}</pre>`;
  const decide = (decision) => api(`/api/v1/drills/${enc(r.drill)}/runs/${enc(r.id)}/approvals`, { method: "POST", body: { digest: r.digest, decision, comment: $("#run-comment").value } })
    .then(() => Pages.drillRun(view, id)).catch((e) => { $("#run-error").textContent = `${e.status}: ${e.message}`; });
  const a = $('[data-action="approve-run"]', view); if (a) a.onclick = () => decide("approve");
  const j = $('[data-action="reject-run"]', view); if (j) j.onclick = () => decide("reject");
  if (!running) {
    // Markdown shown as text: nothing in a report can become markup.
    apiText(`/api/v1/drill-runs/${enc(r.id)}?format=md`).then((t) => { $("#drill-report").textContent = t; })
      .catch((e) => { $("#drill-report").textContent = `no report: ${e.message}`; });
  }
};

// ---- audit
Pages.audit = async (view) => {
  App.page = {};
  view.innerHTML = `<h2>Audit log</h2><div id="verify" class="card">checking the chain…</div>
    <form class="filters" id="audit-filters"><label>actor <input type="text" name="actor"></label>
    <label>execution <input type="text" name="execution"></label>
    <label>since <input type="text" name="since" placeholder="2026-12-01T00:00:00Z"></label>
    <label>until <input type="text" name="until" placeholder="RFC 3339"></label>
    <button type="submit" id="audit-apply">Filter</button></form><div id="audit-entries"></div><p id="audit-more"></p>`;
  api("/api/v1/audit/verify").then((v) => {
    $("#verify").className = "card up";
    $("#verify").innerHTML = `${pill("up", "chain verifies")} ${esc(v.entries)} entries, head ${esc(v.head.slice(0, 16))}…`;
  }).catch((e) => {
    $("#verify").className = "card down";
    $("#verify").innerHTML = `${pill("down", "chain broken")} ${esc(e.message)}`;
  });
  const load = async (after) => {
    const form = new FormData($("#audit-filters"));
    const params = new URLSearchParams({ limit: "50" });
    for (const [k, v] of form.entries()) if (v) params.set(k, v);
    if (after != null) params.set("after", after);
    let page;
    try { page = await api(`/api/v1/audit?${params}`); } catch (e) { $("#audit-entries").innerHTML = unavailable("audit entries", e); return; }
    const rows = page.entries.map((a) => `<tr><td class="muted">${esc(a.seq)}</td><td class="muted">${when(a.at)}</td><td><b>${esc(a.actor)}</b></td><td>${esc(a.kind ?? a.action)}</td><td>${esc(a.execution ?? "")}</td><td class="change">${esc(typeof a.detail === "object" ? JSON.stringify(a.detail) : a.detail)}</td></tr>`).join("");
    const table = $("#audit-table");
    if (after != null && table) table.insertAdjacentHTML("beforeend", rows);
    else $("#audit-entries").innerHTML = `<table id="audit-table"><tr><th>seq</th><th>at</th><th>actor</th><th>what</th><th>execution</th><th>detail</th></tr>${rows}</table>`;
    $("#audit-more").innerHTML = page.next_after != null ? '<button id="audit-next">More</button>' : "";
    if (page.next_after != null) $("#audit-next").onclick = () => load(page.next_after);
  };
  $("#audit-filters").onsubmit = (ev) => { ev.preventDefault(); load(null); };
  load(null);
};
