// Sluice's admin UI: plain DOM, no dependencies. Reads /api/v1/ (docs/api.md) every 2 s.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(n) {
  if (n === null || n === undefined) return "–";
  if (typeof n !== "number") return String(n);
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function bytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

function sumValues(o) {
  return Object.values(o || {}).reduce((a, b) => a + b, 0);
}

function reasons(o) {
  const parts = Object.entries(o || {}).map(([k, v]) => `${k || "unknown"}: ${fmt(v)}`);
  return parts.length ? parts.join(", ") : "none";
}

async function getJSON(path, token) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { headers, cache: "no-store" });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  return { status: r.status, body };
}

// ---- tabs -----------------------------------------------------------------------------------

function showTab() {
  const tab = (location.hash || "#pipeline").slice(1);
  for (const name of ["pipeline", "config", "watcher"]) {
    document.getElementById("tab-" + name).hidden = name !== tab;
    document.querySelector(`nav a[data-tab=${name}]`).classList.toggle("active", name === tab);
  }
  if (tab === "config") loadConfig();
  if (tab === "watcher") loadWatcher();
}

// ---- status and graph ------------------------------------------------------------------------

async function loadStatus() {
  const badge = document.getElementById("health");
  try {
    const { body } = await getJSON("/api/v1/status");
    document.getElementById("version").textContent = "v" + body.version;
    if (!body.ready) { badge.textContent = "starting"; badge.className = "badge warn"; }
    else if (body.healthy) { badge.textContent = "healthy"; badge.className = "badge ok"; }
    else { badge.textContent = "unhealthy: " + body.unhealthy.join(", "); badge.className = "badge bad"; }
  } catch (_) {
    badge.textContent = "unreachable"; badge.className = "badge bad";
  }
}

function nodeLines(kind, c) {
  if (kind === "receiver") {
    return [
      `${fmt(c.accepted_per_second)}/s in`,
      `${fmt(c.accepted_total)} accepted`,
      `${fmt(sumValues(c.refused_items))} refused`,
    ];
  }
  if (kind === "processor") {
    const lines = [`${fmt(sumValues(c.dropped_items))} dropped`];
    if (c.watcher) {
      lines.push(`${fmt(sumValues(c.watcher.incidents_closed))} incidents closed`);
      lines.push(`${fmt(c.watcher.approvals_pending)} approvals pending`);
    }
    return lines;
  }
  if (kind === "pipeline") {
    return [
      `spool ${bytes(c.spool.bytes)}`,
      `${fmt(c.spool.appended_per_second)}/s appended`,
      `${fmt(sumValues(c.spool.dropped_items))} dropped`,
    ];
  }
  const lag = Math.max(0, ...c.queues.map(q => q.lag_seconds));
  return [
    `${fmt(c.sent_per_second)}/s out`,
    `${fmt(c.sent_total)} sent`,
    `lag ${lag.toFixed(1)} s · ${fmt(sumValues(c.dropped_items))} dropped`,
  ];
}

function drawGraph(data) {
  // Processors get one column per position in their pipeline, so the chain reads left to right.
  const depth = {};
  for (const p of data.pipelines) {
    p.processors.forEach((n, i) => { const id = "processors." + n; depth[id] = Math.max(depth[id] || 0, i); });
  }
  const levels = data.processors.length ? Math.max(0, ...Object.values(depth)) + 1 : 0;
  const processorColumns = Array.from({ length: levels }, (_, d) =>
    ["processor", d === 0 ? "Processors" : "", data.processors.filter(c => (depth[c.id] || 0) === d)]);
  const columns = [
    ["receiver", "Receivers", data.receivers],
    ...processorColumns,
    ["pipeline", "Pipelines · spool", data.pipelines],
    ["exporter", "Exporters", data.exporters],
  ];
  const W = 200, H = 78, GAPX = 50, GAPY = 18, TOP = 28;
  const rows = Math.max(1, ...columns.map(c => c[2].length));
  const width = columns.length * W + (columns.length - 1) * GAPX + 2;
  const height = TOP + rows * (H + GAPY);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": "component graph" });
  const pos = {};
  columns.forEach(([kind, title, items], ci) => {
    const x = 1 + ci * (W + GAPX);
    root.append(svg("text", { x, y: 14, class: "colhead" }, title));
    const offset = ((rows - items.length) * (H + GAPY)) / 2;
    items.forEach((c, ri) => { pos[c.id] = { x, y: TOP + offset + ri * (H + GAPY), kind, c }; });
  });
  const edges = svg("g", {});
  for (const [from, to] of data.edges) {
    const a = pos[from], b = pos[to];
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    edges.append(svg("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }
  root.append(edges);
  for (const [id, p] of Object.entries(pos)) {
    const down = p.c.health === "down";
    const g = svg("g", { class: `node ${p.kind}${down ? " down" : ""}`, "data-id": id, transform: `translate(${p.x},${p.y})` });
    const total = p.kind === "receiver" ? p.c.accepted_total : p.kind === "exporter" ? p.c.sent_total
      : p.kind === "pipeline" ? p.c.spool.appended_items : sumValues(p.c.dropped_items);
    g.setAttribute("data-total", String(total));
    g.append(svg("rect", { width: W, height: H, rx: 6 }));
    const kindLabel = p.kind === "pipeline" ? p.c.signals.join(", ") : (p.c.type || p.kind);
    g.append(svg("text", { x: 10, y: 18, class: "title" }, p.c.name));
    g.append(svg("text", { x: W - 10, y: 18, class: "kind", "text-anchor": "end" }, kindLabel));
    nodeLines(p.kind, p.c).forEach((line, i) => {
      g.append(svg("text", { x: 10, y: 36 + i * 15, class: "num" }, line));
    });
    root.append(g);
  }
  const box = document.getElementById("graph");
  box.replaceChildren(el("h2", {}, "Components"), root);
}

function drawDetails(data) {
  const rx = el("table", {},
    el("tr", {}, el("th", {}, "Receiver"), el("th", {}, "Health"), el("th", {}, "Accepted by signal"), el("th", {}, "Refused by reason"), el("th", {}, "Rate")));
  for (const r of data.receivers) {
    rx.append(el("tr", {}, el("td", {}, r.id), el("td", {}, r.health), el("td", {}, reasons(r.accepted_items)),
      el("td", {}, reasons(r.refused_items)), el("td", { class: "n" }, fmt(r.accepted_per_second) + "/s")));
  }
  const ex = el("table", {},
    el("tr", {}, el("th", {}, "Exporter"), el("th", {}, "Sent by signal"), el("th", {}, "Dropped by reason"), el("th", {}, "Retries"),
      el("th", {}, "Spool bytes · queue · lag per pipeline"), el("th", {}, "Rate")));
  for (const e of data.exporters) {
    const replay = q => q.replay && q.replay.remaining_records > 0
      ? ` · replaying earlier run: ${bytes(q.replay.remaining_bytes)} of ${bytes(q.replay.total_bytes)} left`
      : "";
    const queues = e.queues.map(q => `${q.pipeline}: ${bytes(q.spool_bytes)} · ${fmt(q.queue_depth_records)} records · ${q.lag_seconds.toFixed(1)} s${replay(q)}`).join("; ");
    ex.append(el("tr", {}, el("td", {}, e.id), el("td", {}, reasons(e.sent_items)), el("td", {}, reasons(e.dropped_items)),
      el("td", { class: "n" }, fmt(e.retries)), el("td", {}, queues || "–"), el("td", { class: "n" }, fmt(e.sent_per_second) + "/s")));
  }
  const px = el("table", {},
    el("tr", {}, el("th", {}, "Processor"), el("th", {}, "Pipelines"), el("th", {}, "Dropped by reason")));
  for (const p of data.processors) {
    px.append(el("tr", {}, el("td", {}, p.id), el("td", {}, p.pipelines.join(", ")), el("td", {}, reasons(p.dropped_items))));
  }
  document.getElementById("details").replaceChildren(
    el("div", { class: "card" }, el("h2", {}, "Receivers"), rx),
    el("div", { class: "card" }, el("h2", {}, "Processors"), px),
    el("div", { class: "card" }, el("h2", {}, "Exporters"), ex));
}

async function loadComponents() {
  try {
    const { status, body } = await getJSON("/api/v1/components");
    if (status !== 200) {
      document.getElementById("graph").replaceChildren(el("p", { class: "error" }, (body && body.error) || ("HTTP " + status)));
      return;
    }
    drawGraph(body);
    drawDetails(body);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("updated").textContent = "cannot reach Sluice: " + e;
  }
}

// ---- config ----------------------------------------------------------------------------------

async function loadConfig() {
  const { status, body } = await getJSON("/api/v1/config");
  document.getElementById("config-source").textContent = body && body.source ? "— " + body.source : "";
  document.getElementById("config-text").textContent = status === 200 ? body.toml : (body && body.error) || ("HTTP " + status);
}

// ---- watcher ---------------------------------------------------------------------------------

function token() { return sessionStorage.getItem("sluice-approver-token") || ""; }

function setTokenStatus(text, isError) {
  const p = document.getElementById("token-status");
  p.textContent = text;
  p.className = isError ? "error" : "muted";
}

function time(ms) { return ms ? new Date(ms).toLocaleString() : "–"; }

async function decide(id, verb) {
  const r = await fetch(`/api/v1/approvals/${encodeURIComponent(id)}/${verb}`, {
    method: "POST",
    headers: { Authorization: "Bearer " + token(), "Content-Type": "application/json" },
    body: JSON.stringify({ reason: "from the Sluice UI" }),
  });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  const msg = document.getElementById("approval-msg-" + id);
  if (r.status === 200) {
    setTokenStatus(`${verb === "approve" ? "Approved" : "Rejected"} ${id}.`, false);
  } else {
    const text = r.status === 401 ? "refused: this token is not an approver's (401)" : `refused (${r.status}): ${(body && body.error) || ""}`;
    if (msg) { msg.textContent = text; msg.className = "error"; }
    setTokenStatus(text, true);
  }
  loadWatcher();
}

function drawApprovals(list) {
  const box = document.getElementById("approvals");
  if (!list.length) { box.replaceChildren(el("p", { class: "muted" }, "No approval is waiting.")); return; }
  box.replaceChildren(...list.map(a => el("div", { class: "approval", "data-approval": a.id },
    el("div", {}, el("strong", {}, a.script), " — ", a.summary),
    el("div", { class: "kv" }, `id ${a.id} · incident ${a.incident_id} · requested ${time(a.requested_at_ms)} · expires ${time(a.expires_at_ms)}`),
    el("div", { class: "kv" }, "parameters: " + reasons(a.action && a.action.params)),
    el("div", { class: "actions" },
      el("button", { class: "approve", onclick: () => decide(a.id, "approve") }, "Approve"),
      el("button", { class: "reject", onclick: () => decide(a.id, "reject") }, "Reject")),
    el("div", { id: "approval-msg-" + a.id }))));
}

function drawIncidents(list) {
  const box = document.getElementById("incidents");
  if (!list.length) { box.replaceChildren(el("p", { class: "muted" }, "No incident yet.")); return; }
  box.replaceChildren(...list.map(i => {
    const f = i.finding;
    const alertname = (i.alert && i.alert.labels && i.alert.labels.alertname) || i.key;
    const d = el("details", { "data-incident": i.id },
      el("summary", {}, el("strong", {}, alertname), ` — ${i.stage}${i.outcome ? " · " + i.outcome : ""} · received ${time(i.received_at_ms)}`));
    if (f) {
      d.append(el("p", {}, `Finding: ${f.hypothesis.summary} (cause ${f.hypothesis.cause}, confidence ${f.hypothesis.confidence})${f.degraded ? " — degraded" : ""}`));
      const facts = el("ul", {});
      for (const fact of f.facts) facts.append(el("li", {}, `[${fact.source}] ${fact.message}`));
      d.append(facts);
    }
    if (i.decision) d.append(el("p", {}, `Decision: ${i.decision.chosen || "no action"} (${i.decision.reason})${i.decision.requires_approval ? " — needs approval" : ""}`));
    for (const a of i.actions || []) {
      d.append(el("p", {}, `Action ${a.script}: ${a.outcome || "running"}${a.status ? " (HTTP " + a.status + ")" : ""}${a.approved_by ? " approved by " + a.approved_by : ""}`));
    }
    if (i.verification) {
      const v = i.verification;
      d.append(el("p", {}, `Verification (${v.method}): ${v.recovered === null ? "could not tell" : v.recovered ? "recovered" : "not recovered"} — ${v.detail}`));
    }
    return d;
  }));
}

async function loadWatcher() {
  const t = token();
  if (!t) return;
  const [pending, incidents] = await Promise.all([
    getJSON("/api/v1/approvals/pending", t),
    getJSON("/api/v1/incidents?limit=50", t),
  ]);
  if (pending.status === 401 || incidents.status === 401) {
    setTokenStatus("This token is not an approver's (401). Check `approvers` in the watcher config.", true);
    return;
  }
  if (pending.status !== 200) {
    setTokenStatus((pending.body && pending.body.error) || ("HTTP " + pending.status), true);
    return;
  }
  drawApprovals(pending.body.approvals || []);
  if (incidents.status === 200) drawIncidents(incidents.body.incidents || []);
}

document.getElementById("token-form").addEventListener("submit", ev => {
  ev.preventDefault();
  const v = document.getElementById("token").value.trim();
  if (v) sessionStorage.setItem("sluice-approver-token", v);
  document.getElementById("token").value = "";
  setTokenStatus(v ? "Token set for this tab." : "No token entered.", !v);
  loadWatcher();
});
document.getElementById("forget").addEventListener("click", () => {
  sessionStorage.removeItem("sluice-approver-token");
  setTokenStatus("Token forgotten.", false);
});

window.addEventListener("hashchange", showTab);
showTab();
loadStatus();
loadComponents();
setInterval(() => {
  loadStatus();
  if (!document.getElementById("tab-pipeline").hidden) loadComponents();
  if (!document.getElementById("tab-watcher").hidden) loadWatcher();
}, 2000);
