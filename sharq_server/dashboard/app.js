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
// "no worker has taken a job for N s while jobs wait" from this long (?stall=<s> sets it)
const STALL_MS = 1000 * (Number(new URLSearchParams(location.search).get("stall")) || 30);
const RATES = [["enqueued", "enqueued"], ["dequeued", "handed out"], ["finished", "finished"], ["failed", "failed"]];
const state = {
  token: sessionStorage.getItem("sharq-token"), type: null, offset: 0, total: 0, stats: {}, role: null, types: null,
  queues: [], skew: 0,
};
const $ = (selector) => document.querySelector(selector);

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const date = Date.parse(response.headers.get("Date"));
  if (!Number.isNaN(date)) state.skew = date - Date.now();  // the server's clock, to the second
  const text = await response.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = { message: `${response.status} ${response.statusText}` };
  }
  if (response.status === 401) {
    state.role = null;
    $("#token-form").hidden = false;
    throw new Error("this server needs a bearer token it knows");
  }
  return { status: response.status, data };
}

const serverNow = () => Date.now() + state.skew;

async function whoami() {
  const { data } = await api("GET", "/whoami/");
  state.role = data.role;
  state.types = data.types;
  const limited = data.types === null ? "" : ` for ${data.types.join(", ")}`;
  $("#role").textContent = data.auth === "off" ? "" : `token: ${data.role}${limited}`;
  for (const control of document.querySelectorAll(".admin")) control.hidden = !isAdmin();
}

const isAdmin = () => state.role === "admin";

// What an action did, shown at the bottom of the page until the next one.
function tell(text, failed = false) {
  const outcome = $("#outcome");
  outcome.textContent = text;
  outcome.className = failed ? "error" : "";
  outcome.hidden = false;
  clearTimeout(tell.timer);
  tell.timer = setTimeout(() => { outcome.hidden = true; }, 10_000);
}

// Runs one API call for a button: says what it did (or the server's refusal), then refreshes.
async function act(button, what, method, path, body) {
  if (button) button.disabled = true;
  try {
    const { status, data } = await api(method, path, body);
    if (status < 300) tell(what);
    else tell(`Refused (${status}): ${data.message ?? "no reason given"}`, true);
  } catch (error) {
    tell(error.message, true);
  } finally {
    if (button) button.disabled = false;
  }
  await refresh();
}

// One refresh at a time; one asked for meanwhile runs right after it.
let running = null, again = false;
function refresh() {
  if (running) {
    again = true;
    return running;
  }
  running = (async () => {
    do {
      again = false;
      await refreshOnce();
    } while (again);
    running = null;
  })();
  return running;
}

async function refreshOnce() {
  try {
    if (state.role === null) await whoami();
    if (!READERS.includes(state.role)) throw new Error(`this token's role (${state.role}) may not read queues and figures`);
    await overview();
    if (state.type) await details(state.type);
    $("#error").hidden = true;
    $("#updated").textContent = "updated " + clock(Date.now());
  } catch (error) {
    $("#error").textContent = error.message;
    $("#error").hidden = false;
  }
}

async function overview() {
  const listed = state.types ?? (await api("GET", "/metrics/")).data.queue_types;
  const answers = await Promise.all(listed.map((type) => api("GET", `/stats/${type}/`)));
  const types = listed.filter((_, i) => answers[i].status === 200);  // one gone meanwhile is left out
  state.stats = Object.fromEntries(types.map((type) => [type, answers[listed.indexOf(type)].data]));
  health(types);
  syncRows($("#types tbody"), types, (type) => type, typeRow);
  $("#overall").hidden = state.types !== null;  // a token limited to some types may not read the all-types view
  const all = rateSeries(sumRates(types.map((type) => state.stats[type].rates)));
  state.scale = Math.max(0, ...all.series.flatMap(({ values }) => values));  // every rate chart's scale
  if (state.types === null) rateChart("#chart", all);
}

// What needs an operator, worst first: dead letters, stalled work, then pauses and
// caps; each as [level, sentence for the list, word or two for the table].
function problems(type, stats) {
  const found = [];
  const waiting = stats.jobs.queued;
  if (stats.jobs.dead) found.push(["bad", `${plural(stats.jobs.dead, "dead letter")}`, "dead letters"]);
  const idle = stats.last_taken_at === null ? stats.oldest_queued_age_ms : serverNow() - stats.last_taken_at;
  if (waiting && stats.queues.ready && !stats.type_paused && stats.oldest_queued_age_ms >= STALL_MS && idle >= STALL_MS) {
    const said = `no worker has taken a job for ${duration(idle)} while ${plural(waiting, "job")} wait${waiting === 1 ? "s" : ""}`;
    found.push(["warn", said, "stalled"]);
  }
  if (stats.type_paused) found.push(["warn", "the whole type is paused", "type paused"]);
  if (stats.queues.paused) found.push(["warn", `${plural(stats.queues.paused, "queue")} paused`, "paused"]);
  if (stats.queues.capped) found.push(["warn", `${plural(stats.queues.capped, "queue")} at max_active`, "capped"]);
  if (stats.queues.quota_held) found.push(["warn", `${plural(stats.queues.quota_held, "queue")} held by a quota`, "quota held"]);
  return found;
}

function health(types) {
  const items = types.flatMap((type) => problems(type, state.stats[type])
    .map(([level, text, word]) => [level, `${type}: ${text}`, `${type}:${word}`]));
  items.sort(([a], [b]) => (a === b ? 0 : a === "bad" ? -1 : 1));
  if (!items.length) items.push(["ok", types.length ? `All ${plural(types.length, "type")} healthy` : "No queue types yet", "ok"]);
  syncRows($("#health"), items, ([, , key]) => key, (item, [level, text]) => {
    item.className = level;
    if (item.textContent !== text) item.textContent = text;
  });
}

function typeRow(row, type) {
  const stats = state.stats[type];
  const found = problems(type, stats);
  row.dataset.type = type;
  row.className = type === state.type ? "selected" : "";
  put(row, "type", type);
  put(row, "health", found.length ? found.map(([, , word]) => word).join(", ") : "ok", found.length ? found[0][0] : "ok");
  const oldest = stats.oldest_queued_age_ms;
  put(row, "oldest", oldest === null ? null : duration(oldest), oldest !== null && oldest >= STALL_MS ? "num warn" : "num");
  for (const name of ["queued", "active", "scheduled"]) put(row, name, stats.jobs[name], "num");
  put(row, "dead", stats.jobs.dead, stats.jobs.dead ? "num bad" : "num");
  row.fields.dead.title = `${plural(stats.counters.expired, "job")} expired (never handed out by their deadline) since the type began`;
  for (const name of ["paused", "capped"]) put(row, name, stats.queues[name], stats.queues[name] ? "num warn" : "num");
  for (const name of ["ready", "waiting"]) put(row, name, stats.queues[name], "num");
  put(row, "limits", typeLimits(stats.type_limits) + (stats.type_paused ? "; paused" : ""));
  put(row, "shards", stats.shards, "num");
  buttons(row, [["Open", () => openType(type)]]);
}

function openType(type) {
  state.type = type;
  state.offset = 0;
  for (const row of $("#types tbody").rows) row.className = row.dataset.type === type ? "selected" : "";
  refresh().then(() => $("#details").scrollIntoView({ block: "start" }));
}

// The type-wide limits in a few words: "50 ms, burst 2, 3/8 active", or "none".
function typeLimits(limits) {
  const parts = [];
  if (limits.interval !== null) parts.push(`${limits.interval} ms`);
  if (limits.burst !== null) parts.push(`burst ${limits.burst}`);
  if (limits.max_active !== null) parts.push(`${limits.active}/${limits.max_active} active`);
  return parts.length ? parts.join(", ") : "none";
}

// Per-minute rates of several types added up minute by minute.
function sumRates(all) {
  const sum = { minutes: all[0]?.minutes ?? lastHour() };
  for (const [name] of RATES) sum[name] = sum.minutes.map((_, i) => all.reduce((total, rates) => total + rates[name][i], 0));
  return sum;
}

function lastHour() {
  const minute = serverNow() - (serverNow() % 60_000);
  return Array.from({ length: 60 }, (_, i) => minute - (59 - i) * 60_000);
}

// Per-minute counts as jobs per second: the current minute over the seconds it has
// run (at least 10, so its first second does not read as a burst).
function perSecond(minutes, counts) {
  const current = Math.min(60, Math.max(10, (serverNow() - minutes.at(-1)) / 1000));
  return counts.map((count, i) => count / (i === counts.length - 1 ? current : 60));
}

function rateSeries(rates) {
  const series = RATES.map(([name, label]) => ({ name, label, values: perSecond(rates.minutes, rates[name]) }));
  return { minutes: rates.minutes, series };
}

// A rate chart on the all-types scale, so a type's chart compares with the whole.
function rateChart(selector, { minutes, series }) {
  const top = Math.max(state.scale, ...series.flatMap(({ values }) => values));
  lineChart($(selector), { minutes, series, top, unit: "jobs per second" });
  legend($(selector + "-legend"), series, "/s");
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
  const stats = state.stats[type] ?? (await api("GET", `/stats/${type}/`)).data;
  $("#type-state").textContent = stats.type_paused ? "paused" : "";
  $("#pause-type").hidden = !isAdmin() || stats.type_paused;
  $("#resume-type").hidden = !isAdmin() || !stats.type_paused;
  if (stats.rates) {
    rateChart("#type-chart", rateSeries(stats.rates));
    const queued = [...stats.rates.queued.slice(0, -1), stats.jobs.queued];  // the last point is now
    const top = Math.max(1, ...queued.filter((value) => value !== null));
    lineChart($("#backlog-chart"), {
      minutes: stats.rates.minutes, series: [{ name: "queued", label: "queued", values: queued }], top, unit: "jobs queued",
    });
  }
  const page = await queuePage(type);
  state.total = page.total;
  state.queues = page.queues;
  const shown = page.queues.length;
  $("#page").textContent = page.total === 0 ? "no queues" : `${state.offset + 1}–${state.offset + shown} of ${page.total}`;
  $("#prev").disabled = state.offset === 0;
  $("#next").disabled = state.offset + PAGE >= page.total;
  syncRows($("#queues tbody"), page.queues, (queue) => queue.queue_id, (row, queue) => queueRow(row, type, queue));
  await deadLetters(type);
  await campaigns(type);
}

// The type's 50 newest campaigns: a progress bar (jobs no longer queued, scheduled
// or active, of the total), the counts, and Cancel (with a confirmation) for an
// admin while one runs.
async function campaigns(type) {
  const { data } = await api("GET", `/campaigns/${type}/?limit=50`);
  $("#campaign-count").textContent = data.total > data.campaigns.length ? `(newest ${data.campaigns.length} of ${data.total})` : `(${data.total})`;
  syncRows($("#campaigns tbody"), data.campaigns, (c) => c.campaign, (row, c) => {
    row.dataset.campaign = c.campaign;
    put(row, "campaign", c.campaign);
    const over = c.finished + c.dead + c.expired + c.cancelled;
    const cell = put(row, "progress", undefined);
    let bar = cell.querySelector("progress");
    if (!bar) bar = cell.appendChild(document.createElement("progress"));
    bar.max = Math.max(c.total, 1);
    bar.value = over;
    bar.title = `${over} of ${c.total}`;
    put(row, "counts", `${c.queued + c.scheduled} / ${c.active} / ${c.finished} / ${c.dead} / ${c.cancelled}`, "num");
    put(row, "started", clock(c.started_at));
    put(row, "state", c.done ? "done" : c.cancelled_at ? "cancelling" : "running");
    if (c.done || c.cancelled_at || !isAdmin()) return buttons(row, []);
    buttons(row, [["Cancel", async (b) => {
      const text = `Cancel campaign ${c.campaign} (type ${type})? Its ${c.queued + c.scheduled} queued and scheduled job(s) are removed for good and new ones naming it are refused; active ones end as they would.`;
      if (await confirmed(text, "Cancel this campaign")) await act(b, `Cancelled campaign ${c.campaign}`, "DELETE", `/campaigns/${type}/${c.campaign}/`);
    }]]);
  });
}

// When a queue may hand out its next job: "now" once due, however long ago that was.
function nextReady(at) {
  if (at === null || at === undefined) return null;
  const wait = at - serverNow();
  return wait <= 0 ? "now" : `in ${duration(wait)} (${clock(at)})`;
}

function queueRow(row, type, queue) {
  row.dataset.queue = queue.queue_id;
  put(row, "queue", queue.queue_id);
  put(row, "length", queue.queue_length, "num");
  put(row, "active", queue.active, "num");
  put(row, "scheduled", queue.scheduled, "num");
  for (const name of ["interval", "burst", "max_active"]) {
    const { value, source } = queue.limits[name];
    put(row, name, value, "num").title = source;
  }
  const until = queue.paused_until ? ` until ${clock(queue.paused_until)}` : "";
  const held = queue.quota_held_until ? `quota held until ${clock(queue.quota_held_until)}` : null;
  put(row, "state", queue.paused ? "paused" + until : held ?? "running", queue.paused || held ? "paused" : "");
  put(row, "next", queue.paused ? null : nextReady(queue.next_ready_at));
  put(row, "oldest", queue.oldest_queued_age_ms === null ? null : duration(queue.oldest_queued_age_ms), "num");
  if (!isAdmin()) return buttons(row, []);
  const path = `${type}/${queue.queue_id}/`;
  buttons(row, [
    queue.paused ? ["Resume", (b) => act(b, `Resumed queue ${queue.queue_id}`, "POST", `/resume/${path}`)]
      : ["Pause", (b) => act(b, `Paused queue ${queue.queue_id} until resumed`, "POST", `/pause/${path}`, {})],
    ["Limits…", async () => { await editLimits(type, queue); await refresh(); }],
  ]);
}

async function deadLetters(type) {
  const { data } = await api("GET", `/deadletter/${type}/?limit=50`);
  $("#dead-count").textContent = data.total > data.jobs.length ? `(first ${data.jobs.length} of ${data.total})` : `(${data.total})`;
  syncRows($("#dead tbody"), data.jobs, (job) => `${job.queue_id}:${job.job_id}`, (row, job) => {
    row.dataset.job = job.job_id;
    put(row, "queue", job.queue_id);
    put(row, "job", job.job_id);
    put(row, "died", clock(job.died_at));
    put(row, "reason", job.reason);
    const payload = put(row, "payload", undefined);
    const text = JSON.stringify(job.payload);
    if (payload.textContent !== text) payload.replaceChildren(Object.assign(document.createElement("code"), { textContent: text }));
    if (!isAdmin()) return buttons(row, []);
    const path = `/deadletter/${type}/${job.queue_id}/${job.job_id}/`;
    buttons(row, [
      ["Retry", (b) => act(b, `Retried dead letter ${job.job_id} of queue ${job.queue_id}`, "POST", path + "retry/")],
      ["Delete", async (b) => {
        const text = `Delete dead letter ${job.job_id} of queue ${job.queue_id} (type ${type})? Its job and payload are gone for good.`;
        if (await confirmed(text, "Delete this dead letter")) await act(b, `Deleted dead letter ${job.job_id}`, "DELETE", path);
      }],
    ]);
  });
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
  return { done, kept };
}

async function bulk(verb, method, suffix) {
  for (const control of [$("#retry-all"), $("#delete-all")]) control.disabled = true;
  try {
    const { done, kept } = await everyDeadLetter(method, suffix);
    const said = `${done} done` + (kept ? `, ${kept} refused` : "");
    $("#bulk").textContent = said;
    tell(`${verb} dead letters of ${state.type}: ${said}`, kept > 0);
  } finally {
    for (const control of [$("#retry-all"), $("#delete-all")]) control.disabled = false;
  }
  await refresh();
}

$("#retry-all").addEventListener("click", () => bulk("Retried", "POST", "retry/"));
$("#delete-all").addEventListener("click", async () => {
  const dead = state.stats[state.type]?.jobs.dead ?? 0;
  const text = dead === 1 ? `Delete the 1 dead letter of type ${state.type}? Its job and payload are gone for good.`
    : `Delete all ${plural(dead, "dead letter")} of type ${state.type}? Their jobs and payloads are gone for good.`;
  if (await confirmed(text, `Delete ${plural(dead, "dead letter")}`)) await bulk("Deleted", "DELETE", "");
});
$("#pause-type").addEventListener("click", async () => {
  const queued = state.stats[state.type]?.jobs.queued ?? 0;
  const text = `Pause type ${state.type}? No worker gets any of its jobs (${queued} queued now) until you resume it.`;
  if (await confirmed(text, `Pause type ${state.type}`)) {
    await act($("#pause-type"), `Paused type ${state.type} until resumed`, "POST", `/pause/${state.type}/`, {});
  }
});
$("#resume-type").addEventListener("click", () => act($("#resume-type"), `Resumed type ${state.type}`, "POST", `/resume/${state.type}/`));
$("#type-limits").addEventListener("click", async () => {
  await editLimits(state.type, null, state.stats[state.type].type_limits);
  await refresh();
});
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
  $("#lookup-result").hidden = false;
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
