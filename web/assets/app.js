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

async function start() {
  refresh();
  setInterval(refresh, 2000);
  try {
    const recent = await fetch("/api/v1/status-changes?limit=50").then((r) => r.json());
    recent.reverse().forEach(addEvent);
  } catch (e) { /* shown by refresh() */ }
  const es = new EventSource("/api/v1/events");
  es.addEventListener("status", (m) => { addEvent(JSON.parse(m.data)); refresh(); });
  es.onerror = () => setConn("down", "event stream lost; retrying");
}

start();
