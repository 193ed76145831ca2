// niledr console: polls /api/v1/sites and listens to /api/v1/events (server-sent events).
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

async function refresh() {
  try {
    const [sites, services] = await Promise.all([
      fetch("/api/v1/sites").then((r) => r.json()),
      fetch("/api/v1/services").then((r) => r.json()),
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
    const list = await fetch("/api/v1/executions").then((r) => r.json());
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
  const e = await fetch(`/api/v1/executions/${encodeURIComponent(selected)}`).then((r) => r.json());
  // Re-render only when something changed, so a comment being typed is not wiped.
  const signature = JSON.stringify([e.id, e.state, e.steps.map((s) => s.state), e.approvals.length, e.timeline.length]);
  if (signature === shown) return;
  shown = signature;
  const steps = e.steps.map((s) => `<tr><td>${esc(s.id)}<br><span class="muted">${esc(s.kind)}</span></td><td>${esc(s.state)}</td>
    <td class="muted">${s.duration_ms != null ? s.duration_ms.toFixed(1) + " ms" : ""}</td><td>${esc(s.error || s.detail)}</td></tr>`).join("");
  const plan = (e.plan.steps || []).map((p) => `<li>${esc(p.summary)}${(p.changes || []).map((c) => `<br><span class="muted">${esc(c.what)}: ${esc(c.before)} → ${esc(c.after)}</span>`).join("")}</li>`).join("");
  const warnings = (e.plan.warnings || []).map((w) => `<li>${esc(w)}</li>`).join("");
  const waiting = e.state === "awaiting_approval";
  document.getElementById("detail").innerHTML = `<h3>${esc(e.runbook)} — ${esc(e.state)}</h3>
    <p>${esc(e.reason)} <span class="muted">requested by ${esc(e.requester)}; plan ${esc(e.plan_digest.slice(0, 16))}…</span></p>
    ${warnings ? `<p><b>Warnings</b></p><ul>${warnings}</ul>` : ""}
    ${waiting ? `<details open><summary>Plan (read before approving)</summary><ol>${plan}</ol></details>
      <p><input id="comment" placeholder="comment" size="40">
      <button id="approve">Approve this plan</button> <button id="reject">Reject</button></p>` : ""}
    <table>${steps}</table>
    <p class="muted">${e.timeline.slice(-8).map((t) => esc(`${t.at} ${t.event} ${t.detail}`)).join("<br>")}</p>`;
  if (waiting) {
    const decide = (decision) => post(`/api/v1/executions/${encodeURIComponent(e.id)}/approvals`,
      { decision, plan_digest: e.plan_digest, comment: document.getElementById("comment").value }).then(refreshExecutions);
    document.getElementById("approve").onclick = () => decide("approve");
    document.getElementById("reject").onclick = () => decide("reject");
  }
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
  refresh();
  setInterval(refresh, 2000);
  try {
    const recent = await fetch("/api/v1/status-changes?limit=50").then((r) => r.json());
    recent.reverse().forEach(addEvent);
  } catch (e) { /* shown by refresh() */ }
  const es = new EventSource("/api/v1/events");
  es.addEventListener("status", (m) => { addEvent(JSON.parse(m.data)); refresh(); refreshExecutions(); });
  es.onerror = () => setConn("down", "event stream lost; retrying");
}

start();
