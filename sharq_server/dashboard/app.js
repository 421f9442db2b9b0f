// SharQ dashboard: plain JavaScript over the JSON API, refreshed every 2 s.
// The bearer token (when auth is on) is asked for once, kept in sessionStorage
// and sent as an Authorization header, never in a URL. GET /whoami/ tells what
// the token may do: only an admin sees the buttons that change anything, and a
// token limited to some queue types sees those types (and no all-types chart).
"use strict";

const REFRESH_MS = 2000;
const PAGE = 20;
const MAX_PAGE = 1000;  // the API's largest page
const PARALLEL = 16;  // requests in flight at once for "Retry all" and "Delete all"
const READERS = ["viewer", "admin"];
const state = {
  token: sessionStorage.getItem("sharq-token"), type: null, offset: 0, total: 0, stats: {}, role: null, types: null,
};
const $ = (selector) => document.querySelector(selector);

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json();
  if (response.status === 401) {
    state.role = null;
    $("#token-form").hidden = false;
    throw new Error("this server needs a bearer token it knows");
  }
  return { status: response.status, data };
}

async function whoami() {
  const { data } = await api("GET", "/whoami/");
  state.role = data.role;
  state.types = data.types;
  const limited = data.types === null ? "" : ` for ${data.types.join(", ")}`;
  $("#role").textContent = data.auth === "off" ? "" : `token: ${data.role}${limited}`;
  for (const control of document.querySelectorAll(".admin")) control.hidden = !isAdmin();
}

const isAdmin = () => state.role === "admin";

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function button(parent, label, action) {
  const b = document.createElement("button");
  b.textContent = label;
  b.addEventListener("click", async () => {
    await action();
    refreshing = false;  // the answer must show at once, whatever refresh was under way
    await refresh();
  });
  parent.appendChild(b);
  return b;
}

function when(ms) {
  return ms === null || ms === undefined ? "–" : new Date(ms).toLocaleTimeString();
}

let refreshing = false;

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    if (state.role === null) await whoami();
    if (!READERS.includes(state.role)) throw new Error(`this token's role (${state.role}) may not read queues and figures`);
    await overview();
    if (state.type) await details(state.type);
    $("#error").hidden = true;
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("#error").textContent = error.message;
    $("#error").hidden = false;
  } finally {
    refreshing = false;
  }
}

async function overview() {
  let types = state.types;  // a token limited to some types may not read the all-types view
  $("#overall").hidden = types !== null;
  if (types === null) {
    const { data } = await api("GET", "/metrics/");
    types = data.queue_types;
    chart("#chart", data.enqueue_counts, data.dequeue_counts);
  }
  const body = $("#types tbody");
  body.replaceChildren();
  for (const type of types) {
    const stats = (await api("GET", `/stats/${type}/`)).data;
    state.stats[type] = stats;
    const row = body.insertRow();
    row.dataset.type = type;
    if (type === state.type) row.className = "selected";
    cell(row, type);
    for (const name of ["queued", "active", "scheduled", "dead"]) cell(row, stats.jobs[name], "num");
    for (const name of ["ready", "waiting", "paused", "capped"]) cell(row, stats.queues[name], "num");
    cell(row, typeLimits(stats.type_limits));
    cell(row, stats.shards, "num");
    button(row.insertCell(), "Open", async () => { state.type = type; state.offset = 0; });
  }
}

// The type-wide limits in a few words: "50 ms, burst 2, 3/8 active", or "none".
function typeLimits(limits) {
  const parts = [];
  if (limits.interval !== null) parts.push(`${limits.interval} ms`);
  if (limits.burst !== null) parts.push(`burst ${limits.burst}`);
  if (limits.max_active !== null) parts.push(`${limits.active}/${limits.max_active} active`);
  return parts.length ? parts.join(", ") : "none";
}

function chart(selector, enqueued, dequeued) {
  const svg = $(selector);
  const minutes = Object.keys(enqueued);
  const top = Math.max(1, ...Object.values(enqueued), ...Object.values(dequeued));
  const width = 640 / minutes.length;
  const bars = [];
  minutes.forEach((minute, i) => {
    for (const [series, values, shift] of [["enq", enqueued, 0], ["deq", dequeued, width / 2 - 2]]) {
      const height = Math.round((values[minute] / top) * 110);
      bars.push(`<rect class="${series}" x="${i * width + 2 + shift}" y="${120 - height}" width="${width / 2 - 4}"` +
        ` height="${height}" fill="${series === "enq" ? "#3a7bd5" : "#2ca02c"}"><title>${values[minute]}</title></rect>`);
    }
    bars.push(`<text x="${i * width + 4}" y="136" font-size="10">${new Date(Number(minute)).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}</text>`);
  });
  svg.innerHTML = bars.join("");
}

// Orders other than the API's own (queue id): every queue is read, then sorted.
const ORDER = {
  queue_length: (a, b) => b.queue_length - a.queue_length,
  next_ready_at: (a, b) => (a.next_ready_at ?? Infinity) - (b.next_ready_at ?? Infinity),
};

async function queuePage(type) {
  const sort = $("#sort").value;
  if (!(sort in ORDER)) return (await api("GET", `/queues/${type}/?limit=${PAGE}&offset=${state.offset}`)).data;
  const queues = await everyPage((offset) => `/queues/${type}/?limit=${MAX_PAGE}&offset=${offset}`, "queues");
  queues.sort((a, b) => ORDER[sort](a, b) || a.queue_id.localeCompare(b.queue_id));
  return { total: queues.length, queues: queues.slice(state.offset, state.offset + PAGE) };
}

async function everyPage(url, field) {
  const items = [];
  for (;;) {
    const page = (await api("GET", url(items.length))).data[field];
    items.push(...page);
    if (page.length < MAX_PAGE) return items;
  }
}

async function details(type) {
  $("#details").hidden = false;
  $("#type-name").textContent = type;
  const stats = state.stats[type];
  if (stats) chart("#type-chart", stats.enqueue_counts, stats.dequeue_counts);
  const page = await queuePage(type);
  state.total = page.total;
  $("#page").textContent = `${state.offset + 1}–${state.offset + page.queues.length} of ${page.total}`;
  const body = $("#queues tbody");
  body.replaceChildren();
  for (const queue of page.queues) {
    const row = body.insertRow();
    row.dataset.queue = queue.queue_id;
    cell(row, queue.queue_id);
    for (const name of ["queue_length", "active", "scheduled"]) cell(row, queue[name], "num");
    for (const name of ["interval", "burst", "max_active"]) cell(row, queue.limits[name].value, "num");
    cell(row, queue.paused ? "paused" + (queue.paused_until ? " until " + when(queue.paused_until) : "") : "running",
      queue.paused ? "paused" : "");
    cell(row, when(queue.next_ready_at));
    cell(row, queue.oldest_queued_age_ms === null ? "–" : Math.round(queue.oldest_queued_age_ms / 1000) + " s", "num");
    const actions = row.insertCell();
    if (!isAdmin()) continue;
    if (queue.paused) button(actions, "Resume", () => api("POST", `/resume/${type}/${queue.queue_id}/`));
    else button(actions, "Pause", () => api("POST", `/pause/${type}/${queue.queue_id}/`));
    button(actions, "Limits…", () => editLimits(type, queue));
  }
  await deadLetters(type);
}

async function editLimits(type, queue) {
  const limits = {};
  for (const name of ["interval", "burst", "max_active"]) {
    const answer = prompt(`${name} for ${queue.queue_id} (empty: clear)`, queue.limits[name].value ?? "");
    if (answer === null) return;
    limits[name] = answer.trim() === "" ? null : Number(answer);
  }
  const { status, data } = await api("PUT", `/limits/${type}/${queue.queue_id}/`, limits);
  if (status !== 200) alert(data.message);
}

async function deadLetters(type) {
  const { data } = await api("GET", `/deadletter/${type}/?limit=50`);
  const body = $("#dead tbody");
  body.replaceChildren();
  for (const job of data.jobs) {
    const row = body.insertRow();
    row.dataset.job = job.job_id;
    cell(row, job.queue_id);
    cell(row, job.job_id);
    cell(row, when(job.died_at));
    cell(row, job.reason);
    const payload = cell(row, "");
    payload.innerHTML = "<code></code>";
    payload.firstChild.textContent = JSON.stringify(job.payload);
    const actions = row.insertCell();
    if (!isAdmin()) continue;
    button(actions, "Retry", () => api("POST", `/deadletter/${type}/${job.queue_id}/${job.job_id}/retry/`));
    button(actions, "Delete", () => api("DELETE", `/deadletter/${type}/${job.queue_id}/${job.job_id}/`));
  }
}

// Acts on every dead letter of the type, a page at a time until none is left. One
// the API refuses (a retry whose job_id is queued again: 409) stays listed, so the
// next page starts past it; one gone meanwhile (404) has left the list anyway.
async function everyDeadLetter(method, suffix) {
  const type = state.type;
  let kept = 0, done = 0;
  for (;;) {
    const { data } = await api("GET", `/deadletter/${type}/?limit=${MAX_PAGE}&offset=${kept}`);
    if (data.jobs.length === 0) break;
    for (let i = 0; i < data.jobs.length; i += PARALLEL) {
      const answers = await Promise.all(data.jobs.slice(i, i + PARALLEL).map(
        (job) => api(method, `/deadletter/${type}/${job.queue_id}/${job.job_id}/${suffix}`)));
      kept += answers.filter(({ status }) => status >= 300 && status !== 404).length;
      done += answers.filter(({ status }) => status < 300).length;
      $("#bulk").textContent = `${done} done`;
    }
  }
  $("#bulk").textContent = `${done} done` + (kept ? `, ${kept} refused` : "");
}

async function bulk(method, suffix) {
  for (const control of [$("#retry-all"), $("#delete-all")]) control.disabled = true;
  try {
    await everyDeadLetter(method, suffix);
  } finally {
    for (const control of [$("#retry-all"), $("#delete-all")]) control.disabled = false;
  }
  await refresh();
}

$("#retry-all").addEventListener("click", () => bulk("POST", "retry/"));
$("#delete-all").addEventListener("click", () => bulk("DELETE", ""));
$("#pause-type").addEventListener("click", async () => { await api("POST", `/pause/${state.type}/`); await refresh(); });
$("#resume-type").addEventListener("click", async () => { await api("POST", `/resume/${state.type}/`); await refresh(); });
$("#sort").addEventListener("change", () => { state.offset = 0; refresh(); });
$("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
$("#next").addEventListener("click", () => {
  if (state.offset + PAGE < state.total) state.offset += PAGE;
  refresh();
});
$("#lookup").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { data } = await api("GET", `/job/${state.type}/${$("#lookup-queue").value}/${$("#lookup-job").value}/`);
  $("#lookup-result").textContent = JSON.stringify(data, null, 2);
});
$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token").value;
  state.role = null;  // a new token: ask again what it may do
  sessionStorage.setItem("sharq-token", state.token);
  $("#token-form").hidden = true;
  refresh();
});

// with auth on, ask for the token first rather than meet a 401
const authRequired = document.querySelector('meta[name="sharq-auth"]').content === "required";
if (authRequired && !state.token) $("#token-form").hidden = false;
else refresh();
setInterval(() => { if (!authRequired || state.token) refresh(); }, REFRESH_MS);
