// Tessera explorer: plain JS, no build step. Talks to the relayer's API (same origin):
//   /v1/search, /v1/tasks/{id}, /v1/messages, /v1/messages/{id}/signers, SSE /v1/stream,
//   /explorer/api/feeds (the feed server's REST + SSE, passed through).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = {
  config: { chains: {}, committee: null, feeds: false },
  query: "",
  messages: new Map(),   // message id -> JSON shown in the results
  tasks: new Map(),      // task id -> JSON shown in the results
  recent: new Map(),     // message id -> JSON (list rows)
  feed: null, feedSource: null, reports: [],
};

// --- formatting -------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child.nodeType ? child : String(child));
  }
  return node;
}
const short = (text, keep = 10) => !text ? "–" : text.length <= 2 * keep + 3 ? text : `${text.slice(0, keep)}…${text.slice(-6)}`;
const clock = (seconds) => seconds ? new Date(seconds * 1000).toLocaleTimeString([], { hour12: false }) +
  "." + String(Math.floor((seconds * 1000) % 1000)).padStart(3, "0") : "";
function ago(seconds) {
  if (!seconds) return "";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}
const idLink = (id) => el("a", { href: `#q=${id}`, class: "mono", title: id, text: short(id) });
const chainName = (domain) => domain === 0 ? "committee" : (state.config.chains[String(domain)] || `domain ${domain}`);

// --- API --------------------------------------------------------------------------------------
async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  return { ok: resp.ok, status: resp.status, body };
}

// --- messages ---------------------------------------------------------------------------------
function messageCard(m) {
  const card = $("#message-card").content.firstElementChild.cloneNode(true);
  card.dataset.id = m.message_id;
  $(".kind", card).textContent = m.kind.replaceAll("_", " ").toLowerCase();
  $(".route", card).textContent = `${m.src_chain} → ${m.dst_chain} · nonce ${m.nonce}`;
  const stage = $(".stage", card);
  stage.textContent = m.stage;
  stage.classList.add(m.stage);
  const facts = $(".facts", card);
  const fact = (name, value) => facts.append(el("dt", { text: name }), el("dd", {}, value));
  fact("Message id", el("span", { class: "mono", text: m.message_id }));
  fact("Source tx", el("span", { class: "mono source-tx", text: m.source_tx }));
  if (m.task_id) fact("Task", idLink(m.task_id));
  if (m.reason && m.stage !== "confirmed") {
    const label = m.stage === "dead" ? `Dead letter (${m.reason_code || "no reason code"})` : "Waiting";
    fact(label, `${m.reason}${m.attempts ? ` (attempt ${m.attempts})` : ""}`);
  }
  const journey = $(".journey", card);
  let previous = null;
  for (const step of m.journey) {
    const cls = [step.done ? "done" : "", step.current ? "current" : "", step.failed ? "failed" : ""].join(" ").trim();
    const when = step.at ? `${clock(step.at)}${previous ? ` · +${(step.at - previous).toFixed(2)} s` : ""}` : "";
    if (step.at) previous = step.at;
    journey.append(el("li", { class: cls, "data-step": step.step },
      el("span", { class: "title", text: step.title }),
      when ? el("span", { class: "when", text: when }) : null,
      step.tx ? el("span", { class: "tx mono", text: step.tx }) : null,
      step.step === "signed" && step.done && m.epoch !== null ? el("div", { class: "detail", text: `epoch ${m.epoch}` }) : null,
      step.detail ? el("div", { class: "detail", text: step.detail }) : null));
  }
  $(".payload pre", card).textContent = JSON.stringify(m.payload, null, 2);
  return card;
}

async function showSigners(m, card) {
  const box = $(".signers", card);
  if (!state.config.committee || m.src_domain === undefined) return;
  const { ok, body } = await getJSON(`/v1/messages/${m.message_id}/signers`);
  if (!ok || !body.members) return;
  box.replaceChildren(el("span", { class: "muted", text: `Committee ${body.threshold}-of-${body.n}:` }),
    ...body.members.map((member) => el("span", {
      class: `member ${member.status.replace(" ", "-")}`, title: member.detail || member.status,
      text: `#${member.index} ${member.status}` })));
}

function renderMessage(m) {
  const card = messageCard(m);
  const old = document.querySelector(`.card.message[data-id="${m.message_id}"]`);
  if (old) {
    card.querySelector(".signers").replaceWith(old.querySelector(".signers"));
    old.replaceWith(card);
  } else {
    $("#results").append(card);
  }
  if (m.signed_at || m.stage === "observed") showSigners(m, card);
}

// --- tasks ------------------------------------------------------------------------------------
function taskCard(t) {
  const req = t.request ? t.request.payload : null;
  const result = t.results.length ? t.results[t.results.length - 1] : null;
  const step = (label, done, ...what) => el("div", { class: `task-step${done ? " done" : ""}` },
    el("div", { class: "label", text: label }), el("div", { class: "what" }, ...what));
  const stageOf = (m) => m ? `${m.stage}${m.stage === "confirmed" ? " on " + m.dst_chain : ""}` : "";
  const steps = [
    step("Request", !!t.request && t.request.stage === "confirmed",
      req ? `${req.executor} · max fee ${req.max_fee}` : "not in this relayer's store",
      el("br"), t.request ? stageOf(t.request) : ""),
    step("Claim", t.claims.length > 0,
      t.claims.length ? `claimed by ${short(t.claims[0].claimant)} at ${t.claims[0].price}` :
        (req && req.version === 2 ? "not claimed yet" : "v1: first result wins")),
    step("Result", !!result && result.stage === "confirmed",
      result ? `worker ${short(result.payload.worker)}` : "none yet", el("br"), result ? stageOf(result) : ""),
    step("Attestation", t.attestations.some((a) => a.stage === "confirmed"),
      t.attestations.length ? t.attestations.map((a) =>
        `${a.payload.verdict || "valid"} → ${a.dst_chain}: ${a.stage}`).join("; ") : "none yet"),
    step("Payout / refund", ["paid", "refused"].includes(t.settlement.state),
      el("span", { class: `badge ${t.settlement.state}`, text: t.settlement.state }), " ", t.settlement.detail),
  ];
  const card = el("article", { class: "card task", "data-task": t.task_id },
    el("header", {}, el("h3", { text: "Task" }), el("span", { class: "mono", title: t.task_id, text: short(t.task_id, 14) }),
      el("span", { class: "route", text: t.requester_chain ? `${t.requester_chain} → ${t.serving_chain}` : "" })),
    el("div", { class: "task-steps" }, steps));
  if (req && req.input_text) card.append(el("details", { class: "payload" }, el("summary", { text: "Input" }), el("pre", { text: req.input_text })));
  if (result && result.payload.output_text) {
    card.append(el("details", { class: "payload" }, el("summary", { text: "Output" }), el("pre", { text: result.payload.output_text })));
  }
  return card;
}

function renderTask(t) {
  state.tasks.set(t.task_id, t);
  const card = taskCard(t);
  const old = document.querySelector(`.card.task[data-task="${t.task_id}"]`);
  if (old) old.replaceWith(card); else $("#results").prepend(card);
}

async function refreshTask(taskId) {
  const { ok, body } = await getJSON(`/v1/tasks/${taskId}`);
  if (ok) renderTask(body);
}

// --- search -----------------------------------------------------------------------------------
function notice(text) {
  const box = $("#notice");
  box.hidden = !text;
  box.textContent = text || "";
}

async function search(query) {
  query = query.trim();
  state.query = query;
  state.messages.clear();
  state.tasks.clear();
  $("#results").replaceChildren();
  notice("");
  if (!query) return;
  $("#q").value = query;
  const { ok, status, body } = await getJSON(`/v1/search?q=${encodeURIComponent(query)}`);
  if (!ok) {
    notice(status === 404 ? `Nothing found for ${query} yet — this page updates by itself when it appears.`
      : (body && body.error) || `search failed (HTTP ${status})`);
    return;
  }
  for (const t of body.tasks) renderTask(t);
  for (const m of body.messages) { state.messages.set(m.message_id, m); renderMessage(m); }
}

function matchesQuery(m) {
  const q = state.query.toLowerCase();
  return q && (m.source_tx.toLowerCase() === q || m.message_id === q || m.message_id === "0x" + q ||
    (m.task_id && (m.task_id === q || m.task_id === "0x" + q)));
}

// --- live updates -----------------------------------------------------------------------------
function onMessageEvent(m) {
  if (state.messages.has(m.message_id) || matchesQuery(m)) {
    if (!state.messages.has(m.message_id)) notice("");
    state.messages.set(m.message_id, m);
    renderMessage(m);
  }
  if (m.task_id && (state.tasks.has(m.task_id) || matchesQuery(m))) refreshTask(m.task_id);
  state.recent.set(m.message_id, m);
  renderRecent();
}

function follow() {
  const live = $("#live");
  const source = new EventSource("/v1/stream");
  source.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; live.classList.remove("on"); });
  source.addEventListener("message", (event) => onMessageEvent(JSON.parse(event.data)));
}

// --- recent -----------------------------------------------------------------------------------
function renderRecent() {
  const rows = [...state.recent.values()].sort((a, b) => (b.updated_at || b.observed_at) - (a.updated_at || a.observed_at)).slice(0, 25);
  $("#recent tbody").replaceChildren(...rows.map((m) => el("tr", { onclick: () => go(m.message_id) },
    el("td", {}, el("span", { class: "mono", text: short(m.message_id, 8) })),
    el("td", { class: "hide-narrow", text: m.kind.replaceAll("_", " ").toLowerCase() }),
    el("td", { text: `${m.src_chain || chainName(m.src_domain)} → ${m.dst_chain || chainName(m.dst_domain)}` }),
    el("td", {}, el("span", { class: `badge ${m.stage}`, text: m.stage })),
    el("td", { class: "muted hide-narrow", text: ago(m.updated_at || m.observed_at) }))));
}

async function loadRecent() {
  const { ok, body } = await getJSON("/v1/messages?limit=25");
  if (!ok) return;
  for (const m of body) {
    if (!state.recent.has(m.message_id)) state.recent.set(m.message_id, { ...m, kind: kindName(m.kind) });
  }
  renderRecent();
}
const kindName = (k) => typeof k === "string" ? k : ({ 1: "TASK_REQUEST", 2: "TASK_RESULT", 3: "PROOF_ATTESTATION", 4: "DATA", 5: "COMMITTEE_ROTATION" }[k] || `KIND_${k}`);

// --- feeds ------------------------------------------------------------------------------------
const scaled = (r) => Number(r.price) / 10 ** r.decimals;
const priceText = (r, value = scaled(r)) => value.toLocaleString(undefined,
  { minimumFractionDigits: Math.min(2, r.decimals), maximumFractionDigits: Math.max(2, Math.min(r.decimals, 8)) });

function drawChart() {
  const canvas = $("#chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (!width) return;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const points = state.reports.slice(-200);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#667085";
  if (points.length < 2) { ctx.fillText(points.length ? "waiting for a second round…" : "no rounds yet", 12, 24); return; }
  const prices = points.map(scaled);
  let low = Math.min(...prices), high = Math.max(...prices);
  if (high === low) { high += Math.abs(high) * 0.001 || 1; low -= Math.abs(low) * 0.001 || 1; }
  const pad = { left: 64, right: 10, top: 10, bottom: 22 };
  const x = (i) => pad.left + (i / (points.length - 1)) * (width - pad.left - pad.right);
  const y = (p) => pad.top + (1 - (p - low) / (high - low)) * (height - pad.top - pad.bottom);
  ctx.strokeStyle = "#e3e6ec"; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = low + (k / 4) * (high - low), yy = y(v);
    ctx.beginPath(); ctx.moveTo(pad.left, yy); ctx.lineTo(width - pad.right, yy); ctx.stroke();
    ctx.fillText(v.toPrecision(6), 4, yy + 4);
  }
  ctx.fillText(`round ${points[0].round}`, pad.left, height - 6);
  const lastLabel = `round ${points[points.length - 1].round}`;
  ctx.fillText(lastLabel, width - pad.right - ctx.measureText(lastLabel).width, height - 6);
  ctx.strokeStyle = "#3b5bdb"; ctx.lineWidth = 2; ctx.beginPath();
  prices.forEach((p, i) => (i ? ctx.lineTo(x(i), y(p)) : ctx.moveTo(x(i), y(p))));
  ctx.stroke();
  ctx.fillStyle = "#3b5bdb"; ctx.beginPath();
  ctx.arc(x(points.length - 1), y(prices[prices.length - 1]), 3.5, 0, 2 * Math.PI); ctx.fill();
}

function renderRounds() {
  const latest = state.reports[state.reports.length - 1];
  $("#feed-price").textContent = latest ? priceText(latest) : "–";
  $("#feed-meta").textContent = latest ? `round ${latest.round} · ${latest.observations} observations · epoch ${latest.epoch}` : "";
  $("#rounds tbody").replaceChildren(...state.reports.slice(-50).reverse().map((r) => el("tr", {},
    el("td", { text: r.round }),
    el("td", { text: priceText(r) }),
    el("td", { text: (Number(r.confidence) / 10 ** r.decimals).toPrecision(3) }),
    el("td", { text: r.observations }),
    el("td", { class: "muted", text: clock(r.published_at / 1000) }))));
  drawChart();
}

function addReport(report) {
  if (state.reports.length && report.round <= state.reports[state.reports.length - 1].round) return;
  state.reports.push(report);
  if (state.reports.length > 1000) state.reports.shift();
  renderRounds();
}

async function selectFeed(id) {
  state.feed = id;
  state.reports = [];
  if (state.feedSource) state.feedSource.close();
  const { ok, body } = await getJSON(`/explorer/api/feeds/history?id=${encodeURIComponent(id)}&limit=1000`);
  if (ok) state.reports = body.reports;
  renderRounds();
  const source = new EventSource(`/explorer/api/feeds/stream?ids=${encodeURIComponent(id)}`);
  const badge = $("#feed-status");
  const status = (text) => { badge.textContent = text; badge.className = `badge ${text}`; };
  source.addEventListener("report", (event) => { addReport(JSON.parse(event.data)); status("live"); });
  source.addEventListener("stale", () => status("stale"));
  source.addEventListener("live", () => status("live"));
  state.feedSource = source;
}

async function loadFeeds() {
  const box = $("#feed-notice");
  if (!state.config.feeds) { box.hidden = false; box.textContent = "No feed server in this relayer's config."; return; }
  const { ok, body } = await getJSON("/explorer/api/feeds");
  if (!ok) { box.hidden = false; box.textContent = (body && body.error) || "the feed server does not answer"; return; }
  box.hidden = true;
  const select = $("#feed");
  select.replaceChildren(...body.feeds.map((f) => el("option", { value: f.id, text: `${f.id} (${f.status})` })));
  select.onchange = () => selectFeed(select.value);
  if (body.feeds.length) selectFeed(state.feed && body.feeds.some((f) => f.id === state.feed) ? state.feed : body.feeds[0].id);
}

// --- navigation -------------------------------------------------------------------------------
function showTab(tab) {
  for (const link of document.querySelectorAll(".tab")) link.classList.toggle("active", link.dataset.tab === tab);
  $("#messages").hidden = tab !== "messages";
  $("#feeds").hidden = tab !== "feeds";
  if (tab === "feeds" && !state.feed) loadFeeds();
  if (tab === "feeds") drawChart();
}

function go(query) { location.hash = `q=${encodeURIComponent(query)}`; }

function route() {
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash === "feeds") return showTab("feeds");
  showTab("messages");
  if (hash.startsWith("q=")) search(hash.slice(2));
}

async function main() {
  const { ok, body } = await getJSON("/explorer/config.json");
  if (ok) state.config = body;
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("#q").value.trim();
    if (decodeURIComponent(location.hash.slice(1)) === `q=${query}`) search(query); else go(query);
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", drawChart);
  follow();
  loadRecent();
  route();
}

main();
