// niledr console core: the session (sign in once with a token → HttpOnly cookie; CSRF token
// kept in memory only), the API client, hash routes, the bands shown on every page (platform
// mode, maintenance, executions waiting for approval) and live updates: one SSE stream plus a
// slow fallback poll (30 s), so a poor link carries little.
"use strict";

const App = {
  session: null, // {principal, csrf_token, expires_at, idle_timeout_seconds}
  live: false,
  executions: new Map(), // id → ExecutionView, from the list and SSE
};

// The newest view of an execution wins: an HTTP answer can arrive after a newer SSE event
// (`revision` grows with every journal commit). Returns the view to show.
App.put = (e) => {
  const have = App.executions.get(e.id);
  if (have && (have.revision ?? 0) > (e.revision ?? 0)) return have;
  App.executions.set(e.id, e);
  return e;
};

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const enc = encodeURIComponent;
const $ = (sel, root = document) => root.querySelector(sel);
const pill = (st, text) => `<span class="pill ${esc(st)}">${esc(text ?? st)}</span>`;
const RANK = { viewer: 0, operator: 1, approver: 2, admin: 3 };
// What the principal may do (the server enforces it again).
const can = (need) => App.session && (RANK[App.session.principal.role] ?? -1) >= RANK[need];

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && App.session) headers["x-csrf-token"] = App.session.csrf_token;
  const r = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!r.ok) {
    if (r.status === 401 && path !== "/api/v1/session") signedOut((data && data.error) || "signed out");
    throw new ApiError(r.status, (data && data.error) || `${r.status} ${r.statusText}`);
  }
  return data;
}

async function apiText(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  const text = await r.text();
  if (!r.ok) {
    let msg = text;
    try { msg = JSON.parse(text).error; } catch (_) { /* plain text */ }
    throw new ApiError(r.status, msg);
  }
  return text;
}

// A panel whose route this daemon does not have says so (never invented data).
const unavailable = (what, e) => e && e.status === 404
  ? `<span class="unavailable">${esc(what)}: not available from this daemon</span>`
  : `<span class="error">${esc(what)}: ${esc(e ? e.message : "error")}</span>`;

// ---- session
async function loadSession() {
  try {
    App.session = await api("/api/v1/session");
  } catch (e) {
    App.session = null;
  }
  renderMe();
}

function renderMe() {
  const me = $("#me");
  $("#nav").hidden = !App.session;
  for (const band of ["#mode", "#maintenance", "#waiting"]) if (!App.session) $(band).hidden = true;
  $("#mode").hidden = !App.session;
  if (!App.session) { me.innerHTML = ""; setConn("unknown", "not signed in", ""); return; }
  const p = App.session.principal;
  me.innerHTML = `signed in as <b id="me-name">${esc(p.name)}</b> <span class="muted" id="me-role">${esc(p.role)}${p.tags.length ? ", " + esc(p.tags.join(", ")) : ""}</span>
    <button id="sign-out">Sign out</button>`;
  $("#sign-out").onclick = async () => {
    try { await api("/api/v1/session", { method: "DELETE" }); } catch (_) { /* signed out anyway */ }
    signedOut("signed out");
  };
}

function signedOut(why) {
  App.session = null;
  renderMe();
  if (location.hash !== "#/sign-in") {
    App.afterSignIn = location.hash && location.hash !== "#/sign-in" ? location.hash : "#/";
  }
  App.signInNote = why;
  location.hash = "#/sign-in";
  route();
}

function signInPage(view) {
  view.innerHTML = `<div class="signin"><h2>Sign in</h2>
    <p>Paste your niledr token once (from <code>niledr user add</code>). It is exchanged for a session
    cookie this browser cannot read from scripts; the token itself is not kept.</p>
    <form id="signin-form"><p><input id="signin-token" type="password" class="wide" autocomplete="off" placeholder="ndr_…" required></p>
    <p><button class="primary" id="signin-submit" type="submit">Sign in</button></p></form>
    <p class="error" id="signin-error">${esc(App.signInNote && App.signInNote !== "signed out" ? App.signInNote : "")}</p></div>`;
  $("#signin-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      App.session = await api("/api/v1/session", { method: "POST", body: { token: $("#signin-token").value.trim() } });
      renderMe();
      location.hash = App.afterSignIn || "#/";
      startLive();
    } catch (e) {
      $("#signin-error").textContent = e.message;
    }
  };
}

// ---- bands on every page
async function refreshBands() {
  if (!App.session) return;
  const mode = $("#mode");
  try {
    const m = await api("/api/v1/platform-mode");
    const level = Number(m.level);
    mode.className = `band ${level >= 4 ? "level-bad" : level >= 2 ? "level-warn" : "level-ok"}`;
    mode.innerHTML = `platform degradation level <b id="mode-level">${esc(m.level)}</b>${m.label ? ` (${esc(m.label)})` : ""}${m.reason ? ` — ${esc(m.reason)}` : ""}${m.execution ? ` (execution <a href="#/executions/${enc(m.execution)}">${esc(m.execution)}</a>)` : ""}${m.since ? ` <span class="muted">since ${esc(m.since)}</span>` : ""}${m.agree === false ? ' <span class="pill down">DNS servers disagree</span>' : ""}`;
  } catch (e) {
    mode.className = "band unknown";
    mode.innerHTML = unavailable("platform degradation level", e);
  }
  refreshMaintenance();
  refreshCluster();
  refreshWaiting();
}

// Cluster mode on a follower: the session lives here only, so actions need the leader's console.
async function refreshCluster() {
  const band = $("#cluster");
  try {
    const c = await api("/api/v1/cluster");
    const follower = c.mode === "cluster" && !c.is_leader;
    band.hidden = !follower;
    if (!follower) return;
    const leader = c.leader
      ? `<a href="${esc(c.leader.advertise)}/">${esc(c.leader.name)}'s console</a> (${esc(c.leader.site)})`
      : "the leader's console (no leader is elected right now)";
    band.innerHTML = `This niledr instance (${esc(c.this || "")}) follows the cluster's leader: it shows everything live, but your session lives here only, so to act (approve, propose, confirm) open ${leader} and sign in there.`;
  } catch (_) { band.hidden = true; }
}

async function refreshMaintenance() {
  const band = $("#maintenance");
  band.hidden = false;
  try {
    const t = await api("/api/v1/triggers");
    band.className = `band ${t.paused ? "level-warn" : ""}`;
    const action = t.paused ? "resume" : "pause";
    band.innerHTML = t.paused
      ? `<b>Maintenance mode</b>: automatic triggers are paused by ${esc(t.by)} at ${esc(t.at)} — ${esc(t.reason)}`
      : `Automatic triggers are active (no maintenance mode).`;
    if (can("operator")) {
      band.innerHTML += ` <input type="text" id="maintenance-reason" placeholder="reason (required)">
        <button id="maintenance-toggle" data-action="triggers-${action}">${t.paused ? "Resume triggers" : "Pause triggers (maintenance)"}</button>
        <span class="error" id="maintenance-error"></span>`;
      $("#maintenance-toggle").onclick = async () => {
        try {
          await api(`/api/v1/triggers/${action}`, { method: "POST", body: { reason: $("#maintenance-reason").value } });
          refreshMaintenance();
        } catch (e) { $("#maintenance-error").textContent = e.message; }
      };
    }
  } catch (e) {
    band.className = "band unknown";
    band.innerHTML = unavailable("maintenance mode", e);
  }
}

// Who an execution still needs: the runbook's policy minus the approvals given.
function stillNeeded(e) {
  const policy = (e.plan && e.plan.approval) || {};
  const approvals = e.approvals.filter((a) => a.decision === "approve" && a.user !== e.requester);
  const people = Math.max(0, (policy.required ?? 2) - new Set(approvals.map((a) => a.user)).size);
  const roles = (policy.roles || []).filter((r) => !approvals.some((a) => a.tags.includes(r)));
  return { people, roles };
}

const neededText = (n) => n.people === 0 && !n.roles.length ? "nobody (complete)"
  : `${n.people} more approver${n.people === 1 ? "" : "s"}${n.roles.length ? ` (${n.roles.join(" + ")})` : ""}`;

async function refreshWaiting() {
  try {
    const list = await api("/api/v1/executions");
    list.forEach((e) => App.put(e));
  } catch (_) { return; }
  renderWaiting();
}

function renderWaiting() {
  const band = $("#waiting");
  const waiting = [...App.executions.values()].filter((e) => e.state === "awaiting_approval");
  band.hidden = !waiting.length;
  band.className = "band level-warn";
  band.innerHTML = waiting.length ? `<b id="waiting-count">${waiting.length}</b> execution${waiting.length === 1 ? "" : "s"} waiting for approval: ` +
    waiting.map((e) => `<a href="#/executions/${enc(e.id)}">${esc(e.runbook)}</a> needs ${esc(neededText(stillNeeded(e)))}`).join("; ") : "";
}

// ---- routes
const ROUTES = [
  [/^#\/sign-in$/, () => signInPage],
  [/^#?\/?$/, () => Pages.overview],
  [/^#\/executions\/(.+)$/, (m) => (v) => Pages.execution(v, decodeURIComponent(m[1]))],
  [/^#\/runbooks$/, () => Pages.runbooks],
  [/^#\/runbooks\/(.+)$/, (m) => (v) => Pages.runbook(v, decodeURIComponent(m[1]))],
  [/^#\/drills$/, () => Pages.drills],
  [/^#\/drills\/runs\/(.+)$/, (m) => (v) => Pages.drillRun(v, decodeURIComponent(m[1]))],
  [/^#\/audit$/, () => Pages.audit],
];

function route() {
  const hash = location.hash || "#/";
  const view = $("#view");
  if (!App.session && hash !== "#/sign-in") {
    App.afterSignIn = hash;
    location.hash = "#/sign-in";
    return;
  }
  App.page = null;
  for (const [re, make] of ROUTES) {
    const m = hash.match(re);
    if (m) {
      const render = make(m);
      App.render = () => render(view);
      window.scrollTo(0, 0);
      document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("here", hash.startsWith(a.getAttribute("href")) && (a.getAttribute("href") !== "#/" || hash === "#/")));
      App.render();
      return;
    }
  }
  view.innerHTML = `<p class="error">No page ${esc(hash)}. <a href="#/">Overview</a></p>`;
}

// ---- live updates
let statusTimer = null;
function startLive() {
  refreshBands();
  if (App.stream) return;
  const es = new EventSource("/api/v1/events");
  App.stream = es;
  es.onopen = () => setConn("up", "live", "");
  es.addEventListener("status", () => {
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => { if (App.page && App.page.onStatus) App.page.onStatus(); }, 800);
  });
  es.addEventListener("execution", (m) => {
    const e = App.put(JSON.parse(m.data));
    renderWaiting();
    if (App.page && App.page.onExecution) App.page.onExecution(e);
  });
  es.addEventListener("platform-mode", () => refreshBands());
  es.addEventListener("lagged", () => { if (App.render) App.render(); });
  es.onerror = () => setConn("down", "live updates lost", "reconnecting; the page refreshes every 30 s meanwhile");
}

function setConn(cls, text, note) {
  const c = $("#conn");
  c.className = `pill ${cls}`;
  c.textContent = text;
  $("#conn-note").textContent = note;
}

// The slow fallback: re-read the bands and the page unless someone is typing.
setInterval(() => {
  if (!App.session) return;
  refreshBands();
  const typing = document.activeElement && ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (!typing && App.page && App.page.onPoll) App.page.onPoll();
}, 30000);

window.addEventListener("hashchange", route);
(async () => {
  await loadSession();
  if (App.session) startLive();
  route();
})();
