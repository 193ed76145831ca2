// niledr console: polls /api/v1/sites, executions and drills, and listens to /api/v1/events
// (server-sent events).
"use strict";

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const pill = (st) => `<span class="pill ${esc(st)}">${esc(st)}</span>`;

function repl(s) {
  const r = s.replication;
  if (!r) return "";
  const parts = [r.role];
  if (r.timeline != null) parts.push(`TL ${r.timeline}`);
  if (r.lag_bytes != null) parts.push(`lag ${r.lag_bytes} B`);
  if (r.replay_delay_seconds != null) parts.push(`delay ${r.replay_delay_seconds.toFixed(1)} s`);
  if (r.replay_paused) parts.push("replay paused");
  if (r.master_link_up === false) parts.push("link down");
  return esc(parts.join(", "));
}

function serviceRows(services) {
  return services.map((s) => `<tr>
    <td>${esc(s.id)}<br><span class="muted">${esc(s.kind)}${s.critical ? ", critical" : ""}</span></td>
    <td>${pill(s.status)}</td>
    <td>${esc(s.reason)}<br><span class="muted">${repl(s)}</span></td>
    <td class="muted">${s.last_probe ? esc(s.last_probe.latency_ms.toFixed(1)) + " ms" : ""}</td></tr>`).join("");
}

// Every read needs a principal: GETs carry the pasted token (a session cookie works too).
function api(path) {
  const t = sessionStorage.getItem("niledr-token") || "";
  return fetch(path, t ? { headers: { authorization: `Bearer ${t}` } } : {});
}

// Server-sent events over fetch, so the token goes in a header (EventSource cannot send one).
async function streamEvents(onEvent, onLost) {
  for (;;) {
    try {
      const r = await api("/api/v1/events");
      if (!r.ok || !r.body) throw new Error(String(r.status));
      const reader = r.body.getReader();
      const text = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += text.decode(value, { stream: true });
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const kind = (block.match(/^event:\s*(.*)$/m) || [])[1];
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (kind && data) onEvent(kind, data);
        }
      }
    } catch (e) { /* retried below */ }
    onLost();
    await new Promise((ok) => setTimeout(ok, 3000));
  }
}

async function refresh() {
  try {
    const [sites, services] = await Promise.all([
      api("/api/v1/sites").then((r) => r.json()),
      api("/api/v1/services").then((r) => r.json()),
    ]);
    document.getElementById("sites").innerHTML = sites.map((site) => `
      <article class="site ${esc(site.status)}">
        <h2>${esc(site.id)} ${pill(site.status)} <span class="muted">${esc(site.role)}</span></h2>
        <p class="reason">${esc(site.reason)}</p>
        <table>${serviceRows(site.services)}</table>
      </article>`).join("");
    const global = services.filter((s) => !s.site);
    document.getElementById("global").innerHTML = global.length
      ? `<h2>Global (DNS)</h2><div class="site"><table>${serviceRows(global)}</table></div>` : "";
    setConn("up", "live");
  } catch (e) {
    setConn("down", "daemon unreachable");
  }
}

function setConn(cls, text) {
  const c = document.getElementById("conn");
  c.className = `pill ${cls}`;
  c.textContent = text;
}

function addEvent(ev) {
  const li = document.createElement("li");
  li.innerHTML = `<span class="muted">${esc(ev.at)}</span> ${esc(ev.scope)} <b>${esc(ev.id)}</b> ${pill(ev.from)} → ${pill(ev.to)} ${esc(ev.reason)}`;
  const list = document.getElementById("events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

// ---- executions: what waits for approval, approve/reject after reading the plan, watch live.
let selected = location.hash.slice(1) || null; // #<execution id> opens it
let shown = "";
const token = () => sessionStorage.getItem("niledr-token") || "";

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token()}` },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) alert(`${r.status}: ${j.error}`);
  return j;
}

async function refreshExecutions() {
  try {
    const list = await api("/api/v1/executions").then((r) => r.json());
    document.getElementById("executions").innerHTML = "<tr><th>execution</th><th>state</th><th>requester</th><th>approvals</th></tr>" +
      list.slice(0, 20).map((e) => `<tr data-id="${esc(e.id)}" style="cursor:pointer">
        <td>${esc(e.runbook)}<br><span class="muted">${esc(e.id)}</span></td>
        <td>${pill(e.state === "succeeded" ? "up" : e.state.startsWith("fail") || e.state === "rolled_back" ? "down" : "degraded")} ${esc(e.state)}</td>
        <td>${esc(e.requester)}</td><td>${e.approvals.map((a) => esc(`${a.user} (${a.decision})`)).join(", ")}</td></tr>`).join("");
    document.querySelectorAll("#executions tr[data-id]").forEach((tr) => tr.onclick = () => { selected = tr.dataset.id; showDetail(); });
    if (selected) showDetail();
  } catch (e) { /* shown by refresh() */ }
}

async function showDetail() {
  const e = await api(`/api/v1/executions/${encodeURIComponent(selected)}`).then((r) => r.json());
  // Re-render only when something changed, so a comment being typed is not wiped.
  const signature = JSON.stringify([e.id, e.state, e.steps.map((s) => s.state), e.approvals.length, e.timeline.length]);
  if (signature === shown) return;
  shown = signature;
  const steps = e.steps.map((s) => `<tr><td>${esc(s.id)}<br><span class="muted">${esc(s.kind)}</span></td><td>${esc(s.state)}</td>
    <td class="muted">${s.duration_ms != null ? s.duration_ms.toFixed(1) + " ms" : ""}</td><td>${esc(s.error || s.detail)}</td></tr>`).join("");
  const plan = (e.plan.steps || []).map((p) => `<li>${esc(p.summary)}${(p.changes || []).map((c) => `<br><span class="muted">${esc(c.what)}: ${esc(c.before)} → ${esc(c.after)}</span>`).join("")}</li>`).join("");
  const warnings = (e.plan.warnings || []).map((w) => `<li>${esc(w)}</li>`).join("");
  const waiting = e.state === "awaiting_approval";
  const stuck = e.state === "needs_operator";
  const confirmable = e.steps.find((s) => s.state === "waiting_confirmation");
  const ponr = e.plan.point_of_no_return;
  const retryable = e.steps.map((s) => s.id).concat(["verify"]);
  const firstOpen = (e.steps.find((s) => !["succeeded"].includes(s.state)) || { id: "verify" }).id;
  const operatorPanel = stuck ? `<div class="banner down"><b>NEEDS AN OPERATOR</b><p>${esc(e.needs_operator || "")}</p>
      <p><input id="op-comment" placeholder="what you fixed or checked" size="40">
      retry from <select id="retry-step">${retryable.map((id) => `<option${id === firstOpen ? " selected" : ""}>${esc(id)}</option>`).join("")}</select>
      <button id="retry">Retry (roll forward)</button> <button id="close">Close without undoing</button></p></div>` : "";
  const confirmPanel = confirmable ? `<div class="banner degraded"><b>Step ${esc(confirmable.id)} waits for a confirm</b>
      <p>${esc(confirmable.detail)}</p><p><input id="confirm-comment" placeholder="what you verified (required)" size="40">
      <button id="confirm">Confirm and proceed</button> <button id="cancel">Cancel the execution</button></p></div>` : "";
  document.getElementById("detail").innerHTML = `<h3>${esc(e.runbook)} — ${esc(e.state)}</h3>
    ${operatorPanel}${confirmPanel}
    ${ponr ? `<p class="muted">Point of no return: ${esc(ponr)} (before it a failure rolls back; from it on nothing is undone)</p>` : ""}
    <p>${esc(e.reason)} <span class="muted">requested by ${esc(e.requester)}; plan ${esc(e.plan_digest.slice(0, 16))}…</span></p>
    ${warnings ? `<p><b>Warnings</b></p><ul>${warnings}</ul>` : ""}
    ${waiting ? `<div id="readiness"><span class="muted">checking every step ready…</span></div>
      <details open><summary>Plan (read before approving)</summary><ol>${plan}</ol></details>
      <p><input id="comment" placeholder="comment" size="40">
      <button id="approve">Approve this plan</button> <button id="reject">Reject</button></p>` : ""}
    <table>${steps}</table>
    <p class="muted">${e.timeline.slice(-8).map((t) => esc(`${t.at} ${t.event} ${t.detail}`)).join("<br>")}</p>`;
  if (waiting) {
    // Readiness is checked live (files, PgBouncer, TSIG, DNS answers, targets): show it.
    api(`/api/v1/runbooks/${encodeURIComponent(e.runbook)}/plan`).then((r) => r.json()).then((p) => {
      const bad = (p.readiness || []).filter((r) => !r.ready);
      document.getElementById("readiness").innerHTML = bad.length
        ? `<div class="banner down"><b>NOT READY now: it would stop before touching anything</b><ul>${bad.map((r) => `<li>${esc(r.step)}: ${esc(r.why)}</li>`).join("")}</ul></div>`
        : `every step checked ready now (${(p.readiness || []).length} steps)`;
    }).catch(() => { document.getElementById("readiness").textContent = "readiness not available"; });
    const decide = (decision) => post(`/api/v1/executions/${encodeURIComponent(e.id)}/approvals`,
      { decision, plan_digest: e.plan_digest, comment: document.getElementById("comment").value }).then(refreshExecutions);
    document.getElementById("approve").onclick = () => decide("approve");
    document.getElementById("reject").onclick = () => decide("reject");
  }
  const act = (what, body) => post(`/api/v1/executions/${encodeURIComponent(e.id)}/${what}`, body).then(refreshExecutions);
  if (stuck) {
    const comment = () => document.getElementById("op-comment").value;
    document.getElementById("retry").onclick = () => act("retry", { step: document.getElementById("retry-step").value, comment: comment() });
    document.getElementById("close").onclick = () => act("cancel", { comment: comment() });
  }
  if (confirmable) {
    const comment = () => document.getElementById("confirm-comment").value;
    document.getElementById("confirm").onclick = () => act("confirm", { step: confirmable.id, comment: comment() });
    document.getElementById("cancel").onclick = () => act("cancel", { comment: comment() });
  }
}

// ---- drills: schedule, standing approval, run now, and each run's progress and report.
let selectedRun = null;
let runTimer = null;
let drillsShown = "";
let runShown = "";
const enc = encodeURIComponent;
// met → green, not_measured → amber, missed/aborted → red; no verdict yet → grey.
const verdictClass = (v) => ({ met: "up", not_measured: "degraded", "not measured": "degraded", missed: "down", aborted: "down" }[v] || "unknown");
const tag = (cls, text) => `<span class="pill ${esc(cls)}">${esc(text)}</span>`;
const verdictPill = (v) => v ? tag(verdictClass(v), v) : `<span class="muted">—</span>`;
const runStateClass = (r) => r.state === "running" ? "degraded" : r.state === "finished" ? verdictClass(r.verdict) : ["failed", "interrupted", "aborted"].includes(r.state) ? "down" : "unknown";

function slots(d) {
  if (!d.schedule) return `<span class="muted">on demand only</span>`;
  const due = d.upcoming.find((s) => s.due);
  const skipped = d.upcoming.filter((s) => s.skipped_because);
  return `${esc(d.schedule)} <span class="muted">(${esc(d.timezone)})</span>
    <br>next: ${due ? esc(due.at) : `<span class="muted">none of the next ${d.upcoming.length}</span>`}
    ${skipped.map((s) => `<br><span class="muted">skipped ${esc(s.at)}: ${esc(s.skipped_because)}</span>`).join("")}`;
}

function standing(d) {
  if (d.approval !== "standing") return `live <span class="muted">(people approve each run as it starts)</span>`;
  const who = d.standing_approvals.map((a) => a.current
    ? esc(`${a.user}${a.roles.length ? " (" + a.roles.join(", ") + ")" : ""}`)
    : `<s class="muted">${esc(a.user)}</s> <span class="muted">(older file)</span>`).join(", ");
  return `standing ${d.standing_approved ? tag("up", "approved") : tag("degraded", "not approved")}
    <br><span class="muted">approved by: ${who || "nobody yet"}</span>
    ${d.standing_needs ? `<br>needs: ${esc(d.standing_needs)}` : ""}`;
}

async function refreshDrills() {
  try {
    const [drills, runs] = await Promise.all([
      api("/api/v1/drills").then((r) => r.json()),
      api("/api/v1/drill-runs?limit=20").then((r) => r.json()),
    ]);
    // Re-render only when something changed (a click target must not vanish under the mouse).
    const signature = JSON.stringify([drills, runs.map((r) => [r.id, r.state, r.phase, r.verdict]), selectedRun]);
    if (signature !== drillsShown) {
      drillsShown = signature;
      document.getElementById("drills").innerHTML = "<tr><th>drill</th><th>schedule</th><th>approval</th><th>last verdict</th><th></th></tr>" +
        drills.map((d) => `<tr>
          <td><b>${esc(d.name)}</b><br><span class="muted">${esc(d.description)}<br>runbook ${esc(d.runbook)}; digest ${esc(d.digest.slice(0, 16))}…</span></td>
          <td>${slots(d)}</td>
          <td>${standing(d)}</td>
          <td>${verdictPill(d.last_verdict)}${d.last_run ? `<br><span class="muted">${esc(d.last_run)}</span>` : ""}</td>
          <td><button data-run="${esc(d.name)}">Run now</button>
            ${d.approval === "standing" ? `<br><button data-approve="${esc(d.name)}">Approve drill</button>` : ""}</td></tr>`).join("");
      document.getElementById("drill-runs").innerHTML = "<tr><th>run</th><th>trigger</th><th>state</th><th>phase</th><th>verdict</th><th>started</th></tr>" +
        runs.map((r) => `<tr data-id="${esc(r.id)}" style="cursor:pointer"${r.id === selectedRun ? ' class="chosen"' : ""}>
          <td>${esc(r.drill)}<br><span class="muted">${esc(r.id)}</span></td>
          <td>${esc(r.trigger)}<br><span class="muted">${esc(r.requested_by)}</span></td>
          <td>${tag(runStateClass(r), r.state)}</td><td>${esc(r.phase)}</td>
          <td>${verdictPill(r.verdict)}</td><td class="muted">${esc(r.started_at)}</td></tr>`).join("");
      document.querySelectorAll("#drills button[data-run]").forEach((b) => b.onclick = () => runDrill(drills.find((d) => d.name === b.dataset.run)));
      document.querySelectorAll("#drills button[data-approve]").forEach((b) => b.onclick = () => approveDrill(drills.find((d) => d.name === b.dataset.approve)));
      document.querySelectorAll("#drill-runs tr[data-id]").forEach((tr) => tr.onclick = () => selectRun(tr.dataset.id));
    }
  } catch (e) { /* shown by refresh() */ }
}

async function runDrill(d) {
  const fault = d.scenario && d.scenario.fault ? ` It injects a real fault (${d.scenario.fault} on ${d.scenario.target}).` : "";
  const reason = prompt(`Run drill ${d.name} now?${fault}\n\nReason (kept with the run and in the audit log):`, "");
  if (reason === null) return;
  const run = await post(`/api/v1/drills/${enc(d.name)}/runs`, { reason });
  if (run && run.id) selectRun(run.id);
  refreshDrills();
}

async function approveDrill(d) {
  const comment = prompt(`Approve drill ${d.name} as loaded now (digest ${d.digest.slice(0, 16)}…)?\n` +
    "With enough approvals it runs unattended on its schedule; a changed file needs new approvals.\n\nComment:", "");
  if (comment === null) return;
  await post(`/api/v1/drills/${enc(d.name)}/approvals`, { digest: d.digest, comment });
  refreshDrills();
}

function selectRun(id) {
  selectedRun = id;
  runShown = "";
  clearTimeout(runTimer);
  showRun();
  refreshDrills();
}

// The selected run: live notes every second while it runs, then its Markdown report.
async function showRun() {
  const id = selectedRun;
  const r = await api(`/api/v1/drill-runs/${enc(id)}`).then((x) => x.json()).catch(() => null);
  if (id !== selectedRun) return; // another run was chosen meanwhile
  const box = document.getElementById("drill-run");
  if (!r) { // daemon unreachable (a restart?): keep asking
    runTimer = setTimeout(showRun, 1000);
    return;
  }
  if (!r.id) {
    box.innerHTML = `<p class="muted">${esc(r.error)}</p>`;
    return;
  }
  const running = r.state === "running";
  const signature = JSON.stringify([r.id, r.state, r.phase, r.verdict, r.notes.length]);
  if (signature !== runShown) {
    runShown = signature;
    const ids = [r.execution && `execution ${r.execution}`, r.cleanup_execution && `cleanup ${r.cleanup_execution}`].filter(Boolean).join("; ");
    box.innerHTML = `<h3>${esc(r.drill)} — ${esc(r.state)} ${running ? `(${esc(r.phase)})` : ""} ${r.verdict ? verdictPill(r.verdict) : ""}</h3>
      <p class="muted">${esc(r.id)}: ${esc(r.trigger)} by ${esc(r.requested_by)}, started ${esc(r.started_at)}${r.finished_at ? ", ended " + esc(r.finished_at) : ""}${ids ? "; " + esc(ids) : ""}</p>
      ${r.error ? `<p><b>${esc(r.error)}</b></p>` : ""}
      <ol class="muted">${r.notes.map((n) => `<li>${esc(n.at)} <b>${esc(n.event)}</b> ${esc(n.detail)}</li>`).join("")}</ol>
      ${running ? "" : `<pre class="report" id="drill-report">loading the report…</pre>`}`;
    if (!running) {
      const md = await api(`/api/v1/drill-runs/${enc(r.id)}?format=md`);
      const text = md.ok ? await md.text() : `no report: ${(await md.json().catch(() => ({}))).error || md.status}`;
      const pre = document.getElementById("drill-report");
      if (pre && id === selectedRun) pre.textContent = text;
    }
  }
  if (running) runTimer = setTimeout(showRun, 1000);
}

async function start() {
  const input = document.getElementById("token");
  input.value = token();
  input.onchange = async () => {
    sessionStorage.setItem("niledr-token", input.value.trim());
    const r = await fetch("/api/v1/whoami", { headers: { authorization: `Bearer ${token()}` } });
    const j = await r.json();
    document.getElementById("who").textContent = r.ok ? `— you are ${j.name} (${j.role}${j.tags.length ? ", " + j.tags.join(", ") : ""})` : `— ${j.error}`;
  };
  refreshExecutions();
  setInterval(refreshExecutions, 2000);
  refreshDrills();
  setInterval(refreshDrills, 2000);
  refresh();
  setInterval(refresh, 2000);
  try {
    const recent = await api("/api/v1/status-changes?limit=50").then((r) => r.json());
    recent.reverse().forEach(addEvent);
  } catch (e) { /* shown by refresh() */ }
  streamEvents((kind, data) => {
    if (kind === "status") { addEvent(JSON.parse(data)); refresh(); refreshExecutions(); }
  }, () => setConn("down", "event stream lost; retrying"));
}

start();
