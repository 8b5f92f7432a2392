// icelab serve: the page. Plain JavaScript, no library: it must work in a classroom without
// internet. The token comes from the address the server printed; every request carries it.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const SVGNS = "http://www.w3.org/2000/svg";
const SX = 78, SY = 80, PAD = 80;          // data units of lab/report/graph.py's layout -> pixels
const state = { topo: null, counters: null, prev: null, selected: null, calls: {}, latency: [], levels: [], levelLatency: [] };
window.icelab = state;                      // the end-to-end test reads latency and call states here

function $(id) { return document.getElementById(id); }
function el(tag, attrs = {}, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function api(path, body) {
  const opts = { headers: { "X-Icelab-Token": TOKEN } };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { log(`refused (${r.status}): ${data.error || r.statusText}`, true); throw new Error(data.error); }
  return data;
}

function log(text, bad) {
  const line = el("div", {}, `${new Date().toLocaleTimeString()}  ${text}`);
  if (bad) line.className = "fail";
  $("log").prepend(line);
}

// -- the picture -------------------------------------------------------------------------------

function px(n) { return [PAD + n.x * SX, PAD + (state.maxY - n.y) * SY]; }

function draw(topo) {
  const svg = $("topo");
  svg.textContent = "";
  state.maxY = Math.max(...topo.nodes.map(n => n.y));
  const maxX = Math.max(...topo.nodes.map(n => n.x));
  const minY = Math.min(...topo.nodes.map(n => n.y));
  svg.setAttribute("viewBox", `0 0 ${2 * PAD + maxX * SX + 40} ${2 * PAD + (state.maxY - minY) * SY}`);
  const byName = Object.fromEntries(topo.nodes.map(n => [n.name, n]));
  for (const l of topo.links) {
    const [x1, y1] = px(byName[l.a.node]), [x2, y2] = px(byName[l.b.node]);
    const g = el("svg:g", { id: `link-${l.index}` });
    g.append(el("svg:line", { x1, y1, x2, y2, class: "link" }));
    const lanEnd = byName[l.a.node].kind === "lan" || byName[l.b.node].kind === "lan";
    // in the middle of the line: end a's counts above it, end b's below (a lan port has none)
    for (const [end, dy] of [[l.a, -6], [l.b, lanEnd ? -6 : 16]]) {
      if (byName[end.node].kind === "lan") continue;
      const t = el("svg:text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 + dy, class: "count", "text-anchor": "middle",
                                 id: `count-${end.node}:${end.interface}` });
      g.append(t);
    }
    svg.append(g);
  }
  for (const n of topo.nodes) {
    const [x, y] = px(n);
    const g = el("svg:g", { class: "node", id: `node-${n.name}` });
    if (n.kind === "lan") {
      g.append(el("svg:rect", { x: x - 6, y: y - 40, width: 12, height: 80, fill: n.face, stroke: n.edge, rx: 3 }));
      g.append(el("svg:text", { x, y: y + 54, "text-anchor": "middle" }, n.name));
    } else {
      g.append(el("svg:rect", { x: x - 62, y: y - 20, width: 124, height: 40, fill: n.face, stroke: n.edge, rx: 6 }));
      g.append(el("svg:text", { x, y: y - 2, "text-anchor": "middle", "font-weight": "bold" }, n.name));
      const sub = n.label && n.label !== n.name ? n.label : n.kind === "host" ? (n.services.join(", ") || n.role || "host") : n.kind;
      g.append(el("svg:text", { x, y: y + 12, "text-anchor": "middle", class: "sub" }, sub.length > 18 ? sub.slice(0, 17) + "…" : sub));
    }
    g.addEventListener("click", () => select(n.name));
    svg.append(g);
  }
}

function fmt(n) { return n >= 10000 ? `${(n / 1000).toFixed(0)}k` : `${n}`; }

function showCounters(c) {
  const prev = state.counters;
  state.counters = c;
  for (const [key, v] of Object.entries(c.interfaces)) {
    const t = document.getElementById(`count-${key}`);
    if (!t) continue;
    const drops = v.rx_dropped + v.tx_dropped + v.fw_dropped;
    t.textContent = `↑${fmt(v.tx_packets)} ↓${fmt(v.rx_packets)}`;
    if (drops) t.append(el("svg:tspan", { class: "dropcount" }, ` ✗${fmt(drops)}`));
    const was = prev && prev.interfaces[key];
    const wasDrops = was ? was.rx_dropped + was.tx_dropped + was.fw_dropped : drops;
    const moving = was && (v.tx_packets !== was.tx_packets || v.rx_packets !== was.rx_packets);
    t.classList.toggle("dropping", drops > wasDrops);
    const line = t.parentNode.querySelector("line");
    line.classList.toggle("dropping", drops > wasDrops || (line.classList.contains("dropping") && t.dataset.hold > 0));
    line.classList.toggle("busy", !!moving && !line.classList.contains("dropping"));
  }
  if (state.selected && c.rules[state.selected]) showRules(state.selected, c.rules[state.selected]);
}

// -- a node ---------------------------------------------------------------------------------------

async function select(name) {
  document.querySelectorAll(".node.selected").forEach(e => e.classList.remove("selected"));
  $(`node-${name}`).classList.add("selected");
  state.selected = name;
  const info = await api(`/api/node/${encodeURIComponent(name)}`);
  $("node-title").textContent = `${info.name} (${info.kind}${info.mode ? ", " + info.mode : ""})`;
  const box = $("node");
  box.textContent = "";
  const addr = el("table");
  addr.append(row(["interface", "address", "to", "capture"], "th"));
  for (const a of info.addresses) {
    const tr = row([a.interface, a.address || "(lan port)", a.peer, ""]);
    if (info.kind !== "lan") {
      const link = el("a", { href: `/api/pcap/${encodeURIComponent(name)}/${encodeURIComponent(a.interface)}?token=${encodeURIComponent(TOKEN)}`,
                             download: "" }, "pcap");
      tr.lastChild.append(link);
    }
    addr.append(tr);
  }
  box.append(addr);
  if (info.routes.length) {
    box.append(el("h3", {}, "routes"), el("div", { class: "routes" }, info.routes.join("\n")));
  }
  if (info.rules) {
    box.append(el("h3", {}, "rules"), el("div", { id: "rules" }));
    showRules(name, info.rules);
    if (info.kind === "firewall") box.append(addRuleForm(name));
    const flush = el("button", {}, info.kind === "nat" ? "Flush NAT mappings" : "Flush conntrack");
    flush.addEventListener("click", () => api("/api/nat/flush", { node: name }));
    box.append(flush);
  }
}

function row(cells, tag = "td") {
  const tr = el("tr");
  for (const c of cells) tr.append(c instanceof Node ? wrap(tag, c) : el(tag, {}, c));
  return tr;
}
function wrap(tag, child) { const e = el(tag); e.append(child); return e; }

function showRules(node, rules) {
  const box = document.getElementById("rules");
  if (!box) return;
  const fw = state.topo.nodes.find(n => n.name === node).kind === "firewall";
  const t = el("table");
  t.append(row(["#", "name", "chain", "action", "packets", ""], "th"));
  for (const r of rules) {
    const buttons = el("span");
    if (fw && r.number !== null && r.table === "icelab" && !(r.name || "").startsWith("default ")) {
      const b = el("button", { "data-rule": r.number }, r.enabled ? "off" : "on");
      b.addEventListener("click", () => api("/api/rule/toggle", { node, number: r.number, enabled: !r.enabled }));
      const d = el("button", {}, "delete");
      d.addEventListener("click", () => api("/api/rule/delete", { node, number: r.number }));
      buttons.append(b, d);
    }
    // a rule toggled on again keeps its number here; the live table's own is shown beside it
    const num = r.number === null ? "" : String(r.number) + (r.live_number ? ` (r${r.live_number})` : "");
    const tr = row([num, r.name, r.chain, r.action, String(r.packets), buttons]);
    tr.lastChild.className = "keep";
    tr.children[4].className = "pk";
    if (!r.enabled) tr.className = "off";
    else if (r.packets > 0 && (r.action === "drop" || r.action === "reject")) tr.className = "hit";
    t.append(tr);
  }
  box.replaceChildren(t);
}

function addRuleForm(node) {
  const f = el("form", { id: "rule-add" });
  f.append(el("h3", {}, "add a rule"));
  const fields = [["name", "text", "allow turn udp"], ["direction", ["outbound", "inbound"]], ["action", ["accept", "drop", "reject"]],
                  ["proto", ["udp", "tcp", "icmp", "any"]], ["dst", "text", "connect"], ["port", "text", "3478"]];
  for (const [k, kind, ph] of fields) {
    const input = Array.isArray(kind) ? el("select", { name: k }) : el("input", { name: k, type: kind, placeholder: ph, size: 14 });
    if (Array.isArray(kind)) for (const o of kind) input.append(el("option", { value: o }, o));
    const l = el("label", {}, `${k} `);
    l.append(input);
    f.append(l);
  }
  f.append(el("button", { type: "submit" }, "Add rule"));
  f.addEventListener("submit", ev => {
    ev.preventDefault();
    const rule = {};
    for (const [k, v] of new FormData(f)) if (v !== "") rule[k] = /^\d+$/.test(v) && k === "port" ? Number(v) : v;
    api("/api/rule/add", { node, rule }).then(() => select(node));
  });
  return f;
}

// -- links -----------------------------------------------------------------------------------------

function setupLinks(topo) {
  const sel = $("link-select");
  for (const l of topo.links) sel.append(el("option", { value: l.index }, `${l.a.node} — ${l.b.node}`));
  const fill = () => {
    const l = topo.links[sel.value];
    $("link-dir").replaceChildren(el("option", { value: "both" }, "both ways"),
      el("option", { value: "a2b" }, `${l.a.node} → ${l.b.node}`), el("option", { value: "b2a" }, `${l.b.node} → ${l.a.node}`));
  };
  sel.addEventListener("change", fill);
  fill();
  const units = { delay: "ms", jitter: "ms", loss: "%", rate: "kbit" };
  for (const k of Object.keys(units)) {
    const s = $(`s-${k}`);
    s.addEventListener("input", () => {
      $(`o-${k}`).textContent = k === "rate" && s.value === "0" ? "unlimited" : `${s.value} ${units[k] === "%" ? "%" : units[k]}`;
    });
  }
  const send = clear => {
    const l = topo.links[sel.value];
    const body = { a: l.a.node, b: l.b.node, direction: $("link-dir").value, clear: true };
    if (!clear) {
      body.delay = `${$("s-delay").value}ms`;
      body.jitter = `${$("s-jitter").value}ms`;
      body.loss = `${$("s-loss").value}%`;
      if ($("s-rate").value !== "0") body.rate = `${$("s-rate").value}kbit`;
    }
    api("/api/link", body).then(r => { $("link-now").textContent = Object.entries(r).map(([d, t]) => `${d}: ${t}`).join("; "); });
  };
  $("link-apply").addEventListener("click", () => send(false));
  $("link-clear").addEventListener("click", () => send(true));
}

// -- TURN ------------------------------------------------------------------------------------------

function setupTurn(topo) {
  if (!topo.turn.length) { $("turn-panel").hidden = true; return; }
  for (const t of topo.turn) $("turn-node").append(el("option", { value: t }, t));
  document.querySelectorAll("#turn-panel button[data-verb]").forEach(b =>
    b.addEventListener("click", () => api("/api/turn", { node: $("turn-node").value, verb: b.dataset.verb })));
  $("turn-faults").addEventListener("click", () => {
    const faults = { drop: $("fault-drop-alloc").checked ? [{ method: "Allocate" }] : [], stop_relay: $("fault-stop-relay").checked };
    api("/api/turn", { node: $("turn-node").value, verb: "faults", faults });
  });
}

// -- calls -----------------------------------------------------------------------------------------

function setupCalls(topo) {
  for (const a of topo.agents) $("call-agent").append(el("option", { value: a }, a));
  if (!topo.agents.length) $("call-go").disabled = true;
  $("call-go").addEventListener("click", () =>
    api("/api/call", { agent: $("call-agent").value, engine: $("call-engine").value }));
}

function callBox(id) {
  let c = state.calls[id];
  if (!c) {
    c = state.calls[id] = { id, states: [], candidates: [], outcome: null, iceStart: null };
    const box = el("div", { id: `call-${id}`, class: "callbox" });
    $("call").replaceChildren(box);
  }
  return c;
}

function renderCall(c) {
  const box = document.getElementById(`call-${c.id}`);
  if (!box) return;
  box.textContent = "";
  box.append(el("div", {}, `call ${c.id} from ${c.agent || ""} (${c.engine || ""})`));
  const timer = el("div", { class: "timer", id: "ice-timer" });
  box.append(timer);
  const ul = el("ul");
  for (const s of c.states) ul.append(el("li", { class: "state" }, `${s.t.toFixed(2)} s  ${s.name}`));
  box.append(ul);
  if (c.candidates.length) {
    const cl = el("ul", { class: "candidates" });
    for (const x of c.candidates) cl.append(el("li", {}, `${x.t.toFixed(2)} s  ${x.name} candidate ${candidateText(x.candidate)}`));
    box.append(el("div", {}, "candidates"), cl);
  }
  if (c.states.some(s => s.name === "TalkingState") && !c.outcome) box.append(meters(c));
  if (c.outcome) {
    const o = c.outcome;
    const talked = o.reached_talking;
    box.append(el("div", { class: talked ? "talking" : "failed", id: "call-result" },
      talked ? "Talking" + (o.ok ? " (audio both ways)" : "") : `failed: ${o.softphone_error || o.rtc_error || o.error || o.state}`));
    const q = o.quality || {};
    if (q.packets_sent !== undefined) {
      // the softphone reports its audio once the call has ended (RTP both ways, what it heard)
      box.append(el("div", { class: "audio" }, `audio: ${q.packets_sent} packets sent, ${q.packets_received} received` +
        (q.packets_lost ? `, ${q.packets_lost} lost` : "") + (q.heard_dbfs !== undefined && q.heard_dbfs !== null ? `; heard ${q.heard_dbfs} dBFS` : "") +
        (q.rtt_ms ? `; rtt ${q.rtt_ms} ms` : "")));
    }
    if (o.diagnosis) box.append(el("div", { class: "diagnosis" }, o.diagnosis));
  }
  tickTimer();
}

// Two meters while Talking: what the microphone gives the call and what is heard, from the
// softphone's level reports (getStats audioLevel with Chromium, the same measure emulated),
// on a dBFS scale as a sound meter reads (a linear 0..1 bar hides everything below -20 dB).
const METER_FLOOR = -60;
function meters(c) {
  const box = el("div", { class: "meters", id: "meters" });
  for (const [key, text] of [["out", "microphone → far end"], ["in", "far end → speaker"]]) {
    const m = el("meter", { id: `meter-${key}`, min: METER_FLOOR, max: 0, low: -40, high: -6, optimum: -20,
                            value: METER_FLOOR });
    const l = el("label", {}, `${text} `);
    l.append(m, el("output", { id: `level-${key}` }, "—"));
    box.append(l);
  }
  showLevel(c, box);
  return box;
}

function showLevel(c, root = document) {
  const lv = c.level;
  if (!lv) return;
  for (const key of ["out", "in"]) {
    const m = root.querySelector(`#meter-${key}`), o = root.querySelector(`#level-${key}`);
    if (!m || !o) continue;
    const db = lv[`${key}_dbfs`];
    m.value = db === null || db === undefined ? METER_FLOOR : Math.max(METER_FLOOR, db);
    o.textContent = db === null || db === undefined ? " silent" : ` ${db.toFixed(1)} dBFS (${lv[key].toFixed(2)})`;
  }
}

function candidateText(line) {
  // "candidate:<foundation> <component> <proto> <priority> <address> <port> typ <type> ..."
  const f = (line || "").split(" ");
  return f.length > 7 ? `${f[4]}:${f[5]}/${f[2].toLowerCase()}` : "";
}

function tickTimer() {
  const t = document.getElementById("ice-timer");
  const c = Object.values(state.calls).at(-1);
  if (!t || !c) return;
  const talking = c.states.some(s => s.name === "TalkingState");
  if (c.iceStart === null) { t.textContent = ""; return; }
  if (talking) { t.textContent = ""; return; }
  const end = c.outcome ? c.endAt : Date.now();
  const left = Math.max(0, state.topo.ice_timer_s - (end - c.iceStart) / 1000);
  t.textContent = c.outcome && left < 0.2 ? `ICE timer expired (${state.topo.ice_timer_s} s)` : `ICE timer ${left.toFixed(1)} s`;
}
setInterval(tickTimer, 100);

function onCallEvent(e) {
  const c = callBox(e.id);
  const ev = e.event;
  if (ev.kind === "state") {
    c.states.push(ev);
    if (ev.name === state.topo.ice_state && c.iceStart === null) c.iceStart = e.at ? e.at * 1000 : Date.now();
  } else if (ev.kind === "candidate") {
    c.candidates.push(ev);
  }
  renderCall(c);
}

// -- scenario ----------------------------------------------------------------------------------------

function setupScenario(s) {
  if (!s) return;
  $("scenario-panel").hidden = false;
  $("tl-play").addEventListener("click", () => api("/api/scenario/timeline", { verb: "play" }));
  $("tl-pause").addEventListener("click", () => api("/api/scenario/timeline", { verb: "pause" }));
  setInterval(tickClock, 100);
  $("scenario-claim").textContent = `${s.title || s.name} — ${s.claim || ""} (${s.variant || ""})`;
  renderSteps(s);
}

// the scenario's clock: it runs while the timeline plays (from where the server said it
// stood, at the server's time t) and stands still while paused
function scenarioClock(s) { return s.playing ? s.clock + Math.max(0, Date.now() / 1000 - s.t) : s.clock; }
function tickClock() {
  const s = state.scenario;
  if (!s) return;
  $("scenario-clock").textContent = `${s.playing ? "playing" : s.verdict ? "played" : "paused"} · t = ${scenarioClock(s).toFixed(1)} s`;
}

function renderSteps(s) {
  state.scenario = s;
  const ol = $("steps");
  ol.textContent = "";
  const next = s.played.length;
  const over = !!s.verdict || next === s.steps.length;
  $("tl-play").disabled = s.playing || over;
  $("tl-pause").disabled = !s.playing;
  tickClock();
  s.steps.forEach((st, i) => {
    const played = s.played[i] && s.played[i].at !== undefined ? `, played at ${s.played[i].at.toFixed(1)} s` : "";
    const li = el("li", { class: i < next ? "done" : i === next && s.playing ? "next" : "" }, `${st.what} (at ${st.at} s${played}) `);
    if (i === next && !s.verdict && !s.playing) {
      const b = el("button", { id: "play-step" }, "play");
      b.addEventListener("click", () => { b.disabled = true; api("/api/scenario/play", { step: i }).catch(() => { b.disabled = false; }); });
      li.append(b);
    }
    for (const c of st.claims) li.append(el("span", { class: "narr claim" }, c));
    const p = s.played[i];
    if (p) li.append(el("span", { class: "narr said" }, p.said || ""));
    ol.append(li);
  });
  if (s.verdict) {
    const v = $("verdict");
    v.textContent = "";
    v.append(el("h3", { class: s.verdict.verdict === "pass" ? "pass" : "fail" }, `verdict: ${s.verdict.verdict}`));
    for (const x of s.verdict.expectations || []) v.append(el("div", { class: x.ok ? "pass" : "fail" }, `${x.ok ? "✓" : "✗"} ${x.text}`));
    if (s.verdict.report) v.append(el("a", { href: `/api/report?token=${encodeURIComponent(TOKEN)}`, target: "_blank" }, "report"));
  }
}

// -- events -------------------------------------------------------------------------------------------

function connect() {
  const es = new EventSource(`/api/events?token=${encodeURIComponent(TOKEN)}`);
  es.addEventListener("open", () => { $("conn").textContent = "live"; $("conn").className = "conn on"; });
  es.addEventListener("error", () => { $("conn").textContent = "disconnected"; $("conn").className = "conn off"; });
  es.addEventListener("counters", m => {
    const c = JSON.parse(m.data);
    state.latency.push(Date.now() - c.t * 1000);
    if (state.latency.length > 500) state.latency.shift();
    showCounters(c);
  });
  es.addEventListener("log", m => log(JSON.parse(m.data).text));
  es.addEventListener("call", m => {
    const e = JSON.parse(m.data);
    const c = callBox(e.id);
    Object.assign(c, { agent: e.agent, engine: e.engine });
    log(`call ${e.id} from ${e.agent} (${e.engine})`);
    renderCall(c);
  });
  es.addEventListener("call-event", m => onCallEvent(JSON.parse(m.data)));
  es.addEventListener("call-level", m => {
    const e = JSON.parse(m.data);
    const c = callBox(e.id);
    c.level = e.level;
    state.levels.push({ id: e.id, ...e.level });
    state.levelLatency.push(Date.now() - e.at * 1000);   // from the softphone's line read to the page
    if (state.levels.length > 500) { state.levels.shift(); state.levelLatency.shift(); }
    showLevel(c);
  });
  es.addEventListener("call-end", m => {
    const e = JSON.parse(m.data);
    const c = callBox(e.id);
    c.outcome = e.outcome;
    c.endAt = Date.now();
    log(`call ${e.id}: ${e.outcome.reached_talking ? "reached Talking" : "failed: " + (e.outcome.softphone_error || e.outcome.error || "")}`);
    renderCall(c);
  });
  es.addEventListener("scenario", m => renderSteps(JSON.parse(m.data).scenario));
}

async function main() {
  const topo = await api("/api/topology");
  state.topo = topo;
  $("lab-name").textContent = topo.name;
  draw(topo);
  setupLinks(topo);
  setupTurn(topo);
  setupCalls(topo);
  setupScenario(topo.scenario);
  connect();
  // a page opened later shows the last call as the others saw it
  const calls = await api("/api/calls");
  const last = calls.at(-1);
  if (last && !state.calls[last.id]) {
    const c = callBox(last.id);
    Object.assign(c, { agent: last.agent, engine: last.engine });
    for (const ev of last.events) {
      if (ev.kind === "state") {
        c.states.push(ev);
        if (ev.name === topo.ice_state && c.iceStart === null) c.iceStart = (last.started + ev.t) * 1000;
      } else if (ev.kind === "candidate") c.candidates.push(ev);
    }
    if (last.level) c.level = last.level;
    if (last.outcome) { c.outcome = last.outcome; c.endAt = Date.now(); }
    renderCall(c);
  }
}
main();
