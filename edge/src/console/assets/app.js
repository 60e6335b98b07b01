// voxline console: one page, views by URL fragment (#/calls, #/calls/{id}, #/agents,
// #/keys, #/webhooks, #/sidecars). Only the JSON API of this edge is called; the
// credentials live in sessionStorage (this tab only) and go out as Authorization
// headers, never in a URL. Every node is built with textContent (never parsed from a
// string), so nothing the API returns is parsed as markup.

const SESSION = "voxline.console";
const TERMINAL = ["completed", "failed", "busy", "no_answer", "cancelled"];
const POLL_MS = 1500;

const main = document.getElementById("main");
const live = document.getElementById("live");
let timers = [];

// ---- small helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) if (c) el.append(c);
  return el;
}

function session() {
  try { return JSON.parse(sessionStorage.getItem(SESSION)) || null; } catch { return null; }
}

function announce(text) { live.textContent = text; }

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function fmtOffset(ms) {
  const t = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}`;
}

function durationSeconds(call) {
  if (!call.answered_at || !call.ended_at) return null;
  return Math.max(0, (Date.parse(call.ended_at) - Date.parse(call.answered_at)) / 1000);
}

// Runs fn every ms while `anchor` (a node of the view that started it) is on the page.
function every(ms, anchor, fn) {
  let busy = false;
  const id = setInterval(async () => {
    if (!anchor.isConnected) { clearInterval(id); return; }
    if (busy) return;
    busy = true;
    try { await fn(); } catch (e) { announce(`Refresh failed: ${e.message}`); } finally { busy = false; }
  }, ms);
  timers.push(id);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.field = body && body.error && body.error.field; // the request field it is about
  }
}

async function api(method, path, { as = "key", body, raw = false } = {}) {
  const sess = session() || {};
  const cred = as === "admin" ? sess.admin : sess.key;
  const headers = {};
  if (cred) headers.Authorization = `Bearer ${cred}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
  if (raw) return resp;
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!resp.ok) throw new ApiError(resp.status, json);
  return json;
}

function tenantPath(rest) {
  return `/admin/tenants/${encodeURIComponent(session().tenant)}${rest}`;
}

function statusCell(status) {
  return h("span", { class: "status", "data-status": status, text: status });
}

function errorBox(e) {
  return h("p", { class: "error", role: "alert", text: `Error: ${e.message}` });
}

// ---- login ----

async function login(ev) {
  ev.preventDefault();
  const form = ev.target;
  const key = form.key.value.trim();
  const admin = form.admin.value.trim();
  const tenant = form.tenant.value.trim();
  const err = document.getElementById("login-error");
  err.textContent = "";
  if (!key && !admin) { err.textContent = "Give an API key, the admin token, or both."; return; }
  sessionStorage.setItem(SESSION, JSON.stringify({ key, admin, tenant }));
  try {
    if (key) await api("GET", "/v1/calls?limit=1");
    if (admin) await api("GET", "/admin/sidecars", { as: "admin" });
    if (admin && tenant) await api("GET", tenantPath(""), { as: "admin" });
  } catch (e) {
    sessionStorage.removeItem(SESSION);
    err.textContent = e.status === 401 ? "Those credentials were refused." : `Login failed: ${e.message}`;
    return;
  }
  form.reset();
  go(key ? "#/calls" : tenant ? "#/agents" : "#/sidecars");
}

// To a view: hashchange renders it, unless the hash is already that.
function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function logout() {
  sessionStorage.removeItem(SESSION);
  go("#/");
}

// ---- views ----

const loginView = document.getElementById("login-view");
const statusOptions = document.getElementById("status-options");

function setNav(sess, current) {
  const nav = document.getElementById("nav");
  nav.hidden = !sess;
  document.getElementById("logout").hidden = !sess;
  for (const a of nav.querySelectorAll("a")) {
    const needs = a.dataset.needs;
    const ok = sess && (needs === "key" ? sess.key : needs === "admin" ? sess.admin : sess.admin && sess.tenant);
    a.parentElement.hidden = !ok;
    if (a.getAttribute("href") === `#/${current}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function view(title, ...content) {
  main.replaceChildren(h("h1", { text: title }), ...content);
  document.title = `${title} - voxline console`;
}

async function render() {
  for (const t of timers) clearInterval(t);
  timers = [];
  const sess = session();
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  setNav(sess, parts[0] || "");
  if (!sess) {
    main.replaceChildren(loginView);
    document.title = "Log in - voxline console";
    return;
  }
  const [page, id] = parts;
  try {
    if (page === "calls" && id) await callView(id);
    else if (page === "agents") await agentsView();
    else if (page === "keys") await keysView();
    else if (page === "webhooks") await webhooksView();
    else if (page === "sidecars") await sidecarsView();
    else if (sess.key) await callsView();
    else if (sess.tenant) await agentsView();
    else await sidecarsView();
  } catch (e) {
    main.append(errorBox(e));
  }
  // A new view: keyboard and screen-reader users start at its content.
  main.focus({ preventScroll: true });
}

// ---- calls list, plots ----

async function fetchCalls(status) {
  const q = new URLSearchParams({ limit: "100" });
  if (status) q.set("status", status);
  const page = await api("GET", `/v1/calls?${q}`);
  return page.data || [];
}

function callsTable(calls) {
  return h("table", { id: "calls-table" },
    h("caption", { text: `${calls.length} calls, newest first; updated live` }),
    h("thead", {}, h("tr", {}, ["Call", "Phone", "Status", "Reason", "Created", "Talk time"].map(t => h("th", { scope: "col", text: t })))),
    h("tbody", {}, calls.map(c => {
      const d = durationSeconds(c);
      return h("tr", { "data-call-id": c.id },
        h("td", {}, h("a", { href: `#/calls/${encodeURIComponent(c.id)}`, text: c.id })),
        h("td", { text: c.phone || "" }),
        h("td", {}, statusCell(c.status)),
        h("td", { text: c.ended_reason || "" }),
        h("td", {}, h("time", { datetime: c.created_at, text: fmtTime(c.created_at) })),
        h("td", { text: d === null ? "" : `${d.toFixed(1)} s` }));
    })));
}

async function callsView() {
  const status = h("select", { id: "filter-status", name: "status" }, h("option", { value: "", text: "any" }),
    [...statusOptions.content.querySelectorAll("option")].map(o => o.cloneNode(true)));
  const phone = h("input", { id: "filter-phone", type: "search", placeholder: "+1555", autocomplete: "off" });
  const tableSlot = h("div", { id: "calls-slot" });
  const plotSlot = h("div", { class: "plots", id: "plots" });
  view("Calls",
    h("form", { class: "filters", role: "search", onsubmit: e => e.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "filter-status", text: "Status" }), status),
      h("div", { class: "field" }, h("label", { for: "filter-phone", text: "Phone contains" }), phone)),
    tableSlot, h("h2", { text: "Last 24 hours" }), plotSlot);
  let lastStatuses = "";
  const refresh = async () => {
    const all = await fetchCalls(status.value);
    const shown = all.filter(c => !phone.value || (c.phone || "").includes(phone.value.trim()));
    tableSlot.replaceChildren(callsTable(shown));
    const statuses = shown.map(c => `${c.id}:${c.status}`).join(",");
    if (lastStatuses && statuses !== lastStatuses) announce("Call list updated");
    lastStatuses = statuses;
    plotSlot.replaceChildren(...plots(all));
  };
  status.addEventListener("change", refresh);
  phone.addEventListener("input", refresh);
  await refresh();
  every(POLL_MS, tableSlot, refresh);
}

const OUTCOME_COLORS = { completed: "#1b6e20", failed: "#a4161a", busy: "#d35400", no_answer: "#6b4e00", cancelled: "#4a4a4a", open: "#0b4f9c" };

// Plots over the listed calls (the newest 100): calls per hour by outcome, answer rate, talk time.
function plots(calls) {
  const now = Date.now();
  const hours = 24;
  const buckets = Array.from({ length: hours }, () => ({}));
  for (const c of calls) {
    const age = (now - Date.parse(c.created_at)) / 3600e3;
    if (!(age >= 0 && age < hours)) continue;
    const b = buckets[hours - 1 - Math.floor(age)];
    const k = TERMINAL.includes(c.status) ? c.status : "open";
    b[k] = (b[k] || 0) + 1;
  }
  const max = Math.max(1, ...buckets.map(b => Object.values(b).reduce((a, n) => a + n, 0)));
  const W = 360, H = 150, bw = W / hours;
  const bars = [];
  buckets.forEach((b, i) => {
    let y = H;
    for (const k of Object.keys(OUTCOME_COLORS)) {
      if (!b[k]) continue;
      const bh = (b[k] / max) * (H - 10);
      y -= bh;
      bars.push(s("rect", { x: i * bw + 1, y, width: bw - 2, height: bh, fill: OUTCOME_COLORS[k] },
        s("title", { text: `${hours - 1 - i} h ago: ${b[k]} ${k}` })));
    }
  });
  const counts = {};
  for (const b of buckets) for (const [k, n] of Object.entries(b)) counts[k] = (counts[k] || 0) + n;
  const legend = Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ") || "no calls";
  const perHour = h("figure", { class: "plot" }, h("h2", { text: "Calls per hour by outcome" }),
    s("svg", { width: W, height: H + 16, viewBox: `0 0 ${W} ${H + 16}`, role: "img", "aria-label": `Calls per hour over the last 24 hours: ${legend}` },
      s("line", { x1: 0, y1: H, x2: W, y2: H, stroke: "#767676" }), bars,
      s("text", { x: 0, y: H + 13, "font-size": 11, fill: "#4a4a4a", text: "-24 h" }),
      s("text", { x: W - 24, y: H + 13, "font-size": 11, fill: "#4a4a4a", text: "now" })),
    h("figcaption", { text: legend }));

  const ended = calls.filter(c => TERMINAL.includes(c.status));
  const answered = ended.filter(c => c.answered_at);
  const rate = ended.length ? answered.length / ended.length : 0;
  const rateText = ended.length ? `${Math.round(rate * 100)}% answered (${answered.length} of ${ended.length} ended calls)` : "no ended calls";
  const answerRate = h("figure", { class: "plot" }, h("h2", { text: "Answer rate" }),
    s("svg", { width: 200, height: 40, viewBox: "0 0 200 40", role: "img", "aria-label": rateText },
      s("rect", { x: 0, y: 8, width: 200, height: 24, fill: "#e4e4e4" }),
      s("rect", { x: 0, y: 8, width: 200 * rate, height: 24, fill: "#1b6e20" })),
    h("figcaption", { id: "answer-rate", text: rateText }));

  const talk = answered.map(durationSeconds).filter(d => d !== null);
  const edges = [0, 10, 30, 60, 120, 300, Infinity];
  const names = ["<10 s", "10-30 s", "30-60 s", "1-2 min", "2-5 min", ">5 min"];
  const hist = names.map((_, i) => talk.filter(d => d >= edges[i] && d < edges[i + 1]).length);
  const hmax = Math.max(1, ...hist);
  const durText = talk.length ? names.map((n, i) => `${hist[i]} ${n}`).join(", ") : "no answered calls";
  const durations = h("figure", { class: "plot" }, h("h2", { text: "Talk time" }),
    s("svg", { width: 320, height: H + 16, viewBox: `0 0 320 ${H + 16}`, role: "img", "aria-label": `Talk time of answered calls: ${durText}` },
      hist.map((n, i) => s("rect", { x: i * 53 + 4, y: H - (n / hmax) * (H - 10), width: 42, height: (n / hmax) * (H - 10), fill: "#0b4f9c" },
        s("title", { text: `${n} calls ${names[i]}` }))),
      names.map((n, i) => s("text", { x: i * 53 + 4, y: H + 13, "font-size": 10, fill: "#4a4a4a", text: n }))),
    h("figcaption", { text: durText }));
  return [perHour, answerRate, durations];
}

// ---- one call ----

const EVENT_FIELDS = [["created_at", "created (queued)"], ["dispatched_at", "handed to a sidecar"], ["ringing_at", "ringing"],
  ["answered_at", "answered"], ["hangup_requested_at", "hangup requested"], ["ended_at", "ended"]];

function callFacts(c) {
  const d = durationSeconds(c);
  const rows = [["Status", statusCell(c.status)], ["Phone", c.phone], ["Agent", c.agent_id], ["Engine", c.engine],
    ["Region", c.region], ["Ended reason", c.ended_reason], ["SIP code", c.sip_code], ["Attempts", c.attempts],
    ["Talk time", d === null ? null : `${d.toFixed(1)} s`]];
  return h("dl", { class: "facts", id: "call-facts" }, rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", { text: k }), h("dd", { "data-fact": k }, v)]));
}

function callEvents(c) {
  const evs = EVENT_FIELDS.filter(([f]) => c[f]).map(([f, what]) => [c[f], f === "ended_at" ? `${what}: ${c.status}` : what]);
  evs.sort((a, b) => Date.parse(a[0]) - Date.parse(b[0]));
  return h("ol", { id: "call-events" }, evs.map(([at, what]) => h("li", {}, h("time", { datetime: at, text: fmtTime(at) }), ` ${what}`)));
}

async function callView(id) {
  const path = `/v1/calls/${encodeURIComponent(id)}`;
  let call = await api("GET", path);
  const facts = h("div", {}, callFacts(call));
  const events = h("div", {}, callEvents(call));
  const player = h("section", { id: "recording-section", "aria-labelledby": "rec-title" }, h("h2", { id: "rec-title", text: "Recording and transcript" }),
    h("p", { class: "note", id: "recording-note", text: "The recording and transcript appear when the call has ended." }));
  const deliveries = h("section", { id: "deliveries", "aria-labelledby": "dlv-title" }, h("h2", { id: "dlv-title", text: "Webhook deliveries and tool calls" }));
  view(`Call ${id}`, h("p", {}, h("a", { href: "#/calls", text: "All calls" })), facts,
    h("h2", { text: "Events" }), events, player, deliveries);
  let loaded = false;
  const refresh = async () => {
    if (!TERMINAL.includes(call.status)) {
      const before = call.status;
      call = await api("GET", path);
      facts.replaceChildren(callFacts(call));
      events.replaceChildren(callEvents(call));
      if (call.status !== before) announce(`Call ${call.status}`);
    }
    if (TERMINAL.includes(call.status) && !loaded) loaded = await loadMedia(call, player);
    await loadDeliveries(call.id, deliveries);
  };
  await refresh();
  every(POLL_MS, facts, refresh);
}

// Returns true when there is nothing more to wait for.
async function loadMedia(call, section) {
  let transcript = null;
  try { transcript = await api("GET", `/v1/calls/${encodeURIComponent(call.id)}/transcript`); } catch (e) { if (e.status !== 404) throw e; }
  if (!call.record) {
    section.replaceChildren(section.firstChild, h("p", { class: "note", text: "This call was not recorded (record: false)." }), transcriptList(transcript, null));
    return true;
  }
  const resp = await api("GET", `/v1/calls/${encodeURIComponent(call.id)}/recording`, { raw: true });
  if (resp.status === 404) {
    document.getElementById("recording-note").textContent = call.answered_at
      ? "Waiting for the sidecar to upload the recording..." : "The call was never answered: no recording.";
    return !call.answered_at;
  }
  if (!resp.ok) throw new ApiError(resp.status, null);
  const bytes = await resp.arrayBuffer();
  const url = URL.createObjectURL(new Blob([bytes], { type: "audio/wav" }));
  const audio = h("audio", { id: "recording", controls: true, preload: "auto", src: url, "aria-label": "Call recording (left: agent, right: callee)" });
  const canvas = h("canvas", { id: "waveform", width: 1800, height: 280, role: "img", tabindex: "0",
    "aria-label": "Waveform of the recording: agent on top, callee below. Click or press arrow keys to seek." });
  const download = h("a", { href: url, download: `${call.id}.wav`, text: "Download the WAV" });
  const turns = transcriptList(transcript, audio);
  section.replaceChildren(section.firstChild, h("div", { class: "player" }, canvas, audio, download), turns);
  const wave = await decodeWave(bytes);
  const draw = () => drawWave(canvas, wave, audio, transcript);
  draw();
  audio.addEventListener("timeupdate", () => { draw(); markCurrent(turns, audio.currentTime * 1000); });
  audio.addEventListener("seeked", draw);
  canvas.addEventListener("click", ev => {
    const r = canvas.getBoundingClientRect();
    if (audio.duration) audio.currentTime = ((ev.clientX - r.left) / r.width) * audio.duration;
  });
  canvas.addEventListener("keydown", ev => {
    if (ev.key === "ArrowRight") audio.currentTime = Math.min(audio.duration || 0, audio.currentTime + 2);
    else if (ev.key === "ArrowLeft") audio.currentTime = Math.max(0, audio.currentTime - 2);
    else if (ev.key === " ") { audio.paused ? audio.play() : audio.pause(); }
    else return;
    ev.preventDefault();
  });
  return true;
}

function transcriptList(t, audio) {
  if (!t || !t.turns || !t.turns.length) return h("p", { class: "note", text: "No transcript." });
  const list = h("ol", { class: "turns", id: "transcript", "aria-label": "Transcript; activate a turn to play from its start" },
    t.turns.map((turn, i) => h("li", {}, h("button", { type: "button", class: "turn", "data-role": turn.role, "data-start-ms": turn.start_ms,
      "data-turn": i, onclick: () => { if (audio) { audio.currentTime = turn.start_ms / 1000; audio.play().catch(() => {}); } } },
      h("time", { text: fmtOffset(turn.start_ms) }), h("span", { class: "who", text: turn.role === "agent" ? "Agent" : "Callee" }), turn.text))));
  const extra = [t.outcome && `outcome: ${t.outcome}`, t.summary && `summary: ${t.summary}`].filter(Boolean).join("; ");
  return h("div", {}, list, extra ? h("p", { id: "transcript-summary", text: extra }) : null);
}

function markCurrent(turns, ms) {
  let current = null;
  for (const b of turns.querySelectorAll("button.turn")) if (Number(b.dataset.startMs) <= ms) current = b;
  for (const b of turns.querySelectorAll("button.turn")) b.classList.toggle("current", b === current);
}

// Min/max per pixel column of each channel, from the WAV decoded by WebAudio.
async function decodeWave(bytes) {
  const Ctx = window.OfflineAudioContext || window.webkitOfflineAudioContext;
  const ctx = new Ctx(2, 1, 8000);
  const buf = await ctx.decodeAudioData(bytes.slice(0));
  const cols = 900;
  const chans = [];
  for (let c = 0; c < Math.min(2, buf.numberOfChannels); c++) {
    const data = buf.getChannelData(c);
    const step = Math.max(1, Math.floor(data.length / cols));
    const peaks = [];
    for (let i = 0; i < cols; i++) {
      let lo = 0, hi = 0;
      for (let j = i * step; j < Math.min(data.length, (i + 1) * step); j++) { const v = data[j]; if (v < lo) lo = v; if (v > hi) hi = v; }
      peaks.push([lo, hi]);
    }
    chans.push(peaks);
  }
  document.getElementById("waveform")?.setAttribute("data-decoded-seconds", buf.duration.toFixed(2));
  return { chans, duration: buf.duration };
}

function drawWave(canvas, wave, audio, transcript) {
  const g = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, lane = H / 2;
  g.fillStyle = "#ffffff"; g.fillRect(0, 0, W, H);
  const colors = ["#0b4f9c", "#7a2e8c"];
  wave.chans.forEach((peaks, c) => {
    g.fillStyle = colors[c];
    const mid = lane * c + lane / 2, cw = W / peaks.length;
    peaks.forEach(([lo, hi], i) => g.fillRect(i * cw, mid - hi * lane / 2, Math.max(1, cw), Math.max(1, (hi - lo) * lane / 2)));
  });
  g.fillStyle = "#4a4a4a"; g.font = "22px sans-serif";
  g.fillText("agent", 8, 24); g.fillText("callee", 8, lane + 24);
  const dur = wave.duration || audio.duration || 1;
  if (transcript && transcript.turns) {
    g.strokeStyle = "#b35c00";
    for (const t of transcript.turns) { const x = (t.start_ms / 1000 / dur) * W; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, H); g.stroke(); }
  }
  const x = (audio.currentTime / dur) * W;
  g.fillStyle = "#111"; g.fillRect(x - 1, 0, 3, H);
}

function attemptText(a) {
  return `#${a.attempt} ${fmtTime(a.at)}: ${a.status_code === null ? "no answer" : `HTTP ${a.status_code}`}${a.error ? ` (${a.error})` : ""}, ` +
    `${a.duration_ms} ms${a.manual ? ", manual" : ""}${a.response_snippet ? `; answered: ${a.response_snippet}` : ""}`;
}

// The call's entries of the delivery log (its newest 100): webhook deliveries and tool calls, with their attempts.
async function loadDeliveries(callId, section) {
  const list = await api("GET", `/v1/webhooks/deliveries?limit=100&call_id=${encodeURIComponent(callId)}`);
  const mine = list.data || [];
  // Each delivery's attempts only when the list says it changed.
  const signature = JSON.stringify(mine.map(d => [d.id, d.status, d.attempt_count, d.updated_at]));
  if (section.dataset.signature === signature) return;
  const details = await Promise.all(mine.map(d => api("GET", `/v1/webhooks/deliveries/${encodeURIComponent(d.id)}`)));
  section.dataset.signature = signature;
  const focused = document.activeElement && document.activeElement.dataset.delivery;
  section.replaceChildren(section.firstChild, details.length ? h("table", { id: "deliveries-table" },
    h("caption", { text: "Each event sent to each endpoint and each tool call's request, with every attempt and the receiver's answer" }),
    h("thead", {}, h("tr", {}, ["Event", "Status", "Attempts (answer)", ""].map(t => h("th", { scope: "col", text: t })))),
    h("tbody", {}, details.map(d => h("tr", { "data-delivery-id": d.id, "data-kind": d.kind },
      h("td", { text: d.kind === "tool_call" ? `tool call ${(d.payload && d.payload.name) || ""}` : d.event_type }),
      h("td", {}, statusCell(d.status)),
      h("td", {}, h("ol", { class: "attempts" }, d.attempts.map(a => h("li", { "data-attempt": a.attempt }, attemptText(a))))),
      h("td", {}, d.kind === "tool_call" ? "" : h("button", { type: "button", class: "redeliver", "data-delivery": d.id, "aria-label": `Redeliver ${d.event_type}`,
        onclick: async ev => {
          ev.target.disabled = true;
          try { await api("POST", `/v1/webhooks/deliveries/${encodeURIComponent(d.id)}/redeliver`); announce(`Redelivery of ${d.event_type} queued`); }
          catch (e) { section.append(errorBox(e)); }
          finally { ev.target.disabled = false; }
        } }, "Redeliver")))))) : h("p", { class: "note", text: "No deliveries for this call (yet)." }));
  if (focused) section.querySelector(`button[data-delivery="${CSS.escape(focused)}"]`)?.focus();
}

// ---- operator views ----

function settingsList(obj, skip) {
  return h("dl", { class: "facts" }, Object.entries(obj).filter(([k]) => !skip.includes(k)).map(([k, v]) =>
    [h("dt", { text: k }), h("dd", { text: v === null ? "-" : typeof v === "object" ? JSON.stringify(v) : String(v) })]));
}

// The agent settings the console edits: [field, label, kind, hint].
const AGENT_FIELDS = [
  ["name", "Name", "text", "Required; at most 200 characters."],
  ["system_prompt", "Prompt", "textarea", "The instructions; a local-engine script's greeting is its first message."],
  ["first_speaker", "Who speaks first", "select", "agent: the agent greets at the answer; callee: it waits for the callee."],
  ["default_engine", "Engine", "select", ""],
  ["voice", "Voice", "text", "Letters, digits, - _ ."],
  ["model", "Model", "text", "The engine's model name."],
  ["language", "Language", "text", "BCP-47, e.g. en-US."],
  ["silence_timeout_seconds", "Silence timeout (seconds)", "number", "10-3600: hang up after this long with neither side speaking."],
];

function agentForm(a, onSaved) {
  const fid = f => `agent-${a.id}-${f}`;
  const inputs = {};
  const options = { default_engine: [...document.getElementById("engine-options").content.querySelectorAll("option")].map(o => o.value),
    first_speaker: ["agent", "callee"] };
  const fields = AGENT_FIELDS.map(([f, label, kind, hint]) => {
    const v = a[f] === null || a[f] === undefined ? "" : String(a[f]);
    const attrs = { id: fid(f), name: f, "data-field": f, "aria-describedby": `${fid(f)}-hint ${fid(f)}-error` };
    const input = kind === "textarea" ? h("textarea", { ...attrs, rows: 6 })
      : kind === "select" ? h("select", attrs, options[f].map(o => h("option", { value: o, text: o })))
      : h("input", { ...attrs, type: kind, autocomplete: "off", spellcheck: "false", required: f === "name" });
    input.value = v;
    inputs[f] = input;
    return h("div", { class: "field" }, h("label", { for: fid(f), text: label }), input,
      h("small", { id: `${fid(f)}-hint`, class: "note", text: hint }),
      h("p", { id: `${fid(f)}-error`, class: "error field-error", "aria-live": "polite" }));
  });
  const status = h("p", { class: "note", role: "status" });
  const form = h("form", { class: "agent-form", "data-agent": a.id, novalidate: true, onsubmit: async ev => {
    ev.preventDefault();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    // Only what changed goes in the PATCH; the API validates it.
    const body = {};
    for (const [f, , kind] of AGENT_FIELDS) {
      const before = a[f] === null || a[f] === undefined ? "" : String(a[f]);
      const now = inputs[f].value;
      if (now === before) continue;
      body[f] = kind === "number" && now.trim() !== "" && !isNaN(Number(now)) ? Number(now) : now;
    }
    if (!Object.keys(body).length) { status.textContent = "Nothing changed."; return; }
    try {
      const saved = await api("PATCH", tenantPath(`/agents/${encodeURIComponent(a.id)}`), { as: "admin", body });
      announce(`Agent ${saved.name} saved`);
      onSaved(saved);
    } catch (e) {
      const input = e.field && form.querySelector(`[data-field="${CSS.escape(e.field.split(/[.[]/)[0])}"]`);
      if (input) {
        input.setAttribute("aria-invalid", "true");
        document.getElementById(`${input.id}-error`).textContent = e.message;
        input.focus();
      } else status.replaceChildren(errorBox(e));
    }
  } }, fields, h("button", { type: "submit", class: "save-agent", text: `Save ${a.name || a.id}` }), status);
  return form;
}

async function agentsView() {
  const page = await api("GET", tenantPath("/agents"), { as: "admin" });
  const section = a => {
    const el = h("section", { "data-agent-id": a.id, "aria-labelledby": `agent-${a.id}-title` },
      h("h2", { id: `agent-${a.id}-title`, text: `${a.name || a.id}` }),
      agentForm(a, saved => { const next = section(saved); next.dataset.saved = "true"; el.replaceWith(next); next.querySelector("h2").focus(); }),
      h("details", {}, h("summary", { text: "All settings" }), settingsList(a, ["object"])));
    el.querySelector("h2").setAttribute("tabindex", "-1");
    return el;
  };
  view("Agents", ...(page.data || []).map(section));
}

async function keysView() {
  const out = h("div", { id: "minted", "aria-live": "polite" });
  const name = h("input", { id: "key-name", name: "name", required: true, autocomplete: "off" });
  const table = h("div", {});
  const refresh = async () => {
    const page = await api("GET", tenantPath("/api-keys"), { as: "admin" });
    table.replaceChildren(h("table", { id: "keys-table" }, h("caption", { text: "API keys, revoked ones included" }),
      h("thead", {}, h("tr", {}, ["Name", "Id", "Created", "Revoked", ""].map(t => h("th", { scope: "col", text: t })))),
      h("tbody", {}, (page.data || []).map(k => h("tr", { "data-key-id": k.id },
        h("td", { text: k.name || "" }), h("td", {}, h("code", { text: k.id })), h("td", { text: fmtTime(k.created_at) }),
        h("td", { class: "revoked", text: k.revoked_at ? fmtTime(k.revoked_at) : "" }),
        h("td", {}, k.revoked_at ? "" : h("button", { type: "button", class: "revoke", "data-key": k.id, "aria-label": `Revoke ${k.name || k.id}`,
          onclick: async () => {
            if (!confirm(`Revoke ${k.name || k.id}? Clients using it stop working.`)) return;
            await api("DELETE", tenantPath(`/api-keys/${encodeURIComponent(k.id)}`), { as: "admin" });
            announce(`Key ${k.id} revoked`);
            await refresh();
          } }, "Revoke")))))));
  };
  const form = h("form", { class: "filters", onsubmit: async ev => {
    ev.preventDefault();
    if (!name.value.trim()) return;
    const k = await api("POST", tenantPath("/api-keys"), { as: "admin", body: { name: name.value.trim() } });
    name.value = "";
    out.replaceChildren(h("p", { text: `New key ${k.id} (shown once; copy it now):` }), h("p", { class: "secret", id: "minted-key", text: k.key }));
    await refresh();
  } }, h("div", { class: "field" }, h("label", { for: "key-name", text: "New key's name" }), name), h("button", { type: "submit", id: "mint", text: "Mint key" }));
  view("API keys", form, out, table);
  await refresh();
}

async function webhooksView() {
  const out = h("div", { "aria-live": "polite" });
  const url = h("input", { id: "wh-url", type: "url", required: true, autocomplete: "off", placeholder: "https://example.com/hooks" });
  const table = h("div", {});
  const refresh = async () => {
    const page = await api("GET", tenantPath("/webhooks"), { as: "admin" });
    table.replaceChildren(h("table", { id: "webhooks-table" }, h("caption", { text: "Webhook endpoints" }),
      h("thead", {}, h("tr", {}, ["URL", "Events", "Format", "Enabled", ""].map(t => h("th", { scope: "col", text: t })))),
      h("tbody", {}, (page.data || []).map(w => h("tr", { "data-webhook-id": w.id },
        h("td", { text: w.url }), h("td", { text: (w.events || []).join(", ") || "all" }), h("td", { text: w.format || "" }),
        h("td", { text: w.enabled ? "yes" : `no (${w.disabled_reason || ""})` }),
        h("td", {}, h("button", { type: "button", "aria-label": `Rotate the secret of ${w.url}`, onclick: async () => {
          const r = await api("POST", tenantPath(`/webhooks/${encodeURIComponent(w.id)}/rotate`), { as: "admin", body: {} });
          out.replaceChildren(h("p", { text: `New secret of ${w.url} (shown once; the old one keeps signing during the overlap):` }), h("p", { class: "secret", text: r.secret }));
        } }, "Rotate secret"), " ",
        h("button", { type: "button", class: "test-send", "data-webhook": w.id, disabled: !w.enabled, "aria-label": `Send a test event to ${w.url}`,
          onclick: async ev => {
            ev.target.disabled = true;
            try { testSent(await api("POST", tenantPath(`/webhooks/${encodeURIComponent(w.id)}/test`), { as: "admin" }), w.url); }
            catch (e) { out.replaceChildren(errorBox(e)); }
            finally { ev.target.disabled = false; }
          } }, "Send test")))))));
  };
  // Test events sent from this page, each followed in the delivery log (with the tenant's API key).
  const tests = h("ol", { id: "test-deliveries", "aria-label": "Test events sent from this page" });
  const testSent = (d, url) => {
    const li = h("li", { "data-delivery-id": d.id }, `Test event to ${url}: `, statusCell(d.status), h("span", { class: "attempts" }));
    tests.prepend(li);
    announce(`Test event to ${url} queued`);
    if (!session().key) { li.append(" (log in with the tenant's API key as well to follow it)"); return; }
    every(POLL_MS, li, async () => {
      if (li.dataset.final) return;
      const now = await api("GET", `/v1/webhooks/deliveries/${encodeURIComponent(d.id)}`);
      if (now.status !== "pending") li.dataset.final = now.status;
      li.replaceChildren(`Test event to ${url}: `, statusCell(now.status),
        h("span", { class: "attempts", text: now.attempts.length ? ` ${now.attempts.map(attemptText).join("; ")}` : "" }));
    });
  };
  const form = h("form", { class: "filters", onsubmit: async ev => {
    ev.preventDefault();
    try {
      const w = await api("POST", tenantPath("/webhooks"), { as: "admin", body: { url: url.value.trim() } });
      url.value = "";
      out.replaceChildren(h("p", { text: `Endpoint ${w.id} added; its signing secret (shown once):` }), h("p", { class: "secret", text: w.secret }));
      await refresh();
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } }, h("div", { class: "field" }, h("label", { for: "wh-url", text: "New endpoint URL" }), url), h("button", { type: "submit", text: "Add endpoint" }));
  view("Webhook endpoints", form, out, table, h("h2", { text: "Test events" }), tests);
  await refresh();
}

// A sidecar's lease turnaround samples over time (ms, edge clock).
function turnaroundPlot(sc, load) {
  const pts = load.lease_turnaround_samples;
  const t = load.lease_turnaround_ms;
  const text = pts.length ? `${pts.length} samples; last ${t.last} ms, median ${t.p50} ms, max ${t.max} ms` : "no samples yet";
  const W = 360, H = 120, max = Math.max(1, ...pts.map(p => p.turnaround_ms));
  const x = i => pts.length > 1 ? (i / (pts.length - 1)) * (W - 8) + 4 : W / 2;
  const y = v => H - 4 - (v / max) * (H - 16);
  return h("figure", { class: "plot", "data-sidecar-plot": sc.id },
    h("h3", { text: `${sc.id}: lease turnaround` }),
    s("svg", { width: W, height: H + 16, viewBox: `0 0 ${W} ${H + 16}`, role: "img", "aria-label": `Lease turnaround of ${sc.id}: ${text}` },
      s("line", { x1: 0, y1: H, x2: W, y2: H, stroke: "#767676" }),
      pts.length > 1 ? s("polyline", { points: pts.map((p, i) => `${x(i)},${y(p.turnaround_ms)}`).join(" "), fill: "none", stroke: "#0b4f9c", "stroke-width": 2 }) : null,
      pts.map((p, i) => s("circle", { cx: x(i), cy: y(p.turnaround_ms), r: 2.5, fill: "#0b4f9c" }, s("title", { text: `${fmtTime(p.at)}: ${p.turnaround_ms} ms` }))),
      s("text", { x: 2, y: 11, "font-size": 11, fill: "#4a4a4a", text: `${max} ms` }),
      s("text", { x: 2, y: H + 13, "font-size": 11, fill: "#4a4a4a", text: pts.length ? fmtTime(pts[0].at).slice(11) : "" }),
      s("text", { x: W - 64, y: H + 13, "font-size": 11, fill: "#4a4a4a", text: pts.length ? fmtTime(pts[pts.length - 1].at).slice(11) : "" })),
    h("figcaption", { class: "turnaround", text }));
}

async function sidecarsView() {
  const slot = h("div", { id: "sidecars-slot" });
  view("Sidecars", h("p", { class: "note", text: "Each live sidecar's calls against its capacity, as its region's dispatch queue holds them, " +
    "and its link's lease turnaround: from the edge's answer to one lease poll to the arrival of the next (the link's round trip plus the sidecar's time to poll again), on the edge's clock." }), slot);
  const refresh = async () => {
    const page = await api("GET", "/admin/sidecars", { as: "admin" });
    const regions = {};
    for (const sc of page.data || []) (regions[sc.region] ||= []).push(sc);
    slot.replaceChildren(...Object.entries(regions).map(([region, list]) => {
      const live = list.filter(sc => sc.load);
      const active = live.reduce((n, sc) => n + sc.load.active_calls, 0), cap = live.reduce((n, sc) => n + sc.load.capacity, 0);
      return h("section", { "data-region": region },
        h("h2", { text: `Region ${region}: ${live.length} live, ${active} of ${cap} call slots in use` }),
        h("table", {}, h("thead", {}, h("tr", {}, ["Sidecar", "State", "Calls / capacity", "Offered", "Free slots (last poll)", "Last seen", "Turnaround last / median / max"].map(t => h("th", { scope: "col", text: t })))),
          h("tbody", {}, list.map(sc => {
            const l = sc.load, t = l && l.lease_turnaround_ms;
            return h("tr", { "data-sidecar-id": sc.id },
              h("td", { text: sc.id }),
              h("td", { text: sc.revoked_at ? `revoked ${fmtTime(sc.revoked_at)}` : l ? "live" : "offline" }),
              h("td", { class: "load", text: l ? `${l.active_calls} / ${l.capacity}` : "" }),
              h("td", { text: l ? String(l.offered_calls) : "" }),
              h("td", { text: l && l.free_slots !== null ? String(l.free_slots) : "" }),
              h("td", { text: l ? fmtTime(l.last_seen_at) : "" }),
              h("td", { text: t && t.last !== null ? `${t.last} / ${t.p50} / ${t.max} ms` : "" }));
          }))),
        h("div", { class: "plots" }, live.map(sc => turnaroundPlot(sc, sc.load))));
    }));
  };
  await refresh();
  every(POLL_MS * 2, slot, refresh);
}

// ---- start ----

document.getElementById("login-form").addEventListener("submit", login);
document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", render);
render();
