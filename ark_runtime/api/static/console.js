"use strict";
// The console page: polls /api/status, follows /api/logs, listens to /ws/chatter, and for
// admins offers unit control and the Ctrl+Alt+A overlay. The server checks every permission.
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const WHO = document.getElementById("who").dataset;
const IS_ADMIN = WHO.role === "admin";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function post(url, body) {
  const resp = await fetch(url, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF},
    body: JSON.stringify(body || {})});
  let data = {};
  try { data = await resp.json(); } catch (e) { /* empty body */ }
  if (!resp.ok) throw new Error((data.error && data.error.message) || ("HTTP " + resp.status));
  return data;
}

async function refreshStatus() {
  const resp = await fetch("/api/status", {credentials: "same-origin"});
  if (resp.status === 401) { window.location = "/login"; return; }
  if (!resp.ok) { document.getElementById("units-error").textContent = "status unavailable (" + resp.status + ")"; return; }
  const s = await resp.json();
  document.getElementById("units-error").textContent = s.units_error || "";
  const body = document.querySelector("#units tbody");
  body.replaceChildren();
  for (const u of s.units) {
    const tr = el("tr");
    tr.dataset.unit = u.Id;
    tr.append(el("td", u.Id), el("td", u.ActiveState, u.ActiveState), el("td", u.SubState),
              el("td", u.ActiveEnterTimestamp), el("td", u.NRestarts), el("td", u.MainPID));
    if (IS_ADMIN) {
      const td = el("td");
      for (const verb of ["start", "stop", "restart"]) {
        const b = el("button", verb);
        b.dataset.verb = verb;
        b.addEventListener("click", () => control(u.Id, verb));
        td.append(b);
      }
      tr.append(td);
    }
    body.append(tr);
  }
  const agents = document.querySelector("#agents tbody");
  agents.replaceChildren();
  for (const a of s.pipeline.agents) {
    const tr = el("tr");
    tr.append(el("td", a.agent), el("td", a.heartbeat_age_s ?? "–"), el("td", a.depth),
              el("td", a.pending), el("td", a.lag ?? "–"));
    agents.append(tr);
  }
  document.getElementById("dead").textContent = s.pipeline.dead_letters;
  const risk = s.pipeline.breakers;
  const pnl = (v) => (typeof v === "number" ? (v >= 0 ? "+" : "") + v.toFixed(5) : "–");
  document.getElementById("pnl-realised").textContent = pnl(risk && risk.realised_pnl);
  document.getElementById("pnl-open").textContent = pnl(risk && risk.open_pnl);
  document.getElementById("breakers").textContent = JSON.stringify(s.pipeline.breakers);
  document.getElementById("panic-badge").hidden = !s.pipeline.panic;
  document.getElementById("pause-badge").hidden = Object.keys(s.pipeline.paused).length === 0;
}

async function control(unit, verb) {
  try { await post(`/api/units/${encodeURIComponent(unit)}/${verb}`); }
  catch (e) { document.getElementById("units-error").textContent = e.message; }
  refreshStatus();
}

// ---- log viewer: tail, then follow with the cursor the server hands back
let logCursor = "";
function logQuery() {
  const f = document.getElementById("log-filter");
  const q = new URLSearchParams();
  for (const c of f.querySelectorAll('input[name="agent"]:checked')) q.append("agent", c.value);
  const level = document.getElementById("log-level").value;
  if (level) q.set("level", level);
  return q;
}
function resetLog() { logCursor = ""; document.getElementById("log").replaceChildren(); pollLog(); }
async function pollLog() {
  const q = logQuery();
  if (logCursor) q.set("cursor", logCursor);
  const resp = await fetch("/api/logs?" + q, {credentials: "same-origin"});
  if (!resp.ok) return;
  const data = await resp.json();
  logCursor = data.cursor;
  const pre = document.getElementById("log");
  for (const line of data.lines) {
    const row = el("div", null, "lvl-" + (line.level || "info"));
    row.append(el("span", `${line.ts || ""} ${line.agent || ""} ${line.level || ""} `));
    if (line.correlation_id) {
      const a = el("a", line.correlation_id.slice(0, 8));
      a.href = "#trace-" + line.correlation_id;
      a.addEventListener("click", (ev) => { ev.preventDefault(); showTrace(line.correlation_id); });
      row.append(a, el("span", " "));
    }
    row.append(el("span", line.msg || line.event || ""));
    pre.append(row);
  }
  while (pre.childElementCount > 1000) pre.firstChild.remove();
  if (data.lines.length) pre.scrollTop = pre.scrollHeight;
}
async function showTrace(id) {
  const resp = await fetch("/api/trace/" + encodeURIComponent(id), {credentials: "same-origin"});
  if (!resp.ok) return;
  const t = await resp.json();
  document.getElementById("trace").hidden = false;
  document.getElementById("trace-id").textContent = t.correlation_id || id;
  const ol = document.getElementById("trace-hops");
  ol.replaceChildren(...t.hops.map((h) => el("li", `${h.ts} ${h.source} ${h.event} ${h.detail}`)));
}

// ---- chatter feed
let ws;
function connectChatter() {
  if (ws) ws.close();
  const q = new URLSearchParams();
  const agent = document.getElementById("chatter-agent").value.trim();
  const type = document.getElementById("chatter-type").value.trim();
  if (agent) q.set("agent", agent);
  if (type) q.set("type", type);
  q.set("batch", "1"); // queued messages arrive as one array per frame
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/ws/chatter?${q}`);
  const list = document.getElementById("chatter");
  ws.onmessage = (ev) => {
    const data = JSON.parse(ev.data);
    for (const m of Array.isArray(data) ? data : [data]) {
      if (m.type === "hello") { document.body.dataset.chatter = "open"; continue; }
      const li = el("li", `${m.ts || ""} ${m.from || "?"}→${m.to || "?"} ${m.type || ""} ${m.correlation_id || ""}`);
      li.dataset.messageId = m.message_id || m.id;
      list.prepend(li);
    }
    while (list.childElementCount > 200) list.lastChild.remove();
  };
}

// ---- admin overlay (Ctrl+Alt+A): only built for admins; the server refuses everyone else
const ACTIONS = [["panic", "Panic this host"], ["recover", "Recover"], ["snapshot", "Take a snapshot"],
  ["dead-letters/replay", "Replay dead letters"], ["dead-letters/purge", "Purge dead letters"],
  ["pause", "Pause pipeline"], ["resume", "Resume pipeline"]];
function buildOverlay() {
  const o = document.getElementById("overlay");
  o.replaceChildren(el("h2", "Admin actions"));
  const out = el("p", "", "result");
  out.id = "overlay-result";
  for (const [path, label] of ACTIONS) {
    const b = el("button", label);
    b.dataset.action = path;
    b.addEventListener("click", async () => {
      if (["panic", "dead-letters/purge"].includes(path) && !window.confirm(label + "?")) return;
      try { const r = await post("/api/admin/" + path, {}); out.textContent = `${r.action}: ${r.result} ${r.detail}`; }
      catch (e) { out.textContent = e.message; out.className = "error"; }
      refreshStatus();
    });
    o.append(b);
  }
  const close = el("button", "Close");
  close.addEventListener("click", () => { o.hidden = true; });
  o.append(out, close);
}
if (IS_ADMIN) {
  buildOverlay();
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey && ev.altKey && ev.key.toLowerCase() === "a") {
      ev.preventDefault();
      const o = document.getElementById("overlay");
      o.hidden = !o.hidden;
    }
  });
}

document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/logout", {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": CSRF}});
  window.location = "/login";
});
document.getElementById("log-filter").addEventListener("change", resetLog);
document.getElementById("chatter-filter").addEventListener("submit", (ev) => { ev.preventDefault(); connectChatter(); });

refreshStatus();
resetLog();
connectChatter();
setInterval(refreshStatus, 3000);
setInterval(() => { if (document.getElementById("log-follow").checked) pollLog(); }, 1000);
